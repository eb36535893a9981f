//! Ciphertext x plaintext matmul for every linear layer: Y = X W + b with X encrypted in the
//! feature-major layout (packing.rs) and W, b in the clear.
//!
//! In the layout a ciphertext is a vector of F blocks of T token slots, and W's block (i, o) acts on
//! blocks with one scalar per (input feature, output feature): out[k] = sum_d in[(k + d) mod F] *
//! W[(k + d) mod F][k], diagonals d in [0, F) at stride T. Baby-step giant-step with d = g n1 + b:
//! the n1 baby rotations of each input ciphertext are hoisted once and shared by every output
//! ciphertext, and each output pays F / n1 giant rotations, so a D_in x D_out layer costs
//! (n1 - 1) ceil(D_in/F) hoisted + (F/n1 - 1) ceil(D_out/F) rotations and at most
//! F ceil(D_in/F) ceil(D_out/F) plaintext products. Diagonals are encoded when used (lazily, layer
//! by layer): pre-encoding all of BERT-base at N = 2^16 would not fit in memory. The weights are
//! encoded at the rescale factor of the input's level, so the output has the input's scale exactly.

use super::packing::Layout;
use crate::ckks::{Circuit, CkksError};
use crate::math::fft::C64;

/// A linear layer's weights: `weight[i][o]` maps input feature i to output feature o (HF `Linear`
/// stores the transpose; GPT-2's `Conv1D` stores this).
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Vec<Vec<f64>>,
    pub bias: Vec<f64>,
}

impl Linear {
    /// Errors: as `validate`.
    pub fn new(weight: Vec<Vec<f64>>, bias: Vec<f64>) -> Result<Self, CkksError> {
        let lin = Linear { weight, bias };
        lin.validate()?;
        Ok(lin)
    }

    /// Checks the shapes and values. Errors (`Invalid`): no inputs or outputs, a weight row
    /// whose length is not the bias length, a non-finite weight or bias.
    pub fn validate(&self) -> Result<(), CkksError> {
        let d_out = self.bias.len();
        if self.weight.is_empty() || d_out == 0 || self.weight.iter().any(|r| r.len() != d_out) {
            return Err(CkksError::Invalid(format!(
                "weight must be D_in x {d_out} (the bias length), D_in and D_out > 0"
            )));
        }
        if self
            .weight
            .iter()
            .flatten()
            .chain(&self.bias)
            .any(|w| !w.is_finite())
        {
            return Err(CkksError::Invalid("non-finite weight".into()));
        }
        Ok(())
    }

    pub fn d_in(&self) -> usize {
        self.weight.len()
    }

    pub fn d_out(&self) -> usize {
        self.bias.len()
    }

    /// The f64 twin (and the exact reference: the layer has no approximation): X W + b.
    /// Errors: `validate`, a row of x that does not have D_in values.
    pub fn twin(&self, x: &[Vec<f64>]) -> Result<Vec<Vec<f64>>, CkksError> {
        self.validate()?;
        if let Some(row) = x.iter().find(|r| r.len() != self.d_in()) {
            return Err(CkksError::Invalid(format!(
                "a row of {} values into a layer of {} inputs",
                row.len(),
                self.d_in()
            )));
        }
        // Row by row of W (contiguous), so that large layers (GPT-2's LM head) stay fast.
        Ok(x.iter()
            .map(|row| {
                let mut out = vec![0.0; self.d_out()];
                for (a, w) in row.iter().zip(&self.weight) {
                    for (o, wv) in out.iter_mut().zip(w) {
                        *o += a * wv;
                    }
                }
                out.iter_mut().zip(&self.bias).for_each(|(o, b)| *o += b);
                out
            })
            .collect())
    }

    /// Diagonal `d` of block (i, o) as a slot vector, or None when it is all zero.
    fn diagonal(&self, layout: &Layout, i: usize, o: usize, d: usize) -> Option<Vec<f64>> {
        let (t, f) = (layout.tokens, layout.per_ct);
        let mut v = vec![0.0; layout.slots()];
        let mut any = false;
        for k in 0..f {
            let (row, col) = (i * f + (k + d) % f, o * f + k);
            if row < self.d_in() && col < self.d_out() && self.weight[row][col] != 0.0 {
                let w = self.weight[row][col];
                v[k * t..(k + 1) * t].fill(w);
                any = true;
            }
        }
        any.then_some(v)
    }
}

