//! A circuit that bootstraps on demand: `Refreshing` wraps an `Evaluator` (to run) or a
//! `Simulator` (to plan) with a `Bootstrapper`, and answers `Circuit::refresh` by bootstrapping
//! a ciphertext that has fewer levels than the next stage needs. Layers mark their stages with
//! `refresh`, so the same layer code runs without bootstrapping (small depth), with it, and on
//! the simulator, where the bootstraps it places and the operations they cost are counted.
//!
//! Bootstrapping wants |m| <= 1 (see `Bootstrapper::bootstrap`). A caller promising |m| <= B
//! with B > 1 pays one level: the ciphertext is moved to level 0 times 1/ceil(B) (one constant
//! product folded into one rescale), bootstrapped, and multiplied back by the integer ceil(B),
//! which costs no level and scales the bootstrapping error by B. So a stage whose output may
//! exceed 1 must leave one level for the next refresh, so `refresh` keeps one spare level.

use std::cell::Cell;
use std::sync::Arc;

use super::Bootstrapper;
use crate::ckks::{Circuit, CkksError, Parameters};
use crate::math::fft::C64;

pub struct Refreshing<'a, C: Circuit> {
    inner: &'a C,
    boot: &'a Bootstrapper<C::Pt>,
    bootstraps: Cell<usize>,
}

impl<'a, C: Circuit> Refreshing<'a, C> {
    pub fn new(inner: &'a C, boot: &'a Bootstrapper<C::Pt>) -> Self {
        Refreshing {
            inner,
            boot,
            bootstraps: Cell::new(0),
        }
    }

    /// Bootstraps done (or placed, on the simulator) so far.
    pub fn bootstraps(&self) -> usize {
        self.bootstraps.get()
    }

    pub fn inner(&self) -> &C {
        self.inner
    }

    /// The level bootstrapped ciphertexts land on.
    pub fn output_level(&self) -> usize {
        self.boot.output_level()
    }

    /// The integer k = ceil(bound) that a message |m| <= bound is divided by before
    /// bootstrapping. Errors: a bound outside (0, 2^53].
    fn divisor(bound: f64) -> Result<f64, CkksError> {
        // ceil(B) multiplies back as an exact integer: past 2^53 it would not be one.
        if !(bound.is_finite() && bound > 0.0 && bound <= 2f64.powi(53)) {
            return Err(CkksError::Invalid(format!(
                "bootstrap bound {bound} must be in (0, 2^53]"
            )));
        }
        Ok(bound.ceil().max(1.0))
    }

    /// a / k at level 0 on the default scale (one constant product folded into one rescale);
    /// `a` itself when k = 1 and it is at level 0 already. Errors: k > 1 at level 0.
    fn scaled_down(&self, a: &C::Ct, k: f64, bound: f64) -> Result<C::Ct, CkksError> {
        let c = self.inner;
        if c.level(a) == 0 {
            if k > 1.0 {
                return Err(CkksError::LevelsExhausted(format!(
                    "bootstrapping a message up to {bound} needs one level to scale it into \
                     [-1, 1]; the ciphertext is at level 0"
                )));
            }
            return Ok(a.clone());
        }
        let x = c.drop_to_level(a, 1)?;
        let p = c.params();
        let target = p.default_scales[0];
        let y = c.mul_const(&x, 1.0 / k, target * p.rescale_factor(1) / c.scale(&x))?;
        Ok(c.with_scale(&c.rescale(&y)?, target))
    }

    /// The bootstrapper on a level-0 ciphertext (a sparse one of n slots is n-periodic in the
    /// bootstrapper's slots); halved when `half` (`Bootstrapper::bootstrap_halved`).
    fn raw_bootstrap(&self, x: &C::Ct, half: bool) -> Result<C::Ct, CkksError> {
        let c = self.inner;
        let boot = |x: &C::Ct| {
            if half {
                self.boot.bootstrap_halved(c, x)
            } else {
                self.boot.bootstrap(c, x)
            }
        };
        let n = c.slots(x);
        let y = if n < self.boot.slots() {
            let y = boot(&c.with_slots(x, self.boot.slots())?)?;
            c.with_slots(&y, n)?
        } else {
            boot(x)?
        };
        self.bootstraps.set(self.bootstraps.get() + 1);
        Ok(y)
    }

