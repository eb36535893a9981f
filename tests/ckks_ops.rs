//! Every evaluator op against an f64 reference, precision asserted in bits (log2 of 1 / mean
//! absolute error), values uniform in [-1, 1], scale 2^40, on the insecure preset and on the 128-bit
//! N = 2^14 preset.

mod common;

use common::*;
use umbra::ckks::encoder::precision_bits;
use umbra::ckks::{Decryptor, Encoder, Encryptor, Evaluator};
use umbra::math::fft::C64;

const SCALE: f64 = 1099511627776.0; // 2^40

fn check_all_ops(preset: &str) {
    let k = keys(preset);
    let ctx = &k.ctx;
    let p = &ctx.params;
    let slots = p.max_slots();
    let top = p.max_level();
    let a = uniform(slots, 1);
    let b = uniform(slots, 2);
    let enc = Encoder::new(ctx);
    let dec = Decryptor::new(ctx);
    let mut encryptor = Encryptor::new(ctx, &k.pk).unwrap();
    let eval = Evaluator::new(ctx, k.evk.clone()).unwrap();
    let pa = enc.encode(&a, top, Some(SCALE)).unwrap();
    let pb = enc.encode(&b, top, Some(SCALE)).unwrap();
    // Encoding alone is near exact.
    assert!(precision_bits(&enc.decode(&pa).unwrap(), &a) > 30.0);
    let ca = encryptor.encrypt(&pa).unwrap();
    let cb = encryptor.encrypt(&pb).unwrap();
    let bits = |ct: &umbra::ckks::Ciphertext, want: &[f64]| {
        precision_bits(&dec.decrypt(ct, &k.sk).unwrap(), want)
    };

    let fresh = bits(&ca, &a);
    assert!(fresh >= 21.0, "{preset}: fresh encryption {fresh:.2} bits");
    let sk_ct = Encryptor::secret(ctx).encrypt_sk(&pa, &k.sk).unwrap();
    assert!(bits(&sk_ct, &a) >= 21.0);

    let sum: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    let diff: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
    let prod: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
    assert!(bits(&eval.add_new(&ca, &cb).unwrap(), &sum) >= 20.0);
    assert!(bits(&eval.sub_new(&ca, &cb).unwrap(), &diff) >= 20.0);
    let neg: Vec<f64> = a.iter().map(|x| -x).collect();
    assert!(bits(&eval.neg_new(&ca).unwrap(), &neg) >= 21.0);
    assert!(bits(&eval.add_plain_new(&ca, &pb).unwrap(), &sum) >= 21.0);

    let m = eval.mul_relin_new(&ca, &cb).unwrap();
    let r = eval.rescale_new(&m).unwrap();
    assert_eq!(r.level, top - 1);
    let mul_bits = bits(&r, &prod);
    assert!(
        mul_bits >= 19.0,
        "{preset}: mul+relin+rescale {mul_bits:.2} bits"
    );

    let mp = eval
        .rescale_new(&eval.mul_plain_new(&ca, &pb).unwrap())
        .unwrap();
    assert!(bits(&mp, &prod) >= 19.0);
    let c = 0.7315;
    let mc = eval
        .rescale_new(&eval.mul_const_new(&ca, c).unwrap())
        .unwrap();
    let want: Vec<f64> = a.iter().map(|x| x * c).collect();
    assert!(bits(&mc, &want) >= 19.0);
    assert!(
        (mc.scale / ca.scale - 1.0).abs() < 1e-9,
        "mul_const then rescale keeps the scale"
    );
    let ac = eval.add_const_new(&ca, -0.25).unwrap();
    let want: Vec<f64> = a.iter().map(|x| x - 0.25).collect();
    assert!(bits(&ac, &want) >= 21.0);
    let mi = eval.mul_int_new(&ca, -3).unwrap();
    let want: Vec<f64> = a.iter().map(|x| -3.0 * x).collect();
    assert!(bits(&mi, &want) >= 19.0);

    for rot in [1i64, 5, -1, 64] {
        let rc = eval.rotate_new(&ca, rot).unwrap();
        let want: Vec<f64> = (0..slots)
            .map(|i| a[(i as i64 + rot).rem_euclid(slots as i64) as usize])
            .collect();
        let rb = bits(&rc, &want);
        assert!(rb >= 19.0, "{preset}: rotate by {rot}: {rb:.2} bits");
    }
    let rots = [1i64, 2, 3, 4, 5, 6, 7, 8];
    let hoisted = eval.rotate_hoisted_new(&ca, &rots).unwrap();
    for (rot, rc) in rots.iter().zip(&hoisted) {
        let want: Vec<f64> = (0..slots).map(|i| a[(i + *rot as usize) % slots]).collect();
        assert!(bits(rc, &want) >= 19.0, "hoisted rotation by {rot}");
    }
    // Rotate-and-sum over 8 slots.
    let rs = eval.rotate_and_sum_new(&ca, 8).unwrap();
    let want: Vec<f64> = (0..slots)
        .map(|i| (0..8).map(|j| a[(i + j) % slots]).sum())
        .collect();
    assert!(bits(&rs, &want) >= 17.0);

    // Dropping a level keeps the value.
    let dropped = eval.drop_to_level_new(&ca, 1).unwrap();
    assert!(bits(&dropped, &a) >= 21.0);
    // Mismatches are errors.
    assert!(eval.add_new(&ca, &r).is_err(), "level mismatch");
    let r2 = eval.drop_to_level_new(&ca, top - 1).unwrap();
    assert!(eval.add_new(&r, &r2).is_err(), "scale mismatch");
}

