//! Key generation: secret, public, relinearization and Galois keys (hybrid key switching with
//! `dnum` digits and special primes P). Switching keys keep a seed for their uniform halves so that
//! their serialized form is half the size.

use std::collections::BTreeMap;
use std::sync::Arc;

use zeroize::Zeroize;

use super::{CkksError, Context, Parameters};
use crate::backend::Buffer;
use crate::math::sampling::Prng;

/// The secret key s (uniform ternary), NTT form over every prime of the ring. Zeroized on drop;
/// it does not serialize and has no way to the server side: the client keeps its [`SecretSeed`]
/// (`serialize::secret_seed_to_bytes`, written only as the client's `secret.key`).
pub struct SecretKey {
    pub(crate) ntt: Buffer,
    pub(crate) params_hash: [u8; 32],
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        match &mut self.ntt {
            Buffer::Cpu(v) => v.zeroize(),
            #[cfg(any(feature = "cuda", feature = "wgpu"))]
            Buffer::Gpu(g) => g.zeroize(),
        }
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// The 32-byte seed of a secret key: as secret as the key itself. Zeroized on drop.
pub struct SecretSeed(pub(crate) [u8; 32]);

impl Drop for SecretSeed {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for SecretSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSeed(..)")
    }
}

/// Public encryption key (b, a) = (-a s + e, a) over the Q primes.
#[derive(Clone, Debug)]
pub struct PublicKey {
    pub b: Buffer,
    /// Expanded from `seed`.
    pub a: Buffer,
    pub seed: [u8; 32],
    pub params_hash: [u8; 32],
}

/// A key switching from s' to s: per digit j, (b_j, a_j) = (-a_j s + e_j + P g_j s', a_j) over
/// Q_level and P. A key made for `level` serves ciphertexts at that level and below and holds only
/// their limbs and digits (bootstrapping's SlotsToCoeffs keys are a third of a full key's size).
/// a_j is expanded from `seed`.
#[derive(Clone, Debug)]
pub struct SwitchingKey {
    pub b: Vec<Buffer>,
    pub a: Vec<Buffer>,
    pub seed: [u8; 32],
    pub level: usize,
}

impl SwitchingKey {
    /// Position in the key's buffers of each prime of `ext` (Q primes up to the key's level,
    /// then P).
    pub(crate) fn limb_positions(&self, p: &Parameters, ext: &[usize]) -> Vec<usize> {
        let lq = p.limbs_at(self.level);
        ext.iter()
            .map(|&i| {
                if i < p.q_count() {
                    i
                } else {
                    lq + i - p.q_count()
                }
            })
            .collect()
    }
}

/// Relinearization key: switches s^2 to s.
#[derive(Clone, Debug)]
pub struct RelinKey(pub SwitchingKey);

/// Galois keys by Galois element (5^r mod 2N for rotations by r, 2N - 1 for conjugation).
#[derive(Clone, Debug, Default)]
pub struct GaloisKeys {
    pub keys: BTreeMap<usize, SwitchingKey>,
}

/// Sparse-secret encapsulation keys (bootstrapping): ModRaise runs under an ephemeral secret s'
/// with `hamming_weight` nonzero coefficients, so that the multiple of Q_0 it adds stays small
/// (|I| ~ sqrt(h)) and EvalMod needs a short interval, while the main secret stays dense (uniform
/// ternary, the HE-standard distribution).
#[derive(Clone, Debug)]
pub struct EncapsulationKeys {
    /// s -> s', one digit, valid at level 0 only: its limbs outside Q_0 and P are zero, so that
    /// an encryption under the sparse s' is only ever published modulo the small Q_0 P.
    pub to_sparse: SwitchingKey,
    /// s' -> s over the full modulus (encrypted under the dense s).
    pub to_dense: SwitchingKey,
    pub hamming_weight: usize,
}

