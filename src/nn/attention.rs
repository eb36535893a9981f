//! Ciphertext x ciphertext matmuls of attention, per head, all heads of a layer at once:
//! scores S_h = Q_h K_h^T / sqrt(d_h) and the output A_h V_h, with Q, K, V, the output in the
//! feature-major layout (packing.rs; head h owns features [h d_h, (h+1) d_h), d_h a power of two
//! dividing the features per ciphertext F).
//!
//! **Diagonal order.** For a token shift r < T' (T' tokens per input), K_r = K with its tokens
//! rotated by r within each input, so Q o K_r holds Q[t][j] K[(t+r) mod T'][j]; summing a head's
//! d_h features gives the r-th diagonal of S_h. The scores live in the *score layout*: a
//! T x (heads T') matrix whose column h T' + r is diagonal r of head h, i.e. the query t's keys in
//! the order t, t+1, ... (mod T'). Softmax is order-blind except for the causal mask, which
//! `SoftmaxOptions::attention` builds for this order. The output is sum_r A_h[:, r] o V_r.
//!
//! **Rotations.** A token rotation is two slot rotations (by r and r - T') and two 0/1 masks in
//! one level; baby-step giant-step (r = g B + b, babies hoisted) keeps the keys at O(sqrt T').
//! Each diagonal costs log2(d_h) rotations for the head sum and one per head to move it to its
//! column, accumulated Horner-style with a single rotation key; A's columns are walked the
//! other way, one rotation per head and diagonal, then copied over the head's d_h features
//! (log2(d_h) rotations). About T' (heads + 2 ceil(D/F) (log2(d_h) + 1)) key switches per
//! attention.
//!
//! **Levels.** Scores: 3 below K (token rotation, product, head mask), 2 below Q. Output: 2
//! below A (column mask, product), 2 below V. With softmax between: see `depth`.

use super::chain::{mul, mul_plain_down};
use super::packing::Layout;
use super::packing::{check_layout, check_slots};
use super::softmax::{softmax_in, softmax_twin, SoftmaxOptions};
use crate::ckks::{Circuit, CkksError, Simulator};
use crate::math::fft::C64;

/// One attention layer's shape and approximations.
#[derive(Clone, Debug)]
pub struct AttentionOptions {
    pub heads: usize,
    /// Softmax of the scores (`SoftmaxOptions::attention`: same heads, diagonal order).
    pub softmax: SoftmaxOptions,
    /// |q|, |k|, |v| <= bound (what a bootstrap of them assumes).
    pub bound: f64,
}

impl AttentionOptions {
    /// Each score row's max at most `above` over its head's mean; |q|, |k|, |v| <= `bound`.
    /// Errors: `head_dim(layout, heads)`, as `SoftmaxOptions::attention` and `validate`.
    pub fn new(
        layout: &Layout,
        heads: usize,
        above: f64,
        bound: f64,
        causal: bool,
    ) -> Result<Self, CkksError> {
        // The shape first: too many tokens for the ring is an error here, before any work.
        head_dim(layout, heads)?;
        let tin = layout.tokens_per_input();
        let softmax = SoftmaxOptions::attention(tin, heads, above, causal)?;
        let o = AttentionOptions {
            heads,
            softmax,
            bound,
        };
        o.validate()?;
        Ok(o)
    }

    /// Errors (`Invalid`): a bound that is not finite and positive, `softmax` failing its
    /// `validate` or not over `heads` heads in diagonal order.
    pub fn validate(&self) -> Result<(), CkksError> {
        let b = self.bound;
        if !(b.is_finite() && b > 0.0) {
            return Err(CkksError::Invalid(format!("attention: bound {b}")));
        }
        self.softmax.validate()?;
        if self.softmax.heads != self.heads || !self.softmax.diagonal {
            return Err(CkksError::Invalid(format!(
                "attention over {} heads with a softmax over {} (need the same, diagonal order: \
                 `SoftmaxOptions::attention`)",
                self.heads, self.softmax.heads
            )));
        }
        Ok(())
    }
}

