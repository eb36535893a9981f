//! GELU on every slot of a feature-major layout (BERT's erf form or GPT-2's tanh form, see
//! `approx::gelu_erf` / `gelu_tanh`): one polynomial per ciphertext, no rotations. The
//! polynomial's constant is pinned so that p(0) = 0: padding columns stay zero.

use super::approx::{self, PolyApprox};
use super::chain::metas;
use super::packing::{check_layout, check_slots};
use super::Layout;
use crate::ckks::{Circuit, CkksError, Simulator};

/// Encrypted GELU of every ciphertext of a matrix in `layout`; inputs must lie in the
/// approximation's interval (unchecked under encryption: outside it the result is garbage).
/// Levels: `approx.poly.depth(params)` (8 for the default degree 126 on [-16, 16]).
pub fn gelu<C: Circuit>(
    c: &C,
    layout: &Layout,
    x: &[C::Ct],
    approx: &PolyApprox,
) -> Result<Vec<C::Ct>, CkksError> {
    check_layout(c, layout, x)?;
    let sim = Simulator::new(c.params());
    for m in metas(c, x) {
        approx.evaluate(&sim, &m)?;
    }
    approx.evaluate_all(c, x)
}

/// The f64 twin on the same slot vectors with the same polynomial; `OutOfRange` for a slot
/// outside the interval; `Invalid` for a layout or approximation that fails its `validate`.
pub fn gelu_twin(
    layout: &Layout,
    x: &[Vec<f64>],
    approx: &PolyApprox,
) -> Result<Vec<Vec<f64>>, CkksError> {
    check_slots(layout, x)?;
    approx.validate()?;
    x.iter()
        .map(|v| v.iter().map(|&s| approx.twin(s)).collect())
        .collect()
}

/// The exact function on a row-major matrix.
pub fn gelu_exact(x: &[Vec<f64>], approx: &PolyApprox) -> Vec<Vec<f64>> {
    x.iter()
        .map(|r| r.iter().map(|&v| (approx.exact)(v)).collect())
        .collect()
}

/// GELU needs no rotation keys.
pub fn rotations(_layout: &Layout) -> Vec<i64> {
    Vec::new()
}

/// The default approximations.
pub fn default_erf() -> Result<PolyApprox, CkksError> {
    approx::gelu_erf(approx::GELU_BOUND, approx::GELU_DEGREE)
}

pub fn default_tanh() -> Result<PolyApprox, CkksError> {
    approx::gelu_tanh(approx::GELU_BOUND, approx::GELU_DEGREE)
}
