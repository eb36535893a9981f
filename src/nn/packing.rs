//! How a (tokens x features) activation matrix lives in CKKS slots.
//!
//! **Feature-major layout.** A ciphertext has `slots = T * F` slots (T tokens, a power of two; F
//! features per ciphertext, a power of two). Feature j of ciphertext c (the matrix's column
//! c F + j) holds its T token values contiguously:
//!
//! ```text
//! slot j*T + t  =  X[t][c*F + j]          (t < T, j < F)
//! ```
//!
//! A matrix of D features spans ceil(D / F) ciphertexts; the columns past D are zero. Why this
//! layout:
//! - per-token operations act on every slot alike (GELU, the exp of softmax, scaling by gamma);
//! - per-token reductions over features (LayerNorm's mean and variance, softmax's row sum) are sums
//!   across the F blocks of T slots: add the ciphertexts, then log2(F) rotations by T, 2T, ...,
//!   F T / 2, after which every block holds the total (`row_sum` below);
//! - a ct x pt matmul is a linear map on blocks with one scalar per (input feature, output
//!   feature): its diagonals are rotations by multiples of T, so BSGS needs only O(sqrt F) keys.
//!
//! **Batch layout (throughput).** B inputs of T tokens each are stacked along the token axis:
//! token index b T + t, so the layout is the feature-major layout of a (B T) x D matrix. Linear
//! layers, GELU and LayerNorm do not see the difference; attention must keep inputs apart (its
//! token rotations run within blocks of T). `Layout::batched` builds it and `unbatch` splits the
//! result; converting one latency layout into a batch layout is a pure re-indexing of which tokens
//! go in, done on the client before encryption.
//!
//! Ciphertexts with fewer slots than N/2 use sparse packing, so rotations are cyclic in `slots`.

use crate::ckks::{Circuit, CkksError};
use crate::math::fft::C64;

/// The feature-major layout of a T x D matrix (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Layout {
    /// Rows (tokens, times the batch size for a batch layout): a power of two.
    pub tokens: usize,
    /// Columns of the matrix (D).
    pub features: usize,
    /// Columns per ciphertext (F): a power of two.
    pub per_ct: usize,
    /// Inputs stacked along the token axis (1: latency layout).
    pub batch: usize,
}

impl Layout {
    /// The layout of a `tokens x features` matrix in ciphertexts of at most `max_slots` slots.
    /// F is the largest power of two with T F <= max_slots (every layout of a model at the same T
    /// then shares F, so matmuls need no re-packing); narrower matrices leave F - D columns zero.
    /// Errors: `max_slots` or `tokens` not a power of two, tokens > max_slots, no features.
    pub fn new(tokens: usize, features: usize, max_slots: usize) -> Result<Self, CkksError> {
        if !max_slots.is_power_of_two() {
            return Err(CkksError::Invalid(format!(
                "{max_slots} slots per ciphertext: need a power of two"
            )));
        }
        if !tokens.is_power_of_two() || tokens > max_slots {
            return Err(CkksError::Invalid(format!(
                "tokens must be a power of two at most {max_slots}, got {tokens} (pad the sequence)"
            )));
        }
        if features == 0 {
            return Err(CkksError::Invalid("a matrix with no features".into()));
        }
        Ok(Layout {
            tokens,
            features,
            per_ct: max_slots / tokens,
            batch: 1,
        })
    }

    /// B inputs of `tokens` tokens each, stacked along the token axis. Errors: as `new`, or a
    /// batch that is not a power of two.
    pub fn batched(
        batch: usize,
        tokens: usize,
        features: usize,
        max_slots: usize,
    ) -> Result<Self, CkksError> {
        if !batch.is_power_of_two() {
            return Err(CkksError::Invalid(format!(
                "the batch must be a power of two, got {batch}"
            )));
        }
        let rows = batch.checked_mul(tokens).ok_or_else(|| {
            CkksError::Invalid(format!("{batch} inputs of {tokens} tokens overflow"))
        })?;
        let mut l = Layout::new(rows, features, max_slots)?;
        l.batch = batch;
        Ok(l)
    }

