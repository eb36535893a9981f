//! `umbra bench layer` and `umbra estimate`: one encrypted layer or block on random inputs at
//! realistic scale, run under bootstrapping on a preset, against its f64 twin and the exact
//! function; and the planner's prediction of the same run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::backend::Device;
use crate::ckks::bootstrap::{
    self, gen_bootstrap_keys_at, BootstrapLiteral, BootstrapPreset, Refreshing,
};
use crate::ckks::{
    Bootstrapper, Circuit, CkksError, Context, Decryptor, Encoder, Encryptor, Evaluator,
    KeyGenerator, Parameters,
};
use crate::math::fft::C64;
use crate::math::sampling::Prng;
use crate::nn::approx::PolyApprox;
use crate::nn::argmax::{self, ArgmaxOptions};
use crate::nn::attention::{self, AttentionOptions};
use crate::nn::block::{gaussian, random_input, Block, BlockKind, BlockWeights};
use crate::nn::layernorm::{self, LayerNormOptions};
use crate::nn::matmul::{linear_rotations, Linear};
use crate::nn::planner::{self, CostModel};
use crate::nn::softmax::{self, SoftmaxOptions};
use crate::nn::{gelu, Layout};

/// The default preset: 128-bit N = 2^16, 9 levels between bootstraps.
pub const DEFAULT_PRESET: &str = "N16_QP1701_L9_S50_boot";

/// `--kind` values (the names are an interface).
pub const KINDS: [&str; 8] = [
    "matmul",
    "attention",
    "softmax",
    "layernorm",
    "gelu",
    "argmax",
    "bert-block",
    "gpt2-block",
];

fn unknown_kind(kind: &str) -> CkksError {
    CkksError::Invalid(format!(
        "unknown layer kind `{kind}` (known: {})",
        KINDS.join(", ")
    ))
}

/// Checks a layer's shape against a bootstrapping preset before anything is built (no keys, no
/// backend, no simulation): the kind, the preset (an unknown name lists the known ones), the
/// layout, and for kinds with attention the heads and whether the tokens fit the ring (the error
/// gives the largest token count that does).
pub fn check_shape(
    kind: &str,
    hidden: usize,
    heads: usize,
    tokens: usize,
    preset: &str,
) -> Result<BootstrapPreset, CkksError> {
    if !KINDS.contains(&kind) {
        return Err(unknown_kind(kind));
    }
    let pr = bootstrap::preset(preset)?;
    let max_slots = 1usize << (pr.params.log_n - 1);
    let layout = Layout::new(tokens, hidden, max_slots)?;
    match kind {
        "attention" | "softmax" | "bert-block" | "gpt2-block" => {
            attention::head_dim(&layout, heads)?;
        }
        "argmax" if hidden.next_power_of_two() > max_slots => {
            return Err(CkksError::Invalid(format!(
                "{hidden} logits do not fit one ciphertext of {max_slots} slots"
            )));
        }
        _ => {}
    }
    Ok(pr)
}

/// A layer or block with its random inputs.
enum Job {
    Matmul(Layout, Linear, Vec<Vec<f64>>),
    Attention(Layout, AttentionOptions, [Vec<Vec<f64>>; 3]),
    /// Scores of all heads (score layout), options, the query layout's tokens per input.
    Softmax(Layout, SoftmaxOptions, Vec<Vec<f64>>),
    LayerNorm(Layout, LayerNormOptions, Vec<f64>, Vec<f64>, Vec<Vec<f64>>),
    Gelu(Layout, PolyApprox, Vec<Vec<f64>>),
    /// Options, logits (padded to a power of two).
    Argmax(ArgmaxOptions, Vec<f64>, usize),
    Block(Layout, Block, Vec<Vec<f64>>),
}

fn random_matrix(prng: &mut Prng, rows: usize, cols: usize, std: f64, clip: f64) -> Vec<Vec<f64>> {
    (0..rows)
        .map(|_| {
            (0..cols)
                .map(|_| (std * gaussian(prng)).clamp(-clip, clip))
                .collect()
        })
        .collect()
}

