//! Bootstrapping precision under variations of the recipe (development aid):
//! `cargo run --release --example boot_tune -- LOG_N LOG_Q0 K DEG DBL ARCSINE CTS_Q STC_Q`.
use std::sync::Arc;
use umbra::backend::Device;
use umbra::ckks::bootstrap::{gen_bootstrap_keys, BootstrapLiteral, Bootstrapper};
use umbra::ckks::encoder::{precision_bits, precision_bits_min};
use umbra::ckks::*;
use umbra::math::sampling::Prng;

fn main() {
    let a: Vec<u32> = std::env::args()
        .skip(1)
        .map(|s| s.parse().unwrap())
        .collect();
    let boot = BootstrapLiteral {
        k: a[2],
        mod_degree: a[3] as usize,
        double_angle: a[4],
        arcsine_degree: a[5] as usize,
        cts_log_q: a[6],
        stc_log_q: a[7],
        cts_levels: if a[0] >= 15 { 4 } else { 3 },
        stc_levels: if a[0] >= 15 { 3 } else { 2 },
        ..Default::default()
    };
    let residual = ParametersLiteral {
        name: "tune_insecure".into(),
        log_n: a[0],
        log_q0: a[1],
        levels: 2,
        log_scale: 50,
        dnum: 4,
        extra_special_primes: 1,
        ..Default::default()
    };
    let params = Parameters::new(boot.parameters_literal(&residual)).unwrap();
    let ctx = Context::new(params.clone(), Device::Cpu).unwrap();
    let mut kg = KeyGenerator::new(&ctx);
    let sk = kg.gen_secret_key();
    let evk = gen_bootstrap_keys(&mut kg, &sk, &params, &boot, &[]).unwrap();
    let ev = Evaluator::new(&ctx, Arc::new(evk)).unwrap();
    let b = Bootstrapper::new(&ev, &boot).unwrap();
    let mut prng = Prng::from_seed([1; 32]);
    let v: Vec<f64> = (0..b.slots())
        .map(|_| (prng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        .collect();
    let enc = Encoder::new(&ctx);
    let ct = Encryptor::secret(&ctx)
        .encrypt_sk(&enc.encode(&v, 0, None).unwrap(), &sk)
        .unwrap();
    let t = std::time::Instant::now();
    let out = b.bootstrap(&ev, &ct).unwrap();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let got = Decryptor::new(&ctx).decrypt(&out, &sk).unwrap();
    println!(
        "{a:?}: {:.1} bits mean, {:.1} min, {ms:.0} ms, logQP {:.0}",
        precision_bits(&got[..v.len()], &v),
        precision_bits_min(&got[..v.len()], &v),
        params.log_qp
    );
}
