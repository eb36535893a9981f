//! What a user sees when a command fails: the right words, a non-zero exit code, and no `error:`
//! line other than the command's own (none at all when it succeeds). Runs the built `umbra` with
//! XDG_RUNTIME_DIR unset, as in an ssh session or a container, where probing for a wgpu adapter
//! used to print libwayland's `error: XDG_RUNTIME_DIR is invalid or not set` (Mesa's Vulkan
//! device-selection layer). Every failing case here is rejected before any key or backend exists.

use std::process::{Command, Output};

fn umbra(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(args)
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("UMBRA_BACKEND")
        .output()
        .expect("run umbra")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The lines of stderr that say `error:`.
fn error_lines(o: &Output) -> Vec<String> {
    stderr(o)
        .lines()
        .filter(|l| l.contains("error:"))
        .map(str::to_string)
        .collect()
}

/// `umbra` with the arguments of `cmd` (split at spaces) fails with a non-zero exit code and
/// exactly one `error:` line, which contains every word of `words`; returns that line.
fn fails_with(cmd: &str, words: &[&str]) -> String {
    let args: Vec<&str> = cmd.split_whitespace().collect();
    let o = umbra(&args);
    assert!(!o.status.success(), "{args:?} succeeded: {}", stderr(&o));
    assert_ne!(o.status.code(), Some(0), "{args:?}");
    let errors = error_lines(&o);
    assert_eq!(
        errors.len(),
        1,
        "{args:?}: one error line, got:\n{}",
        stderr(&o)
    );
    for w in words {
        assert!(
            errors[0].contains(w),
            "{args:?}: `{w}` not in `{}`",
            errors[0]
        );
    }
    assert!(
        !stderr(&o).contains("XDG_RUNTIME_DIR"),
        "{args:?}: {}",
        stderr(&o)
    );
    errors[0].clone()
}

#[test]
fn success_prints_no_error_line() {
    // Probes every backend (CUDA, then a wgpu adapter) before falling back to one.
    let args = "bench ops --preset N12_QP450_L6_S40_insecure --reps 1";
    let o = umbra(&args.split_whitespace().collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(error_lines(&o).is_empty(), "stderr:\n{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("mul_relin"));
}

#[test]
fn too_many_tokens_says_so_with_the_largest_that_fits() {
    let e = fails_with(
        "bench layer --kind bert-block --hidden 64 --heads 2 --tokens 1024 \
         --preset N12_QP1654_L9_S50_boot_insecure",
        &["too many tokens", "1024 tokens", "at most 32 tokens fit"],
    );
    assert!(!e.contains("power of two dividing"), "{e}");
    // The default N = 2^16 preset: 2^15 slots hold 128 tokens (128^2 <= 2^15 < 256^2).
    fails_with(
        "estimate --kind attention --hidden 64 --heads 2 --tokens 1024",
        &["too many tokens", "at most 128 tokens fit"],
    );
}

#[test]
fn estimate_checks_the_shape_up_front_and_wraps_once() {
    let e = fails_with(
        "estimate --kind bert-block --hidden 768 --heads 5 --tokens 128 --layers 12",
        &["768 features do not split into 5 heads"],
    );
    assert_eq!(e.matches("invalid input").count(), 1, "{e}");
    assert!(!e.contains("planning on the simulator"), "{e}");
    fails_with(
        "estimate --kind attention --hidden 96 --heads 2 --tokens 16",
        &["head width 48", "power of two"],
    );
    fails_with(
        "estimate --kind gelu --hidden 64 --tokens 16 --layers 0",
        &["--layers", "at least 1"],
    );
}

#[test]
fn unknown_presets_list_the_known_ones() {
    fails_with(
        "bench ops --preset N14_nope",
        &[
            "unknown preset `N14_nope`",
            "N14_QP423_L6_S40",
            "N16_QP1690_L26_S50",
        ],
    );
    fails_with(
        "bench bootstrap --preset N14_QP423_L6_S40",
        &["is not a bootstrapping preset", "N16_QP1701_L9_S50_boot"],
    );
    fails_with(
        "bench layer --kind gelu --hidden 64 --tokens 16 --preset nope",
        &[
            "`nope` is not a bootstrapping preset",
            "N12_QP1654_L9_S50_boot_insecure",
        ],
    );
}

#[test]
fn zero_reps_are_rejected() {
    fails_with(
        "bench ops --preset N14_QP423_L6_S40 --reps 0",
        &["--reps", "at least 1"],
    );
    fails_with(
        "bench bootstrap --preset N16_QP1701_L9_S50_boot --reps 0",
        &["--reps", "at least 1"],
    );
    fails_with(
        "bench bootstrap --preset N12_QP1184_L2_S50_boot_insecure --slots 4096",
        &["4096 slots", "at most 2048"],
    );
}

/// The library refuses what the CLI refuses (a median of no runs), before any work.
#[test]
fn library_checks_match_the_cli() {
    use umbra::ckks::CkksError;
    assert!(umbra::cli::tooling::bench::check_ops("N14_QP423_L6_S40", 1).is_ok());
    assert!(matches!(
        umbra::cli::tooling::bench::check_ops("N14_QP423_L6_S40", 0),
        Err(CkksError::Invalid(_))
    ));
    assert!(matches!(
        umbra::cli::tooling::bench::check_bootstrap("N12_QP1184_L2_S50_boot_insecure", None, 0),
        Err(CkksError::Invalid(_))
    ));
    assert_eq!(umbra::nn::attention::max_attention_tokens(1 << 15, 64), 128);
    assert_eq!(umbra::nn::attention::max_attention_tokens(1 << 11, 32), 32);
    assert_eq!(umbra::nn::attention::max_attention_tokens(1 << 11, 1024), 2);
    assert_eq!(umbra::nn::attention::max_attention_tokens(16, 32), 0);
}
