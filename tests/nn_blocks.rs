//! Transformer blocks end to end under bootstrapping (the insecure N = 2^12 preset with 9 levels
//! between bootstraps), through the same path as `umbra bench layer`: BERT (post-LN) and GPT-2
//! (pre-LN, causal) at small shapes against the exact f64 reference, and the planner's
//! predictions (bootstraps, depth, cost model) against the run.

use umbra::backend::Device;
use umbra::ckks::bootstrap::{self, Refreshing};
use umbra::ckks::{Bootstrapper, CkksError, Context, Parameters, Simulator};
use umbra::cli::tooling::layer_bench::{bench_layer, estimate};
use umbra::nn::block::{random_input, Block, BlockKind, BlockWeights};
use umbra::nn::planner::{self, CostModel};
use umbra::nn::Layout;

const PRESET: &str = "N12_QP1654_L9_S50_boot_insecure";

fn check_block(kind: &str, hidden: usize, heads: usize, tokens: usize) {
    let r = bench_layer(kind, hidden, heads, tokens, PRESET, Device::Cpu, 3, false).unwrap();
    eprintln!(
        "{kind} {hidden}x{heads}x{tokens}: {:.0} ms, {:.1} bits vs twin, {:.1} vs exact, {} levels, {} bootstraps",
        r.ms, r.precision_bits_vs_twin, r.precision_bits_vs_exact, r.levels, r.bootstraps
    );
    assert!(r.precision_bits_vs_exact >= 8.0, "{kind}: {r:?}");
    assert!(r.precision_bits_vs_twin >= 8.0, "{kind}: {r:?}");
    // The twin is the exact block up to the approximations.
    assert!(r.precision_bits_twin_vs_exact >= 12.0, "{kind}: {r:?}");
    // Deeper than one bootstrap period, so it did bootstrap; the planner counted the same.
    assert!(r.levels > 9 && r.bootstraps > 0, "{kind}: {r:?}");
}

#[test]
fn bert_block_encrypted_with_bootstrapping() {
    check_block("bert-block", 64, 2, 16);
}

#[test]
fn gpt2_block_encrypted_with_bootstrapping() {
    check_block("gpt2-block", 128, 4, 32);
}

/// The plan on `Refreshing<Simulator>` places as many bootstraps as the encrypted run does and
/// predicts its output level; the depth probe agrees with the sum of the layers' depths.
#[test]
fn planner_matches_the_run_and_prices_it() {
    let pr = bootstrap::preset(PRESET).unwrap();
    let params = Parameters::new(pr.params.clone()).unwrap();
    let layout = Layout::new(16, 64, params.max_slots()).unwrap();
    let w = BlockWeights::random(64, 256, 5);
    let block = Block::new(BlockKind::Bert, w, 2, &layout).unwrap();
    let plan = planner::plan(&params, &pr.boot, 1, layout.slots(), |c, x| {
        block.forward(c, &layout, x)
    })
    .unwrap();
    let depth = planner::depth(&params, 1, layout.slots(), |c, x| {
        block.forward(c, &layout, x)
    })
    .unwrap();
    assert!(plan.bootstraps > 0 && depth > params.compute_top_level());
    // The same block on the simulator without bootstrapping runs out of levels, with an error.
    let sim = Simulator::new(&params);
    let x = vec![sim.fresh(params.compute_top_level(), layout.slots())];
    assert!(matches!(
        block.forward(&sim, &layout, &x),
        Err(CkksError::LevelsExhausted(_))
    ));
    // Refreshing<Simulator> directly: same count as the plan.
    let b = Bootstrapper::new(&sim, &pr.boot).unwrap();
    let r = Refreshing::new(&sim, &b);
    let y = block.forward(&r, &layout, &x).unwrap();
    assert_eq!(r.bootstraps(), plan.bootstraps);
    assert_eq!(y[0].level, plan.output_level);
    // The cost model: positive, monotone in the level for key switches, and the estimate of
    // the encrypted run within a factor of two of it (CI machines are noisy; BENCHMARKS.md has
    // the BERT-base figure).
    let ctx = Context::new(params.clone(), Device::Cpu).unwrap();
    let model = CostModel::calibrate(&ctx, Some(&pr.boot), 3, 3).unwrap();
    assert!(model.op_ms("rotate", 9) > model.op_ms("rotate", 1));
    assert!(model.op_ms("add", 5) > 0.0 && model.op_ms("no_such_op", 5) == 0.0);
    let est = estimate("bert-block", 64, 2, 16, 2, PRESET, Device::Cpu).unwrap();
    assert_eq!(est.bootstraps_per_layer, plan.bootstraps);
    assert!((est.estimated_ms - 2.0 * est.estimated_ms_per_layer).abs() < 1e-6);
    // One bootstrap's price: positive, and the layer's bootstraps are part of the layer's.
    let boots = est.bootstrap_ms * est.bootstraps_per_layer as f64;
    assert!(
        est.bootstrap_ms > 0.0 && boots < est.estimated_ms_per_layer,
        "{est:?}"
    );
    let run = bench_layer("bert-block", 64, 2, 16, PRESET, Device::Cpu, 5, false).unwrap();
    let ratio = run.ms / est.estimated_ms_per_layer;
    eprintln!(
        "measured {:.0} ms, estimated {:.0} ms",
        run.ms, est.estimated_ms_per_layer
    );
    assert!(
        (0.5..2.0).contains(&ratio),
        "measured / estimated = {ratio}"
    );
    assert_eq!(run.bootstraps, plan.bootstraps);
}