impl Job {
    fn new(
        kind: &str,
        hidden: usize,
        heads: usize,
        tokens: usize,
        max_slots: usize,
        seed: u64,
    ) -> Result<Self, CkksError> {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        let prng = &mut Prng::from_seed(s);
        let layout = Layout::new(tokens, hidden, max_slots)?;
        let x = random_input(tokens, hidden, seed);
        Ok(match kind {
            "matmul" => {
                let w = BlockWeights::random(hidden, 4 * hidden, seed);
                Job::Matmul(layout, w.q, layout.pack(&x)?)
            }
            "attention" => {
                let o = AttentionOptions::new(&layout, heads, 8.0, 16.0, false)?;
                let mut m = || random_matrix(prng, tokens, hidden, 1.0, 4.0);
                let (q, k, v) = (m(), m(), m());
                Job::Attention(
                    layout,
                    o,
                    [layout.pack(&q)?, layout.pack(&k)?, layout.pack(&v)?],
                )
            }
            "softmax" => {
                let sl = attention::scores_layout(&layout, heads)?;
                let o = SoftmaxOptions::attention(tokens, heads, 8.0, false)?;
                let sc = random_matrix(prng, tokens, sl.features, 1.0, 2.5);
                Job::Softmax(sl, o, sl.pack(&sc)?)
            }
            "layernorm" => {
                let o = LayerNormOptions::new(1e-5)?;
                let g: Vec<f64> = (0..hidden).map(|_| 1.0 + 0.1 * gaussian(prng)).collect();
                let b: Vec<f64> = (0..hidden).map(|_| 0.05 * gaussian(prng)).collect();
                // Residual-stream scale: std 3 around a per-token offset.
                let x: Vec<Vec<f64>> = (0..tokens)
                    .map(|_| {
                        let m = gaussian(prng);
                        (0..hidden)
                            .map(|_| (m + 3.0 * gaussian(prng)).clamp(-30.0, 30.0))
                            .collect()
                    })
                    .collect();
                Job::LayerNorm(layout, o, g, b, layout.pack(&x)?)
            }
            "gelu" => {
                let x = random_matrix(prng, tokens, hidden, 3.0, 12.0);
                Job::Gelu(layout, gelu::default_erf()?, layout.pack(&x)?)
            }
            "argmax" => {
                let o = ArgmaxOptions::new(8.0, 1.0, 12.0)?;
                let mut logits: Vec<f64> = (0..hidden)
                    .map(|_| (2.0 * gaussian(prng)).clamp(-6.0, 6.0))
                    .collect();
                let top = (prng.next_u64() % hidden as u64) as usize;
                let mx = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                logits[top] = (mx + 1.0).min(8.0);
                Job::Argmax(o, argmax::pack_logits(&logits, 8.0)?, hidden)
            }
            "bert-block" | "gpt2-block" => {
                let k = if kind == "bert-block" {
                    BlockKind::Bert
                } else {
                    BlockKind::Gpt2
                };
                let w = BlockWeights::random(hidden, 4 * hidden, seed);
                let b = Block::new(k, w, heads, &layout)?;
                Job::Block(layout, b, layout.pack(&x)?)
            }
            other => return Err(unknown_kind(other)),
        })
    }

    /// Input groups (slot vectors per ciphertext) and their slot count.
    fn inputs(&self) -> (Vec<&Vec<Vec<f64>>>, usize) {
        match self {
            Job::Matmul(l, _, x) | Job::Gelu(l, _, x) | Job::Block(l, _, x) => (vec![x], l.slots()),
            Job::LayerNorm(l, _, _, _, x) | Job::Softmax(l, _, x) => (vec![x], l.slots()),
            Job::Attention(l, _, [q, k, v]) => (vec![q, k, v], l.slots()),
            Job::Argmax(_, z, _) => (vec![], z.len()),
        }
    }

    fn input_groups(&self) -> Vec<Vec<Vec<f64>>> {
        match self {
            Job::Argmax(_, z, _) => vec![vec![z.clone()]],
            _ => self.inputs().0.into_iter().cloned().collect(),
        }
    }

    fn slots(&self) -> usize {
        self.inputs().1
    }

    fn run<C: Circuit>(&self, c: &C, x: &[Vec<C::Ct>]) -> Result<Vec<C::Ct>, CkksError> {
        match self {
            Job::Matmul(l, lin, _) => {
                let y: Vec<C::Ct> = x[0]
                    .iter()
                    .map(|ct| c.refresh(ct, 1, 16.0))
                    .collect::<Result<_, _>>()?;
                crate::nn::matmul::linear(c, l, &y, lin)
            }
            Job::Attention(l, o, _) => attention::attention_in(c, l, &x[0], &x[1], &x[2], o),
            Job::Softmax(l, o, _) => softmax::softmax_in(c, l, &x[0], o),
            Job::LayerNorm(l, o, g, b, _) => layernorm::layernorm_in(c, l, &x[0], g, b, o),
            Job::Gelu(_, p, _) => x[0].iter().map(|ct| p.evaluate(c, ct)).collect(),
            Job::Argmax(o, _, _) => Ok(vec![argmax::argmax_in(c, &x[0][0], o)?]),
            Job::Block(l, b, _) => b.forward(c, l, &x[0]),
        }
    }

