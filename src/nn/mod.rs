//! NEXUS-style encrypted layers (docs/ARCHITECTURE.md, D7), each written once against
//! `ckks::Circuit` so that the simulator plans and counts what the evaluator runs, each with an f64
//! twin.

pub mod approx;
pub mod argmax;
pub mod attention;
pub mod block;
pub mod chain;
pub mod gelu;
pub mod layernorm;
pub mod lm_head;
pub mod matmul;
pub mod packing;
pub mod planner;
pub mod softmax;

pub use matmul::Linear;
pub use packing::Layout;
