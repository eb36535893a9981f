//! The ring-kernel seam (DESIGN D2): everything `ckks` does to polynomials goes through
//! `RingBackend`, so that the CPU reference and the GPU twins run the same scheme code.
//!
//! A polynomial is a `Buffer` of `limbs x N` u32 residues, limb-major; which prime each limb uses is
//! given by a list of indices into the `RingContext`'s prime table (`primes: &[usize]`). Data stays
//! where the backend keeps it; `upload`/`download` are the only host copies.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub mod gpu;
#[cfg(feature = "wgpu")]
pub mod wgpu;

use std::fmt;
use std::sync::Arc;

use crate::math::ntt::NttTable;
use crate::math::Modulus;

/// Errors from opening or using a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend `{0}` is not compiled into this build (enable the cargo feature `{0}`); use --backend cpu")]
    NotAvailable(&'static str),
    #[error("backend `{device}` cannot open: {reason}")]
    Unavailable { device: Device, reason: String },
    #[error("GPU error: {0}")]
    Device(String),
    #[error("unknown backend `{0}` (expected cpu, cuda, wgpu or auto)")]
    Unknown(String),
}

/// Which kind of device runs the ring kernels. Exists with every feature combination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Cpu,
    Cuda,
    Wgpu,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::Wgpu => "wgpu",
        })
    }
}

impl std::str::FromStr for Device {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, BackendError> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda),
            "wgpu" => Ok(Device::Wgpu),
            other => Err(BackendError::Unknown(other.to_string())),
        }
    }
}

impl Device {
    /// The device to use: `UMBRA_BACKEND` if set (cpu|cuda|wgpu|auto), else the first that opens of
    /// CUDA, a hardware wgpu adapter, the CPU.
    pub fn auto() -> Result<Device, BackendError> {
        match std::env::var("UMBRA_BACKEND") {
            Ok(v) if !v.is_empty() && v != "auto" => v.parse(),
            _ => Ok(Self::probe()),
        }
    }

    /// Resolves a user choice (`--backend`): None or "auto" probes.
    pub fn choose(choice: Option<&str>) -> Result<Device, BackendError> {
        match choice {
            None | Some("auto") => Self::auto(),
            Some(s) => s.parse(),
        }
    }

    /// Probes devices in order of preference, once per process: CUDA if a device opens, else a
    /// hardware wgpu adapter (software adapters only when asked for by name), else the CPU.
    fn probe() -> Device {
        static PROBED: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
        *PROBED.get_or_init(|| {
            #[cfg(feature = "cuda")]
            if cuda::CudaRuntime::available().is_ok() {
                return Device::Cuda;
            }
            #[cfg(feature = "wgpu")]
            if wgpu::WgpuRuntime::probe(false).is_ok() {
                return Device::Wgpu;
            }
            Device::Cpu
        })
    }

    /// Whether the device can open here, and why not (a line for skipped tests and `selftest`).
    pub fn available(self) -> Result<(), BackendError> {
        match self {
            Device::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            Device::Cuda => cuda::CudaRuntime::available(),
            #[cfg(feature = "wgpu")]
            Device::Wgpu => wgpu::WgpuRuntime::probe(true).map(|_| ()),
            #[allow(unreachable_patterns)]
            Device::Cuda => Err(BackendError::NotAvailable("cuda")),
            #[allow(unreachable_patterns)]
            Device::Wgpu => Err(BackendError::NotAvailable("wgpu")),
        }
    }

    /// Opens the device for a ring (uploading its tables). A named wgpu device may be a software
    /// adapter (lavapipe); `auto` only picks hardware ones.
    pub fn open(self, ring: Arc<RingContext>) -> Result<Backend, BackendError> {
        match self {
            Device::Cpu => Ok(Arc::new(cpu::CpuBackend::new(ring))),
            #[cfg(feature = "cuda")]
            Device::Cuda => Ok(Arc::new(gpu::GpuBackend::new(
                ring,
                Box::new(cuda::CudaRuntime::open()?),
            )?)),
            #[cfg(feature = "wgpu")]
            Device::Wgpu => Ok(Arc::new(gpu::GpuBackend::new(
                ring,
                Box::new(wgpu::WgpuRuntime::open(true)?),
            )?)),
            #[allow(unreachable_patterns)]
            Device::Cuda => Err(BackendError::NotAvailable("cuda")),
            #[allow(unreachable_patterns)]
            Device::Wgpu => Err(BackendError::NotAvailable("wgpu")),
        }
    }
}

/// The ring Z[X]/(X^N+1) over a table of primes, with the NTT tables of each prime.
#[derive(Debug)]
pub struct RingContext {
    pub n: usize,
    pub log_n: u32,
    pub moduli: Vec<Modulus>,
    pub ntt: Vec<NttTable>,
}

impl RingContext {
    pub fn new(log_n: u32, primes: &[u32]) -> Self {
        let n = 1usize << log_n;
        let ntt: Vec<NttTable> = primes.iter().map(|&q| NttTable::new(q, n)).collect();
        RingContext {
            n,
            log_n,
            moduli: primes.iter().map(|&q| Modulus::new(q)).collect(),
            ntt,
        }
    }

