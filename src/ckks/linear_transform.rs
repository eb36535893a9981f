//! Plaintext matrix times ciphertext by the diagonal method, baby-step giant-step with hoisted baby
//! rotations (Halevi-Shoup; Lattigo's `LinearTransformation`). Used by CoeffsToSlots and
//! SlotsToCoeffs and by the encrypted matmuls.
//!
//! A matrix on slot vectors of length L is kept by its nonzero generalized diagonals:
//! out[k] = sum_d diag_d[k] in[(k + d) mod L]. With offsets d = u (g n1 + b) (u the common stride),
//! out = sum_g rot_{u g n1}( sum_b rot_{-u g n1}(diag_d) * rot_{u b}(in) ): the n1 baby rotations
//! share one decomposition, and each giant step costs one rotation.

use std::collections::BTreeMap;

use super::circuit::Circuit;
use super::CkksError;
use crate::math::fft::C64;

/// A matrix on L-slot vectors by its nonzero diagonals (offsets in [0, L)).
#[derive(Clone, Debug, PartialEq)]
pub struct DiagMatrix {
    pub slots: usize,
    pub diags: BTreeMap<usize, Vec<C64>>,
}

impl DiagMatrix {
    pub fn identity(slots: usize) -> Self {
        DiagMatrix {
            slots,
            diags: BTreeMap::from([(0, vec![C64::new(1.0, 0.0); slots])]),
        }
    }

    /// Checks the matrix: at least one slot, every offset below `slots`, every diagonal of
    /// length `slots`, every entry finite. Errors: `Invalid`.
    pub fn validate(&self) -> Result<(), CkksError> {
        let l = self.slots;
        if l == 0 {
            return Err(CkksError::Invalid("a matrix on 0 slots".into()));
        }
        for (&d, diag) in &self.diags {
            if d >= l {
                return Err(CkksError::Invalid(format!(
                    "diagonal offset {d} on {l} slots (offsets are in [0, slots))"
                )));
            }
            if diag.len() != l {
                return Err(CkksError::Invalid(format!(
                    "diagonal {d} has {} entries, the matrix {l} slots",
                    diag.len()
                )));
            }
            if let Some(z) = diag
                .iter()
                .find(|z| !(z.re.is_finite() && z.im.is_finite()))
            {
                return Err(CkksError::Invalid(format!("diagonal {d} holds {z:?}")));
            }
        }
        Ok(())
    }

    /// From a dense row-major matrix (L x L). Errors: no rows, a row that is not of length L.
    pub fn from_dense(rows: &[Vec<C64>]) -> Result<Self, CkksError> {
        let l = rows.len();
        if l == 0 || rows.iter().any(|r| r.len() != l) {
            return Err(CkksError::Invalid(format!(
                "a dense matrix needs L rows of L entries (L = {l} rows)"
            )));
        }
        let mut diags = BTreeMap::new();
        for d in 0..l {
            let diag: Vec<C64> = (0..l).map(|k| rows[k][(k + d) % l]).collect();
            if diag.iter().any(|z| z.abs() > 0.0) {
                diags.insert(d, diag);
            }
        }
        Ok(DiagMatrix { slots: l, diags })
    }

    /// The f64 twin: the matrix applied to a slot vector. Errors: `validate`, or `x` not of
    /// length `slots`.
    pub fn apply(&self, x: &[C64]) -> Result<Vec<C64>, CkksError> {
        self.validate()?;
        if x.len() != self.slots {
            return Err(CkksError::SlotMismatch(x.len(), self.slots));
        }
        let l = self.slots;
        let mut out = vec![C64::default(); l];
        for (&d, diag) in &self.diags {
            for k in 0..l {
                out[k] = out[k].add(diag[k].mul(x[(k + d) % l]));
            }
        }
        Ok(out)
    }

    /// self o inner (apply `inner` first). Errors: either fails `validate`, or their sizes
    /// differ.
    pub fn compose(&self, inner: &DiagMatrix) -> Result<DiagMatrix, CkksError> {
        self.validate()?;
        inner.validate()?;
        if self.slots != inner.slots {
            return Err(CkksError::SlotMismatch(self.slots, inner.slots));
        }
        let l = self.slots;
        let mut diags: BTreeMap<usize, Vec<C64>> = BTreeMap::new();
        for (&d, a) in &self.diags {
            for (&e, b) in &inner.diags {
                let out = diags
                    .entry((d + e) % l)
                    .or_insert_with(|| vec![C64::default(); l]);
                for k in 0..l {
                    out[k] = out[k].add(a[k].mul(b[(k + d) % l]));
                }
            }
        }
        diags.retain(|_, v| v.iter().any(|z| z.abs() > 1e-300));
        Ok(DiagMatrix { slots: l, diags })
    }

