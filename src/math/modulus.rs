//! Arithmetic modulo a prime q < 2^30 on u32 words.
//!
//! Why 2^30 and not 2^31: the NTT keeps values lazily in [0, 4q) (Harvey's butterflies), and 4q must
//! fit a u32. Constants that multiply many values use Shoup's precomputed quotient; products of two
//! variables use a Barrett reduction whose every step is a u32 x u32 -> u64 multiply, so that the
//! loops vectorize (vpmuludq) on AVX2 and AVX-512.

/// A prime modulus below 2^30 with its reduction constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modulus {
    /// The prime.
    pub q: u32,
    /// Bit length k of q.
    bits: u32,
    /// floor(2^(2k) / q) < 2^(k+1): Barrett constant for products of two residues.
    mu: u32,
    /// floor(2^64 / q): Barrett constant for arbitrary u64 values (scalar paths).
    mu64: u64,
}

impl Modulus {
    /// Panics if q is not in [2, 2^30): moduli come from the checked prime generator.
    pub const fn new(q: u32) -> Self {
        assert!(q >= 2 && q < (1 << 30));
        let bits = 32 - q.leading_zeros();
        let mu = ((1u128 << (2 * bits)) / q as u128) as u32;
        let mu64 = (u64::MAX / q as u64)
            + if (u64::MAX % q as u64) + 1 == q as u64 {
                1
            } else {
                0
            };
        Modulus { q, bits, mu, mu64 }
    }

    /// The Barrett constant and bit length (mu, k) of `reduce_product`, for the GPU twins.
    pub fn barrett(&self) -> (u32, u32) {
        (self.mu, self.bits)
    }

    /// a + b mod q for a, b < q.
    #[inline(always)]
    pub fn add(&self, a: u32, b: u32) -> u32 {
        let s = a + b;
        if s >= self.q {
            s - self.q
        } else {
            s
        }
    }

    /// a - b mod q for a, b < q.
    #[inline(always)]
    pub fn sub(&self, a: u32, b: u32) -> u32 {
        let d = a.wrapping_sub(b);
        if a < b {
            d.wrapping_add(self.q)
        } else {
            d
        }
    }

    /// -a mod q for a < q.
    #[inline(always)]
    pub fn neg(&self, a: u32) -> u32 {
        if a == 0 {
            0
        } else {
            self.q - a
        }
    }

    /// x mod q for x < 2^(2k) (any product of two residues), u32 x u32 -> u64 steps only.
    #[inline(always)]
    pub fn reduce_product(&self, x: u64) -> u32 {
        let t = ((x >> (self.bits - 1)) as u32 as u64 * self.mu as u64) >> (self.bits + 1);
        let mut r = (x as u32).wrapping_sub((t as u32).wrapping_mul(self.q));
        if r >= self.q {
            r -= self.q;
        }
        if r >= self.q {
            r -= self.q;
        }
        r
    }

    /// a * b mod q for a, b < q.
    #[inline(always)]
    pub fn mul(&self, a: u32, b: u32) -> u32 {
        self.reduce_product(a as u64 * b as u64)
    }

    /// x mod q for any u64 (scalar: uses a 64 x 64 -> 128 multiply).
    #[inline(always)]
    pub fn reduce_u64(&self, x: u64) -> u32 {
        let t = ((x as u128 * self.mu64 as u128) >> 64) as u64;
        let mut r = x.wrapping_sub(t.wrapping_mul(self.q as u64));
        while r >= self.q as u64 {
            r -= self.q as u64;
        }
        r as u32
    }

    /// x mod q for a signed 128-bit value.
    pub fn reduce_i128(&self, x: i128) -> u32 {
        let r = x.rem_euclid(self.q as i128);
        r as u32
    }

