//! RNS kernels against big-integer arithmetic: `divide_round_last` (rescale, ModDown) is exactly
//! round(x / D), and `mod_up` lifts the exact digit value [x]_{Q_j} to the extended basis. Inputs are
//! random residues (what ciphertext parts look like) and real ciphertext parts.

mod common;

use std::sync::Arc;

use common::*;
use num_bigint::BigUint;
use num_traits::{ToPrimitive, Zero};
use umbra::backend::{Buffer, Device};
use umbra::ckks::{Context, Encoder, Encryptor, Evaluator, Parameters};
use umbra::math::sampling::Prng;

/// CRT reconstruction over a list of primes.
struct Crt {
    modulus: BigUint,
    /// (Q / q_i) * [(Q / q_i)^-1]_{q_i}.
    basis: Vec<BigUint>,
}

fn pow_mod(mut b: u64, mut e: u64, m: u64) -> u64 {
    let mut r = 1u64;
    b %= m;
    while e > 0 {
        if e & 1 == 1 {
            r = r * b % m;
        }
        b = b * b % m;
        e >>= 1;
    }
    r
}

impl Crt {
    fn new(primes: &[u32]) -> Crt {
        let modulus: BigUint = primes.iter().map(|&q| BigUint::from(q)).product();
        let basis = primes
            .iter()
            .map(|&q| {
                let punct = &modulus / q;
                let r = (&punct % q).to_u64().unwrap();
                let inv = pow_mod(r, q as u64 - 2, q as u64);
                assert_eq!(r * inv % q as u64, 1);
                punct * inv
            })
            .collect();
        Crt { modulus, basis }
    }

    /// The integer in [0, Q) with the given residues.
    fn lift(&self, residues: impl Iterator<Item = u32>) -> BigUint {
        let mut s = BigUint::zero();
        for (r, b) in residues.zip(&self.basis) {
            s += b * r;
        }
        s % &self.modulus
    }
}

fn residue(x: &BigUint, q: u32) -> u32 {
    (x % q).to_u32().unwrap()
}

fn primes_of(ctx: &Context, idx: &[usize]) -> Vec<u32> {
    idx.iter().map(|&i| ctx.params.ring.moduli[i].q).collect()
}

/// Random residues below each prime, as an NTT-form buffer (any residues are a valid NTT form).
fn random_buffer(ctx: &Context, idx: &[usize], seed: u8) -> Buffer {
    let n = ctx.params.n();
    let mut prng = Prng::from_seed([seed; 32]);
    let mut host = vec![0u32; idx.len() * n];
    for (chunk, q) in host.chunks_mut(n).zip(primes_of(ctx, idx)) {
        for w in chunk.iter_mut() {
            *w = prng.next_u32() % q;
        }
    }
    ctx.backend.upload(&host)
}

/// Coefficient-form residues of an NTT-form buffer (via the backend's INTT).
fn coeffs(ctx: &Context, buf: &Buffer, idx: &[usize]) -> Vec<u32> {
    let mut c = buf.clone();
    ctx.backend.intt(&mut c, idx);
    ctx.backend.download(&c)
}

/// Checks `divide_round_last(x, idx, n_drop)` against round(x / D) on every coefficient; returns how
/// many coefficients were compared.
fn check_divide_round(
    ctx: &Context,
    x: &Buffer,
    idx: &[usize],
    n_drop: usize,
    what: &str,
) -> usize {
    let n = ctx.params.n();
    let be = &ctx.backend;
    let keep = &idx[..idx.len() - n_drop];
    let all_primes = primes_of(ctx, idx);
    let keep_primes = primes_of(ctx, keep);
    let crt = Crt::new(&all_primes);
    let d: BigUint = all_primes[keep.len()..]
        .iter()
        .map(|&q| BigUint::from(q))
        .product();
    let two_d = &d * 2u32;
    let xc = coeffs(ctx, x, idx);
    let out = be.divide_round_last(x, idx, n_drop);
    assert_eq!(out.len(), keep.len() * n, "{what}: output size");
    let oc = coeffs(ctx, &out, keep);
    for k in 0..n {
        let v = crt.lift((0..idx.len()).map(|l| xc[l * n + k]));
        // round(v / D) = floor((2v + D) / 2D) (D is odd: no ties).
        let want = (&v * 2u32 + &d) / &two_d;
        for (l, &q) in keep_primes.iter().enumerate() {
            let got = oc[l * n + k];
            assert!(got < q, "{what}: residue not reduced");
            assert_eq!(
                got,
                residue(&want, q),
                "{what}: coefficient {k}, prime {l} ({q}): x = {v}, D = {d}"
            );
        }
    }
    n
}

