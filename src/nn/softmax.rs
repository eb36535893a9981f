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
//! The mask (padding columns past K, keys after the query for a causal mask, and padding keys
//! past a sequence's real length, `valid_keys`) is folded into the same plaintext product: masked
//! entries are mapped to the bottom of exp's interval, exp(-range) ~ 1e-28, so they drop out of
//! the sum and of the output.
//!
//! **Wide score ranges (normalized squarings).** After a row-mean shift the row sums of a real
//! model span e^-above .. keys, ~1e-18 .. 128 in MiniLM's layer 0: no inverse covers that. With
//! `rounds = k`, exp is taken of (x - shift) / 2^k only (its last k squarings are left out), so
//! the row sums lie in [e^(-above / 2^k), keys]; the row is normalized, then k times squared and
//! normalized again: p <- p^2 / sum p^2, where sum p^2 lies in [1/keys, 1] whatever the scores.
//! After k rounds p is the softmax. (HETAL, Lee et al., ICML 2023, section 4.1.) Each round costs a
//! square, a row sum and an inverse on [1/keys, 1].

use super::approx::{Exp, Inverse};
use super::chain::{chain_scale, metas, mul, mul_plain_down, rehearse_depth};
use super::packing::{
    check_layout, check_slots, group_sums, group_sums_rotations, group_sums_twin,
};
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
    /// Score matrices side by side (attention heads): the features are `heads` groups of keys
    /// and each row is normalized within its group (`packing::group_sums`). Default 1.
    pub heads: usize,
    /// Column r of a group holds key (t + r) mod T for query t (the diagonal order
    /// `attention::scores` produces) instead of key r; only the masks depend on it.
    pub diagonal: bool,
    /// Keys at positions >= n of each input are padding and masked (a sequence's real length,
    /// public to the server: docs/ARCHITECTURE.md D14). None: every key is real.
    pub valid_keys: Option<usize>,
    /// Normalized squarings after exp (module docs); at most exp's squarings. Default 0.
    pub rounds: u32,
    /// 1/x for the rounds' sums of squares, on K [1/keys, 1] (None when `rounds` is 0).
    pub round_inverse: Option<Inverse>,
    /// Integer factors K (first normalization, rounds) the row sums are multiplied by before
    /// their inverse, and the normalized row after it: with K >= 2 / (the sums' lower bound) the
    /// inverse's output is at most 1/2, so it bootstraps from level 0 like the probabilities
    /// (a wide bound would need a level it may not have). 1 for the default options.
    pub sum_scales: (i64, i64),
}

impl SoftmaxOptions {
    /// A constant bound b, with each row's max (over visible keys) at least b - gap: the row sums
    /// are in [e^-gap, keys] and the inverse is sized for that (2^-24 relative). Errors:
    /// `validate`, 0 keys, a gap outside [0, exp's range].
    pub fn constant(keys: usize, bound: f64, gap: f64, causal: bool) -> Result<Self, CkksError> {
        Self::with_sum_range(Shift::Constant(bound), keys, gap, causal)
    }

    /// Attention scores: `heads` score matrices of `keys` columns each in diagonal order (see
    /// `attention`), shifted by each head's row mean plus `above` (>= max - mean).
    pub fn attention(
        keys: usize,
        heads: usize,
        above: f64,
        causal: bool,
    ) -> Result<Self, CkksError> {
        if heads == 0 {
            return Err(CkksError::Invalid("softmax over 0 heads".into()));
        }
        let mut o = Self::row_mean(keys, above, causal)?;
        o.heads = heads;
        o.diagonal = true;
        Ok(o)
    }

