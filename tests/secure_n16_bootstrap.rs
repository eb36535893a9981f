//! The 128-bit N=2^16 bootstrapping preset, full slots (its own test binary: it holds ~9 GB).

use std::sync::Arc;

use umbra::backend::Device;
use umbra::ckks::bootstrap::{self, gen_bootstrap_keys, Bootstrapper};
use umbra::ckks::encoder::precision_bits;
use umbra::ckks::{
    Context, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters, SimCiphertext,
    Simulator,
};
use umbra::math::sampling::Prng;

#[test]
fn secure_n16_full_slot_bootstrap() {
    let pr = bootstrap::presets()
        .into_iter()
        .find(|p| p.params.log_n == 16)
        .expect("an N=2^16 bootstrapping preset");
    let params = Parameters::new(pr.params.clone()).unwrap();
    assert!(params.is_secure() && !params.is_insecure_named());
    assert!(umbra::ckks::presets::is_bootstrappable(&params));
    let ctx = Context::new(params.clone(), Device::Cpu).unwrap();
    let mut kg = KeyGenerator::new(&ctx);
    let sk = kg.gen_secret_key();
    let keys = gen_bootstrap_keys(&mut kg, &sk, &params, &pr.boot, &[]).unwrap();
    let ev = Evaluator::new(&ctx, Arc::new(keys)).unwrap();
    let boot = Bootstrapper::new(&ev, &pr.boot).unwrap();
    assert_eq!(boot.slots(), 1 << 15);
    let mut prng = Prng::from_seed([9; 32]);
    let v: Vec<f64> = (0..boot.slots())
        .map(|_| (prng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        .collect();
    let enc = Encoder::new(&ctx);
    let ct = Encryptor::secret(&ctx)
        .encrypt_sk(&enc.encode(&v, 0, None).unwrap(), &sk)
        .unwrap();
    let out = boot.bootstrap(&ev, &ct).unwrap();
    assert_eq!(out.level, 9, "9 levels left for computation");
    let got = Decryptor::new(&ctx).decrypt(&out, &sk).unwrap();
    let bits = precision_bits(&got[..v.len()], &v);
    eprintln!("N=2^16 full-slot bootstrap: {bits:.2} bits mean");
    assert!(bits >= 20.0, "{bits:.2} bits");
    // The simulator agrees on level and scale.
    let sim = Simulator::new(&params);
    let meta = SimCiphertext {
        level: ct.level,
        scale: ct.scale,
        slots: ct.slots,
    };
    let s = Bootstrapper::new(&sim, &pr.boot)
        .unwrap()
        .bootstrap(&sim, &meta)
        .unwrap();
    assert_eq!((s.level, s.scale), (out.level, out.scale));
}
