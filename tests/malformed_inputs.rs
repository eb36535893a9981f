//! Degenerate user-built values (empty, zero, mismatched lengths, NaN/inf, a >= b, non-powers of
//! two, offsets >= slots) at every public constructor and entry point that takes them: each call
//! must return `Err`, never panic. One test per type; each collects every case that panicked or
//! was accepted, so a failure lists them all.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use umbra::backend::Device;
use umbra::ckks::linear_transform::rotations_for;
use umbra::ckks::polynomial::evaluate;
use umbra::ckks::{
    Chebyshev, CkksError, Context, DiagMatrix, Evaluator, KeyGenerator, LinearTransform,
    Parameters, ParametersLiteral, Simulator,
};
use umbra::math::fft::C64;
use umbra::nn::approx::{self, Exp, InvSqrt, Inverse, PolyApprox, Sign};
use umbra::nn::argmax::{self, ArgmaxOptions};
use umbra::nn::attention::{self, AttentionOptions};
use umbra::nn::block::{Block, BlockKind, BlockWeights};
use umbra::nn::chain;
use umbra::nn::layernorm::{self, LayerNormOptions};
use umbra::nn::matmul::{linear, Linear};
use umbra::nn::softmax::{self, Shift, SoftmaxOptions};
use umbra::nn::{gelu, packing, Layout};

const NAN: f64 = f64::NAN;
const INF: f64 = f64::INFINITY;

/// Runs each case under `catch_unwind` and records those that panicked or returned `Ok`.
#[derive(Default)]
struct Cases {
    failures: Vec<String>,
}