    /// The row mean plus `above` (>= max - mean of every row): row sums are in [e^-above, keys].
    /// Errors: as `constant`.
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
        // A guess of at most 6 levels, so that the row sums reach it without a bootstrap (see
        // `softmax_impl`).
        let inverse = Inverse::auto_with(0.95 * (-gap).exp(), 1.05 * keys as f64, 24.0, 5)?;
        let o = SoftmaxOptions {
            shift,
            exp,
            inverse,
            causal,
            heads: 1,
            diagonal: false,
            valid_keys: None,
            rounds: 0,
            round_inverse: None,
            sum_scales: (1, 1),
        };
        o.validate()?;
        Ok(o)
    }

    /// Attention scores of a calibrated model: `heads` groups of `keys` columns in diagonal order,
    /// shifted by each row's mean plus `above` (>= max - mean over the visible keys), every
    /// visible score at least mean + above - `range`, and `rounds` normalized squarings (module
    /// docs). exp is sized for `range` (squarings so that its polynomial spans at most 2 units).
    /// Errors: 0 keys or heads, `above` not in [0, range], `rounds` above 16, an inverse that
    /// cannot cover its interval, `validate`.
    pub fn attention_calibrated(
        keys: usize,
        heads: usize,
        above: f64,
        range: f64,
        rounds: u32,
        causal: bool,
    ) -> Result<Self, CkksError> {
        if keys == 0 || heads == 0 || !(range.is_finite() && range > 0.0) {
            return Err(CkksError::Invalid(format!(
                "softmax: {keys} keys, {heads} heads, range {range}"
            )));
        }
        if !(above.is_finite() && (0.0..=range).contains(&above)) || rounds > 16 {
            return Err(CkksError::Invalid(format!(
                "softmax: above {above} must lie in [0, range {range}], rounds {rounds} at most 16"
            )));
        }
        // exp(x / 2^s) on [-range / 2^s, 0] spans at most 2 units: degree 7 errs by ~1e-8.
        let squarings = ((range / 2.0).log2().ceil().max(0.0) as u32)
            .max(Exp::DEFAULT_SQUARINGS)
            .max(rounds);
        let exp = Exp::new(range, squarings, Exp::DEFAULT_DEGREE)?;
        let k = 2f64.powi(rounds as i32);
        // Sums in [a, b] are scaled by K = ceil(2 / a) into [2, K b] (see `sum_scales`).
        let scaled = |a: f64, b: f64| -> Result<(Inverse, i64), CkksError> {
            let s = (2.0 / a).ceil();
            if s > (1u64 << 40) as f64 {
                return Err(CkksError::Invalid(format!(
                    "softmax: row sums down to {a} are too small to normalize"
                )));
            }
            Ok((Inverse::auto_with(s * a, s * b, 24.0, 5)?, s as i64))
        };
        let (inverse, k0) = scaled(0.95 * (-above / k).exp(), 1.05 * keys as f64)?;
        let (round_inverse, k1) = if rounds > 0 {
            let (inv, k1) = scaled(0.95 / keys as f64, 1.05)?;
            (Some(inv), k1)
        } else {
            (None, 1)
        };
        let o = SoftmaxOptions {
            shift: Shift::RowMean { above },
            exp,
            inverse,
            causal,
            heads,
            diagonal: true,
            valid_keys: None,
            rounds,
            round_inverse,
            sum_scales: (k0, k1),
        };
        o.validate()?;
        Ok(o)
    }

    /// Errors (`Invalid`): a non-finite constant shift, `above` not finite in [0, exp's range],
    /// 0 heads, `exp` or `inverse` failing their `validate`.
    pub fn validate(&self) -> Result<(), CkksError> {
        let ok = match self.shift {
            Shift::Constant(b) => b.is_finite(),
            Shift::RowMean { above } => {
                above.is_finite() && (0.0..=self.exp.range).contains(&above)
            }
        };
        if !ok || self.heads == 0 {
            return Err(CkksError::Invalid(format!(
                "softmax: shift {:?} (finite; `above` in [0, {}]) over {} heads (need > 0)",
                self.shift, self.exp.range, self.heads
            )));
        }
        if self.valid_keys == Some(0) {
            return Err(CkksError::Invalid(
                "softmax: a sequence of 0 real keys".into(),
            ));
        }
        if self.rounds > self.exp.squarings || (self.rounds > 0) != self.round_inverse.is_some() {
            return Err(CkksError::Invalid(format!(
                "softmax: {} rounds need an inverse for them and at least as many exp squarings \
                 ({})",
                self.rounds, self.exp.squarings
            )));
        }
        if let Some(inv) = &self.round_inverse {
            inv.validate()?;
        }
        if self.sum_scales.0 < 1 || self.sum_scales.1 < 1 {
            return Err(CkksError::Invalid(format!(
                "softmax: sum scales {:?} must be positive",
                self.sum_scales
            )));
        }
        self.exp.validate()?;
        self.inverse.validate()
    }

    /// exp of (x - shift) / 2^rounds: `exp` without its last `rounds` squarings.
    fn first_exp(&self) -> Exp {
        Exp {
            squarings: self.exp.squarings - self.rounds.min(self.exp.squarings),
            ..self.exp.clone()
        }
    }

    /// Key positions below this are real, the rest padding (all real when `valid_keys` is None).
    fn valid(&self) -> usize {
        self.valid_keys.unwrap_or(usize::MAX)
    }

    /// A bound on |score| that the promised shift implies (what a bootstrap of the scores
    /// assumes): [b - range, b] for a constant b; for the row mean, twice the range.
    pub fn score_bound(&self) -> f64 {
        match self.shift {
            Shift::Constant(b) => b.abs().max((b - self.exp.range).abs()),
            Shift::RowMean { .. } => 2.0 * self.exp.range,
        }
    }

    fn group(&self, layout: &Layout) -> Result<usize, CkksError> {
        if self.heads == 0 || layout.features % self.heads != 0 {
            return Err(CkksError::Invalid(format!(
                "{} score columns do not split into {} heads",
                layout.features, self.heads
            )));
        }
        Ok(layout.features / self.heads)
    }
}

