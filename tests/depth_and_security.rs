//! Multiplicative depth of the 128-bit N = 2^14 preset spent to the last level, the HE-standard
//! security gate on parameter literals, and objects of one parameter set handed to another.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::*;
use umbra::ckks::encoder::precision_bits;
use umbra::ckks::params::{max_log_qp, HE_STD_128_TERNARY};
use umbra::ckks::presets::presets;
use umbra::ckks::{
    Ciphertext, CkksError, Decryptor, Encoder, Encryptor, Evaluator, Parameters, ParametersLiteral,
};

#[test]
fn depth_spent_to_level_zero_on_n14() {
    let k = keys(N14);
    let ctx = &k.ctx;
    let p = &ctx.params;
    assert!(p.is_secure());
    let slots = p.max_slots();
    let top = p.max_level();
    assert_eq!(top, 6);
    let enc = Encoder::new(ctx);
    let dec = Decryptor::new(ctx);
    let mut e = Encryptor::new(ctx, &k.pk).unwrap();
    let eval = Evaluator::new(ctx, k.evk.clone()).unwrap();

    let mut want = uniform(slots, 100);
    let mut x = e.encrypt(&enc.encode(&want, top, None).unwrap()).unwrap();
    assert_eq!(x.level, top);
    let mut steps = 0;
    while x.level > 0 {
        let vals = uniform(slots, 101 + steps as u8);
        let y = e
            .encrypt(&enc.encode(&vals, x.level, Some(x.scale)).unwrap())
            .unwrap();
        let level = x.level;
        let m = eval.mul_relin_new(&x, &y).unwrap();
        assert_eq!(m.degree(), 1);
        x = eval.rescale_new(&m).unwrap();
        assert_eq!(x.level, level - 1);
        // The scale follows the per-level default scales exactly (s_{l-1} = s_l^2 / Q_l).
        let ds = p.default_scales[x.level];
        assert!(
            (x.scale / ds - 1.0).abs() < 1e-9,
            "level {}: scale 2^{:.4} vs default 2^{:.4}",
            x.level,
            x.scale.log2(),
            ds.log2()
        );
        for (w, v) in want.iter_mut().zip(&vals) {
            *w *= v;
        }
        steps += 1;
        let got = dec.decrypt(&x, &k.sk).unwrap();
        let b = precision_bits(&got, &want);
        eprintln!(
            "depth: after {steps} multiplications (level {}): {b:.2} bits",
            x.level
        );
        assert!(
            b >= 15.0,
            "after {steps} multiplications (level {}): {b:.2} bits",
            x.level
        );
    }
    assert_eq!(steps, top, "every level spent by one multiplication each");
    assert_eq!(x.level, 0);
    let got = dec.decrypt(&x, &k.sk).unwrap();
    let final_bits = precision_bits(&got, &want);
    assert!(final_bits >= 15.0, "final precision {final_bits:.2} bits");
    // The reference is not trivially small: the product of 7 uniform values still has mass.
    let mean_abs = want.iter().map(|v| v.abs()).sum::<f64>() / slots as f64;
    assert!(mean_abs > 1e-4, "reference mean |x| = {mean_abs:e}");

    // No level is left: multiplying and rescaling at level 0 are errors, not panics or garbage.
    let y = e
        .encrypt(&enc.encode(&uniform(slots, 120), 0, Some(x.scale)).unwrap())
        .unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| eval.mul_relin_new(&x, &y)))
        .expect("mul_relin at level 0 panicked");
    assert!(
        matches!(r, Err(CkksError::LevelsExhausted(_))),
        "mul_relin at level 0: {r:?}"
    );
    let r =
        catch_unwind(AssertUnwindSafe(|| eval.mul_new(&x, &y))).expect("mul at level 0 panicked");
    assert!(r.is_err(), "mul at level 0 must not fit");
    let r = catch_unwind(AssertUnwindSafe(|| eval.rescale_new(&x)))
        .expect("rescale at level 0 panicked");
    assert!(
        matches!(r, Err(CkksError::LevelsExhausted(_))),
        "rescale at level 0: {r:?}"
    );
    // Additions still work at level 0.
    let s = eval.add_new(&x, &x).unwrap();
    let twice: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
    assert!(precision_bits(&dec.decrypt(&s, &k.sk).unwrap(), &twice) >= 14.0);
}