/// Head width d_h, checked against the layout (`Layout::validate` included).
pub fn head_dim(layout: &Layout, heads: usize) -> Result<usize, CkksError> {
    layout.validate()?;
    let tin = layout.tokens_per_input();
    if heads == 0 || layout.features % heads != 0 {
        return Err(CkksError::Invalid(format!(
            "{} features do not split into {heads} heads",
            layout.features
        )));
    }
    let dh = layout.features / heads;
    if !dh.is_power_of_two() {
        return Err(CkksError::Invalid(format!(
            "head width {dh} ({} features / {heads} heads) must be a power of two",
            layout.features
        )));
    }
    // Both are powers of two, so "divides" is "at most": too many tokens leave too few features
    // per ciphertext for a head (d_h) or for the score layout (T' columns per head).
    let need = dh.max(tin);
    if layout.per_ct < need {
        let slots = layout.tokens * layout.per_ct;
        return Err(CkksError::Invalid(format!(
            "too many tokens for the ring: {tin} tokens{} in {slots} slots leave {} features per \
             ciphertext, but attention needs max(head width {dh}, tokens {tin}) = {need}; \
             {} (use fewer tokens or a larger ring)",
            if layout.batch > 1 {
                format!(" per input x {} inputs", layout.batch)
            } else {
                String::new()
            },
            layout.per_ct,
            match max_attention_tokens(slots / layout.batch, dh) {
                0 => format!("head width {dh} does not fit at all"),
                t => format!("at most {t} tokens fit"),
            }
        )));
    }
    Ok(dh)
}

/// The largest token count (a power of two) whose attention fits `slots` slots per input with head
/// width `dh`: T' d_h <= slots and T'^2 <= slots (0 when none does).
pub fn max_attention_tokens(slots: usize, dh: usize) -> usize {
    let mut t = 0;
    let mut c = 1usize;
    while c.saturating_mul(dh.max(c)) <= slots {
        t = c;
        c *= 2;
    }
    t
}

/// The layout of the scores: T rows, heads T' columns (diagonal order, see the module docs).
pub fn scores_layout(layout: &Layout, heads: usize) -> Result<Layout, CkksError> {
    head_dim(layout, heads)?;
    Ok(layout.with_features(heads * layout.tokens_per_input()))
}

/// Key index of column r for query t (diagonal order, within an input of T' tokens).
pub fn key_of(t: usize, r: usize, tin: usize) -> usize {
    (t % tin + r) % tin
}

fn baby_count(tin: usize) -> usize {
    1 << (tin.trailing_zeros().div_ceil(2))
}

/// Where head h lives: (Q ciphertext, its first feature there, score ciphertext, first column
/// there).
fn places(layout: &Layout, heads: usize, h: usize) -> (usize, usize, usize, usize) {
    let dh = layout.features / heads;
    let (f, tin) = (layout.per_ct, layout.tokens_per_input());
    (h * dh / f, h * dh % f, h * tin / f, h * tin % f)
}

/// Slot vector with `value` in every token slot of the listed features.
fn feature_mask(layout: &Layout, features: &[usize], value: f64) -> Vec<C64> {
    let t = layout.tokens;
    let mut v = vec![C64::default(); layout.slots()];
    for &j in features {
        for s in &mut v[j * t..(j + 1) * t] {
            *s = C64::new(value, 0.0);
        }
    }
    v
}

/// Token rotations of one ciphertext (module docs), babies hoisted once.
struct TokenRotator<C: Circuit> {
    babies: Vec<C::Ct>,
    b: usize,
}

impl<C: Circuit> TokenRotator<C> {
    fn new(c: &C, layout: &Layout, x: &C::Ct) -> Result<Self, CkksError> {
        let b = baby_count(layout.tokens_per_input());
        let rs: Vec<i64> = (1..b as i64).collect();
        let mut babies = vec![x.clone()];
        babies.extend(c.rotate_hoisted(x, &rs)?);
        Ok(TokenRotator { babies, b })
    }

