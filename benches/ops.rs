//! Criterion benchmarks of the CKKS primitives at logN 14, 15 and 16, ids `{backend}/{op}/{logN}/{limbs}`.
//! Run: `cargo bench --bench ops` (filter with e.g. `-- cpu/mul_relin`). `UMBRA_BACKEND` picks the backend.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use umbra::backend::Device;
use umbra::ckks::{Context, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters};

const PRESETS: [&str; 3] = [
    "N14_QP423_L6_S40",
    "N15_QP750_L10_S45",
    "N16_QP1690_L26_S50",
];

fn bench(c: &mut Criterion) {
    let device = Device::auto().expect("backend");
    for preset in PRESETS {
        let params = Parameters::preset(preset).unwrap();
        let ctx = Context::new(params.clone(), device).unwrap();
        let top = params.max_level();
        let limbs = params.limbs_at(top);
        let log_n = params.log_n();
        let id = |op: &str| format!("{device}/{op}/{log_n}/{limbs}");
        let slots = params.max_slots();
        let vals: Vec<f64> = (0..slots)
            .map(|i| ((i * 7919) % 2001) as f64 / 1000.0 - 1.0)
            .collect();
        let mut kg = KeyGenerator::new(&ctx);
        let sk = kg.gen_secret_key();
        let pk = kg.gen_public_key(&sk);
        let rots: Vec<i64> = (1..=8).collect();
        let evk = Arc::new(kg.gen_evaluation_keys(&sk, &rots, false));
        let enc = Encoder::new(&ctx);
        let mut encryptor = Encryptor::new(&ctx, &pk).unwrap();
        let dec = Decryptor::new(&ctx);
        let eval = Evaluator::new(&ctx, evk).unwrap();
        let pt = enc.encode(&vals, top, None).unwrap();
        let ct = encryptor.encrypt(&pt).unwrap();
        let prod = eval.mul_relin_new(&ct, &ct).unwrap();
        let mut g = c.benchmark_group(preset);
        g.sample_size(10);
        g.bench_function(id("encode"), |b| {
            b.iter(|| enc.encode(&vals, top, None).unwrap())
        });
        g.bench_function(id("encrypt"), |b| {
            b.iter(|| encryptor.encrypt(&pt).unwrap())
        });
        g.bench_function(id("decrypt"), |b| b.iter(|| dec.decrypt(&ct, &sk).unwrap()));
        g.bench_function(id("add"), |b| b.iter(|| eval.add_new(&ct, &ct).unwrap()));
        g.bench_function(id("mul_relin"), |b| {
            b.iter(|| eval.mul_relin_new(&ct, &ct).unwrap())
        });
        g.bench_function(id("rescale"), |b| {
            b.iter(|| eval.rescale_new(&prod).unwrap())
        });
        g.bench_function(id("rotate"), |b| {
            b.iter(|| eval.rotate_new(&ct, 1).unwrap())
        });
        g.bench_function(id("hoisted_rotate_8"), |b| {
            b.iter(|| eval.rotate_hoisted_new(&ct, &rots).unwrap())
        });
        let be = ctx.backend.clone();
        let one = be.slice_limbs(&ct.parts[0], 0, 1);
        g.bench_function(format!("{device}/ntt_limb/{log_n}/1"), |b| {
            b.iter(|| {
                let mut x = one.clone();
                be.ntt(&mut x, &[0]);
                x
            })
        });
        let q = params.q_indices(top);
        g.bench_function(id("ntt_all"), |b| {
            b.iter(|| {
                let mut x = ct.parts[0].clone();
                be.ntt(&mut x, &q);
                x
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