/// Every `bench layer` kind runs under bootstrapping at a small shape; the primitives keep >= 12
/// bits against their twins.
#[test]
fn every_layer_kind_under_bootstrapping() {
    for kind in umbra::cli::tooling::layer_bench::KINDS {
        if kind.ends_with("block") {
            continue;
        }
        let r = bench_layer(kind, 64, 2, 16, PRESET, Device::Cpu, 7, false).unwrap();
        eprintln!(
            "{kind}: {:.0} ms, {:.1} bits vs twin, {:.1} vs exact, {} levels, {} bootstraps",
            r.ms, r.precision_bits_vs_twin, r.precision_bits_vs_exact, r.levels, r.bootstraps
        );
        assert!(r.precision_bits_vs_twin >= 12.0, "{kind}: {r:?}");
    }
}

/// Bad shapes and kinds are errors, not panics.
#[test]
fn bad_shapes_are_errors() {
    let e = |k: &str, h: usize, a: usize, t: usize| {
        bench_layer(k, h, a, t, PRESET, Device::Cpu, 1, false).unwrap_err()
    };
    assert!(matches!(e("conv", 64, 2, 16), CkksError::Invalid(_)));
    // 3 heads do not divide 64 features; 24 tokens are not a power of two.
    assert!(matches!(e("attention", 64, 3, 16), CkksError::Invalid(_)));
    assert!(matches!(e("bert-block", 64, 2, 24), CkksError::Invalid(_)));
    // 128 tokens need 128 features per ciphertext: 2^12 has 2048 slots, so only 16.
    assert!(matches!(e("attention", 64, 2, 128), CkksError::Invalid(_)));
    assert!(bench_layer("gelu", 64, 2, 16, "N12_nope", Device::Cpu, 1, false).is_err());
    // Activations beyond an approximation's interval are caught by the twin.
    let layout = Layout::new(16, 64, 2048).unwrap();
    let block = Block::new(
        BlockKind::Gpt2,
        BlockWeights::random(64, 256, 1),
        2,
        &layout,
    )
    .unwrap();
    let mut x = random_input(16, 64, 1);
    x[3][5] = 1e4;
    assert!(matches!(
        block.twin(&layout, &layout.pack(&x).unwrap()),
        Err(CkksError::OutOfRange(_))
    ));
}
