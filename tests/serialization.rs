//! The binary format (DESIGN D9): round trips of every serializable object, and corrupt, truncated,
//! mismatched or nonsensical input giving an error, never a panic.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use common::*;
use sha2::{Digest, Sha256};
use umbra::backend::Device;
use umbra::ckks::encoder::precision_bits;
use umbra::ckks::serialize::{
    parameters_from_bytes, parameters_to_bytes, FormatError, Kind, Serial, MAGIC, VERSION,
};
use umbra::ckks::{
    Ciphertext, CkksError, Context, Decryptor, Encoder, Encryptor, EvaluationKeys, Evaluator,
    GaloisKeys, Parameters, Plaintext, PublicKey, RelinKey,
};

/// Header: magic, version u16, kind u8, reserved u8, params hash [32], payload length u64.
const HEADER: usize = 4 + 2 + 1 + 1 + 32 + 8;
const TRAILER: usize = 32;

/// Frames a payload exactly as the format specifies, with a valid checksum (built independently of
/// the library so that a disagreement in layout shows up).
fn frame_raw(version: u16, kind: u8, hash: &[u8; 32], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"UMBR");
    out.extend_from_slice(&version.to_le_bytes());
    out.push(kind);
    out.push(0);
    out.extend_from_slice(hash);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let sum: [u8; 32] = Sha256::digest(&out).into();
    out.extend_from_slice(&sum);
    out
}

fn frame(kind: Kind, hash: &[u8; 32], payload: &[u8]) -> Vec<u8> {
    frame_raw(1, kind as u8, hash, payload)
}

fn payload_of(bytes: &[u8]) -> &[u8] {
    &bytes[HEADER..bytes.len() - TRAILER]
}

fn hash_of(bytes: &[u8]) -> [u8; 32] {
    bytes[8..40].try_into().unwrap()
}

/// Runs a read, asserting it neither panics nor succeeds; returns the error.
fn read_err<T: Serial + std::fmt::Debug>(ctx: &Context, bytes: &[u8], what: &str) -> CkksError {
    let r = catch_unwind(AssertUnwindSafe(|| T::from_bytes(ctx, bytes)));
    match r {
        Err(_) => panic!("{what}: from_bytes panicked"),
        Ok(Ok(v)) => panic!("{what}: accepted ({v:?})"),
        Ok(Err(e)) => e,
    }
}

fn format_err<T: Serial + std::fmt::Debug>(ctx: &Context, bytes: &[u8], what: &str) -> FormatError {
    match read_err::<T>(ctx, bytes, what) {
        CkksError::Format(f) => f,
        other => panic!("{what}: expected a format error, got {other:?}"),
    }
}

fn is_malformed(e: &FormatError) -> bool {
    matches!(e, FormatError::Malformed(_))
}

fn same_buffers(ctx: &Context, a: &[umbra::backend::Buffer], b: &[umbra::backend::Buffer]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| ctx.backend.download(x) == ctx.backend.download(y))
}

fn assert_ct_eq(ctx: &Context, a: &Ciphertext, b: &Ciphertext) {
    assert_ct_eq_across(ctx, a, ctx, b);
}

/// As `assert_ct_eq` for ciphertexts of two contexts (each read back by its own backend: two GPU
/// backends do not share memory).
fn assert_ct_eq_across(ctx_a: &Context, a: &Ciphertext, ctx_b: &Context, b: &Ciphertext) {
    assert_eq!(a.level, b.level);
    assert_eq!(a.slots, b.slots);
    assert_eq!(a.scale.to_bits(), b.scale.to_bits());
    assert_eq!(a.seed, b.seed);
    let read = |ctx: &Context, parts: &[umbra::backend::Buffer]| -> Vec<Vec<u32>> {
        parts.iter().map(|p| ctx.backend.download(p)).collect()
    };
    assert!(
        read(ctx_a, &a.parts) == read(ctx_b, &b.parts),
        "ciphertext parts differ after the round trip"
    );
}

/// A small ciphertext file: INSECURE preset, level 0, 8 slots.
fn small_ct(seeded: bool) -> (Arc<Keys>, Ciphertext, Vec<u8>) {
    let k = keys(INSECURE);
    let ctx = &k.ctx;
    let pt = Encoder::new(ctx).encode(&uniform(8, 40), 0, None).unwrap();
    let ct = if seeded {
        Encryptor::secret(ctx).encrypt_sk(&pt, &k.sk).unwrap()
    } else {
        Encryptor::new(ctx, &k.pk).unwrap().encrypt(&pt).unwrap()
    };
    let bytes = ct.to_bytes(ctx).unwrap();
    (k.clone(), ct, bytes)
}

// ---------------------------------------------------------------- round trips

