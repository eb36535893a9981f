//! Faults of the CKKS core that once gave a wrong answer with no error (issue 12): decryption and
//! decoding of values that need more than the first few primes (products before rescaling, big
//! integers times ciphertexts, encodings near the level's modulus), and transparent ciphertexts
//! (results that no longer depend on the secret key) leaving the server.

mod common;

use std::sync::Arc;

use common::{device, keys, uniform, INSECURE};
use umbra::ckks::bootstrap;
use umbra::ckks::serialize::Serial;
use umbra::ckks::{
    Ciphertext, CkksError, Context, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator,
    Parameters, SecretKey,
};

const BOOT: &str = "N12_QP1184_L2_S50_boot_insecure";

struct Setup {
    ctx: Arc<Context>,
    sk: SecretKey,
    ev: Evaluator,
}

/// The bootstrapping preset (scale 2^50, 1184 bits at the top) with a relinearization key.
fn boot_setup() -> Setup {
    let params = Parameters::new(bootstrap::preset(BOOT).unwrap().params).unwrap();
    let ctx = Context::new(params, device()).unwrap();
    let mut kg = KeyGenerator::new(&ctx);
    let sk = kg.gen_secret_key();
    let evk = Arc::new(kg.gen_evaluation_keys(&sk, &[], false));
    let ev = Evaluator::new(&ctx, evk).unwrap();
    Setup { ctx, sk, ev }
}

impl Setup {
    fn encrypt(&self, v: &[f64], level: usize) -> Ciphertext {
        let pt = Encoder::new(&self.ctx).encode(v, level, None).unwrap();
        Encryptor::secret(&self.ctx)
            .encrypt_sk(&pt, &self.sk)
            .unwrap()
    }
    fn decrypt(&self, ct: &Ciphertext) -> Vec<f64> {
        Decryptor::new(&self.ctx).decrypt(ct, &self.sk).unwrap()
    }
}

/// Largest error relative to max(|want|, 1), in bits (log2 of its inverse).
fn relative_bits(got: &[f64], want: &[f64]) -> f64 {
    let err = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(0.0, f64::max);
    -err.max(f64::MIN_POSITIVE).log2()
}

#[test]
fn products_decrypt_before_rescaling_at_every_level() {
    let s = boot_setup();
    let p = s.ctx.params.clone();
    // The case at the top compute level, then every level up to the top of the chain.
    for level in p.compute_top_level()..=p.max_level() {
        let x = s.encrypt(&[40.0, 0.25], level);
        let sq = s.ev.mul_relin_new(&x, &x).unwrap();
        let got = s.decrypt(&sq);
        assert!(
            relative_bits(&got[..2], &[1600.0, 0.0625]) >= 20.0,
            "level {level}: x^2 before rescale decrypts to {:?}",
            &got[..2]
        );
        // After rescaling: the same values.
        let r = s.decrypt(&s.ev.rescale_new(&sq).unwrap());
        assert!(relative_bits(&r[..2], &[1600.0, 0.0625]) >= 20.0);
    }
    // Three fresh ciphertexts multiplied without rescaling (scale 2^150, degree 2 then relinearized).
    let top = p.max_level();
    let v = uniform(8, 3);
    let x = s.encrypt(&v, top);
    let x2 = s.ev.mul_relin_new(&x, &x).unwrap();
    let x3 = s.ev.mul_relin_new(&x2, &x).unwrap();
    let want: Vec<f64> = v.iter().map(|a| a * a * a).collect();
    let got = s.decrypt(&x3);
    assert!(
        relative_bits(&got[..8], &want) >= 20.0,
        "x^3 without rescale: {:?} vs {:?}",
        &got[..4],
        &want[..4]
    );
    // Degree 2 (no relinearization) decrypts too.
    let d2 = s.ev.mul_new(&x2, &x).unwrap();
    assert_eq!(d2.degree(), 2);
    assert!(relative_bits(&s.decrypt(&d2)[..8], &want) >= 20.0);
}

#[test]
fn big_integers_times_ciphertexts_decrypt() {
    let s = boot_setup();
    let level = s.ctx.params.max_level();
    let v = [0.25, -0.5, 0.75, 1.0];
    let x = s.encrypt(&v, level);
    // 2^40 twice: the message reaches 2^80 at scale 2^50, 2^130 in all, past 4 primes.
    let k = 1i64 << 40;
    let y =
        s.ev.mul_int_new(&s.ev.mul_int_new(&x, k).unwrap(), k)
            .unwrap();
    let want: Vec<f64> = v.iter().map(|a| a * (k as f64) * (k as f64)).collect();
    let got = s.decrypt(&y);
    assert!(relative_bits(&got[..4], &want) >= 20.0, "{:?}", &got[..4]);
    // A constant added at that size is exact too.
    let z = s.ev.add_const_new(&y, 1e20).unwrap();
    let want: Vec<f64> = want.iter().map(|w| w + 1e20).collect();
    assert!(relative_bits(&s.decrypt(&z)[..4], &want) >= 20.0);
}

