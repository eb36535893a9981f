//! Negacyclic NTT over Z_q[X]/(X^N + 1) with Harvey's lazy butterflies and Shoup twiddles.
//!
//! Forward: natural-order coefficients -> evaluations in bit-reversed order, so that output index i
//! holds a(psi^(2*bitrev(i)+1)). Values stay in [0, 4q) inside the transform (q < 2^30) and are fully
//! reduced at the end. The inverse undoes it, with N^-1 folded into the last stage.

use super::primes::primitive_root_2n;
use super::Modulus;

/// Twiddle tables for one prime and one ring degree.
#[derive(Clone, Debug)]
pub struct NttTable {
    pub modulus: Modulus,
    pub n: usize,
    log_n: u32,
    /// psi^bitrev(i), i < N, and Shoup companions.
    fwd: Vec<u32>,
    fwd_shoup: Vec<u32>,
    /// psi^-bitrev(i) permuted for the Gentleman-Sande inverse, and Shoup companions.
    inv: Vec<u32>,
    inv_shoup: Vec<u32>,
    n_inv: u32,
    n_inv_shoup: u32,
}

/// Reverses the low `bits` bits of i.
#[inline]
pub fn bitrev(i: usize, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        i.reverse_bits() >> (usize::BITS - bits)
    }
}

impl NttTable {
    pub fn new(q: u32, n: usize) -> Self {
        assert!(n.is_power_of_two() && n >= 2);
        let modulus = Modulus::new(q);
        let log_n = n.trailing_zeros();
        let psi = primitive_root_2n(q, 2 * n as u64);
        let psi_inv = modulus.inv(psi).unwrap();
        let mut fwd = vec![0u32; n];
        let mut inv = vec![0u32; n];
        let (mut p, mut pi) = (1u32, 1u32);
        for i in 0..n {
            let r = bitrev(i, log_n);
            fwd[r] = p;
            inv[r] = pi;
            p = modulus.mul(p, psi);
            pi = modulus.mul(pi, psi_inv);
        }
        let fwd_shoup = fwd.iter().map(|&w| modulus.shoup(w)).collect();
        let inv_shoup = inv.iter().map(|&w| modulus.shoup(w)).collect();
        let n_inv = modulus.inv(n as u32 % q).unwrap();
        NttTable {
            modulus,
            n,
            log_n,
            fwd,
            fwd_shoup,
            inv,
            inv_shoup,
            n_inv,
            n_inv_shoup: modulus.shoup(n_inv),
        }
    }

    pub fn log_n(&self) -> u32 {
        self.log_n
    }

    /// (forward, forward Shoup, inverse, inverse Shoup) twiddles, for the GPU twins.
    pub fn twiddles(&self) -> (&[u32], &[u32], &[u32], &[u32]) {
        (&self.fwd, &self.fwd_shoup, &self.inv, &self.inv_shoup)
    }

    /// N^-1 mod q and its Shoup companion.
    pub fn n_inv(&self) -> (u32, u32) {
        (self.n_inv, self.n_inv_shoup)
    }

    /// In-place forward NTT of one limb (input < q, output < q).
    pub fn forward(&self, a: &mut [u32]) {
        assert_eq!(a.len(), self.n);
        forward_kernel(a, &self.fwd, &self.fwd_shoup, self.modulus.q);
    }

    /// In-place inverse NTT of one limb (input < q, output < q).
    pub fn inverse(&self, a: &mut [u32]) {
        assert_eq!(a.len(), self.n);
        inverse_kernel(
            a,
            &self.inv,
            &self.inv_shoup,
            self.modulus.q,
            self.n_inv,
            self.n_inv_shoup,
        );
    }
}

#[inline(always)]
fn mul_shoup_lazy(a: u32, w: u32, ws: u32, q: u32) -> u32 {
    let t = ((a as u64 * ws as u64) >> 32) as u32;
    a.wrapping_mul(w).wrapping_sub(t.wrapping_mul(q))
}

#[inline(always)]
fn fwd_butterfly(x: &mut u32, y: &mut u32, w: u32, ws: u32, q: u32) {
    let two_q = 2 * q;
    let mut u = *x;
    u = if u >= two_q { u - two_q } else { u };
    let v = mul_shoup_lazy(*y, w, ws, q);
    *x = u + v;
    *y = u + two_q - v;
}

/// One forward stage with half-block T known at compile time, so that the loop over blocks
/// vectorizes (interleaved accesses) instead of running T-wide scalar loops.
#[inline(always)]
fn fwd_stage_small<const T: usize>(a: &mut [u32], w: &[u32], ws: &[u32], q: u32) {
    for (blk, (&wi, &wsi)) in a.chunks_exact_mut(2 * T).zip(w.iter().zip(ws)) {
        let (lo, hi) = blk.split_at_mut(T);
        for j in 0..T {
            fwd_butterfly(&mut lo[j], &mut hi[j], wi, wsi, q);
        }
    }
}

