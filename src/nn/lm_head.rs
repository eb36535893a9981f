//! A language-model head on ciphertexts: logits = W x for one token's row x (D values) and a
//! vocabulary far larger than a ciphertext's feature columns (GPT-2: V = 50 257, D = 768).
//!
//! **Dense logits from a replicated row.** The feature-major layout (packing.rs) puts feature k of
//! token u at slot k T + u. When every row holds the same token (decode; or after
//! [`replicate_row`]), the T slots of a feature block are T copies, so they can carry T
//! *different* logits: output ciphertext m holds logit v = m S + j T + u at slot j T + u (S = T F
//! slots). Rotating the input by d T moves block (j + d) mod F to block j, so
//!
//! ```text
//! out_m = sum_c sum_{d < F} diag_{c,d} o rot(x_c, d T),   diag_{c,d}[j T + u] = W[v][c F + (j + d) mod F]
//! ```
//!
//! evaluated baby-step giant-step like `matmul::linear` (babies hoisted and shared by every output
//! ciphertext). ceil(V / S) output ciphertexts instead of the V / F a feature-major output would
//! take (GPT-2 small at T = 64: 2 instead of 99), one level, about 2 sqrt(F) rotations each.
//!
//! [`replicate_row`] turns a T-row matrix into copies of one of its rows (prefill's last token):
//! a 0/1 mask (one level), a rotation to row 0 (one per set bit of the row index) and doubling
//! by -1, -2, ..., -T/2 inside each block.

use super::chain::mul_plain_down;
use super::matmul::Linear;
use super::packing::{check_layout, check_slots, Layout};
use crate::ckks::{Circuit, CkksError};
use crate::math::fft::C64;

/// Output ciphertexts the head's V logits take in `layout` (ceil(V / S)).
pub fn head_cts(layout: &Layout, vocab: usize) -> usize {
    vocab.div_ceil(layout.slots())
}

fn check(layout: &Layout, lin: &Linear) -> Result<(), CkksError> {
    lin.validate()?;
    layout.validate()?;
    if layout.features != lin.d_in() || layout.batch != 1 {
        return Err(CkksError::Invalid(format!(
            "an LM head of {} inputs on a {}-feature layout of batch {} (need D and no batch)",
            lin.d_in(),
            layout.features,
            layout.batch
        )));
    }
    Ok(())
}

/// The baby steps n1 (a power of two dividing F) and the diagonal `d` of input ciphertext `ci`
/// for output ciphertext `m`, pre-rotated by -`shift` slots; None when it is all zero.
fn diagonal(
    layout: &Layout,
    lin: &Linear,
    ci: usize,
    m: usize,
    d: usize,
    shift: usize,
) -> Option<Vec<f64>> {
    let (t, f, s) = (layout.tokens, layout.per_ct, layout.slots());
    let mut out = vec![0.0; s];
    let mut any = false;
    for (slot, o) in out.iter_mut().enumerate() {
        // The value at `slot` after the giant rotation by `shift` sits at slot + shift before it.
        let at = (slot + s - shift) % s;
        let (j, u) = (at / t, at % t);
        let vocab = m * s + j * t + u;
        let feature = ci * f + (j + d) % f;
        if vocab < lin.d_out() && feature < lin.d_in() {
            let w = lin.weight[feature][vocab];
            if w != 0.0 {
                *o = w;
                any = true;
            }
        }
    }
    any.then_some(out)
}

fn baby_steps(f: usize) -> usize {
    let mut n1 = 1;
    while n1 * n1 < f {
        n1 *= 2;
    }
    n1
}

/// The rotations [`lm_head`] needs.
pub fn lm_head_rotations(layout: &Layout) -> Vec<i64> {
    let (t, f) = (layout.tokens as i64, layout.per_ct);
    let n1 = baby_steps(f);
    let mut r: Vec<i64> = (1..n1 as i64).map(|b| b * t).collect();
    r.extend((1..(f / n1) as i64).map(|g| g * n1 as i64 * t));
    r
}

/// The logits of the token whose row fills every row of `x` (layout: D features): ceil(V / S)
/// ciphertexts, logit v at slot v mod S of ciphertext v / S (module docs), one level below `x`,
/// plus the bias. Errors: the layout or `lin` invalid, D not the layout's features, a batch
/// layout, ciphertexts not matching the layout or at level 0.
pub fn lm_head<C: Circuit>(
    c: &C,
    layout: &Layout,
    x: &[C::Ct],
    lin: &Linear,
) -> Result<Vec<C::Ct>, CkksError> {
    check(layout, lin)?;
    check_layout(c, layout, x)?;
    let level = x.iter().map(|ct| c.level(ct)).min().unwrap_or(0);
    if level == 0 {
        return Err(CkksError::LevelsExhausted(
            "the LM head needs one level (bootstrap first)".into(),
        ));
    }
    let x = x
        .iter()
        .map(|ct| c.drop_to_level(ct, level))
        .collect::<Result<Vec<_>, _>>()?;
    let (t, f, s) = (layout.tokens, layout.per_ct, layout.slots());
    let n1 = baby_steps(f);
    let w_scale = c.params().rescale_factor(level);
    let babies: Vec<i64> = (1..n1).map(|b| (b * t) as i64).collect();
    let rotated: Vec<Vec<C::Ct>> = x
        .iter()
        .map(|ct| {
            let mut r = vec![ct.clone()];
            r.extend(c.rotate_hoisted(ct, &babies)?);
            Ok(r)
        })
        .collect::<Result<_, CkksError>>()?;
    let c64 = |v: &[f64]| -> Vec<C64> { v.iter().map(|&a| C64::new(a, 0.0)).collect() };
    let mut out = Vec::new();
    for m in 0..head_cts(layout, lin.d_out()) {
        let mut acc: Option<C::Ct> = None;
        for g in 0..f / n1 {
            let shift = g * n1 * t;
            let mut inner: Option<C::Ct> = None;
            for (ci, r) in rotated.iter().enumerate() {
                for (b, rb) in r.iter().enumerate() {
                    let Some(diag) = diagonal(layout, lin, ci, m, g * n1 + b, shift) else {
                        continue;
                    };
                    let pt = c.encode(&c64(&diag), level, w_scale)?;
                    let term = c.mul_plain(rb, &pt)?;
                    inner = Some(match inner {
                        None => term,
                        Some(a) => c.add(&a, &term)?,
                    });
                }
            }
            let Some(inner) = inner else { continue };
            let inner = if shift != 0 {
                c.rotate(&inner, shift as i64)?
            } else {
                inner
            };
            acc = Some(match acc {
                None => inner,
                Some(a) => c.add(&a, &inner)?,
            });
        }
        let y = match acc {
            Some(a) => c.rescale(&a)?,
            None => c.rescale(&c.mul_const(&x[0], 0.0, w_scale)?)?,
        };
        let bias: Vec<f64> = (0..s)
            .map(|slot| lin.bias.get(m * s + slot).copied().unwrap_or(0.0))
            .collect();
        let pt = c.encode(&c64(&bias), c.level(&y), c.scale(&y))?;
        out.push(c.add_plain(&y, &pt)?);
    }
    Ok(out)
}

