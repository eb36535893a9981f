//! The planner: where the bootstraps of a block go, what it costs, and how long it will take,
//! without running it.
//!
//! - **Placement.** Layers mark their stages with `Circuit::refresh`; under
//!   `Refreshing<Simulator>` a ciphertext is bootstrapped exactly when the next stage would not
//!   fit in its remaining levels (lazy placement: along a chain of stages this needs the fewest
//!   bootstraps, and each one stays on the chain's narrowest value range). `plan` runs a circuit
//!   that way from inputs at the top compute level and returns the bootstraps placed and every
//!   operation counted by (kind, level), the bootstraps' own operations included.
//! - **Depth.** `depth` reruns the circuit on `DepthProbe`, a simulator whose refresh lifts a
//!   ciphertext for free while it counts each path's rescales: the layer's multiplicative depth,
//!   however deep (a real chain of 100+ levels cannot be built from NTT primes below 2^30).
//! - **Cost.** `CostModel::calibrate` times every kind of operation the simulator counts at a few
//!   levels on the current backend (throwaway keys); costs in between are interpolated linearly
//!   in the level (limb count). `estimate_ms` prices the counts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::backend::Backend;
use crate::ckks::bootstrap::{BootstrapLiteral, Refreshing};
use crate::ckks::{
    Bootstrapper, Circuit, CkksError, Context, Encoder, Encryptor, Evaluator, KeyGenerator,
    OpCounts, Parameters, SimCiphertext, Simulator,
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

/// A ciphertext's metadata with the levels its path has consumed (`DepthProbe`).
#[derive(Clone, Copy, Debug)]
pub struct Tracked {
    pub meta: SimCiphertext,
    pub depth: usize,
}

/// The simulator on an unbounded chain: `refresh` lifts a ciphertext back to the top compute
/// level for free, and every ciphertext carries the rescales on its longest path, so a circuit's
/// multiplicative depth is measured however deep it is (a real chain that deep cannot be built).
pub struct DepthProbe<'a> {
    sim: &'a Simulator,
}

impl<'a> DepthProbe<'a> {
    pub fn new(sim: &'a Simulator) -> Self {
        DepthProbe { sim }
    }

    pub fn track(&self, meta: SimCiphertext) -> Tracked {
        Tracked { meta, depth: 0 }
    }
}

fn t1(a: &Tracked, m: SimCiphertext) -> Tracked {
    Tracked {
        meta: m,
        depth: a.depth,
    }
}

fn t2(a: &Tracked, b: &Tracked, m: SimCiphertext) -> Tracked {
    Tracked {
        meta: m,
        depth: a.depth.max(b.depth),
    }
}