    /// Checks a layout built by hand: tokens, features per ciphertext and batch powers of two,
    /// the batch at most the tokens, some features, T F without overflow. Errors: `Invalid`.
    /// (The accessors do not panic on a layout that fails it; the layers call it.)
    pub fn validate(&self) -> Result<(), CkksError> {
        let ok = self.tokens.is_power_of_two()
            && self.per_ct.is_power_of_two()
            && self.batch.is_power_of_two()
            && self.batch <= self.tokens
            && self.features > 0
            && self.tokens.checked_mul(self.per_ct).is_some();
        if !ok {
            return Err(CkksError::Invalid(format!(
                "malformed layout {self:?}: tokens, per_ct and batch must be powers of two, \
                 batch <= tokens, features > 0"
            )));
        }
        Ok(())
    }

    /// Tokens of one input.
    pub fn tokens_per_input(&self) -> usize {
        self.tokens.checked_div(self.batch).unwrap_or(0)
    }

    /// The same token axis with another number of features.
    pub fn with_features(&self, features: usize) -> Self {
        Layout { features, ..*self }
    }

    /// Slots per ciphertext (T F).
    pub fn slots(&self) -> usize {
        self.tokens.saturating_mul(self.per_ct)
    }

    /// Ciphertexts the matrix spans.
    pub fn cts(&self) -> usize {
        if self.per_ct == 0 {
            return 0;
        }
        self.features.div_ceil(self.per_ct)
    }

    /// Slot vectors of a row-major T x D matrix (the client encodes these). Errors: `validate`,
    /// a matrix that is not T x D.
    pub fn pack(&self, x: &[Vec<f64>]) -> Result<Vec<Vec<f64>>, CkksError> {
        self.validate()?;
        if x.len() != self.tokens || x.iter().any(|r| r.len() != self.features) {
            return Err(CkksError::Invalid(format!(
                "expected a {} x {} matrix",
                self.tokens, self.features
            )));
        }
        let (t, f) = (self.tokens, self.per_ct);
        Ok((0..self.cts())
            .map(|c| {
                let mut v = vec![0.0; self.slots()];
                for j in 0..f.min(self.features - c * f) {
                    for (tok, row) in x.iter().enumerate() {
                        v[j * t + tok] = row[c * f + j];
                    }
                }
                v
            })
            .collect())
    }

    /// The row-major T x D matrix of slot vectors (the inverse of `pack`). Errors: `validate`,
    /// too few vectors or slots.
    pub fn unpack(&self, v: &[Vec<f64>]) -> Result<Vec<Vec<f64>>, CkksError> {
        self.validate()?;
        if v.len() != self.cts() || v.iter().any(|s| s.len() < self.slots()) {
            return Err(CkksError::Invalid(format!(
                "expected {} slot vectors of {} slots",
                self.cts(),
                self.slots()
            )));
        }
        let (t, f) = (self.tokens, self.per_ct);
        Ok((0..t)
            .map(|tok| {
                (0..self.features)
                    .map(|col| v[col / f][(col % f) * t + tok])
                    .collect()
            })
            .collect())
    }

    /// Splits a batch-layout matrix (B T rows) into the B inputs' T x D matrices. Errors:
    /// `validate`, not B T rows.
    pub fn unbatch(&self, x: &[Vec<f64>]) -> Result<Vec<Vec<Vec<f64>>>, CkksError> {
        self.validate()?;
        if x.len() != self.tokens {
            return Err(CkksError::Invalid(format!(
                "{} rows in a batch layout of {}",
                x.len(),
                self.tokens
            )));
        }
        Ok(x.chunks(self.tokens_per_input())
            .map(|c| c.to_vec())
            .collect())
    }

