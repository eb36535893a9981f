//! CKKS bootstrapping (DESIGN D6): ModRaise under a sparse ephemeral secret (encapsulation),
//! CoeffsToSlots, EvalMod, SlotsToCoeffs. Written once against `Circuit`, so it runs on any
//! backend and on the simulator.
//!
//! Levels, bottom-up: the compute levels 1..=L (where the output lands), then SlotsToCoeffs, then
//! EvalMod, then CoeffsToSlots at the top. The input is read at level 0 with scale D0; Q_0 / D0 is
//! the message ratio 2^r that EvalMod's sine approximation works with (r = 17 in the N=2^16
//! preset: the sine error is ~2^-31 and needs no arcsine).
//!
//! 1. ModRaise: switch to the sparse secret s' at level 0, lift the coefficients centered to the
//!    top modulus, switch back to s. The plaintext becomes t = D0 m + Q_0 I with |I| <= K.
//! 2. Sparse slots only: the trace (rotations by n, 2n, ..., N/4) keeps the coefficients of the
//!    slot subring, times N/(2n).
//! 3. CoeffsToSlots: the coefficients t/Q_0, divided by 2K (and by the trace factor), land in the
//!    slots (bit-reversed); conjugation splits real and imaginary parts: x / K with x = t / Q_0.
//! 4. EvalMod on x/K: c = cos(2 pi (x - 1/4) / 2^d) by a Chebyshev polynomial on [-1, 1], then d
//!    double angles c <- 2c^2 - 1 give sin(2 pi x) ~ 2 pi D0 m / Q_0; optional arcsine.
//! 5. SlotsToCoeffs puts the values back; reading the result at scale S 2 pi D0 / Q_0 instead of
//!    S makes it m again, at the compute level's default scale exactly.

pub mod dft;
pub mod refresh;

pub use refresh::Refreshing;

use std::f64::consts::PI;
use std::sync::Arc;

use super::circuit::Circuit;
use super::keys::{EvaluationKeys, KeyGenerator, SecretKey};
use super::linear_transform::{rotations_for, DiagMatrix, LinearTransform};
use super::params::{Parameters, ParametersLiteral};
use super::polynomial::{evaluate, Chebyshev};
use super::simulator::Simulator;
use super::CkksError;

/// How to bootstrap (Lattigo-style literal: every field documents its default).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BootstrapLiteral {
    /// log2 of the number of slots bootstrapped. Default: log_n - 1 (full slots).
    pub log_slots: Option<u32>,
    /// Levels spent by CoeffsToSlots (FFT stages are merged into this many matrices). Default 4.
    pub cts_levels: usize,
    /// Bits of each CoeffsToSlots level. Default 58.
    pub cts_log_q: u32,
    /// Levels spent by SlotsToCoeffs. Default 3.
    pub stc_levels: usize,
    /// Bits of each SlotsToCoeffs level. Default 50.
    pub stc_log_q: u32,
    /// Bound K on the integer part |I| that ModRaise adds: EvalMod is exact on [-K, K]. With an
    /// ephemeral secret of weight 32, |I| <= 16 fails with probability below 2^-60. Default 16.
    pub k: u32,
    /// Chebyshev degree of the scaled cosine. Default 62 (depth 6).
    pub mod_degree: usize,
    /// Double-angle steps after the cosine. Default 2.
    pub double_angle: u32,
    /// Degree of the arcsine correction (0: none; 3, 5 or 7). Default 0.
    pub arcsine_degree: usize,
    /// Bits of each EvalMod level. Default 60.
    pub eval_mod_log_q: u32,
    /// Hamming weight of the ephemeral sparse secret of encapsulation (0: raise under the dense
    /// secret, only sensible for sparse main secrets). Default 32.
    pub ephemeral_hamming_weight: usize,
    /// Encode the CoeffsToSlots diagonals at each use instead of holding them: they carry the
    /// top level's limbs, so this saves the most memory (~1.3 GB at N = 2^16) for ~10% more
    /// time. Default true.
    pub lazy_cts: bool,
    /// The same for SlotsToCoeffs (low levels, smaller). Default false.
    pub lazy_stc: bool,
}

