//! RNS base conversion between sets of primes.
//!
//! `BaseConverter` lifts x in [0, B) given by its residues mod B = b_0 ... b_{m-1} to residues mod
//! other primes p: x = sum_j y_j (B/b_j) - v B with y_j = [x_j (B/b_j)^-1]_{b_j} and
//! v = floor(sum_j y_j / b_j) (Halevi-Polyakov-Shoup). v comes from an exact 96-bit fixed-point sum
//! of y_j floor(2^64 / b_j), not from f64, so that the GPU twins (WGSL has no f64) get the same v bit
//! for bit. The fixed-point sum underestimates by less than m 2^-34, so the result is exact except
//! when x < m 2^-34 B, where it comes out as x + B. For rescale the input is uniform and that is rare
//! (and would change a rounding by 1); for ModUp, key switching tolerates it (a digit's
//! representative only needs |d| <= 2B).

use rayon::prelude::*;

use super::Modulus;

#[derive(Clone, Debug)]
pub struct BaseConverter {
    pub from: Vec<Modulus>,
    pub to: Vec<Modulus>,
    /// [(B/b_j)^-1]_{b_j} and its Shoup companion.
    inv_punct: Vec<(u32, u32)>,
    /// [B/b_j]_{p} (and Shoup) laid out [p][j].
    punct_mod: Vec<Vec<(u32, u32)>>,
    /// [-B]_p and Shoup.
    neg_b_mod: Vec<(u32, u32)>,
    /// floor(2^64 / b_j), the fixed-point 1/b_j.
    frac: Vec<u64>,
}

impl BaseConverter {
    pub fn new(from: &[Modulus], to: &[Modulus]) -> Self {
        assert!(!from.is_empty());
        let inv_punct = from
            .iter()
            .enumerate()
            .map(|(j, bj)| {
                let mut prod = 1u32;
                for (i, bi) in from.iter().enumerate() {
                    if i != j {
                        prod = bj.mul(prod, bi.q % bj.q);
                    }
                }
                let inv = bj.inv(prod).expect("distinct primes");
                (inv, bj.shoup(inv))
            })
            .collect();
        let punct_mod = to
            .iter()
            .map(|p| {
                (0..from.len())
                    .map(|j| {
                        let mut prod = 1u32;
                        for (i, bi) in from.iter().enumerate() {
                            if i != j {
                                prod = p.mul(prod, bi.q % p.q);
                            }
                        }
                        (prod, p.shoup(prod))
                    })
                    .collect()
            })
            .collect();
        let neg_b_mod = to
            .iter()
            .map(|p| {
                let b = from.iter().fold(1u32, |acc, bi| p.mul(acc, bi.q % p.q));
                let nb = p.neg(b);
                (nb, p.shoup(nb))
            })
            .collect();
        let frac = from
            .iter()
            .map(|b| ((1u128 << 64) / b.q as u128) as u64)
            .collect();
        BaseConverter {
            from: from.to_vec(),
            to: to.to_vec(),
            inv_punct,
            punct_mod,
            neg_b_mod,
            frac,
        }
    }

    /// The converter's constants as one flat table for the GPU twins (layout in
    /// shaders/base_conversion.wgsl): per source prime (inverse, Shoup, frac lo, frac hi), then
    /// [B/b_j]_{p_i} row by row, then [-B]_{p_i}.
    pub fn flat_table(&self) -> Vec<u32> {
        let mut t = Vec::with_capacity(4 * self.from.len() + (self.from.len() + 1) * self.to.len());
        for (&(w, ws), &f) in self.inv_punct.iter().zip(&self.frac) {
            t.extend_from_slice(&[w, ws, f as u32, (f >> 32) as u32]);
        }
        for row in &self.punct_mod {
            t.extend(row.iter().map(|c| c.0));
        }
        t.extend(self.neg_b_mod.iter().map(|c| c.0));
        t
    }