/// The baby-step count: minimizes (n1 - 1)/2 per input + (F/n1 - 1) per output ciphertext (a
/// hoisted rotation costs about half of a plain one).
fn baby_steps(f: usize, n_in: usize, n_out: usize) -> usize {
    let mut best = (f64::INFINITY, 1);
    let mut n1 = 1;
    while n1 <= f {
        let cost = 0.5 * (n1 - 1) as f64 * n_in as f64 + (f / n1 - 1) as f64 * n_out as f64;
        if cost < best.0 {
            best = (cost, n1);
        }
        n1 *= 2;
    }
    best.1
}

/// The rotations `linear` needs for a D_in x D_out layer on `layout`.
pub fn linear_rotations(layout: &Layout, d_in: usize, d_out: usize) -> Vec<i64> {
    let f = layout.per_ct;
    let n1 = baby_steps(
        f,
        layout.with_features(d_in).cts(),
        layout.with_features(d_out).cts(),
    );
    let t = layout.tokens as i64;
    let mut r: Vec<i64> = (1..n1 as i64).map(|b| b * t).collect();
    r.extend((1..(f / n1) as i64).map(|g| g * n1 as i64 * t));
    r
}

/// Y = X W + b: `x` holds the ciphertexts of `layout` (D_in = layout.features); the result is in
/// `layout.with_features(D_out)`, one level lower, at the input's scale. Errors: `lin.validate()`,
/// `layout.validate()`, D_in or the ciphertexts not matching the layout, level 0.
pub fn linear<C: Circuit>(
    c: &C,
    layout: &Layout,
    x: &[C::Ct],
    lin: &Linear,
) -> Result<Vec<C::Ct>, CkksError> {
    lin.validate()?;
    layout.validate()?;
    if layout.features != lin.d_in() || x.len() != layout.cts() {
        return Err(CkksError::Invalid(format!(
            "a {} x {} layer on {} ciphertexts of a {}-feature layout",
            lin.d_in(),
            lin.d_out(),
            x.len(),
            layout.features
        )));
    }
    let level = c.level(&x[0]);
    if x.iter()
        .any(|ct| c.level(ct) != level || c.slots(ct) != layout.slots())
    {
        return Err(CkksError::Invalid(
            "the input ciphertexts differ in level or slot count".into(),
        ));
    }
    if level == 0 {
        return Err(CkksError::LevelsExhausted(
            "a linear layer needs one level (bootstrap first)".into(),
        ));
    }
    let out_layout = layout.with_features(lin.d_out());
    let (t, f, l) = (layout.tokens, layout.per_ct, layout.slots());
    let n1 = baby_steps(f, x.len(), out_layout.cts());
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
    let to_c64 = |v: &[f64]| -> Vec<C64> { v.iter().map(|&a| C64::new(a, 0.0)).collect() };
    let mut out = Vec::with_capacity(out_layout.cts());
    for o in 0..out_layout.cts() {
        let mut acc: Option<C::Ct> = None;
        for g in 0..f / n1 {
            let shift = g * n1 * t;
            let mut inner: Option<C::Ct> = None;
            for (i, r) in rotated.iter().enumerate() {
                for (b, rb) in r.iter().enumerate() {
                    let Some(diag) = lin.diagonal(layout, i, o, g * n1 + b) else {
                        continue;
                    };
                    // Pre-rotated by -shift so that the giant rotation lines it up.
                    let pre: Vec<f64> = (0..l).map(|s| diag[(s + l - shift) % l]).collect();
                    let pt = c.encode(&to_c64(&pre), level, w_scale)?;
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
            // An all-zero block column: X W is zero there.
            None => {
                let z = c.mul_const(&x[0], 0.0, w_scale)?;
                c.rescale(&z)?
            }
        };
        let bias = out_layout.broadcast_features(o, &lin.bias, 0.0)?;
        let pt = c.encode(&bias, c.level(&y), c.scale(&y))?;
        out.push(c.add_plain(&y, &pt)?);
    }
    Ok(out)
}
