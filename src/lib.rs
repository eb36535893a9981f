//! Umbra: transformer inference on CKKS-encrypted data, on CPU, CUDA and wgpu.
//!
//! Layers, one way only: `math -> backend -> ckks -> (nn -> models) -> cli`. See docs/ARCHITECTURE.md.

pub mod backend;
pub mod ckks;
pub mod cli;
pub mod math;
pub mod models;
pub mod nn;
