//! Loops mul_relin or rotate for profiling: `perf record ./target/release/examples/profile_keyswitch N15_QP750_L10_S45 rot`.
use std::sync::Arc;
use umbra::backend::Device;
use umbra::ckks::*;
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
fn main() {
    let preset = std::env::args()
        .nth(1)
        .unwrap_or("N15_QP750_L10_S45".into());
    let op = std::env::args().nth(2).unwrap_or("mul".into());
    let p = Parameters::preset(&preset).unwrap();
    let ctx = Context::new(p.clone(), Device::Cpu).unwrap();
    let mut kg = KeyGenerator::new(&ctx);
    let sk = kg.gen_secret_key();
    let pk = kg.gen_public_key(&sk);
    let evk = Arc::new(kg.gen_evaluation_keys(&sk, &[1], false));
    let enc = Encoder::new(&ctx);
    let v: Vec<f64> = (0..p.max_slots())
        .map(|i| (i % 100) as f64 / 100.0)
        .collect();
    let ct = Encryptor::new(&ctx, &pk)
        .unwrap()
        .encrypt(&enc.encode(&v, p.max_level(), None).unwrap())
        .unwrap();
    let ev = Evaluator::new(&ctx, evk).unwrap();
    let t = std::time::Instant::now();
    for _ in 0..40 {
        if op == "mul" {
            std::hint::black_box(ev.mul_relin_new(&ct, &ct).unwrap());
        } else {
            std::hint::black_box(ev.rotate_new(&ct, 1).unwrap());
        }
    }
    eprintln!("{op}: {:.2} ms", t.elapsed().as_secs_f64() * 1e3 / 40.0);
}