/// The one public bundle a server receives.
#[derive(Clone, Debug)]
pub struct EvaluationKeys {
    pub relin: Option<RelinKey>,
    pub galois: GaloisKeys,
    /// Present when the bundle was made for bootstrapping with encapsulation.
    pub encapsulation: Option<EncapsulationKeys>,
    pub params_hash: [u8; 32],
}

impl EvaluationKeys {
    /// Bytes of key material held in memory (both halves of every switching key).
    pub fn memory_bytes(&self) -> usize {
        let swk = |k: &SwitchingKey| -> usize {
            k.b.iter().chain(&k.a).map(|x| x.len() * 4).sum::<usize>()
        };
        self.relin.as_ref().map_or(0, |r| swk(&r.0))
            + self.galois.keys.values().map(swk).sum::<usize>()
            + self
                .encapsulation
                .as_ref()
                .map_or(0, |e| swk(&e.to_sparse) + swk(&e.to_dense))
    }
}

/// Galois element of a left rotation by `r` slots (any sign).
pub fn galois_element(r: i64, n: usize) -> usize {
    let two_n = 2 * n as u64;
    let half = (n / 2) as i64;
    let mut e = r.rem_euclid(half) as u64;
    let mut g: u64 = 1;
    let mut base: u64 = 5;
    while e > 0 {
        if e & 1 == 1 {
            g = g * base % two_n;
        }
        base = base * base % two_n;
        e >>= 1;
    }
    g as usize
}

/// Galois element of complex conjugation.
pub fn conjugation_element(n: usize) -> usize {
    2 * n - 1
}

pub struct KeyGenerator {
    ctx: Arc<Context>,
    prng: Prng,
}

impl KeyGenerator {
    /// A key generator drawing from the OS-seeded ChaCha20 CSPRNG.
    pub fn new(ctx: &Arc<Context>) -> Self {
        KeyGenerator {
            ctx: ctx.clone(),
            prng: Prng::from_os(),
        }
    }

    /// A reproducible key generator (tests and the backend self-test only).
    pub fn from_seed(ctx: &Arc<Context>, seed: [u8; 32]) -> Self {
        KeyGenerator {
            ctx: ctx.clone(),
            prng: Prng::from_seed(seed),
        }
    }

    pub fn gen_secret_key(&mut self) -> SecretKey {
        let mut prng = Prng::from_seed(self.prng.seed32());
        self.secret_key_from(&mut prng)
    }

    /// A fresh secret key and the 32-byte CSPRNG seed it expands from (what the client stores).
    pub fn gen_secret_key_seeded(&mut self) -> (SecretKey, SecretSeed) {
        let seed = SecretSeed(self.prng.seed32());
        (self.secret_key_from_seed(&seed), seed)
    }

    /// The secret key `seed` expands to (under this generator's parameters).
    pub fn secret_key_from_seed(&self, seed: &SecretSeed) -> SecretKey {
        self.secret_key_from(&mut Prng::from_seed(seed.0))
    }

    fn secret_key_from(&self, prng: &mut Prng) -> SecretKey {
        let p = &self.ctx.params;
        let mut s = prng.ternary(p.n());
        let all: Vec<usize> = (0..p.ring.moduli.len()).collect();
        let ntt = small_to_ntt(&self.ctx, &s, &all);
        s.zeroize();
        SecretKey {
            ntt,
            params_hash: p.hash,
        }
    }

    pub fn gen_public_key(&mut self, sk: &SecretKey) -> PublicKey {
        let p = &self.ctx.params;
        let be = &self.ctx.backend;
        let q = p.q_indices(p.max_level());
        let seed = self.prng.seed32();
        let a = uniform(&self.ctx, &mut Prng::from_seed(seed), &q);
        let e = self.prng.cbd(p.n());
        let mut b = small_to_ntt(&self.ctx, &e, &q);
        let s = be.slice_limbs(&sk.ntt, 0, q.len());
        let as_ = be.mul(&a, &s, &q);
        be.sub_assign(&mut b, &as_, &q);
        PublicKey {
            b,
            a,
            seed,
            params_hash: p.hash,
        }
    }

