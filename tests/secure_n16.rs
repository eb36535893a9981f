//! The one 128-bit N = 2^16 test: the full bootstrapping-size modulus encrypts, multiplies with
//! relinearization, rescales and rotates with the precision the smaller sets have.

mod common;

use std::sync::Arc;

use common::uniform;
use umbra::ckks::encoder::precision_bits;
use umbra::ckks::*;

#[test]
fn n16_mul_rescale_rotate_precision() {
    let params = Parameters::preset("N16_QP1690_L26_S50").unwrap();
    assert!(params.is_secure() && params.log_n() == 16 && params.max_level() == 26);
    let ctx = Context::new(params.clone(), common::device()).unwrap();
    let mut kg = KeyGenerator::new(&ctx);
    let sk = kg.gen_secret_key();
    let pk = kg.gen_public_key(&sk);
    let evk = Arc::new(kg.gen_evaluation_keys(&sk, &[1], false));
    let slots = params.max_slots();
    let (a, b) = (uniform(slots, 11), uniform(slots, 12));
    let enc = Encoder::new(&ctx);
    let top = params.max_level();
    let mut e = Encryptor::new(&ctx, &pk).unwrap();
    let ca = e.encrypt(&enc.encode(&a, top, None).unwrap()).unwrap();
    let cb = e.encrypt(&enc.encode(&b, top, None).unwrap()).unwrap();
    let eval = Evaluator::new(&ctx, evk).unwrap();
    let dec = Decryptor::new(&ctx);
    let fresh = precision_bits(&dec.decrypt(&ca, &sk).unwrap(), &a);
    assert!(fresh >= 30.0, "fresh {fresh:.2} bits at scale 2^50");
    let prod = eval
        .rescale_new(&eval.mul_relin_new(&ca, &cb).unwrap())
        .unwrap();
    let want: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
    let bits = precision_bits(&dec.decrypt(&prod, &sk).unwrap(), &want);
    assert!(bits >= 28.0, "mul+relin+rescale {bits:.2} bits");
    let rot = eval.rotate_new(&prod, 1).unwrap();
    let want: Vec<f64> = (0..slots).map(|i| want[(i + 1) % slots]).collect();
    let bits = precision_bits(&dec.decrypt(&rot, &sk).unwrap(), &want);
    assert!(bits >= 28.0, "rotate {bits:.2} bits");
}