impl Default for BootstrapLiteral {
    fn default() -> Self {
        BootstrapLiteral {
            log_slots: None,
            cts_levels: 4,
            cts_log_q: 58,
            stc_levels: 3,
            stc_log_q: 50,
            k: 16,
            mod_degree: 62,
            double_angle: 2,
            arcsine_degree: 0,
            eval_mod_log_q: 60,
            ephemeral_hamming_weight: 32,
            lazy_cts: true,
            lazy_stc: false,
        }
    }
}

fn depth_of(degree: usize) -> usize {
    (usize::BITS - degree.max(1).leading_zeros()) as usize
}

impl BootstrapLiteral {
    /// Levels EvalMod spends (cosine, double angles, arcsine).
    pub fn eval_mod_levels(&self) -> usize {
        depth_of(self.mod_degree)
            + self.double_angle as usize
            + if self.arcsine_degree > 0 {
                depth_of(self.arcsine_degree)
            } else {
                0
            }
    }

    /// Levels bootstrapping spends above the compute levels.
    pub fn levels(&self) -> usize {
        self.cts_levels + self.eval_mod_levels() + self.stc_levels
    }

    /// The parameter literal for a residual (compute) literal: its levels plus the bootstrapping
    /// levels stacked on top.
    pub fn parameters_literal(&self, residual: &ParametersLiteral) -> ParametersLiteral {
        let mut extra = vec![self.stc_log_q; self.stc_levels];
        extra.extend(vec![self.eval_mod_log_q; self.eval_mod_levels()]);
        extra.extend(vec![self.cts_log_q; self.cts_levels]);
        let mut lit = residual.clone();
        lit.extra_log_q = extra;
        lit
    }

    /// Checks the literal against the parameters and returns the slot count.
    ///
    /// Errors (`InvalidParameters`): log_slots outside 0..=log N - 1, no CoeffsToSlots or
    /// SlotsToCoeffs level, k = 0, mod_degree < 2, arcsine degree not in {0, 3, 5, 7}, level
    /// sizes outside 20..=62 bits.
    fn slots(&self, p: &Parameters) -> Result<usize, CkksError> {
        let log = self.log_slots.unwrap_or(p.log_n() - 1);
        if log > p.log_n() - 1 {
            return Err(CkksError::InvalidParameters(format!(
                "log_slots = {log} must be in 0..={}",
                p.log_n() - 1
            )));
        }
        self.validate()?;
        Ok(1 << log)
    }

    /// The checks of `slots` that need no parameters.
    pub fn validate(&self) -> Result<(), CkksError> {
        let bad = |m: String| Err(CkksError::InvalidParameters(m));
        if self.cts_levels == 0 || self.stc_levels == 0 {
            return bad(format!(
                "cts_levels = {} and stc_levels = {} must both be at least 1",
                self.cts_levels, self.stc_levels
            ));
        }
        if self.k == 0 || self.mod_degree < 2 || ![0, 3, 5, 7].contains(&self.arcsine_degree) {
            return bad(format!(
                "EvalMod needs k >= 1 (got {}), mod_degree >= 2 (got {}) and arcsine_degree in {{0, 3, 5, 7}} (got {})",
                self.k, self.mod_degree, self.arcsine_degree
            ));
        }
        for (what, bits) in [
            ("cts_log_q", self.cts_log_q),
            ("stc_log_q", self.stc_log_q),
            ("eval_mod_log_q", self.eval_mod_log_q),
        ] {
            if !(20..=62).contains(&bits) {
                return bad(format!("{what} = {bits} must be in 20..=62 bits"));
            }
        }
        Ok(())
    }
}

/// A named bootstrapping preset: parameters (compute levels plus bootstrapping levels) and the
/// circuit literal.
#[derive(Clone, Debug)]
pub struct BootstrapPreset {
    pub params: ParametersLiteral,
    pub boot: BootstrapLiteral,
}