    /// Bootstraps `a` (|m| <= bound) to the top compute level, on the default scale.
    pub fn bootstrap(&self, a: &C::Ct, bound: f64) -> Result<C::Ct, CkksError> {
        let k = Self::divisor(bound)?;
        let y = self.raw_bootstrap(&self.scaled_down(a, k, bound)?, false)?;
        if k > 1.0 {
            self.inner.mul_int(&y, k as i64)
        } else {
            Ok(y)
        }
    }

    /// Bootstraps two real-valued ciphertexts (|m| <= bound each, full slots) in one: z =
    /// (a + i b) / k is bootstrapped to z / 2 (`Bootstrapper::bootstrap_halved`, free),
    /// multiplied back by k, and split by conjugation: a = z' + conj(z'), b = i (conj(z') - z').
    /// THOR (Moon et al. 2024) packs two real ciphertexts per complex bootstrap the same way:
    /// CKKS bootstrapping refreshes complex slots at the cost of real ones, so this halves the
    /// bootstraps for one conjugation, at the precision of one bootstrap each
    /// (`tests/bootstrap.rs`; |a + i b| / k reaches sqrt 2, which EvalMod does not notice).
    /// Operands of different scales at level 0 (nothing to align them with) are bootstrapped
    /// one by one. Errors: as `bootstrap`.
    pub fn bootstrap_pair(
        &self,
        a: &C::Ct,
        b: &C::Ct,
        bound: f64,
    ) -> Result<(C::Ct, C::Ct), CkksError> {
        let c = self.inner;
        let k = Self::divisor(bound)?;
        let xa = self.scaled_down(a, k, bound)?;
        let xb = self.scaled_down(b, k, bound)?;
        // The bootstrapper reads its input at its own scale: a sum needs one scale.
        if (c.scale(&xa) / c.scale(&xb) - 1.0).abs() > 1e-9 {
            return Ok((self.bootstrap(a, bound)?, self.bootstrap(b, bound)?));
        }
        let z = self.raw_bootstrap(&c.add(&xa, &c.mul_i(&xb)?)?, true)?;
        let z = if k > 1.0 { c.mul_int(&z, k as i64)? } else { z };
        let zc = c.conjugate(&z)?;
        Ok((c.add(&z, &zc)?, c.mul_i(&c.sub(&zc, &z)?)?))
    }

    /// Whether a ciphertext may share a bootstrap ([`Refreshing::bootstrap_pair`]): full-slot,
    /// and at level >= 1 unless its bound is at most 1.
    fn pairable(&self, a: &C::Ct, bound: f64) -> bool {
        let c = self.inner;
        (c.level(a) >= 1 || bound <= 1.0) && c.slots(a) == self.boot.slots()
    }
}

