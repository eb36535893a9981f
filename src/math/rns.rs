//! RNS base conversion between sets of primes.
//!
//! `BaseConverter` lifts x in [0, B) given by its residues mod B = b_0 ... b_{m-1} to residues mod
//! other primes p: x = sum_j y_j (B/b_j) - v B with y_j = [x_j (B/b_j)^-1]_{b_j} and
//! v = floor(sum_j y_j / b_j), computed in f64 (Halevi-Polyakov-Shoup). The result is exact except
//! when x lies within about 2^-45 B of 0 or B, where it may be off by one multiple of B; rescaling and
//! key switching tolerate that (it changes a rounding by 1 or a digit by B), and it is rare enough that
//! the big-integer tests never see it.

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
    inv_from_f64: Vec<f64>,
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
        let inv_from_f64 = from.iter().map(|b| 1.0 / b.q as f64).collect();
        BaseConverter {
            from: from.to_vec(),
            to: to.to_vec(),
            inv_punct,
            punct_mod,
            neg_b_mod,
            inv_from_f64,
        }
    }

    /// Converts `input[j]` (coefficient-domain residues mod from[j]) into `output[i]` (residues mod to[i]).
    pub fn convert(&self, input: &[&[u32]], output: &mut [&mut [u32]]) {
        let m = self.from.len();
        assert_eq!(input.len(), m);
        assert_eq!(output.len(), self.to.len());
        let n = input[0].len();
        let mut y = vec![0u32; m * n];
        let mut v = vec![0f64; n];
        for j in 0..m {
            let (w, ws) = self.inv_punct[j];
            mul_shoup_vec(input[j], &mut y[j * n..(j + 1) * n], w, ws, self.from[j].q);
            accumulate_ratio(&y[j * n..(j + 1) * n], &mut v, self.inv_from_f64[j]);
        }
        let vq: Vec<u32> = v.iter().map(|&f| f.floor() as u32).collect();
        for (i, out) in output.iter_mut().enumerate() {
            let p = self.to[i].q;
            out.fill(0);
            for j in 0..m {
                let (w, ws) = self.punct_mod[i][j];
                mul_shoup_acc(&y[j * n..(j + 1) * n], out, w, ws, p);
            }
            let (w, ws) = self.neg_b_mod[i];
            mul_shoup_acc(&vq, out, w, ws, p);
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
    /// out = out + a * w mod q, for any a < 2^32 and out < q.
    pub fn mul_shoup_acc(a: &[u32], out: &mut [u32], w: u32, ws: u32, q: u32) {
        for (o, &x) in out.iter_mut().zip(a) {
            let t = ((x as u64 * ws as u64) >> 32) as u32;
            let r = x.wrapping_mul(w).wrapping_sub(t.wrapping_mul(q));
            let r = if r >= q { r - q } else { r };
            let s = *o + r;
            *o = if s >= q { s - q } else { s };
        }
    }
}

crate::multiversion! {
    fn accumulate_ratio(y: &[u32], v: &mut [f64], inv: f64) {
        for (acc, &x) in v.iter_mut().zip(y) {
            *acc += x as f64 * inv;
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
