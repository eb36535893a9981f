//! `umbra selftest`: is this backend's arithmetic the CPU reference's, bit for bit?
//!
//! Every kernel of the seam runs on the backend under test and on the CPU reference with the same
//! random inputs, at several ring sizes and limb counts (with primes of different bit lengths), and
//! the outputs are compared word for word. Then a CKKS pipeline (key generation, encrypt, mul+relin,
//! rescale, rotate, decrypt) runs on both from the same seeds and the keys, ciphertexts and decrypted
//! values are compared. Users run it to trust a GPU; CI runs it on every backend present.

use std::sync::Arc;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::backend::{Backend, BackendError, Buffer, Device, RingContext};
use crate::ckks::{presets::presets, Context, Encoder, Encryptor, Evaluator, KeyGenerator};
use crate::ckks::{Ciphertext, CkksError, Decryptor, EvaluationKeys, Parameters};
use crate::math::primes::largest_ntt_primes;

/// (log2 N, limbs) of the kernel checks: a ring smaller than a workgroup, rings whose NTT fits one
/// workgroup and rings that need the global stages, and N = 2^16.
pub const DEFAULT_SIZES: [(u32, usize); 5] = [(3, 2), (10, 3), (12, 5), (13, 7), (16, 3)];

/// Special (P) primes added to each test ring for ModUp and key switching.
const SPECIAL: usize = 2;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub log_n: u32,
    pub limbs: usize,
    pub passed: bool,
    /// First mismatch, or an error.
    pub detail: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct SelftestReport {
    pub backend: Device,
    pub device: String,
    pub seed: u64,
    pub checks: Vec<Check>,
    pub passed: usize,
    pub failed: usize,
}

fn first_mismatch(a: &[u32], b: &[u32]) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("length {} vs {}", a.len(), b.len()));
    }
    let diffs = a.iter().zip(b).filter(|(x, y)| x != y).count();
    a.iter().zip(b).position(|(x, y)| x != y).map(|i| {
        format!(
            "{diffs} words differ, first at {i}: cpu {} vs {}",
            a[i], b[i]
        )
    })
}

/// The CPU reference and the backend under test on the same ring.
struct Pair {
    cpu: Backend,
    dev: Backend,
    ring: Arc<RingContext>,
    rng: ChaCha8Rng,
}

impl Pair {
    fn random(&mut self, primes: &[usize]) -> Vec<u32> {
        let n = self.ring.n;
        let mut v = Vec::with_capacity(primes.len() * n);
        for &p in primes {
            let q = self.ring.moduli[p].q;
            v.extend((0..n).map(|_| self.rng.next_u32() % q));
        }
        v
    }

    fn both(&self, host: &[u32]) -> (Buffer, Buffer) {
        (self.cpu.upload(host), self.dev.upload(host))
    }

    fn compare(&self, a: &Buffer, b: &Buffer) -> Option<String> {
        if let Err(e) = self.dev.status() {
            return Some(e.to_string());
        }
        first_mismatch(&self.cpu.download(a), &self.dev.download(b))
    }
}

/// Runs the kernel checks at `sizes` and the CKKS pipeline check.
pub fn run(
    device: Device,
    sizes: &[(u32, usize)],
    seed: u64,
) -> Result<SelftestReport, BackendError> {
    let mut checks = Vec::new();
    let mut name = String::new();
    for (i, &(log_n, limbs)) in sizes.iter().enumerate() {
        let (ring_checks, dev_name) = kernel_checks(device, log_n, limbs, seed + i as u64)?;
        name = dev_name;
        checks.extend(ring_checks);
    }
    checks.extend(pipeline_checks(device, seed)?);
    let passed = checks.iter().filter(|c| c.passed).count();
    Ok(SelftestReport {
        backend: device,
        device: name,
        seed,
        failed: checks.len() - passed,
        passed,
        checks,
    })
}

fn test_ring(log_n: u32, limbs: usize) -> Arc<RingContext> {
    let two_n = 2u64 << log_n;
    let total = limbs + SPECIAL;
    // Alternate prime sizes so that every Barrett and Shoup path sees short and long moduli.
    let long = largest_ntt_primes(30, two_n, total.div_ceil(2), &[]).expect("30-bit NTT primes");
    let short = largest_ntt_primes(26, two_n, total / 2, &long).expect("26-bit NTT primes");
    let mut primes = Vec::with_capacity(total);
    for i in 0..total {
        primes.push(if i % 2 == 0 {
            long[i / 2]
        } else {
            short[i / 2]
        });
    }
    Arc::new(RingContext::new(log_n, &primes))
}

