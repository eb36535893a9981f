//! Plaintext matrix x ciphertext (diagonal method, BSGS, hoisted rotations) against f64, eager
//! and lazy encodings, and the simulator's counts.

mod common;

use std::sync::Arc;

use common::{device, uniform};
use umbra::ckks::encoder::precision_bits;
use umbra::ckks::linear_transform::rotations_for;
use umbra::ckks::{
    Circuit, CkksError, Context, Decryptor, DiagMatrix, Encoder, Encryptor, Evaluator,
    KeyGenerator, LinearTransform, Parameters, SimCiphertext, Simulator,
};
use umbra::math::fft::C64;

fn complex(n: usize, seed: u8) -> Vec<C64> {
    let re = uniform(n, seed);
    let im = uniform(n, seed.wrapping_add(50));
    re.into_iter()
        .zip(im)
        .map(|(a, b)| C64::new(a, b))
        .collect()
}

#[test]
fn bsgs_matches_f64_for_dense_and_banded_matrices() {
    let params = Parameters::preset("N12_QP450_L6_S40_insecure").unwrap();
    let ctx = Context::new(params.clone(), device()).unwrap();
    let l = 64;
    // Dense random matrix (every diagonal) and a banded one with stride 4 (like an FFT level).
    let dense: Vec<Vec<C64>> = (0..l).map(|i| complex(l, i as u8)).collect();
    let dense = DiagMatrix::from_dense(&dense).unwrap();
    let mut banded = DiagMatrix {
        slots: l,
        diags: Default::default(),
    };
    for e in -7i64..=7 {
        banded.diags.insert(
            (e * 4).rem_euclid(l as i64) as usize,
            complex(l, (100 + e) as u8),
        );
    }
    let mut rots = rotations_for(&dense);
    rots.extend(rotations_for(&banded));
    let mut kg = KeyGenerator::new(&ctx);
    let sk = kg.gen_secret_key();
    let ev = Evaluator::new(&ctx, Arc::new(kg.gen_evaluation_keys(&sk, &rots, false))).unwrap();
    let enc = Encoder::new(&ctx);
    let dec = Decryptor::new(&ctx);
    let top = params.max_level();
    let x = complex(l, 200);
    let ct = Encryptor::secret(&ctx)
        .encrypt_sk(&enc.encode_complex(&x, top, None).unwrap(), &sk)
        .unwrap();
    for (name, m) in [("dense", &dense), ("banded", &banded)] {
        let want = m.apply(&x).unwrap();
        let mut outs = Vec::new();
        for lazy in [false, true] {
            let lt = LinearTransform::new(&ev, m, top, params.rescale_factor(top), lazy).unwrap();
            let out = lt.apply(&ev, &ct).unwrap();
            assert_eq!(out.level, top - 1);
            assert!((out.scale / ct.scale - 1.0).abs() < 1e-9);
            let got = dec.decrypt_complex(&out, &sk).unwrap();
            let flat = |v: &[C64]| v.iter().flat_map(|z| [z.re, z.im]).collect::<Vec<f64>>();
            // Entries of the product reach ~8 (dense 64 x 64): bits relative to that.
            let bits = precision_bits(&flat(&got), &flat(&want));
            eprintln!("{name} lazy={lazy}: {bits:.1} bits");
            assert!(bits >= 20.0, "{name}: {bits:.1} bits");
            outs.push(got);
            // The simulator predicts the level, scale and rotation count.
            let sim = Simulator::new(&params);
            let slt = LinearTransform::new(&sim, m, top, params.rescale_factor(top), lazy).unwrap();
            let meta = SimCiphertext {
                level: ct.level,
                scale: ct.scale,
                slots: ct.slots,
            };
            let s = slt.apply(&sim, &meta).unwrap();
            assert_eq!((s.level, s.scale), (out.level, out.scale));
            let c = sim.counts();
            assert_eq!(
                c.total("hoisted_rotation") + c.total("rotate"),
                lt.rotations().len()
            );
            // BSGS: far fewer rotations than diagonals for the dense matrix.
            if name == "dense" {
                assert!(lt.rotations().len() <= 20, "{}", lt.rotations().len());
            }
        }
        let same = outs[0]
            .iter()
            .zip(&outs[1])
            .all(|(a, b)| a.sub(*b).abs() < 1e-9);
        assert!(same, "lazy and eager encodings agree");
    }
    // Wrong level or slot count: errors.
    let lt = LinearTransform::new(&ev, &banded, top - 1, 1e12, false).unwrap();
    assert!(matches!(
        lt.apply(&ev, &ct),
        Err(CkksError::LevelMismatch(..))
    ));
    let small = Encryptor::secret(&ctx)
        .encrypt_sk(&enc.encode_complex(&x[..32], top, None).unwrap(), &sk)
        .unwrap();
    let lt = LinearTransform::new(&ev, &banded, top, 1e12, false).unwrap();
    assert!(matches!(
        lt.apply(&ev, &small),
        Err(CkksError::SlotMismatch(..))
    ));
    // A missing rotation key is an error, not a panic.
    let bare = Evaluator::new(&ctx, Arc::new(kg.gen_evaluation_keys(&sk, &[], false))).unwrap();
    assert!(matches!(
        lt.apply(&bare, &ct),
        Err(CkksError::MissingKey(_))
    ));
    assert_eq!(ev.level(&ct), top);
}
