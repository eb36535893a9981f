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