    /// A plaintext-slot vector holding `per_feature[j]` in every token slot of column j of
    /// ciphertext c (gamma, beta, biases); columns past D get `pad`. Errors: `validate`, too few
    /// values for the columns of ciphertext c.
    pub fn broadcast_features(
        &self,
        c: usize,
        per_feature: &[f64],
        pad: f64,
    ) -> Result<Vec<C64>, CkksError> {
        self.validate()?;
        let (t, f) = (self.tokens, self.per_ct);
        let need = self.features.min(c.saturating_add(1).saturating_mul(f));
        if per_feature.len() < need {
            return Err(CkksError::Invalid(format!(
                "{} values for the {need} features up to ciphertext {c}",
                per_feature.len()
            )));
        }
        let mut v = vec![C64::default(); self.slots()];
        for j in 0..f {
            let col = c.saturating_mul(f).saturating_add(j);
            let x = if col < self.features {
                per_feature[col]
            } else {
                pad
            };
            for s in &mut v[j * t..(j + 1) * t] {
                *s = C64::new(x, 0.0);
            }
        }
        Ok(v)
    }
}

/// Per-token sums over all features: the ciphertexts are added, then summed across their F
/// blocks by log2(F) rotations, so every block holds the row sums (one ciphertext out). Needs the
/// rotation keys `row_sum_rotations`. Errors: `Layout::validate`, no ciphertexts.
pub fn row_sum<C: Circuit>(c: &C, layout: &Layout, x: &[C::Ct]) -> Result<C::Ct, CkksError> {
    layout.validate()?;
    let mut acc = x
        .first()
        .cloned()
        .ok_or_else(|| CkksError::Invalid("no ciphertexts".into()))?;
    for ct in &x[1..] {
        acc = c.add(&acc, ct)?;
    }
    let mut step = layout.tokens;
    while step < layout.slots() {
        let r = c.rotate(&acc, step as i64)?;
        acc = c.add(&acc, &r)?;
        step *= 2;
    }
    Ok(acc)
}

/// The rotations `row_sum` uses.
pub fn row_sum_rotations(layout: &Layout) -> Vec<i64> {
    let mut r = Vec::new();
    let mut step = layout.tokens;
    while step < layout.slots() {
        r.push(step as i64);
        step *= 2;
    }
    r
}

/// Per-token sums within groups of `group` consecutive features (a score matrix holds one group
/// of keys per attention head), broadcast back to every feature of the group. A group spanning
/// the whole row is `row_sum` (one ciphertext out, shared by all). Narrower groups (a power of
/// two dividing F) are summed per ciphertext: log2(group) rotations by T 2^k leave each group's
/// total at its first feature, a 0/1 mask keeps it there (one level) and log2(group) rotations by
/// -T 2^k copy it back over the group (one ciphertext out per input).
pub fn group_sums<C: Circuit>(
    c: &C,
    layout: &Layout,
    x: &[C::Ct],
    group: usize,
) -> Result<Vec<C::Ct>, CkksError> {
    if group >= layout.features {
        return Ok(vec![row_sum(c, layout, x)?]);
    }
    check_group(layout, group)?;
    let t = layout.tokens;
    let firsts: Vec<f64> = (0..layout.per_ct)
        .map(|j| if j % group == 0 { 1.0 } else { 0.0 })
        .collect();
    let mask = layout.broadcast_features(0, &firsts, 0.0)?;
    x.iter()
        .map(|ct| {
            let mut acc = ct.clone();
            let mut step = t;
            while step < group * t {
                acc = c.add(&acc, &c.rotate(&acc, step as i64)?)?;
                step *= 2;
            }
            let mut acc = super::chain::mul_plain_down(c, &acc, &mask)?;
            let mut step = t;
            while step < group * t {
                acc = c.add(&acc, &c.rotate(&acc, -(step as i64))?)?;
                step *= 2;
            }
            Ok(acc)
        })
        .collect()
}

fn check_group(layout: &Layout, group: usize) -> Result<(), CkksError> {
    layout.validate()?;
    if !group.is_power_of_two() || layout.per_ct % group != 0 || layout.features % group != 0 {
        return Err(CkksError::Invalid(format!(
            "groups of {group} features must be a power of two dividing {} (features per \
             ciphertext) and {} (features)",
            layout.per_ct, layout.features
        )));
    }
    Ok(())
}