impl Circuit for DepthProbe<'_> {
    type Ct = Tracked;
    type Pt = SimCiphertext;

    fn params(&self) -> &Arc<Parameters> {
        self.sim.params()
    }
    fn level(&self, a: &Tracked) -> usize {
        a.meta.level
    }
    fn scale(&self, a: &Tracked) -> f64 {
        a.meta.scale
    }
    fn slots(&self, a: &Tracked) -> usize {
        a.meta.slots
    }
    fn add(&self, a: &Tracked, b: &Tracked) -> Result<Tracked, CkksError> {
        Ok(t2(a, b, self.sim.add(&a.meta, &b.meta)?))
    }
    fn sub(&self, a: &Tracked, b: &Tracked) -> Result<Tracked, CkksError> {
        Ok(t2(a, b, self.sim.sub(&a.meta, &b.meta)?))
    }
    fn add_const(&self, a: &Tracked, k: f64) -> Result<Tracked, CkksError> {
        Ok(t1(a, self.sim.add_const(&a.meta, k)?))
    }
    fn mul_const(&self, a: &Tracked, k: f64, s: f64) -> Result<Tracked, CkksError> {
        Ok(t1(a, self.sim.mul_const(&a.meta, k, s)?))
    }
    fn mul_int(&self, a: &Tracked, k: i64) -> Result<Tracked, CkksError> {
        Ok(t1(a, self.sim.mul_int(&a.meta, k)?))
    }
    fn mul_relin(&self, a: &Tracked, b: &Tracked) -> Result<Tracked, CkksError> {
        Ok(t2(a, b, self.sim.mul_relin(&a.meta, &b.meta)?))
    }
    fn rescale(&self, a: &Tracked) -> Result<Tracked, CkksError> {
        let m = self.sim.rescale(&a.meta)?;
        Ok(Tracked {
            meta: m,
            depth: a.depth + 1,
        })
    }
    fn drop_to_level(&self, a: &Tracked, level: usize) -> Result<Tracked, CkksError> {
        Ok(t1(a, self.sim.drop_to_level(&a.meta, level)?))
    }
    fn rotate(&self, a: &Tracked, r: i64) -> Result<Tracked, CkksError> {
        Ok(t1(a, self.sim.rotate(&a.meta, r)?))
    }
    fn rotate_hoisted(&self, a: &Tracked, rs: &[i64]) -> Result<Vec<Tracked>, CkksError> {
        Ok(self
            .sim
            .rotate_hoisted(&a.meta, rs)?
            .into_iter()
            .map(|m| t1(a, m))
            .collect())
    }
    fn conjugate(&self, a: &Tracked) -> Result<Tracked, CkksError> {
        Ok(t1(a, self.sim.conjugate(&a.meta)?))
    }
    fn mul_i(&self, a: &Tracked) -> Result<Tracked, CkksError> {
        Ok(t1(a, self.sim.mul_i(&a.meta)?))
    }
    fn with_scale(&self, a: &Tracked, scale: f64) -> Tracked {
        t1(a, self.sim.with_scale(&a.meta, scale))
    }
    fn with_slots(&self, a: &Tracked, slots: usize) -> Result<Tracked, CkksError> {
        Ok(t1(a, self.sim.with_slots(&a.meta, slots)?))
    }
    fn encode(&self, values: &[C64], level: usize, scale: f64) -> Result<SimCiphertext, CkksError> {
        self.sim.encode(values, level, scale)
    }
    fn mul_plain(&self, a: &Tracked, pt: &SimCiphertext) -> Result<Tracked, CkksError> {
        Ok(t1(a, self.sim.mul_plain(&a.meta, pt)?))
    }
    fn add_plain(&self, a: &Tracked, pt: &SimCiphertext) -> Result<Tracked, CkksError> {
        Ok(t1(a, self.sim.add_plain(&a.meta, pt)?))
    }
    fn mod_raise(&self, a: &Tracked, level: usize) -> Result<Tracked, CkksError> {
        Ok(t1(a, self.sim.mod_raise(&a.meta, level)?))
    }
    /// Lifts to the top compute level on the default scale, keeping the depth (a free bootstrap
    /// with no level of its own).
    fn refresh(&self, a: &Tracked, need: usize, _bound: f64) -> Result<Tracked, CkksError> {
        // The same spare level as `Refreshing`, so both see the same circuit.
        if a.meta.level > need {
            return Ok(*a);
        }
        let top = self.params().compute_top_level();
        if need > top {
            return Err(CkksError::LevelsExhausted(format!(
                "a stage needs {need} levels, the compute chain has {top}"
            )));
        }
        Ok(t1(a, self.sim.fresh(top, a.meta.slots)))
    }
}

/// Multiplicative depth of a circuit (its longest path of rescales), measured on `DepthProbe`
/// from `inputs` fresh ciphertexts of `slots` slots.
pub fn depth(
    params: &Arc<Parameters>,
    inputs: usize,
    slots: usize,
    run: impl Fn(&DepthProbe, &[Tracked]) -> Result<Vec<Tracked>, CkksError>,
) -> Result<usize, CkksError> {
    let sim = Simulator::new(params);
    let probe = DepthProbe::new(&sim);
    let x = vec![probe.track(sim.fresh(params.compute_top_level(), slots)); inputs];
    let y = run(&probe, &x)?;
    Ok(y.iter().map(|t| t.depth).max().unwrap_or(0))
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