#[test]
fn ciphertext_round_trips_public_and_secret_key() {
    let k = keys(INSECURE);
    let ctx = &k.ctx;
    let p = &ctx.params;
    let vals = uniform(p.max_slots(), 11);
    let enc = Encoder::new(ctx);
    let dec = Decryptor::new(ctx);
    for level in [p.max_level(), 2, 0] {
        let pt = enc.encode(&vals, level, None).unwrap();
        let pk_ct = Encryptor::new(ctx, &k.pk).unwrap().encrypt(&pt).unwrap();
        let sk_ct = Encryptor::secret(ctx).encrypt_sk(&pt, &k.sk).unwrap();
        assert!(pk_ct.seed.is_none() && sk_ct.seed.is_some());

        let pk_bytes = pk_ct.to_bytes(ctx).unwrap();
        let sk_bytes = sk_ct.to_bytes(ctx).unwrap();
        // The frame is what the format says.
        assert_eq!(&pk_bytes[..4], MAGIC);
        assert_eq!(u16::from_le_bytes([pk_bytes[4], pk_bytes[5]]), VERSION);
        assert_eq!(pk_bytes[6], Kind::Ciphertext as u8);
        assert_eq!(hash_of(&pk_bytes), p.hash);
        assert_eq!(
            u64::from_le_bytes(pk_bytes[40..48].try_into().unwrap()) as usize,
            pk_bytes.len() - HEADER - TRAILER
        );
        assert_eq!(
            frame(Kind::Ciphertext, &p.hash, payload_of(&pk_bytes)),
            pk_bytes,
            "independent framing agrees"
        );

        // The seeded form stores c1 as 32 bytes: about half the size.
        let words = p.limbs_at(level) * p.n() * 4;
        assert_eq!(pk_bytes.len(), HEADER + TRAILER + 18 + 2 * words);
        assert_eq!(sk_bytes.len(), HEADER + TRAILER + 18 + 32 + words);
        let ratio = sk_bytes.len() as f64 / pk_bytes.len() as f64;
        assert!(
            (0.49..0.52).contains(&ratio),
            "seeded/unseeded size ratio {ratio:.4}"
        );

        for (ct, bytes) in [(&pk_ct, &pk_bytes), (&sk_ct, &sk_bytes)] {
            let back = Ciphertext::from_bytes(ctx, bytes).unwrap();
            assert_ct_eq(ctx, ct, &back);
            let want = dec.decrypt(ct, &k.sk).unwrap();
            let got = dec.decrypt(&back, &k.sk).unwrap();
            assert!(
                want.iter()
                    .zip(&got)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "level {level}: decryption differs"
            );
            assert!(precision_bits(&got, &vals) >= 20.0);
            // Writing again gives the same bytes.
            assert_eq!(&back.to_bytes(ctx).unwrap(), bytes);
        }
    }
}

#[test]
fn degree_two_ciphertext_and_plaintext_round_trip() {
    let k = keys(INSECURE);
    let ctx = &k.ctx;
    let p = &ctx.params;
    let a = uniform(p.max_slots(), 12);
    let b = uniform(p.max_slots(), 13);
    let enc = Encoder::new(ctx);
    let dec = Decryptor::new(ctx);
    let mut e = Encryptor::new(ctx, &k.pk).unwrap();
    let top = p.max_level();
    let pa = enc.encode(&a, top, None).unwrap();
    let pb = enc.encode(&b, top, None).unwrap();
    let ca = e.encrypt(&pa).unwrap();
    let cb = e.encrypt(&pb).unwrap();
    let eval = Evaluator::without_keys(ctx);
    let d2 = eval.mul_new(&ca, &cb).unwrap();
    assert_eq!(d2.degree(), 2);
    let bytes = d2.to_bytes(ctx).unwrap();
    assert_eq!(
        bytes.len(),
        HEADER + TRAILER + 18 + 3 * p.limbs_at(top) * p.n() * 4
    );
    let back = Ciphertext::from_bytes(ctx, &bytes).unwrap();
    assert_ct_eq(ctx, &d2, &back);
    let want = dec.decrypt(&d2, &k.sk).unwrap();
    let got = dec.decrypt(&back, &k.sk).unwrap();
    assert!(want
        .iter()
        .zip(&got)
        .all(|(x, y)| x.to_bits() == y.to_bits()));
    let prod: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
    assert!(precision_bits(&got, &prod) >= 19.0);

    // Plaintexts, full and sparse, at several levels.
    for (slots, level) in [(p.max_slots(), top), (16, 3), (1, 0)] {
        let pt = enc.encode(&a[..slots], level, Some(2f64.powi(35))).unwrap();
        let bytes = pt.to_bytes(ctx).unwrap();
        assert_eq!(bytes[6], Kind::Plaintext as u8);
        let back = Plaintext::from_bytes(ctx, &bytes).unwrap();
        assert_eq!(
            (back.level, back.slots, back.scale.to_bits()),
            (pt.level, pt.slots, pt.scale.to_bits())
        );
        assert_eq!(
            ctx.backend.download(&back.poly),
            ctx.backend.download(&pt.poly)
        );
        let got = enc.decode(&back).unwrap();
        let want = enc.decode(&pt).unwrap();
        assert!(got
            .iter()
            .zip(&want)
            .all(|(x, y)| x.to_bits() == y.to_bits()));
        assert!(precision_bits(&got[..slots], &a[..slots]) >= 30.0);
    }
}

