//! Ciphertexts and plaintexts: backend buffers in NTT form plus the metadata that the evaluator
//! checks (level, exact scale, slot count).

use super::{CkksError, Parameters};
use crate::backend::Buffer;

/// An encoded message: one polynomial over the Q primes of `level`, NTT form.
#[derive(Clone, Debug)]
pub struct Plaintext {
    pub poly: Buffer,
    pub level: usize,
    pub scale: f64,
    pub slots: usize,
}

/// A CKKS ciphertext (c0, c1[, c2]) with c0 + c1 s (+ c2 s^2) = m, NTT form over the Q primes of
/// `level`.
#[derive(Clone, Debug)]
pub struct Ciphertext {
    pub parts: Vec<Buffer>,
    pub level: usize,
    pub scale: f64,
    pub slots: usize,
    /// When c1 is the uniform polynomial expanded from this seed (secret-key encryption), the
    /// serialized form stores the seed instead of c1.
    pub seed: Option<[u8; 32]>,
}

impl Ciphertext {
    /// Degree (number of parts - 1).
    pub fn degree(&self) -> usize {
        self.parts.len() - 1
    }

    /// Whether the ciphertext no longer depends on the secret key: c1 (and c2) are zero modulo
    /// some prime, so c0 alone, dropped to that prime, is the message in the clear. `x - x` and
    /// products with zero (`mul_int(x, 0)`, `mul_const(x, 0.0)`, an all-zero plaintext) give
    /// one, and adding a plaintext keeps it so. Reads c1 (and c2) back from the device. The
    /// evaluator allows such intermediates (circuits multiply by zero coefficients and masks);
    /// serialization, where a result leaves the server, refuses them (`Serial::to_bytes`).
    pub fn is_transparent(&self, ctx: &super::Context) -> Result<bool, CkksError> {
        self.check(&ctx.params)?;
        let n = ctx.params.n();
        let be = &ctx.backend;
        let masks: Vec<Vec<u32>> = self.parts[1..].iter().map(|x| be.download(x)).collect();
        be.status()?;
        let limbs = ctx.params.limbs_at(self.level);
        Ok((0..limbs).any(|l| {
            masks
                .iter()
                .all(|m| m[l * n..(l + 1) * n].iter().all(|&w| w == 0))
        }))
    }
}

/// Level, slot-count and scale checks shared by every object that carries them.
pub(crate) fn check_meta(
    p: &Parameters,
    level: usize,
    slots: usize,
    scale: f64,
    what: &str,
) -> Result<(), CkksError> {
    if level > p.max_level() {
        return Err(CkksError::Invalid(format!(
            "{what} at level {level}, above the top level {}",
            p.max_level()
        )));
    }
    if !slots.is_power_of_two() || slots > p.max_slots() {
        return Err(CkksError::Invalid(format!("{what} with {slots} slots")));
    }
    if !(scale.is_finite() && scale >= 1.0) {
        return Err(CkksError::Invalid(format!("{what} with scale {scale}")));
    }
    Ok(())
}

impl Plaintext {
    /// Checks that the plaintext is well-formed for these parameters (sizes, level, slots, scale).
    pub fn check(&self, p: &Parameters) -> Result<(), CkksError> {
        check_meta(p, self.level, self.slots, self.scale, "plaintext")?;
        if self.poly.len() != p.n() * p.limbs_at(self.level) {
            return Err(CkksError::Invalid(
                "plaintext of other parameters (wrong size)".into(),
            ));
        }
        Ok(())
    }
}

impl Ciphertext {
    /// Checks that the ciphertext is well-formed for these parameters (sizes, level, slots, scale).
    pub fn check(&self, p: &Parameters) -> Result<(), CkksError> {
        check_meta(p, self.level, self.slots, self.scale, "ciphertext")?;
        if !(2..=3).contains(&self.parts.len()) {
            return Err(CkksError::Invalid(format!(
                "ciphertext with {} parts",
                self.parts.len()
            )));
        }
        let words = p.n() * p.limbs_at(self.level);
        if self.parts.iter().any(|x| x.len() != words) {
            return Err(CkksError::Invalid(
                "ciphertext of other parameters (wrong size)".into(),
            ));
        }
        Ok(())
    }
}
