//! Bootstrapping precision on the small insecure preset (full and sparse slots, real and complex),
//! the simulator's predictions against the real run, and errors on bad input.

mod common;

use std::sync::{Arc, OnceLock};

use common::{device, uniform};
use umbra::ckks::bootstrap::{self, gen_bootstrap_keys, BootstrapLiteral, Bootstrapper};
use umbra::ckks::encoder::{precision_bits, precision_bits_min};
use umbra::ckks::{
    Ciphertext, Circuit, CkksError, Context, Decryptor, Encoder, Encryptor, EvaluationKeys,
    Evaluator, KeyGenerator, Parameters, SecretKey, SimCiphertext, Simulator,
};
use umbra::math::fft::C64;

const PRESET: &str = "N12_QP1184_L2_S50_boot_insecure";
const SPARSE_LOG_SLOTS: u32 = 7;

struct Fixture {
    ctx: Arc<Context>,
    sk: SecretKey,
    ev: Evaluator,
    evk: Arc<EvaluationKeys>,
    full: Bootstrapper<umbra::ckks::Plaintext>,
    sparse: Bootstrapper<umbra::ckks::Plaintext>,
    boot: BootstrapLiteral,
}

fn sparse_literal(boot: &BootstrapLiteral) -> BootstrapLiteral {
    BootstrapLiteral {
        log_slots: Some(SPARSE_LOG_SLOTS),
        ..boot.clone()
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let preset = bootstrap::preset(PRESET).unwrap();
        let params = Parameters::new(preset.params.clone()).unwrap();
        let ctx = Context::new(params.clone(), device()).unwrap();
        let mut kg = KeyGenerator::new(&ctx);
        let sk = kg.gen_secret_key();
        let sparse_rots = bootstrap::rotations(&params, &sparse_literal(&preset.boot)).unwrap();
        let evk: EvaluationKeys =
            gen_bootstrap_keys(&mut kg, &sk, &params, &preset.boot, &sparse_rots).unwrap();
        let evk = Arc::new(evk);
        let ev = Evaluator::new(&ctx, evk.clone()).unwrap();
        let full = Bootstrapper::new(&ev, &preset.boot).unwrap();
        let sparse = Bootstrapper::new(&ev, &sparse_literal(&preset.boot)).unwrap();
        Fixture {
            ctx,
            sk,
            ev,
            evk,
            full,
            sparse,
            boot: preset.boot,
        }
    })
}

fn encrypt(f: &Fixture, values: &[C64]) -> Ciphertext {
    let enc = Encoder::new(&f.ctx);
    let pt = enc.encode_complex(values, 0, None).unwrap();
    Encryptor::secret(&f.ctx).encrypt_sk(&pt, &f.sk).unwrap()
}

/// Bootstraps `values`, checks the level and scale against the simulator, returns (mean, min)
/// precision in bits over real and imaginary parts.
fn run(f: &Fixture, b: &Bootstrapper<umbra::ckks::Plaintext>, values: &[C64]) -> (f64, f64) {
    let ct = encrypt(f, values);
    let out = b.bootstrap(&f.ev, &ct).unwrap();
    let p = &f.ctx.params;
    assert_eq!(out.level, p.compute_top_level());
    assert!((out.scale / p.default_scales[out.level] - 1.0).abs() < 1e-9);
    let sim = Simulator::new(p);
    let sim_b = Bootstrapper::new(
        &sim,
        &BootstrapLiteral {
            log_slots: Some(b.slots().trailing_zeros()),
            ..f.boot.clone()
        },
    )
    .unwrap();
    let meta = SimCiphertext {
        level: ct.level,
        scale: ct.scale,
        slots: ct.slots,
    };
    let sim_out = sim_b.bootstrap(&sim, &meta).unwrap();
    assert_eq!((sim_out.level, sim_out.scale), (out.level, out.scale));
    let got = Decryptor::new(&f.ctx).decrypt_complex(&out, &f.sk).unwrap();
    let flat = |v: &[C64]| -> Vec<f64> { v.iter().flat_map(|z| [z.re, z.im]).collect() };
    let (g, w) = (flat(&got[..values.len()]), flat(values));
    let bits = (precision_bits(&g, &w), precision_bits_min(&g, &w));
    eprintln!(
        "{} slots: {:.1} bits mean, {:.1} min",
        values.len(),
        bits.0,
        bits.1
    );
    bits
}

fn real(n: usize, seed: u8) -> Vec<C64> {
    uniform(n, seed)
        .into_iter()
        .map(|x| C64::new(x, 0.0))
        .collect()
}

fn complex(n: usize, seed: u8) -> Vec<C64> {
    let re = uniform(n, seed);
    let im = uniform(n, seed.wrapping_add(100));
    re.into_iter()
        .zip(im)
        .map(|(a, b)| C64::new(a, b))
        .collect()
}