crate::multiversion! {
    pub fn forward_kernel(a: &mut [u32], w: &[u32], ws: &[u32], q: u32) {
        let n = a.len();
        let two_q = 2 * q;
        let mut t = n;
        let mut m = 1;
        while m < n {
            t >>= 1;
            match t {
                1 => fwd_stage_small::<1>(a, &w[m..2 * m], &ws[m..2 * m], q),
                2 => fwd_stage_small::<2>(a, &w[m..2 * m], &ws[m..2 * m], q),
                4 => fwd_stage_small::<4>(a, &w[m..2 * m], &ws[m..2 * m], q),
                8 => fwd_stage_small::<8>(a, &w[m..2 * m], &ws[m..2 * m], q),
                _ => {
                    for i in 0..m {
                        let (wi, wsi) = (w[m + i], ws[m + i]);
                        let (lo, hi) = a[2 * i * t..2 * i * t + 2 * t].split_at_mut(t);
                        for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
                            fwd_butterfly(x, y, wi, wsi, q);
                        }
                    }
                }
            }
            m <<= 1;
        }
        for x in a.iter_mut() {
            let mut u = *x;
            u = if u >= two_q { u - two_q } else { u };
            u = if u >= q { u - q } else { u };
            *x = u;
        }
    }
}

#[inline(always)]
fn inv_butterfly(x: &mut u32, y: &mut u32, w: u32, ws: u32, q: u32) {
    let two_q = 2 * q;
    let (u, v) = (*x, *y);
    let s = u + v;
    *x = if s >= two_q { s - two_q } else { s };
    *y = mul_shoup_lazy(u + two_q - v, w, ws, q);
}

#[inline(always)]
fn inv_stage_small<const T: usize>(a: &mut [u32], w: &[u32], ws: &[u32], q: u32) {
    for (blk, (&wi, &wsi)) in a.chunks_exact_mut(2 * T).zip(w.iter().zip(ws)) {
        let (lo, hi) = blk.split_at_mut(T);
        for j in 0..T {
            inv_butterfly(&mut lo[j], &mut hi[j], wi, wsi, q);
        }
    }
}

crate::multiversion! {
    pub fn inverse_kernel(a: &mut [u32], w: &[u32], ws: &[u32], q: u32, n_inv: u32, n_inv_s: u32) {
        let n = a.len();
        let mut t = 1;
        let mut m = n >> 1;
        while m >= 1 {
            match t {
                1 => inv_stage_small::<1>(a, &w[m..2 * m], &ws[m..2 * m], q),
                2 => inv_stage_small::<2>(a, &w[m..2 * m], &ws[m..2 * m], q),
                4 => inv_stage_small::<4>(a, &w[m..2 * m], &ws[m..2 * m], q),
                8 => inv_stage_small::<8>(a, &w[m..2 * m], &ws[m..2 * m], q),
                _ => {
                    for i in 0..m {
                        let (wi, wsi) = (w[m + i], ws[m + i]);
                        let (lo, hi) = a[2 * i * t..2 * i * t + 2 * t].split_at_mut(t);
                        for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
                            inv_butterfly(x, y, wi, wsi, q);
                        }
                    }
                }
            }
            t <<= 1;
            m >>= 1;
        }
        for x in a.iter_mut() {
            let u = mul_shoup_lazy(*x, n_inv, n_inv_s, q);
            *x = if u >= q { u - q } else { u };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn schoolbook(a: &[u32], b: &[u32], m: &Modulus) -> Vec<u32> {
        let n = a.len();
        let mut c = vec![0u32; n];
        for i in 0..n {
            for j in 0..n {
                let p = m.mul(a[i], b[j]);
                let k = i + j;
                if k < n {
                    c[k] = m.add(c[k], p);
                } else {
                    c[k - n] = m.sub(c[k - n], p);
                }
            }
        }
        c
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn round_trip_and_negacyclic_product(log_n in 1u32..8, seed in any::<u64>(), pick in 0usize..3) {
            let n = 1usize << log_n;
            let two_n = 2 * n as u64;
            let q = [crate::math::primes::largest_ntt_primes(30, two_n, 1, &[]).unwrap()[0],
                     crate::math::primes::nearest_ntt_prime(2f64.powi(20), two_n, &[]).unwrap(),
                     crate::math::primes::largest_ntt_primes(25, two_n, 1, &[]).unwrap()[0]][pick];
            let t = NttTable::new(q, n);
            let mut s = seed | 1;
            let mut rnd = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; (s % q as u64) as u32 };
            let a: Vec<u32> = (0..n).map(|_| rnd()).collect();
            let b: Vec<u32> = (0..n).map(|_| rnd()).collect();
            let mut fa = a.clone();
            t.forward(&mut fa);
            prop_assert!(fa.iter().all(|&x| x < q));
            let mut back = fa.clone();
            t.inverse(&mut back);
            prop_assert_eq!(&back, &a);
            let mut fb = b.clone();
            t.forward(&mut fb);
            let mut prod: Vec<u32> = fa.iter().zip(&fb).map(|(&x, &y)| t.modulus.mul(x, y)).collect();
            t.inverse(&mut prod);
            prop_assert_eq!(prod, schoolbook(&a, &b, &t.modulus));
        }
    }

    #[test]
    fn large_round_trip() {
        let n = 1 << 16;
        let q = crate::math::primes::largest_ntt_primes(30, 2 * n as u64, 1, &[]).unwrap()[0];
        let t = NttTable::new(q, n);
        let a: Vec<u32> = (0..n as u32)
            .map(|i| (i.wrapping_mul(2654435761)) % q)
            .collect();
        let mut b = a.clone();
        t.forward(&mut b);
        t.inverse(&mut b);
        assert_eq!(a, b);
    }
}