/// Residual literals of the bootstrapping presets; names are completed with log QP.
fn preset_list() -> Vec<(ParametersLiteral, BootstrapLiteral)> {
    let n16 = ParametersLiteral {
        name: "N16_L9_S50_boot".into(),
        log_n: 16,
        log_q0: 60,
        levels: 9,
        log_scale: 50,
        dnum: 5,
        extra_special_primes: 1,
        ..Default::default()
    };
    // Small and fast for tests: NOT secure. Same recipe at N = 2^12, 2 compute levels.
    let n12 = ParametersLiteral {
        name: "N12_L2_S50_boot_insecure".into(),
        log_n: 12,
        log_q0: 60,
        levels: 2,
        log_scale: 50,
        dnum: 4,
        extra_special_primes: 1,
        ..Default::default()
    };
    // The same with 9 compute levels, like the N=2^16 preset: for tests of encrypted layers
    // and blocks that bootstrap between stages. NOT secure.
    let n12_deep = ParametersLiteral {
        name: "N12_L9_S50_boot_insecure".into(),
        levels: 9,
        ..n12.clone()
    };
    let n12_boot = BootstrapLiteral {
        cts_levels: 3,
        stc_levels: 2,
        ..Default::default()
    };
    vec![
        (n16, BootstrapLiteral::default()),
        (n12, n12_boot.clone()),
        (n12_deep, n12_boot),
    ]
}

/// The bootstrapping presets with their full parameter literals. Names spell N, compute levels,
/// scale bits and log QP: `N16_QP1767_L9_S50_boot` bootstraps 2^15 slots and leaves 9 levels.
pub fn presets() -> Vec<BootstrapPreset> {
    // Naming a set needs its log QP, which needs the prime search (~0.5 s at N = 2^16): once per
    // process, not at every lookup.
    static PRESETS: std::sync::OnceLock<Vec<BootstrapPreset>> = std::sync::OnceLock::new();
    PRESETS
        .get_or_init(|| {
            preset_list()
                .into_iter()
                .map(|(residual, boot)| {
                    let mut params = boot.parameters_literal(&residual);
                    let qp = Parameters::new(ParametersLiteral {
                        name: format!("{}_insecure", params.name),
                        ..params.clone()
                    })
                    .map(|p| p.log_qp.round() as u32)
                    .unwrap_or(0);
                    params.name = params.name.replacen('_', &format!("_QP{qp}_"), 1);
                    BootstrapPreset { params, boot }
                })
                .collect()
        })
        .clone()
}