#[test]
fn full_slots_real() {
    let f = fixture();
    let (mean, min) = run(f, &f.full, &real(f.full.slots(), 1));
    assert!(mean >= 20.0 && min >= 14.0, "{mean:.1} / {min:.1}");
}

#[test]
fn full_slots_complex() {
    let f = fixture();
    let (mean, min) = run(f, &f.full, &complex(f.full.slots(), 2));
    assert!(mean >= 20.0 && min >= 14.0, "{mean:.1} / {min:.1}");
}

#[test]
fn sparse_slots_real_and_complex() {
    let f = fixture();
    let n = f.sparse.slots();
    assert_eq!(n, 1 << SPARSE_LOG_SLOTS);
    for values in [real(n, 3), complex(n, 4)] {
        let (mean, min) = run(f, &f.sparse, &values);
        assert!(mean >= 20.0 && min >= 14.0, "{mean:.1} / {min:.1}");
    }
}

#[test]
fn output_supports_further_computation() {
    // Bootstrap, square, bootstrap again: the refreshed levels are really usable.
    let f = fixture();
    let v = real(f.full.slots(), 5);
    let ct = f.full.bootstrap(&f.ev, &encrypt(f, &v)).unwrap();
    let sq =
        f.ev.rescale_new(&f.ev.mul_relin_new(&ct, &ct).unwrap())
            .unwrap();
    let again = f.full.bootstrap(&f.ev, &sq).unwrap();
    let got = Decryptor::new(&f.ctx).decrypt(&again, &f.sk).unwrap();
    let want: Vec<f64> = v.iter().map(|z| z.re * z.re).collect();
    let bits = precision_bits(&got[..want.len()], &want);
    assert!(
        bits >= 18.0,
        "{bits:.1} bits after square and second bootstrap"
    );
}

#[test]
fn bad_inputs_are_errors() {
    let f = fixture();
    // Wrong slot count.
    let ct = encrypt(f, &real(8, 6));
    assert!(matches!(
        f.full.bootstrap(&f.ev, &ct),
        Err(CkksError::SlotMismatch(..))
    ));
    // No keys: a clear error, not a panic.
    let bare = Evaluator::without_keys(&f.ctx);
    let ct = encrypt(f, &real(f.full.slots(), 7));
    assert!(matches!(
        f.full.bootstrap(&bare, &ct),
        Err(CkksError::MissingKey(_))
    ));
    // Parameters without the bootstrapping levels.
    let plain = Parameters::preset("N12_QP450_L6_S40_insecure").unwrap();
    let sim = Simulator::new(&plain);
    assert!(matches!(
        Bootstrapper::new(&sim, &f.boot),
        Err(CkksError::InvalidParameters(_))
    ));
    // Slot count out of range.
    let sim = Simulator::new(&f.ctx.params);
    let lit = BootstrapLiteral {
        log_slots: Some(20),
        ..f.boot.clone()
    };
    assert!(Bootstrapper::new(&sim, &lit).is_err());
    assert_eq!(sim.level(&sim.fresh(0, 8)), 0);
}

#[test]
fn bootstrapping_keys_round_trip() {
    use umbra::ckks::serialize::Serial;
    let f = fixture();
    let bytes = f.evk.to_bytes(&f.ctx).unwrap();
    let back = EvaluationKeys::from_bytes(&f.ctx, &bytes).unwrap();
    assert_eq!(back.memory_bytes(), f.evk.memory_bytes());
    let levels =
        |k: &EvaluationKeys| -> Vec<usize> { k.galois.keys.values().map(|s| s.level).collect() };
    assert_eq!(levels(&back), levels(&f.evk));
    // Keys for SlotsToCoeffs serve low levels only.
    assert!(levels(&back).iter().any(|&l| l < f.ctx.params.max_level()));
    let e = back.encapsulation.as_ref().expect("encapsulation keys");
    assert_eq!(e.to_sparse.level, 0);
    assert_eq!(e.hamming_weight, 32);
    let ev = Evaluator::new(&f.ctx, Arc::new(back)).unwrap();
    let v = real(f.full.slots(), 8);
    let out = f.full.bootstrap(&ev, &encrypt(f, &v)).unwrap();
    let got = Decryptor::new(&f.ctx).decrypt(&out, &f.sk).unwrap();
    let want: Vec<f64> = v.iter().map(|z| z.re).collect();
    assert!(precision_bits(&got[..want.len()], &want) >= 20.0);
    // Truncated bytes are an error.
    assert!(EvaluationKeys::from_bytes(&f.ctx, &bytes[..bytes.len() / 2]).is_err());
}

