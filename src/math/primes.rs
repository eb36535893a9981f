//! NTT-friendly primes q = 1 mod 2N below 2^30, and primitive 2N-th roots of unity.

use super::Modulus;

/// Deterministic Miller-Rabin for n < 2^64.
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    for p in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        if n % p == 0 {
            return n == p;
        }
    }
    let mut d = n - 1;
    let mut s = 0;
    while d % 2 == 0 {
        d /= 2;
        s += 1;
    }
    let mulmod = |a: u64, b: u64| ((a as u128 * b as u128) % n as u128) as u64;
    let powmod = |mut a: u64, mut e: u64| {
        let mut r = 1u64;
        while e > 0 {
            if e & 1 == 1 {
                r = mulmod(r, a);
            }
            a = mulmod(a, a);
            e >>= 1;
        }
        r
    };
    'witness: for a in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        let mut x = powmod(a, d);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mulmod(x, x);
            if x == n - 1 {
                continue 'witness;
            }
        }
        return false;
    }
    true
}

/// The NTT-friendly prime (q = 1 mod 2N, 2N < q < 2^30) nearest to `target` that is not in
/// `used`, searching outward in steps of 2N. None if none exists in range.
pub fn nearest_ntt_prime(target: f64, two_n: u64, used: &[u32]) -> Option<u32> {
    let max = (1u64 << 30) - 1;
    let k0 = ((target - 1.0) / two_n as f64).round().max(1.0) as u64;
    let ok = |k: u64| {
        let q = k * two_n + 1;
        q <= max && is_prime(q) && !used.contains(&(q as u32))
    };
    let kmax = max / two_n;
    for d in 0..=kmax {
        // Try the candidate closer in value first (below/above alternate).
        let up = k0 + d;
        if d <= k0 && k0 - d >= 1 && ok(k0 - d) {
            let lo = (k0 - d) * two_n + 1;
            if up <= kmax && ok(up) {
                let hi = up * two_n + 1;
                return Some(if (hi as f64 - target).abs() < (target - lo as f64).abs() {
                    hi as u32
                } else {
                    lo as u32
                });
            }
            return Some(lo as u32);
        }
        if up <= kmax && ok(up) {
            return Some((up * two_n + 1) as u32);
        }
        if k0 + d > kmax && d > k0 {
            break;
        }
    }
    None
}

/// The largest NTT-friendly primes below 2^bits not in `used`, `count` of them.
pub fn largest_ntt_primes(bits: u32, two_n: u64, count: usize, used: &[u32]) -> Option<Vec<u32>> {
    let top = (1u64 << bits.min(30)) - 1;
    let mut k = top / two_n;
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        if k == 0 {
            return None;
        }
        let q = k * two_n + 1;
        if q <= top && is_prime(q) && !used.contains(&(q as u32)) {
            out.push(q as u32);
        }
        k -= 1;
    }
    Some(out)
}

/// A primitive 2N-th root of unity mod q (q = 1 mod 2N): the smallest such root, so that the
/// tables are reproducible.
pub fn primitive_root_2n(q: u32, two_n: u64) -> u32 {
    let m = Modulus::new(q);
    let n = two_n / 2;
    let mut best: Option<u32> = None;
    for g in 2..q {
        let psi = m.pow(g, (q as u64 - 1) / two_n);
        if m.pow(psi, n) == q - 1 {
            // psi generates the 2N-th roots; pick the smallest primitive one among its odd powers.
            let psi2 = m.mul(psi, psi);
            let mut p = psi;
            let mut smallest = psi;
            for _ in 0..n {
                smallest = smallest.min(p);
                p = m.mul(p, psi2);
            }
            best = Some(smallest);
            break;
        }
    }
    best.expect("q = 1 mod 2N has a primitive 2N-th root")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes_are_ntt_friendly() {
        let ps = largest_ntt_primes(30, 1 << 17, 5, &[]).unwrap();
        for &q in &ps {
            assert!(is_prime(q as u64));
            assert_eq!(q as u64 % (1 << 17), 1);
            assert!(q < 1 << 30);
            let psi = primitive_root_2n(q, 1 << 17);
            let m = Modulus::new(q);
            assert_eq!(m.pow(psi, 1 << 16), q - 1);
        }
        assert!(!is_prime(561) && !is_prime(1_000_000_007 * 3) && is_prime(1_000_000_007));
        let q = nearest_ntt_prime(2f64.powi(20), 1 << 15, &[]).unwrap();
        assert_eq!(q % (1 << 15), 1);
    }
}
