//! LayerNorm per token over its D features, in the feature-major layout: gamma (x - mean) /
//! sqrt(var + eps) + beta.
//!
//! The mean is a row sum; the variance is taken around it (better conditioned than E[x^2] -
//! mean^2 when |mean| >> std). Padding columns past D are zero in the input but x - mean is not
//! zero there, so their share, P mean^2 (P padding columns), is subtracted from the row sum of
//! squares; gamma's plaintext is zero on them, so the output's padding is zero again. 1/D and eps
//! are folded into the inverse square root's change of variable and beta is a plaintext addition,
//! so neither costs a level.
//!
//! Levels: 1 (mean) + 1 (squares) + the inverse square root (1 + guess + 2 per Newton step) + 1
//! (the product with gamma (x - mean)); 4 + 6 + 2 x 4 = 18 with the default [0.5, 2500].

use super::approx::InvSqrt;
use super::chain::{metas, mul, mul_plain_down, rehearse_depth, to_level};
use super::packing::{check_layout, check_slots, row_sum, row_sum_rotations, row_sum_twin};
use super::Layout;
use crate::ckks::{Circuit, CkksError, Simulator};

#[derive(Clone, Debug)]
pub struct LayerNormOptions {
    /// 1/sqrt on the interval var + eps lies in.
    pub inv_sqrt: InvSqrt,
    pub eps: f64,
    /// |x| <= bound for the inputs (what a bootstrap of them assumes). Default `DEFAULT_BOUND`.
    pub bound: f64,
}

impl LayerNormOptions {
    /// Residual-stream activations of BERT-base and GPT-2 stay well inside 64 (outlier features
    /// aside; raise it for those).
    pub const DEFAULT_BOUND: f64 = 64.0;

    /// var + eps in `InvSqrt::DEFAULT_INTERVAL` ([0.5, 2500]), 2^-24 relative. Errors: as
    /// `validate`.
    pub fn new(eps: f64) -> Result<Self, CkksError> {
        Self::checked(InvSqrt::layernorm_default()?, eps)
    }

    /// var + eps in [a, b], to 2^-bits relative. Errors: as `InvSqrt::auto` and `validate`.
    pub fn with_interval(a: f64, b: f64, eps: f64, bits: f64) -> Result<Self, CkksError> {
        Self::checked(InvSqrt::auto(a, b, bits)?, eps)
    }

    fn checked(inv_sqrt: InvSqrt, eps: f64) -> Result<Self, CkksError> {
        let o = LayerNormOptions {
            inv_sqrt,
            eps,
            bound: Self::DEFAULT_BOUND,
        };
        o.validate()?;
        Ok(o)
    }

    /// Errors (`Invalid`): eps not finite and >= 0, a bound that is not finite and positive,
    /// `inv_sqrt` failing `InvSqrt::validate`.
    pub fn validate(&self) -> Result<(), CkksError> {
        let (eps, bound) = (self.eps, self.bound);
        if !(eps.is_finite() && eps >= 0.0 && bound.is_finite() && bound > 0.0) {
            return Err(CkksError::Invalid(format!(
                "layernorm: eps {eps} (need finite >= 0), bound {bound} (need finite > 0)"
            )));
        }
        self.inv_sqrt.validate()
    }
}

/// The options, and D finite values each in gamma and beta.
fn check_affine(
    layout: &Layout,
    gamma: &[f64],
    beta: &[f64],
    o: &LayerNormOptions,
) -> Result<(), CkksError> {
    o.validate()?;
    if gamma.len() != layout.features || beta.len() != layout.features {
        return Err(CkksError::Invalid(format!(
            "gamma and beta need {} values, got {} and {}",
            layout.features,
            gamma.len(),
            beta.len()
        )));
    }
    if gamma.iter().chain(beta).any(|v| !v.is_finite()) {
        return Err(CkksError::Invalid("non-finite gamma or beta".into()));
    }
    Ok(())
}

fn padding(layout: &Layout) -> usize {
    layout.cts() * layout.per_ct - layout.features
}

fn layernorm_impl<C: Circuit>(
    c: &C,
    layout: &Layout,
    x: &[C::Ct],
    gamma: &[f64],
    beta: &[f64],
    o: &LayerNormOptions,
) -> Result<Vec<C::Ct>, CkksError> {
    let d = layout.features as f64;
    // Mean and squares (2 levels), then the inverse square root's guess straight away: the
    // variance is never bootstrapped (its bound, D 2500, is far above typical values, and a
    // bootstrap's error scales with the bound).
    let need = 2 + super::chain::poly_depth(c, &o.inv_sqrt.guess)?;
    let x = c.refresh_all(x, need, o.bound)?;
    let x = &x[..];
    let l = c.level(&x[0]);
    if l < 2 {
        return Err(CkksError::LevelsExhausted(format!(
            "LayerNorm at level {l}; bootstrap first"
        )));
    }
    let mean = to_level(c, &row_sum(c, layout, x)?, 1.0 / d, l - 1)?;
    let xc = x
        .iter()
        .map(|ct| c.sub(&to_level(c, ct, 1.0, l - 1)?, &mean))
        .collect::<Result<Vec<_>, _>>()?;
    let sq = xc
        .iter()
        .map(|v| mul(c, v, v))
        .collect::<Result<Vec<_>, _>>()?;
    let mut v = row_sum(c, layout, &sq)?;
    let p = padding(layout);
    if p > 0 {
        let m2 = mul(c, &mean, &mean)?;
        v = c.sub(&v, &c.mul_int(&m2, p as i64)?)?;
    }
    // r = 1 / sqrt(v / D + eps).
    let r = o.inv_sqrt.evaluate_affine(c, &v, 1.0 / d, o.eps)?;
    // The output keeps one level (both factors at level >= 2): whatever follows (a residual,
    // the next block) can then bootstrap it with a bound above 1, which needs a level to scale.
    let r = c.refresh(&r, 2, 1.5 / o.inv_sqrt.a.sqrt())?;
    let g_max = gamma.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut out = Vec::with_capacity(x.len());
    for (i, xi) in xc.iter().enumerate() {
        let g = mul_plain_down(c, xi, &layout.broadcast_features(i, gamma, 0.0)?)?;
        let g = c.refresh(&g, 2, (2.0 * o.bound * g_max).max(1.0))?;
        let y = mul(c, &g, &r)?;
        let values = layout.broadcast_features(i, beta, 0.0)?;
        let b = c.encode(&values, c.level(&y), c.scale(&y))?;
        out.push(c.add_plain(&y, &b)?);
    }
    Ok(out)
}

