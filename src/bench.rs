//! The `bench ops` measurements shared by the CLI: each CKKS primitive at a preset's top level,
//! median wall time and, for homomorphic ops, precision in bits against f64.

use std::sync::Arc;
use std::time::Instant;

use crate::backend::Device;
use crate::ckks::encoder::precision_bits;
use crate::ckks::{
    CkksError, Context, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters,
};
use crate::math::sampling::Prng;

/// One row of `umbra bench ops`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OpRow {
    pub op: String,
    pub ms: f64,
    pub precision_bits: Option<f64>,
}

/// Median milliseconds of `f`, run `reps` times after one warm-up.
pub fn time_ms<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    std::hint::black_box(f());
    let mut v: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn uniform_values(prng: &mut Prng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| (prng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        .collect()
}

/// Runs every op of `bench ops` at the preset's top level.
pub fn bench_ops(preset: &str, device: Device, reps: usize) -> Result<Vec<OpRow>, CkksError> {
    let params = Parameters::preset(preset)?;
    let ctx = Context::new(params.clone(), device)?;
    let top = params.max_level();
    let slots = params.max_slots();
    let mut prng = Prng::from_os();
    let a = uniform_values(&mut prng, slots);
    let b = uniform_values(&mut prng, slots);
    let mut kg = KeyGenerator::new(&ctx);
    let sk = kg.gen_secret_key();
    let pk = kg.gen_public_key(&sk);
    let rots: Vec<i64> = (1..=8).collect();
    let keys = Arc::new(kg.gen_evaluation_keys(&sk, &rots, false));
    let enc = Encoder::new(&ctx);
    let mut encryptor = Encryptor::new(&ctx, &pk)?;
    let dec = Decryptor::new(&ctx);
    let eval = Evaluator::new(&ctx, keys)?;
    let mut rows = Vec::new();
    let mut row = |op: &str, ms: f64, bits: Option<f64>| {
        rows.push(OpRow {
            op: op.into(),
            ms,
            precision_bits: bits,
        })
    };

    let pa = enc.encode(&a, top, None)?;
    let pb = enc.encode(&b, top, None)?;
    row("encode", time_ms(reps, || enc.encode(&a, top, None)), None);
    let ca = encryptor.encrypt(&pa)?;
    let cb = encryptor.encrypt(&pb)?;
    row("encrypt", time_ms(reps, || encryptor.encrypt(&pa)), None);
    let da = dec.decrypt(&ca, &sk)?;
    row(
        "decrypt",
        time_ms(reps, || dec.decrypt(&ca, &sk)),
        Some(precision_bits(&da, &a)),
    );
    let sum = eval.add_new(&ca, &cb)?;
    let want: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    row(
        "add",
        time_ms(reps, || eval.add_new(&ca, &cb)),
        Some(precision_bits(&dec.decrypt(&sum, &sk)?, &want)),
    );
    let prod = eval.mul_relin_new(&ca, &cb)?;
    let want: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
    row(
        "mul_relin",
        time_ms(reps, || eval.mul_relin_new(&ca, &cb)),
        Some(precision_bits(&dec.decrypt(&prod, &sk)?, &want)),
    );
    let rs = eval.rescale_new(&prod)?;
    row(
        "rescale",
        time_ms(reps, || eval.rescale_new(&prod)),
        Some(precision_bits(&dec.decrypt(&rs, &sk)?, &want)),
    );
    let rot = eval.rotate_new(&ca, 1)?;
    let want: Vec<f64> = (0..slots).map(|i| a[(i + 1) % slots]).collect();
    row(
        "rotate",
        time_ms(reps, || eval.rotate_new(&ca, 1)),
        Some(precision_bits(&dec.decrypt(&rot, &sk)?, &want)),
    );
    let hoisted = eval.rotate_hoisted_new(&ca, &rots)?;
    let mut bits = f64::INFINITY;
    for (r, ct) in rots.iter().zip(&hoisted) {
        let want: Vec<f64> = (0..slots).map(|i| a[(i + *r as usize) % slots]).collect();
        bits = bits.min(precision_bits(&dec.decrypt(ct, &sk)?, &want));
    }
    row(
        "hoisted_rotate_8",
        time_ms(reps, || eval.rotate_hoisted_new(&ca, &rots)),
        Some(bits),
    );
    let be = &ctx.backend;
    let one = be.slice_limbs(&ca.parts[0], 0, 1);
    row(
        "ntt_limb",
        time_ms(reps * 4, || {
            let mut x = one.clone();
            be.ntt(&mut x, &[0]);
            x
        }),
        None,
    );
    let q = params.q_indices(top);
    row(
        "ntt_all",
        time_ms(reps, || {
            let mut x = ca.parts[0].clone();
            be.ntt(&mut x, &q);
            x
        }),
        None,
    );
    Ok(rows)
}
