//! Shared test fixtures: a key cache so that each preset's keys are made once per test binary
//! (tfhe-rs `keycache` style), and helpers for random inputs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use umbra::backend::Device;
use umbra::ckks::{Context, EvaluationKeys, KeyGenerator, Parameters, PublicKey, SecretKey};
use umbra::math::sampling::Prng;

pub const INSECURE: &str = "N12_QP450_L6_S40_insecure";
pub const N14: &str = "N14_QP423_L6_S40";

/// Rotations every cached key set holds.
pub const ROTATIONS: &[i64] = &[1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64, -1, -3];

pub struct Keys {
    pub ctx: Arc<Context>,
    pub sk: SecretKey,
    pub pk: PublicKey,
    pub evk: Arc<EvaluationKeys>,
}

/// The backend the CKKS tests run on: `UMBRA_TEST_BACKEND` if set, else CUDA when a device opens
/// here, else the CPU (with the reason CUDA was skipped printed once).
pub fn device() -> Device {
    static CHOSEN: OnceLock<Device> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        if let Ok(s) = std::env::var("UMBRA_TEST_BACKEND") {
            return s.parse().expect("UMBRA_TEST_BACKEND");
        }
        match Device::Cuda.available() {
            Ok(()) => Device::Cuda,
            Err(e) => {
                eprintln!("CKKS tests run on the CPU; the CUDA run is skipped: {e}");
                Device::Cpu
            }
        }
    })
}

pub fn keys(preset: &str) -> Arc<Keys> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Keys>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = cache.lock().unwrap();
    map.entry(preset.to_string())
        .or_insert_with(|| {
            let params = Parameters::preset(preset).unwrap();
            let ctx = Context::new(params, device()).unwrap();
            let mut kg = KeyGenerator::new(&ctx);
            let sk = kg.gen_secret_key();
            let pk = kg.gen_public_key(&sk);
            let evk = Arc::new(kg.gen_evaluation_keys(&sk, ROTATIONS, true));
            Arc::new(Keys { ctx, sk, pk, evk })
        })
        .clone()
}

/// Uniform values in [-1, 1].
pub fn uniform(n: usize, seed: u8) -> Vec<f64> {
    let mut p = Prng::from_seed([seed; 32]);
    (0..n)
        .map(|_| (p.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        .collect()
}