#[test]
fn literals_beyond_the_he_standard_bound_are_rejected() {
    // log N = 12 allows log QP <= 109; six 40-bit levels over a 60-bit base are far beyond.
    let big = ParametersLiteral::new("N12_big", 12, 60, 6, 40, 3);
    match Parameters::new(big.clone()) {
        Err(CkksError::Insecure {
            name,
            log_qp,
            max,
            log_n,
        }) => {
            assert_eq!(name, "N12_big");
            assert_eq!(log_n, 12);
            assert_eq!(max, 109.0);
            assert!(log_qp > max, "log_qp {log_qp}");
        }
        other => panic!("expected Insecure, got {other:?}"),
    }
    // The same literal named insecure is accepted (for tests), and says so.
    let named = Parameters::new(ParametersLiteral {
        name: "N12_big_insecure".into(),
        ..big.clone()
    })
    .unwrap();
    assert!(!named.is_secure());
    assert!(named.is_insecure_named());
    assert!(named.security_bits() < 128);
    assert!(named.log_qp > 109.0);
    // "insecure" anywhere in the name counts; other spellings do not.
    assert!(Parameters::new(ParametersLiteral {
        name: "insecure_N12".into(),
        ..big.clone()
    })
    .is_ok());
    assert!(matches!(
        Parameters::new(ParametersLiteral {
            name: "N12_big_INSECURE".into(),
            ..big.clone()
        }),
        Err(CkksError::Insecure { .. })
    ));
    assert!(matches!(
        Parameters::new(ParametersLiteral {
            name: "N12_big_unsafe".into(),
            ..big
        }),
        Err(CkksError::Insecure { .. })
    ));

    // Just over the bound at every table entry: fill the modulus until it passes the bound.
    for &(log_n, max) in HE_STD_128_TERNARY.iter().filter(|(l, _)| *l <= 14) {
        assert_eq!(max_log_qp(log_n), max);
        let mut levels = 0;
        let over = loop {
            let lit = ParametersLiteral::new(
                &format!("probe_{log_n}_{levels}_insecure"),
                log_n,
                40,
                levels,
                30,
                1,
            );
            let p = Parameters::new(lit).unwrap();
            if p.log_qp > max {
                break levels;
            }
            assert!(
                p.is_secure(),
                "log N {log_n}, {levels} levels: log QP {:.1} <= {max} must be secure",
                p.log_qp
            );
            levels += 1;
        };
        let lit = ParametersLiteral::new(&format!("probe_{log_n}_{over}"), log_n, 40, over, 30, 1);
        assert!(
            matches!(Parameters::new(lit), Err(CkksError::Insecure { .. })),
            "log N {log_n}, {over} levels"
        );
        if over > 0 {
            let lit = ParametersLiteral::new(
                &format!("probe_{log_n}_{}", over - 1),
                log_n,
                40,
                over - 1,
                30,
                1,
            );
            assert!(Parameters::new(lit).unwrap().is_secure());
        }
    }
}

