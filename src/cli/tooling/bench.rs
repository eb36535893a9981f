//! The `bench ops` measurements shared by the CLI: each CKKS primitive at a preset's top level,
//! median wall time and, for homomorphic ops, precision in bits against f64.

use std::sync::Arc;
use std::time::Instant;

use crate::backend::{Backend, Device};
use crate::ckks::bootstrap::{self, BootstrapPreset};
use crate::ckks::encoder::precision_bits;
use crate::ckks::presets::presets;
use crate::ckks::{
    CkksError, Context, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters,
    ParametersLiteral,
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
pub fn time_ms<T>(reps: usize, f: impl FnMut() -> T) -> f64 {
    time_on_ms(None, reps, f)
}

/// As `time_ms`, waiting for the backend's queued work inside each timed run (GPU launches return
/// before the work is done).
pub fn time_on_ms<T>(be: Option<&Backend>, reps: usize, mut f: impl FnMut() -> T) -> f64 {
    let sync = || {
        if let Some(be) = be {
            be.synchronize();
        }
    };
    std::hint::black_box(f());
    sync();
    let mut v: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            sync();
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

/// Timed repetitions: at least one (a median of nothing is no measurement).
pub fn check_reps(reps: usize) -> Result<(), CkksError> {
    if reps == 0 {
        return Err(CkksError::Invalid(
            "--reps must be at least 1 (the median of 0 runs is no measurement)".into(),
        ));
    }
    Ok(())
}

/// The arguments of `bench ops`, checked before any backend is opened: a preset of `umbra params`
/// (an unknown name lists the known ones) and at least one repetition.
pub fn check_ops(preset: &str, reps: usize) -> Result<ParametersLiteral, CkksError> {
    let all = presets();
    let lit = all.iter().find(|p| p.name == preset).ok_or_else(|| {
        let known: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
        CkksError::InvalidParameters(format!(
            "unknown preset `{preset}` (known: {})",
            known.join(", ")
        ))
    })?;
    check_reps(reps)?;
    Ok(lit.clone())
}

/// The arguments of `bench bootstrap`, checked before any backend is opened: a bootstrapping
/// preset (an unknown name lists the known ones), slots that fit its ring, at least one repetition.
pub fn check_bootstrap(
    preset: &str,
    log_slots: Option<u32>,
    reps: usize,
) -> Result<BootstrapPreset, CkksError> {
    let pr = bootstrap::preset(preset)?;
    if let Some(l) = log_slots {
        if l + 1 > pr.params.log_n {
            return Err(CkksError::Invalid(format!(
                "{} slots do not fit `{preset}`: at most {} (N/2)",
                1u64 << l,
                1u64 << (pr.params.log_n - 1)
            )));
        }
    }
    check_reps(reps)?;
    Ok(pr)
}

/// Runs every op of `bench ops` at the preset's top level.
pub fn bench_ops(preset: &str, device: Device, reps: usize) -> Result<Vec<OpRow>, CkksError> {
    let params = Parameters::new(check_ops(preset, reps)?)?;
    let ctx = Context::new(params.clone(), device)?;
    let be = Some(&ctx.backend);
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
    row(
        "encode",
        time_on_ms(be, reps, || enc.encode(&a, top, None)),
        None,
    );
    let ca = encryptor.encrypt(&pa)?;
    let cb = encryptor.encrypt(&pb)?;
    row(
        "encrypt",
        time_on_ms(be, reps, || encryptor.encrypt(&pa)),
        None,
    );
    let da = dec.decrypt(&ca, &sk)?;
    row(
        "decrypt",
        time_on_ms(be, reps, || dec.decrypt(&ca, &sk)),
        Some(precision_bits(&da, &a)),
    );
    let sum = eval.add_new(&ca, &cb)?;
    let want: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    row(
        "add",
        time_on_ms(be, reps, || eval.add_new(&ca, &cb)),
        Some(precision_bits(&dec.decrypt(&sum, &sk)?, &want)),
    );
    let prod = eval.mul_relin_new(&ca, &cb)?;
    let want: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
    row(
        "mul_relin",
        time_on_ms(be, reps, || eval.mul_relin_new(&ca, &cb)),
        Some(precision_bits(&dec.decrypt(&prod, &sk)?, &want)),
    );
    let rs = eval.rescale_new(&prod)?;
    row(
        "rescale",
        time_on_ms(be, reps, || eval.rescale_new(&prod)),
        Some(precision_bits(&dec.decrypt(&rs, &sk)?, &want)),
    );
    let rot = eval.rotate_new(&ca, 1)?;
    let want: Vec<f64> = (0..slots).map(|i| a[(i + 1) % slots]).collect();
    row(
        "rotate",
        time_on_ms(be, reps, || eval.rotate_new(&ca, 1)),
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
        time_on_ms(be, reps, || eval.rotate_hoisted_new(&ca, &rots)),
        Some(bits),
    );
    let (sync, be) = (be, &ctx.backend);
    let one = be.slice_limbs(&ca.parts[0], 0, 1);
    row(
        "ntt_limb",
        time_on_ms(sync, reps * 4, || {
            let mut x = one.clone();
            be.ntt(&mut x, &[0]);
            x
        }),
        None,
    );
    let q = params.q_indices(top);
    row(
        "ntt_all",
        time_on_ms(sync, reps, || {
            let mut x = ca.parts[0].clone();
            be.ntt(&mut x, &q);
            x
        }),
        None,
    );
    Ok(rows)
}

/// What `umbra bench bootstrap` reports (the JSON field names are an interface).
#[derive(Clone, Debug, serde::Serialize)]
pub struct BootstrapReport {
    pub preset: String,
    pub backend: String,
    pub threads: usize,
    pub slots: usize,
    /// Median bootstrapping time over `reps` runs.
    pub ms: f64,
    pub reps: usize,
    /// Precision against the input (uniform reals in [-1, 1]), mean and minimum over slots.
    pub precision_bits_mean: f64,
    pub precision_bits_min: f64,
    /// Levels left for computation after bootstrapping.
    pub levels_after: usize,
    /// Time to generate the bootstrapping keys (relinearization, rotations, conjugation,
    /// encapsulation).
    pub keygen_ms: f64,
    /// Bytes of bootstrapping key material held in memory.
    pub key_bytes: usize,
    pub rotation_keys: usize,
    /// Time to encode the DFT diagonals (once per parameter set).
    pub setup_ms: f64,
    /// Peak resident memory of the process (VmHWM), when the OS reports it.
    pub peak_rss_bytes: Option<u64>,
    /// Operations of one bootstrap, counted on the simulator.
    pub ops: std::collections::BTreeMap<&'static str, usize>,
}

/// Peak resident set size of this process (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Generates bootstrapping keys for a preset, bootstraps uniform real inputs `reps` times.
pub fn bench_bootstrap(
    preset: &str,
    log_slots: Option<u32>,
    device: Device,
    reps: usize,
) -> Result<BootstrapReport, CkksError> {
    use crate::ckks::bootstrap::{gen_bootstrap_keys, Bootstrapper};
    use crate::ckks::encoder::precision_bits_min;
    use crate::ckks::{BootstrapLiteral, Simulator};
    let pr = check_bootstrap(preset, log_slots, reps)?;
    let lit = BootstrapLiteral {
        log_slots: log_slots.or(pr.boot.log_slots),
        ..pr.boot.clone()
    };
    let params = Parameters::new(pr.params.clone())?;
    let ctx = Context::new(params.clone(), device)?;
    let mut kg = KeyGenerator::new(&ctx);
    let sk = kg.gen_secret_key();
    let t = Instant::now();
    let keys = gen_bootstrap_keys(&mut kg, &sk, &params, &lit, &[])?;
    let keygen_ms = t.elapsed().as_secs_f64() * 1e3;
    let key_bytes = keys.memory_bytes();
    let rotation_keys = keys.galois.keys.len();
    let eval = Evaluator::new(&ctx, Arc::new(keys))?;
    let t = Instant::now();
    let boot = Bootstrapper::new(&eval, &lit)?;
    let setup_ms = t.elapsed().as_secs_f64() * 1e3;
    let sim = Simulator::new(&params);
    Bootstrapper::new(&sim, &lit)?.bootstrap(&sim, &sim.fresh(0, boot.slots()))?;
    let mut prng = Prng::from_os();
    let values = uniform_values(&mut prng, boot.slots());
    let enc = Encoder::new(&ctx);
    let ct = Encryptor::secret(&ctx).encrypt_sk(&enc.encode(&values, 0, None)?, &sk)?;
    let mut times = Vec::with_capacity(reps);
    let mut out = None;
    for _ in 0..reps {
        let t = Instant::now();
        out = Some(boot.bootstrap(&eval, &ct)?);
        ctx.backend.synchronize();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let out = out.expect("at least one run");
    let got = Decryptor::new(&ctx).decrypt(&out, &sk)?;
    let got = &got[..values.len()];
    Ok(BootstrapReport {
        preset: preset.into(),
        backend: device.to_string(),
        threads: rayon::current_num_threads(),
        slots: boot.slots(),
        ms: times[times.len() / 2],
        reps: times.len(),
        precision_bits_mean: precision_bits(got, &values),
        precision_bits_min: precision_bits_min(got, &values),
        levels_after: out.level,
        keygen_ms,
        key_bytes,
        rotation_keys,
        setup_ms,
        peak_rss_bytes: peak_rss_bytes(),
        ops: sim.counts().by_kind(),
    })
}