#[test]
fn public_key_round_trip_encrypts() {
    let k = keys(INSECURE);
    let ctx = &k.ctx;
    let bytes = k.pk.to_bytes(ctx).unwrap();
    let p = &ctx.params;
    // Seed plus b only.
    assert_eq!(
        bytes.len(),
        HEADER + TRAILER + 32 + p.limbs_at(p.max_level()) * p.n() * 4
    );
    let back = PublicKey::from_bytes(ctx, &bytes).unwrap();
    assert_eq!(back.seed, k.pk.seed);
    assert_eq!(back.params_hash, k.pk.params_hash);
    assert_eq!(ctx.backend.download(&back.b), ctx.backend.download(&k.pk.b));
    assert_eq!(
        ctx.backend.download(&back.a),
        ctx.backend.download(&k.pk.a),
        "a re-expanded from the seed"
    );
    let vals = uniform(p.max_slots(), 14);
    let pt = Encoder::new(ctx)
        .encode(&vals, p.max_level(), None)
        .unwrap();
    let ct = Encryptor::new(ctx, &back).unwrap().encrypt(&pt).unwrap();
    let got = Decryptor::new(ctx).decrypt(&ct, &k.sk).unwrap();
    assert!(precision_bits(&got, &vals) >= 21.0);
}

#[test]
fn switching_keys_round_trip_and_still_work() {
    let k = keys(INSECURE);
    let ctx = &k.ctx;
    let p = &ctx.params;
    let evk = &k.evk;
    let slots = p.max_slots();
    let a = uniform(slots, 15);
    let b = uniform(slots, 16);
    let enc = Encoder::new(ctx);
    let dec = Decryptor::new(ctx);
    let mut e = Encryptor::new(ctx, &k.pk).unwrap();
    let ca = e
        .encrypt(&enc.encode(&a, p.max_level(), None).unwrap())
        .unwrap();
    let cb = e
        .encrypt(&enc.encode(&b, p.max_level(), None).unwrap())
        .unwrap();
    let prod: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
    let bits =
        |ct: &Ciphertext, want: &[f64]| precision_bits(&dec.decrypt(ct, &k.sk).unwrap(), want);
    let rotated = |r: i64| -> Vec<f64> {
        (0..slots)
            .map(|i| a[(i as i64 + r).rem_euclid(slots as i64) as usize])
            .collect()
    };
    let all_words = p.ring.moduli.len() * p.n() * 4;
    let nd = p.digits.len();

    // Relinearization key alone.
    let rk = evk.relin.as_ref().unwrap();
    let bytes = rk.to_bytes(ctx).unwrap();
    assert_eq!(
        bytes.len(),
        // seed, level, digit count, then b
        HEADER + TRAILER + 32 + 4 + 4 + nd * all_words,
        "seeded switching key: b only"
    );
    let rk2 = RelinKey::from_bytes(ctx, &bytes).unwrap();
    assert_eq!(rk2.0.seed, rk.0.seed);
    assert!(same_buffers(ctx, &rk2.0.b, &rk.0.b) && same_buffers(ctx, &rk2.0.a, &rk.0.a));
    let only_relin = Arc::new(EvaluationKeys {
        encapsulation: None,
        relin: Some(rk2),
        galois: GaloisKeys::default(),
        params_hash: p.hash,
    });
    let ev = Evaluator::new(ctx, only_relin).unwrap();
    let r = ev
        .rescale_new(&ev.mul_relin_new(&ca, &cb).unwrap())
        .unwrap();
    let mb = bits(&r, &prod);
    assert!(
        mb >= 19.0,
        "mul_relin with a round-tripped relin key: {mb:.2} bits"
    );

    // Galois keys alone.
    let bytes = evk.galois.to_bytes(ctx).unwrap();
    let gk = GaloisKeys::from_bytes(ctx, &bytes).unwrap();
    assert_eq!(
        gk.keys.keys().collect::<Vec<_>>(),
        evk.galois.keys.keys().collect::<Vec<_>>()
    );
    for (g, key) in &evk.galois.keys {
        let k2 = &gk.keys[g];
        assert_eq!(k2.seed, key.seed);
        assert!(
            same_buffers(ctx, &k2.b, &key.b) && same_buffers(ctx, &k2.a, &key.a),
            "Galois key {g}"
        );
    }
    let only_galois = Arc::new(EvaluationKeys {
        encapsulation: None,
        relin: None,
        galois: gk,
        params_hash: p.hash,
    });
    let ev = Evaluator::new(ctx, only_galois).unwrap();
    for r in [1i64, -3, 64] {
        let rb = bits(&ev.rotate_new(&ca, r).unwrap(), &rotated(r));
        assert!(
            rb >= 19.0,
            "rotation by {r} with round-tripped Galois keys: {rb:.2} bits"
        );
    }
    assert!(matches!(
        ev.mul_relin_new(&ca, &cb),
        Err(CkksError::MissingKey(_))
    ));

    // The whole bundle.
    let bytes = evk.to_bytes(ctx).unwrap();
    assert_eq!(bytes[6], Kind::EvaluationKeys as u8);
    let evk2 = Arc::new(EvaluationKeys::from_bytes(ctx, &bytes).unwrap());
    assert_eq!(evk2.params_hash, p.hash);
    assert_eq!(evk2.galois.keys.len(), evk.galois.keys.len());
    assert_eq!(
        evk2.to_bytes(ctx).unwrap(),
        bytes,
        "re-serialization is stable"
    );
    let ev = Evaluator::new(ctx, evk2).unwrap();
    let r = ev
        .rescale_new(&ev.mul_relin_new(&ca, &cb).unwrap())
        .unwrap();
    let mb = bits(&r, &prod);
    assert!(
        mb >= 19.0,
        "mul_relin with round-tripped evaluation keys: {mb:.2} bits"
    );
    for r in [1i64, 2, 5, 16, -1] {
        let rb = bits(&ev.rotate_new(&ca, r).unwrap(), &rotated(r));
        assert!(
            rb >= 19.0,
            "rotation by {r} with round-tripped evaluation keys: {rb:.2} bits"
        );
    }
    assert!(
        ev.rotate_new(&ca, 9).is_err(),
        "a key that was never made stays missing"
    );
    let conj = dec
        .decrypt_complex(&ev.conjugate_new(&ca).unwrap(), &k.sk)
        .unwrap();
    assert!(precision_bits(&conj.iter().map(|c| c.re).collect::<Vec<_>>(), &a) >= 19.0);

    // A bundle without a relinearization key round trips as such.
    let no_relin = EvaluationKeys {
        encapsulation: None,
        relin: None,
        galois: GaloisKeys::default(),
        params_hash: p.hash,
    };
    let back = EvaluationKeys::from_bytes(ctx, &no_relin.to_bytes(ctx).unwrap()).unwrap();
    assert!(back.relin.is_none() && back.galois.keys.is_empty());
}

