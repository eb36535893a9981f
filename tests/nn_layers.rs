//! The polynomial side of the encrypted layers: every approximation against its exact function
//! (f64), and GELU, softmax, LayerNorm and argmax under encryption against their f64 twins (same
//! packing, polynomials and iterations) and the exact functions, plus the error cases.
//!
//! One insecure parameter set deep enough for the deepest layer (argmax, ~33 levels): N = 2^12,
//! 40 levels of 2^50. Each test encrypts at the level its layer needs (plus one), so the work
//! happens on short moduli.

use std::sync::{Arc, OnceLock};

use umbra::backend::Device;
use umbra::ckks::encoder::{precision_bits, precision_bits_min};
use umbra::ckks::{
    Ciphertext, CkksError, Context, Decryptor, Encoder, Encryptor, EvaluationKeys, Evaluator,
    KeyGenerator, Parameters, ParametersLiteral, PublicKey, SecretKey, Simulator,
};
use umbra::math::sampling::Prng;
use umbra::nn::approx::{self, Exp, InvSqrt, Inverse, PolyApprox, Sign};
use umbra::nn::argmax::{self, ArgmaxOptions};
use umbra::nn::attention::{self, AttentionOptions};
use umbra::nn::gelu;
use umbra::nn::layernorm::{self, LayerNormOptions};
use umbra::nn::softmax::{self, Shift, SoftmaxOptions};
use umbra::nn::Layout;

struct Fixture {
    ctx: Arc<Context>,
    sk: SecretKey,
    pk: PublicKey,
    evk: Arc<EvaluationKeys>,
}

/// Tokens x features layouts the tests use (64 and 32 slots).
fn layout(tokens: usize, features: usize, slots: usize) -> Layout {
    Layout::new(tokens, features, slots).unwrap()
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let params = Parameters::new(ParametersLiteral {
            name: "N12_L40_S50_nn_layers_insecure".into(),
            log_n: 12,
            log_q0: 60,
            levels: 40,
            log_scale: 50,
            dnum: 6,
            ..Default::default()
        })
        .unwrap();
        let ctx = Context::new(params, Device::Cpu).unwrap();
        let mut kg = KeyGenerator::from_seed(&ctx, [7; 32]);
        let sk = kg.gen_secret_key();
        let pk = kg.gen_public_key(&sk);
        let mut rots = softmax::rotations(&layout(8, 12, 64), 1);
        rots.extend(layernorm::rotations(&layout(8, 8, 32)));
        rots.extend(argmax::rotations(4));
        rots.extend(attention::rotations(&layout(16, 32, 256), 2).unwrap());
        rots.extend(attention::rotations(&Layout::batched(2, 8, 32, 256).unwrap(), 2).unwrap());
        rots.sort();
        rots.dedup();
        let evk = Arc::new(kg.gen_evaluation_keys(&sk, &rots, false));
        Fixture { ctx, sk, pk, evk }
    })
}

fn evaluator() -> Evaluator {
    let f = fixture();
    Evaluator::new(&f.ctx, f.evk.clone()).unwrap()
}

fn encrypt(v: &[f64], level: usize) -> Ciphertext {
    let f = fixture();
    let pt = Encoder::new(&f.ctx).encode(v, level, None).unwrap();
    Encryptor::new(&f.ctx, &f.pk).unwrap().encrypt(&pt).unwrap()
}

fn decrypt(ct: &Ciphertext) -> Vec<f64> {
    let f = fixture();
    let mut v = Decryptor::new(&f.ctx).decrypt(ct, &f.sk).unwrap();
    v.truncate(ct.slots);
    v
}