impl<C: Circuit> Circuit for Refreshing<'_, C> {
    type Ct = C::Ct;
    type Pt = C::Pt;

    fn params(&self) -> &Arc<Parameters> {
        self.inner.params()
    }
    fn level(&self, a: &C::Ct) -> usize {
        self.inner.level(a)
    }
    fn scale(&self, a: &C::Ct) -> f64 {
        self.inner.scale(a)
    }
    fn slots(&self, a: &C::Ct) -> usize {
        self.inner.slots(a)
    }
    fn add(&self, a: &C::Ct, b: &C::Ct) -> Result<C::Ct, CkksError> {
        self.inner.add(a, b)
    }
    fn sub(&self, a: &C::Ct, b: &C::Ct) -> Result<C::Ct, CkksError> {
        self.inner.sub(a, b)
    }
    fn add_const(&self, a: &C::Ct, k: f64) -> Result<C::Ct, CkksError> {
        self.inner.add_const(a, k)
    }
    fn mul_const(&self, a: &C::Ct, k: f64, s: f64) -> Result<C::Ct, CkksError> {
        self.inner.mul_const(a, k, s)
    }
    fn mul_int(&self, a: &C::Ct, k: i64) -> Result<C::Ct, CkksError> {
        self.inner.mul_int(a, k)
    }
    fn mul_relin(&self, a: &C::Ct, b: &C::Ct) -> Result<C::Ct, CkksError> {
        self.inner.mul_relin(a, b)
    }
    fn rescale(&self, a: &C::Ct) -> Result<C::Ct, CkksError> {
        self.inner.rescale(a)
    }
    fn drop_to_level(&self, a: &C::Ct, level: usize) -> Result<C::Ct, CkksError> {
        self.inner.drop_to_level(a, level)
    }
    fn rotate(&self, a: &C::Ct, r: i64) -> Result<C::Ct, CkksError> {
        self.inner.rotate(a, r)
    }
    fn rotate_hoisted(&self, a: &C::Ct, rs: &[i64]) -> Result<Vec<C::Ct>, CkksError> {
        self.inner.rotate_hoisted(a, rs)
    }
    fn conjugate(&self, a: &C::Ct) -> Result<C::Ct, CkksError> {
        self.inner.conjugate(a)
    }
    fn mul_i(&self, a: &C::Ct) -> Result<C::Ct, CkksError> {
        self.inner.mul_i(a)
    }
    fn with_scale(&self, a: &C::Ct, scale: f64) -> C::Ct {
        self.inner.with_scale(a, scale)
    }
    fn with_slots(&self, a: &C::Ct, slots: usize) -> Result<C::Ct, CkksError> {
        self.inner.with_slots(a, slots)
    }
    fn encode(&self, values: &[C64], level: usize, scale: f64) -> Result<C::Pt, CkksError> {
        self.inner.encode(values, level, scale)
    }
    fn mul_plain(&self, a: &C::Ct, pt: &C::Pt) -> Result<C::Ct, CkksError> {
        self.inner.mul_plain(a, pt)
    }
    fn add_plain(&self, a: &C::Ct, pt: &C::Pt) -> Result<C::Ct, CkksError> {
        self.inner.add_plain(a, pt)
    }
    fn mod_raise(&self, a: &C::Ct, level: usize) -> Result<C::Ct, CkksError> {
        self.inner.mod_raise(a, level)
    }

    /// Bootstraps when fewer than `need + 1` levels are left: the spare level lets the next
    /// refresh scale its input into [-1, 1] whatever its bound (module docs).
    fn refresh(&self, a: &C::Ct, need: usize, bound: f64) -> Result<C::Ct, CkksError> {
        if self.level(a) > need {
            return Ok(a.clone());
        }
        let out = self.boot.output_level();
        if need > out {
            return Err(CkksError::LevelsExhausted(format!(
                "a stage needs {need} levels, bootstrapping gives {out}"
            )));
        }
        self.bootstrap(a, bound)
    }

    /// `refresh` of every ciphertext, two per bootstrap where two need one
    /// ([`Refreshing::bootstrap_pair`]); the rest one by one.
    fn refresh_each(
        &self,
        xs: &[C::Ct],
        needs: &[usize],
        bound: f64,
    ) -> Result<Vec<C::Ct>, CkksError> {
        if xs.len() != needs.len() {
            return Err(CkksError::Invalid(format!(
                "{} ciphertexts and {} level needs",
                xs.len(),
                needs.len()
            )));
        }
        let out = self.boot.output_level();
        let stale: Vec<usize> = (0..xs.len())
            .filter(|&i| self.level(&xs[i]) <= needs[i])
            .collect();
        if let Some(&i) = stale.iter().find(|&&i| needs[i] > out) {
            return Err(CkksError::LevelsExhausted(format!(
                "a stage needs {} levels, bootstrapping gives {out}",
                needs[i]
            )));
        }
        let mut ys: Vec<Option<C::Ct>> = xs
            .iter()
            .zip(needs)
            .map(|(x, &n)| (self.level(x) > n).then(|| x.clone()))
            .collect();
        let (pairable, single): (Vec<usize>, Vec<usize>) = stale
            .into_iter()
            .partition(|&i| self.pairable(&xs[i], bound));
        for pair in pairable.chunks(2) {
            if let [i, j] = *pair {
                let (a, b) = self.bootstrap_pair(&xs[i], &xs[j], bound)?;
                ys[i] = Some(a);
                ys[j] = Some(b);
            } else {
                ys[pair[0]] = Some(self.bootstrap(&xs[pair[0]], bound)?);
            }
        }
        for i in single {
            ys[i] = Some(self.bootstrap(&xs[i], bound)?);
        }
        Ok(ys
            .into_iter()
            .map(|y| y.expect("every ciphertext refreshed"))
            .collect())
    }
}