/// Encrypted LayerNorm of a T x D matrix in `layout` (all ciphertexts at one level and scale);
/// gamma and beta have D finite values (checked, with the layout and `o.validate()`). Rehearsed
/// on the simulator first: too few levels give
/// `LevelsExhausted` before any ciphertext work. A variance outside the inverse square root's
/// interval gives garbage under encryption; `layernorm_twin` reports it.
pub fn layernorm<C: Circuit>(
    c: &C,
    layout: &Layout,
    x: &[C::Ct],
    gamma: &[f64],
    beta: &[f64],
    o: &LayerNormOptions,
) -> Result<Vec<C::Ct>, CkksError> {
    layernorm_in(
        &Simulator::new(c.params()),
        layout,
        &metas(c, x),
        gamma,
        beta,
        o,
    )?;
    layernorm_in(c, layout, x, gamma, beta, o)
}

/// `layernorm` without the rehearsal (for circuits that rehearse a whole block).
pub fn layernorm_in<C: Circuit>(
    c: &C,
    layout: &Layout,
    x: &[C::Ct],
    gamma: &[f64],
    beta: &[f64],
    o: &LayerNormOptions,
) -> Result<Vec<C::Ct>, CkksError> {
    check_layout(c, layout, x)?;
    check_affine(layout, gamma, beta, o)?;
    layernorm_impl(c, layout, x, gamma, beta, o)
}

/// The f64 twin on the same slot vectors (same sums, padding correction, polynomial and Newton
/// steps). `OutOfRange` when a token's var + eps leaves the interval.
pub fn layernorm_twin(
    layout: &Layout,
    x: &[Vec<f64>],
    gamma: &[f64],
    beta: &[f64],
    o: &LayerNormOptions,
) -> Result<Vec<Vec<f64>>, CkksError> {
    check_slots(layout, x)?;
    check_affine(layout, gamma, beta, o)?;
    super::chain::check_bound_twin("LayerNorm input", x, o.bound)?;
    let (d, t) = (layout.features as f64, layout.tokens);
    let mean: Vec<f64> = row_sum_twin(layout, x)?.iter().map(|s| s / d).collect();
    let xc: Vec<Vec<f64>> = x
        .iter()
        .map(|v| v.iter().enumerate().map(|(i, s)| s - mean[i % t]).collect())
        .collect();
    let sq: Vec<Vec<f64>> = xc
        .iter()
        .map(|v| v.iter().map(|s| s * s).collect())
        .collect();
    let p = padding(layout) as f64;
    let r: Vec<f64> = row_sum_twin(layout, &sq)?
        .iter()
        .zip(&mean)
        .map(|(q, m)| o.inv_sqrt.twin((q - p * m * m) / d + o.eps))
        .collect::<Result<_, _>>()?;
    xc.iter()
        .enumerate()
        .map(|(ci, v)| {
            let g = layout.broadcast_features(ci, gamma, 0.0)?;
            let b = layout.broadcast_features(ci, beta, 0.0)?;
            Ok(v.iter()
                .enumerate()
                .map(|(i, s)| s * g[i].re * r[i % t] + b[i].re)
                .collect())
        })
        .collect()
}

/// Exact LayerNorm of a row-major T x D matrix.
pub fn layernorm_exact(x: &[Vec<f64>], gamma: &[f64], beta: &[f64], eps: f64) -> Vec<Vec<f64>> {
    x.iter()
        .map(|row| {
            let d = row.len() as f64;
            let m = row.iter().sum::<f64>() / d;
            let var = row.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / d;
            let r = 1.0 / (var + eps).sqrt();
            row.iter()
                .enumerate()
                .map(|(j, v)| (v - m) * r * gamma[j] + beta[j])
                .collect()
        })
        .collect()
}

/// Rotation keys LayerNorm needs (its row sums).
pub fn rotations(layout: &Layout) -> Vec<i64> {
    row_sum_rotations(layout)
}

/// Levels the layer uses on these parameters (rehearsed on the simulator from the top level).
pub fn depth(
    params: &std::sync::Arc<crate::ckks::Parameters>,
    layout: &Layout,
    o: &LayerNormOptions,
) -> Result<usize, CkksError> {
    o.validate()?;
    let g = vec![1.0; layout.features];
    rehearse_depth(params, layout, |sim, x| {
        layernorm_impl(sim, layout, x, &g, &g, o)
    })
}