#[test]
fn presets_are_secure_and_named_honestly() {
    let all = presets();
    assert!(all.iter().any(|l| !l.name.contains("insecure")));
    let mut names: Vec<&str> = all.iter().map(|l| l.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len(), "preset names are unique");
    for lit in &all {
        let p = Parameters::new(lit.clone()).unwrap_or_else(|e| panic!("{}: {e}", lit.name));
        assert_eq!(Parameters::preset(&lit.name).unwrap().hash, p.hash);
        let figure = |tag: &str| -> f64 {
            let rest = lit
                .name
                .split('_')
                .find_map(|part| part.strip_prefix(tag))
                .unwrap_or_else(|| panic!("{}: no {tag} figure", lit.name));
            rest.parse()
                .unwrap_or_else(|_| panic!("{}: bad {tag} figure", lit.name))
        };
        assert_eq!(
            figure("QP"),
            p.log_qp.round(),
            "{}: log QP = {:.2}",
            lit.name,
            p.log_qp
        );
        assert_eq!(figure("N") as u32, p.log_n(), "{}", lit.name);
        // L: levels for computation (bootstrapping presets add their own levels above).
        assert_eq!(figure("L") as usize, p.compute_top_level(), "{}", lit.name);
        assert_eq!(figure("S") as u32, lit.log_scale, "{}", lit.name);
        if lit.name.contains("insecure") {
            assert!(
                !p.is_secure(),
                "{} is named insecure but is secure",
                lit.name
            );
        } else {
            assert!(
                p.is_secure(),
                "{}: log QP {:.1} > {}",
                lit.name,
                p.log_qp,
                max_log_qp(p.log_n())
            );
            assert_eq!(p.security_bits(), 128);
            assert!(p.log_qp <= max_log_qp(p.log_n()));
        }
    }
    assert!(matches!(
        Parameters::preset("N13_nope"),
        Err(CkksError::InvalidParameters(_))
    ));
}

#[test]
fn invalid_literals_are_errors() {
    let ok = ParametersLiteral::new("ok_insecure", 12, 60, 2, 40, 2);
    assert!(Parameters::new(ok.clone()).is_ok());
    let cases = [
        (
            "log_n 3",
            ParametersLiteral {
                log_n: 3,
                ..ok.clone()
            },
        ),
        (
            "log_n 0",
            ParametersLiteral {
                log_n: 0,
                ..ok.clone()
            },
        ),
        (
            "log_n 40",
            ParametersLiteral {
                log_n: 40,
                ..ok.clone()
            },
        ),
        (
            "dnum 0",
            ParametersLiteral {
                dnum: 0,
                ..ok.clone()
            },
        ),
        (
            "log_scale 200",
            ParametersLiteral {
                log_scale: 200,
                ..ok.clone()
            },
        ),
        (
            "log_scale 0",
            ParametersLiteral {
                log_scale: 0,
                ..ok.clone()
            },
        ),
        (
            "log_q0 0",
            ParametersLiteral {
                log_q0: 0,
                ..ok.clone()
            },
        ),
        (
            "log_q0 500",
            ParametersLiteral {
                log_q0: 500,
                ..ok.clone()
            },
        ),
        (
            "extra level of 5 bits",
            ParametersLiteral {
                extra_log_q: vec![50, 5],
                ..ok.clone()
            },
        ),
        (
            "scale above Q0",
            ParametersLiteral {
                log_q0: 30,
                log_scale: 60,
                ..ok.clone()
            },
        ),
    ];
    for (what, lit) in cases {
        let r = catch_unwind(AssertUnwindSafe(|| Parameters::new(lit)))
            .unwrap_or_else(|_| panic!("{what}: panicked"));
        assert!(
            matches!(r, Err(CkksError::InvalidParameters(_))),
            "{what}: {r:?}"
        );
    }
}

/// A boxed evaluator call whose result is only checked for being an error.
type OpFn<'a> = Box<dyn Fn() -> Result<(), CkksError> + 'a>;