#[test]
fn parameters_round_trip() {
    for lit in umbra::ckks::presets::presets() {
        let p = Parameters::new(lit.clone()).unwrap();
        let bytes = parameters_to_bytes(&p);
        assert_eq!(bytes[6], Kind::Parameters as u8);
        assert_eq!(hash_of(&bytes), p.hash);
        let back = parameters_from_bytes(&bytes).unwrap();
        assert_eq!(back.literal, p.literal);
        assert_eq!(back.hash, p.hash, "{}", lit.name);
        assert_eq!(back.q_groups, p.q_groups);
        assert_eq!(back.p_primes, p.p_primes);
        assert_eq!(back.digits, p.digits);
        assert_eq!(back.default_scales, p.default_scales);
        assert_eq!(parameters_to_bytes(&back), bytes);
    }
    // A context built from round-tripped parameters reads the original's objects.
    let k = keys(INSECURE);
    let params = parameters_from_bytes(&parameters_to_bytes(&k.ctx.params)).unwrap();
    let ctx2 = Context::new(params, device()).unwrap();
    let (_, ct, bytes) = small_ct(true);
    let back = Ciphertext::from_bytes(&ctx2, &bytes).unwrap();
    assert_ct_eq_across(&k.ctx, &ct, &ctx2, &back);
}

// ---------------------------------------------------------------- errors, never panics

#[test]
fn every_truncation_is_an_error() {
    for seeded in [true, false] {
        let (k, _, bytes) = small_ct(seeded);
        let ctx = &k.ctx;
        let len = bytes.len();
        let mut tried = 0;
        for cut in 0..len {
            let e = format_err::<Ciphertext>(
                ctx,
                &bytes[..cut],
                &format!("prefix of {cut} / {len} bytes"),
            );
            assert!(
                matches!(e, FormatError::Truncated(_)),
                "prefix {cut}: {e:?}"
            );
            tried += 1;
        }
        assert_eq!(tried, len);
        // Truncation of the payload inside a valid frame (the length field and checksum agree).
        let payload = payload_of(&bytes);
        let hash = hash_of(&bytes);
        for cut in [
            0,
            1,
            3,
            8,
            16,
            17,
            18,
            19,
            47,
            50,
            51,
            1000,
            payload.len() / 2,
            payload.len() - 4,
            payload.len() - 1,
        ] {
            let e = format_err::<Ciphertext>(
                ctx,
                &frame(Kind::Ciphertext, &hash, &payload[..cut]),
                &format!("payload cut at {cut}"),
            );
            assert!(is_malformed(&e), "payload cut at {cut}: {e:?}");
        }
    }
}

#[test]
fn every_flipped_bit_is_an_error() {
    let (k, _, bytes) = small_ct(true);
    let ctx = &k.ctx;
    let len = bytes.len();
    let mut positions: Vec<usize> = (0..HEADER).collect(); // every header byte
    positions.extend(len - TRAILER..len); // every checksum byte
    positions.extend((HEADER..len - TRAILER).step_by(97)); // payload: meta, seed, residues
    positions.extend([
        HEADER,
        HEADER + 17,
        HEADER + 18,
        HEADER + 49,
        HEADER + 50,
        len - TRAILER - 1,
    ]);
    let mut count = 0;
    for &pos in &positions {
        for bit in 0..8 {
            // All 8 bits in the header and trailer; one rotating bit in the payload.
            if (HEADER..len - TRAILER).contains(&pos) && bit != pos % 8 {
                continue;
            }
            let mut b = bytes.clone();
            b[pos] ^= 1 << bit;
            let what = format!("bit {bit} of byte {pos}");
            let e = format_err::<Ciphertext>(ctx, &b, &what);
            count += 1;
            match pos {
                0..=3 => assert_eq!(e, FormatError::BadMagic, "{what}"),
                4..=5 => assert!(
                    matches!(e, FormatError::Version(v) if v != VERSION),
                    "{what}: {e:?}"
                ),
                40..=47 => assert!(
                    matches!(e, FormatError::Truncated(_) | FormatError::Malformed(_)),
                    "{what}: {e:?}"
                ),
                _ => assert_eq!(e, FormatError::Checksum, "{what}"),
            }
        }
    }
    assert!(count > 600, "{count} flips tried");
}

