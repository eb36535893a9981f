//! Polynomial evaluation against f64 (its Chebyshev twin and the exact function), and the
//! simulator's level/scale predictions against the real evaluator.

mod common;

use common::{keys, uniform, INSECURE};
use umbra::ckks::encoder::precision_bits;
use umbra::ckks::polynomial::evaluate;
use umbra::ckks::{
    Chebyshev, Circuit, CkksError, Decryptor, Encoder, Encryptor, Evaluator, SimCiphertext,
    Simulator,
};

fn run(f: impl Fn(f64) -> f64 + Copy, a: f64, b: f64, degree: usize, min_bits: f64) {
    let k = keys(INSECURE);
    let p = &k.ctx.params;
    let poly = Chebyshev::interpolate(f, a, b, degree);
    let n = 256;
    let xs: Vec<f64> = uniform(n, degree as u8)
        .iter()
        .map(|u| a + (b - a) * (u + 1.0) / 2.0)
        .collect();
    let enc = Encoder::new(&k.ctx);
    let top = p.max_level();
    let ct = Encryptor::new(&k.ctx, &k.pk)
        .unwrap()
        .encrypt(&enc.encode(&xs, top, None).unwrap())
        .unwrap();
    let ev = Evaluator::new(&k.ctx, k.evk.clone()).unwrap();
    let target = p.default_scales[top - poly.depth(p).unwrap()];
    let out = evaluate(&ev, &ct, &poly, target).unwrap();
    assert_eq!(out.scale, target, "the result lands on the scale asked for");
    // The simulator predicts the same level and scale.
    let sim = Simulator::new(p);
    let meta = SimCiphertext {
        level: ct.level,
        scale: ct.scale,
        slots: ct.slots,
    };
    let sim_out = evaluate(&sim, &meta, &poly, target).unwrap();
    assert_eq!((sim_out.level, sim_out.scale), (out.level, out.scale));
    assert_eq!(sim.counts().total("mul") > 0, degree >= 2);
    let got = Decryptor::new(&k.ctx).decrypt(&out, &k.sk).unwrap();
    let got = &got[..n];
    let twin: Vec<f64> = xs.iter().map(|&x| poly.eval(x)).collect();
    let exact: Vec<f64> = xs.iter().map(|&x| f(x)).collect();
    let vs_twin = precision_bits(got, &twin);
    let vs_exact = precision_bits(got, &exact);
    eprintln!(
        "degree {degree} on [{a}, {b}]: {} levels, {vs_twin:.1} bits vs twin, {vs_exact:.1} vs exact",
        top - out.level
    );
    assert!(vs_twin >= min_bits, "{vs_twin:.1} bits vs twin");
    assert!(vs_exact >= min_bits - 2.0, "{vs_exact:.1} bits vs exact");
}

#[test]
fn sine_on_symmetric_interval() {
    run(|x| (2.0 * x).sin(), -3.0, 3.0, 30, 16.0);
}

#[test]
fn exp_on_shifted_interval() {
    run(|x| x.exp() / 8.0, -6.0, 2.0, 20, 16.0);
}

#[test]
fn sigmoid_and_unit_interval() {
    run(|x| 1.0 / (1.0 + (-4.0 * x).exp()), -1.0, 1.0, 15, 16.0);
}

#[test]
fn low_degrees_and_constants() {
    run(|x| 0.5 * x - 0.25, -2.0, 2.0, 1, 18.0);
    run(|x| x * x * x - x, -1.0, 1.0, 3, 18.0);
}

#[test]
fn depth_is_minimal_and_exhaustion_is_an_error() {
    let k = keys(INSECURE);
    let p = &k.ctx.params;
    // Degree 2^k - 2 on [-1, 1] costs exactly k levels.
    for (deg, levels) in [(2, 2), (6, 3), (14, 4), (30, 5)] {
        let poly = Chebyshev::interpolate(|x| (1.5 * x).cos(), -1.0, 1.0, deg);
        assert_eq!(poly.depth(p).unwrap(), levels, "degree {deg}");
    }
    // Too few levels: a clear error from the simulator, before any ciphertext work.
    let sim = Simulator::new(p);
    let low = sim.fresh(2, 8);
    let poly = Chebyshev::interpolate(|x| x.sin(), -1.0, 1.0, 30);
    let r = evaluate(&sim, &low, &poly, p.default_scales[0]);
    assert!(matches!(
        r,
        Err(CkksError::LevelsExhausted(_)) | Err(CkksError::Invalid(_))
    ));
    assert_eq!(sim.level(&low), 2);
}