#[test]
fn objects_of_other_parameters_are_rejected() {
    let small = keys(INSECURE);
    let big = keys(N14);
    let sctx = &small.ctx;
    let bctx = &big.ctx;
    let vals = uniform(sctx.params.max_slots(), 7);
    let enc = Encoder::new(sctx);
    let mut e = Encryptor::new(sctx, &small.pk).unwrap();
    let cts: Vec<Ciphertext> = [sctx.params.max_level(), 3, 0]
        .iter()
        .map(|&l| e.encrypt(&enc.encode(&vals, l, None).unwrap()).unwrap())
        .collect();
    let eval = Evaluator::new(bctx, big.evk.clone()).unwrap();
    let own = Encryptor::new(bctx, &big.pk)
        .unwrap()
        .encrypt(
            &Encoder::new(bctx)
                .encode(&uniform(8, 8), bctx.params.max_level(), None)
                .unwrap(),
        )
        .unwrap();

    for ct in &cts {
        let tag = format!("INSECURE ciphertext at level {}", ct.level);
        let ops: Vec<(&str, OpFn<'_>)> = vec![
            ("add", Box::new(|| eval.add_new(ct, ct).map(drop))),
            ("sub", Box::new(|| eval.sub_new(ct, ct).map(drop))),
            ("neg", Box::new(|| eval.neg_new(ct).map(drop))),
            ("mul", Box::new(|| eval.mul_new(ct, ct).map(drop))),
            (
                "mul_relin",
                Box::new(|| eval.mul_relin_new(ct, ct).map(drop)),
            ),
            (
                "relinearize",
                Box::new(|| eval.relinearize_new(ct).map(drop)),
            ),
            ("rescale", Box::new(|| eval.rescale_new(ct).map(drop))),
            (
                "drop_to_level",
                Box::new(|| eval.drop_to_level_new(ct, 0).map(drop)),
            ),
            (
                "mul_const",
                Box::new(|| eval.mul_const_new(ct, 0.5).map(drop)),
            ),
            (
                "add_const",
                Box::new(|| eval.add_const_new(ct, 0.5).map(drop)),
            ),
            ("mul_int", Box::new(|| eval.mul_int_new(ct, 3).map(drop))),
            ("rotate", Box::new(|| eval.rotate_new(ct, 1).map(drop))),
            (
                "rotate_hoisted",
                Box::new(|| eval.rotate_hoisted_new(ct, &[1, 2]).map(drop)),
            ),
            (
                "rotate_and_sum",
                Box::new(|| eval.rotate_and_sum_new(ct, 4).map(drop)),
            ),
            ("conjugate", Box::new(|| eval.conjugate_new(ct).map(drop))),
            (
                "add with own",
                Box::new(|| eval.add_new(&own, ct).map(drop)),
            ),
            (
                "mul with own",
                Box::new(|| eval.mul_new(&own, ct).map(drop)),
            ),
        ];
        for (name, op) in ops {
            let r = catch_unwind(AssertUnwindSafe(&op))
                .unwrap_or_else(|_| panic!("{tag}: {name} panicked"));
            assert!(
                r.is_err(),
                "{tag}: {name} accepted a ciphertext of other parameters"
            );
        }
    }
    // A ciphertext claiming a level above the top is an error too.
    let mut high = own.clone();
    high.level = bctx.params.max_level() + 3;
    let r = catch_unwind(AssertUnwindSafe(|| eval.rescale_new(&high))).expect("no panic");
    assert!(r.is_err());
    let r = catch_unwind(AssertUnwindSafe(|| eval.add_new(&high, &high))).expect("no panic");
    assert!(r.is_err());

    // Keys of other parameters.
    let r = Evaluator::new(bctx, small.evk.clone());
    assert!(matches!(r, Err(CkksError::ParamsMismatch)), "{:?}", r.err());
    let r = Evaluator::new(sctx, big.evk.clone());
    assert!(matches!(r, Err(CkksError::ParamsMismatch)), "{:?}", r.err());
    assert!(matches!(
        Encryptor::new(bctx, &small.pk),
        Err(CkksError::ParamsMismatch)
    ));
    let pt = Encoder::new(bctx).encode(&[0.5], 0, None).unwrap();
    assert!(matches!(
        Encryptor::secret(bctx).encrypt_sk(&pt, &small.sk),
        Err(CkksError::ParamsMismatch)
    ));
    assert!(matches!(
        Decryptor::new(bctx).decrypt(&own, &small.sk),
        Err(CkksError::ParamsMismatch)
    ));
}

// ------------------------------------------------------------------------------------------------
// Regression tests for validation gaps found while writing this file (each failed before the fix:
// foreign-sized buffers, levels above the top, degree-2 decryption, identity rotations).

fn no_panic<T>(what: &str, f: impl FnOnce() -> Result<T, CkksError>) -> Result<T, CkksError> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| panic!("{what}: panicked instead of returning Err"))
}