fn kernel_checks(
    device: Device,
    log_n: u32,
    limbs: usize,
    seed: u64,
) -> Result<(Vec<Check>, String), BackendError> {
    let ring = test_ring(log_n, limbs);
    let dev = device.open(ring.clone())?;
    let dev_name = dev_name(&dev);
    let mut t = Pair {
        cpu: Device::Cpu.open(ring.clone())?,
        dev,
        ring: ring.clone(),
        rng: ChaCha8Rng::seed_from_u64(seed),
    };
    let n = ring.n;
    let level: Vec<usize> = (0..limbs).collect();
    let ext: Vec<usize> = (0..limbs + SPECIAL).collect();
    let mut out = Vec::new();
    let mut check = |name: &str, r: Option<String>| {
        out.push(Check {
            name: name.into(),
            log_n,
            limbs,
            passed: r.is_none(),
            detail: r.unwrap_or_default(),
        })
    };

    let x = t.random(&level);
    let y = t.random(&level);
    let (xc, xd) = t.both(&x);
    let (yc, yd) = t.both(&y);
    check("upload/download", first_mismatch(&x, &t.dev.download(&xd)));

    // Runs `f` on a copy of x on each side; `f` gets that side's x and y (0: CPU, 1: device).
    let (xs, ys) = ([&xc, &xd], [&yc, &yd]);
    let in_place = |t: &Pair, f: &dyn Fn(&Backend, &mut Buffer, &Buffer, &Buffer)| {
        let (mut a, mut b) = (xc.clone(), xd.clone());
        f(&t.cpu, &mut a, xs[0], ys[0]);
        f(&t.dev, &mut b, xs[1], ys[1]);
        t.compare(&a, &b)
    };
    check("ntt", in_place(&t, &|be, b, _, _| be.ntt(b, &level)));
    check("intt", in_place(&t, &|be, b, _, _| be.intt(b, &level)));
    check(
        "ntt+intt round trip",
        in_place(&t, &|be, b, _, _| {
            be.ntt(b, &level);
            be.intt(b, &level)
        }),
    );
    check(
        "add",
        in_place(&t, &|be, b, _, y| be.add_assign(b, y, &level)),
    );
    check(
        "sub",
        in_place(&t, &|be, b, _, y| be.sub_assign(b, y, &level)),
    );
    check("neg", in_place(&t, &|be, b, _, _| be.neg_assign(b, &level)));
    check(
        "mul_assign",
        in_place(&t, &|be, b, _, y| be.mul_assign(b, y, &level)),
    );
    check(
        "mul",
        t.compare(&t.cpu.mul(&xc, &yc, &level), &t.dev.mul(&xd, &yd, &level)),
    );
    check(
        "mul (same operand)",
        t.compare(&t.cpu.mul(&xc, &xc, &level), &t.dev.mul(&xd, &xd, &level)),
    );
    check(
        "mul_add",
        in_place(&t, &|be, b, x, y| be.mul_add_assign(b, x, y, &level)),
    );
    let scalars: Vec<u32> = (0..limbs).map(|_| t.rng.next_u32()).collect();
    check(
        "mul_scalar",
        in_place(&t, &|be, b, _, _| be.mul_scalar_assign(b, &scalars, &level)),
    );
    check(
        "add_scalar",
        in_place(&t, &|be, b, _, _| be.add_scalar_assign(b, &scalars, &level)),
    );
    for g in [5usize, 25, 2 * n - 1, (5usize.pow(7)) % (2 * n)] {
        let g = if g % 2 == 0 { g + 1 } else { g };
        check(
            &format!("automorphism g={g}"),
            t.compare(
                &t.cpu.automorphism(&xc, g, &level),
                &t.dev.automorphism(&xd, g, &level),
            ),
        );
    }
    check(
        "slice_limbs",
        t.compare(
            &t.cpu.slice_limbs(&xc, 1, limbs),
            &t.dev.slice_limbs(&xd, 1, limbs),
        ),
    );
    check(
        "concat_limbs",
        t.compare(
            &t.cpu.concat_limbs(&[&xc, &yc]),
            &t.dev.concat_limbs(&[&xd, &yd]),
        ),
    );
    check("zeros", t.compare(&t.cpu.zeros(limbs), &t.dev.zeros(limbs)));

    // Exact division (rescale by one prime, ModDown by the special primes).
    let z = t.random(&ext);
    let (zc, zd) = t.both(&z);
    check(
        "divide_round_last 1",
        t.compare(
            &t.cpu.divide_round_last(&zc, &ext, 1),
            &t.dev.divide_round_last(&zd, &ext, 1),
        ),
    );
    check(
        "divide_round_last P",
        t.compare(
            &t.cpu.divide_round_last(&zc, &ext, SPECIAL),
            &t.dev.divide_round_last(&zd, &ext, SPECIAL),
        ),
    );

    // ModUp of every digit of width 2, then the key-switch inner product over the digits.
    // The first coefficients sit at the edges of every digit's range (k and B - 1 - k), where the
    // fixed-point overflow count of the base conversion is decided by its last carries.
    let mut cb = t.cpu.upload(&x);
    t.cpu.intt(&mut cb, &level);
    let mut coef = t.cpu.download(&cb);
    for (l, &p) in level.iter().enumerate() {
        let q = ring.moduli[p].q;
        for i in 0..n.min(64) {
            let k = (i / 2) as u32 % q;
            coef[l * n + i] = if i % 2 == 0 { k } else { q - 1 - k };
        }
    }
    // The next ones lie in [0, B / 2^31) for their digit's B, where the 96-bit sum ends within a
    // carry of the next integer: a dropped carry changes the result there.
    for d0 in (0..limbs).step_by(2) {
        let d1 = (d0 + 2).min(limbs);
        let b: u128 = level[d0..d1]
            .iter()
            .map(|&p| ring.moduli[p].q as u128)
            .product();
        for i in 64..n.min(192) {
            let x = (t.rng.next_u64() as u128) % (b >> 31).max(1);
            for l in d0..d1 {
                coef[l * n + i] = (x % ring.moduli[level[l]].q as u128) as u32;
            }
        }
    }
    let (xcoef_c, xcoef_d) = t.both(&coef);
    let mut nb = t.cpu.upload(&coef);
    t.cpu.ntt(&mut nb, &level);
    let (xc, xd) = t.both(&t.cpu.download(&nb));
    let mut digits_c = Vec::new();
    let mut digits_d = Vec::new();
    let mut d0 = 0;
    while d0 < limbs {
        let d1 = (d0 + 2).min(limbs);
        let a = t.cpu.mod_up(&xcoef_c, &xc, &level, (d0, d1), &ext);
        let b = t.dev.mod_up(&xcoef_d, &xd, &level, (d0, d1), &ext);
        check(&format!("mod_up digit {d0}..{d1}"), t.compare(&a, &b));
        digits_c.push(a);
        digits_d.push(b);
        d0 = d1;
    }
    // Keys with one spare limb in front, as a key of a higher level would have.
    let key_primes: Vec<usize> = std::iter::once(0).chain(ext.iter().copied()).collect();
    let key_limbs: Vec<usize> = (1..=ext.len()).collect();
    let mut kb = (Vec::new(), Vec::new());
    let mut ka = (Vec::new(), Vec::new());
    for _ in 0..digits_c.len() {
        let b = t.random(&key_primes);
        let a = t.random(&key_primes);
        let (bc, bd) = t.both(&b);
        let (ac, ad) = t.both(&a);
        kb.0.push(bc);
        kb.1.push(bd);
        ka.0.push(ac);
        ka.1.push(ad);
    }
    fn r(v: &[Buffer]) -> Vec<&Buffer> {
        v.iter().collect()
    }
    let (c0, c1) = t
        .cpu
        .keyswitch_inner(&digits_c, &r(&kb.0), &r(&ka.0), &ext, &key_limbs);
    let (g0, g1) = t
        .dev
        .keyswitch_inner(&digits_d, &r(&kb.1), &r(&ka.1), &ext, &key_limbs);
    check(
        "keyswitch_inner",
        t.compare(&c0, &g0).or_else(|| t.compare(&c1, &g1)),
    );
    Ok((out, dev_name))
}

