//! Argmax over logits, returning an encrypted one-hot vector (NEXUS's tournament).
//!
//! **Layout: a plain slot vector.** Logit j sits in slot j of one ciphertext of n slots, n the
//! next power of two above the vocabulary (sparse packing, so rotations are cyclic in n); the
//! client fills slots past V with -bound (`pack_logits`). A feature-major layout with T = 1 is
//! the same vector but with n = N/2 slots and zero padding (zero can beat negative logits), so the
//! caller re-encrypts or masks into this form; the LM head's output is one token's row anyway.
//!
//! Steps: z = x / (2 bound) puts logits in [-1/2, 1/2] and differences in [-1, 1] (1 level);
//! log2(n) rounds of max(a, b) = (a + b)/2 + (a - b)/2 sign(a - b) against the rotation by n/2,
//! n/4, ..., 1 leave the max in every slot (`sign` levels + 1 each); then the 0/1 step of
//! z - max + gap/2 is 1 at the argmax only. Levels: 1 + log2(n) (S + 1) + S_step.
//!
//! The top logit must beat every other by at least `gap` (in logit units): near-ties give a
//! vector that is not one-hot (values between 0 and 1 on the tied slots).

use super::approx::Sign;
use super::chain::{metas, to_level};
use crate::ckks::{Circuit, CkksError, Simulator};

#[derive(Clone, Debug)]
pub struct ArgmaxOptions {
    /// Logits lie in [-bound, bound].
    pub bound: f64,
    /// The top logit exceeds every other by at least this much.
    pub gap: f64,
    /// sign on [-1, 1] for differences of normalized logits (gap / (2 bound)).
    pub sign: Sign,
    /// The final 0/1 step (gap / (4 bound) with a margin).
    pub step: Sign,
}

impl ArgmaxOptions {
    /// `bits`: how close the comparisons' signs get to +-1. Errors: as `validate`.
    pub fn new(bound: f64, gap: f64, bits: f64) -> Result<Self, CkksError> {
        Self::check(bound, gap)?;
        let g = gap / (2.0 * bound);
        let o = ArgmaxOptions {
            bound,
            gap,
            sign: Sign::new(g, bits)?,
            step: Sign::new(0.4 * g, bits)?.into_step(),
        };
        o.validate()?;
        Ok(o)
    }

    fn check(bound: f64, gap: f64) -> Result<(), CkksError> {
        if !(bound.is_finite() && bound > 0.0 && gap > 0.0 && gap < 2.0 * bound) {
            return Err(CkksError::Invalid(format!(
                "argmax: bound {bound}, gap {gap} (need 0 < gap < 2 bound, bound finite)"
            )));
        }
        Ok(())
    }

    /// Errors (`Invalid`): a bound that is not finite and positive, gap not in (0, 2 bound),
    /// `sign` or `step` failing `Sign::validate`, a `step` that is not a 0/1 step.
    pub fn validate(&self) -> Result<(), CkksError> {
        Self::check(self.bound, self.gap)?;
        self.sign.validate()?;
        self.step.validate()?;
        if self.sign.step || !self.step.step {
            return Err(CkksError::Invalid(
                "argmax: `sign` must be a sign and `step` a 0/1 step (`Sign::into_step`)".into(),
            ));
        }
        Ok(())
    }

    fn delta(&self) -> f64 {
        0.5 * self.gap / (2.0 * self.bound)
    }
}

/// Logits padded to the next power of two with -bound (the slot vector to encrypt). Errors: no
/// logits, a bound that is not finite and positive, a logit outside [-bound, bound].
pub fn pack_logits(logits: &[f64], bound: f64) -> Result<Vec<f64>, CkksError> {
    if !(bound.is_finite() && bound > 0.0) {
        return Err(CkksError::Invalid(format!("argmax: bound {bound}")));
    }
    if logits.is_empty() {
        return Err(CkksError::Invalid("argmax of no logits".into()));
    }
    if let Some(v) = logits.iter().find(|v| v.is_nan() || v.abs() > bound) {
        return Err(CkksError::OutOfRange(format!(
            "logit {v} outside [-{bound}, {bound}]"
        )));
    }
    let mut v = logits.to_vec();
    v.resize(logits.len().next_power_of_two(), -bound);
    Ok(v)
}

/// The row max by tournament: every slot ends with the max of all n slots (values in [-1/2,
/// 1/2], differences in [-1, 1]).
pub fn row_max<C: Circuit>(c: &C, z: &C::Ct, sign: &Sign) -> Result<C::Ct, CkksError> {
    let mut a = z.clone();
    for r in rotations(c.slots(z)) {
        a = c.refresh(&a, 2, 0.5)?;
        let b = c.rotate(&a, r)?;
        let d = c.sub(&a, &b)?;
        let s = c.refresh(&sign.evaluate(c, &d)?, 1, 1.0)?;
        let ls = c.level(&s);
        if ls == 0 || c.level(&d) < 2 {
            return Err(CkksError::LevelsExhausted("argmax: no level left".into()));
        }
        // s is below d without bootstrapping; under `Refreshing` it may be above.
        let half_d = to_level(c, &d, 0.5, ls.min(c.level(&d) - 1))?;
        let prod = super::chain::mul(c, &half_d, &s)?;
        let mean = to_level(c, &c.add(&a, &b)?, 0.5, c.level(&prod))?;
        a = c.add(&mean, &prod)?;
    }
    Ok(a)
}