#[test]
fn encode_and_decode_near_the_level_modulus() {
    let k = keys(INSECURE);
    let ctx = &k.ctx;
    let p = &ctx.params;
    let enc = Encoder::new(ctx);
    let scale = 2f64.powi(40);
    for level in [0, p.max_level() / 2, p.max_level()] {
        let log_half_q = p.log_q_at(level) - 1.0;
        // A constant vector puts v x scale in one coefficient: just below Q/2 it round-trips,
        // just above it is refused with the level's real modulus in the message.
        for (margin, ok) in [(-1.0, true), (-0.01, true), (0.01, false), (3.0, false)] {
            let v = 2f64.powf(log_half_q + margin) / scale;
            let r = enc.encode(&[v; 4], level, Some(scale));
            if ok {
                let got = enc.decode(&r.unwrap()).unwrap();
                assert!(
                    relative_bits(&got, &[v; 4]) >= 40.0,
                    "level {level}, 2^{:.2}: {got:?}",
                    log_half_q + margin
                );
            } else {
                match r {
                    Err(CkksError::OutOfRange(m)) => {
                        assert!(m.contains(&format!("2^{log_half_q:.1}")), "{m}")
                    }
                    other => panic!("level {level}: {other:?}"),
                }
            }
        }
    }
    // The value: 6e18 at the top level decodes to itself and survives encryption.
    let pt = enc
        .encode(&[6e18, -6e18], p.max_level(), Some(scale))
        .unwrap();
    assert!(relative_bits(&enc.decode(&pt).unwrap()[..2], &[6e18, -6e18]) >= 40.0);
    let ct = Encryptor::secret(ctx).encrypt_sk(&pt, &k.sk).unwrap();
    let got = Decryptor::new(ctx).decrypt(&ct, &k.sk).unwrap();
    assert!(relative_bits(&got[..2], &[6e18, -6e18]) >= 40.0, "{got:?}");
    // Small values still decode to full precision (the common case reads few primes).
    let small = uniform(64, 9);
    let pt = enc.encode(&small, 0, Some(scale)).unwrap();
    let got = enc.decode(&pt).unwrap();
    assert!(relative_bits(&got, &small) >= 30.0);
}

#[test]
fn transparent_results_never_leave_without_an_opt_in() {
    let s = boot_setup();
    let level = s.ctx.params.compute_top_level();
    let v = uniform(16, 4);
    let x = s.encrypt(&v, level);
    let enc = Encoder::new(&s.ctx);
    let pt = enc.encode(&v, level, None).unwrap();
    let zero_pt = enc.encode(&[0.0; 16], level, None).unwrap();
    // Fresh and ordinary results are not transparent and serialize.
    assert!(!x.is_transparent(&s.ctx).unwrap());
    let sum = s.ev.add_new(&x, &x).unwrap();
    assert!(!sum.is_transparent(&s.ctx).unwrap());
    assert!(sum.to_bytes(&s.ctx).is_ok());
    let zeroed = [
        ("x - x", s.ev.sub_new(&x, &x).unwrap()),
        ("x * 0", s.ev.mul_int_new(&x, 0).unwrap()),
        ("x * 0.0", s.ev.mul_const_new(&x, 0.0).unwrap()),
        (
            "x * zero plaintext",
            s.ev.mul_plain_new(&x, &zero_pt).unwrap(),
        ),
    ];
    for (what, z) in zeroed {
        // Adding a plaintext gives a "ciphertext" whose c0 is the message in the clear.
        let leak = if z.scale == pt.scale {
            s.ev.add_plain_new(&z, &pt).unwrap()
        } else {
            z.clone()
        };
        for ct in [&z, &leak] {
            assert!(ct.is_transparent(&s.ctx).unwrap(), "{what}");
            match ct.to_bytes(&s.ctx) {
                Err(CkksError::Transparent(m)) => assert!(m.contains("to_bytes_transparent")),
                other => panic!("{what}: {:?}", other.map(|b| b.len())),
            }
            // The explicit opt-in writes it, and it reads back.
            let bytes = ct.to_bytes_transparent(&s.ctx).unwrap();
            let back = Ciphertext::from_bytes(&s.ctx, &bytes).unwrap();
            assert!(back.is_transparent(&s.ctx).unwrap());
        }
    }
    // A transparent ciphertext decrypts under any key: what the refusal prevents.
    let leak =
        s.ev.add_plain_new(&s.ev.mul_int_new(&x, 0).unwrap(), &pt)
            .unwrap();
    let other_sk = KeyGenerator::new(&s.ctx).gen_secret_key();
    let read = Decryptor::new(&s.ctx).decrypt(&leak, &other_sk).unwrap();
    assert!(relative_bits(&read[..16], &v) >= 20.0);
    // Masking one slot only is not transparent.
    let mut mask = vec![1.0; 16];
    mask[3] = 0.0;
    let masked =
        s.ev.mul_plain_new(&x, &enc.encode(&mask, level, None).unwrap())
            .unwrap();
    assert!(!masked.is_transparent(&s.ctx).unwrap());
}
