//! Chinese remaindering to f64: the centered integer with given residues, by Garner's mixed-radix
//! conversion with balanced digits (Knuth, TAOCP vol. 2, 4.3.2; the digit form of
//! Bajard-Eynard-Hasan-Zucca's "full RNS" decoding).
//!
//! x = a_0 + a_1 q_0 + a_2 q_0 q_1 + ... with every digit a_i in (-q_i / 2, q_i / 2] is the unique
//! representative of x mod B = q_0 ... q_{k-1} in (-B/2, B/2): exactly the centered value that
//! CKKS decoding needs, with no big integers and no cancellation (Horner from the top digit gives
//! f64 to half an ulp per step). The top digit also says how many primes a value needs: it is 0
//! exactly when |x| < B / (2 q_{k-1}), so a decoder can read one prime more than it trusts and
//! take more when that digit is not 0.

use super::modulus::Modulus;

/// Garner's tables for a list of primes (any length; each below 2^31).
#[derive(Clone, Debug)]
pub struct CrtLift {
    moduli: Vec<Modulus>,
    /// partial[i][j] = q_0 ... q_{j-1} mod q_i, for j < i.
    partial: Vec<Vec<u32>>,
    /// inv[i] = (q_0 ... q_{i-1})^-1 mod q_i.
    inv: Vec<u32>,
}

impl CrtLift {
    /// Tables for `moduli` (distinct primes).
    pub fn new(moduli: &[Modulus]) -> Self {
        let mut partial = Vec::with_capacity(moduli.len());
        let mut inv = Vec::with_capacity(moduli.len());
        for (i, m) in moduli.iter().enumerate() {
            let mut row = Vec::with_capacity(i);
            let mut prod = 1u32 % m.q;
            for prev in &moduli[..i] {
                row.push(prod);
                prod = m.mul(prod, prev.q % m.q);
            }
            inv.push(m.inv(prod).expect("distinct primes are coprime"));
            partial.push(row);
        }
        CrtLift {
            moduli: moduli.to_vec(),
            partial,
            inv,
        }
    }

    /// Number of primes.
    pub fn len(&self) -> usize {
        self.moduli.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.moduli.is_empty()
    }

    /// The balanced mixed-radix digits of the value whose residue mod q_i is `residue(i)`, into
    /// `digits` (length `len()`).
    pub fn digits(&self, residue: impl Fn(usize) -> u32, digits: &mut [i64]) {
        for (i, m) in self.moduli.iter().enumerate() {
            let q = m.q as i64;
            // x_i - (a_0 + a_1 q_0 + ... + a_{i-1} q_0...q_{i-2}) mod q_i.
            let mut s = residue(i) as i64;
            for (j, &pj) in self.partial[i].iter().enumerate() {
                s = (s - digits[j] * pj as i64).rem_euclid(q);
            }
            let a = (s as u64 * self.inv[i] as u64 % m.q as u64) as i64;
            digits[i] = if a > q / 2 { a - q } else { a };
        }
    }

    /// The centered value (in (-B/2, B/2)) of balanced digits, as f64.
    pub fn value(&self, digits: &[i64]) -> f64 {
        self.value_over(digits, 1.0)
    }

    /// The centered value divided by `scale`, as f64, without overflowing on the way: B reaches
    /// 2^1700 at N = 2^16 and scales of products reach 2^1000. Horner from the top digit with a
    /// running power of two; infinite only when the quotient itself exceeds f64.
    pub fn value_over(&self, digits: &[i64], scale: f64) -> f64 {
        const STEP: i32 = 512;
        let (mut v, mut e) = (0.0f64, 0i32);
        for (d, m) in digits.iter().zip(&self.moduli).rev() {
            v = v * m.q as f64 + *d as f64 * 2f64.powi(-e);
            if v.abs() > 2f64.powi(STEP) {
                v *= 2f64.powi(-STEP);
                e += STEP;
            }
        }
        // v 2^e / scale, dividing the scale down first so that neither side overflows.
        let mut s = scale;
        while e > 0 {
            let step = e.min(STEP);
            s *= 2f64.powi(-step);
            e -= step;
        }
        v / s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::primes::largest_ntt_primes;

    #[test]
    fn lifts_centered_values_exactly() {
        let moduli: Vec<Modulus> = largest_ntt_primes(30, 1 << 13, 6, &[])
            .unwrap()
            .into_iter()
            .map(Modulus::new)
            .collect();
        let lift = CrtLift::new(&moduli);
        let mut digits = vec![0i64; 6];
        for &x in &[
            0i128,
            1,
            -1,
            123_456_789,
            -(1i128 << 100) + 17,
            (1i128 << 120) - 3,
        ] {
            let res = |i: usize| (x.rem_euclid(moduli[i].q as i128)) as u32;
            lift.digits(res, &mut digits);
            let got = lift.value(&digits);
            assert_eq!(got, x as f64, "{x}");
            // Small values leave the top digits zero.
            if x.unsigned_abs() < 1 << 28 {
                assert!(digits[1..].iter().all(|&d| d == 0));
            }
        }
    }
}
