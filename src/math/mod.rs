//! Number theory under the ring kernels: 32-bit modular arithmetic, NTT-friendly primes, the
//! negacyclic NTT, RNS base conversion, Chinese remaindering to f64, the canonical-embedding FFT and CSPRNG sampling.

pub mod crt;
pub mod fft;
pub mod modulus;
pub mod ntt;
pub mod primes;
pub mod rns;
pub mod sampling;
pub mod simd;

pub use modulus::Modulus;