#[test]
fn decryptor_rejects_ciphertexts_of_other_parameters() {
    let small = keys(INSECURE);
    let big = keys(N14);
    let pt = Encoder::new(&small.ctx).encode(&[0.5; 8], 0, None).unwrap();
    let ct = Encryptor::new(&small.ctx, &small.pk)
        .unwrap()
        .encrypt(&pt)
        .unwrap();
    let r = no_panic("N14 decrypt of an INSECURE ciphertext", || {
        Decryptor::new(&big.ctx).decrypt(&ct, &big.sk)
    });
    assert!(r.is_err());
}

#[test]
fn decrypt_to_plaintext_validates_its_input() {
    let k = keys(INSECURE);
    let ctx = &k.ctx;
    let enc = Encoder::new(ctx);
    let dec = Decryptor::new(ctx);
    let vals = uniform(ctx.params.max_slots(), 9);
    let ct = Encryptor::new(ctx, &k.pk)
        .unwrap()
        .encrypt(&enc.encode(&vals, 2, None).unwrap())
        .unwrap();
    let mut high = ct.clone();
    high.level = ctx.params.max_level() + 3;
    assert!(no_panic("decrypt_to_plaintext above the top level", || dec
        .decrypt_to_plaintext(&high, &k.sk))
    .is_err());
    // A degree-2 ciphertext: either an error or the right plaintext, never c0 + c1 s alone.
    let sq = Evaluator::without_keys(ctx).mul_new(&ct, &ct).unwrap();
    let want = dec.decrypt(&sq, &k.sk).unwrap();
    if let Ok(pt) = dec.decrypt_to_plaintext(&sq, &k.sk) {
        let got = enc.decode(&pt).unwrap();
        let b = precision_bits(&got, &want);
        assert!(
            b >= 19.0,
            "decrypt_to_plaintext of a degree-2 ciphertext ignores c2: {b:.2} bits"
        );
    }
}

#[test]
fn encryptor_validates_plaintexts() {
    let small = keys(INSECURE);
    let big = keys(N14);
    let pt = Encoder::new(&small.ctx).encode(&[0.5; 8], 0, None).unwrap();
    let mut high = pt.clone();
    high.level = small.ctx.params.max_level() + 3;
    let mut e = Encryptor::new(&small.ctx, &small.pk).unwrap();
    assert!(no_panic("encrypt above the top level", || e.encrypt(&high)).is_err());
    assert!(
        no_panic("encrypt_sk above the top level", || Encryptor::secret(
            &small.ctx
        )
        .encrypt_sk(&high, &small.sk))
        .is_err()
    );
    // An INSECURE plaintext (N = 2^12) given to the N = 2^14 encryptor: today a silently wrong
    // ciphertext of the N14 size comes back.
    let mut eb = Encryptor::new(&big.ctx, &big.pk).unwrap();
    assert!(no_panic("N14 encrypt of an INSECURE plaintext", || eb.encrypt(&pt)).is_err());
}

#[test]
fn evaluator_checks_every_operand() {
    let small = keys(INSECURE);
    let big = keys(N14);
    let bctx = &big.ctx;
    let eval = Evaluator::new(bctx, big.evk.clone()).unwrap();
    let own = Encryptor::new(bctx, &big.pk)
        .unwrap()
        .encrypt(&Encoder::new(bctx).encode(&[0.5; 8], 0, None).unwrap())
        .unwrap();
    let mut foreign_pt = Encoder::new(&small.ctx).encode(&[0.5; 8], 0, None).unwrap();
    foreign_pt.scale = own.scale;
    assert!(no_panic("add_plain with a foreign plaintext", || eval
        .add_plain_new(&own, &foreign_pt))
    .is_err());
    assert!(no_panic("mul_plain with a foreign plaintext", || eval
        .mul_plain_new(&own, &foreign_pt))
    .is_err());
    let foreign_ct = Encryptor::new(&small.ctx, &small.pk)
        .unwrap()
        .encrypt(&foreign_pt)
        .unwrap();
    assert!(no_panic("rotate by 0 of a foreign ciphertext", || eval
        .rotate_new(&foreign_ct, 0))
    .is_err());
    assert!(
        no_panic("rotate_and_sum over 1 slot of a foreign ciphertext", || {
            eval.rotate_and_sum_new(&foreign_ct, 1)
        })
        .is_err()
    );
}