/// The twin of `group_sums`: per ciphertext (or once, for a whole-row group), per slot, the sum
/// over its group.
pub fn group_sums_twin(
    layout: &Layout,
    x: &[Vec<f64>],
    group: usize,
) -> Result<Vec<Vec<f64>>, CkksError> {
    layout.validate()?;
    let t = layout.tokens;
    if group >= layout.features {
        let s = row_sum_twin(layout, x)?;
        return Ok(vec![(0..layout.slots()).map(|i| s[i % t]).collect()]);
    }
    check_group(layout, group)?;
    Ok(x.iter()
        .map(|v| {
            (0..v.len())
                .map(|i| {
                    let (j, tok) = (i / t, i % t);
                    let g0 = j - j % group;
                    (g0..g0 + group).map(|k| v[k * t + tok]).sum()
                })
                .collect()
        })
        .collect())
}

/// The rotations `group_sums` uses.
pub fn group_sums_rotations(layout: &Layout, group: usize) -> Vec<i64> {
    if group >= layout.features {
        return row_sum_rotations(layout);
    }
    let mut r = Vec::new();
    let mut step = layout.tokens;
    while step < group * layout.tokens {
        r.push(step as i64);
        r.push(-(step as i64));
        step *= 2;
    }
    r
}

/// The ciphertexts of a matrix in `layout`: the layout (`Layout::validate`), their count and
/// slot count.
pub fn check_layout<C: Circuit>(c: &C, layout: &Layout, x: &[C::Ct]) -> Result<(), CkksError> {
    layout.validate()?;
    if x.len() != layout.cts() {
        return Err(CkksError::Invalid(format!(
            "expected {} ciphertexts for {} features, got {}",
            layout.cts(),
            layout.features,
            x.len()
        )));
    }
    if let Some(ct) = x.iter().find(|ct| c.slots(ct) != layout.slots()) {
        return Err(CkksError::Invalid(format!(
            "a ciphertext of {} slots in a layout of {}",
            c.slots(ct),
            layout.slots()
        )));
    }
    Ok(())
}

/// Slot vectors of a matrix in `layout` (the twins' input check, `Layout::validate` included).
pub fn check_slots(layout: &Layout, x: &[Vec<f64>]) -> Result<(), CkksError> {
    layout.validate()?;
    if x.len() != layout.cts() || x.iter().any(|v| v.len() != layout.slots()) {
        return Err(CkksError::Invalid(format!(
            "expected {} slot vectors of {} slots",
            layout.cts(),
            layout.slots()
        )));
    }
    Ok(())
}

/// The twin of `packing::row_sum`: per token, the sum over every slot of its blocks (padding
/// included, as under encryption). Errors: `Layout::validate`.
pub fn row_sum_twin(layout: &Layout, x: &[Vec<f64>]) -> Result<Vec<f64>, CkksError> {
    layout.validate()?;
    let t = layout.tokens;
    let mut s = vec![0.0; t];
    for v in x {
        for (i, &val) in v.iter().enumerate() {
            s[i % t] += val;
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_unpack_round_trip_and_positions() {
        let l = Layout::new(4, 5, 8).unwrap();
        assert_eq!((l.per_ct, l.slots(), l.cts()), (2, 8, 3));
        let x: Vec<Vec<f64>> = (0..4)
            .map(|t| (0..5).map(|j| (10 * t + j) as f64).collect())
            .collect();
        let v = l.pack(&x).unwrap();
        // Column 3 is feature 1 of ciphertext 1: slots 4..8.
        assert_eq!(&v[1][4..8], &[3.0, 13.0, 23.0, 33.0]);
        // Column 5 does not exist: zero.
        assert_eq!(&v[2][4..8], &[0.0; 4]);
        assert_eq!(l.unpack(&v).unwrap(), x);
        assert!(l.pack(&x[..3]).is_err());
        assert!(Layout::new(3, 5, 8).is_err());
    }

    #[test]
    fn batch_layout_stacks_inputs() {
        let l = Layout::batched(2, 4, 3, 32).unwrap();
        assert_eq!((l.tokens, l.tokens_per_input(), l.per_ct), (8, 4, 4));
        let x: Vec<Vec<f64>> = (0..8).map(|t| vec![t as f64; 3]).collect();
        let back = l.unpack(&l.pack(&x).unwrap()).unwrap();
        let parts = l.unbatch(&back).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1][0], vec![4.0; 3]);
    }
}
