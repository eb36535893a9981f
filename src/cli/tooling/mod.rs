//! Measurement and self-test code, in a room of its own: it drives every layer below but is not
//! one of them. `bench` (`umbra bench ops`, `bench bootstrap`), `layer_bench` (`umbra bench layer`,
//! `umbra estimate`), `selftest` (`umbra selftest`: every backend bit for bit against the CPU).

pub mod bench;
pub mod layer_bench;
pub mod selftest;