    /// Slot rotation by r (any sign, |r| < 2 T'): a giant rotation of a baby.
    fn slot_rotation(&self, c: &C, r: i64) -> Result<C::Ct, CkksError> {
        let b = r.rem_euclid(self.b as i64);
        let g = r - b;
        let x = &self.babies[b as usize];
        if g == 0 {
            Ok(x.clone())
        } else {
            c.rotate(x, g)
        }
    }

    /// Tokens rotated by r within each input, times k: one level, on the default chain.
    fn rotated(&self, c: &C, layout: &Layout, r: usize, k: f64) -> Result<C::Ct, CkksError> {
        let tin = layout.tokens_per_input();
        let x = &self.babies[0];
        let l = c.level(x);
        if l == 0 {
            return Err(CkksError::LevelsExhausted(
                "a token rotation at level 0".into(),
            ));
        }
        let lo: Vec<C64> = (0..layout.slots())
            .map(|s| {
                C64::new(
                    if (s % layout.tokens) % tin < tin - r {
                        k
                    } else {
                        0.0
                    },
                    0.0,
                )
            })
            .collect();
        let target = c.params().default_scales[l - 1];
        let pt_scale = target * c.params().rescale_factor(l) / c.scale(x);
        let mut acc = c.mul_plain(
            &self.slot_rotation(c, r as i64)?,
            &c.encode(&lo, l, pt_scale)?,
        )?;
        if r > 0 {
            let hi: Vec<C64> = lo
                .iter()
                .map(|v| C64::new(if v.re == 0.0 { k } else { 0.0 }, 0.0))
                .collect();
            let lower = self.slot_rotation(c, r as i64 - tin as i64)?;
            acc = c.add(&acc, &c.mul_plain(&lower, &c.encode(&hi, l, pt_scale)?)?)?;
        }
        Ok(c.with_scale(&c.rescale(&acc)?, target))
    }
}

/// prev + term, or term when there is nothing yet.
fn accumulate<C: Circuit>(c: &C, prev: Option<C::Ct>, term: C::Ct) -> Result<C::Ct, CkksError> {
    match prev {
        None => Ok(term),
        Some(p) => c.add(&p, &term),
    }
}

/// Rotate-and-add by `dir` T 2^k for 2^k < width: with dir = 1 each feature gets the sum of the
/// `width` features from it on; with dir = -1 a single feature is copied over the next `width`.
fn spread<C: Circuit>(
    c: &C,
    layout: &Layout,
    x: &C::Ct,
    width: usize,
    dir: i64,
) -> Result<C::Ct, CkksError> {
    let mut acc = x.clone();
    let mut step = 1;
    while step < width {
        let r = dir * (step * layout.tokens) as i64;
        acc = c.add(&acc, &c.rotate(&acc, r)?)?;
        step *= 2;
    }
    Ok(acc)
}