    /// x mod q for an integer-valued f64 of any magnitude: x = mantissa 2^exp exactly, so the
    /// residue is mantissa 2^exp mod q (encoding past 2^127, where i128 stops).
    pub fn reduce_f64(&self, x: f64) -> u32 {
        debug_assert!(x.is_finite() && x.fract() == 0.0, "{x}");
        if x.abs() < 2f64.powi(62) {
            return self.reduce_i64(x as i64);
        }
        let bits = x.abs().to_bits();
        let exp = ((bits >> 52) & 0x7ff) as u64 - 1075;
        let mantissa = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
        let r = self.mul(self.reduce_u64(mantissa), self.pow(2, exp));
        if x < 0.0 {
            self.neg(r)
        } else {
            r
        }
    }

    /// x mod q for a signed 64-bit value.
    #[inline(always)]
    pub fn reduce_i64(&self, x: i64) -> u32 {
        if x >= 0 {
            self.reduce_u64(x as u64)
        } else {
            self.neg(self.reduce_u64(x.unsigned_abs()))
        }
    }

    /// Shoup companion floor(w * 2^32 / q) of a constant w < q.
    #[inline(always)]
    pub fn shoup(&self, w: u32) -> u32 {
        (((w as u64) << 32) / self.q as u64) as u32
    }

    /// a * w mod q in [0, 2q) for any a < 2^32, with w' = shoup(w).
    #[inline(always)]
    pub fn mul_shoup_lazy(&self, a: u32, w: u32, w_shoup: u32) -> u32 {
        let t = ((a as u64 * w_shoup as u64) >> 32) as u32;
        a.wrapping_mul(w).wrapping_sub(t.wrapping_mul(self.q))
    }

    /// a * w mod q in [0, q) for any a < 2^32, with w' = shoup(w).
    #[inline(always)]
    pub fn mul_shoup(&self, a: u32, w: u32, w_shoup: u32) -> u32 {
        let r = self.mul_shoup_lazy(a, w, w_shoup);
        if r >= self.q {
            r - self.q
        } else {
            r
        }
    }

    /// a^e mod q.
    pub fn pow(&self, a: u32, mut e: u64) -> u32 {
        let mut base = a % self.q;
        let mut r = 1u32 % self.q;
        while e > 0 {
            if e & 1 == 1 {
                r = self.mul(r, base);
            }
            base = self.mul(base, base);
            e >>= 1;
        }
        r
    }

    /// a^-1 mod q (q prime), None for a = 0 mod q.
    pub fn inv(&self, a: u32) -> Option<u32> {
        if a % self.q == 0 {
            None
        } else {
            Some(self.pow(a, self.q as u64 - 2))
        }
    }

    /// Maps a residue to its centered representative in (-q/2, q/2].
    #[inline(always)]
    pub fn center(&self, a: u32) -> i64 {
        if a > self.q / 2 {
            a as i64 - self.q as i64
        } else {
            a as i64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn mul_matches_u128(q in prop::sample::select(vec![65537u32, 786433, 1_073_479_681, 998_244_353, 12_289]), a in any::<u32>(), b in any::<u32>()) {
            let m = Modulus::new(q);
            let (a, b) = (a % q, b % q);
            let expect = (a as u64 * b as u64 % q as u64) as u32;
            prop_assert_eq!(m.mul(a, b), expect);
            let ws = m.shoup(b);
            prop_assert_eq!(m.mul_shoup(a, b, ws), expect);
            let big = a as u64 * 0xffff_fff1 + b as u64;
            prop_assert_eq!(m.reduce_u64(big) as u64, big % q as u64);
            prop_assert_eq!(m.reduce_u64(u64::MAX - b as u64) as u64, (u64::MAX - b as u64) % q as u64);
            // Lazy Shoup stays below 2q for any 32-bit input.
            let l = m.mul_shoup_lazy(a.wrapping_mul(4) | 3, b, ws);
            prop_assert!(l < 2 * q);
        }

        #[test]
        fn reduce_f64_matches_i128(q in prop::sample::select(vec![65537u32, 1_073_479_681, 998_244_353]), m in -(1i64 << 53)..(1i64 << 53), e in 0u32..70) {
            let md = Modulus::new(q);
            let x = (m as i128) << e;
            prop_assert_eq!(md.reduce_f64(x as f64), md.reduce_i128(x));
        }
    }
}