    /// Output slot vectors of the twin.
    fn twin(&self) -> Result<Vec<Vec<f64>>, CkksError> {
        match self {
            Job::Matmul(l, lin, x) => l.with_features(lin.d_out()).pack(&lin.twin(&l.unpack(x)?)?),
            Job::Attention(l, o, [q, k, v]) => attention::attention_twin(l, q, k, v, o),
            Job::Softmax(l, o, x) => softmax::softmax_twin(l, x, o),
            Job::LayerNorm(l, o, g, b, x) => layernorm::layernorm_twin(l, x, g, b, o),
            Job::Gelu(l, p, x) => gelu::gelu_twin(l, x, p),
            Job::Argmax(o, z, _) => Ok(vec![argmax::argmax_twin(z, o)?]),
            Job::Block(l, b, x) => b.twin(l, x),
        }
    }

    /// Output slot vectors of the exact function.
    fn exact(&self) -> Result<Vec<Vec<f64>>, CkksError> {
        match self {
            Job::Matmul(..) => self.twin(),
            Job::Attention(l, o, [q, k, v]) => {
                let (q, k, v) = (l.unpack(q)?, l.unpack(k)?, l.unpack(v)?);
                let tin = l.tokens_per_input();
                let y = attention::attention_exact(&q, &k, &v, o.heads, tin, o.softmax.causal);
                l.pack(&y)
            }
            Job::Softmax(l, o, x) => {
                // True softmax within each head's group of columns (order-blind, not causal).
                let rows = l.unpack(x)?;
                let g = l.features / o.heads;
                let y: Vec<Vec<f64>> = rows
                    .iter()
                    .map(|r| {
                        r.chunks(g)
                            .flat_map(|c| {
                                let mx = c.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                                let e: Vec<f64> = c.iter().map(|v| (v - mx).exp()).collect();
                                let s: f64 = e.iter().sum();
                                e.into_iter().map(move |v| v / s)
                            })
                            .collect()
                    })
                    .collect();
                l.pack(&y)
            }
            Job::LayerNorm(l, o, g, b, x) => {
                l.pack(&layernorm::layernorm_exact(&l.unpack(x)?, g, b, o.eps))
            }
            Job::Gelu(l, p, x) => l.pack(&gelu::gelu_exact(&l.unpack(x)?, p)),
            Job::Argmax(_, z, _) => Ok(vec![argmax::argmax_exact(z)]),
            Job::Block(l, b, x) => l.pack(&b.exact(&l.unpack(x)?, l.tokens_per_input())?),
        }
    }

    /// The real outputs (no padding), flattened, from output slot vectors.
    fn real(&self, y: &[Vec<f64>]) -> Result<Vec<f64>, CkksError> {
        let flat = |m: Vec<Vec<f64>>| m.into_iter().flatten().collect();
        Ok(match self {
            Job::Matmul(l, lin, _) => flat(l.with_features(lin.d_out()).unpack(y)?),
            Job::Attention(l, ..) | Job::Gelu(l, ..) | Job::Block(l, ..) => flat(l.unpack(y)?),
            Job::LayerNorm(l, ..) | Job::Softmax(l, ..) => flat(l.unpack(y)?),
            Job::Argmax(_, _, n) => y[0][..*n].to_vec(),
        })
    }

    fn rotations(&self) -> Result<Vec<i64>, CkksError> {
        let mut r = match self {
            Job::Matmul(l, lin, _) => linear_rotations(l, lin.d_in(), lin.d_out()),
            Job::Attention(l, o, _) => attention::rotations(l, o.heads)?,
            Job::Softmax(l, o, _) => softmax::rotations(l, o.heads),
            Job::LayerNorm(l, ..) => layernorm::rotations(l),
            Job::Gelu(..) => Vec::new(),
            Job::Argmax(_, z, _) => argmax::rotations(z.len()),
            Job::Block(l, b, _) => b.rotations(l)?,
        };
        r.sort_unstable();
        r.dedup();
        Ok(r)
    }
}