/// Checks `mod_up` for every digit present at `level` against [x]_{Q_j} mod each prime of the
/// extended basis. With `tolerate_wrap`, a result of [x]_{Q_j} +- Q_j (the same multiple on every
/// limb) is accepted too: the documented approximate-conversion case for values within ~2^-45 Q_j of
/// 0 or Q_j (see math::rns). Returns how many coefficients needed it.
fn check_mod_up(ctx: &Context, x: &Buffer, level: usize, tolerate_wrap: bool, what: &str) -> usize {
    let p = &ctx.params;
    let n = p.n();
    let be = &ctx.backend;
    let q = p.q_indices(level);
    let ext = p.qp_indices(level);
    let ext_primes = primes_of(ctx, &ext);
    let xc = coeffs(ctx, x, &q);
    let mut coeff_buf = x.clone();
    be.intt(&mut coeff_buf, &q);
    let digits = p.digits_at(level);
    assert!(!digits.is_empty());
    assert_eq!(digits.last().unwrap().1, q.len(), "digits cover the level");
    let mut wrapped = 0;
    for (d0, d1) in digits {
        let crt = Crt::new(&primes_of(ctx, &q[d0..d1]));
        let qj: Vec<u32> = ext_primes
            .iter()
            .map(|&pr| residue(&crt.modulus, pr))
            .collect();
        let out = be.mod_up(&coeff_buf, x, &q, (d0, d1), &ext);
        assert_eq!(out.len(), ext.len() * n, "{what}: output size");
        let oc = coeffs(ctx, &out, &ext);
        for k in 0..n {
            let y = crt.lift((d0..d1).map(|l| xc[l * n + k]));
            let want: Vec<u32> = ext_primes.iter().map(|&pr| residue(&y, pr)).collect();
            let got: Vec<u32> = (0..ext.len()).map(|l| oc[l * n + k]).collect();
            // Limbs of the digit itself are always exact (they are x's own residues).
            for l in d0..d1 {
                assert_eq!(
                    got[l], want[l],
                    "{what}: digit ({d0},{d1}), coefficient {k}, own limb {l}"
                );
            }
            if got == want {
                continue;
            }
            let plus: Vec<u32> = want
                .iter()
                .zip(&qj)
                .zip(&ext_primes)
                .map(|((&w, &m), &pr)| ((w as u64 + m as u64) % pr as u64) as u32)
                .collect();
            let minus: Vec<u32> = want
                .iter()
                .zip(&qj)
                .zip(&ext_primes)
                .map(|((&w, &m), &pr)| ((w as u64 + pr as u64 - m as u64) % pr as u64) as u32)
                .collect();
            let ok = |v: &[u32]| {
                (0..ext.len())
                    .filter(|l| !(d0..d1).contains(l))
                    .all(|l| got[l] == v[l])
            };
            assert!(
                tolerate_wrap && (ok(&plus) || ok(&minus)),
                "{what}: digit ({d0},{d1}), coefficient {k}: got {got:?}, want {want:?} (y = {y}, Q_j = {})",
                crt.modulus
            );
            wrapped += 1;
        }
    }
    wrapped
}

fn n14_context() -> Arc<Context> {
    Context::new(Parameters::preset(N14).unwrap(), Device::Cpu).unwrap()
}

#[test]
fn rescale_matches_big_integer_rounding_on_random_buffers() {
    let k = keys(INSECURE);
    for ctx in [k.ctx.clone(), n14_context()] {
        let p = ctx.params.clone();
        let levels: Vec<usize> = if p.n() <= 4096 {
            (1..=p.max_level()).collect()
        } else {
            vec![p.max_level(), 1]
        };
        let mut checked = 0;
        for (i, &level) in levels.iter().enumerate() {
            let q = p.q_indices(level);
            let g = p.q_groups[level].len();
            let x = random_buffer(&ctx, &q, 10 + i as u8);
            checked += check_divide_round(
                &ctx,
                &x,
                &q,
                g,
                &format!("rescale from level {level}, N = {}", p.n()),
            );
        }
        assert!(checked >= 2 * p.n());
    }
}

#[test]
fn moddown_matches_big_integer_rounding() {
    // ModDown: divide by P over Q_l ++ P.
    let k = keys(INSECURE);
    for ctx in [k.ctx.clone(), n14_context()] {
        let p = ctx.params.clone();
        for level in [p.max_level(), 0] {
            let ext = p.qp_indices(level);
            let x = random_buffer(&ctx, &ext, 30 + level as u8);
            check_divide_round(
                &ctx,
                &x,
                &ext,
                p.p_primes.len(),
                &format!("ModDown at level {level}, N = {}", p.n()),
            );
        }
    }
}