/// The twin of [`lm_head`] on slot vectors: the same dense packing, computed from the same
/// diagonals (so a row that is not replicated gives what the ciphertexts would).
pub fn lm_head_twin(
    layout: &Layout,
    x: &[Vec<f64>],
    lin: &Linear,
) -> Result<Vec<Vec<f64>>, CkksError> {
    check(layout, lin)?;
    check_slots(layout, x)?;
    let (t, f, s) = (layout.tokens, layout.per_ct, layout.slots());
    Ok((0..head_cts(layout, lin.d_out()))
        .map(|m| {
            (0..s)
                .map(|slot| {
                    let (j, u) = (slot / t, slot % t);
                    let vocab = m * s + slot;
                    if vocab >= lin.d_out() {
                        return 0.0;
                    }
                    let mut acc = lin.bias[vocab];
                    for (ci, xc) in x.iter().enumerate() {
                        for d in 0..f {
                            let feature = ci * f + (j + d) % f;
                            if feature < lin.d_in() {
                                acc += lin.weight[feature][vocab] * xc[((j + d) % f) * t + u];
                            }
                        }
                    }
                    acc
                })
                .collect()
        })
        .collect())
}

/// The client's reading of the head's decrypted slot vectors: V logits. Errors: too few vectors
/// or slots.
pub fn read_logits(
    layout: &Layout,
    vocab: usize,
    slots: &[Vec<f64>],
) -> Result<Vec<f64>, CkksError> {
    let s = layout.slots();
    if slots.len() < head_cts(layout, vocab) || slots.iter().any(|v| v.len() < s) {
        return Err(CkksError::Invalid(format!(
            "{} logit vectors, expected {} of {s} slots",
            slots.len(),
            head_cts(layout, vocab)
        )));
    }
    Ok((0..vocab).map(|v| slots[v / s][v % s]).collect())
}

/// The rotations [`replicate_row`] needs: 1, 2, ..., T/2 and their negatives.
pub fn replicate_rotations(layout: &Layout) -> Vec<i64> {
    let mut r = Vec::new();
    let mut step = 1i64;
    while step < layout.tokens as i64 {
        r.extend([step, -step]);
        step *= 2;
    }
    r
}

/// Every row of `x` replaced by its row `row` (< T, no batch): one level. Errors: the layout
/// invalid or batched, `row` out of range, ciphertexts not matching the layout or at level 0.
pub fn replicate_row<C: Circuit>(
    c: &C,
    layout: &Layout,
    x: &[C::Ct],
    row: usize,
) -> Result<Vec<C::Ct>, CkksError> {
    layout.validate()?;
    check_layout(c, layout, x)?;
    let t = layout.tokens;
    if layout.batch != 1 || row >= t {
        return Err(CkksError::Invalid(format!(
            "row {row} of a {t}-token layout of batch {}",
            layout.batch
        )));
    }
    let mask: Vec<C64> = (0..layout.slots())
        .map(|s| C64::new(if s % t == row { 1.0 } else { 0.0 }, 0.0))
        .collect();
    x.iter()
        .map(|ct| {
            let mut acc = mul_plain_down(c, ct, &mask)?;
            // Row `row` of each block to row 0: rotations by its set bits (all within T).
            let mut bit = 1;
            while bit < t {
                if row & bit != 0 {
                    acc = c.rotate(&acc, bit as i64)?;
                }
                bit *= 2;
            }
            // Doubling to the right stays inside each block (2 step <= T).
            let mut step = 1;
            while step < t {
                acc = c.add(&acc, &c.rotate(&acc, -(step as i64))?)?;
                step *= 2;
            }
            Ok(acc)
        })
        .collect()
}

/// The twin of [`replicate_row`].
pub fn replicate_row_twin(
    layout: &Layout,
    x: &[Vec<f64>],
    row: usize,
) -> Result<Vec<Vec<f64>>, CkksError> {
    layout.validate()?;
    check_slots(layout, x)?;
    let t = layout.tokens;
    if layout.batch != 1 || row >= t {
        return Err(CkksError::Invalid(format!(
            "row {row} of a {t}-token layout of batch {}",
            layout.batch
        )));
    }
    Ok(x.iter()
        .map(|v| (0..v.len()).map(|s| v[s - s % t + row]).collect())
        .collect())
}
