//! The scale rules every circuit applies, the evaluator on ciphertexts and the simulator on
//! metadata alike: when two scales are equal, what scale a product gets and when it no longer
//! fits its level, and how large an encoded constant may be. They sit below both so that the
//! simulator plans with exactly the evaluator's rules without depending on it.

use super::params::Parameters;
use super::CkksError;

/// Bits of room a product's scale must leave below Q at its level (for the message magnitude).
pub const SCALE_ROOM_BITS: f64 = 4.0;

/// Whether two scales are equal (1e-9 relative): the rule every op and the simulator apply.
pub fn same_scale(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// The scale of a product at `level`, or `LevelsExhausted` when it leaves less than
/// `SCALE_ROOM_BITS` below Q_level.
pub fn product_scale(p: &Parameters, level: usize, s1: f64, s2: f64) -> Result<f64, CkksError> {
    let s = s1 * s2;
    let room = p.log_q_at(level) - s.log2();
    if room < SCALE_ROOM_BITS {
        return Err(CkksError::LevelsExhausted(format!(
            "a product at scale 2^{:.1} does not fit level {level} (Q = 2^{:.1}); rescale or bootstrap first",
            s.log2(),
            p.log_q_at(level)
        )));
    }
    Ok(s)
}

/// Largest |constant x scale| that an op encodes (i128 arithmetic with headroom).
pub const CONST_BITS_MAX: i32 = 120;
