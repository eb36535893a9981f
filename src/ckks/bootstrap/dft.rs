//! The homomorphic DFT matrices of bootstrapping. CoeffsToSlots is the encoder's inverse special
//! FFT and SlotsToCoeffs the decoder's forward one, both without their bit-reversal permutation:
//! EvalMod works slot by slot, so coefficients may sit in bit-reversed order between the two.
//! Each FFT stage is a matrix with three diagonals (0 and +-h); consecutive stages are merged into
//! one matrix per level (r stages: 2^(r+1) - 1 diagonals).

use std::f64::consts::PI;

use crate::ckks::linear_transform::DiagMatrix;
use crate::ckks::CkksError;
use crate::math::fft::C64;

/// exp(2 pi i (5^j mod 4 len) / (4 len)): the twiddle of butterfly j in a stage of length len.
fn twiddle(j: usize, len: usize) -> C64 {
    let lenq = 4 * len as u64;
    let mut g = 1u64;
    for _ in 0..j {
        g = g * 5 % lenq;
    }
    let a = 2.0 * PI * g as f64 / lenq as f64;
    C64::new(a.cos(), a.sin())
}

/// One stage of length `len` on vectors of length `l` (blocks of `len` tile the vector).
/// Decoding direction: (u, v) -> (u + w v, u - w v). Encoding direction (inverse), halved:
/// (u, v) -> ((u + v) / 2, (u - v) conj(w) / 2).
fn stage(l: usize, len: usize, inverse: bool) -> DiagMatrix {
    let h = len / 2;
    let zero = vec![C64::default(); l];
    let (mut d0, mut dp, mut dm) = (zero.clone(), zero.clone(), zero);
    let w: Vec<C64> = (0..h).map(|j| twiddle(j, len)).collect();
    for k in 0..l {
        let j = k % len;
        if j < h {
            if inverse {
                d0[k] = C64::new(0.5, 0.0);
                dp[k] = C64::new(0.5, 0.0);
            } else {
                d0[k] = C64::new(1.0, 0.0);
                dp[k] = w[j];
            }
        } else if inverse {
            let r = w[j - h].conj().scale(0.5);
            dm[k] = r;
            d0[k] = r.scale(-1.0);
        } else {
            dm[k] = C64::new(1.0, 0.0);
            d0[k] = w[j - h].scale(-1.0);
        }
    }
    let mut m = DiagMatrix {
        slots: l,
        diags: Default::default(),
    };
    m.diags.insert(0, d0);
    m.diags.insert(h % l, dp);
    // When len = l, +h and -h are the same diagonal (their rows are disjoint): add.
    let e = m
        .diags
        .entry((l - h) % l)
        .or_insert_with(|| vec![C64::default(); l]);
    for (x, y) in e.iter_mut().zip(dm) {
        *x = x.add(y);
    }
    m
}

/// Splits `stages` stages into `levels` groups (larger groups first; empty groups are identity).
fn group_sizes(stages: usize, levels: usize) -> Vec<usize> {
    (0..levels)
        .map(|i| stages / levels + usize::from(i < stages % levels))
        .collect()
}

/// CoeffsToSlots for `n` slots on vectors of length `l` (n, or 2n for sparse packing), one
/// matrix per level in the order applied, times `factor`. With l = 2n the output's second half is
/// zeroed, so that real and imaginary parts can share one ciphertext afterwards.
pub fn coeffs_to_slots(
    n: usize,
    l: usize,
    levels: usize,
    factor: f64,
) -> Result<Vec<DiagMatrix>, CkksError> {
    let lens: Vec<usize> = (1..=n.trailing_zeros()).rev().map(|s| 1 << s).collect();
    let mut out = Vec::with_capacity(levels);
    let mut it = lens.into_iter();
    for size in group_sizes(n.trailing_zeros() as usize, levels) {
        let mut m = DiagMatrix::identity(l);
        for len in it.by_ref().take(size) {
            m = stage(l, len, true).compose(&m)?;
        }
        out.push(m);
    }
    if out.is_empty() {
        return Err(CkksError::InvalidParameters(
            "CoeffsToSlots needs at least one level".into(),
        ));
    }
    out[0].scale(C64::new(factor, 0.0));
    if l == 2 * n {
        let mask: Vec<C64> = (0..l)
            .map(|k| C64::new(if k < n { 1.0 } else { 0.0 }, 0.0))
            .collect();
        let last = out.len() - 1;
        out[last].scale_rows(&mask);
    }
    Ok(out)
}