#[test]
fn wrong_magic_version_kind_and_trailing_bytes() {
    let (k, _, bytes) = small_ct(true);
    let ctx = &k.ctx;
    let hash = hash_of(&bytes);
    let payload = payload_of(&bytes).to_vec();

    let mut b = bytes.clone();
    b[..4].copy_from_slice(b"UMBX");
    assert_eq!(
        format_err::<Ciphertext>(ctx, &b, "magic UMBX"),
        FormatError::BadMagic
    );
    assert_eq!(
        format_err::<Ciphertext>(
            ctx,
            b"{\"name\": \"not an umbra file at all, just json\"}",
            "json"
        ),
        FormatError::BadMagic
    );
    let mut b = bytes.clone();
    b[..4].copy_from_slice(b"RBMU");
    assert_eq!(
        format_err::<Ciphertext>(ctx, &b, "reversed magic"),
        FormatError::BadMagic
    );

    // Versions other than 1, with a valid checksum.
    for v in [0u16, 2, 256, u16::MAX] {
        let b = frame_raw(v, Kind::Ciphertext as u8, &hash, &payload);
        assert_eq!(
            format_err::<Ciphertext>(ctx, &b, "version"),
            FormatError::Version(v)
        );
    }
    // Our own framing with version 1 is accepted (so the errors above are about the version).
    assert!(
        Ciphertext::from_bytes(ctx, &frame_raw(1, Kind::Ciphertext as u8, &hash, &payload)).is_ok()
    );

    // Wrong kind: a ciphertext read as every other object.
    assert!(matches!(
        format_err::<PublicKey>(ctx, &bytes, "ct as pk"),
        FormatError::WrongKind { .. }
    ));
    assert!(matches!(
        format_err::<Plaintext>(ctx, &bytes, "ct as pt"),
        FormatError::WrongKind { .. }
    ));
    assert!(matches!(
        format_err::<RelinKey>(ctx, &bytes, "ct as rlk"),
        FormatError::WrongKind { .. }
    ));
    assert!(matches!(
        format_err::<GaloisKeys>(ctx, &bytes, "ct as gk"),
        FormatError::WrongKind { .. }
    ));
    assert!(matches!(
        format_err::<EvaluationKeys>(ctx, &bytes, "ct as evk"),
        FormatError::WrongKind { .. }
    ));
    let pk_bytes = k.pk.to_bytes(ctx).unwrap();
    assert!(matches!(
        format_err::<Ciphertext>(ctx, &pk_bytes, "pk as ct"),
        FormatError::WrongKind { .. }
    ));
    let params_bytes = parameters_to_bytes(&ctx.params);
    assert!(matches!(
        format_err::<Ciphertext>(ctx, &params_bytes, "params as ct"),
        FormatError::WrongKind { .. }
    ));
    assert!(matches!(
        catch_unwind(|| parameters_from_bytes(&bytes)).expect("no panic"),
        Err(CkksError::Format(FormatError::WrongKind { .. }))
    ));
    // Unknown kinds, validly framed.
    for kind in [0u8, 8, 99, 255] {
        let e = format_err::<Ciphertext>(ctx, &frame_raw(1, kind, &hash, &payload), "unknown kind");
        assert!(
            is_malformed(&e) || matches!(e, FormatError::WrongKind { .. }),
            "kind {kind}: {e:?}"
        );
    }

    // Trailing garbage after the frame, and inside a valid frame.
    for extra in [1usize, 7, 32, 4096] {
        let mut b = bytes.clone();
        b.extend(std::iter::repeat_n(0xA5, extra));
        let e = format_err::<Ciphertext>(ctx, &b, "trailing garbage");
        assert!(is_malformed(&e), "{extra} trailing bytes: {e:?}");
        let mut p = payload.clone();
        p.extend(std::iter::repeat_n(0, extra));
        let e =
            format_err::<Ciphertext>(ctx, &frame(Kind::Ciphertext, &hash, &p), "trailing payload");
        assert!(is_malformed(&e), "{extra} trailing payload bytes: {e:?}");
    }
    // Two files concatenated.
    let mut b = bytes.clone();
    b.extend_from_slice(&bytes);
    assert!(is_malformed(&format_err::<Ciphertext>(
        ctx,
        &b,
        "two files"
    )));
    // A length field that overflows.
    let mut b = bytes.clone();
    b[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = format_err::<Ciphertext>(ctx, &b, "length u64::MAX");
    assert!(
        matches!(e, FormatError::Malformed(_) | FormatError::Truncated(_)),
        "{e:?}"
    );
}

#[test]
fn parameter_mismatch_is_reported() {
    let (k, _, bytes) = small_ct(false);
    let n14 = Context::new(Parameters::preset(N14).unwrap(), Device::Cpu).unwrap();
    let r =
        catch_unwind(AssertUnwindSafe(|| Ciphertext::from_bytes(&n14, &bytes))).expect("no panic");
    assert!(
        matches!(r, Err(CkksError::Format(FormatError::ParamsMismatch))),
        "{r:?}"
    );
    let r = catch_unwind(AssertUnwindSafe(|| {
        PublicKey::from_bytes(&n14, &k.pk.to_bytes(&k.ctx).unwrap())
    }))
    .expect("no panic");
    assert!(
        matches!(r, Err(CkksError::Format(FormatError::ParamsMismatch))),
        "{r:?}"
    );
    let rk_bytes = k.evk.relin.as_ref().unwrap().to_bytes(&k.ctx).unwrap();
    let r =
        catch_unwind(AssertUnwindSafe(|| RelinKey::from_bytes(&n14, &rk_bytes))).expect("no panic");
    assert!(
        matches!(r, Err(CkksError::Format(FormatError::ParamsMismatch))),
        "{r:?}"
    );
    // And the other way: N14 objects under the INSECURE context.
    let pt = Encoder::new(&n14).encode(&[0.5; 4], 0, None).unwrap();
    let r = Plaintext::from_bytes(&k.ctx, &pt.to_bytes(&n14).unwrap());
    assert!(
        matches!(r, Err(CkksError::Format(FormatError::ParamsMismatch))),
        "{r:?}"
    );
    // A hash that matches no parameter set, validly framed.
    let mut h = hash_of(&bytes);
    h[31] ^= 1;
    let r = Ciphertext::from_bytes(&k.ctx, &frame(Kind::Ciphertext, &h, payload_of(&bytes)));
    assert!(
        matches!(r, Err(CkksError::Format(FormatError::ParamsMismatch))),
        "{r:?}"
    );

    // Parameters whose stored hash does not match the literal.
    let pb = parameters_to_bytes(&k.ctx.params);
    let r = parameters_from_bytes(&frame(Kind::Parameters, &[0u8; 32], payload_of(&pb)));
    assert!(
        matches!(r, Err(CkksError::Format(FormatError::ParamsMismatch))),
        "{r:?}"
    );
    let r = parameters_from_bytes(&frame(Kind::Parameters, &n14.params.hash, payload_of(&pb)));
    assert!(
        matches!(r, Err(CkksError::Format(FormatError::ParamsMismatch))),
        "{r:?}"
    );
}

/// Rewrites the metadata of a ciphertext payload: level u32, slots u32, scale f64, parts u8, seed flag u8.
fn ct_payload(
    level: u32,
    slots: u32,
    scale: f64,
    nparts: u8,
    seed_flag: u8,
    rest: &[u8],
) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&level.to_le_bytes());
    p.extend_from_slice(&slots.to_le_bytes());
    p.extend_from_slice(&scale.to_le_bytes());
    p.push(nparts);
    p.push(seed_flag);
    p.extend_from_slice(rest);
    p
}