impl Cases {
    fn err<T>(&mut self, what: &str, f: impl FnOnce() -> Result<T, CkksError>) {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Err(_)) => {}
            Ok(Ok(_)) => self.failures.push(format!("{what}: accepted")),
            Err(p) => self
                .failures
                .push(format!("{what}: panicked: {}", message(&p))),
        }
    }

    /// For the infallible helpers: they must not panic.
    fn no_panic<T>(&mut self, what: &str, f: impl FnOnce() -> T) {
        if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
            self.failures
                .push(format!("{what}: panicked: {}", message(&p)));
        }
    }

    fn check(self) {
        assert!(
            self.failures.is_empty(),
            "{} case(s) failed:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

fn message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn params() -> Arc<Parameters> {
    Parameters::preset("N12_QP450_L6_S40_insecure").unwrap()
}

fn cheb(coeffs: Vec<f64>, a: f64, b: f64) -> Chebyshev {
    Chebyshev { coeffs, a, b }
}

/// Copies of a valid value, each with one edit that makes it malformed.
fn variants<T: Clone>(good: &T, edits: &[(&'static str, fn(&mut T))]) -> Vec<(&'static str, T)> {
    edits
        .iter()
        .map(|&(name, edit)| {
            let mut v = good.clone();
            edit(&mut v);
            (name, v)
        })
        .collect()
}

fn bad_chebyshevs() -> Vec<(&'static str, Chebyshev)> {
    vec![
        ("empty", cheb(vec![], -1.0, 1.0)),
        ("NaN coefficient", cheb(vec![1.0, NAN], -1.0, 1.0)),
        ("inf coefficient", cheb(vec![INF, 1.0], -1.0, 1.0)),
        ("a = b", cheb(vec![1.0, 1.0], 1.0, 1.0)),
        ("a > b", cheb(vec![1.0, 1.0], 2.0, 1.0)),
        ("NaN a", cheb(vec![1.0, 1.0], NAN, 1.0)),
        ("inf b", cheb(vec![1.0, 1.0], -1.0, INF)),
    ]
}

#[test]
fn chebyshev() {
    let p = params();
    let sim = Simulator::new(&p);
    let top = p.max_level();
    let x = sim.fresh(top, 8);
    let mut c = Cases::default();
    for (name, poly) in bad_chebyshevs() {
        c.err(&format!("{name}: validate"), || poly.validate());
        c.err(&format!("{name}: evaluate"), || {
            evaluate(&sim, &x, &poly, p.default_scales[top - 3])
        });
        c.err(&format!("{name}: depth"), || poly.depth(&p));
        c.err(&format!("{name}: poly_depth"), || {
            chain::poly_depth(&sim, &poly)
        });
        c.no_panic(&format!("{name}: eval"), || poly.eval(0.5));
        c.no_panic(&format!("{name}: max_error"), || poly.max_error(|x| x, 0));
    }
    let good = cheb(vec![0.5, 1.0], -1.0, 1.0);
    for t in [NAN, 0.0, -1.0, INF] {
        c.err(&format!("target scale {t}"), || {
            evaluate(&sim, &x, &good, t)
        });
    }
    c.check();
}

#[test]
fn diag_matrix() {
    let p = params();
    let ctx = Context::new(p.clone(), Device::Cpu).unwrap();
    let mut kg = KeyGenerator::from_seed(&ctx, [1; 32]);
    let sk = kg.gen_secret_key();
    let ev = Evaluator::new(&ctx, Arc::new(kg.gen_evaluation_keys(&sk, &[], false))).unwrap();
    let sim = Simulator::new(&p);
    let top = p.max_level();
    let one = C64::new(1.0, 0.0);
    let dm = |slots: usize, d: usize, len: usize, z: C64| DiagMatrix {
        slots,
        diags: BTreeMap::from([(d, vec![z; len])]),
    };
    let mut c = Cases::default();
    let malformed = [
        ("0 slots", dm(0, 0, 0, one)),
        ("short diagonal", dm(8, 0, 4, one)),
        ("long diagonal", dm(8, 1, 16, one)),
        ("offset = slots", dm(8, 8, 8, one)),
        ("offset > slots", dm(8, 9, 8, one)),
        ("NaN entry", dm(8, 0, 8, C64::new(NAN, 0.0))),
        ("inf entry", dm(8, 2, 8, C64::new(0.0, INF))),
    ];
    let x = vec![one; 8];
    for (name, m) in &malformed {
        c.err(&format!("{name}: validate"), || m.validate());
        c.err(&format!("{name}: LinearTransform::new (evaluator)"), || {
            LinearTransform::new(&ev, m, top, 1e12, false)
        });
        c.err(
            &format!("{name}: LinearTransform::new (simulator, lazy)"),
            || LinearTransform::new(&sim, m, top, 1e12, true),
        );
        c.err(&format!("{name}: apply"), || m.apply(&x));
        c.err(&format!("{name}: compose"), || m.compose(m));
        c.no_panic(&format!("{name}: rotations_for"), || rotations_for(m));
    }
    // Well-formed as a matrix, but not as a transform on these parameters.
    let good = dm(8, 1, 8, one);
    for (name, m, level, scale) in [
        ("6 slots (not a power of two)", dm(6, 4, 6, one), top, 1e12),
        (
            "2^20 slots (above N/2)",
            dm(1 << 20, 0, 1 << 20, one),
            top,
            1e12,
        ),
        (
            "no diagonals",
            DiagMatrix {
                slots: 8,
                diags: BTreeMap::new(),
            },
            top,
            1e12,
        ),
        ("level above the top", good.clone(), top + 1, 1e12),
        ("NaN scale", good.clone(), top, NAN),
        ("zero scale", good.clone(), top, 0.0),
    ] {
        c.err(
            &format!("{name}: LinearTransform::new (simulator, lazy)"),
            || LinearTransform::new(&sim, &m, level, scale, true),
        );
        c.err(&format!("{name}: LinearTransform::new (evaluator)"), || {
            LinearTransform::new(&ev, &m, level, scale, false)
        });
    }
    c.err("apply on a short vector", || good.apply(&x[..4]));
    c.err("compose of 8 and 4 slots", || {
        good.compose(&DiagMatrix::identity(4))
    });
    c.err("from_dense, ragged", || {
        DiagMatrix::from_dense(&[vec![one; 2], vec![one; 1]])
    });
    c.err("from_dense, empty", || DiagMatrix::from_dense(&[]));
    c.check();
}

#[test]
fn parameters_literal() {
    let base = ParametersLiteral {
        name: "malformed_insecure".into(),
        log_n: 10,
        log_q0: 60,
        levels: 2,
        log_scale: 40,
        dnum: 1,
        ..Default::default()
    };
    assert!(
        Parameters::new(base.clone()).is_ok(),
        "the base literal is valid"
    );
    let with = |f: &dyn Fn(&mut ParametersLiteral)| {
        let mut l = base.clone();
        f(&mut l);
        l
    };
    let mut c = Cases::default();
    let cases: Vec<(&str, ParametersLiteral)> = vec![
        ("log_n 0", with(&|l| l.log_n = 0)),
        ("log_n 3", with(&|l| l.log_n = 3)),
        ("log_n 18", with(&|l| l.log_n = 18)),
        ("log_n u32::MAX", with(&|l| l.log_n = u32::MAX)),
        ("log_q0 0", with(&|l| l.log_q0 = 0)),
        ("log_q0 u32::MAX", with(&|l| l.log_q0 = u32::MAX)),
        ("log_scale 0", with(&|l| l.log_scale = 0)),
        ("log_scale 91", with(&|l| l.log_scale = 91)),
        ("log_scale u32::MAX", with(&|l| l.log_scale = u32::MAX)),
        ("dnum 0", with(&|l| l.dnum = 0)),
        ("levels usize::MAX", with(&|l| l.levels = usize::MAX)),
        ("levels 100 000", with(&|l| l.levels = 100_000)),
        (
            "extra special primes usize::MAX",
            with(&|l| l.extra_special_primes = usize::MAX),
        ),
        (
            "extra special primes 10 000",
            with(&|l| l.extra_special_primes = 10_000),
        ),
        ("extra level of 0 bits", with(&|l| l.extra_log_q = vec![0])),
        (
            "extra level of u32::MAX bits",
            with(&|l| l.extra_log_q = vec![u32::MAX]),
        ),
        (
            "100 000 extra levels",
            with(&|l| l.extra_log_q = vec![40; 100_000]),
        ),
    ];
    for (name, lit) in cases {
        c.err(name, || Parameters::new(lit));
    }
    c.err("unknown preset", || Parameters::preset("no_such_preset"));
    c.check();
}

#[test]
fn layout() {
    let p = params();
    let sim = Simulator::new(&p);
    let top = p.max_level();
    let mut c = Cases::default();
    for (name, t, f, s) in [
        ("0 tokens", 0, 4, 64),
        ("3 tokens", 3, 4, 64),
        ("0 features", 4, 0, 64),
        ("0 slots", 4, 4, 0),
        ("48 slots", 4, 4, 48),
        ("tokens > slots", 128, 4, 64),
    ] {
        c.err(&format!("Layout::new, {name}"), || Layout::new(t, f, s));
    }
    c.err("batched, batch 0", || Layout::batched(0, 4, 4, 64));
    c.err("batched, batch 3", || Layout::batched(3, 4, 4, 64));
    c.err("batched, overflowing", || {
        Layout::batched(1 << 62, 1 << 62, 4, 64)
    });
    let good = Layout::new(4, 4, 16).unwrap();
    let bad = [
        ("0 tokens", Layout { tokens: 0, ..good }),
        ("0 per ciphertext", Layout { per_ct: 0, ..good }),
        ("3 per ciphertext", Layout { per_ct: 3, ..good }),
        (
            "0 features",
            Layout {
                features: 0,
                ..good
            },
        ),
        ("batch 0", Layout { batch: 0, ..good }),
        ("batch > tokens", Layout { batch: 8, ..good }),
        (
            "overflowing",
            Layout {
                tokens: 1 << 40,
                per_ct: 1 << 40,
                ..good
            },
        ),
    ];
    let v = vec![vec![0.0; 16]];
    let rows = vec![vec![0.0; 4]; 4];
    let ct = sim.fresh(top, 16);
    for (name, l) in &bad {
        c.err(&format!("{name}: validate"), || l.validate());
        c.err(&format!("{name}: pack"), || l.pack(&rows));
        c.err(&format!("{name}: unpack"), || l.unpack(&v));
        c.err(&format!("{name}: unbatch"), || l.unbatch(&rows));
        c.err(&format!("{name}: broadcast_features"), || {
            l.broadcast_features(0, &[1.0; 4], 0.0)
        });
        c.err(&format!("{name}: row_sum"), || {
            packing::row_sum(&sim, l, std::slice::from_ref(&ct))
        });
        c.err(&format!("{name}: group_sums"), || {
            packing::group_sums(&sim, l, std::slice::from_ref(&ct), 2)
        });
        c.err(&format!("{name}: group_sums_twin"), || {
            packing::group_sums_twin(l, &v, 2)
        });
        c.err(&format!("{name}: row_sum_twin"), || {
            packing::row_sum_twin(l, &v)
        });
        c.err(&format!("{name}: check_slots"), || {
            packing::check_slots(l, &v)
        });
        c.err(&format!("{name}: mask_with"), || {
            softmax::mask_with(l, true, 2, false)
        });
        c.err(&format!("{name}: gelu_twin"), || {
            gelu::gelu_twin(l, &v, &gelu::default_erf().unwrap())
        });
        c.err(&format!("{name}: head_dim"), || attention::head_dim(l, 1));
        c.no_panic(&format!("{name}: accessors"), || {
            (
                l.slots(),
                l.cts(),
                l.tokens_per_input(),
                softmax::mask(l, false),
            )
        });
    }
    c.err("broadcast_features, too few values", || {
        good.broadcast_features(0, &[1.0], 0.0)
    });
    c.err("mask_with, groups of 0", || {
        softmax::mask_with(&good, true, 0, false)
    });
    c.err("unbatch, wrong row count", || good.unbatch(&rows[..3]));
    c.check();
}

#[test]
fn linear_layer() {
    let p = params();
    let sim = Simulator::new(&p);
    let top = p.max_level();
    let layout = Layout::new(4, 4, 16).unwrap();
    let mut c = Cases::default();
    for (name, w, b) in [
        ("empty", vec![], vec![]),
        ("no outputs", vec![vec![]], vec![]),
        ("ragged", vec![vec![1.0; 4], vec![1.0; 3]], vec![0.0; 4]),
        ("bias too long", vec![vec![1.0; 4]], vec![0.0; 5]),
        ("NaN weight", vec![vec![NAN; 4]], vec![0.0; 4]),
        ("inf bias", vec![vec![1.0; 4]], vec![INF; 4]),
    ] {
        c.err(&format!("Linear::new, {name}"), || {
            Linear::new(w.clone(), b.clone())
        });
        // The same values built by hand, past the constructor.
        let lin = Linear { weight: w, bias: b };
        c.err(&format!("{name}: validate"), || lin.validate());
        c.err(&format!("{name}: linear"), || {
            linear(&sim, &layout, &[sim.fresh(top, 16)], &lin)
        });
        c.err(&format!("{name}: twin"), || lin.twin(&[vec![1.0; 4]]));
    }
    let lin = Linear::new(vec![vec![1.0; 4]; 4], vec![0.0; 4]).unwrap();
    c.err("twin on rows of the wrong length", || {
        lin.twin(&[vec![1.0; 3]])
    });
    c.err("linear on a malformed layout", || {
        linear(
            &sim,
            &Layout {
                per_ct: 3,
                ..layout
            },
            &[sim.fresh(top, 16)],
            &lin,
        )
    });
    c.err("linear on no ciphertexts", || {
        linear(&sim, &layout, &[], &lin)
    });
    c.check();
}

#[test]
fn argmax_options() {
    let p = params();
    let sim = Simulator::new(&p);
    let top = p.max_level();
    let mut c = Cases::default();
    for (b, g, bits) in [
        (NAN, 1.0, 8.0),
        (INF, 1.0, 8.0),
        (0.0, 1.0, 8.0),
        (-4.0, 1.0, 8.0),
        (4.0, 0.0, 8.0),
        (4.0, NAN, 8.0),
        (4.0, 8.0, 8.0),
        (4.0, 1.0, NAN),
        (4.0, 1.0, 0.0),
        (4.0, 1.0, INF),
    ] {
        c.err(&format!("new({b}, {g}, {bits})"), || {
            ArgmaxOptions::new(b, g, bits)
        });
    }
    c.err("pack_logits, NaN bound", || {
        argmax::pack_logits(&[1.0], NAN)
    });
    c.err("pack_logits, zero bound", || {
        argmax::pack_logits(&[0.0], 0.0)
    });
    c.err("pack_logits, no logits", || argmax::pack_logits(&[], 4.0));
    c.err("pack_logits, NaN logit", || {
        argmax::pack_logits(&[NAN], 4.0)
    });
    let good = ArgmaxOptions::new(4.0, 1.0, 8.0).unwrap();
    let mut bad: Vec<(&str, ArgmaxOptions)> = Vec::new();
    let mut o = good.clone();
    o.sign.stages = vec![cheb(vec![], -1.0, 1.0)];
    bad.push(("an empty sign stage", o));
    let mut o = good.clone();
    o.sign.stages.clear();
    o.sign.kinds.clear();
    bad.push(("no sign stages", o));
    let mut o = good.clone();
    o.step.kinds.pop();
    bad.push(("a kind missing", o));
    let mut o = good.clone();
    o.bound = NAN;
    bad.push(("NaN bound", o));
    let mut o = good.clone();
    o.step = o.sign.clone();
    bad.push(("a sign for the step", o));
    let x = sim.fresh(top, 4);
    for (name, o) in &bad {
        c.err(&format!("{name}: validate"), || o.validate());
        c.err(&format!("{name}: argmax"), || argmax::argmax(&sim, &x, o));
        c.err(&format!("{name}: argmax_in"), || {
            argmax::argmax_in(&sim, &x, o)
        });
        c.err(&format!("{name}: argmax_twin"), || {
            argmax::argmax_twin(&[0.0; 4], o)
        });
        c.err(&format!("{name}: depth"), || argmax::depth(&p, 4, o));
    }
    let mut s = good.sign.clone();
    s.stages.last_mut().unwrap().coeffs.clear();
    c.no_panic("into_step of an empty stage", || s.into_step());
    c.check();
}

#[test]
fn layernorm_options() {
    let p = params();
    let sim = Simulator::new(&p);
    let top = p.max_level();
    let mut c = Cases::default();
    for eps in [NAN, INF, -1.0] {
        c.err(&format!("new({eps})"), || LayerNormOptions::new(eps));
    }
    for (a, b, eps, bits) in [
        (NAN, 2.0, 0.0, 20.0),
        (2.0, 1.0, 0.0, 20.0),
        (0.0, 1.0, 0.0, 20.0),
        (0.5, INF, 0.0, 20.0),
        (0.5, 2.0, NAN, 20.0),
        (0.5, 2.0, 0.0, NAN),
        (0.5, 2.0, 0.0, 0.0),
    ] {
        c.err(&format!("with_interval({a}, {b}, {eps}, {bits})"), || {
            LayerNormOptions::with_interval(a, b, eps, bits)
        });
    }
    let good = LayerNormOptions::new(1e-5).unwrap();
    let layout = Layout::new(4, 4, 16).unwrap();
    let x = vec![sim.fresh(top, 16)];
    let v = vec![vec![1.0; 16]];
    let ones = vec![1.0; 4];
    let bad = variants(
        &good,
        &[
            ("NaN bound", |o| o.bound = NAN),
            ("zero bound", |o| o.bound = 0.0),
            ("NaN eps", |o| o.eps = NAN),
            ("empty guess", |o| o.inv_sqrt.guess.coeffs.clear()),
            ("inverse sqrt on [0, 1]", |o| o.inv_sqrt.a = 0.0),
            ("10^6 Newton steps", |o| o.inv_sqrt.iterations = 1_000_000),
        ],
    );
    for (name, o) in &bad {
        c.err(&format!("{name}: validate"), || o.validate());
        c.err(&format!("{name}: layernorm"), || {
            layernorm::layernorm(&sim, &layout, &x, &ones, &ones, o)
        });
        c.err(&format!("{name}: layernorm_in"), || {
            layernorm::layernorm_in(&sim, &layout, &x, &ones, &ones, o)
        });
        c.err(&format!("{name}: layernorm_twin"), || {
            layernorm::layernorm_twin(&layout, &v, &ones, &ones, o)
        });
        c.err(&format!("{name}: depth"), || {
            layernorm::depth(&p, &layout, o)
        });
    }
    for (name, g, b) in [
        ("NaN gamma", vec![NAN; 4], ones.clone()),
        ("inf beta", ones.clone(), vec![INF; 4]),
        ("short gamma", vec![1.0; 3], ones.clone()),
        ("long beta", ones.clone(), vec![1.0; 5]),
    ] {
        c.err(&format!("{name}: layernorm"), || {
            layernorm::layernorm(&sim, &layout, &x, &g, &b, &good)
        });
        c.err(&format!("{name}: layernorm_twin"), || {
            layernorm::layernorm_twin(&layout, &v, &g, &b, &good)
        });
    }
    c.check();
}

#[test]
fn softmax_options() {
    let p = params();
    let sim = Simulator::new(&p);
    let top = p.max_level();
    let mut c = Cases::default();
    c.err("constant, 0 keys", || {
        SoftmaxOptions::constant(0, 1.0, 1.0, false)
    });
    c.err("constant, NaN bound", || {
        SoftmaxOptions::constant(4, NAN, 1.0, false)
    });
    c.err("constant, inf bound", || {
        SoftmaxOptions::constant(4, INF, 1.0, false)
    });
    c.err("constant, NaN gap", || {
        SoftmaxOptions::constant(4, 1.0, NAN, false)
    });
    c.err("constant, gap beyond exp's range", || {
        SoftmaxOptions::constant(4, 1.0, 1e3, false)
    });
    c.err("row_mean, NaN", || SoftmaxOptions::row_mean(4, NAN, false));
    c.err("row_mean, negative", || {
        SoftmaxOptions::row_mean(4, -1.0, false)
    });
    c.err("attention, 0 heads", || {
        SoftmaxOptions::attention(4, 0, 2.0, false)
    });
    c.err("attention, 0 keys", || {
        SoftmaxOptions::attention(0, 1, 2.0, false)
    });
    let good = SoftmaxOptions::row_mean(4, 2.0, false).unwrap();
    let bad = variants(
        &good,
        &[
            ("0 heads", |o| o.heads = 0),
            ("NaN shift", |o| o.shift = Shift::Constant(NAN)),
            ("above beyond exp's range", |o| {
                o.shift = Shift::RowMean { above: 1e3 }
            }),
            ("empty exp polynomial", |o| o.exp.poly.coeffs.clear()),
            ("exp on another interval", |o| o.exp.range = 1.0),
            ("1000 squarings", |o| o.exp.squarings = 1000),
            ("inverse guess with NaN", |o| {
                o.inverse.guess.coeffs[0] = NAN
            }),
            ("inverse on [-1, 1]", |o| o.inverse.a = -1.0),
        ],
    );
    let layout = Layout::new(4, 4, 16).unwrap();
    let x = vec![sim.fresh(top, 16)];
    let v = vec![vec![0.0; 16]];
    for (name, o) in &bad {
        c.err(&format!("{name}: validate"), || o.validate());
        c.err(&format!("{name}: softmax"), || {
            softmax::softmax(&sim, &layout, &x, o)
        });
        c.err(&format!("{name}: softmax_in"), || {
            softmax::softmax_in(&sim, &layout, &x, o)
        });
        c.err(&format!("{name}: softmax_twin"), || {
            softmax::softmax_twin(&layout, &v, o)
        });
        c.err(&format!("{name}: depth"), || softmax::depth(&p, &layout, o));
    }
    c.check();
}

#[test]
fn attention_options() {
    let p = params();
    let sim = Simulator::new(&p);
    let top = p.max_level();
    let layout = Layout::new(4, 8, 64).unwrap();
    let mut c = Cases::default();
    c.err("new, 0 heads", || {
        AttentionOptions::new(&layout, 0, 8.0, 4.0, false)
    });
    c.err("new, 3 heads of 8 features", || {
        AttentionOptions::new(&layout, 3, 8.0, 4.0, false)
    });
    c.err("new, NaN bound", || {
        AttentionOptions::new(&layout, 2, 8.0, NAN, false)
    });
    c.err("new, zero bound", || {
        AttentionOptions::new(&layout, 2, 8.0, 0.0, false)
    });
    c.err("new, NaN above", || {
        AttentionOptions::new(&layout, 2, NAN, 4.0, false)
    });
    c.err("new, batch 0 layout", || {
        AttentionOptions::new(&Layout { batch: 0, ..layout }, 2, 8.0, 4.0, false)
    });
    c.err("new, 0 tokens layout", || {
        AttentionOptions::new(
            &Layout {
                tokens: 0,
                ..layout
            },
            2,
            8.0,
            4.0,
            false,
        )
    });
    let good = AttentionOptions::new(&layout, 2, 8.0, 4.0, false).unwrap();
    let bad = variants(
        &good,
        &[
            ("heads differ from softmax's", |o| o.heads = 1),
            ("0 heads", |o| o.heads = 0),
            ("NaN bound", |o| o.bound = NAN),
            ("softmax in key order", |o| o.softmax.diagonal = false),
            ("softmax with an empty exp", |o| {
                o.softmax.exp.poly.coeffs.clear()
            }),
        ],
    );
    let x = vec![sim.fresh(top, 64)];
    let v = vec![vec![0.0; 64]];
    for (name, o) in &bad {
        c.err(&format!("{name}: validate"), || o.validate());
        c.err(&format!("{name}: attention"), || {
            attention::attention(&sim, &layout, &x, &x, &x, o)
        });
        c.err(&format!("{name}: attention_in"), || {
            attention::attention_in(&sim, &layout, &x, &x, &x, o)
        });
        c.err(&format!("{name}: attention_twin"), || {
            attention::attention_twin(&layout, &v, &v, &v, o)
        });
        c.err(&format!("{name}: depth"), || {
            attention::depth(&p, &layout, o)
        });
    }
    c.err("attend_twin, too few score vectors", || {
        attention::attend_twin(&layout, &[], &v, 2)
    });
    c.check();
}

#[test]
fn approximations() {
    let p = params();
    let sim = Simulator::new(&p);
    let x = sim.fresh(p.max_level(), 8);
    let mut c = Cases::default();
    for (a, b, d) in [
        (NAN, 1.0, 7),
        (-1.0, INF, 7),
        (1.0, -1.0, 7),
        (1.0, 1.0, 7),
        (-1.0, 1.0, 0),
        (-1.0, 1.0, usize::MAX),
    ] {
        c.err(&format!("PolyApprox::new({a}, {b}, {d})"), || {
            PolyApprox::new("f", |x| x, a, b, d)
        });
    }
    c.err("gelu_erf, NaN bound", || approx::gelu_erf(NAN, 7));
    c.err("gelu_tanh, degree 0", || approx::gelu_tanh(4.0, 0));
    for (r, k, d) in [
        (NAN, 2, 7),
        (0.0, 2, 7),
        (-8.0, 2, 7),
        (INF, 2, 7),
        (8.0, 17, 7),
        (8.0, 2, 0),
        (8.0, 2, usize::MAX),
    ] {
        c.err(&format!("Exp::new({r}, {k}, {d})"), || Exp::new(r, k, d));
    }
    for (a, b, d, it) in [
        (0.0, 1.0, 6, 2),
        (NAN, 1.0, 6, 2),
        (1.0, INF, 6, 2),
        (2.0, 1.0, 6, 2),
        (1.0, 2.0, 0, 2),
        (1.0, 2.0, usize::MAX, 2),
        (1.0, 2.0, 6, 1_000_000),
    ] {
        c.err(&format!("Inverse::new({a}, {b}, {d}, {it})"), || {
            Inverse::new(a, b, d, it)
        });
        c.err(&format!("InvSqrt::new({a}, {b}, {d}, {it})"), || {
            InvSqrt::new(a, b, d, it)
        });
    }
    for bits in [NAN, INF, 0.0, -3.0] {
        c.err(&format!("Inverse::auto bits {bits}"), || {
            Inverse::auto(1.0, 2.0, bits)
        });
        c.err(&format!("InvSqrt::auto bits {bits}"), || {
            InvSqrt::auto(1.0, 2.0, bits)
        });
    }
    for (g, bits) in [
        (NAN, 8.0),
        (0.0, 8.0),
        (1.0, 8.0),
        (0.1, NAN),
        (0.1, 0.0),
        (0.1, INF),
    ] {
        c.err(&format!("Sign::new({g}, {bits})"), || Sign::new(g, bits));
    }
    // Built by hand, past the constructors.
    let empty = cheb(vec![], -1.0, 1.0);
    let mut pa = approx::gelu_erf(4.0, 7).unwrap();
    pa.poly = empty.clone();
    c.err("PolyApprox, empty polynomial: evaluate", || {
        pa.evaluate(&sim, &x)
    });
    c.err("PolyApprox, empty polynomial: gelu_twin", || {
        gelu::gelu_twin(&Layout::new(4, 2, 8).unwrap(), &[vec![0.0; 8]], &pa)
    });
    c.err("PolyApprox, empty polynomial: gelu", || {
        gelu::gelu(
            &sim,
            &Layout::new(4, 2, 8).unwrap(),
            std::slice::from_ref(&x),
            &pa,
        )
    });
    let mut e = Exp::new(8.0, 2, 7).unwrap();
    e.squarings = 1000;
    c.err("Exp, 1000 squarings: evaluate", || e.evaluate(&sim, &x));
    c.err("Exp, 1000 squarings: evaluate_unit", || {
        e.evaluate_unit(&sim, &x)
    });
    let mut inv = Inverse::new(1.0, 2.0, 6, 2).unwrap();
    inv.guess = empty.clone();
    c.err("Inverse, empty guess: evaluate", || inv.evaluate(&sim, &x));
    let mut inv = Inverse::new(1.0, 2.0, 6, 2).unwrap();
    inv.b = NAN;
    c.err("Inverse, NaN b: validate", || inv.validate());
    let mut s = InvSqrt::new(1.0, 2.0, 6, 2).unwrap();
    s.guess = empty.clone();
    c.err("InvSqrt, empty guess: evaluate", || s.evaluate(&sim, &x));
    let mut s = InvSqrt::new(1.0, 2.0, 6, 2).unwrap();
    s.a = -1.0;
    c.err("InvSqrt, a < 0: evaluate_affine", || {
        s.evaluate_affine(&sim, &x, 1.0, 0.0)
    });
    let mut sg = Sign::new(0.1, 8.0).unwrap();
    sg.stages[0] = empty;
    c.err("Sign, empty stage: evaluate", || sg.evaluate(&sim, &x));
    let mut sg = Sign::new(0.1, 8.0).unwrap();
    sg.stages.clear();
    c.err("Sign, no stages: validate", || sg.validate());
    c.err("eval_poly, a > b", || {
        chain::eval_poly(&sim, &x, &cheb(vec![1.0, 1.0], 1.0, -1.0))
    });
    c.check();
}

#[test]
fn block_weights() {
    let p = params();
    let sim = Simulator::new(&p);
    let layout = Layout::new(4, 8, 64).unwrap();
    let good = BlockWeights::random(8, 16, 1);
    let mut c = Cases::default();
    let bad = variants(
        &good,
        &[
            ("ff2 of the wrong shape", |w| {
                w.ff2 = Linear {
                    weight: vec![vec![0.0; 8]; 4],
                    bias: vec![0.0; 8],
                }
            }),
            ("NaN LayerNorm gain", |w| w.ln1.0[0] = NAN),
            ("short LayerNorm bias", |w| {
                w.ln2.1.pop();
            }),
            ("ragged Q", |w| {
                w.q.weight[0].pop();
            }),
            ("inf V bias", |w| w.v.bias[0] = INF),
            ("K of 8 x 4", |w| {
                w.k = Linear {
                    weight: vec![vec![0.0; 4]; 8],
                    bias: vec![0.0; 4],
                }
            }),
        ],
    );
    for (name, w) in &bad {
        c.err(&format!("{name}: validate"), || w.validate());
        c.err(&format!("{name}: Block::new"), || {
            Block::new(BlockKind::Bert, w.clone(), 2, &layout)
        });
    }
    c.err("hidden 0", || {
        Block::new(BlockKind::Gpt2, BlockWeights::random(0, 0, 1), 1, &layout)
    });
    c.err("layout of other width", || {
        Block::new(
            BlockKind::Bert,
            good.clone(),
            2,
            &Layout::new(4, 4, 64).unwrap(),
        )
    });
    c.err("malformed layout", || {
        Block::new(
            BlockKind::Bert,
            good.clone(),
            2,
            &Layout { batch: 0, ..layout },
        )
    });
    let block = Block::new(BlockKind::Bert, good.clone(), 2, &layout).unwrap();
    let x = vec![sim.fresh(p.max_level(), 64)];
    let v = vec![vec![0.0; 64]];
    for (name, w) in &bad {
        let mut b = block.clone();
        b.weights = w.clone();
        c.err(&format!("{name}: forward"), || b.forward(&sim, &layout, &x));
        c.err(&format!("{name}: twin"), || b.twin(&layout, &v));
        c.err(&format!("{name}: exact"), || {
            b.exact(&vec![vec![0.0; 8]; 4], 4)
        });
    }
    let mut b = block.clone();
    b.bound = NAN;
    c.err("NaN bound: forward", || b.forward(&sim, &layout, &x));
    c.err("exact, 0 tokens per input", || {
        block.exact(&vec![vec![0.0; 8]; 4], 0)
    });
    c.err("exact, no rows", || block.exact(&[], 4));
    c.err("exact, rows of 7", || {
        block.exact(&vec![vec![0.0; 7]; 4], 4)
    });
    c.check();
}
