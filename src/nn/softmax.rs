//! Softmax along each row of a T x K score matrix laid out with the keys as features (a row's
//! reduction is `packing::row_sum`).
//!
//! exp(x - shift) / sum exp(x - shift), where the shift is
//! - `Shift::Constant(b)`: a public bound b >= every score (THOR-style), or
//! - `Shift::RowMean { above }`: the row's mean plus a public bound on max - mean (cheaper to
//!   promise than a global bound, and computed for free: the mean's plaintext product shares the
//!   change of variable's level).
//!
//! A computed row max (a sign tournament, `argmax::row_max`) would make the row sum >= 1 but costs
//! log2(K) comparisons of ~10 levels each; it is not offered here.
//!
//! Levels: 1 (shift, mask and change of variable in one plaintext product) + the exp polynomial
//! (3) + its squarings (5) + the inverse (1 + guess + 1 + iterations) + 1 (the final product).
//!
//! The mask (padding columns past K, and keys after the query for a causal mask) is folded into
//! the same plaintext product: masked entries are mapped to the bottom of exp's interval,
//! exp(-range) ~ 1e-28, so they drop out of the sum and of the output.

use super::approx::{
    chain_scale, check_layout, check_slots, metas, mul, rehearse_depth, row_sum_twin, Exp, Inverse,
};
use super::packing::{row_sum, row_sum_rotations};
use super::Layout;
use crate::ckks::{Circuit, CkksError, Simulator};
use crate::math::fft::C64;

/// What is subtracted before exp.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shift {
    /// A public bound b: every (unmasked) score s must satisfy b - range <= s <= b.
    Constant(f64),
    /// The row mean (over all K keys) plus `above`: every unmasked score s must satisfy
    /// mean + above - range <= s <= mean + above.
    RowMean { above: f64 },
}

#[derive(Clone, Debug)]
pub struct SoftmaxOptions {
    pub shift: Shift,
    pub exp: Exp,
    /// 1/x on the interval the row sums lie in.
    pub inverse: Inverse,
    /// GPT-2: key j is visible to query t only when j <= t (within each input of a batch).
    pub causal: bool,
}

impl SoftmaxOptions {
    /// A constant bound b, with each row's max (over visible keys) at least b - gap: the row sums
    /// are in [e^-gap, keys] and the inverse is sized for that (2^-24 relative).
    pub fn constant(keys: usize, bound: f64, gap: f64, causal: bool) -> Result<Self, CkksError> {
        Self::with_sum_range(Shift::Constant(bound), keys, gap, causal)
    }

    /// The row mean plus `above` (>= max - mean of every row): row sums are in [e^-above, keys].
    pub fn row_mean(keys: usize, above: f64, causal: bool) -> Result<Self, CkksError> {
        Self::with_sum_range(Shift::RowMean { above }, keys, above, causal)
    }

    fn with_sum_range(
        shift: Shift,
        keys: usize,
        gap: f64,
        causal: bool,
    ) -> Result<Self, CkksError> {
        if keys == 0 || !(gap.is_finite() && gap >= 0.0) {
            return Err(CkksError::Invalid(format!(
                "softmax: {keys} keys, gap {gap}"
            )));
        }
        let exp = Exp::new(
            Exp::DEFAULT_RANGE,
            Exp::DEFAULT_SQUARINGS,
            Exp::DEFAULT_DEGREE,
        )?;
        if gap > exp.range {
            return Err(CkksError::Invalid(format!(
                "softmax: gap {gap} beyond exp's range {}",
                exp.range
            )));
        }
        // 5% margins cover the approximate exps.
        let inverse = Inverse::auto(0.95 * (-gap).exp(), 1.05 * keys as f64, 24.0)?;
        Ok(SoftmaxOptions {
            shift,
            exp,
            inverse,
            causal,
        })
    }
}

/// The 0/1 mask per ciphertext: 1 for real keys (column < K) that the query may see.
pub fn mask(layout: &Layout, causal: bool) -> Vec<Vec<f64>> {
    let (t, f) = (layout.tokens, layout.per_ct);
    let tin = layout.tokens_per_input();
    (0..layout.cts())
        .map(|ci| {
            let mut v = vec![0.0; layout.slots()];
            for j in 0..f {
                let col = ci * f + j;
                if col >= layout.features {
                    continue;
                }
                for tok in 0..t {
                    if !causal || col <= tok % tin {
                        v[j * t + tok] = 1.0;
                    }
                }
            }
            v
        })
        .collect()
}

fn offset(o: &SoftmaxOptions) -> f64 {
    match o.shift {
        Shift::Constant(b) => o.exp.range - b,
        Shift::RowMean { above } => o.exp.range - above,
    }
}

