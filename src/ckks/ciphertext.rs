//! Ciphertexts and plaintexts: backend buffers in NTT form plus the metadata that the evaluator
//! checks (level, exact scale, slot count).

use crate::backend::Buffer;

/// An encoded message: one polynomial over the Q primes of `level`, NTT form.
#[derive(Clone, Debug)]
pub struct Plaintext {
    pub poly: Buffer,
    pub level: usize,
    pub scale: f64,
    pub slots: usize,
}

/// A CKKS ciphertext (c0, c1[, c2]) with c0 + c1 s (+ c2 s^2) = m, NTT form over the Q primes of
/// `level`.
#[derive(Clone, Debug)]
pub struct Ciphertext {
    pub parts: Vec<Buffer>,
    pub level: usize,
    pub scale: f64,
    pub slots: usize,
    /// When c1 is the uniform polynomial expanded from this seed (secret-key encryption), the
    /// serialized form stores the seed instead of c1.
    pub seed: Option<[u8; 32]>,
}

impl Ciphertext {
    /// Degree (number of parts - 1).
    pub fn degree(&self) -> usize {
        self.parts.len() - 1
    }
}