/// SlotsToCoeffs for `n` slots on vectors of length `l`, in the order applied. With l = 2n the
/// input holds real parts in its first half and imaginary parts in its second, and the first
/// matrix recombines them (a + i b in both halves).
pub fn slots_to_coeffs(n: usize, l: usize, levels: usize) -> Result<Vec<DiagMatrix>, CkksError> {
    let lens: Vec<usize> = (1..=n.trailing_zeros()).map(|s| 1 << s).collect();
    let mut first = DiagMatrix::identity(l);
    if l == 2 * n {
        let (one, i) = (C64::new(1.0, 0.0), C64::new(0.0, 1.0));
        let d0: Vec<C64> = (0..l).map(|k| if k < n { one } else { i }).collect();
        let dn: Vec<C64> = (0..l).map(|k| if k < n { i } else { one }).collect();
        first.diags.insert(0, d0);
        first.diags.insert(n, dn);
    }
    let mut out = Vec::with_capacity(levels);
    let mut it = lens.into_iter();
    for (g, size) in group_sizes(n.trailing_zeros() as usize, levels)
        .into_iter()
        .enumerate()
    {
        let mut m = if g == 0 {
            first.clone()
        } else {
            DiagMatrix::identity(l)
        };
        for len in it.by_ref().take(size) {
            m = stage(l, len, false).compose(&m)?;
        }
        out.push(m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::fft::SpecialFft;
    use crate::math::ntt::bitrev;

    fn vector(n: usize) -> Vec<C64> {
        (0..n)
            .map(|i| C64::new((i as f64 * 0.37).sin(), (i as f64 * 0.11).cos()))
            .collect()
    }

    fn apply_all(ms: &[DiagMatrix], x: &[C64]) -> Vec<C64> {
        ms.iter().fold(x.to_vec(), |v, m| m.apply(&v).unwrap())
    }

    #[test]
    fn matrices_are_the_special_fft_without_bit_reversal() {
        let ring_n = 64;
        let fft = SpecialFft::new(ring_n);
        for n in [4usize, 16, 32] {
            let bits = n.trailing_zeros();
            let z = vector(n);
            let mut v = z.clone();
            fft.inverse(&mut v);
            for levels in [1, 2, 3] {
                let got = apply_all(&coeffs_to_slots(n, n, levels, 1.0).unwrap(), &z);
                for k in 0..n {
                    assert!(got[k].sub(v[bitrev(k, bits)]).abs() < 1e-12, "cts n={n}");
                }
                let vr: Vec<C64> = (0..n).map(|k| v[bitrev(k, bits)]).collect();
                let back = apply_all(&slots_to_coeffs(n, n, levels).unwrap(), &vr);
                for k in 0..n {
                    assert!(back[k].sub(z[k]).abs() < 1e-12, "stc n={n}");
                }
            }
        }
    }

    #[test]
    fn sparse_layout_masks_and_recombines() {
        let (n, l) = (8usize, 16usize);
        let z = vector(n);
        let zz: Vec<C64> = z.iter().chain(&z).copied().collect();
        let got = apply_all(&coeffs_to_slots(n, l, 2, 0.5).unwrap(), &zz);
        assert!(got[n..].iter().all(|c| c.abs() == 0.0));
        // Real parts in the first half, imaginary parts in the second: back to z in both halves.
        let w: Vec<C64> = (0..l)
            .map(|k| {
                let c = got[k % n].scale(2.0);
                C64::new(if k < n { c.re } else { c.im }, 0.0)
            })
            .collect();
        let back = apply_all(&slots_to_coeffs(n, l, 2).unwrap(), &w);
        for k in 0..l {
            assert!(back[k].sub(zz[k]).abs() < 1e-12);
        }
    }
}