    /// A switching key from `from` (NTT form over all primes) to the secret key, for every level.
    fn switching_key(&mut self, sk: &SecretKey, from: &Buffer) -> SwitchingKey {
        let top = self.ctx.params.max_level();
        self.switching_key_to(&sk.ntt, from, top)
    }

    /// A switching key from `from` to `to` (both NTT form over all primes) serving `level` and
    /// below: limbs Q_level ++ P, the digits present at `level`.
    fn switching_key_to(&mut self, to: &Buffer, from: &Buffer, level: usize) -> SwitchingKey {
        let p = self.ctx.params.clone();
        let be = &self.ctx.backend;
        let primes = p.qp_indices(level);
        let digits = p.digits_at(level);
        let pick = |x: &Buffer| -> Buffer {
            let parts: Vec<Buffer> = primes
                .iter()
                .map(|&i| be.slice_limbs(x, i, i + 1))
                .collect();
            be.concat_limbs(&parts.iter().collect::<Vec<_>>())
        };
        let (to, from) = (pick(to), pick(from));
        let seed = self.prng.seed32();
        let a = expand_uniform(&self.ctx, seed, digits.len(), &primes);
        let n = p.n();
        let mut b = Vec::with_capacity(digits.len());
        for (j, &(d0, d1)) in digits.iter().enumerate() {
            let e = self.prng.cbd(n);
            let mut bj = small_to_ntt(&self.ctx, &e, &primes);
            let as_ = be.mul(&a[j], &to, &primes);
            be.sub_assign(&mut bj, &as_, &primes);
            // + P * g_j * s': [P]_{q_i} on the digit's limbs, 0 elsewhere.
            let scal: Vec<u32> = primes
                .iter()
                .map(|&i| {
                    if i >= d0 && i < d1 {
                        let m = p.ring.moduli[i];
                        p.p_primes
                            .iter()
                            .fold(1u32, |acc, &pp| m.mul(acc, pp % m.q))
                    } else {
                        0
                    }
                })
                .collect();
            let mut t = from.clone();
            be.mul_scalar_assign(&mut t, &scal, &primes);
            be.add_assign(&mut bj, &t, &primes);
            b.push(bj);
        }
        SwitchingKey { b, a, seed, level }
    }

    /// Sparse-secret encapsulation keys with an ephemeral secret of `hamming_weight` nonzero
    /// coefficients (drawn here and zeroized when this returns).
    pub fn gen_encapsulation_keys(
        &mut self,
        sk: &SecretKey,
        hamming_weight: usize,
    ) -> EncapsulationKeys {
        let p = self.ctx.params.clone();
        let all: Vec<usize> = (0..p.ring.moduli.len()).collect();
        let mut s = self.prng.sparse_ternary(p.n(), hamming_weight);
        let sparse = SecretKey {
            ntt: small_to_ntt(&self.ctx, &s, &all),
            params_hash: p.hash,
        };
        s.zeroize();
        // s -> s' only at level 0: an encryption under the sparse s' is published modulo Q_0 P
        // alone, where its sparsity costs no security.
        let to_sparse = self.switching_key_to(&sparse.ntt, &sk.ntt, 0);
        let to_dense = self.switching_key_to(&sk.ntt, &sparse.ntt, p.max_level());
        EncapsulationKeys {
            to_sparse,
            to_dense,
            hamming_weight,
        }
    }

    pub fn gen_relin_key(&mut self, sk: &SecretKey) -> RelinKey {
        let all: Vec<usize> = (0..self.ctx.params.ring.moduli.len()).collect();
        let s2 = self.ctx.backend.mul(&sk.ntt, &sk.ntt, &all);
        RelinKey(self.switching_key(sk, &s2))
    }