/// S = Q K^T / sqrt(d_h) for every head, in `scores_layout` (module docs).
pub fn scores<C: Circuit>(
    c: &C,
    layout: &Layout,
    q: &[C::Ct],
    k: &[C::Ct],
    heads: usize,
) -> Result<Vec<C::Ct>, CkksError> {
    let dh = head_dim(layout, heads)?;
    check_layout(c, layout, q)?;
    check_layout(c, layout, k)?;
    let sl = scores_layout(layout, heads)?;
    let tin = layout.tokens_per_input();
    let per_q = layout.per_ct / dh;
    let scale = 1.0 / (dh as f64).sqrt();
    let mut out: Vec<Option<C::Ct>> = vec![None; sl.cts()];
    for (ci, (qc, kc)) in q.iter().zip(k).enumerate() {
        let hs: Vec<usize> = (ci * per_q..((ci + 1) * per_q).min(heads)).collect();
        let rot = TokenRotator::new(c, layout, kc)?;
        let mut acc: Vec<Option<C::Ct>> = vec![None; hs.len()];
        for r in (0..tin).rev() {
            let kr = rot.rotated(c, layout, r, 1.0)?;
            let y = spread(c, layout, &mul(c, qc, &kr)?, dh, 1)?;
            for (a, &h) in acc.iter_mut().zip(&hs) {
                let (_, lh, _, _) = places(layout, heads, h);
                let z = mul_plain_down(c, &y, &feature_mask(layout, &[lh], scale))?;
                let prev = a.take().map(|p| c.rotate(&p, -(layout.tokens as i64)));
                *a = Some(accumulate(c, prev.transpose()?, z)?);
            }
        }
        for (a, &h) in acc.into_iter().zip(&hs) {
            let (_, lh, s, base) = places(layout, heads, h);
            let a = a.expect("tin >= 1");
            let shift = (lh as i64 - base as i64) * layout.tokens as i64;
            let placed = if shift == 0 { a } else { c.rotate(&a, shift)? };
            out[s] = Some(accumulate(c, out[s].take(), placed)?);
        }
    }
    out.into_iter()
        .map(|o| o.ok_or_else(|| CkksError::Invalid("a score ciphertext with no head".into())))
        .collect()
}

/// A V for every head: `a` in `scores_layout` (diagonal order), `v` and the result in `layout`.
pub fn attend<C: Circuit>(
    c: &C,
    layout: &Layout,
    a: &[C::Ct],
    v: &[C::Ct],
    heads: usize,
) -> Result<Vec<C::Ct>, CkksError> {
    let dh = head_dim(layout, heads)?;
    let sl = scores_layout(layout, heads)?;
    check_layout(c, &sl, a)?;
    check_layout(c, layout, v)?;
    let tin = layout.tokens_per_input();
    let per_q = layout.per_ct / dh;
    let t = layout.tokens as i64;
    let mut out = Vec::with_capacity(v.len());
    for (ci, vc) in v.iter().enumerate() {
        let hs: Vec<usize> = (ci * per_q..((ci + 1) * per_q).min(heads)).collect();
        // Head h's columns, moved so that column r sits at the head's first feature after r
        // rotations by T.
        let mut cur: Vec<C::Ct> = hs
            .iter()
            .map(|&h| {
                let (_, lh, s, base) = places(layout, heads, h);
                let shift = (base as i64 - lh as i64) * t;
                if shift == 0 {
                    Ok(a[s].clone())
                } else {
                    c.rotate(&a[s], shift)
                }
            })
            .collect::<Result<_, CkksError>>()?;
        let rot = TokenRotator::new(c, layout, vc)?;
        let mut acc: Option<C::Ct> = None;
        for r in 0..tin {
            let mut sel: Option<C::Ct> = None;
            for (cu, &h) in cur.iter().zip(&hs) {
                let (_, lh, _, _) = places(layout, heads, h);
                let m = mul_plain_down(c, cu, &feature_mask(layout, &[lh], 1.0))?;
                sel = Some(accumulate(c, sel, m)?);
            }
            let col = spread(c, layout, &sel.expect("a head per ciphertext"), dh, -1)?;
            let term = mul(c, &col, &rot.rotated(c, layout, r, 1.0)?)?;
            acc = Some(accumulate(c, acc, term)?);
            if r + 1 < tin {
                for cu in cur.iter_mut() {
                    *cu = c.rotate(cu, t)?;
                }
            }
        }
        out.push(acc.expect("tin >= 1"));
    }
    Ok(out)
}