/// The 0/1 mask per ciphertext: 1 for real keys (column < K) that the query may see; empty for
/// a layout that fails `Layout::validate`.
pub fn mask(layout: &Layout, causal: bool) -> Vec<Vec<f64>> {
    mask_with(layout, causal, layout.features, false).unwrap_or_default()
}

/// `mask` for score matrices in groups of `group` columns, in diagonal order or not. Errors:
/// `Layout::validate`, a group of 0 columns.
pub fn mask_with(
    layout: &Layout,
    causal: bool,
    group: usize,
    diagonal: bool,
) -> Result<Vec<Vec<f64>>, CkksError> {
    mask_valid(layout, causal, group, diagonal, layout.tokens_per_input())
}

/// `mask_with`, also masking keys at positions >= `valid` within each input (padding).
pub fn mask_valid(
    layout: &Layout,
    causal: bool,
    group: usize,
    diagonal: bool,
    valid: usize,
) -> Result<Vec<Vec<f64>>, CkksError> {
    layout.validate()?;
    if group == 0 {
        return Err(CkksError::Invalid("a mask over groups of 0 columns".into()));
    }
    let (t, f) = (layout.tokens, layout.per_ct);
    let tin = layout.tokens_per_input();
    let visible = |col: usize, tok: usize| {
        let (r, q) = (col % group, tok % tin);
        let key = if diagonal { (q + r) % tin } else { r };
        key < valid && (!causal || key <= q)
    };
    Ok((0..layout.cts())
        .map(|ci| {
            let mut v = vec![0.0; layout.slots()];
            for j in 0..f {
                let col = ci * f + j;
                if col >= layout.features {
                    continue;
                }
                for tok in 0..t {
                    if visible(col, tok) {
                        v[j * t + tok] = 1.0;
                    }
                }
            }
            v
        })
        .collect())
}