/// Uniform values in [lo, hi].
fn uniform(n: usize, lo: f64, hi: f64, seed: u8) -> Vec<f64> {
    let mut p = Prng::from_seed([seed; 32]);
    (0..n)
        .map(|_| lo + (hi - lo) * (p.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
        .collect()
}

fn matrix(rows: usize, cols: usize, lo: f64, hi: f64, seed: u8) -> Vec<Vec<f64>> {
    uniform(rows * cols, lo, hi, seed)
        .chunks(cols)
        .map(|c| c.to_vec())
        .collect()
}

fn flat(x: &[Vec<f64>]) -> Vec<f64> {
    x.iter().flatten().copied().collect()
}

/// Mean-error bits, worst-case bits and worst error relative to the largest |want|.
fn measure(got: &[f64], want: &[f64]) -> (f64, f64, f64) {
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let peak = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
    (
        precision_bits(got, want),
        precision_bits_min(got, want),
        -(worst / peak).max(f64::MIN_POSITIVE).log2(),
    )
}

/// Runs a layer on the simulator (from the given input metadata) and checks that it predicts the
/// evaluator's output level and scale.
fn check_sim(c: &[Ciphertext], out: &[Ciphertext], sim_out: &[umbra::ckks::SimCiphertext]) {
    assert_eq!(sim_out.len(), out.len());
    for (s, o) in sim_out.iter().zip(out) {
        assert_eq!(
            (s.level, s.scale),
            (o.level, o.scale),
            "simulator vs evaluator"
        );
    }
    assert!(!c.is_empty());
}

fn sim_inputs(cts: &[Ciphertext]) -> Vec<umbra::ckks::SimCiphertext> {
    umbra::nn::chain::metas(&evaluator(), cts)
}

/// Encrypted vs twin (>= min_bits mean, >= min_bits - 4 worst case) and twin vs exact.
fn report(name: &str, got: &[f64], twin: &[f64], exact: &[f64], min_bits: f64, min_exact: f64) {
    let (tb, tw, tr) = measure(got, twin);
    let (eb, ew, er) = measure(twin, exact);
    let (gb, _, _) = measure(got, exact);
    eprintln!(
        "{name}: encrypted vs twin {tb:.1} bits mean, {tw:.1} worst, {tr:.1} relative; twin vs exact {eb:.1} mean, {ew:.1} worst, {er:.1} relative; encrypted vs exact {gb:.1}"
    );
    assert!(tb >= min_bits, "{name}: {tb:.1} bits vs twin");
    assert!(
        tw >= min_bits - 4.0,
        "{name}: worst case {tw:.1} bits vs twin"
    );
    assert!(eb >= min_exact, "{name}: twin only {eb:.1} bits vs exact");
    assert!(
        gb >= min_exact.min(min_bits) - 1.0,
        "{name}: {gb:.1} bits vs exact"
    );
}

// ---------------------------------------------------------------------------------------------
// The approximations in f64.

fn grid(a: f64, b: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| a + (b - a) * i as f64 / (n - 1) as f64)
        .collect()
}

fn log_grid(a: f64, b: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| a * (b / a).powf(i as f64 / (n - 1) as f64))
        .collect()
}