/// `attention` without the rehearsal (for circuits that bootstrap or rehearse a whole block).
pub fn attention_in<C: Circuit>(
    c: &C,
    layout: &Layout,
    q: &[C::Ct],
    k: &[C::Ct],
    v: &[C::Ct],
    o: &AttentionOptions,
) -> Result<Vec<C::Ct>, CkksError> {
    o.validate()?;
    // Q, K and V refreshed together (two per bootstrap), each for its own stage's depth.
    let needs: Vec<usize> = [(q.len(), 2), (k.len(), 3), (v.len(), 2)]
        .iter()
        .flat_map(|&(n, need)| std::iter::repeat_n(need, n))
        .collect();
    let qkv = c.refresh_each(&[q, k, v].concat(), &needs, o.bound)?;
    let (q, rest) = qkv.split_at(q.len());
    let (k, v) = rest.split_at(k.len());
    let s = scores(c, layout, &q, &k, o.heads)?;
    let sl = scores_layout(layout, o.heads)?;
    let a = softmax_in(c, &sl, &s, &o.softmax)?;
    let a = c.refresh_all(&a, 2, 1.0)?;
    attend(c, layout, &a, v, o.heads)
}

/// Encrypted multi-head attention softmax(Q K^T / sqrt(d_h)) V (causal if the options say so).
/// Rehearsed on the simulator first (without bootstrapping: too few levels give
/// `LevelsExhausted`); under `Refreshing` the stages bootstrap as needed.
pub fn attention<C: Circuit>(
    c: &C,
    layout: &Layout,
    q: &[C::Ct],
    k: &[C::Ct],
    v: &[C::Ct],
    o: &AttentionOptions,
) -> Result<Vec<C::Ct>, CkksError> {
    check_layout(c, layout, v)?;
    let sim = Simulator::new(c.params());
    let m = |x: &[C::Ct]| super::chain::metas(c, x);
    attention_in(&sim, layout, &m(q), &m(k), &m(v), o)?;
    attention_in(c, layout, q, k, v, o)
}

/// The f64 twin of `scores` on slot vectors (exact arithmetic: scores have no approximation).
pub fn scores_twin(
    layout: &Layout,
    q: &[Vec<f64>],
    k: &[Vec<f64>],
    heads: usize,
) -> Result<Vec<Vec<f64>>, CkksError> {
    let dh = head_dim(layout, heads)?;
    check_slots(layout, q)?;
    check_slots(layout, k)?;
    let sl = scores_layout(layout, heads)?;
    let (t, f, tin) = (layout.tokens, layout.per_ct, layout.tokens_per_input());
    let at = |x: &[Vec<f64>], tok: usize, col: usize| x[col / f][(col % f) * t + tok];
    let mut out = vec![vec![0.0; sl.slots()]; sl.cts()];
    for h in 0..heads {
        for tok in 0..t {
            let b0 = tok - tok % tin;
            for r in 0..tin {
                let key = b0 + key_of(tok, r, tin);
                let s: f64 = (h * dh..(h + 1) * dh)
                    .map(|j| at(q, tok, j) * at(k, key, j))
                    .sum();
                let col = h * tin + r;
                out[col / f][(col % f) * t + tok] = s / (dh as f64).sqrt();
            }
        }
    }
    Ok(out)
}

/// The f64 twin of `attend`.
pub fn attend_twin(
    layout: &Layout,
    a: &[Vec<f64>],
    v: &[Vec<f64>],
    heads: usize,
) -> Result<Vec<Vec<f64>>, CkksError> {
    let dh = head_dim(layout, heads)?;
    check_slots(&scores_layout(layout, heads)?, a)?;
    check_slots(layout, v)?;
    let (t, f, tin) = (layout.tokens, layout.per_ct, layout.tokens_per_input());
    let mut out = vec![vec![0.0; layout.slots()]; layout.cts()];
    for j in 0..layout.features {
        let h = j / dh;
        for tok in 0..t {
            let b0 = tok - tok % tin;
            let s: f64 = (0..tin)
                .map(|r| {
                    let col = h * tin + r;
                    let key = b0 + key_of(tok, r, tin);
                    a[col / f][(col % f) * t + tok] * v[j / f][(j % f) * t + key]
                })
                .sum();
            out[j / f][(j % f) * t + tok] = s;
        }
    }
    Ok(out)
}

