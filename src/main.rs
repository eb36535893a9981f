//! The `umbra` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;

/// mimalloc keeps freed pages mapped, so the multi-megabyte buffers of key switching do not page-fault
/// on every operation (glibc returned them to the kernel: ~10% of the time in `clear_page`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use umbra::backend::Device;
use umbra::ckks::presets::presets;
use umbra::ckks::Parameters;

#[derive(Parser)]
#[command(
    name = "umbra",
    version,
    about = "Transformer inference on CKKS-encrypted data"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the parameter presets.
    Params {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Checks a backend bit for bit against the CPU reference: every ring kernel at several ring
    /// sizes, then encrypt -> mul+relin -> rescale -> rotate -> decrypt. Exits non-zero on any
    /// mismatch.
    Selftest {
        /// cpu, cuda, wgpu or auto (default: UMBRA_BACKEND, else auto). A named wgpu backend may be a
        /// software adapter.
        #[arg(long)]
        backend: Option<String>,
        /// Seed of the random inputs.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
    /// Embeds a text with a Hugging Face model directory in plaintext (exact f64; the encrypted
    /// path is not wired to models yet): tokens, then the sentence embedding.
    Embed {
        /// Model directory (config.json, model.safetensors, tokenizer.json or vocab.txt).
        #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
        model: std::path::PathBuf,
        /// The text.
        #[arg(long)]
        text: String,
        /// Exactly T tokens (truncated or padded); default: as tokenizer.json says.
        #[arg(long)]
        tokens: Option<usize>,
        /// One JSON object: model, tokens, real_tokens, ids, ms, embedding (and logits).
        #[arg(long)]
        json: bool,
    },
    /// Predicts a layer's or block's time and operation counts without running it: bootstraps
    /// placed on the simulator, operations priced by a cost model timed on the backend.
    Estimate {
        #[command(flatten)]
        shape: LayerShape,
        /// Identical layers (BERT-base: 12).
        #[arg(long, default_value_t = 1, value_parser = at_least_one)]
        layers: usize,
    },
}

/// The layer and shape of `bench layer` and `estimate`.
#[derive(clap::Args)]
struct LayerShape {
    /// matmul, attention, softmax, layernorm, gelu, argmax, bert-block or gpt2-block.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(umbra::cli::tooling::layer_bench::KINDS))]
    kind: String,
    /// Hidden size D (argmax: the number of logits).
    #[arg(long, default_value_t = 768)]
    hidden: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 12)]
    heads: usize,
    /// Tokens (a power of two).
    #[arg(long, default_value_t = 128)]
    tokens: usize,
    /// Bootstrapping preset (see `umbra params`).
    #[arg(long, default_value = umbra::cli::tooling::layer_bench::DEFAULT_PRESET)]
    preset: String,
    /// cpu, cuda, wgpu or auto (default: UMBRA_BACKEND, else auto).
    #[arg(long)]
    backend: Option<String>,
    /// Worker threads (default: all cores).
    #[arg(long, value_parser = at_least_one)]
    threads: Option<usize>,
    /// One JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Times the CKKS primitives at a preset's top level, with precision in bits.
    Ops {
        /// Preset name (see `umbra params`).
        #[arg(long)]
        preset: String,
        /// cpu, cuda, wgpu or auto (default: UMBRA_BACKEND, else auto).
        #[arg(long)]
        backend: Option<String>,
        /// Worker threads (default: all cores).
        #[arg(long, value_parser = at_least_one)]
        threads: Option<usize>,
        /// Timed repetitions per op (the median is reported).
        #[arg(long, default_value_t = 7, value_parser = at_least_one)]
        reps: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Runs one encrypted layer or block on random inputs at realistic scale, bootstrapping as
    /// needed: time, precision against its f64 twin and the exact function, levels, bootstraps.
    Layer {
        #[command(flatten)]
        shape: LayerShape,
        /// Seed of the random weights and inputs.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also calibrate the cost model and print the planner's estimate of this run.
        #[arg(long)]
        estimate: bool,
    },
    /// Generates bootstrapping keys and bootstraps uniform real inputs: time (median), precision,
    /// levels left, key generation time and key size.
    Bootstrap {
        /// Bootstrapping preset (see `umbra params`: bootstrappable ones).
        #[arg(long)]
        preset: String,
        /// Slots to bootstrap, a power of two (default: N/2, full slots).
        #[arg(long)]
        slots: Option<usize>,
        /// cpu, cuda, wgpu or auto (default: UMBRA_BACKEND, else auto).
        #[arg(long)]
        backend: Option<String>,
        /// Worker threads (default: all cores).
        #[arg(long, value_parser = at_least_one)]
        threads: Option<usize>,
        /// Timed bootstraps (the median is reported; at least 3 recommended).
        #[arg(long, default_value_t = 3, value_parser = at_least_one)]
        reps: usize,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Counts (`--reps`, `--threads`, `--layers`): a whole number, at least 1.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// The private runtime directory made by `provide_runtime_dir`, removed on the way out.
static RUNTIME_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Mesa's Vulkan device-selection layer (an implicit layer that comes with every Mesa driver, the
/// software one included) asks libwayland for a compositor whenever an application enables
/// `VK_KHR_wayland_surface`, which wgpu always does when it probes for an adapter. Where
/// XDG_RUNTIME_DIR is unset (ssh sessions, containers, CI), libwayland then prints `error:
/// XDG_RUNTIME_DIR is invalid or not set in the environment.` on stderr, although nothing failed.
/// Where it is unset or not an absolute path, this points it at an empty private directory (mode
/// 0700, as the XDG spec asks): the layer finds no compositor there and says nothing. Called in
/// `main` before any thread exists, where setting the environment is sound.
fn provide_runtime_dir() {
    #[cfg(all(unix, feature = "wgpu"))]
    {
        use std::os::unix::fs::DirBuilderExt;
        let valid = std::env::var_os("XDG_RUNTIME_DIR")
            .is_some_and(|d| std::path::Path::new(&d).is_absolute());
        if valid {
            return;
        }
        let dir = std::env::temp_dir().join(format!("umbra-runtime-{}", std::process::id()));
        // A directory that already exists is someone else's: leave the variable alone then.
        if std::fs::DirBuilder::new().mode(0o700).create(&dir).is_ok() {
            std::env::set_var("XDG_RUNTIME_DIR", &dir);
            let _ = RUNTIME_DIR.set(dir);
        }
    }
}

fn remove_runtime_dir() {
    if let Some(dir) = RUNTIME_DIR.get() {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Prints a line; a closed pipe (`umbra params | head`) ends the output quietly instead of panicking.
fn emit(line: String) -> Result<(), String> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            remove_runtime_dir();
            std::process::exit(0)
        }
        r => r.map_err(|e| e.to_string()),
    }
}

fn set_threads(t: Option<usize>) -> Result<(), String> {
    if let Some(t) = t {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Runs a parsed command line. Every check of the arguments (presets, shapes, counts) comes
/// before the backend is chosen, so that a bad flag fails fast with its own message only.
fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.cmd {
        Cmd::Selftest {
            backend,
            seed,
            json,
        } => return selftest(backend.as_deref(), seed, json),
        Cmd::Params { json } => {
            if !json {
                emit(format!(
                    "{:<28} {:>5} {:>8} {:>7} {:>6} {:>5} {:>9} {:>9} {:>14}",
                    "name",
                    "logN",
                    "logQP",
                    "levels",
                    "scale",
                    "dnum",
                    "security",
                    "insecure",
                    "bootstrappable"
                ))?;
            }
            for lit in presets() {
                let p = Parameters::new(lit.clone()).map_err(|e| e.to_string())?;
                let row = serde_json::json!({
                    "name": lit.name,
                    "log_n": lit.log_n,
                    "log_qp": (p.log_qp * 10.0).round() / 10.0,
                    "levels": p.max_level(),
                    "scale_bits": lit.log_scale,
                    "dnum": p.literal.dnum,
                    "security_bits": p.security_bits(),
                    "insecure": !p.is_secure(),
                    "bootstrappable": umbra::ckks::presets::is_bootstrappable(&p),
                });
                if json {
                    emit(format!("{row}"))?;
                } else {
                    emit(format!(
                        "{:<28} {:>5} {:>8.1} {:>7} {:>6} {:>5} {:>9} {:>9} {:>14}",
                        lit.name,
                        lit.log_n,
                        p.log_qp,
                        p.max_level(),
                        lit.log_scale,
                        p.literal.dnum,
                        p.security_bits(),
                        !p.is_secure(),
                        row["bootstrappable"]
                    ))?;
                }
            }
        }
        Cmd::Bench {
            what:
                BenchCmd::Bootstrap {
                    preset,
                    slots,
                    backend,
                    threads,
                    reps,
                    json,
                },
        } => bench_bootstrap(preset, slots, backend, threads, reps, json)?,
        Cmd::Bench {
            what:
                BenchCmd::Layer {
                    shape,
                    seed,
                    estimate,
                },
        } => bench_layer(shape, seed, estimate)?,
        Cmd::Estimate { shape, layers } => estimate(shape, layers)?,
        Cmd::Embed {
            model,
            text,
            tokens,
            json,
        } => embed(&model, &text, tokens, json)?,
        Cmd::Bench {
            what:
                BenchCmd::Ops {
                    preset,
                    backend,
                    threads,
                    reps,
                    json,
                },
        } => {
            umbra::cli::tooling::bench::check_ops(&preset, reps).map_err(|e| e.to_string())?;
            set_threads(threads)?;
            let device = Device::choose(backend.as_deref()).map_err(|e| e.to_string())?;
            let rows = umbra::cli::tooling::bench::bench_ops(&preset, device, reps)
                .map_err(|e| e.to_string())?;
            if !json {
                emit(format!(
                    "# {preset} on {device}, {} threads, median of {reps}",
                    rayon::current_num_threads()
                ))?;
                emit(format!(
                    "{:<18} {:>12} {:>16}",
                    "op", "ms", "precision_bits"
                ))?;
            }
            for r in rows {
                if json {
                    emit(format!("{}", serde_json::to_string(&r).unwrap()))?;
                } else {
                    let bits = r
                        .precision_bits
                        .map(|b| format!("{b:.2}"))
                        .unwrap_or_else(|| "-".into());
                    emit(format!("{:<18} {:>12.3} {:>16}", r.op, r.ms, bits))?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_bootstrap(
    preset: String,
    slots: Option<usize>,
    backend: Option<String>,
    threads: Option<usize>,
    reps: usize,
    json: bool,
) -> Result<(), String> {
    let log_slots = match slots {
        None => None,
        Some(s) if s.is_power_of_two() && s >= 2 => Some(s.trailing_zeros()),
        Some(s) => return Err(format!("--slots {s}: need a power of two >= 2")),
    };
    umbra::cli::tooling::bench::check_bootstrap(&preset, log_slots, reps)
        .map_err(|e| e.to_string())?;
    set_threads(threads)?;
    let device = Device::choose(backend.as_deref()).map_err(|e| e.to_string())?;
    let r = umbra::cli::tooling::bench::bench_bootstrap(&preset, log_slots, device, reps)
        .map_err(|e| e.to_string())?;
    if json {
        return emit(serde_json::to_string(&r).unwrap());
    }
    emit(format!(
        "# {} on {}, {} threads, {} slots, median of {}",
        r.preset, r.backend, r.threads, r.slots, r.reps
    ))?;
    emit(format!("bootstrap            {:>10.0} ms", r.ms))?;
    emit(format!(
        "precision            {:>10.2} bits mean, {:.2} min",
        r.precision_bits_mean, r.precision_bits_min
    ))?;
    emit(format!("levels after         {:>10}", r.levels_after))?;
    emit(format!("key generation       {:>10.0} ms", r.keygen_ms))?;
    emit(format!(
        "keys in memory       {:>10.2} GB ({} rotation keys)",
        r.key_bytes as f64 / 1e9,
        r.rotation_keys
    ))?;
    emit(format!("diagonal encoding    {:>10.0} ms", r.setup_ms))?;
    if let Some(b) = r.peak_rss_bytes {
        emit(format!("peak resident        {:>10.2} GB", b as f64 / 1e9))?;
    }
    emit(format!("operations           {:?}", r.ops))
}

/// The shape checks of `bench layer` and `estimate`, then the threads and the device.
fn layer_device(s: &LayerShape) -> Result<Device, String> {
    umbra::cli::tooling::layer_bench::check_shape(&s.kind, s.hidden, s.heads, s.tokens, &s.preset)
        .map_err(|e| e.to_string())?;
    set_threads(s.threads)?;
    Device::choose(s.backend.as_deref()).map_err(|e| e.to_string())
}

fn bench_layer(s: LayerShape, seed: u64, estimate: bool) -> Result<(), String> {
    let device = layer_device(&s)?;
    let r = umbra::cli::tooling::layer_bench::bench_layer(
        &s.kind, s.hidden, s.heads, s.tokens, &s.preset, device, seed, estimate,
    )
    .map_err(|e| e.to_string())?;
    if s.json {
        return emit(serde_json::to_string(&r).unwrap());
    }
    emit(format!(
        "# {} hidden {} heads {} tokens {} on {} ({}), {} threads",
        r.kind, r.hidden, r.heads, r.tokens, r.preset, r.backend, r.threads
    ))?;
    emit(format!("time                 {:>10.0} ms", r.ms))?;
    if let Some(e) = r.estimated_ms {
        emit(format!(
            "estimate             {:>10.0} ms ({:+.1}%)",
            e,
            100.0 * (r.ms / e - 1.0)
        ))?;
    }
    emit(format!(
        "precision            {:>10.2} bits vs twin, {:.2} vs exact (twin vs exact {:.2})",
        r.precision_bits_vs_twin, r.precision_bits_vs_exact, r.precision_bits_twin_vs_exact
    ))?;
    emit(format!("levels               {:>10}", r.levels))?;
    emit(format!("bootstraps           {:>10}", r.bootstraps))?;
    emit(format!("key generation       {:>10.0} ms", r.keygen_ms))?;
    emit(format!(
        "keys in memory       {:>10.2} GB",
        r.key_bytes as f64 / 1e9
    ))?;
    if let Some(b) = r.peak_rss_bytes {
        emit(format!("peak resident        {:>10.2} GB", b as f64 / 1e9))?;
    }
    emit(format!("operations           {:?}", r.ops))
}

fn estimate(s: LayerShape, layers: usize) -> Result<(), String> {
    let device = layer_device(&s)?;
    let r = umbra::cli::tooling::layer_bench::estimate(
        &s.kind, s.hidden, s.heads, s.tokens, layers, &s.preset, device,
    )
    .map_err(|e| e.to_string())?;
    if s.json {
        return emit(serde_json::to_string(&r).unwrap());
    }
    emit(format!(
        "# {} x{} hidden {} heads {} tokens {} on {} ({}), {} threads",
        r.kind, r.layers, r.hidden, r.heads, r.tokens, r.preset, r.backend, r.threads
    ))?;
    emit(format!(
        "estimate             {:>10.0} ms ({:.0} ms per layer)",
        r.estimated_ms, r.estimated_ms_per_layer
    ))?;
    emit(format!(
        "bootstraps per layer {:>10}",
        r.bootstraps_per_layer
    ))?;
    emit(format!("levels per layer     {:>10}", r.levels_per_layer))?;
    emit(format!("key switches         {:>10}", r.key_switches))?;
    emit(format!(
        "calibration          {:>10.0} ms",
        r.calibration_ms
    ))?;
    emit(format!("operations           {:?}", r.ops))
}

fn embed(
    dir: &std::path::Path,
    text: &str,
    tokens: Option<usize>,
    json: bool,
) -> Result<(), String> {
    let t0 = std::time::Instant::now();
    let m = umbra::models::Embedder::load(dir).map_err(|e| e.to_string())?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = std::time::Instant::now();
    let e = m.embed(text, tokens).map_err(|e| e.to_string())?;
    let ms = t1.elapsed().as_secs_f64() * 1e3;
    if json {
        let row = serde_json::json!({
            "model": dir.display().to_string(),
            "mode": "plaintext",
            "tokens": e.encoding.len(),
            "real_tokens": e.encoding.real_tokens(),
            "truncated": e.encoding.truncated,
            "ids": e.encoding.ids,
            "load_ms": load_ms,
            "ms": ms,
            "normalized": m.sentence.normalize,
            "embedding": e.embedding,
            "logits": e.logits,
        });
        return emit(row.to_string());
    }
    let c = &m.model.config;
    emit(format!(
        "# {} ({}: {} layers, hidden {}, {} heads), plaintext f64",
        dir.display(),
        c.architecture,
        c.layers,
        c.hidden,
        c.heads
    ))?;
    emit(format!(
        "tokens               {:>10} ({} real{})",
        e.encoding.len(),
        e.encoding.real_tokens(),
        if e.encoding.truncated {
            ", truncated"
        } else {
            ""
        }
    ))?;
    let real: Vec<&str> = e
        .encoding
        .tokens
        .iter()
        .zip(&e.encoding.attention_mask)
        .filter(|(_, &m)| m != 0)
        .map(|(t, _)| t.as_str())
        .collect();
    emit(format!("pieces               {}", real.join(" ")))?;
    emit(format!("load                 {load_ms:>10.0} ms"))?;
    emit(format!("forward              {ms:>10.0} ms"))?;
    if let Some(l) = &e.logits {
        emit(format!("logits               {l:?}"))?;
    }
    let v: Vec<String> = e.embedding.iter().map(|x| format!("{x:.6}")).collect();
    emit(format!(
        "embedding            {} values{}: [{}]",
        v.len(),
        if m.sentence.normalize {
            ", L2-normalized"
        } else {
            ""
        },
        v.join(", ")
    ))
}

/// Exits with failure (and no `error:` line: the table says what failed) on any mismatch.
fn selftest(backend: Option<&str>, seed: u64, json: bool) -> Result<ExitCode, String> {
    let device = Device::choose(backend).map_err(|e| e.to_string())?;
    let r = umbra::cli::tooling::selftest::run(
        device,
        &umbra::cli::tooling::selftest::DEFAULT_SIZES,
        seed,
    )
    .map_err(|e| e.to_string())?;
    if json {
        emit(serde_json::to_string(&r).map_err(|e| e.to_string())?)?;
    } else {
        emit(format!(
            "# selftest: {} ({}) against the CPU reference, seed {}",
            r.backend, r.device, r.seed
        ))?;
        emit(format!(
            "{:<28} {:>5} {:>6}  result",
            "check", "logN", "limbs"
        ))?;
        for c in &r.checks {
            let res = if c.passed {
                "ok".to_string()
            } else {
                format!("MISMATCH {}", c.detail)
            };
            emit(format!(
                "{:<28} {:>5} {:>6}  {}",
                c.name, c.log_n, c.limbs, res
            ))?;
        }
        emit(format!("{} passed, {} failed", r.passed, r.failed))?;
    }
    Ok(if r.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn main() -> ExitCode {
    // Parsing first: `--help`, `--version` and flag errors exit here, before anything is made.
    let cli = Cli::parse();
    provide_runtime_dir();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    remove_runtime_dir();
    code
}
