//! A simulated evaluator: the `Circuit` operations on metadata only (level, scale, slots), with
//! the same checks and scale rules as `Evaluator`, counting every operation by kind and level.
//! A circuit run on it tells its depth, output scale and cost before any ciphertext exists.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::circuit::{check_slots, Circuit};
use super::keys::galois_element;
use super::scale::{product_scale, same_scale, CONST_BITS_MAX};
use super::{CkksError, Parameters};
use crate::math::fft::C64;

/// What a simulated ciphertext (or plaintext) carries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimCiphertext {
    pub level: usize,
    pub scale: f64,
    pub slots: usize,
}

/// Operation counts keyed by (kind, level).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpCounts(pub BTreeMap<(&'static str, usize), usize>);

impl OpCounts {
    /// Count of one kind over all levels.
    pub fn total(&self, kind: &str) -> usize {
        self.0
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, c)| c)
            .sum()
    }
    /// Totals by kind.
    pub fn by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for ((k, _), c) in &self.0 {
            *m.entry(*k).or_insert(0) += c;
        }
        m
    }
    /// Key switches (relinearizations, rotations, conjugations, hoisted key applications and
    /// encapsulation switches): the dominant cost of most circuits.
    pub fn key_switches(&self) -> usize {
        [
            "relinearize",
            "rotate",
            "conjugate",
            "hoisted_rotation",
            "encapsulation_switch",
        ]
        .iter()
        .map(|k| self.total(k))
        .sum()
    }
}

pub struct Simulator {
    params: Arc<Parameters>,
    counts: RefCell<OpCounts>,
}

impl Simulator {
    pub fn new(params: &Arc<Parameters>) -> Self {
        Simulator {
            params: params.clone(),
            counts: RefCell::new(OpCounts::default()),
        }
    }

    /// A fresh ciphertext's metadata at `level` with the level's default scale.
    pub fn fresh(&self, level: usize, slots: usize) -> SimCiphertext {
        SimCiphertext {
            level,
            scale: self.params.default_scales[level],
            slots,
        }
    }

    pub fn counts(&self) -> OpCounts {
        self.counts.borrow().clone()
    }

    pub fn reset(&self) {
        self.counts.borrow_mut().0.clear();
    }

    fn count(&self, kind: &'static str, level: usize, times: usize) {
        if times > 0 {
            *self.counts.borrow_mut().0.entry((kind, level)).or_insert(0) += times;
        }
    }

    fn check(&self, a: &SimCiphertext) -> Result<(), CkksError> {
        super::ciphertext::check_meta(&self.params, a.level, a.slots, a.scale, "ciphertext")
    }

    fn check_pair(&self, a: &SimCiphertext, b: &SimCiphertext) -> Result<(), CkksError> {
        self.check(a)?;
        if a.level != b.level {
            return Err(CkksError::LevelMismatch(a.level, b.level));
        }
        if a.slots != b.slots {
            return Err(CkksError::SlotMismatch(a.slots, b.slots));
        }
        Ok(())
    }

    fn add_sub(&self, a: &SimCiphertext, b: &SimCiphertext) -> Result<SimCiphertext, CkksError> {
        self.check_pair(a, b)?;
        self.check(b)?;
        if !same_scale(a.scale, b.scale) {
            return Err(CkksError::ScaleMismatch(a.scale.log2(), b.scale.log2()));
        }
        self.count("add", a.level, 1);
        Ok(*a)
    }
}

impl Circuit for Simulator {
    type Ct = SimCiphertext;
    type Pt = SimCiphertext;

