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

    /// Bootstraps `a` (|m| <= bound) to the top compute level, on the default scale.
    pub fn bootstrap(&self, a: &C::Ct, bound: f64) -> Result<C::Ct, CkksError> {
        let c = self.inner;
        // ceil(B) multiplies back as an exact integer: past 2^53 it would not be one.
        if !(bound.is_finite() && bound > 0.0 && bound <= 2f64.powi(53)) {
            return Err(CkksError::Invalid(format!(
                "bootstrap bound {bound} must be in (0, 2^53]"
            )));
        }
        let k = bound.ceil().max(1.0);
        let l = c.level(a);
        let x = if l == 0 {
            if k > 1.0 {
                return Err(CkksError::LevelsExhausted(format!(
                    "bootstrapping a message up to {bound} needs one level to scale it into \
                     [-1, 1]; the ciphertext is at level 0"
                )));
            }
            a.clone()
        } else {
            // a / k at level 0 on the default scale.
            let x = c.drop_to_level(a, 1)?;
            let p = c.params();
            let target = p.default_scales[0];
            let y = c.mul_const(&x, 1.0 / k, target * p.rescale_factor(1) / c.scale(&x))?;
            c.with_scale(&c.rescale(&y)?, target)
        };
        // A sparse ciphertext (n slots) is n-periodic in the bootstrapper's slots.
        let n = c.slots(&x);
        let x = if n < self.boot.slots() {
            c.with_slots(&x, self.boot.slots())?
        } else {
            x
        };
        let y = self.boot.bootstrap(c, &x)?;
        let y = if n < self.boot.slots() {
            c.with_slots(&y, n)?
        } else {
            y
        };
        self.bootstraps.set(self.bootstraps.get() + 1);
        if k > 1.0 {
            c.mul_int(&y, k as i64)
        } else {
            Ok(y)
        }
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
}
