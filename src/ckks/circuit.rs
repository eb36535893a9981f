//! The operations that circuits (polynomial evaluation, linear transforms, bootstrapping, the
//! encrypted layers) are written against. `Evaluator` runs them on ciphertexts and `Simulator` on
//! metadata only, so one circuit's depth, scales and operation counts are known before any
//! ciphertext is touched, and the two cannot drift apart (Lattigo's `polynomial_evaluator_sim`).

use std::sync::Arc;

use super::{Ciphertext, CkksError, Evaluator, Parameters, Plaintext};
use crate::math::fft::C64;

pub trait Circuit {
    /// A ciphertext, or its metadata.
    type Ct: Clone;
    /// An encoded plaintext, or its metadata.
    type Pt;

    fn params(&self) -> &Arc<Parameters>;
    fn level(&self, a: &Self::Ct) -> usize;
    fn scale(&self, a: &Self::Ct) -> f64;
    fn slots(&self, a: &Self::Ct) -> usize;

    /// a + b (same level, scale and slots).
    fn add(&self, a: &Self::Ct, b: &Self::Ct) -> Result<Self::Ct, CkksError>;
    /// a - b.
    fn sub(&self, a: &Self::Ct, b: &Self::Ct) -> Result<Self::Ct, CkksError>;
    /// a + c in every slot.
    fn add_const(&self, a: &Self::Ct, c: f64) -> Result<Self::Ct, CkksError>;
    /// a * c with c encoded at `const_scale`; the scale becomes a.scale * const_scale.
    fn mul_const(&self, a: &Self::Ct, c: f64, const_scale: f64) -> Result<Self::Ct, CkksError>;
    /// a * k for an integer k (scale unchanged).
    fn mul_int(&self, a: &Self::Ct, k: i64) -> Result<Self::Ct, CkksError>;
    /// a * b, relinearized (no rescale).
    fn mul_relin(&self, a: &Self::Ct, b: &Self::Ct) -> Result<Self::Ct, CkksError>;
    /// Divides by the level's prime group.
    fn rescale(&self, a: &Self::Ct) -> Result<Self::Ct, CkksError>;
    fn drop_to_level(&self, a: &Self::Ct, level: usize) -> Result<Self::Ct, CkksError>;
    /// Left rotation by r slots.
    fn rotate(&self, a: &Self::Ct, r: i64) -> Result<Self::Ct, CkksError>;
    /// Several rotations sharing one decomposition.
    fn rotate_hoisted(&self, a: &Self::Ct, rs: &[i64]) -> Result<Vec<Self::Ct>, CkksError>;
    fn conjugate(&self, a: &Self::Ct) -> Result<Self::Ct, CkksError>;
    /// a * i in every slot (free: a monomial).
    fn mul_i(&self, a: &Self::Ct) -> Result<Self::Ct, CkksError>;
    /// The same ciphertext read at another scale (the message is multiplied by old/new).
    fn with_scale(&self, a: &Self::Ct, scale: f64) -> Self::Ct;
    /// The same ciphertext read with another slot count (a power of two; an n-periodic slot
    /// vector is also 2n-periodic).
    fn with_slots(&self, a: &Self::Ct, slots: usize) -> Result<Self::Ct, CkksError>;
    /// Encodes slot values (their count is the slot count) at a level and scale.
    fn encode(&self, values: &[C64], level: usize, scale: f64) -> Result<Self::Pt, CkksError>;
    /// a * pt (same level and slots); the scale becomes a.scale * pt.scale.
    fn mul_plain(&self, a: &Self::Ct, pt: &Self::Pt) -> Result<Self::Ct, CkksError>;
    /// a + pt (same level, slots and scale).
    fn add_plain(&self, a: &Self::Ct, pt: &Self::Pt) -> Result<Self::Ct, CkksError>;
    /// Bootstrapping's ModRaise from level 0 to `level` (see `Evaluator::mod_raise_new`).
    fn mod_raise(&self, a: &Self::Ct, level: usize) -> Result<Self::Ct, CkksError>;

    /// `a` with at least `need` levels left. Circuits that bootstrap (`Refreshing`) bootstrap
    /// here when `a` has fewer, promising |message| <= `bound`; plain circuits return `a` or
    /// `LevelsExhausted`. Layers call it where a stage of known depth starts, so one layer runs
    /// with or without bootstrapping and the simulator places the bootstraps (the planner).
    fn refresh(&self, a: &Self::Ct, need: usize, bound: f64) -> Result<Self::Ct, CkksError> {
        let _ = bound;
        let l = self.level(a);
        if l >= need {
            Ok(a.clone())
        } else {
            Err(CkksError::LevelsExhausted(format!(
                "a stage needs {need} levels, the ciphertext is at level {l}; bootstrap first"
            )))
        }
    }

