//! The CKKS scheme (DESIGN D5), written once against the backend seam.

pub mod bootstrap;
pub mod ciphertext;
pub mod circuit;
pub mod encoder;
pub mod encryption;
pub mod evaluator;
pub mod keys;
pub mod keyswitch;
pub mod linear_transform;
pub mod params;
pub mod polynomial;
pub mod presets;
pub mod scale;
pub mod serialize;
pub mod simulator;

use std::sync::Arc;

pub use bootstrap::{BootstrapLiteral, Bootstrapper};
pub use ciphertext::{Ciphertext, Plaintext};
pub use circuit::Circuit;
pub use encoder::Encoder;
pub use encryption::{Decryptor, Encryptor};
pub use evaluator::Evaluator;
pub use keys::{
    EncapsulationKeys, EvaluationKeys, GaloisKeys, KeyGenerator, PublicKey, RelinKey, SecretKey,
    SecretSeed,
};
pub use linear_transform::{DiagMatrix, LinearTransform};
pub use params::{Parameters, ParametersLiteral};
pub use polynomial::Chebyshev;
pub use simulator::{OpCounts, SimCiphertext, Simulator};

use crate::backend::{Backend, BackendError, Device};

/// Everything that can go wrong in the scheme; no operation panics on bad input.
#[derive(Debug, thiserror::Error)]
pub enum CkksError {
    #[error("invalid parameters: {0}")]
    InvalidParameters(String),
    #[error("parameter set `{name}` is not 128-bit secure: log2(QP) = {log_qp:.1} > {max} allowed at N = 2^{log_n} (name it `..._insecure` to use it for tests)")]
    Insecure {
        name: String,
        log_qp: f64,
        max: f64,
        log_n: u32,
    },
    #[error("level mismatch: {0} vs {1} (drop the higher one first)")]
    LevelMismatch(usize, usize),
    #[error("scale mismatch: 2^{0:.4} vs 2^{1:.4}")]
    ScaleMismatch(f64, f64),
    #[error("slot count mismatch: {0} vs {1}")]
    SlotMismatch(usize, usize),
    #[error("levels exhausted: {0}")]
    LevelsExhausted(String),
    #[error("value out of range: {0}")]
    OutOfRange(String),
    #[error("missing key: {0}")]
    MissingKey(String),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("transparent ciphertext: {0}")]
    Transparent(String),
    #[error("parameter mismatch: the object was made under other parameters")]
    ParamsMismatch,
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Format(#[from] serialize::FormatError),
}

/// Parameters plus the backend that runs them: what every CKKS object is built from.
#[derive(Debug, Clone)]
pub struct Context {
    pub params: Arc<Parameters>,
    pub backend: Backend,
}

impl Context {
    /// Opens `device` for these parameters.
    pub fn new(params: Arc<Parameters>, device: Device) -> Result<Arc<Context>, CkksError> {
        let backend = device.open(params.ring.clone())?;
        Ok(Arc::new(Context { params, backend }))
    }
}