    fn params(&self) -> &Arc<Parameters> {
        &self.params
    }
    fn level(&self, a: &SimCiphertext) -> usize {
        a.level
    }
    fn scale(&self, a: &SimCiphertext) -> f64 {
        a.scale
    }
    fn slots(&self, a: &SimCiphertext) -> usize {
        a.slots
    }
    fn add(&self, a: &SimCiphertext, b: &SimCiphertext) -> Result<SimCiphertext, CkksError> {
        self.add_sub(a, b)
    }
    fn sub(&self, a: &SimCiphertext, b: &SimCiphertext) -> Result<SimCiphertext, CkksError> {
        self.add_sub(a, b)
    }
    fn add_const(&self, a: &SimCiphertext, c: f64) -> Result<SimCiphertext, CkksError> {
        self.check(a)?;
        let v = (c * a.scale).round();
        let p = &self.params;
        if !v.is_finite() || v.abs() >= 2f64.powf((p.log_q_at(a.level) - 1.0).min(126.0)) {
            return Err(CkksError::OutOfRange(format!(
                "constant {c} at scale 2^{:.1}",
                a.scale.log2()
            )));
        }
        self.count("add_const", a.level, 1);
        Ok(*a)
    }
    fn mul_const(&self, a: &SimCiphertext, c: f64, s: f64) -> Result<SimCiphertext, CkksError> {
        self.check(a)?;
        let v = (c * s).round();
        if !v.is_finite() || !s.is_finite() || v.abs() >= 2f64.powi(CONST_BITS_MAX) {
            return Err(CkksError::OutOfRange(format!(
                "constant {c} at scale 2^{:.1}",
                s.log2()
            )));
        }
        let scale = product_scale(&self.params, a.level, a.scale, s)?;
        self.count("mul_const", a.level, 1);
        Ok(SimCiphertext { scale, ..*a })
    }
    fn mul_int(&self, a: &SimCiphertext, _k: i64) -> Result<SimCiphertext, CkksError> {
        self.check(a)?;
        self.count("mul_const", a.level, 1);
        Ok(*a)
    }
    fn mul_relin(&self, a: &SimCiphertext, b: &SimCiphertext) -> Result<SimCiphertext, CkksError> {
        self.check_pair(a, b)?;
        self.check(b)?;
        let scale = product_scale(&self.params, a.level, a.scale, b.scale)?;
        self.count("mul", a.level, 1);
        self.count("relinearize", a.level, 1);
        Ok(SimCiphertext { scale, ..*a })
    }
    fn rescale(&self, a: &SimCiphertext) -> Result<SimCiphertext, CkksError> {
        self.check(a)?;
        if a.level == 0 {
            return Err(CkksError::LevelsExhausted(
                "cannot rescale at level 0".into(),
            ));
        }
        self.count("rescale", a.level, 1);
        Ok(SimCiphertext {
            level: a.level - 1,
            scale: a.scale / self.params.rescale_factor(a.level),
            slots: a.slots,
        })
    }
    fn drop_to_level(&self, a: &SimCiphertext, level: usize) -> Result<SimCiphertext, CkksError> {
        self.check(a)?;
        if level > a.level {
            return Err(CkksError::Invalid(format!(
                "cannot raise level {} to {level}",
                a.level
            )));
        }
        Ok(SimCiphertext { level, ..*a })
    }
    fn rotate(&self, a: &SimCiphertext, r: i64) -> Result<SimCiphertext, CkksError> {
        self.check(a)?;
        if galois_element(r, self.params.n()) != 1 {
            self.count("rotate", a.level, 1);
        }
        Ok(*a)
    }
    fn rotate_hoisted(
        &self,
        a: &SimCiphertext,
        rs: &[i64],
    ) -> Result<Vec<SimCiphertext>, CkksError> {
        self.check(a)?;
        let n = self.params.n();
        let real = rs.iter().filter(|&&r| galois_element(r, n) != 1).count();
        self.count("decompose", a.level, 1);
        self.count("hoisted_rotation", a.level, real);
        Ok(vec![*a; rs.len()])
    }
    fn conjugate(&self, a: &SimCiphertext) -> Result<SimCiphertext, CkksError> {
        self.check(a)?;
        self.count("conjugate", a.level, 1);
        Ok(*a)
    }
    fn mul_i(&self, a: &SimCiphertext) -> Result<SimCiphertext, CkksError> {
        self.check(a)?;
        self.count("mul_monomial", a.level, 1);
        Ok(*a)
    }
    fn with_scale(&self, a: &SimCiphertext, scale: f64) -> SimCiphertext {
        SimCiphertext { scale, ..*a }
    }
    fn with_slots(&self, a: &SimCiphertext, slots: usize) -> Result<SimCiphertext, CkksError> {
        check_slots(&self.params, slots)?;
        Ok(SimCiphertext { slots, ..*a })
    }
    fn encode(&self, values: &[C64], level: usize, scale: f64) -> Result<SimCiphertext, CkksError> {
        check_slots(&self.params, values.len())?;
        let pt = SimCiphertext {
            level,
            scale,
            slots: values.len(),
        };
        self.check(&pt)?;
        self.count("encode", level, 1);
        Ok(pt)
    }
    fn mul_plain(&self, a: &SimCiphertext, pt: &SimCiphertext) -> Result<SimCiphertext, CkksError> {
        self.check_pair(a, pt)?;
        let scale = product_scale(&self.params, a.level, a.scale, pt.scale)?;
        self.count("mul_plain", a.level, 1);
        Ok(SimCiphertext { scale, ..*a })
    }
    fn add_plain(&self, a: &SimCiphertext, pt: &SimCiphertext) -> Result<SimCiphertext, CkksError> {
        self.check_pair(a, pt)?;
        if !same_scale(a.scale, pt.scale) {
            return Err(CkksError::ScaleMismatch(a.scale.log2(), pt.scale.log2()));
        }
        self.count("add_plain", a.level, 1);
        Ok(*a)
    }
    fn mod_raise(&self, a: &SimCiphertext, level: usize) -> Result<SimCiphertext, CkksError> {
        self.check(a)?;
        if level > self.params.max_level() {
            return Err(CkksError::Invalid(format!(
                "raise to level {level} above the top level {}",
                self.params.max_level()
            )));
        }
        self.count("encapsulation_switch", 0, 1);
        self.count("mod_raise", level, 1);
        self.count("encapsulation_switch", level, 1);
        Ok(SimCiphertext { level, ..*a })
    }
}