    /// Multiplies every entry by c.
    pub fn scale(&mut self, c: C64) {
        for v in self.diags.values_mut() {
            for z in v.iter_mut() {
                *z = z.mul(c);
            }
        }
    }

    /// Multiplies row k by w[k] (rows past `w` are left as they are).
    pub fn scale_rows(&mut self, w: &[C64]) {
        for v in self.diags.values_mut() {
            for (z, &s) in v.iter_mut().zip(w) {
                *z = z.mul(s);
            }
        }
    }
}

/// How a matrix splits into baby and giant steps.
#[derive(Clone, Debug)]
struct Split {
    /// Rotation amounts of the baby steps (normalized to [0, L)), in the order hoisted.
    babies: Vec<usize>,
    /// Per giant rotation (normalized), the (baby index, diagonal offset) pairs it sums.
    giants: BTreeMap<usize, Vec<(usize, usize)>>,
}

/// A `DiagMatrix` prepared for BSGS evaluation at one level: the split and the pre-rotated
/// diagonals, encoded up front or (`lazy`) at each application to save memory.
pub struct LinearTransform<P> {
    pub slots: usize,
    pub level: usize,
    /// Scale of the diagonal plaintexts.
    pub scale: f64,
    split: Split,
    /// Per giant, per term: the plaintext (or the values to encode).
    terms: BTreeMap<usize, Vec<(usize, Diag<P>)>>,
}

enum Diag<P> {
    Encoded(P),
    Values(Vec<C64>),
}

/// Finds the common stride of the offsets and the baby count minimizing the cost of the
/// rotations (a hoisted baby rotation costs about half of a giant one).
fn plan(slots: usize, offsets: &[usize]) -> Split {
    if slots == 0 {
        return Split {
            babies: Vec::new(),
            giants: BTreeMap::new(),
        };
    }
    let stride = offsets
        .iter()
        .filter(|&&d| d != 0)
        .map(|&d| 1usize << d.trailing_zeros())
        .min()
        .unwrap_or(slots)
        .min(slots);
    let span = slots / stride;
    // Signed offsets in units of the stride.
    let signed: Vec<(i64, usize)> = offsets
        .iter()
        .map(|&d| {
            let e = (d / stride) as i64;
            let e = if e > span as i64 / 2 {
                e - span as i64
            } else {
                e
            };
            (e, d)
        })
        .collect();
    let norm = |e: i64| -> usize { (e * stride as i64).rem_euclid(slots as i64) as usize };
    let mut best: Option<(f64, Split)> = None;
    let mut n1 = 1i64;
    while n1 as usize <= span.max(1) {
        let mut babies: Vec<usize> = Vec::new();
        let mut giants: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
        for &(e, d) in &signed {
            let b = e.rem_euclid(n1);
            let g = e - b;
            let bn = norm(b);
            let bi = match babies.iter().position(|&x| x == bn) {
                Some(i) => i,
                None => {
                    babies.push(bn);
                    babies.len() - 1
                }
            };
            giants.entry(norm(g)).or_default().push((bi, d));
        }
        let cost = 0.5 * babies.iter().filter(|&&b| b != 0).count() as f64
            + giants.keys().filter(|&&g| g != 0).count() as f64;
        if best.as_ref().is_none_or(|(c, _)| cost < *c) {
            best = Some((cost, Split { babies, giants }));
        }
        n1 *= 2;
    }
    best.expect("at least one split").1
}

impl<P> LinearTransform<P> {
    /// Prepares `m` for ciphertexts at `level`, with diagonals encoded at `scale`.
    /// Errors (`Invalid`): `m.validate()`, no diagonals, `slots` not a power of two up to the
    /// maximum, a level above the top, a scale that is not finite and >= 1.
    pub fn new<C: Circuit<Pt = P>>(
        c: &C,
        m: &DiagMatrix,
        level: usize,
        scale: f64,
        lazy: bool,
    ) -> Result<Self, CkksError> {
        m.validate()?;
        let l = m.slots;
        let offsets: Vec<usize> = m.diags.keys().copied().collect();
        if offsets.is_empty() {
            return Err(CkksError::Invalid(
                "a linear transform with no diagonals".into(),
            ));
        }
        let p = c.params();
        if !l.is_power_of_two() || l > p.max_slots() {
            return Err(CkksError::Invalid(format!(
                "{l} slots: need a power of two up to {}",
                p.max_slots()
            )));
        }
        if level > p.max_level() {
            return Err(CkksError::Invalid(format!(
                "level {level} above the top level {}",
                p.max_level()
            )));
        }
        if !(scale.is_finite() && scale >= 1.0) {
            return Err(CkksError::Invalid(format!(
                "scale {scale} must be finite and >= 1"
            )));
        }
        let split = plan(l, &offsets);
        let mut terms = BTreeMap::new();
        for (&g, list) in &split.giants {
            let mut v = Vec::with_capacity(list.len());
            for &(bi, d) in list {
                let diag = &m.diags[&d];
                // rot_{-g}(diag)[k] = diag[k - g].
                let rotated: Vec<C64> = (0..l).map(|k| diag[(k + l - g) % l]).collect();
                let entry = if lazy {
                    Diag::Values(rotated)
                } else {
                    Diag::Encoded(c.encode(&rotated, level, scale)?)
                };
                v.push((bi, entry));
            }
            terms.insert(g, v);
        }
        Ok(LinearTransform {
            slots: l,
            level,
            scale,
            split,
            terms,
        })
    }