    /// Galois keys for left rotations by each of `rotations` (any sign), and for conjugation.
    pub fn gen_galois_keys(
        &mut self,
        sk: &SecretKey,
        rotations: &[i64],
        conjugation: bool,
    ) -> GaloisKeys {
        let top = self.ctx.params.max_level();
        let levels: Vec<(i64, usize)> = rotations.iter().map(|&r| (r, top)).collect();
        self.gen_galois_keys_at(sk, &levels, conjugation.then_some(top))
    }

    /// Galois keys for rotations each used up to a level (smaller keys for lower levels), and
    /// for conjugation up to a level. A rotation listed twice gets the higher level.
    pub fn gen_galois_keys_at(
        &mut self,
        sk: &SecretKey,
        rotations: &[(i64, usize)],
        conjugation: Option<usize>,
    ) -> GaloisKeys {
        let p = self.ctx.params.clone();
        let n = p.n();
        let mut elements: BTreeMap<usize, usize> = BTreeMap::new();
        let mut want = |g: usize, level: usize| {
            let l = elements.entry(g).or_insert(0);
            *l = (*l).max(level.min(p.max_level()));
        };
        for &(r, level) in rotations {
            let g = galois_element(r, n);
            if g != 1 {
                want(g, level);
            }
        }
        if let Some(level) = conjugation {
            want(conjugation_element(n), level);
        }
        let all: Vec<usize> = (0..p.ring.moduli.len()).collect();
        let mut keys = BTreeMap::new();
        for (g, level) in elements {
            // Key from phi_g(s) to s (rotation applies phi_g to the ciphertext, then switches).
            let from = self.ctx.backend.automorphism(&sk.ntt, g, &all);
            keys.insert(g, self.switching_key_to(&sk.ntt, &from, level));
        }
        GaloisKeys { keys }
    }

    /// Relinearization key plus Galois keys for `rotations` (and conjugation).
    pub fn gen_evaluation_keys(
        &mut self,
        sk: &SecretKey,
        rotations: &[i64],
        conjugation: bool,
    ) -> EvaluationKeys {
        EvaluationKeys {
            relin: Some(self.gen_relin_key(sk)),
            galois: self.gen_galois_keys(sk, rotations, conjugation),
            encapsulation: None,
            params_hash: self.ctx.params.hash,
        }
    }
}

/// Small signed coefficients -> NTT form over `primes`.
pub(crate) fn small_to_ntt(ctx: &Context, coeffs: &[i64], primes: &[usize]) -> Buffer {
    let n = ctx.params.n();
    let mut host = vec![0u32; primes.len() * n];
    for (chunk, &pi) in host.chunks_mut(n).zip(primes) {
        let m = ctx.params.ring.moduli[pi];
        for (o, &c) in chunk.iter_mut().zip(coeffs) {
            *o = m.reduce_i64(c);
        }
    }
    let mut buf = ctx.backend.upload(&host);
    host.zeroize();
    ctx.backend.ntt(&mut buf, primes);
    buf
}

/// A uniform polynomial over `primes` (uniform in NTT form is uniform).
pub(crate) fn uniform(ctx: &Context, prng: &mut Prng, primes: &[usize]) -> Buffer {
    let n = ctx.params.n();
    let mut host = vec![0u32; primes.len() * n];
    for (chunk, &pi) in host.chunks_mut(n).zip(primes) {
        prng.fill_uniform(ctx.params.ring.moduli[pi].q, chunk);
    }
    ctx.backend.upload(&host)
}

/// `count` uniform polynomials expanded from a seed (the same seed always gives the same ones).
pub(crate) fn expand_uniform(
    ctx: &Context,
    seed: [u8; 32],
    count: usize,
    primes: &[usize],
) -> Vec<Buffer> {
    let mut prng = Prng::from_seed(seed);
    (0..count)
        .map(|_| uniform(ctx, &mut prng, primes))
        .collect()
}

pub(crate) fn check_hash(ctx: &Context, h: &[u8; 32]) -> Result<(), CkksError> {
    if &ctx.params.hash == h {
        Ok(())
    } else {
        Err(CkksError::ParamsMismatch)
    }
}