/// `Refreshing::refresh_all` bootstraps two real ciphertexts as one complex one (a + i b) and
/// splits them by conjugation: three ciphertexts cost two bootstraps (a pair and a single), on the
/// evaluator and the simulator alike, and the pair keeps the precision of bootstrapping each
/// alone (within 0.5 bit; |a + i b| reaches sqrt(2) times the bound), at level 1 and at level 0.
#[test]
fn two_real_ciphertexts_share_one_bootstrap() {
    use umbra::ckks::bootstrap::Refreshing;
    let f = fixture();
    let p = &f.ctx.params;
    let top = p.compute_top_level();
    let n = f.full.slots();
    let bound = 3.0;
    let vals: Vec<Vec<f64>> = (0..3)
        .map(|s| uniform(n, 40 + s).iter().map(|x| x * bound).collect())
        .collect();
    let enc = Encoder::new(&f.ctx);
    let cts: Vec<Ciphertext> = vals
        .iter()
        .map(|v| {
            let c: Vec<C64> = v.iter().map(|&x| C64::new(x, 0.0)).collect();
            let pt = enc.encode_complex(&c, 1, None).unwrap();
            Encryptor::secret(&f.ctx).encrypt_sk(&pt, &f.sk).unwrap()
        })
        .collect();
    let bits = |ct: &Ciphertext, want: &[f64]| -> (f64, f64) {
        assert_eq!(ct.level, top);
        assert!(ct.scale > 0.0);
        let got = Decryptor::new(&f.ctx).decrypt_complex(ct, &f.sk).unwrap();
        let re: Vec<f64> = got.iter().map(|z| z.re).collect();
        let im = got.iter().map(|z| z.im.abs()).fold(0.0, f64::max);
        (precision_bits(&re, want) - bound.log2(), im)
    };
    let r = Refreshing::new(&f.ev, &f.full);
    let out = r.refresh_all(&cts, top, bound).unwrap();
    assert_eq!(
        r.bootstraps(),
        2,
        "three ciphertexts: one pair and one single"
    );
    let single = Refreshing::new(&f.ev, &f.full);
    for i in 0..3 {
        let (paired, im) = bits(&out[i], &vals[i]);
        let (alone, _) = bits(&single.refresh(&cts[i], top, bound).unwrap(), &vals[i]);
        eprintln!(
            "ciphertext {i}: {paired:.1} bits in refresh_all, {alone:.1} alone, |im| {im:.1e}"
        );
        assert!(paired > alone - 0.5, "{paired} vs {alone}");
        assert!(paired > 12.0, "{paired}");
        assert!(im < 2f64.powi(-10) * bound, "{im}");
    }
    // Level 0 (bound 1: no level to scale with).
    let unit: Vec<Vec<f64>> = (0..2)
        .map(|s| uniform(n, 60 + s).iter().map(|x| x.abs()).collect())
        .collect();
    let low: Vec<Ciphertext> = unit
        .iter()
        .map(|v| {
            let c: Vec<C64> = v.iter().map(|&x| C64::new(x, 0.0)).collect();
            let pt = enc.encode_complex(&c, 0, None).unwrap();
            Encryptor::secret(&f.ctx).encrypt_sk(&pt, &f.sk).unwrap()
        })
        .collect();
    let r0 = Refreshing::new(&f.ev, &f.full);
    let out0 = r0.refresh_all(&low, 1, 1.0).unwrap();
    assert_eq!(r0.bootstraps(), 1);
    for i in 0..2 {
        let got = Decryptor::new(&f.ctx)
            .decrypt_complex(&out0[i], &f.sk)
            .unwrap();
        let re: Vec<f64> = got.iter().map(|z| z.re).collect();
        let paired = precision_bits(&re, &unit[i]);
        let alone = Decryptor::new(&f.ctx)
            .decrypt_complex(&single.refresh(&low[i], 1, 1.0).unwrap(), &f.sk)
            .unwrap();
        let re1: Vec<f64> = alone.iter().map(|z| z.re).collect();
        let alone = precision_bits(&re1, &unit[i]);
        eprintln!("level 0, ciphertext {i}: {paired:.1} bits paired, {alone:.1} alone");
        assert!(paired > alone - 0.5 && paired > 12.0, "{paired} vs {alone}");
    }
    // The planner counts the same.
    let sim = Simulator::new(p);
    let sim_boot = Bootstrapper::new(&sim, &f.boot).unwrap();
    let rs = Refreshing::new(&sim, &sim_boot);
    let metas: Vec<SimCiphertext> = cts
        .iter()
        .map(|c| SimCiphertext {
            level: c.level,
            scale: c.scale,
            slots: c.slots,
        })
        .collect();
    let sim_out = rs.refresh_all(&metas, top, bound).unwrap();
    assert_eq!(rs.bootstraps(), 2);
    for (s, o) in sim_out.iter().zip(&out) {
        assert_eq!((s.level, s.scale), (o.level, o.scale));
    }
}