    /// Rotations (left, normalized to [0, slots)) whose keys the transform needs.
    pub fn rotations(&self) -> Vec<i64> {
        rotations_of(&self.split)
    }

    /// m * ct, rescaled: the output scale is ct.scale * self.scale / q_level.
    pub fn apply<C: Circuit<Pt = P>>(&self, c: &C, ct: &C::Ct) -> Result<C::Ct, CkksError> {
        if c.level(ct) != self.level {
            return Err(CkksError::LevelMismatch(c.level(ct), self.level));
        }
        if c.slots(ct) != self.slots {
            return Err(CkksError::SlotMismatch(c.slots(ct), self.slots));
        }
        let babies: Vec<i64> = self.split.babies.iter().map(|&b| b as i64).collect();
        let rotated = c.rotate_hoisted(ct, &babies)?;
        let mut acc: Option<C::Ct> = None;
        for (&g, list) in &self.terms {
            let mut inner: Option<C::Ct> = None;
            for (bi, diag) in list {
                let term = match diag {
                    Diag::Encoded(pt) => c.mul_plain(&rotated[*bi], pt)?,
                    Diag::Values(v) => {
                        let pt = c.encode(v, self.level, self.scale)?;
                        c.mul_plain(&rotated[*bi], &pt)?
                    }
                };
                inner = Some(match inner {
                    None => term,
                    Some(a) => c.add(&a, &term)?,
                });
            }
            let inner = inner.expect("every giant has a term");
            let inner = if g != 0 {
                c.rotate(&inner, g as i64)?
            } else {
                inner
            };
            acc = Some(match acc {
                None => inner,
                Some(a) => c.add(&a, &inner)?,
            });
        }
        c.rescale(&acc.expect("a transform has diagonals"))
    }
}

fn rotations_of(split: &Split) -> Vec<i64> {
    let mut r: Vec<i64> = split
        .babies
        .iter()
        .chain(split.giants.keys())
        .filter(|&&x| x != 0)
        .map(|&x| x as i64)
        .collect();
    r.sort_unstable();
    r.dedup();
    r
}

/// The rotations a matrix's BSGS evaluation needs keys for (without encoding anything); none
/// for a matrix on 0 slots (`LinearTransform::new` refuses it).
pub fn rotations_for(m: &DiagMatrix) -> Vec<i64> {
    let offsets: Vec<usize> = m.diags.keys().copied().collect();
    rotations_of(&plan(m.slots, &offsets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_matches_applying_twice() {
        let l = 16;
        let rows = |seed: u64| -> Vec<Vec<C64>> {
            (0..l)
                .map(|i| {
                    (0..l)
                        .map(|j| {
                            let v = ((i * 31 + j * 17) as u64 * seed % 11) as f64 - 5.0;
                            C64::new(v, v * 0.5)
                        })
                        .collect()
                })
                .collect()
        };
        let a = DiagMatrix::from_dense(&rows(3)).unwrap();
        let b = DiagMatrix::from_dense(&rows(7)).unwrap();
        let x: Vec<C64> = (0..l).map(|i| C64::new(i as f64, 1.0)).collect();
        let want = a.apply(&b.apply(&x).unwrap()).unwrap();
        let got = a.compose(&b).unwrap().apply(&x).unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!(g.sub(*w).abs() < 1e-9);
        }
    }

    #[test]
    fn split_covers_every_offset_once() {
        let l = 64;
        let offsets: Vec<usize> = (-7i64..=7)
            .map(|e| (e * 4).rem_euclid(l) as usize)
            .collect();
        let s = plan(l as usize, &offsets);
        let mut seen: Vec<usize> = s.giants.values().flatten().map(|&(_, d)| d).collect();
        seen.sort_unstable();
        let mut want = offsets.clone();
        want.sort_unstable();
        assert_eq!(seen, want);
        for (&g, list) in &s.giants {
            for &(bi, d) in list {
                assert_eq!((g + s.babies[bi]) % l as usize, d);
            }
        }
        // 15 diagonals: about 4 babies and 4 giants, far fewer than 14 rotations.
        assert!(rotations_of(&s).len() <= 8, "{:?}", rotations_of(&s));
    }
}