#[test]
fn valid_checksum_but_nonsense_content() {
    let k = keys(INSECURE);
    let ctx = &k.ctx;
    let p = &ctx.params;
    let n = p.n();
    let (_, ct, bytes) = small_ct(false); // level 0, 8 slots, unseeded
    let hash = hash_of(&bytes);
    let payload = payload_of(&bytes).to_vec();
    let (level, slots, scale) = (ct.level as u32, ct.slots as u32, ct.scale);
    let polys = &payload[18..]; // c0 then c1
    let poly_bytes = p.limbs_at(0) * n * 4;
    assert_eq!(polys.len(), 2 * poly_bytes);
    let reframe = |pl: &[u8]| frame(Kind::Ciphertext, &hash, pl);
    let bad = |pl: Vec<u8>, what: &str| {
        let e = format_err::<Ciphertext>(ctx, &reframe(&pl), what);
        assert!(is_malformed(&e), "{what}: {e:?}");
    };
    // The unmodified re-framed payload reads back (so each error below is about its one change).
    let ok = Ciphertext::from_bytes(ctx, &reframe(&ct_payload(level, slots, scale, 2, 0, polys)))
        .unwrap();
    assert_ct_eq(ctx, &ct, &ok);

    // Residues at or above their prime, in each limb of each part.
    let q0 = p.ring.moduli[0].q;
    let q1 = p.ring.moduli[1].q;
    for (off, val) in [
        (0, q0),
        (0, u32::MAX),
        (4 * (n - 1), q0 + 1),
        (4 * n, q1),
        (poly_bytes + 4 * (2 * n - 1), q1),
    ] {
        let mut r = polys.to_vec();
        r[off..off + 4].copy_from_slice(&val.to_le_bytes());
        bad(
            ct_payload(level, slots, scale, 2, 0, &r),
            &format!("residue {val} at byte {off}"),
        );
    }
    // Level above the top (with polys sized for that level too, so only the level is wrong).
    let top = p.max_level() as u32;
    bad(
        ct_payload(top + 1, slots, scale, 2, 0, polys),
        "level top+1",
    );
    bad(
        ct_payload(u32::MAX, slots, scale, 2, 0, polys),
        "level u32::MAX",
    );
    // A level that exists but does not match the amount of data.
    bad(
        ct_payload(1, slots, scale, 2, 0, polys),
        "level 1 with level-0 data",
    );
    // Slot counts.
    for s in [0u32, 3, 6, 100, (p.max_slots() * 2) as u32, u32::MAX] {
        bad(
            ct_payload(level, s, scale, 2, 0, polys),
            &format!("slots {s}"),
        );
    }
    // Scales.
    for s in [f64::NAN, f64::INFINITY, -1.0, 0.0, 0.5, f64::NEG_INFINITY] {
        bad(
            ct_payload(level, slots, s, 2, 0, polys),
            &format!("scale {s}"),
        );
    }
    // Part counts (data for 4 parts given, too).
    let mut four = polys.to_vec();
    four.extend_from_slice(polys);
    bad(ct_payload(level, slots, scale, 4, 0, &four), "4 parts");
    bad(
        ct_payload(level, slots, scale, 1, 0, &polys[..poly_bytes]),
        "1 part",
    );
    bad(ct_payload(level, slots, scale, 0, 0, &[]), "0 parts");
    bad(ct_payload(level, slots, scale, 255, 0, polys), "255 parts");
    bad(
        ct_payload(level, slots, scale, 3, 0, polys),
        "3 parts, data for 2",
    );
    // Seed flags.
    bad(ct_payload(level, slots, scale, 2, 2, polys), "seed flag 2");
    let mut with_seed = vec![7u8; 32];
    with_seed.extend_from_slice(polys);
    let mut three = with_seed.clone();
    three.extend_from_slice(&polys[..poly_bytes]);
    bad(
        ct_payload(level, slots, scale, 3, 1, &three),
        "seeded degree-2 ciphertext",
    );
    bad(
        ct_payload(level, slots, scale, 2, 1, &with_seed),
        "seeded, with c1 stored too",
    );
    bad(
        ct_payload(level, slots, scale, 2, 1, &[7u8; 20]),
        "seed cut short",
    );
    // Empty payload.
    bad(Vec::new(), "empty payload");

    // Plaintext payloads.
    let pt = Encoder::new(ctx).encode(&[0.25; 8], 0, None).unwrap();
    let pt_bytes = pt.to_bytes(ctx).unwrap();
    let pl = payload_of(&pt_bytes).to_vec();
    let pbad = |pl: Vec<u8>, what: &str| {
        let e = format_err::<Plaintext>(ctx, &frame(Kind::Plaintext, &hash, &pl), what);
        assert!(is_malformed(&e), "{what}: {e:?}");
    };
    let mut r = pl.clone();
    r[16..20].copy_from_slice(&q0.to_le_bytes());
    pbad(r, "plaintext residue = prime");
    let mut r = pl.clone();
    r[0..4].copy_from_slice(&(top + 1).to_le_bytes());
    pbad(r, "plaintext level");
    let mut r = pl.clone();
    r[4..8].copy_from_slice(&5u32.to_le_bytes());
    pbad(r, "plaintext slots");
    pbad(pl[..pl.len() - 1].to_vec(), "plaintext short");
    let mut r = pl.clone();
    r.push(0);
    pbad(r, "plaintext long");
}

