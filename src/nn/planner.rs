//! The planner: where the bootstraps of a block go, what it costs, and how long it will take,
//! without running it.
//!
//! - **Placement.** Layers mark their stages with `Circuit::refresh`; under
//!   `Refreshing<Simulator>` a ciphertext is bootstrapped exactly when the next stage would not
//!   fit in its remaining levels (lazy placement: along a chain of stages this needs the fewest
//!   bootstraps, and each one stays on the chain's narrowest value range). `plan` runs a circuit
//!   that way from inputs at the top compute level and returns the bootstraps placed and every
//!   operation counted by (kind, level), the bootstraps' own operations included.
//! - **Depth.** `depth` reruns the circuit on a plain simulator over a deep insecure chain of the
//!   same ring degree (no bootstrapping), which is the layer's multiplicative depth.
//! - **Cost.** `CostModel::calibrate` times every kind of operation the simulator counts at a few
//!   levels on the current backend (throwaway keys); costs in between are interpolated linearly
//!   in the level (limb count). `estimate_ms` prices the counts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::backend::Backend;
use crate::ckks::bootstrap::{BootstrapLiteral, Refreshing};
use crate::ckks::{
    Bootstrapper, CkksError, Context, Encoder, Encryptor, Evaluator, KeyGenerator, OpCounts,
    Parameters, ParametersLiteral, SimCiphertext, Simulator,
};
use crate::math::fft::C64;

/// What `plan` found.
#[derive(Clone, Debug)]
pub struct Plan {
    pub bootstraps: usize,
    pub ops: OpCounts,
    /// Level of the output ciphertexts.
    pub output_level: usize,
}

/// Runs `run` on `Refreshing<Simulator>` from `cts` input ciphertexts of `slots` slots at the top
/// compute level: the bootstraps placed and the operations counted.
pub fn plan(
    params: &Arc<Parameters>,
    boot: &BootstrapLiteral,
    inputs: usize,
    slots: usize,
    run: impl Fn(&Refreshing<Simulator>, &[SimCiphertext]) -> Result<Vec<SimCiphertext>, CkksError>,
) -> Result<Plan, CkksError> {
    let sim = Simulator::new(params);
    let b = Bootstrapper::new(&sim, boot)?;
    sim.reset();
    let r = Refreshing::new(&sim, &b);
    let x = vec![sim.fresh(params.compute_top_level(), slots); inputs];
    let y = run(&r, &x)?;
    Ok(Plan {
        bootstraps: r.bootstraps(),
        ops: sim.counts(),
        output_level: y.first().map_or(0, |m| m.level),
    })
}

/// Levels a circuit spends without bootstrapping: rehearsed on a deep insecure chain (`levels`
/// levels of 2^50, ring degree 2^log_n), from the top.
pub fn depth(
    log_n: u32,
    levels: usize,
    inputs: usize,
    slots: usize,
    run: impl Fn(&Simulator, &[SimCiphertext]) -> Result<Vec<SimCiphertext>, CkksError>,
) -> Result<usize, CkksError> {
    let p = Parameters::new(ParametersLiteral {
        name: format!("N{log_n}_L{levels}_S50_depth_probe_insecure"),
        log_n,
        log_q0: 60,
        levels,
        log_scale: 50,
        dnum: levels + 1,
        ..Default::default()
    })?;
    let sim = Simulator::new(&p);
    let top = p.max_level();
    let y = run(&sim, &vec![sim.fresh(top, slots); inputs])?;
    Ok(top - y.first().map_or(top, |m| m.level))
}

/// Milliseconds per operation kind at sampled levels, for one parameter set and backend.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CostModel {
    pub params: String,
    pub backend: String,
    /// kind -> [(level, ms)], levels ascending.
    pub samples: BTreeMap<&'static str, Vec<(usize, f64)>>,
}