fn softmax_impl<C: Circuit>(
    c: &C,
    layout: &Layout,
    x: &[C::Ct],
    o: &SoftmaxOptions,
) -> Result<Vec<C::Ct>, CkksError> {
    let r = o.exp.range;
    let k = layout.features as f64;
    let masks = mask(layout, o.causal);
    let sums = match o.shift {
        Shift::RowMean { .. } => Some(row_sum(c, layout, x)?),
        Shift::Constant(_) => None,
    };
    let mut es = Vec::with_capacity(x.len());
    for (ct, m) in x.iter().zip(&masks) {
        let l = c.level(ct);
        if l == 0 {
            return Err(CkksError::LevelsExhausted("softmax at level 0".into()));
        }
        // u = m (2/R)(x - shift + R) - 1: in [-1, 1] for visible keys, -1 for masked ones.
        let target = chain_scale(c, l - 1);
        let pt_scale = target * c.params().rescale_factor(l) / c.scale(ct);
        let slots = |f: f64| -> Vec<C64> { m.iter().map(|&v| C64::new(v * f, 0.0)).collect() };
        let xm = c.add_const(ct, offset(o))?;
        let mut a = c.mul_plain(&xm, &c.encode(&slots(2.0 / r), l, pt_scale)?)?;
        if let Some(s) = &sums {
            let b = c.mul_plain(s, &c.encode(&slots(-2.0 / (r * k)), l, pt_scale)?)?;
            a = c.add(&a, &b)?;
        }
        let u = c.with_scale(&c.rescale(&a)?, target);
        let u = c.add_const(&u, -1.0)?;
        es.push(o.exp.evaluate_unit(c, &u)?);
    }
    let total = row_sum(c, layout, &es)?;
    let inv = o.inverse.evaluate(c, &total)?;
    es.iter().map(|e| mul(c, e, &inv)).collect()
}

/// Encrypted row softmax of a score matrix in `layout` (keys as features; all ciphertexts at one
/// level and scale). The plan is rehearsed on the simulator first, so too few levels give
/// `LevelsExhausted` before any ciphertext work. Scores outside the promised range (see `Shift`)
/// give garbage under encryption; `softmax_twin` reports them.
pub fn softmax<C: Circuit>(
    c: &C,
    layout: &Layout,
    x: &[C::Ct],
    o: &SoftmaxOptions,
) -> Result<Vec<C::Ct>, CkksError> {
    check_layout(c, layout, x)?;
    softmax_impl(&Simulator::new(c.params()), layout, &metas(c, x), o)?;
    softmax_impl(c, layout, x, o)
}

/// The f64 twin on the same slot vectors: the same shift, mask, polynomials and iterations.
/// `OutOfRange` when a visible score leaves exp's interval or a row sum leaves the inverse's.
pub fn softmax_twin(
    layout: &Layout,
    x: &[Vec<f64>],
    o: &SoftmaxOptions,
) -> Result<Vec<Vec<f64>>, CkksError> {
    check_slots(layout, x)?;
    let (r, k, t) = (o.exp.range, layout.features as f64, layout.tokens);
    let masks = mask(layout, o.causal);
    let sums = row_sum_twin(layout, x);
    let mut es = Vec::with_capacity(x.len());
    for (v, m) in x.iter().zip(&masks) {
        let mut e = Vec::with_capacity(v.len());
        for (i, (&xv, &mv)) in v.iter().zip(m).enumerate() {
            let s = sums[i % t];
            let (shift, mean_term) = match o.shift {
                Shift::Constant(b) => (b, 0.0),
                Shift::RowMean { above } => (s / k + above, mv * (-2.0 / (r * k)) * s),
            };
            if mv != 0.0 && !(xv - shift >= -r * (1.0 + 1e-12) && xv - shift <= 1e-9 * r) {
                return Err(CkksError::OutOfRange(format!(
                    "softmax: score {xv} minus shift {shift} outside exp's interval [-{r}, 0]"
                )));
            }
            let u = mv * (2.0 / r) * (xv + offset(o)) + mean_term - 1.0;
            e.push(o.exp.twin_unit(u));
        }
        es.push(e);
    }
    let total = row_sum_twin(layout, &es);
    let inv: Vec<f64> = total
        .iter()
        .map(|&s| o.inverse.twin(s))
        .collect::<Result<_, _>>()?;
    Ok(es
        .iter()
        .map(|e| e.iter().enumerate().map(|(i, v)| v * inv[i % t]).collect())
        .collect())
}

/// Exact row softmax of a row-major T x K matrix (masked entries 0).
pub fn softmax_exact(layout: &Layout, x: &[Vec<f64>], causal: bool) -> Vec<Vec<f64>> {
    let tin = layout.tokens_per_input();
    x.iter()
        .enumerate()
        .map(|(tok, row)| {
            let vis = |j: usize| !causal || j <= tok % tin;
            let mx = row
                .iter()
                .enumerate()
                .filter(|(j, _)| vis(*j))
                .map(|(_, &v)| v)
                .fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = row
                .iter()
                .enumerate()
                .map(|(j, &v)| if vis(j) { (v - mx).exp() } else { 0.0 })
                .collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        })
        .collect()
}

/// Rotation keys softmax needs (its row sums).
pub fn rotations(layout: &Layout) -> Vec<i64> {
    row_sum_rotations(layout)
}

/// Levels the layer uses on these parameters (rehearsed on the simulator from the top level).
pub fn depth(
    params: &std::sync::Arc<crate::ckks::Parameters>,
    layout: &Layout,
    o: &SoftmaxOptions,
) -> Result<usize, CkksError> {
    rehearse_depth(params, layout, |sim, x| softmax_impl(sim, layout, x, o))
}
