//! The command line's library side, the top layer: what the `umbra` binary (`src/main.rs`) runs
//! besides the library's own API. Nothing below imports from here.

pub mod generate;
pub mod gpt2_files;
pub mod model;
pub mod tooling;