    /// Converts `input[j]` (coefficient-domain residues mod from[j]) into `output[i]` (residues mod to[i]).
    ///
    /// Fused per block of coefficients (rayon across blocks): the block's y_j and v stay in L1 while
    /// every target is produced, so the inputs are read once instead of once per target.
    pub fn convert(&self, input: &[&[u32]], output: &mut [&mut [u32]]) {
        let m = self.from.len();
        assert_eq!(input.len(), m);
        assert_eq!(output.len(), self.to.len());
        let n = input[0].len();
        let nblocks = n.div_ceil(CONVERT_BLOCK);
        let mut per_block: Vec<Vec<&mut [u32]>> = (0..nblocks)
            .map(|_| Vec::with_capacity(output.len()))
            .collect();
        for out in output.iter_mut() {
            for (b, chunk) in out.chunks_mut(CONVERT_BLOCK).enumerate() {
                per_block[b].push(chunk);
            }
        }
        let reducers: Vec<ShoupReducer> = self.to.iter().map(ShoupReducer::new).collect();
        let consts: Vec<Vec<u32>> = self
            .punct_mod
            .iter()
            .map(|row| row.iter().map(|c| c.0).collect())
            .collect();
        per_block
            .into_par_iter()
            .enumerate()
            .for_each(|(b, mut outs)| {
                let start = b * CONVERT_BLOCK;
                let len = CONVERT_BLOCK.min(n - start);
                let mut y = vec![0u32; m * len];
                let mut lo = [0u64; CONVERT_BLOCK];
                let mut hi = [0u64; CONVERT_BLOCK];
                for j in 0..m {
                    let (w, ws) = self.inv_punct[j];
                    let yj = &mut y[j * len..(j + 1) * len];
                    mul_shoup_vec(&input[j][start..start + len], yj, w, ws, self.from[j].q);
                    accumulate_ratio(yj, &mut lo[..len], &mut hi[..len], self.frac[j]);
                }
                let vq: Vec<u32> = hi[..len].iter().map(|&h| (h >> 32) as u32).collect();
                let ys: Vec<&[u32]> = y.chunks(len).collect();
                for (i, out) in outs.iter_mut().enumerate() {
                    dot_lazy(out, &ys, &consts[i], &vq, self.neg_b_mod[i].0, &reducers[i]);
                }
            });
    }
}

/// floor(D/2) mod each target modulus, D = product of `drop` (the rounding offset of an exact
/// division by D).
pub fn half_product(drop: &[Modulus], targets: &[Modulus]) -> Vec<u32> {
    // D is odd (product of odd primes): floor(D/2) = (D - 1) / 2 = (D - 1) * 2^-1.
    targets
        .iter()
        .map(|t| {
            let d = drop.iter().fold(1u32, |acc, dm| t.mul(acc, dm.q % t.q));
            t.mul(t.sub(d, 1), t.inv(2).unwrap())
        })
        .collect()
}

/// Coefficients per fused base-conversion block.
const CONVERT_BLOCK: usize = 512;

/// Vectorizable reduction of any u64 modulo q < 2^30: s = hi 2^32 + lo, both halves reduced by
/// Shoup multiplications (by 2^32 mod q and by 1), every step a u32 x u32 -> u64 product.
#[derive(Clone, Copy, Debug)]
pub struct ShoupReducer {
    q: u32,
    r32: u32,
    r32_shoup: u32,
    one_shoup: u32,
}

impl ShoupReducer {
    pub fn new(m: &Modulus) -> Self {
        let r32 = ((1u64 << 32) % m.q as u64) as u32;
        ShoupReducer {
            q: m.q,
            r32,
            r32_shoup: m.shoup(r32),
            one_shoup: m.shoup(1),
        }
    }

    #[inline(always)]
    pub fn reduce(&self, s: u64) -> u32 {
        let q = self.q;
        let (hi, lo) = ((s >> 32) as u32, s as u32);
        let t = ((hi as u64 * self.r32_shoup as u64) >> 32) as u32;
        let a = hi.wrapping_mul(self.r32).wrapping_sub(t.wrapping_mul(q));
        let a = if a >= q { a - q } else { a };
        let t = ((lo as u64 * self.one_shoup as u64) >> 32) as u32;
        let b = lo.wrapping_sub(t.wrapping_mul(q));
        let b = if b >= q { b - q } else { b };
        let c = a + b;
        if c >= q {
            c - q
        } else {
            c
        }
    }
}

/// Terms of at most 2^60 that a u64 can sum before a reduction.
const LAZY_TERMS: usize = 15;