    pub fn moduli_of(&self, primes: &[usize]) -> Vec<Modulus> {
        primes.iter().map(|&i| self.moduli[i]).collect()
    }
}

/// Device memory holding `limbs x N` residues.
#[derive(Clone, Debug)]
pub enum Buffer {
    Cpu(Vec<u32>),
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    Gpu(gpu::GpuBuffer),
}

impl Buffer {
    /// Number of u32 words.
    pub fn len(&self) -> usize {
        match self {
            Buffer::Cpu(v) => v.len(),
            #[cfg(any(feature = "cuda", feature = "wgpu"))]
            Buffer::Gpu(g) => g.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A shared handle to an opened backend.
pub type Backend = Arc<dyn RingBackend>;

/// The kernels of the seam. Buffers passed together must come from the same backend; every list of
/// primes names the prime of each limb, in order. All polynomials are in NTT form unless a kernel says
/// otherwise.
pub trait RingBackend: Send + Sync + fmt::Debug {
    fn device(&self) -> Device;
    fn ring(&self) -> &Arc<RingContext>;
    /// The first device error since the backend opened (GPU errors are sticky); always Ok on the
    /// CPU. Checked where results leave the device (decryption, serialization, `selftest`).
    fn status(&self) -> Result<(), BackendError> {
        Ok(())
    }
    /// Waits until queued work is done (GPU launches are asynchronous); for timing.
    fn synchronize(&self) {}
    /// The device's name (GPU model or adapter).
    fn name(&self) -> String {
        self.device().to_string()
    }

    fn upload(&self, host: &[u32]) -> Buffer;
    fn download(&self, buf: &Buffer) -> Vec<u32>;
    fn zeros(&self, limbs: usize) -> Buffer;
    /// A copy of limbs [from, to) of a buffer.
    fn slice_limbs(&self, buf: &Buffer, from: usize, to: usize) -> Buffer;
    /// Concatenates limbs.
    fn concat_limbs(&self, parts: &[&Buffer]) -> Buffer;

    /// Forward negacyclic NTT of every limb (coefficients -> evaluations).
    fn ntt(&self, buf: &mut Buffer, primes: &[usize]);
    /// Inverse NTT of every limb.
    fn intt(&self, buf: &mut Buffer, primes: &[usize]);

    /// a += b.
    fn add_assign(&self, a: &mut Buffer, b: &Buffer, primes: &[usize]);
    /// a -= b.
    fn sub_assign(&self, a: &mut Buffer, b: &Buffer, primes: &[usize]);
    /// a = -a.
    fn neg_assign(&self, a: &mut Buffer, primes: &[usize]);
    /// a *= b (pointwise).
    fn mul_assign(&self, a: &mut Buffer, b: &Buffer, primes: &[usize]);
    /// out = a * b (pointwise).
    fn mul(&self, a: &Buffer, b: &Buffer, primes: &[usize]) -> Buffer;
    /// acc += a * b (pointwise).
    fn mul_add_assign(&self, acc: &mut Buffer, a: &Buffer, b: &Buffer, primes: &[usize]);
    /// a *= c_i on limb i.
    fn mul_scalar_assign(&self, a: &mut Buffer, scalars: &[u32], primes: &[usize]);
    /// a += c_i on every coefficient of limb i (in NTT form: adds the constant polynomial c_i).
    fn add_scalar_assign(&self, a: &mut Buffer, scalars: &[u32], primes: &[usize]);

    /// The automorphism X -> X^galois (galois odd) applied in NTT form.
    fn automorphism(&self, a: &Buffer, galois: usize, primes: &[usize]) -> Buffer;

    /// Exact divide-and-round by the product D of the last `n_drop` primes: x over `primes` (NTT
    /// form) -> round(x / D) over the remaining primes (NTT form). Rescale and ModDown.
    fn divide_round_last(&self, x: &Buffer, primes: &[usize], n_drop: usize) -> Buffer;

    /// ModUp for one digit of x over the `level` primes, given both in coefficient form (`x_coeff`,
    /// INTT'd once and shared by all digits) and NTT form (`x_ntt`, whose digit limbs are copied).
    /// Digit = limbs [d0, d1) of `level`. Returns [x]_{Q_j} lifted to `ext` = level ++ P (NTT form).
    fn mod_up(
        &self,
        x_coeff: &Buffer,
        x_ntt: &Buffer,
        level: &[usize],
        digit: (usize, usize),
        ext: &[usize],
    ) -> Buffer;

    /// Key-switch inner product: (sum_j d_j * b_j, sum_j d_j * a_j) over `ext`; limb k (prime
    /// `ext[k]`) of the result reads limb `key_limbs[k]` of the key buffers (keys hold only the
    /// limbs of the levels they serve).
    fn keyswitch_inner(
        &self,
        digits: &[Buffer],
        keys_b: &[&Buffer],
        keys_a: &[&Buffer],
        ext: &[usize],
        key_limbs: &[usize],
    ) -> (Buffer, Buffer);
}