    /// [`Circuit::refresh`] of ciphertexts refreshed at the same point of a layer: `Refreshing`
    /// bootstraps two real-valued ones in one complex bootstrap. Layers call it (not `refresh`
    /// in a loop) wherever several ciphertexts of one stage are refreshed together.
    fn refresh_all(
        &self,
        xs: &[Self::Ct],
        need: usize,
        bound: f64,
    ) -> Result<Vec<Self::Ct>, CkksError> {
        self.refresh_each(xs, &vec![need; xs.len()], bound)
    }

    /// [`Circuit::refresh_all`] with a level need per ciphertext (`needs[i]` for `xs[i]`; e.g.
    /// attention's K and V, refreshed at one point for stages of different depth). Errors: the
    /// slices' lengths differ, as `refresh`.
    fn refresh_each(
        &self,
        xs: &[Self::Ct],
        needs: &[usize],
        bound: f64,
    ) -> Result<Vec<Self::Ct>, CkksError> {
        if xs.len() != needs.len() {
            return Err(CkksError::Invalid(format!(
                "{} ciphertexts and {} level needs",
                xs.len(),
                needs.len()
            )));
        }
        xs.iter()
            .zip(needs)
            .map(|(x, &n)| self.refresh(x, n, bound))
            .collect()
    }
}

impl Circuit for Evaluator {
    type Ct = Ciphertext;
    type Pt = Plaintext;

    fn params(&self) -> &Arc<Parameters> {
        &self.context().params
    }
    fn level(&self, a: &Ciphertext) -> usize {
        a.level
    }
    fn scale(&self, a: &Ciphertext) -> f64 {
        a.scale
    }
    fn slots(&self, a: &Ciphertext) -> usize {
        a.slots
    }
    fn add(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.add_new(a, b)
    }
    fn sub(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.sub_new(a, b)
    }
    fn add_const(&self, a: &Ciphertext, c: f64) -> Result<Ciphertext, CkksError> {
        self.add_const_new(a, c)
    }
    fn mul_const(&self, a: &Ciphertext, c: f64, s: f64) -> Result<Ciphertext, CkksError> {
        self.mul_const_scaled_new(a, c, s)
    }
    fn mul_int(&self, a: &Ciphertext, k: i64) -> Result<Ciphertext, CkksError> {
        self.mul_int_new(a, k)
    }
    fn mul_relin(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.mul_relin_new(a, b)
    }
    fn rescale(&self, a: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.rescale_new(a)
    }
    fn drop_to_level(&self, a: &Ciphertext, level: usize) -> Result<Ciphertext, CkksError> {
        self.drop_to_level_new(a, level)
    }
    fn rotate(&self, a: &Ciphertext, r: i64) -> Result<Ciphertext, CkksError> {
        self.rotate_new(a, r)
    }
    fn rotate_hoisted(&self, a: &Ciphertext, rs: &[i64]) -> Result<Vec<Ciphertext>, CkksError> {
        self.rotate_hoisted_new(a, rs)
    }
    fn conjugate(&self, a: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.conjugate_new(a)
    }
    fn mul_i(&self, a: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.mul_i_new(a)
    }
    fn with_scale(&self, a: &Ciphertext, scale: f64) -> Ciphertext {
        let mut b = a.clone();
        b.scale = scale;
        b
    }
    fn with_slots(&self, a: &Ciphertext, slots: usize) -> Result<Ciphertext, CkksError> {
        check_slots(self.params(), slots)?;
        let mut b = a.clone();
        b.slots = slots;
        Ok(b)
    }
    fn encode(&self, values: &[C64], level: usize, scale: f64) -> Result<Plaintext, CkksError> {
        check_slots(self.params(), values.len())?;
        self.encoder().encode_complex(values, level, Some(scale))
    }
    fn mul_plain(&self, a: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext, CkksError> {
        self.mul_plain_new(a, pt)
    }
    fn add_plain(&self, a: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext, CkksError> {
        self.add_plain_new(a, pt)
    }
    fn mod_raise(&self, a: &Ciphertext, level: usize) -> Result<Ciphertext, CkksError> {
        self.mod_raise_new(a, level)
    }
}

pub(crate) fn check_slots(p: &Parameters, slots: usize) -> Result<(), CkksError> {
    if !slots.is_power_of_two() || slots > p.max_slots() {
        return Err(CkksError::Invalid(format!(
            "{slots} slots: need a power of two up to {}",
            p.max_slots()
        )));
    }
    Ok(())
}