/// The twin of `attention`: exact products, the same softmax approximations.
pub fn attention_twin(
    layout: &Layout,
    q: &[Vec<f64>],
    k: &[Vec<f64>],
    v: &[Vec<f64>],
    o: &AttentionOptions,
) -> Result<Vec<Vec<f64>>, CkksError> {
    o.validate()?;
    for (name, m) in [("query", q), ("key", k), ("value", v)] {
        super::chain::check_bound_twin(name, m, o.bound)?;
    }
    let s = scores_twin(layout, q, k, o.heads)?;
    let a = softmax_twin(&scores_layout(layout, o.heads)?, &s, &o.softmax)?;
    attend_twin(layout, &a, v, o.heads)
}

/// Exact multi-head attention on row-major T x D matrices (true softmax; causal within each input
/// of `tin` tokens).
pub fn attention_exact(
    q: &[Vec<f64>],
    k: &[Vec<f64>],
    v: &[Vec<f64>],
    heads: usize,
    tin: usize,
    causal: bool,
) -> Vec<Vec<f64>> {
    attention_exact_valid(q, k, v, heads, tin, causal, tin)
}

/// `attention_exact` with only the first `valid` keys of each input visible (the rest padding).
pub fn attention_exact_valid(
    q: &[Vec<f64>],
    k: &[Vec<f64>],
    v: &[Vec<f64>],
    heads: usize,
    tin: usize,
    causal: bool,
    valid: usize,
) -> Vec<Vec<f64>> {
    let d = q[0].len();
    let dh = d / heads;
    let mut out = vec![vec![0.0; d]; q.len()];
    for (tok, row) in out.iter_mut().enumerate() {
        let b0 = tok - tok % tin;
        for h in 0..heads {
            let cols = h * dh..(h + 1) * dh;
            let keys: Vec<usize> = (b0..b0 + tin.min(valid.max(1)))
                .filter(|&u| !causal || u <= tok)
                .collect();
            let s: Vec<f64> = keys
                .iter()
                .map(|&u| {
                    cols.clone().map(|j| q[tok][j] * k[u][j]).sum::<f64>() / (dh as f64).sqrt()
                })
                .collect();
            let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
            let z: f64 = e.iter().sum();
            for j in cols {
                row[j] = keys.iter().zip(&e).map(|(&u, w)| w / z * v[u][j]).sum();
            }
        }
    }
    out
}

/// Rotation keys of `attention` (softmax's included).
pub fn rotations(layout: &Layout, heads: usize) -> Result<Vec<i64>, CkksError> {
    let dh = head_dim(layout, heads)?;
    let tin = layout.tokens_per_input();
    let t = layout.tokens as i64;
    let b = baby_count(tin) as i64;
    let mut r: Vec<i64> = (1..b).collect();
    let mut g = -(tin as i64) - b;
    while g < tin as i64 {
        g += b;
        r.push(g);
    }
    let mut step = 1;
    while step < dh {
        r.push(step as i64 * t);
        r.push(-(step as i64) * t);
        step *= 2;
    }
    r.extend([t, -t]);
    for h in 0..heads {
        let (_, lh, _, base) = places(layout, heads, h);
        r.push((lh as i64 - base as i64) * t);
        r.push((base as i64 - lh as i64) * t);
    }
    let sl = scores_layout(layout, heads)?;
    r.extend(super::softmax::rotations(&sl, heads));
    r.retain(|&x| x.rem_euclid(layout.slots() as i64) != 0);
    r.sort_unstable();
    r.dedup();
    Ok(r)
}

/// Levels `attention` spends on these parameters (rehearsed on the simulator from the top level).
pub fn depth(
    params: &std::sync::Arc<crate::ckks::Parameters>,
    layout: &Layout,
    o: &AttentionOptions,
) -> Result<usize, CkksError> {
    super::chain::rehearse_depth(params, layout, |sim, x| {
        attention_in(sim, layout, x, x, x, o)
    })
}