/// A bootstrapping preset by name.
pub fn preset(name: &str) -> Result<BootstrapPreset, CkksError> {
    presets()
        .into_iter()
        .find(|p| p.params.name == name)
        .ok_or_else(|| {
            CkksError::InvalidParameters(format!(
                "`{name}` is not a bootstrapping preset (bootstrapping presets: {}; `umbra params` marks them)",
                presets()
                    .iter()
                    .map(|p| p.params.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// Level layout of a bootstrapping parameter set.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Where the output lands (top compute level).
    out: usize,
    /// Top level of SlotsToCoeffs.
    stc_top: usize,
    /// Top level of EvalMod.
    em_top: usize,
    /// Top level (CoeffsToSlots starts here).
    top: usize,
}

fn layout(p: &Parameters, lit: &BootstrapLiteral) -> Result<Layout, CkksError> {
    let out = p.compute_top_level();
    let need = lit.levels();
    if p.max_level() != out + need {
        return Err(CkksError::InvalidParameters(format!(
            "the parameters have {} levels above the compute levels, this bootstrapping circuit needs {need} (build them with BootstrapLiteral::parameters_literal)",
            p.max_level() - out
        )));
    }
    Ok(Layout {
        out,
        stc_top: out + lit.stc_levels,
        em_top: out + lit.stc_levels + lit.eval_mod_levels(),
        top: p.max_level(),
    })
}

/// The DFT matrices and vector length for `n` slots: n for full slots, 2n for sparse packing.
/// Whether packing is sparse is decided by n < N/2, never by the length: at n = N/4 the sparse
/// length 2n equals N/2.
fn matrices(
    p: &Parameters,
    lit: &BootstrapLiteral,
    n: usize,
) -> Result<(usize, Vec<DiagMatrix>, Vec<DiagMatrix>), CkksError> {
    let l = if n == p.max_slots() { n } else { 2 * n };
    let trace = (p.max_slots() / n) as f64;
    let factor = 1.0 / (2.0 * lit.k as f64 * trace);
    let cts = dft::coeffs_to_slots(n, l, lit.cts_levels, factor)?;
    let stc = dft::slots_to_coeffs(n, l, lit.stc_levels)?;
    Ok((l, cts, stc))
}

/// Rotations whose Galois keys bootstrapping needs, each with the highest level it is used at
/// (SlotsToCoeffs keys serve low levels only and are much smaller). Conjugation is needed too, at
/// `conjugation_level`.
pub fn rotations_with_levels(
    p: &Parameters,
    lit: &BootstrapLiteral,
) -> Result<Vec<(i64, usize)>, CkksError> {
    let n = lit.slots(p)?;
    let lay = layout(p, lit)?;
    let (_, cts, stc) = matrices(p, lit, n)?;
    let mut r: Vec<(i64, usize)> = Vec::new();
    for (i, m) in cts.iter().enumerate() {
        r.extend(rotations_for(m).into_iter().map(|x| (x, lay.top - i)));
    }
    for (i, m) in stc.iter().enumerate() {
        r.extend(rotations_for(m).into_iter().map(|x| (x, lay.stc_top - i)));
    }
    if n < p.max_slots() {
        r.push((n as i64, lay.em_top));
        let mut step = n;
        while step < p.max_slots() {
            r.push((step as i64, lay.top));
            step *= 2;
        }
    }
    Ok(r)
}

/// The level conjugation is used at (right after CoeffsToSlots).
pub fn conjugation_level(p: &Parameters, lit: &BootstrapLiteral) -> Result<usize, CkksError> {
    Ok(layout(p, lit)?.em_top)
}

/// The rotations of `rotations_with_levels`, without levels.
pub fn rotations(p: &Parameters, lit: &BootstrapLiteral) -> Result<Vec<i64>, CkksError> {
    let mut r: Vec<i64> = rotations_with_levels(p, lit)?
        .into_iter()
        .map(|(x, _)| x)
        .collect();
    r.sort_unstable();
    r.dedup();
    Ok(r)
}

/// Everything the server needs to bootstrap: relinearization key, the Galois keys (each only
/// as large as the levels it serves), conjugation, and the encapsulation keys.
/// `extra_rotations` get full keys (for the circuit around the bootstrap).
pub fn gen_bootstrap_keys(
    kg: &mut KeyGenerator,
    sk: &SecretKey,
    p: &Parameters,
    lit: &BootstrapLiteral,
    extra_rotations: &[i64],
) -> Result<EvaluationKeys, CkksError> {
    let extra: Vec<(i64, usize)> = extra_rotations
        .iter()
        .map(|&r| (r, p.max_level()))
        .collect();
    gen_bootstrap_keys_at(kg, sk, p, lit, &extra)
}

/// As `gen_bootstrap_keys`, with each extra rotation's key sized for the highest level it is used
/// at (a circuit between bootstraps runs at the compute levels: `Parameters::compute_top_level`).
pub fn gen_bootstrap_keys_at(
    kg: &mut KeyGenerator,
    sk: &SecretKey,
    p: &Parameters,
    lit: &BootstrapLiteral,
    extra_rotations: &[(i64, usize)],
) -> Result<EvaluationKeys, CkksError> {
    let mut rots = rotations_with_levels(p, lit)?;
    rots.extend_from_slice(extra_rotations);
    let galois = kg.gen_galois_keys_at(sk, &rots, Some(conjugation_level(p, lit)?));
    let encapsulation = (lit.ephemeral_hamming_weight > 0)
        .then(|| kg.gen_encapsulation_keys(sk, lit.ephemeral_hamming_weight));
    Ok(EvaluationKeys {
        relin: Some(kg.gen_relin_key(sk)),
        galois,
        encapsulation,
        params_hash: p.hash,
    })
}

/// A prepared bootstrapping circuit: DFT matrices encoded at their levels, EvalMod polynomials.
pub struct Bootstrapper<P> {
    params: Arc<Parameters>,
    lit: BootstrapLiteral,
    layout: Layout,
    slots: usize,
    /// Vector length of the DFTs (slots, or 2 slots for sparse packing).
    dft_len: usize,
    /// Sparse packing (slots < N/2): trace before CoeffsToSlots, real and imaginary parts side by
    /// side in one ciphertext. Not `dft_len < N/2`: at N/4 slots the sparse length is N/2.
    sparse: bool,
    cts: Vec<LinearTransform<P>>,
    stc: Vec<LinearTransform<P>>,
    cosine: Chebyshev,
    arcsine: Option<Chebyshev>,
}

impl<P> Bootstrapper<P> {
    /// Prepares the circuit on `c` (an `Evaluator`, or a `Simulator` to plan), after checking on
    /// the simulator that it fits the parameters' levels.
    pub fn new<C: Circuit<Pt = P>>(c: &C, lit: &BootstrapLiteral) -> Result<Self, CkksError> {
        let p = c.params().clone();
        let layout = layout(&p, lit)?;
        let n = lit.slots(&p)?;
        let (l, cts_m, stc_m) = matrices(&p, lit, n)?;
        let q0 = p.rescale_factor(0);
        // Scales: CoeffsToSlots keeps Q_0 until its last level, which lands on EvalMod's first
        // prime group; SlotsToCoeffs keeps its input scale until its last level, which lands on
        // the compute level's default scale.
        let mut cts = Vec::with_capacity(cts_m.len());
        let mut scale = q0;
        for (i, m) in cts_m.iter().enumerate() {
            let level = layout.top - i;
            let q = p.rescale_factor(level);
            let pt_scale = if i + 1 == cts_m.len() {
                p.rescale_factor(layout.em_top) * q / scale
            } else {
                q
            };
            cts.push(LinearTransform::new(c, m, level, pt_scale, lit.lazy_cts)?);
            scale = scale * pt_scale / q;
        }
        let r = 2f64.powi(lit.double_angle as i32);
        let k = lit.k as f64;
        let cosine = Chebyshev::interpolate(
            |u| (2.0 * PI * (k * u - 0.25) / r).cos(),
            -1.0,
            1.0,
            lit.mod_degree,
        );
        let arcsine = (lit.arcsine_degree > 0).then(|| arcsine_series(lit.arcsine_degree));
        // SlotsToCoeffs: the input scale is known only after EvalMod; simulate to find it.
        let mut boot = Bootstrapper {
            params: p.clone(),
            lit: lit.clone(),
            layout,
            slots: n,
            dft_len: l,
            sparse: n < p.max_slots(),
            cts,
            stc: Vec::new(),
            cosine,
            arcsine,
        };
        let sim = Simulator::new(&p);
        let probe = sim.fresh(layout.em_top, l);
        let probe = sim.with_scale(&probe, p.rescale_factor(layout.em_top));
        let after = boot.eval_mod(&sim, &probe)?;
        if after.level != layout.stc_top {
            return Err(CkksError::InvalidParameters(format!(
                "EvalMod ends at level {}, expected {}",
                after.level, layout.stc_top
            )));
        }
        let mut scale = after.scale;
        for (i, m) in stc_m.iter().enumerate() {
            let level = layout.stc_top - i;
            let q = p.rescale_factor(level);
            let pt_scale = if i + 1 == stc_m.len() {
                // Reading the input at scale * 2 pi D0 / Q0 is done after the last level, so the
                // last plaintext scale targets default_scale(out) * Q0 / (2 pi D0) with D0 the
                // level-0 default scale; `bootstrap` corrects for the actual input scale.
                let d0 = p.default_scales[0];
                p.default_scales[layout.out] * q0 / (2.0 * PI * d0) * q / scale
            } else {
                q
            };
            boot.stc
                .push(LinearTransform::new(c, m, level, pt_scale, lit.lazy_stc)?);
            scale = scale * pt_scale / q;
        }
        Ok(boot)
    }

    /// Slots this circuit bootstraps.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The level outputs land on (levels left for computation).
    pub fn output_level(&self) -> usize {
        self.layout.out
    }

    /// Refreshes a ciphertext (any level; read at level 0) to the top compute level at its
    /// default scale. Messages must satisfy |m| <= 1 for the stated precision (|m| up to ~8 works
    /// with less).
    pub fn bootstrap<C: Circuit<Pt = P>>(&self, c: &C, ct: &C::Ct) -> Result<C::Ct, CkksError> {
        self.bootstrap_gain(c, ct, false)
    }

    /// `bootstrap` returning m / 2 (on the default scale, at no cost: EvalMod's last double
    /// angle computes (2y^2 - 1) / 2 as y^2 - 1/2, or the arcsine's coefficients are halved).
    /// Two real messages bootstrapped as one complex one come apart as a = z + conj(z) from it
    /// (`Refreshing::bootstrap_pair`).
    pub fn bootstrap_halved<C: Circuit<Pt = P>>(
        &self,
        c: &C,
        ct: &C::Ct,
    ) -> Result<C::Ct, CkksError> {
        self.bootstrap_gain(c, ct, true)
    }

    fn bootstrap_gain<C: Circuit<Pt = P>>(
        &self,
        c: &C,
        ct: &C::Ct,
        half: bool,
    ) -> Result<C::Ct, CkksError> {
        let d0 = c.scale(ct);
        let x = self.mod_raise(c, ct)?;
        let parts = self.coeffs_to_slots(c, &x)?;
        let ys = parts
            .iter()
            .map(|u| self.eval_mod_gain(c, u, half))
            .collect::<Result<Vec<_>, _>>()?;
        let y = Self::recombine(c, &ys)?;
        self.slots_to_coeffs(c, &y, d0)
    }

    /// Steps 1-2: ModRaise to the top level, read at scale Q_0 (slots hold t / Q_0), and for
    /// sparse packing the trace onto the slot subring.
    pub fn mod_raise<C: Circuit<Pt = P>>(&self, c: &C, ct: &C::Ct) -> Result<C::Ct, CkksError> {
        let p = &self.params;
        if c.slots(ct) != self.slots {
            return Err(CkksError::SlotMismatch(c.slots(ct), self.slots));
        }
        let raised = c.mod_raise(ct, self.layout.top)?;
        let mut x = c.with_scale(&raised, p.rescale_factor(0));
        if self.sparse {
            let mut step = self.slots;
            while step < p.max_slots() {
                let r = c.rotate(&x, step as i64)?;
                x = c.add(&x, &r)?;
                step *= 2;
            }
        }
        Ok(x)
    }

    /// Step 3: CoeffsToSlots and the split into real slot vectors x / K (bit-reversed order):
    /// (real, imaginary) parts for full slots, or both side by side in one ciphertext.
    pub fn coeffs_to_slots<C: Circuit<Pt = P>>(
        &self,
        c: &C,
        x: &C::Ct,
    ) -> Result<Vec<C::Ct>, CkksError> {
        let mut u = c.with_slots(x, self.dft_len)?;
        for t in &self.cts {
            u = t.apply(c, &u)?;
        }
        let conj = c.conjugate(&u)?;
        let re = c.add(&u, &conj)?;
        let im = c.mul_i(&c.sub(&conj, &u)?)?;
        if !self.sparse {
            Ok(vec![re, im])
        } else {
            Ok(vec![c.add(&re, &c.rotate(&im, self.slots as i64)?)?])
        }
    }

    /// Step 4 on the output of `coeffs_to_slots`: EvalMod on each part, recombined into one
    /// ciphertext (real + i imaginary for full slots).
    pub fn eval_mod_parts<C: Circuit<Pt = P>>(
        &self,
        c: &C,
        parts: Vec<C::Ct>,
    ) -> Result<C::Ct, CkksError> {
        let ys = parts
            .iter()
            .map(|u| self.eval_mod(c, u))
            .collect::<Result<Vec<_>, _>>()?;
        Self::recombine(c, &ys)
    }

    fn recombine<C: Circuit>(c: &C, ys: &[C::Ct]) -> Result<C::Ct, CkksError> {
        match ys {
            [w] => Ok(w.clone()),
            [re, im] => c.add(re, &c.mul_i(im)?),
            _ => Err(CkksError::Invalid("EvalMod takes one or two parts".into())),
        }
    }

    /// Step 5: SlotsToCoeffs, then the result read as m at the compute level's default scale
    /// (times d0 / default level-0 scale when the input's scale d0 differs from the default).
    pub fn slots_to_coeffs<C: Circuit<Pt = P>>(
        &self,
        c: &C,
        y: &C::Ct,
        d0: f64,
    ) -> Result<C::Ct, CkksError> {
        let p = &self.params;
        let mut v = y.clone();
        for t in &self.stc {
            v = t.apply(c, &v)?;
        }
        let target = p.default_scales[self.layout.out];
        let v = c.with_scale(&v, target * d0 / p.default_scales[0]);
        c.with_slots(&v, self.slots)
    }

    /// EvalMod on real slot values x / K: sin(2 pi x) (the 1/(2 pi) and Q_0 / D0 factors are
    /// applied by reading the result at another scale), with optional arcsine.
    pub fn eval_mod<C: Circuit>(&self, c: &C, u: &C::Ct) -> Result<C::Ct, CkksError> {
        self.eval_mod_gain(c, u, false)
    }

    /// `eval_mod`, halved when `half` (free: see `bootstrap_halved`).
    fn eval_mod_gain<C: Circuit>(&self, c: &C, u: &C::Ct, half: bool) -> Result<C::Ct, CkksError> {
        let p = c.params().clone();
        let level_after_cos = c.level(u) - depth_of(self.lit.mod_degree);
        let cosine;
        let poly = if half && self.lit.double_angle == 0 && self.arcsine.is_none() {
            cosine = halved(&self.cosine);
            &cosine
        } else {
            &self.cosine
        };
        let mut y = evaluate(c, u, poly, p.default_scales[level_after_cos])?;
        for i in 0..self.lit.double_angle {
            let sq = c.mul_relin(&y, &y)?;
            y = if half && self.arcsine.is_none() && i + 1 == self.lit.double_angle {
                c.rescale(&c.add_const(&sq, -0.5)?)?
            } else {
                let twice = c.mul_int(&sq, 2)?;
                c.rescale(&c.add_const(&twice, -1.0)?)?
            };
        }
        if let Some(a) = &self.arcsine {
            let level_after = c.level(&y) - depth_of(self.lit.arcsine_degree);
            let s = c.scale(&y);
            let a = if half { halved(a) } else { a.clone() };
            y = evaluate(c, &y, &a, s.min(p.default_scales[level_after]))?;
        }
        Ok(y)
    }
}

/// `poly` / 2.
fn halved(poly: &Chebyshev) -> Chebyshev {
    Chebyshev {
        coeffs: poly.coeffs.iter().map(|c| c / 2.0).collect(),
        ..poly.clone()
    }
}

/// arcsin(c) by its Taylor series to `degree` (accurate near 0, where sin(2 pi x) lies), written
/// in the Chebyshev basis on [-1, 1].
fn arcsine_series(degree: usize) -> Chebyshev {
    // Taylor coefficients of arcsin: (2k)! / (4^k (k!)^2 (2k + 1)).
    let mut mono = vec![0.0; degree + 1];
    let mut coef = 1.0;
    for k in 0..=(degree - 1) / 2 {
        if k > 0 {
            coef *= (2 * k - 1) as f64 / (2 * k) as f64;
        }
        mono[2 * k + 1] = coef / (2 * k + 1) as f64;
    }
    Chebyshev {
        coeffs: monomial_to_chebyshev(&mono),
        a: -1.0,
        b: 1.0,
    }
}

/// Monomial coefficients -> Chebyshev coefficients (x^k = 2^(1-k) sum_j binom(k, j) T_|k-2j| / 2).
fn monomial_to_chebyshev(mono: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; mono.len()];
    for (k, &a) in mono.iter().enumerate() {
        if a == 0.0 {
            continue;
        }
        let mut binom = 1.0;
        for j in 0..=k {
            let idx = (k as i64 - 2 * j as i64).unsigned_abs() as usize;
            out[idx] += a * binom / 2f64.powi(k as i32);
            binom = binom * (k - j) as f64 / (j + 1) as f64;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arcsine_series_matches_arcsin_near_zero() {
        let a = arcsine_series(7);
        for &x in &[-0.01, 0.003, 0.02] {
            assert!((a.eval(x) - f64::asin(x)).abs() < 1e-15);
        }
    }

    #[test]
    fn scaled_cosine_is_accurate_at_default_degree() {
        let lit = BootstrapLiteral::default();
        let r = 2f64.powi(lit.double_angle as i32);
        let k = lit.k as f64;
        let f = |u: f64| (2.0 * PI * (k * u - 0.25) / r).cos();
        let c = Chebyshev::interpolate(f, -1.0, 1.0, lit.mod_degree);
        // f64 itself computes f to ~3e-15 (its argument reaches 25); the approximation error
        // is below that (2^-46 is what EvalMod needs).
        assert!(c.max_error(f, 20001) < 1e-13, "{}", c.max_error(f, 20001));
    }
}