/// What `umbra bench layer` prints (`kind`, `ms`, `precision_bits_vs_twin`,
/// `precision_bits_vs_exact`, `levels` and `bootstraps` are an interface).
#[derive(Clone, Debug, serde::Serialize)]
pub struct LayerReport {
    pub kind: String,
    pub hidden: usize,
    pub heads: usize,
    pub tokens: usize,
    pub preset: String,
    pub backend: String,
    pub threads: usize,
    /// Wall time of the encrypted layer, bootstraps included.
    pub ms: f64,
    /// -log2(max |encrypted - twin| / rms(twin)) over the real outputs.
    pub precision_bits_vs_twin: f64,
    /// The same against the exact function.
    pub precision_bits_vs_exact: f64,
    /// The twin against the exact function (the approximations' share).
    pub precision_bits_twin_vs_exact: f64,
    /// Multiplicative depth without bootstrapping (simulated on a deep chain).
    pub levels: usize,
    pub bootstraps: usize,
    /// The planner's estimate (calibrated cost model x simulated counts), when asked for.
    pub estimated_ms: Option<f64>,
    pub keygen_ms: f64,
    pub key_bytes: usize,
    pub peak_rss_bytes: Option<u64>,
    pub ops: BTreeMap<&'static str, usize>,
}

fn bits(got: &[f64], want: &[f64]) -> f64 {
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let rms = (want.iter().map(|v| v * v).sum::<f64>() / want.len().max(1) as f64).sqrt();
    -(worst / rms.max(1e-300)).max(f64::MIN_POSITIVE).log2()
}

/// What `plan_job` found: bootstraps and counts from the simulator, depth on a deep chain.
struct JobPlan {
    plan: planner::Plan,
    levels: usize,
}

fn plan_job(
    job: &Job,
    params: &Arc<Parameters>,
    lit: &BootstrapLiteral,
) -> Result<JobPlan, CkksError> {
    let groups = job.input_groups();
    let slots = job.slots();
    let per_group: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let split = |x: &[crate::ckks::SimCiphertext]| -> Vec<Vec<crate::ckks::SimCiphertext>> {
        let mut out = Vec::new();
        let mut i = 0;
        for &n in &per_group {
            out.push(x[i..i + n].to_vec());
            i += n;
        }
        out
    };
    let total: usize = per_group.iter().sum();
    // Where the error arose goes into its message once, keeping its kind.
    let plan =
        planner::plan(params, lit, total, slots, |c, x| job.run(c, &split(x))).map_err(|e| {
            let at = |m: String| format!("planning on the simulator: {m}");
            match e {
                CkksError::Invalid(m) => CkksError::Invalid(at(m)),
                CkksError::LevelsExhausted(m) => CkksError::LevelsExhausted(at(m)),
                CkksError::OutOfRange(m) => CkksError::OutOfRange(at(m)),
                other => other,
            }
        })?;
    let levels = planner::depth(params, total, slots, |c, x| {
        let mut groups = Vec::new();
        let mut i = 0;
        for &n in &per_group {
            groups.push(x[i..i + n].to_vec());
            i += n;
        }
        job.run(c, &groups)
    })?;
    Ok(JobPlan { plan, levels })
}