fn argmax_impl<C: Circuit>(c: &C, x: &C::Ct, o: &ArgmaxOptions) -> Result<C::Ct, CkksError> {
    let x = c.refresh(x, 1, o.bound)?;
    let l = c.level(&x);
    if l == 0 {
        return Err(CkksError::LevelsExhausted("argmax at level 0".into()));
    }
    let z = to_level(c, &x, 1.0 / (2.0 * o.bound), l - 1)?;
    let m = row_max(c, &z, &o.sign)?;
    let w = if c.level(&z) > c.level(&m) {
        c.sub(&to_level(c, &z, 1.0, c.level(&m))?, &m)?
    } else {
        super::chain::add_aligned(c, &z, &c.mul_int(&m, -1)?)?
    };
    let w = c.add_const(&w, o.delta())?;
    o.step.evaluate(c, &w)
}

/// Encrypted argmax of a packed logit vector (see the module docs): one-hot, 1 at the argmax.
/// Rehearsed on the simulator first (`LevelsExhausted` before any ciphertext work). Errors:
/// `o.validate()`, too few levels.
pub fn argmax<C: Circuit>(c: &C, x: &C::Ct, o: &ArgmaxOptions) -> Result<C::Ct, CkksError> {
    o.validate()?;
    let meta = metas(c, std::slice::from_ref(x));
    argmax_impl(&Simulator::new(c.params()), &meta[0], o)?;
    argmax_impl(c, x, o)
}

/// `argmax` without the rehearsal (for circuits that bootstrap or rehearse a whole model).
pub fn argmax_in<C: Circuit>(c: &C, x: &C::Ct, o: &ArgmaxOptions) -> Result<C::Ct, CkksError> {
    o.validate()?;
    argmax_impl(c, x, o)
}

/// The f64 twin on the packed vector: the same normalization, tournament, polynomials and step.
pub fn argmax_twin(x: &[f64], o: &ArgmaxOptions) -> Result<Vec<f64>, CkksError> {
    o.validate()?;
    let n = x.len();
    if !n.is_power_of_two() {
        return Err(CkksError::Invalid(format!(
            "{n} slots: pack the logits with pack_logits"
        )));
    }
    if let Some(v) = x.iter().find(|v| v.is_nan() || v.abs() > o.bound) {
        return Err(CkksError::OutOfRange(format!(
            "logit {v} outside [-{}, {}]",
            o.bound, o.bound
        )));
    }
    let z: Vec<f64> = x.iter().map(|v| v / (2.0 * o.bound)).collect();
    let mut a = z.clone();
    for r in rotations(n) {
        let r = r as usize;
        a = (0..n)
            .map(|i| {
                let (ai, bi) = (a[i], a[(i + r) % n]);
                let d = ai - bi;
                0.5 * (ai + bi) + 0.5 * d * o.sign.twin_unchecked(d)
            })
            .collect();
    }
    Ok(z.iter()
        .zip(&a)
        .map(|(zi, m)| o.step.twin_unchecked(zi - m + o.delta()))
        .collect())
}

/// The exact one-hot (first maximum), padded to the packed length.
pub fn argmax_exact(logits: &[f64]) -> Vec<f64> {
    let n = logits.len().next_power_of_two();
    let mut v = vec![0.0; n];
    if let Some((i, _)) =
        logits
            .iter()
            .enumerate()
            .fold(None, |best: Option<(usize, f64)>, (i, &x)| match best {
                Some((_, b)) if b >= x => best,
                _ => Some((i, x)),
            })
    {
        v[i] = 1.0;
    }
    v
}

/// Rotations the tournament uses on n slots: n/2, n/4, ..., 1.
pub fn rotations(slots: usize) -> Vec<i64> {
    let mut r = Vec::new();
    let mut s = slots / 2;
    while s >= 1 {
        r.push(s as i64);
        s /= 2;
    }
    r
}

/// Levels the layer uses for n slots (rehearsed on the simulator from the top level).
pub fn depth(
    params: &std::sync::Arc<crate::ckks::Parameters>,
    slots: usize,
    o: &ArgmaxOptions,
) -> Result<usize, CkksError> {
    o.validate()?;
    let sim = Simulator::new(params);
    let top = params.max_level();
    let y = argmax_impl(&sim, &sim.fresh(top, slots), o)?;
    Ok(top - y.level)
}