#[test]
fn evaluator_rescale_of_real_ciphertexts_is_exact() {
    let k = keys(INSECURE);
    let ctx = &k.ctx;
    let p = &ctx.params;
    let enc = Encoder::new(ctx);
    let eval = Evaluator::new(ctx, k.evk.clone()).unwrap();
    let mut e = Encryptor::new(ctx, &k.pk).unwrap();
    let a = e
        .encrypt(
            &enc.encode(&uniform(p.max_slots(), 50), p.max_level(), None)
                .unwrap(),
        )
        .unwrap();
    let b = e
        .encrypt(
            &enc.encode(&uniform(p.max_slots(), 51), p.max_level(), None)
                .unwrap(),
        )
        .unwrap();
    let prod = eval.mul_relin_new(&a, &b).unwrap();
    let q = p.q_indices(prod.level);
    let g = p.q_groups[prod.level].len();
    for (i, part) in prod.parts.iter().enumerate() {
        check_divide_round(ctx, part, &q, g, &format!("product part {i}"));
    }
    // The evaluator's rescale is that kernel on every part.
    let r = eval.rescale_new(&prod).unwrap();
    assert_eq!(r.level, prod.level - 1);
    for (i, (got, part)) in r.parts.iter().zip(&prod.parts).enumerate() {
        let want = ctx.backend.divide_round_last(part, &q, g);
        assert_eq!(
            ctx.backend.download(got),
            ctx.backend.download(&want),
            "rescaled part {i}"
        );
    }
    // And at a low level, on a fresh (seeded, secret-key) ciphertext.
    let pt = enc.encode(&uniform(64, 52), 1, None).unwrap();
    let c = Encryptor::secret(ctx).encrypt_sk(&pt, &k.sk).unwrap();
    let q = p.q_indices(1);
    for part in &c.parts {
        check_divide_round(
            ctx,
            part,
            &q,
            p.q_groups[1].len(),
            "fresh ciphertext at level 1",
        );
    }
}

#[test]
fn mod_up_matches_big_integer_digits() {
    let k = keys(INSECURE);
    for ctx in [k.ctx.clone(), n14_context()] {
        let p = ctx.params.clone();
        assert!(p.digits.len() >= 2, "several digits to check");
        // Top level (every digit), a level that cuts a digit short, level 0 (one digit).
        let mut levels = vec![p.max_level(), 0];
        if let Some(l) = (1..p.max_level()).find(|&l| {
            p.digits_at(l)
                .iter()
                .any(|&(a, b)| b - a < p.digits[0].1 - p.digits[0].0)
        }) {
            levels.push(l);
        }
        for (i, &level) in levels.iter().enumerate() {
            let q = p.q_indices(level);
            let x = random_buffer(&ctx, &q, 70 + i as u8);
            let wrapped = check_mod_up(
                &ctx,
                &x,
                level,
                false,
                &format!("mod_up at level {level}, N = {}", p.n()),
            );
            assert_eq!(wrapped, 0);
        }
    }
    // A real ciphertext's c1, as relinearization and rotation decompose it.
    let ctx = &k.ctx;
    let p = &ctx.params;
    let pt = Encoder::new(ctx)
        .encode(&uniform(p.max_slots(), 53), p.max_level(), None)
        .unwrap();
    let ct = Encryptor::new(ctx, &k.pk).unwrap().encrypt(&pt).unwrap();
    assert_eq!(
        check_mod_up(ctx, &ct.parts[1], ct.level, false, "mod_up of c1"),
        0
    );
}

#[test]
fn small_coefficients_stay_within_the_documented_tolerance() {
    // Values near 0 or Q_j are where the f64 base conversion may land one multiple of Q_j off (see
    // math::rns); anything else is a bug.
    let k = keys(INSECURE);
    let ctx = &k.ctx;
    let p = &ctx.params;
    let n = p.n();
    let level = p.max_level();
    let q = p.q_indices(level);
    let primes = primes_of(ctx, &q);
    let mut prng = Prng::from_seed([90; 32]);
    let signed: Vec<i64> = (0..n)
        .map(|i| {
            if i < 8 {
                i as i64 - 4
            } else {
                (prng.next_u32() % 41) as i64 - 20
            }
        })
        .collect();
    let mut host = vec![0u32; q.len() * n];
    for (chunk, &pr) in host.chunks_mut(n).zip(&primes) {
        for (w, &c) in chunk.iter_mut().zip(&signed) {
            *w = c.rem_euclid(pr as i64) as u32;
        }
    }
    let mut x = ctx.backend.upload(&host);
    ctx.backend.ntt(&mut x, &q);
    let wrapped = check_mod_up(ctx, &x, level, true, "mod_up of small coefficients");
    eprintln!(
        "mod_up of small signed coefficients: {wrapped} of {} digit values landed one Q_j off",
        n * p.digits_at(level).len()
    );
    // Zero is exact everywhere.
    let zero = ctx.backend.zeros(q.len());
    assert_eq!(check_mod_up(ctx, &zero, level, false, "mod_up of zero"), 0);
    check_divide_round(ctx, &zero, &q, p.q_groups[level].len(), "rescale of zero");
    // Rescaling small signed values: round(x / D) is 0 for |x| < D/2 (D ~ 2^40).
    let out = ctx
        .backend
        .divide_round_last(&x, &q, p.q_groups[level].len());
    let keep = p.q_indices(level - 1);
    let oc = coeffs(ctx, &out, &keep);
    let z = oc.iter().filter(|&&w| w == 0).count();
    assert_eq!(z, oc.len(), "round(small / D) must be 0 on every limb");
}