#[test]
fn approximations_against_exact_functions() {
    // GELU: both forms on [-16, 16].
    for (g, min) in [
        (gelu::default_erf().unwrap(), 30.0),
        (gelu::default_tanh().unwrap(), 25.0),
    ] {
        let xs = grid(-16.0, 16.0, 5001);
        let got: Vec<f64> = xs.iter().map(|&x| g.twin(x).unwrap()).collect();
        let want: Vec<f64> = xs.iter().map(|&x| (g.exact)(x)).collect();
        let (mean, worst, _) = measure(&got, &want);
        eprintln!(
            "{} degree {} on [-16, 16]: {mean:.1} bits mean, {worst:.1} worst",
            g.name,
            g.degree()
        );
        assert!(worst >= min, "{}: {worst:.1} bits", g.name);
        assert_eq!(g.twin(0.0).unwrap(), 0.0, "padding stays zero");
        assert!(matches!(g.twin(16.5), Err(CkksError::OutOfRange(_))));
    }
    // The erf used by the exact GELU (no std erf): spot values.
    assert!((approx::erf(0.5) - 0.520_499_877_813_046_5).abs() < 1e-15);
    assert!((approx::erf(-2.0) + 0.995_322_265_018_952_7).abs() < 1e-15);

    // exp on [-64, 0].
    let e = Exp::new(
        Exp::DEFAULT_RANGE,
        Exp::DEFAULT_SQUARINGS,
        Exp::DEFAULT_DEGREE,
    )
    .unwrap();
    let xs = grid(-64.0, 0.0, 5001);
    let got: Vec<f64> = xs.iter().map(|&x| e.twin(x).unwrap()).collect();
    let want: Vec<f64> = xs.iter().map(|&x| x.exp()).collect();
    let (mean, worst, _) = measure(&got, &want);
    eprintln!("exp on [-64, 0]: {mean:.1} bits mean, {worst:.1} worst");
    assert!(worst >= 17.0);
    assert!(matches!(e.twin(0.5), Err(CkksError::OutOfRange(_))));
    assert!(matches!(e.twin(-65.0), Err(CkksError::OutOfRange(_))));

    // 1/x: the relative error meets its bound over the whole interval.
    for (a, b) in [(1.0, 128.0), (0.02, 12.0)] {
        let inv = Inverse::auto(a, b, 24.0).unwrap();
        let worst = log_grid(a, b, 4001)
            .iter()
            .map(|&x| (inv.twin(x).unwrap() * x - 1.0).abs())
            .fold(0.0, f64::max);
        eprintln!(
            "1/x on [{a}, {b}]: guess degree {} (relative error {:.3}), {} iterations: worst relative {worst:.2e}",
            inv.guess.degree(),
            inv.guess_error,
            inv.iterations
        );
        assert!(worst <= inv.error_bound().max(1e-14) * 1.01 && worst <= 2f64.powi(-24));
        assert!(matches!(inv.twin(b * 1.1), Err(CkksError::OutOfRange(_))));
    }
    assert!(Inverse::new(0.0, 1.0, 6, 2).is_err());
    assert!(Inverse::new(2.0, 1.0, 6, 2).is_err());

    // 1/sqrt on LayerNorm's default interval.
    let s = InvSqrt::layernorm_default().unwrap();
    let (a, b) = InvSqrt::DEFAULT_INTERVAL;
    let worst = log_grid(a, b, 4001)
        .iter()
        .map(|&x| (s.twin(x).unwrap() * x.sqrt() - 1.0).abs())
        .fold(0.0, f64::max);
    eprintln!(
        "1/sqrt on [{a}, {b}]: guess degree {} (relative error {:.3}), {} Newton steps: worst relative {worst:.2e}",
        s.guess.degree(),
        s.guess_error,
        s.iterations
    );
    assert!(s.guess_error < 0.5 && worst <= 2f64.powi(-24));
    assert!(matches!(s.twin(0.1), Err(CkksError::OutOfRange(_))));

    // sign: within 2^-12 of +-1 outside the gap, odd, and bounded by 1 inside it.
    for gap in [0.25, 0.05, 1.0 / 128.0] {
        let sg = Sign::new(gap, 12.0).unwrap();
        let outside = log_grid(gap, 1.0, 4001);
        let worst = outside
            .iter()
            .map(|&x| {
                (sg.twin(x).unwrap() - 1.0)
                    .abs()
                    .max((sg.twin(-x).unwrap() + 1.0).abs())
            })
            .fold(0.0, f64::max);
        let inside = grid(-gap, gap, 401)
            .iter()
            .map(|&x| sg.twin(x).unwrap().abs())
            .fold(0.0, f64::max);
        eprintln!(
            "sign with gap {gap}: stages {:?}, worst {:.1} bits outside the gap",
            sg.kinds,
            -worst.log2()
        );
        assert!(worst <= 2f64.powi(-12) && inside <= 1.0 + 1e-9);
        let step = sg.clone().into_step();
        assert!((step.twin(gap).unwrap() - 1.0).abs() <= 2f64.powi(-12));
        assert!(step.twin(-gap).unwrap().abs() <= 2f64.powi(-12));
        assert!(matches!(sg.twin(1.5), Err(CkksError::OutOfRange(_))));
    }
    assert!(Sign::new(0.0, 12.0).is_err() && Sign::new(1.5, 12.0).is_err());
    assert!(PolyApprox::new("bad", f64::exp, 1.0, -1.0, 4).is_err());
}

