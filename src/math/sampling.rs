//! CSPRNG sampling: ChaCha20 seeded from the OS, uniform residues, uniform ternary secrets and
//! centered-binomial errors (eta = 21, sigma = sqrt(21/2) = 3.24, the HE-standard width).

use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore, SeedableRng};

/// The project's random generator: ChaCha20, seeded from the OS or from an explicit seed.
pub struct Prng(ChaCha20Rng);

/// Width parameter of the centered binomial error distribution.
pub const CBD_ETA: u32 = 21;

impl Prng {
    /// A generator seeded from the operating system's CSPRNG.
    pub fn from_os() -> Self {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        Prng(ChaCha20Rng::from_seed(seed))
    }

    /// A reproducible generator (seeded halves of keys and ciphertexts, tests).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Prng(ChaCha20Rng::from_seed(seed))
    }

    pub fn seed32(&mut self) -> [u8; 32] {
        let mut s = [0u8; 32];
        self.0.fill_bytes(&mut s);
        s
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform residues mod q (rejection sampling on the smallest covering power of two).
    pub fn fill_uniform(&mut self, q: u32, out: &mut [u32]) {
        let mask = u32::MAX >> q.leading_zeros();
        let mut buf = [0u32; 64];
        let mut k = buf.len();
        for x in out.iter_mut() {
            loop {
                if k == buf.len() {
                    self.0.fill_bytes(bytemuck_u32(&mut buf));
                    k = 0;
                }
                let v = buf[k] & mask;
                k += 1;
                if v < q {
                    *x = v;
                    break;
                }
            }
        }
    }

    /// Uniform ternary coefficients in {-1, 0, 1}.
    pub fn ternary(&mut self, n: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let mut r = self.0.next_u64();
            // 2 bits at a time, rejecting the value 3, for an unbiased choice of three.
            for _ in 0..32 {
                let v = r & 3;
                r >>= 2;
                if v < 3 && out.len() < n {
                    out.push(v as i64 - 1);
                }
            }
        }
        out
    }

    /// A ternary vector with exactly `h` nonzero entries (±1, uniform positions and signs): the
    /// sparse ephemeral secret of bootstrapping's encapsulation.
    pub fn sparse_ternary(&mut self, n: usize, h: usize) -> Vec<i64> {
        let h = h.min(n);
        let mut out = vec![0i64; n];
        let mut placed = 0;
        while placed < h {
            // Unbiased index below n (n is a power of two in practice; rejection keeps any n exact).
            let bound = (u64::MAX / n as u64) * n as u64;
            let r = self.0.next_u64();
            if r >= bound {
                continue;
            }
            let i = (r % n as u64) as usize;
            if out[i] == 0 {
                out[i] = if self.0.next_u32() & 1 == 0 { 1 } else { -1 };
                placed += 1;
            }
        }
        out
    }

    /// Centered binomial coefficients: sum of eta bits minus sum of eta bits.
    pub fn cbd(&mut self, n: usize) -> Vec<i64> {
        let mask = (1u64 << CBD_ETA) - 1;
        (0..n)
            .map(|_| {
                let r = self.0.next_u64();
                (r & mask).count_ones() as i64 - ((r >> 32) & mask).count_ones() as i64
            })
            .collect()
    }
}

fn bytemuck_u32(buf: &mut [u32; 64]) -> &mut [u8] {
    // SAFETY: u32 has no padding and any byte pattern is a valid u32.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut u8, buf.len() * 4) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_have_expected_moments() {
        let mut p = Prng::from_seed([7; 32]);
        let e = p.cbd(1 << 16);
        let var = e.iter().map(|&x| (x * x) as f64).sum::<f64>() / e.len() as f64;
        assert!((var - 10.5).abs() < 0.5, "cbd variance {var}");
        assert!(e.iter().all(|&x| x.abs() <= 21));
        let t = p.ternary(30000);
        for v in [-1, 0, 1] {
            let c = t.iter().filter(|&&x| x == v).count();
            assert!((9000..11000).contains(&c));
        }
        let mut u = vec![0u32; 30000];
        p.fill_uniform(786433, &mut u);
        assert!(u.iter().all(|&x| x < 786433));
        let mean = u.iter().map(|&x| x as f64).sum::<f64>() / u.len() as f64;
        assert!((mean / 786433.0 - 0.5).abs() < 0.02);
        let s = p.sparse_ternary(1 << 12, 32);
        assert_eq!(s.iter().filter(|&&x| x != 0).count(), 32);
        assert!(s.iter().all(|&x| x.abs() <= 1));
        let plus = s.iter().filter(|&&x| x == 1).count();
        assert!((4..=28).contains(&plus), "{plus} of 32 signs positive");
    }
}