/// Per sum ciphertext, 1 on the slots of rows with no visible key (padding groups), whose sums
/// (~0) would leave the inverse's interval: its guess error would grow past what a bootstrap of
/// the iteration can hold, and a bootstrap overflowing in any slot corrupts all of them. Those
/// outputs are ~0 (e ~ 0) either way. `None` where no row is empty.
fn padding_rows(
    layout: &Layout,
    masks: &[Vec<f64>],
    group: usize,
) -> Result<Vec<Option<Vec<f64>>>, CkksError> {
    Ok(group_sums_twin(layout, masks, group)?
        .into_iter()
        .map(|n| {
            let pad: Vec<f64> = n
                .iter()
                .map(|&v| if v == 0.0 { 1.0 } else { 0.0 })
                .collect();
            pad.iter().any(|&v| v != 0.0).then_some(pad)
        })
        .collect())
}

/// Per slot, -2 / (R n) with n the visible keys of the slot's row and group (0 where masked):
/// the row mean's weight in the change of variable.
fn mean_weights(
    layout: &Layout,
    masks: &[Vec<f64>],
    group: usize,
    r: f64,
) -> Result<Vec<Vec<f64>>, CkksError> {
    let counts = group_sums_twin(layout, masks, group)?;
    Ok(masks
        .iter()
        .enumerate()
        .map(|(ci, m)| {
            let n = &counts[ci.min(counts.len() - 1)];
            m.iter()
                .zip(n)
                .map(|(&mv, &cnt)| if mv == 0.0 { 0.0 } else { -2.0 / (r * cnt) })
                .collect()
        })
        .collect())
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
    let group = o.group(layout)?;
    let masks = mask_valid(layout, o.causal, group, o.diagonal, o.valid())?;
    let weights = mean_weights(layout, &masks, group, r)?;
    let mean = matches!(o.shift, Shift::RowMean { .. });
    let masked = group < layout.features;
    let partial = o.causal || o.valid_keys.is_some();
    let first_exp = o.first_exp();
    // The change of variable takes one level; grouped sums one more, and a causal or padded mean
    // one more (only visible keys are averaged).
    let need = 1 + usize::from(mean && masked) + usize::from(mean && partial);
    let x = c.refresh_all(x, need, o.score_bound())?;
    let x = &x[..];
    let sums = if mean {
        let visible = if o.causal || o.valid_keys.is_some() {
            x.iter()
                .zip(&masks)
                .map(|(ct, m)| {
                    let m: Vec<C64> = m.iter().map(|&v| C64::new(v, 0.0)).collect();
                    mul_plain_down(c, ct, &m)
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            x.to_vec()
        };
        Some(group_sums(c, layout, &visible, group)?)
    } else {
        None
    };
    let mut us = Vec::with_capacity(x.len());
    for (i, (ct, m)) in x.iter().zip(&masks).enumerate() {
        let s = sums.as_ref().map(|s| &s[i.min(s.len() - 1)]);
        let l = s.map_or(c.level(ct), |s| c.level(s));
        if l == 0 {
            return Err(CkksError::LevelsExhausted("softmax at level 0".into()));
        }
        let ct = &c.drop_to_level(ct, l)?;
        // u = m (2/R)(x - shift + R) - 1: in [-1, 1] for visible keys, -1 for masked ones.
        let target = chain_scale(c, l - 1);
        let pt_scale = |x: &C::Ct| target * c.params().rescale_factor(l) / c.scale(x);
        let slots = |f: f64| -> Vec<C64> { m.iter().map(|&v| C64::new(v * f, 0.0)).collect() };
        let xm = c.add_const(ct, offset(o))?;
        let mut a = c.mul_plain(&xm, &c.encode(&slots(2.0 / r), l, pt_scale(ct))?)?;
        if let Some(s) = s {
            let w: Vec<C64> = weights[i].iter().map(|&v| C64::new(v, 0.0)).collect();
            let b = c.mul_plain(s, &c.encode(&w, l, pt_scale(s))?)?;
            a = c.add(&a, &b)?;
        }
        let u = c.with_scale(&c.rescale(&a)?, target);
        let u = c.add_const(&u, -1.0)?;
        us.push(u);
    }
    let es = first_exp.evaluate_unit_all(c, &us)?;
    let pads = padding_rows(layout, &masks, group)?;
    let (k0, k1) = o.sum_scales;
    let mut p = normalize(c, layout, &es, group, &pads, &o.inverse, k0)?;
    if let Some(inv) = &o.round_inverse {
        for _ in 0..o.rounds {
            let q = c
                .refresh_all(&p, 1, 1.0)?
                .iter()
                .map(|v| mul(c, v, v))
                .collect::<Result<Vec<_>, _>>()?;
            p = normalize(c, layout, &q, group, &pads, inv, k1)?;
        }
    }
    Ok(p)
}

/// es / (their row sum within each group): the sums times `k` in `inverse`'s interval (rows
/// without a visible key, `pads`, get 1 added so that theirs is too), the result times `k`.
fn normalize<C: Circuit>(
    c: &C,
    layout: &Layout,
    es: &[C::Ct],
    group: usize,
    pads: &[Option<Vec<f64>>],
    inverse: &Inverse,
    k: i64,
) -> Result<Vec<C::Ct>, CkksError> {
    let masked = group < layout.features;
    // The sums go into the inverse without a bootstrap of their own: a bootstrap's error scales
    // with its bound (the key count), far above typical sums (e^-above .. a few).
    let need = usize::from(masked) + super::chain::poly_depth(c, &inverse.guess)? + 1;
    let es = c.refresh_all(es, need, 1.0)?;
    let totals = group_sums(c, layout, &es, group)?;
    let sums = totals
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let s = match pads.get(i) {
                Some(Some(pad)) => {
                    let v: Vec<C64> = pad.iter().map(|&a| C64::new(a, 0.0)).collect();
                    c.add_plain(s, &c.encode(&v, c.level(s), c.scale(s))?)?
                }
                _ => s.clone(),
            };
            if k == 1 {
                Ok(s)
            } else {
                c.mul_int(&s, k)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let invs = inverse.evaluate_all(c, &sums)?;
    let inv_bound = 1.5 / inverse.a;
    // One level each, no spare: the probabilities (<= 1) bootstrap from level 0 (two per
    // bootstrap). The inverse has its level by construction, so its wide bound is never used
    // (scaled sums, k > 1: it is at most 1/2 and bootstraps from level 0 too).
    let es = c.refresh_all(&es, 0, 1.0)?;
    let invs = c.refresh_all(&invs, 0, inv_bound)?;
    es.iter()
        .enumerate()
        .map(|(i, e)| {
            let p = mul(c, e, &invs[i.min(invs.len() - 1)])?;
            if k == 1 {
                Ok(p)
            } else {
                c.mul_int(&p, k)
            }
        })
        .collect()
}

/// Encrypted row softmax of a score matrix in `layout` (keys as features; all ciphertexts at one
/// level and scale). The plan is rehearsed on the simulator first, so too few levels give
/// `LevelsExhausted` before any ciphertext work. Scores outside the promised range (see `Shift`)
/// give garbage under encryption; `softmax_twin` reports them. Errors: the layout,
/// `o.validate()`, too few levels.
pub fn softmax<C: Circuit>(
    c: &C,
    layout: &Layout,
    x: &[C::Ct],
    o: &SoftmaxOptions,
) -> Result<Vec<C::Ct>, CkksError> {
    check_layout(c, layout, x)?;
    o.validate()?;
    softmax_impl(&Simulator::new(c.params()), layout, &metas(c, x), o)?;
    softmax_impl(c, layout, x, o)
}

/// `softmax` without the rehearsal (for circuits that rehearse a whole block).
pub fn softmax_in<C: Circuit>(
    c: &C,
    layout: &Layout,
    x: &[C::Ct],
    o: &SoftmaxOptions,
) -> Result<Vec<C::Ct>, CkksError> {
    check_layout(c, layout, x)?;
    o.validate()?;
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
    o.validate()?;
    super::chain::check_bound_twin("softmax scores", x, o.score_bound())?;
    let r = o.exp.range;
    let group = o.group(layout)?;
    let first_exp = o.first_exp();
    let masks = mask_valid(layout, o.causal, group, o.diagonal, o.valid())?;
    let weights = mean_weights(layout, &masks, group, r)?;
    let visible: Vec<Vec<f64>> = if o.causal || o.valid_keys.is_some() {
        x.iter()
            .zip(&masks)
            .map(|(v, m)| v.iter().zip(m).map(|(a, b)| a * b).collect())
            .collect()
    } else {
        x.to_vec()
    };
    let sums = group_sums_twin(layout, &visible, group)?;
    let mut es = Vec::with_capacity(x.len());
    for (ci, (v, m)) in x.iter().zip(&masks).enumerate() {
        let sums = &sums[ci.min(sums.len() - 1)];
        let mut e = Vec::with_capacity(v.len());
        for (i, (&xv, &mv)) in v.iter().zip(m).enumerate() {
            let s = sums[i];
            let w = weights[ci][i];
            let (shift, mean_term) = match o.shift {
                Shift::Constant(b) => (b, 0.0),
                Shift::RowMean { above } => (-w * r / 2.0 * s + above, w * s),
            };
            if mv != 0.0 && !(xv - shift >= -r * (1.0 + 1e-12) && xv - shift <= 1e-9 * r) {
                return Err(CkksError::OutOfRange(format!(
                    "softmax: score {xv} minus shift {shift} outside exp's interval [-{r}, 0]"
                )));
            }
            let u = mv * (2.0 / r) * (xv + offset(o)) + mean_term - 1.0;
            e.push(first_exp.twin_unit(u));
        }
        es.push(e);
    }
    let pads = padding_rows(layout, &masks, group)?;
    let (k0, k1) = o.sum_scales;
    let mut p = normalize_twin(layout, &es, group, &pads, &o.inverse, k0)?;
    if let Some(inv) = &o.round_inverse {
        for _ in 0..o.rounds {
            let q: Vec<Vec<f64>> = p
                .iter()
                .map(|v| v.iter().map(|a| a * a).collect())
                .collect();
            p = normalize_twin(layout, &q, group, &pads, inv, k1)?;
        }
    }
    Ok(p)
}

/// The twin of `normalize`: `OutOfRange` where a row sum leaves the inverse's interval.
fn normalize_twin(
    layout: &Layout,
    es: &[Vec<f64>],
    group: usize,
    pads: &[Option<Vec<f64>>],
    inverse: &Inverse,
    k: i64,
) -> Result<Vec<Vec<f64>>, CkksError> {
    let mut totals = group_sums_twin(layout, es, group)?;
    for (t, pad) in totals.iter_mut().zip(pads) {
        if let Some(pad) = pad {
            t.iter_mut().zip(pad).for_each(|(a, b)| *a += b);
        }
    }
    let mut out = Vec::with_capacity(es.len());
    for (ci, e) in es.iter().enumerate() {
        let total = &totals[ci.min(totals.len() - 1)];
        let row = e
            .iter()
            .zip(total)
            .map(|(v, &s)| Ok(v * inverse.twin(s * k as f64)? * k as f64))
            .collect::<Result<Vec<f64>, CkksError>>()?;
        out.push(row);
    }
    Ok(out)
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

/// Rotation keys softmax needs (its row sums, per head).
pub fn rotations(layout: &Layout, heads: usize) -> Vec<i64> {
    group_sums_rotations(layout, layout.features / heads.max(1))
}

/// Levels the layer uses on these parameters (rehearsed on the simulator from the top level).
pub fn depth(
    params: &std::sync::Arc<crate::ckks::Parameters>,
    layout: &Layout,
    o: &SoftmaxOptions,
) -> Result<usize, CkksError> {
    o.validate()?;
    rehearse_depth(params, layout, |sim, x| softmax_impl(sim, layout, x, o))
}