/// Depth and levels of every layer, predicted on the simulator, against what the layer reports.
#[test]
fn layer_depths() {
    let p = &fixture().ctx.params;
    let l = layout(8, 12, 64);
    let g = gelu::default_erf().unwrap();
    let sm = SoftmaxOptions::row_mean(12, 4.0, false).unwrap();
    let ln = LayerNormOptions::new(1e-5).unwrap();
    let am = ArgmaxOptions::new(8.0, 4.0, 12.0).unwrap();
    let dg = g.poly.depth(p).unwrap();
    let ds = softmax::depth(p, &l, &sm).unwrap();
    let dl = layernorm::depth(p, &l, &ln).unwrap();
    let da = argmax::depth(p, 4, &am).unwrap();
    eprintln!("levels: gelu {dg}, softmax {ds}, layernorm {dl}, argmax(4 logits) {da}");
    let exp_depth = 1 + sm.exp.unit_poly().depth(p).unwrap() + sm.exp.squarings as usize;
    assert!(ds > exp_depth && dl >= 4 + 2 * ln.inv_sqrt.iterations);
    // Too few levels: an error up front, from the simulator.
    let sim = Simulator::new(p);
    let low = vec![sim.fresh(ds - 1, 64); 2];
    assert!(matches!(
        softmax::softmax(&sim, &l, &low, &sm),
        Err(CkksError::LevelsExhausted(_))
    ));
    let low = vec![sim.fresh(dl - 1, 64); 2];
    let ones = vec![1.0; 12];
    assert!(matches!(
        layernorm::layernorm(&sim, &l, &low, &ones, &ones, &ln),
        Err(CkksError::LevelsExhausted(_))
    ));
    assert!(matches!(
        argmax::argmax(&sim, &sim.fresh(da - 1, 4), &am),
        Err(CkksError::LevelsExhausted(_))
    ));
    assert!(matches!(
        gelu::gelu(&sim, &l, &[sim.fresh(dg - 1, 64); 2], &g),
        Err(CkksError::LevelsExhausted(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Encrypted layers.

#[test]
fn gelu_encrypted_matches_twin_and_exact() {
    let ev = evaluator();
    let p = &fixture().ctx.params;
    let l = layout(8, 12, 64);
    for (g, seed) in [
        (gelu::default_erf().unwrap(), 1u8),
        (gelu::default_tanh().unwrap(), 2),
    ] {
        let x = matrix(8, 12, -16.0, 16.0, seed);
        let packed = l.pack(&x).unwrap();
        let level = g.poly.depth(p).unwrap() + 1;
        let cts: Vec<Ciphertext> = packed.iter().map(|v| encrypt(v, level)).collect();
        let out = gelu::gelu(&ev, &l, &cts, &g).unwrap();
        let sim = Simulator::new(p);
        check_sim(
            &cts,
            &out,
            &gelu::gelu(&sim, &l, &sim_inputs(&cts), &g).unwrap(),
        );
        let got = l
            .unpack(&out.iter().map(decrypt).collect::<Vec<_>>())
            .unwrap();
        let twin_slots = gelu::gelu_twin(&l, &packed, &g).unwrap();
        let twin = l.unpack(&twin_slots).unwrap();
        let exact = gelu::gelu_exact(&x, &g);
        eprintln!("{}: {} levels", g.name, level - out[0].level);
        report(g.name, &flat(&got), &flat(&twin), &flat(&exact), 12.0, 25.0);
        // Padding columns stay (near) zero.
        let pad = &decrypt(&out[1])[4 * 8..];
        assert!(pad.iter().all(|v| v.abs() < 1e-3), "padding {pad:?}");
        // The twin rejects inputs outside the interval.
        let mut bad = packed.clone();
        bad[0][3] = 17.0;
        assert!(matches!(
            gelu::gelu_twin(&l, &bad, &g),
            Err(CkksError::OutOfRange(_))
        ));
    }
    // Wrong number of ciphertexts.
    let g = gelu::default_erf().unwrap();
    let ct = encrypt(&vec![0.0; 64], 9);
    assert!(matches!(
        gelu::gelu(&ev, &l, &[ct], &g),
        Err(CkksError::Invalid(_))
    ));
}

fn run_softmax(name: &str, l: &Layout, x: &[Vec<f64>], o: &SoftmaxOptions) {
    let ev = evaluator();
    let p = &fixture().ctx.params;
    let packed = l.pack(x).unwrap();
    let level = softmax::depth(p, l, o).unwrap() + 1;
    let cts: Vec<Ciphertext> = packed.iter().map(|v| encrypt(v, level)).collect();
    let out = softmax::softmax(&ev, l, &cts, o).unwrap();
    let sim = Simulator::new(p);
    check_sim(
        &cts,
        &out,
        &softmax::softmax(&sim, l, &sim_inputs(&cts), o).unwrap(),
    );
    let got = l
        .unpack(&out.iter().map(decrypt).collect::<Vec<_>>())
        .unwrap();
    let twin = l
        .unpack(&softmax::softmax_twin(l, &packed, o).unwrap())
        .unwrap();
    let exact = softmax::softmax_exact(l, x, o.causal);
    eprintln!(
        "{name}: {} levels (inverse: guess degree {}, {} iterations)",
        level - out[0].level,
        o.inverse.guess.degree(),
        o.inverse.iterations
    );
    report(name, &flat(&got), &flat(&twin), &flat(&exact), 12.0, 16.0);
    // Rows sum to 1; masked entries are 0.
    for (t, row) in got.iter().enumerate() {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-3, "row {t}");
        if o.causal {
            assert!(
                row[t + 1..].iter().all(|v| v.abs() < 1e-4),
                "row {t} {row:?}"
            );
        }
    }
}

#[test]
fn softmax_row_mean_shift() {
    // Scores in [-2, 2]: max - mean <= 4.
    let l = layout(8, 12, 64);
    let x = matrix(8, 12, -2.0, 2.0, 3);
    let o = SoftmaxOptions::row_mean(12, 4.0, false).unwrap();
    run_softmax("softmax (row mean + 4)", &l, &x, &o);
    // A score too far above the mean leaves exp's interval: the twin says so.
    let mut bad = x.clone();
    bad[2][5] = 30.0;
    assert!(matches!(
        softmax::softmax_twin(&l, &l.pack(&bad).unwrap(), &o),
        Err(CkksError::OutOfRange(_))
    ));
}

#[test]
fn softmax_wide_scores_normalized_squarings_and_padding_keys() {
    // Scores spanning 32 with rows whose max - mean reaches ~12 (MiniLM's layer 0 reaches 42):
    // after a row-mean shift their sums span e^-15 .. 12; one normalized squaring (HETAL)
    // brings the first sums to [e^-7.5, 12], the interval of the default inverse. (Two rounds
    // take more levels than this 40-level fixture has without bootstrapping; the encrypted
    // MiniLM test runs three in layer 0.) Keys 9, 10, 11 are padding (masked by the real
    // length).
    let l = layout(8, 12, 64);
    let mut x = matrix(8, 12, -2.0, 2.0, 5);
    for (t, row) in x.iter_mut().enumerate() {
        row[t % 9] = 12.0 - t as f64;
        row[(t + 4) % 9] = -18.0;
        // Padding keys may hold any score within the bootstrap bound (here far above exp's
        // interval: 60 - shift > 0).
        row[10] = 60.0;
    }
    let mut o = SoftmaxOptions::attention_calibrated(12, 1, 15.0, 36.0, 1, false).unwrap();
    o.diagonal = false;
    o.valid_keys = Some(9);
    let ev = evaluator();
    let p = &fixture().ctx.params;
    let packed = l.pack(&x).unwrap();
    let level = p.max_level();
    let cts: Vec<Ciphertext> = packed.iter().map(|v| encrypt(v, level)).collect();
    let out = softmax::softmax(&ev, &l, &cts, &o).unwrap();
    let got = l
        .unpack(&out.iter().map(decrypt).collect::<Vec<_>>())
        .unwrap();
    let twin = l
        .unpack(&softmax::softmax_twin(&l, &packed, &o).unwrap())
        .unwrap();
    let real: Vec<Vec<f64>> = x.iter().map(|r| r[..9].to_vec()).collect();
    let exact: Vec<Vec<f64>> = softmax::softmax_exact(&layout(8, 9, 64), &real, false)
        .into_iter()
        .map(|mut r| {
            r.extend([0.0; 3]);
            r
        })
        .collect();
    eprintln!(
        "softmax, 1 normalized squaring: {} levels",
        level - out[0].level
    );
    report(
        "softmax (wide, 1 round, padding keys)",
        &flat(&got),
        &flat(&twin),
        &flat(&exact),
        12.0,
        16.0,
    );
    for (t, row) in got.iter().enumerate() {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-3, "row {t}");
        assert!(row[9..].iter().all(|v| v.abs() < 1e-4), "row {t}: {row:?}");
    }
    // Without the rounds the first sums would leave the inverse's interval: the twin says so.
    let mut narrow = o.clone();
    narrow.rounds = 0;
    narrow.round_inverse = None;
    assert!(matches!(
        softmax::softmax_twin(&l, &packed, &narrow),
        Err(CkksError::OutOfRange(_))
    ));
}

#[test]
fn softmax_causal_constant_bound() {
    // GPT-2: T = K = 8, causal mask, a public bound 3 >= every score, row max >= 3 - 5.
    let l = layout(8, 8, 32);
    let x = matrix(8, 8, -2.0, 2.0, 4);
    let o = SoftmaxOptions::constant(8, 3.0, 5.0, true).unwrap();
    assert_eq!(o.shift, Shift::Constant(3.0));
    run_softmax("softmax (causal, bound 3)", &l, &x, &o);
    // The mask: query t sees keys 0..=t.
    let m = l
        .pack(&l.unpack(&softmax::mask(&l, true)).unwrap())
        .unwrap();
    let rows = l.unpack(&m).unwrap();
    for (t, row) in rows.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            assert_eq!(v, if j <= t { 1.0 } else { 0.0 });
        }
    }
    // A row whose max is below bound - gap: its sum leaves the inverse's interval.
    let mut bad = x.clone();
    bad[0][0] = -2.5;
    assert!(matches!(
        softmax::softmax_twin(&l, &l.pack(&bad).unwrap(), &o),
        Err(CkksError::OutOfRange(_))
    ));
}

#[test]
fn layernorm_encrypted_matches_twin_and_exact() {
    let ev = evaluator();
    let p = &fixture().ctx.params;
    // D = 12 in ciphertexts of 8 columns: 4 padding columns.
    let l = layout(8, 12, 64);
    // Per-token spreads from ~1 to ~45 (variance ~1 to ~2000) and offsets.
    let mut x = matrix(8, 12, -1.0, 1.0, 5);
    for (t, row) in x.iter_mut().enumerate() {
        let sd = [1.5, 3.0, 8.0, 20.0, 45.0, 2.0, 60.0, 12.0][t];
        row.iter_mut()
            .for_each(|v| *v = *v * sd * 1.7 + t as f64 - 3.0);
    }
    let gamma = uniform(12, 0.5, 1.5, 6);
    let beta = uniform(12, -0.5, 0.5, 7);
    let mut o = LayerNormOptions::new(1e-5).unwrap();
    // Inputs reach |x| ~ 105: the bound a bootstrap of them would assume must cover that (the
    // twin checks it).
    o.bound = 128.0;
    let packed = l.pack(&x).unwrap();
    let twin_slots = layernorm::layernorm_twin(&l, &packed, &gamma, &beta, &o).unwrap();
    let mut tight = o.clone();
    tight.bound = 64.0;
    assert!(matches!(
        layernorm::layernorm_twin(&l, &packed, &gamma, &beta, &tight),
        Err(CkksError::OutOfRange(_))
    ));
    let level = layernorm::depth(p, &l, &o).unwrap() + 1;
    let cts: Vec<Ciphertext> = packed.iter().map(|v| encrypt(v, level)).collect();
    let out = layernorm::layernorm(&ev, &l, &cts, &gamma, &beta, &o).unwrap();
    let sim = Simulator::new(p);
    check_sim(
        &cts,
        &out,
        &layernorm::layernorm(&sim, &l, &sim_inputs(&cts), &gamma, &beta, &o).unwrap(),
    );
    let got = l
        .unpack(&out.iter().map(decrypt).collect::<Vec<_>>())
        .unwrap();
    let twin = l.unpack(&twin_slots).unwrap();
    let exact = layernorm::layernorm_exact(&x, &gamma, &beta, 1e-5);
    eprintln!(
        "layernorm: {} levels (1/sqrt guess degree {}, {} Newton steps)",
        level - out[0].level,
        o.inv_sqrt.guess.degree(),
        o.inv_sqrt.iterations
    );
    report(
        "layernorm",
        &flat(&got),
        &flat(&twin),
        &flat(&exact),
        12.0,
        20.0,
    );
    // Padding columns are zero again.
    let pad = &decrypt(&out[1])[4 * 8..];
    assert!(pad.iter().all(|v| v.abs() < 1e-3), "padding {pad:?}");
    // Errors: a constant row (variance 0) is outside [0.5, 2500]; gamma of the wrong length.
    let mut flat_row = x.clone();
    flat_row[3] = vec![2.0; 12];
    assert!(matches!(
        layernorm::layernorm_twin(&l, &l.pack(&flat_row).unwrap(), &gamma, &beta, &o),
        Err(CkksError::OutOfRange(_))
    ));
    assert!(matches!(
        layernorm::layernorm(&ev, &l, &cts, &gamma[..11], &beta, &o),
        Err(CkksError::Invalid(_))
    ));
}

#[test]
fn argmax_encrypted_one_hot() {
    let ev = evaluator();
    let p = &fixture().ctx.params;
    // Logits in [-8, 8], the top one ahead by >= 4.
    let o = ArgmaxOptions::new(8.0, 4.0, 12.0).unwrap();
    let level = argmax::depth(p, 4, &o).unwrap() + 1;
    for logits in [
        vec![-3.0, 5.5, 1.2],
        vec![7.9, -8.0, 3.9, 0.0],
        vec![-7.0, -6.0, -2.0, -7.5],
    ] {
        let packed = argmax::pack_logits(&logits, 8.0).unwrap();
        let ct = encrypt(&packed, level);
        let out = argmax::argmax(&ev, &ct, &o).unwrap();
        let sim = Simulator::new(p);
        check_sim(
            std::slice::from_ref(&ct),
            std::slice::from_ref(&out),
            &[argmax::argmax(&sim, &sim_inputs(std::slice::from_ref(&ct))[0], &o).unwrap()],
        );
        let got = decrypt(&out);
        let twin = argmax::argmax_twin(&packed, &o).unwrap();
        let exact = argmax::argmax_exact(&logits);
        eprintln!(
            "argmax {logits:?}: {} levels, got {got:.4?}",
            level - out.level
        );
        report("argmax", &got, &twin, &exact, 12.0, 12.0);
        let top = exact.iter().position(|&v| v == 1.0).unwrap();
        let best = got
            .iter()
            .enumerate()
            .fold((0, f64::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
        assert_eq!(best.0, top);
    }
    assert!(argmax::pack_logits(&[9.0], 8.0).is_err());
    assert!(ArgmaxOptions::new(8.0, 0.0, 12.0).is_err());
}

fn run_attention(name: &str, l: &Layout, heads: usize, causal: bool, seed: u8) {
    let p = &fixture().ctx.params;
    let o = AttentionOptions::new(l, heads, 8.0, 2.0, causal).unwrap();
    let d = attention::depth(p, l, &o).unwrap();
    let (t, dm) = (l.tokens, l.features);
    let q = matrix(t, dm, -1.5, 1.5, seed);
    let k = matrix(t, dm, -1.5, 1.5, seed + 1);
    let v = matrix(t, dm, -1.0, 1.0, seed + 2);
    let (qs, ks, vs) = (
        l.pack(&q).unwrap(),
        l.pack(&k).unwrap(),
        l.pack(&v).unwrap(),
    );
    let enc = |x: &[Vec<f64>]| -> Vec<Ciphertext> { x.iter().map(|s| encrypt(s, d + 1)).collect() };
    let (qc, kc, vc) = (enc(&qs), enc(&ks), enc(&vs));
    let eval = evaluator();
    let out = attention::attention(&eval, l, &qc, &kc, &vc, &o).unwrap();
    let sim = Simulator::new(p);
    let sim_out = attention::attention(
        &sim,
        l,
        &sim_inputs(&qc),
        &sim_inputs(&kc),
        &sim_inputs(&vc),
        &o,
    )
    .unwrap();
    check_sim(&qc, &out, &sim_out);
    let got: Vec<Vec<f64>> = out.iter().map(decrypt).collect();
    let twin = attention::attention_twin(l, &qs, &ks, &vs, &o).unwrap();
    let exact = attention::attention_exact(&q, &k, &v, heads, l.tokens_per_input(), causal);
    let got = l.unpack(&got).unwrap();
    let twin = l.unpack(&twin).unwrap();
    eprintln!("{name}: depth {d}");
    report(name, &flat(&got), &flat(&twin), &flat(&exact), 12.0, 8.0);
}

/// Q K^T, softmax (per head, diagonal order) and A V under encryption against the twin (exact
/// products, same approximations) and true attention; two query and two score ciphertexts.
#[test]
fn attention_encrypted_matches_twin_and_exact() {
    run_attention("attention", &layout(16, 32, 256), 2, false, 40);
}

/// GPT-2's causal attention on a batch of two inputs (token rotations stay within each input).
#[test]
fn attention_causal_batched() {
    run_attention(
        "attention causal batch",
        &Layout::batched(2, 8, 32, 256).unwrap(),
        2,
        true,
        50,
    );
}