fn median_ms<T>(be: &Backend, reps: usize, mut f: impl FnMut() -> T) -> f64 {
    std::hint::black_box(f());
    be.synchronize();
    let mut v: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            be.synchronize();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl CostModel {
    /// Times each operation kind at `points` levels spread over the chain (the top included).
    /// Generates throwaway keys (relinearization, one rotation, conjugation and, when `boot` asks
    /// for it, encapsulation) at the top level.
    pub fn calibrate(
        ctx: &Arc<Context>,
        boot: Option<&BootstrapLiteral>,
        points: usize,
        reps: usize,
    ) -> Result<Self, CkksError> {
        let p = &ctx.params;
        let be = &ctx.backend;
        let mut kg = KeyGenerator::new(ctx);
        let sk = kg.gen_secret_key();
        let mut keys = kg.gen_evaluation_keys(&sk, &[1, 2, 3, 4], true);
        if let Some(b) = boot.filter(|b| b.ephemeral_hamming_weight > 0) {
            keys.encapsulation = Some(kg.gen_encapsulation_keys(&sk, b.ephemeral_hamming_weight));
        }
        let eval = Evaluator::new(ctx, Arc::new(keys))?;
        let enc = Encoder::new(ctx);
        let mut encryptor = Encryptor::secret(ctx);
        let slots = p.max_slots();
        let values: Vec<C64> = (0..slots)
            .map(|i| C64::new(((i % 17) as f64 - 8.0) / 8.0, 0.0))
            .collect();
        let top = p.max_level();
        let points = points.max(2);
        let mut levels: Vec<usize> = (0..points)
            .map(|i| ((top - 1) * i / (points - 1)) + 1)
            .collect();
        levels.dedup();
        let mut samples: BTreeMap<&'static str, Vec<(usize, f64)>> = BTreeMap::new();
        let mut put = |k: &'static str, l: usize, ms: f64| {
            samples.entry(k).or_default().push((l, ms.max(0.0)));
        };
        for &l in &levels {
            let pt = enc.encode_complex(&values, l, None)?;
            let a = encryptor.encrypt_sk(&pt, &sk)?;
            let b = encryptor.encrypt_sk(&pt, &sk)?;
            let s = a.scale;
            put("add", l, median_ms(be, reps, || eval.add_new(&a, &b)));
            put(
                "add_const",
                l,
                median_ms(be, reps, || eval.add_const_new(&a, 0.5)),
            );
            put(
                "mul_const",
                l,
                median_ms(be, reps, || eval.mul_const_scaled_new(&a, 0.5, s)),
            );
            let tensor = eval.mul_new(&a, &b)?;
            put("mul", l, median_ms(be, reps, || eval.mul_new(&a, &b)));
            put(
                "relinearize",
                l,
                median_ms(be, reps, || eval.relinearize_new(&tensor)),
            );
            let prod = eval.relinearize_new(&tensor)?;
            put(
                "rescale",
                l,
                median_ms(be, reps, || eval.rescale_new(&prod)),
            );
            put("rotate", l, median_ms(be, reps, || eval.rotate_new(&a, 1)));
            put(
                "conjugate",
                l,
                median_ms(be, reps, || eval.conjugate_new(&a)),
            );
            let one = median_ms(be, reps, || eval.rotate_hoisted_new(&a, &[1]));
            let four = median_ms(be, reps, || eval.rotate_hoisted_new(&a, &[1, 2, 3, 4]));
            let hoisted = ((four - one) / 3.0).max(0.0);
            put("hoisted_rotation", l, hoisted);
            put("decompose", l, (one - hoisted).max(0.0));
            put(
                "mul_monomial",
                l,
                median_ms(be, reps, || eval.mul_i_new(&a)),
            );
            put(
                "encode",
                l,
                median_ms(be, reps, || enc.encode_complex(&values, l, Some(s))),
            );
            put(
                "mul_plain",
                l,
                median_ms(be, reps, || eval.mul_plain_new(&a, &pt)),
            );
            put(
                "add_plain",
                l,
                median_ms(be, reps, || eval.add_plain_new(&a, &pt)),
            );
        }
        if boot.is_some() {
            // ModRaise with its two encapsulation switches, timed as one (the simulator counts
            // one mod_raise and two switches per bootstrap).
            let pt = enc.encode_complex(&values, 0, None)?;
            let a = encryptor.encrypt_sk(&pt, &sk)?;
            put(
                "mod_raise",
                top,
                median_ms(be, reps, || eval.mod_raise_new(&a, top)),
            );
            put("encapsulation_switch", 0, 0.0);
        }
        Ok(CostModel {
            params: p.literal.name.clone(),
            backend: be.name().to_string(),
            samples,
        })
    }

    /// Milliseconds of one operation of `kind` at `level` (linear between sampled levels, flat
    /// beyond them); kinds never timed (e.g. copies) cost 0.
    pub fn op_ms(&self, kind: &str, level: usize) -> f64 {
        let Some(s) = self.samples.get(kind) else {
            return 0.0;
        };
        let l = level as f64;
        if s.len() == 1 || level <= s[0].0 {
            return s[0].1;
        }
        for w in s.windows(2) {
            let ((l0, m0), (l1, m1)) = (w[0], w[1]);
            if level <= l1 {
                return m0 + (m1 - m0) * (l - l0 as f64) / (l1 - l0) as f64;
            }
        }
        s[s.len() - 1].1
    }

    /// The predicted time of a run with these operation counts.
    pub fn estimate_ms(&self, ops: &OpCounts) -> f64 {
        ops.0
            .iter()
            .map(|((k, l), n)| self.op_ms(k, *l) * *n as f64)
            .sum()
    }
}