#[test]
fn ops_precision_insecure_preset() {
    check_all_ops(INSECURE);
}

#[test]
fn ops_precision_n14_128bit_preset() {
    check_all_ops(N14);
}

#[test]
fn complex_slots_and_conjugation() {
    let k = keys(INSECURE);
    let ctx = &k.ctx;
    let slots = 64; // sparse packing
    let re = uniform(slots, 3);
    let im = uniform(slots, 4);
    let z: Vec<C64> = re.iter().zip(&im).map(|(&a, &b)| C64::new(a, b)).collect();
    let enc = Encoder::new(ctx);
    let pt = enc
        .encode_complex(&z, ctx.params.max_level(), Some(SCALE))
        .unwrap();
    let ct = Encryptor::new(ctx, &k.pk).unwrap().encrypt(&pt).unwrap();
    let eval = Evaluator::new(ctx, k.evk.clone()).unwrap();
    let dec = Decryptor::new(ctx);
    let got = dec
        .decrypt_complex(&eval.conjugate_new(&ct).unwrap(), &k.sk)
        .unwrap();
    let err = got
        .iter()
        .zip(&z)
        .map(|(g, w)| g.sub(w.conj()).abs())
        .sum::<f64>()
        / slots as f64;
    assert!(-err.log2() >= 19.0, "conjugation {:.2} bits", -err.log2());
    // Sparse rotation.
    let got = dec
        .decrypt_complex(&eval.rotate_new(&ct, 3).unwrap(), &k.sk)
        .unwrap();
    let err = (0..slots)
        .map(|i| got[i].sub(z[(i + 3) % slots]).abs())
        .sum::<f64>()
        / slots as f64;
    assert!(
        -err.log2() >= 19.0,
        "sparse rotation {:.2} bits",
        -err.log2()
    );
    // Complex multiplication.
    let m = eval
        .rescale_new(&eval.mul_relin_new(&ct, &ct).unwrap())
        .unwrap();
    let got = dec.decrypt_complex(&m, &k.sk).unwrap();
    let err = (0..slots)
        .map(|i| got[i].sub(z[i].mul(z[i])).abs())
        .sum::<f64>()
        / slots as f64;
    assert!(
        -err.log2() >= 18.0,
        "complex square {:.2} bits",
        -err.log2()
    );
}

#[test]
fn larger_scales_give_more_bits() {
    let k = keys(INSECURE);
    let ctx = &k.ctx;
    let a = uniform(ctx.params.max_slots(), 5);
    let enc = Encoder::new(ctx);
    let dec = Decryptor::new(ctx);
    let mut e = Encryptor::new(ctx, &k.pk).unwrap();
    let mut bits_at = |log_scale: i32| {
        let pt = enc
            .encode(&a, ctx.params.max_level(), Some(2f64.powi(log_scale)))
            .unwrap();
        precision_bits(&dec.decrypt(&e.encrypt(&pt).unwrap(), &k.sk).unwrap(), &a)
    };
    let (b30, b40, b50) = (bits_at(30), bits_at(40), bits_at(50));
    assert!(
        b40 - b30 > 8.0 && b50 - b40 > 8.0,
        "bits {b30:.1} {b40:.1} {b50:.1}"
    );
}