crate::multiversion! {
    /// out = sum_j ys[j] * cs[j] + v * c_v mod q, accumulated lazily in u64 over L1-sized blocks.
    fn dot_lazy(out: &mut [u32], ys: &[&[u32]], cs: &[u32], v: &[u32], c_v: u32, red: &ShoupReducer) {
        const BLOCK: usize = 512;
        let n = out.len();
        let mut acc = [0u64; BLOCK];
        let mut start = 0;
        while start < n {
            let len = BLOCK.min(n - start);
            let acc = &mut acc[..len];
            for (a, &x) in acc.iter_mut().zip(&v[start..start + len]) {
                *a = x as u64 * c_v as u64;
            }
            for (j, (y, &c)) in ys.iter().zip(cs).enumerate() {
                for (a, &x) in acc.iter_mut().zip(&y[start..start + len]) {
                    *a += x as u64 * c as u64;
                }
                if j % LAZY_TERMS == LAZY_TERMS - 2 {
                    for a in acc.iter_mut() {
                        *a = red.reduce(*a) as u64;
                    }
                }
            }
            for (o, &a) in out[start..start + len].iter_mut().zip(acc.iter()) {
                *o = red.reduce(a);
            }
            start += len;
        }
    }
}

crate::multiversion! {
    /// out = a * w mod q.
    pub fn mul_shoup_vec(a: &[u32], out: &mut [u32], w: u32, ws: u32, q: u32) {
        for (o, &x) in out.iter_mut().zip(a) {
            let t = ((x as u64 * ws as u64) >> 32) as u32;
            let r = x.wrapping_mul(w).wrapping_sub(t.wrapping_mul(q));
            *o = if r >= q { r - q } else { r };
        }
    }
}

crate::multiversion! {
    /// (hi 2^32 + lo) += y * frac exactly, with lo kept below 2^32 (carried into hi each step): the
    /// 96-bit fixed-point sum whose top word is v. u32 x u32 -> u64 products only, so it vectorizes.
    fn accumulate_ratio(y: &[u32], lo: &mut [u64], hi: &mut [u64], frac: u64) {
        let (f_lo, f_hi) = (frac as u32 as u64, frac >> 32);
        for ((l, h), &x) in lo.iter_mut().zip(hi.iter_mut()).zip(y) {
            let s = *l + x as u64 * f_lo;
            *h += (s >> 32) + x as u64 * f_hi;
            *l = s & 0xffff_ffff;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::primes::largest_ntt_primes;
    use num_bigint::BigUint;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn shoup_reducer_reduces_any_u64(q in prop::sample::select(vec![65537u32, 786433, 1_073_479_681, 12_289]), s in any::<u64>()) {
            let r = ShoupReducer::new(&Modulus::new(q));
            prop_assert_eq!(r.reduce(s) as u64, s % q as u64);
            prop_assert_eq!(r.reduce(u64::MAX) as u64, u64::MAX % q as u64);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn exact_conversion_matches_bigint(m in 1usize..6, k in 1usize..5, seed in any::<u64>()) {
            let n = 64;
            let primes = largest_ntt_primes(30, 128, m + k, &[]).unwrap();
            let from: Vec<Modulus> = primes[..m].iter().map(|&q| Modulus::new(q)).collect();
            let to: Vec<Modulus> = primes[m..].iter().map(|&q| Modulus::new(q)).collect();
            let conv = BaseConverter::new(&from, &to);
            let big_b = from.iter().fold(BigUint::from(1u32), |a, b| a * b.q);
            let mut s = seed | 1;
            let mut rnd = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; s };
            let xs: Vec<BigUint> = (0..n).map(|i| {
                let mut x = BigUint::from(0u32);
                for _ in 0..m { x = (x << 32u32) + BigUint::from(rnd() as u32); }
                if i == 0 { BigUint::from(0u32) } else { x % &big_b }
            }).collect();
            let input: Vec<Vec<u32>> = from.iter().map(|b| xs.iter().map(|x| (x % b.q).try_into().unwrap()).collect()).collect();
            let refs: Vec<&[u32]> = input.iter().map(|v| v.as_slice()).collect();
            let mut out = vec![vec![0u32; n]; k];
            let mut outs: Vec<&mut [u32]> = out.iter_mut().map(|v| v.as_mut_slice()).collect();
            conv.convert(&refs, &mut outs);
            for (i, p) in to.iter().enumerate() {
                for c in 0..n {
                    let expect: u32 = (&xs[c] % p.q).try_into().unwrap();
                    prop_assert_eq!(out[i][c], expect);
                }
            }
        }
    }
}