/// Runs a layer encrypted under bootstrapping on `preset` (CPU or GPU), against its twin and the
/// exact function. `estimate` also calibrates the cost model and reports its prediction.
#[allow(clippy::too_many_arguments)]
pub fn bench_layer(
    kind: &str,
    hidden: usize,
    heads: usize,
    tokens: usize,
    preset: &str,
    device: Device,
    seed: u64,
    estimate: bool,
) -> Result<LayerReport, CkksError> {
    let pr = check_shape(kind, hidden, heads, tokens, preset)?;
    let params = Parameters::new(pr.params.clone())?;
    let job = Job::new(kind, hidden, heads, tokens, params.max_slots(), seed)?;
    let twin = job.twin()?;
    let exact = job.exact()?;
    let jp = plan_job(&job, &params, &pr.boot)?;
    let ctx = Context::new(params.clone(), device)?;
    let estimated_ms = if estimate {
        let model = CostModel::calibrate(&ctx, Some(&pr.boot), 4, 3)?;
        Some(model.estimate_ms(&jp.plan.ops))
    } else {
        None
    };
    let mut kg = KeyGenerator::new(&ctx);
    let sk = kg.gen_secret_key();
    let top = params.compute_top_level();
    let rots: Vec<(i64, usize)> = job.rotations()?.into_iter().map(|r| (r, top)).collect();
    let t = Instant::now();
    let keys = gen_bootstrap_keys_at(&mut kg, &sk, &params, &pr.boot, &rots)?;
    let keygen_ms = t.elapsed().as_secs_f64() * 1e3;
    let key_bytes = keys.memory_bytes();
    let eval = Evaluator::new(&ctx, Arc::new(keys))?;
    let boot = Bootstrapper::new(&eval, &pr.boot)?;
    let enc = Encoder::new(&ctx);
    let mut encryptor = Encryptor::secret(&ctx);
    let cts: Vec<Vec<_>> = job
        .input_groups()
        .iter()
        .map(|g| {
            g.iter()
                .map(|v| {
                    let c: Vec<C64> = v.iter().map(|&a| C64::new(a, 0.0)).collect();
                    encryptor.encrypt_sk(&enc.encode_complex(&c, top, None)?, &sk)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()?;
    let r = Refreshing::new(&eval, &boot);
    let t = Instant::now();
    let out = job.run(&r, &cts)?;
    ctx.backend.synchronize();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let dec = Decryptor::new(&ctx);
    let got: Vec<Vec<f64>> = out
        .iter()
        .map(|ct| {
            let mut v = dec.decrypt(ct, &sk)?;
            v.truncate(ct.slots);
            Ok(v)
        })
        .collect::<Result<_, CkksError>>()?;
    let (g, tw, ex) = (job.real(&got)?, job.real(&twin)?, job.real(&exact)?);
    Ok(LayerReport {
        kind: kind.into(),
        hidden,
        heads,
        tokens,
        preset: preset.into(),
        backend: device.to_string(),
        threads: rayon::current_num_threads(),
        ms,
        precision_bits_vs_twin: bits(&g, &tw),
        precision_bits_vs_exact: bits(&g, &ex),
        precision_bits_twin_vs_exact: bits(&tw, &ex),
        levels: jp.levels,
        bootstraps: r.bootstraps(),
        estimated_ms,
        keygen_ms,
        key_bytes,
        peak_rss_bytes: crate::cli::tooling::bench::peak_rss_bytes(),
        ops: jp.plan.ops.by_kind(),
    })
}

/// What `umbra estimate` prints (`kind`, `estimated_ms`, `ops` are an interface).
#[derive(Clone, Debug, serde::Serialize)]
pub struct EstimateReport {
    pub kind: String,
    pub hidden: usize,
    pub heads: usize,
    pub tokens: usize,
    pub layers: usize,
    pub preset: String,
    pub backend: String,
    pub threads: usize,
    /// Predicted wall time of `layers` layers.
    pub estimated_ms: f64,
    pub estimated_ms_per_layer: f64,
    pub bootstraps_per_layer: usize,
    pub levels_per_layer: usize,
    /// Operation counts of all layers, by kind.
    pub ops: BTreeMap<&'static str, usize>,
    pub key_switches: usize,
    /// One full-slot bootstrap on this backend (with `Refreshing`'s scaling into [-1, 1]), by the
    /// same cost model: what the bootstraps above cost apiece.
    pub bootstrap_ms: f64,
    /// Time spent calibrating the cost model.
    pub calibration_ms: f64,
}

/// Predicts a layer's (or `layers` identical layers') time from simulated counts and a cost
/// model calibrated on `device`; nothing is encrypted.
pub fn estimate(
    kind: &str,
    hidden: usize,
    heads: usize,
    tokens: usize,
    layers: usize,
    preset: &str,
    device: Device,
) -> Result<EstimateReport, CkksError> {
    if layers == 0 {
        return Err(CkksError::Invalid("--layers must be at least 1".into()));
    }
    let pr = check_shape(kind, hidden, heads, tokens, preset)?;
    let params = Parameters::new(pr.params.clone())?;
    let job = Job::new(kind, hidden, heads, tokens, params.max_slots(), 1)?;
    let jp = plan_job(&job, &params, &pr.boot)?;
    let ctx = Context::new(params.clone(), device)?;
    let t = Instant::now();
    let model = CostModel::calibrate(&ctx, Some(&pr.boot), 4, 3)?;
    let calibration_ms = t.elapsed().as_secs_f64() * 1e3;
    let per = model.estimate_ms(&jp.plan.ops);
    let one = planner::plan(&params, &pr.boot, 1, params.max_slots(), |c, x| {
        c.refresh_all(x, params.compute_top_level(), 2.0)
    })?;
    let bootstrap_ms = model.estimate_ms(&one.ops);
    let l = layers;
    let ops = jp
        .plan
        .ops
        .by_kind()
        .into_iter()
        .map(|(k, n)| (k, n * l))
        .collect();
    Ok(EstimateReport {
        kind: kind.into(),
        hidden,
        heads,
        tokens,
        layers: l,
        preset: preset.into(),
        backend: device.to_string(),
        threads: rayon::current_num_threads(),
        estimated_ms: per * l as f64,
        estimated_ms_per_layer: per,
        bootstraps_per_layer: jp.plan.bootstraps,
        levels_per_layer: jp.levels,
        ops,
        key_switches: jp.plan.ops.key_switches() * l,
        bootstrap_ms,
        calibration_ms,
    })
}
