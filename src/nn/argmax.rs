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
//!
//! **More logits than slots** ([`argmax_multi`]: GPT-2's 50 257 logits in two ciphertexts of
//! 32 768): slot-wise max of the ciphertexts first (one comparison per extra ciphertext), then the
//! tournament inside one, then the step on each. Padding slots (past the logit count) are set to
//! -bound by a plaintext addition. **The guarantee and ties**: the one-hot is right when the top
//! logit leads every other by at least `gap`. Logits within about gap/10 of the maximum (an exact
//! tie among them) come out near 1 like the winner; between that and a gap below, a slot may land
//! anywhere in [0, 1]. The client's rule: the lowest id above 1/2 (the plaintext model's `argmax`
//! also takes the lowest id on an exact tie), so a near-tie may pick a runner-up.

use super::approx::Sign;
use super::chain::{metas, to_level};
use crate::ckks::scale::same_scale;
use crate::ckks::{Circuit, CkksError, Simulator};
use crate::math::fft::C64;

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

/// max(a, b) = (a + b)/2 + (a - b)/2 sign(a - b) slot-wise (values in [-1/2, 1/2]); `b` at
/// `a`'s level.
fn max2<C: Circuit>(c: &C, a: &C::Ct, b: &C::Ct, sign: &Sign) -> Result<C::Ct, CkksError> {
    let d = c.sub(a, b)?;
    let s = c.refresh(&sign.evaluate(c, &d)?, 1, 1.0)?;
    let ls = c.level(&s);
    if ls == 0 || c.level(&d) < 2 {
        return Err(CkksError::LevelsExhausted("argmax: no level left".into()));
    }
    // s is below d without bootstrapping; under `Refreshing` it may be above.
    let half_d = to_level(c, &d, 0.5, ls.min(c.level(&d) - 1))?;
    let prod = super::chain::mul(c, &half_d, &s)?;
    let mean = to_level(c, &c.add(a, b)?, 0.5, c.level(&prod))?;
    c.add(&mean, &prod)
}

/// The row max by tournament: every slot ends with the max of all n slots (values in [-1/2,
/// 1/2], differences in [-1, 1]).
pub fn row_max<C: Circuit>(c: &C, z: &C::Ct, sign: &Sign) -> Result<C::Ct, CkksError> {
    let mut a = z.clone();
    for r in rotations(c.slots(z)) {
        a = c.refresh(&a, 2, 0.5)?;
        let b = c.rotate(&a, r)?;
        a = max2(c, &a, &b, sign)?;
    }
    Ok(a)
}

/// Encrypted argmax over `count` logits spread over `x` (logit v at slot v mod S of ciphertext
/// v / S, S = every ciphertext's slots, as `nn::lm_head` writes them; slots past `count` are
/// ignored): one 0/1 vector per ciphertext, 1 at the argmax (module docs: ties). Errors:
/// `o.validate()`, no ciphertext, `count` not in (S (cts - 1), S cts], slot counts that differ,
/// too few levels.
pub fn argmax_multi<C: Circuit>(
    c: &C,
    x: &[C::Ct],
    count: usize,
    o: &ArgmaxOptions,
) -> Result<Vec<C::Ct>, CkksError> {
    o.validate()?;
    let s = multi_slots(x.iter().map(|ct| c.slots(ct)).collect(), count)?;
    let pad: Vec<C64> = (0..s)
        .map(|i| {
            C64::new(
                if (x.len() - 1) * s + i >= count {
                    -o.bound
                } else {
                    0.0
                },
                0.0,
            )
        })
        .collect();
    let z = c
        .refresh_all(x, 1, o.bound)?
        .into_iter()
        .enumerate()
        .map(|(k, mut ct)| {
            if k + 1 == x.len() {
                let pt = c.encode(&pad, c.level(&ct), c.scale(&ct))?;
                ct = c.add_plain(&ct, &pt)?;
            }
            let l = c.level(&ct);
            to_level(c, &ct, 1.0 / (2.0 * o.bound), l - 1)
        })
        .collect::<Result<Vec<_>, CkksError>>()?;
    let mut m = z[0].clone();
    for b in &z[1..] {
        m = c.refresh(&m, 2, 0.5)?;
        let b = c.refresh(b, 2, 0.5)?;
        // The running max sits lower than a fresh input: both to one level on the chain (a
        // dropped ciphertext would keep its old level's scale).
        let (a, b) = if c.level(&m) == c.level(&b) && same_scale(c.scale(&m), c.scale(&b)) {
            (m, b)
        } else {
            let l = c.level(&m).min(c.level(&b)) - 1;
            (to_level(c, &m, 1.0, l)?, to_level(c, &b, 1.0, l)?)
        };
        m = max2(c, &a, &b, &o.sign)?;
    }
    let m = row_max(c, &m, &o.sign)?;
    let ws = z
        .iter()
        .map(|zc| {
            let w = if c.level(zc) > c.level(&m) {
                c.sub(&to_level(c, zc, 1.0, c.level(&m))?, &m)?
            } else {
                super::chain::add_aligned(c, zc, &c.mul_int(&m, -1)?)?
            };
            c.add_const(&w, o.delta())
        })
        .collect::<Result<Vec<_>, CkksError>>()?;
    o.step.evaluate_all(c, &ws)
}

fn multi_slots(slots: Vec<usize>, count: usize) -> Result<usize, CkksError> {
    let s = *slots
        .first()
        .ok_or_else(|| CkksError::Invalid("argmax of no ciphertext".into()))?;
    let n = slots.len();
    if slots.iter().any(|&x| x != s) || count > s * n || count <= s * (n - 1) {
        return Err(CkksError::Invalid(format!(
            "argmax of {count} logits in {n} ciphertexts of {slots:?} slots"
        )));
    }
    Ok(s)
}

/// The f64 twin of [`argmax_multi`] on the slot vectors. `OutOfRange`: a logit outside
/// [-bound, bound].
pub fn argmax_multi_twin(
    x: &[Vec<f64>],
    count: usize,
    o: &ArgmaxOptions,
) -> Result<Vec<Vec<f64>>, CkksError> {
    o.validate()?;
    let s = multi_slots(x.iter().map(Vec::len).collect(), count)?;
    let flat: Vec<f64> = x.iter().flatten().copied().collect();
    if let Some(v) = flat[..count]
        .iter()
        .find(|v| v.is_nan() || v.abs() > o.bound)
    {
        return Err(CkksError::OutOfRange(format!(
            "logit {v} outside [-{}, {}]",
            o.bound, o.bound
        )));
    }
    let z: Vec<f64> = (0..flat.len())
        .map(|i| if i < count { flat[i] } else { flat[i] - o.bound } / (2.0 * o.bound))
        .collect();
    let mx = |a: f64, b: f64| {
        let d = a - b;
        0.5 * (a + b) + 0.5 * d * o.sign.twin_unchecked(d)
    };
    let mut m: Vec<f64> = z[..s].to_vec();
    for k in 1..x.len() {
        m = (0..s).map(|i| mx(m[i], z[k * s + i])).collect();
    }
    for r in rotations(s) {
        let r = r as usize;
        m = (0..s).map(|i| mx(m[i], m[(i + r) % s])).collect();
    }
    Ok(z.chunks(s)
        .map(|zc| {
            zc.iter()
                .zip(&m)
                .map(|(zi, mi)| o.step.twin_unchecked(zi - mi + o.delta()))
                .collect()
        })
        .collect())
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