#[test]
fn nonsense_key_and_parameter_payloads() {
    let k = keys(INSECURE);
    let ctx = &k.ctx;
    let p = &ctx.params;
    let hash = p.hash;
    let n = p.n();
    let q0 = p.ring.moduli[0].q;

    // Public key: seed + b over the top level.
    let pk_bytes = k.pk.to_bytes(ctx).unwrap();
    let pl = payload_of(&pk_bytes).to_vec();
    let pkbad = |pl: &[u8], what: &str| {
        let e = format_err::<PublicKey>(ctx, &frame(Kind::PublicKey, &hash, pl), what);
        assert!(is_malformed(&e), "{what}: {e:?}");
    };
    pkbad(&pl[..pl.len() - 4], "pk short");
    pkbad(&pl[..16], "pk seed only half");
    pkbad(&[], "pk empty");
    let mut r = pl.clone();
    r.extend_from_slice(&[0; 4]);
    pkbad(&r, "pk long");
    let mut r = pl.clone();
    r[32..36].copy_from_slice(&q0.to_le_bytes());
    pkbad(&r, "pk residue = prime");
    // The last residue of b is over the last Q prime.
    let last_q = p.ring.moduli[p.q_count() - 1].q;
    let mut r = pl.clone();
    let len = r.len();
    r[len - 4..].copy_from_slice(&last_q.to_le_bytes());
    pkbad(&r, "pk last residue = its prime");

    // Relinearization key: seed, digit count, digits.
    let rk = k.evk.relin.as_ref().unwrap();
    let rk_bytes = rk.to_bytes(ctx).unwrap();
    let pl = payload_of(&rk_bytes).to_vec();
    let rkbad = |pl: &[u8], what: &str| {
        let e = format_err::<RelinKey>(ctx, &frame(Kind::RelinKey, &hash, pl), what);
        assert!(is_malformed(&e), "{what}: {e:?}");
    };
    let nd = p.digits.len() as u32;
    for d in [0u32, nd - 1, nd + 1, u32::MAX] {
        let mut r = pl.clone();
        r[32..36].copy_from_slice(&d.to_le_bytes());
        rkbad(&r, &format!("{d} digits"));
    }
    let mut r = pl.clone();
    r[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
    rkbad(&r, "rlk residue u32::MAX");
    // A residue of the last special prime in the last digit.
    let last = p.ring.moduli.last().unwrap().q;
    let mut r = pl.clone();
    let len = r.len();
    r[len - 4..].copy_from_slice(&last.to_le_bytes());
    rkbad(&r, "rlk last residue = its prime");
    rkbad(&pl[..pl.len() - 1], "rlk short");

    // Galois keys: count, then (element, key) pairs.
    let one = GaloisKeys {
        keys: k
            .evk
            .galois
            .keys
            .iter()
            .take(1)
            .map(|(g, s)| (*g, s.clone()))
            .collect(),
    };
    let gk_bytes = one.to_bytes(ctx).unwrap();
    let pl = payload_of(&gk_bytes).to_vec();
    assert_eq!(
        GaloisKeys::from_bytes(ctx, &gk_bytes).unwrap().keys.len(),
        1
    );
    let gkbad = |pl: &[u8], what: &str| {
        let e = format_err::<GaloisKeys>(ctx, &frame(Kind::GaloisKeys, &hash, pl), what);
        assert!(is_malformed(&e), "{what}: {e:?}");
    };
    for e in [0u32, 2, (2 * n) as u32, (2 * n + 1) as u32, u32::MAX - 1] {
        let mut r = pl.clone();
        r[4..8].copy_from_slice(&e.to_le_bytes());
        gkbad(&r, &format!("Galois element {e}"));
    }
    for c in [0u32, 2, u32::MAX] {
        let mut r = pl.clone();
        r[0..4].copy_from_slice(&c.to_le_bytes());
        gkbad(&r, &format!("key count {c}"));
    }

    // Evaluation keys: relin flag.
    let ek = EvaluationKeys {
        encapsulation: None,
        relin: None,
        galois: one.clone(),
        params_hash: hash,
    };
    let ek_bytes = ek.to_bytes(ctx).unwrap();
    let pl = payload_of(&ek_bytes).to_vec();
    assert_eq!(pl[0], 0);
    for flag in [1u8, 2, 255] {
        let mut r = pl.clone();
        r[0] = flag;
        let e = format_err::<EvaluationKeys>(
            ctx,
            &frame(Kind::EvaluationKeys, &hash, &r),
            "relin flag",
        );
        assert!(is_malformed(&e), "relin flag {flag}: {e:?}");
    }

    // Parameters: JSON that is not a literal, and literals that are invalid or insecure.
    let pbad = |json: &[u8], what: &str| -> CkksError {
        match catch_unwind(|| parameters_from_bytes(&frame(Kind::Parameters, &hash, json))) {
            Err(_) => panic!("{what}: panicked"),
            Ok(Ok(_)) => panic!("{what}: accepted"),
            Ok(Err(e)) => e,
        }
    };
    for json in [
        &b""[..],
        b"{",
        b"[]",
        b"null",
        b"{\"name\": 5}",
        &[0xFF, 0xFE, 0x00][..],
    ] {
        let e = pbad(json, "garbage json");
        assert!(
            matches!(e, CkksError::Format(FormatError::Malformed(_))),
            "{:?}: {e:?}",
            String::from_utf8_lossy(json)
        );
    }
    let lit = |log_n: u32, log_scale: u32, dnum: usize, name: &str| {
        format!("{{\"name\":\"{name}\",\"log_n\":{log_n},\"log_q0\":60,\"levels\":6,\"log_scale\":{log_scale},\"dnum\":{dnum}}}")
    };
    assert!(matches!(
        pbad(lit(3, 40, 3, "x_insecure").as_bytes(), "log_n 3"),
        CkksError::InvalidParameters(_)
    ));
    assert!(matches!(
        pbad(lit(12, 40, 0, "x_insecure").as_bytes(), "dnum 0"),
        CkksError::InvalidParameters(_)
    ));
    assert!(matches!(
        pbad(lit(12, 200, 3, "x_insecure").as_bytes(), "scale 200"),
        CkksError::InvalidParameters(_)
    ));
    assert!(matches!(
        pbad(lit(12, 40, 3, "secure_claim").as_bytes(), "insecure"),
        CkksError::Insecure { .. }
    ));
    // The preset's own literal, framed with its hash, is fine.
    let own = lit(12, 40, 3, INSECURE);
    assert_eq!(
        parameters_from_bytes(&frame(Kind::Parameters, &hash, own.as_bytes()))
            .unwrap()
            .hash,
        hash
    );
}