fn dev_name(be: &Backend) -> String {
    be.name()
}

/// The preset of the pipeline check: small and fast (insecure, which is fine for a comparison).
const PIPELINE_PRESET: &str = "N12_QP450_L6_S40_insecure";

fn pipeline_checks(device: Device, seed: u64) -> Result<Vec<Check>, BackendError> {
    let lit = presets()
        .into_iter()
        .find(|p| p.name == PIPELINE_PRESET)
        .expect("pipeline preset");
    let params = Parameters::new(lit).expect("valid preset");
    let log_n = params.ring.log_n;
    let limbs = params.ring.moduli.len();
    let mut out = Vec::new();
    let mut push = |name: &str, r: Result<Option<String>, CkksError>| {
        let r = r.unwrap_or_else(|e| Some(e.to_string()));
        out.push(Check {
            name: format!("ckks {name}"),
            log_n,
            limbs,
            passed: r.is_none(),
            detail: r.unwrap_or_default(),
        })
    };
    let ctx = |d: Device| -> Result<Arc<Context>, BackendError> {
        Context::new(params.clone(), d).map_err(|e| match e {
            CkksError::Backend(b) => b,
            other => BackendError::Device(other.to_string()),
        })
    };
    let (cc, dc) = (ctx(Device::Cpu)?, ctx(device)?);
    let key_seed = {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        s
    };
    let keys = |c: &Arc<Context>| {
        let mut kg = KeyGenerator::from_seed(c, key_seed);
        let sk = kg.gen_secret_key();
        let ek = kg.gen_evaluation_keys(&sk, &[1], false);
        (sk, Arc::new(ek))
    };
    let ((sk_c, ek_c), (sk_d, ek_d)) = (keys(&cc), keys(&dc));
    let same = |a: &Buffer, b: &Buffer| -> Option<String> {
        if let Err(e) = dc.backend.status() {
            return Some(e.to_string());
        }
        first_mismatch(&cc.backend.download(a), &dc.backend.download(b))
    };
    let same_ct = |a: &Ciphertext, b: &Ciphertext| -> Option<String> {
        if a.level != b.level || a.parts.len() != b.parts.len() {
            return Some(format!("level {} vs {}", a.level, b.level));
        }
        a.parts.iter().zip(&b.parts).find_map(|(x, y)| same(x, y))
    };
    push("secret key", Ok(same(&sk_c.ntt, &sk_d.ntt)));
    let rk = |e: &EvaluationKeys| {
        e.relin
            .as_ref()
            .map(|r| (r.0.b[0].clone(), r.0.a[0].clone()))
    };
    push(
        "relinearization key",
        Ok(match (rk(&ek_c), rk(&ek_d)) {
            (Some((b0, a0)), Some((b1, a1))) => same(&b0, &b1).or_else(|| same(&a0, &a1)),
            _ => Some("missing relinearization key".into()),
        }),
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let slots = params.ring.n / 2;
    let values: Vec<f64> = (0..slots)
        .map(|_| (rng.next_u32() as f64 / u32::MAX as f64) * 2.0 - 1.0)
        .collect();
    let run = |c: &Arc<Context>, sk: &crate::ckks::SecretKey, ek: &Arc<EvaluationKeys>| {
        let enc = Encoder::new(c);
        let pt = enc.encode(&values, params.max_level(), None)?;
        let mut encryptor = Encryptor::secret_from_seed(c, key_seed);
        let ct = encryptor.encrypt_sk(&pt, sk)?;
        let ev = Evaluator::new(c, ek.clone())?;
        let sq = ev.mul_relin_new(&ct, &ct)?;
        let rs = ev.rescale_new(&sq)?;
        let rot = ev.rotate_new(&rs, 1)?;
        let dec = Decryptor::new(c).decrypt(&rot, sk)?;
        Ok::<_, CkksError>((ct, sq, rs, rot, dec))
    };
    match (run(&cc, &sk_c, &ek_c), run(&dc, &sk_d, &ek_d)) {
        (Ok(a), Ok(b)) => {
            push("encrypt", Ok(same_ct(&a.0, &b.0)));
            push("mul+relin", Ok(same_ct(&a.1, &b.1)));
            push("rescale", Ok(same_ct(&a.2, &b.2)));
            push("rotate", Ok(same_ct(&a.3, &b.3)));
            let want: Vec<f64> = (0..slots)
                .map(|i| values[(i + 1) % slots].powi(2))
                .collect();
            let bits = crate::ckks::encoder::precision_bits(&b.4, &want);
            push(
                "decrypt",
                Ok(if a.4 != b.4 {
                    Some("decrypted values differ".into())
                } else if bits < 15.0 {
                    Some(format!("precision {bits:.1} bits"))
                } else {
                    None
                }),
            );
        }
        (Err(e), _) | (_, Err(e)) => push("pipeline", Err(e)),
    }
    Ok(out)
}
