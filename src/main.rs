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
use umbra::cli::generate::is_gpt2;
use umbra::cli::gpt2_files;

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
    /// Embeds a text with a Hugging Face model directory in plaintext (exact f64; `umbra run`
    /// runs it encrypted): tokens, then the sentence embedding.
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
        /// Require the model's calibrated ranges (umbra-ranges.json, from `umbra calibrate`) and
        /// report the activations of this text that leave them. Without the flag they are
        /// checked whenever the file exists.
        #[arg(long)]
        check_ranges: bool,
    },
    /// Measures a model's activation ranges on sample text in plaintext (attention score spans
    /// per head, softmax row sums, LayerNorm input variances and per-feature |x|, GELU inputs)
    /// and writes them with a margin to DIR/umbra-ranges.json.
    Calibrate {
        /// Model directory (config.json, model.safetensors, and tokenizer.json, vocab.txt, or
        /// GPT-2's vocab.json + merges.txt).
        #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
        model: std::path::PathBuf,
        /// One sentence per line (default: the built-in synthetic sample).
        #[arg(long)]
        sentences: Option<std::path::PathBuf>,
        /// BERT: pad (or truncate) every sentence to T tokens, so padding rows are measured too
        /// (default: the tokenizer's fixed padding, 128 for MiniLM; else 128). GPT-2: not used
        /// (each prompt runs at its own length, then 16 greedy tokens).
        #[arg(long)]
        tokens: Option<usize>,
        /// Relative margin around the observed ranges (0.1 = 10%).
        #[arg(long, allow_negative_numbers = true, default_value_t = umbra::models::calibration::DEFAULT_MARGIN)]
        margin: f64,
        /// One JSON object: model, file, tokens, sentences, source, margin, ms, layers.
        #[arg(long)]
        json: bool,
    },
    /// Writes a Hugging Face BERT or GPT-2 directory with a real architecture's config.json,
    /// tensor names, shapes and dtype and weights drawn at trained scale (not trained), for
    /// benchmarks where the real weights are not at hand; the tokenizer files are copied from
    /// --tokenizer-from.
    GenModel {
        /// Architecture: bert-base (12 layers, hidden 768, 12 heads, FFN 3072; 110M parameters),
        /// gpt2 (GPT-2 small: 12 layers, hidden 768, 12 heads; 124M), gpt2-tiny (GPT-2's
        /// vocabulary, 2 layers, hidden 64, 4 heads; for tests).
        #[arg(long)]
        arch: String,
        /// The new directory (must not exist or be empty).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Where the tokenizer files come from: a directory with BERT's uncased WordPiece
        /// vocabulary (default models/all-MiniLM-L6-v2), or GPT-2's vocab.json and merges.txt
        /// (default models/gpt2-tokenizer, written by `models/fetch.sh gpt2-tokenizer`).
        #[arg(long)]
        tokenizer_from: Option<std::path::PathBuf>,
        /// Seed of the weights.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// One JSON object: arch, out, parameters, bytes, ms.
        #[arg(long)]
        json: bool,
    },
    /// Predicts a layer's, block's or whole model's time and operation counts without running
    /// it: bootstraps placed on the simulator, operations priced by a cost model timed on the
    /// backend. With --model DIR: that model's encrypted encoder at --tokens (all real).
    Estimate {
        #[command(flatten)]
        shape: LayerShape,
        /// Identical layers (BERT-base: 12; default 1); with --model, its first L layers
        /// (default: all).
        #[arg(long, value_parser = at_least_one)]
        layers: Option<usize>,
        /// A Hugging Face BERT or GPT-2 directory: estimate the whole model (--kind not needed;
        /// GPT-2: a prefill and one decode step at a window of --tokens).
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// GPT-2 on ciphertexts: the prompt's encrypted prefill, then greedy decoding one encrypted
    /// token at a time with the KV cache kept by the server; the plaintext model's continuation
    /// beside it.
    Generate {
        /// A Hugging Face GPT-2 directory (default: models/gpt2; `umbra gen-model --arch gpt2
        /// --out models/gpt2` writes one at GPT-2 small's shape).
        #[arg(long, default_value = "models/gpt2")]
        model: PathBuf,
        /// The prompt.
        #[arg(long)]
        prompt: String,
        /// Tokens to generate.
        #[arg(long, value_parser = at_least_one)]
        max_new_tokens: usize,
        /// The window T (a power of two holding prompt + new tokens; default: the smallest).
        #[arg(long)]
        tokens: Option<usize>,
        /// Bootstrapping preset (see `umbra params`).
        #[arg(long, default_value = umbra::cli::model::DEFAULT_PRESET)]
        preset: String,
        /// cpu, cuda, wgpu or auto (default: UMBRA_BACKEND, else auto).
        #[arg(long)]
        backend: Option<String>,
        /// Worker threads (default: all cores).
        #[arg(long, value_parser = at_least_one)]
        threads: Option<usize>,
        /// The server also takes the argmax over the whole vocabulary on ciphertexts; the client
        /// decrypts only its one-hot, never the logits (max_logit_err is then null).
        #[arg(long)]
        argmax: bool,
        /// The exact f64 model only (no encryption).
        #[arg(long)]
        plaintext: bool,
        /// One JSON object: model, prompt_tokens, new_tokens, prefill_ms, decode_ms_per_token,
        /// bootstraps, text, plaintext_text, top1_agreement, max_logit_err, ...
        #[arg(long)]
        json: bool,
    },
    /// The main job: a text through a BERT model on ciphertexts (keygen, encrypt, the encrypted
    /// encoder and pooling, decrypt, in one process), compared with the plaintext model.
    Run {
        /// Model directory (default: models/all-MiniLM-L6-v2, fetched when absent).
        #[arg(long)]
        model: Option<PathBuf>,
        /// The text.
        #[arg(long)]
        text: String,
        /// Tokens (a power of two; default: the smallest power of two >= 8 holding the text;
        /// a longer text is cut, with a warning).
        #[arg(long)]
        tokens: Option<usize>,
        /// Bootstrapping preset (see `umbra params`).
        #[arg(long, default_value = umbra::cli::model::DEFAULT_PRESET)]
        preset: String,
        /// cpu, cuda, wgpu or auto (default: UMBRA_BACKEND, else auto).
        #[arg(long)]
        backend: Option<String>,
        /// Worker threads (default: all cores).
        #[arg(long, value_parser = at_least_one)]
        threads: Option<usize>,
        /// The exact f64 model only (no encryption).
        #[arg(long)]
        plaintext: bool,
        /// Only the first L encoder layers (against the plaintext model cut the same way).
        #[arg(long, value_parser = at_least_one)]
        layers: Option<usize>,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Compares the encrypted model (its f64 twin, or encrypted) with the plaintext model on a
    /// file of sentences: cosine, nearest-neighbour agreement, out-of-range activations.
    Eval {
        #[arg(long, default_value = umbra::cli::model::DEFAULT_MODEL)]
        model: PathBuf,
        /// One sentence per line.
        #[arg(long)]
        sentences: PathBuf,
        /// twin (the same packing and approximations in f64) or encrypted.
        #[arg(long, default_value = "twin")]
        mode: String,
        /// Every sentence padded (or truncated) to T tokens (GPT-2: the window, prompt + new
        /// tokens).
        #[arg(long, default_value_t = 128)]
        tokens: usize,
        /// GPT-2: tokens decoded after each prompt (the positions compared per prompt).
        #[arg(long, default_value_t = 10, value_parser = at_least_one)]
        max_new_tokens: usize,
        /// Only the first N sentences.
        #[arg(long, value_parser = at_least_one)]
        limit: Option<usize>,
        /// Bootstrapping preset (encrypted mode; the twin uses its slot count).
        #[arg(long, default_value = umbra::cli::model::DEFAULT_PRESET)]
        preset: String,
        #[arg(long)]
        backend: Option<String>,
        #[arg(long, value_parser = at_least_one)]
        threads: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Client: a secret key (KEYDIR/secret.key, mode 0600) and the server's evaluation keys
    /// (KEYDIR/eval.keys) for a model at T tokens (GPT-2: the window, prompt and new tokens).
    Keygen {
        /// The model directory (BERT or GPT-2; every file of the session is bound to it).
        #[arg(long, default_value = umbra::cli::model::DEFAULT_MODEL)]
        model: PathBuf,
        /// Tokens T (a power of two): BERT pads each input to T; GPT-2's window holds the prompt
        /// and every new token fed back (prompt + new - 1 <= T <= n_positions).
        #[arg(long, default_value_t = 16)]
        tokens: usize,
        /// The parameter preset (`umbra presets`; 128-bit by default).
        #[arg(long, default_value = umbra::cli::model::DEFAULT_PRESET)]
        preset: String,
        /// The key directory.
        #[arg(long)]
        out: PathBuf,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Client: tokenize, embed and encrypt a text under KEYDIR's secret key (GPT-2: the prompt,
    /// or with --token and --position one new token for a decode step).
    Encrypt {
        /// The model directory (BERT or GPT-2; every file of the session is bound to it).
        #[arg(long, default_value = umbra::cli::model::DEFAULT_MODEL)]
        model: PathBuf,
        /// The key directory of `umbra keygen`.
        #[arg(long)]
        keys: PathBuf,
        /// The text (GPT-2: the prompt).
        #[arg(long, required_unless_present = "token", conflicts_with = "token")]
        text: Option<String>,
        /// GPT-2 decode step: the new token's id (`umbra decrypt`'s `token`).
        #[arg(long, requires = "position")]
        token: Option<u32>,
        /// GPT-2 decode step: the new token's position (`umbra decrypt`'s `next_position`).
        #[arg(long, requires = "token")]
        position: Option<usize>,
        /// Must equal the keys' token count (default: theirs).
        #[arg(long)]
        tokens: Option<usize>,
        /// Where the encrypted input goes.
        #[arg(long)]
        out: PathBuf,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Server: the encrypted encoder and pooling with the evaluation keys only (GPT-2: the
    /// prefill or one decode step, with the KV cache file).
    Infer {
        /// The model directory (BERT or GPT-2; every file of the session is bound to it).
        #[arg(long, default_value = umbra::cli::model::DEFAULT_MODEL)]
        model: PathBuf,
        /// KEYDIR/eval.keys.
        #[arg(long)]
        eval_keys: PathBuf,
        /// The encrypted input (`umbra encrypt --out`).
        #[arg(long = "in")]
        input: PathBuf,
        /// Where the encrypted result goes.
        #[arg(long)]
        out: PathBuf,
        /// GPT-2: the encrypted KV cache (written by the prefill, read and updated by each
        /// decode step); CACHE.checkpoint holds an unfinished step, resumed by running again.
        #[arg(long)]
        cache: Option<PathBuf>,
        /// GPT-2: run the encrypted argmax over the vocabulary; the output reveals only the
        /// chosen token.
        #[arg(long)]
        argmax: bool,
        /// GPT-2: stop after N layers of the step, leaving the checkpoint (a long step in slices).
        #[arg(long)]
        stop_after_layers: Option<usize>,
        /// cpu, cuda, wgpu or auto (default: UMBRA_BACKEND, else auto).
        #[arg(long)]
        backend: Option<String>,
        /// Threads (default: all cores).
        #[arg(long, value_parser = at_least_one)]
        threads: Option<usize>,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Client: decrypt the server's output into the model's embedding (GPT-2: the logits and
    /// the next token).
    Decrypt {
        /// The model directory (BERT or GPT-2; every file of the session is bound to it).
        #[arg(long, default_value = umbra::cli::model::DEFAULT_MODEL)]
        model: PathBuf,
        /// The key directory of `umbra keygen` (its secret.key).
        #[arg(long)]
        keys: PathBuf,
        /// The server's result (`umbra infer --out`).
        #[arg(long = "in")]
        input: PathBuf,
        /// GPT-2: the ids fed so far (prompt, then new tokens; comma-separated): compares with
        /// the plaintext model on that prefix.
        #[arg(long, value_delimiter = ',')]
        prefix_ids: Vec<u32>,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// The layer and shape of `bench layer` and `estimate`.
#[derive(clap::Args)]
struct LayerShape {
    /// matmul, attention, softmax, layernorm, gelu, argmax, bert-block or gpt2-block.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(umbra::cli::tooling::layer_bench::KINDS))]
    kind: Option<String>,
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
            let all = presets();
            let width = all.iter().map(|l| l.name.len()).max().unwrap_or(4) + 2;
            if !json {
                emit(format!(
                    "{:<width$} {:>5} {:>8} {:>9} {:>6} {:>5}  {:<18} {}",
                    "name",
                    "logN",
                    "logQP",
                    "levels",
                    "scale",
                    "dnum",
                    "security",
                    "bootstrappable"
                ))?;
            }
            for lit in all {
                let p = Parameters::new(lit.clone()).map_err(|e| e.to_string())?;
                let compute = p.compute_top_level();
                let row = serde_json::json!({
                    "name": lit.name,
                    "log_n": lit.log_n,
                    "log_qp": (p.log_qp * 10.0).round() / 10.0,
                    "levels": p.max_level(),
                    "compute_levels": compute,
                    "scale_bits": lit.log_scale,
                    "dnum": p.literal.dnum,
                    "security_bits": p.security_bits(),
                    "insecure": !p.is_secure(),
                    "bootstrappable": umbra::ckks::presets::is_bootstrappable(&p),
                });
                if json {
                    emit(format!("{row}"))?;
                } else {
                    // Compute levels, plus the levels bootstrapping spends above them.
                    let levels = if compute < p.max_level() {
                        format!("{compute} + {}", p.max_level() - compute)
                    } else {
                        compute.to_string()
                    };
                    let security = if p.is_secure() {
                        "128-bit".to_string()
                    } else {
                        format!("insecure ({} bits)", p.security_bits())
                    };
                    emit(format!(
                        "{:<width$} {:>5} {:>8.1} {:>9} {:>6} {:>5}  {:<18} {}",
                        lit.name,
                        lit.log_n,
                        p.log_qp,
                        levels,
                        format!("2^{}", lit.log_scale),
                        p.literal.dnum,
                        security,
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
        Cmd::Estimate {
            shape,
            model: Some(dir),
            layers,
        } => model_cmd::estimate(&dir, &shape, layers)?,
        Cmd::Estimate { shape, layers, .. } => estimate(shape, layers.unwrap_or(1))?,
        Cmd::Generate {
            model,
            prompt,
            max_new_tokens,
            tokens,
            preset,
            backend,
            threads,
            argmax,
            plaintext,
            json,
        } => {
            set_threads(threads)?;
            if !model.join("config.json").is_file() {
                return Err(format!(
                    "{}/config.json is absent: pass --model DIR (a Hugging Face GPT-2 directory) \
                     or write one with `umbra gen-model --arch gpt2 --out {}`",
                    model.display(),
                    model.display()
                ));
            }
            let mut say = |line: String| eprintln!("{line}");
            let r = umbra::cli::generate::generate(
                &model,
                &prompt,
                max_new_tokens,
                tokens,
                &preset,
                backend.as_deref(),
                argmax,
                plaintext,
                false,
                &mut say,
            )?;
            model_cmd::print(&r, json)?
        }
        Cmd::Run {
            model,
            text,
            tokens,
            preset,
            backend,
            threads,
            plaintext,
            layers,
            json,
        } => {
            set_threads(threads)?;
            model_cmd::run(
                model, &text, tokens, layers, &preset, backend, plaintext, json,
            )?
        }
        Cmd::Eval {
            model,
            sentences,
            mode,
            tokens,
            max_new_tokens,
            limit,
            preset,
            backend,
            threads,
            json,
        } => {
            set_threads(threads)?;
            if is_gpt2(&model) {
                if mode != "twin" {
                    return Err(format!(
                        "--mode {mode} on a GPT-2 model: eval runs the twin; `umbra generate` \
                         runs the encrypted model"
                    ));
                }
                let r = umbra::cli::generate::eval_twin(
                    &model,
                    &sentences,
                    tokens,
                    max_new_tokens,
                    limit,
                    &preset,
                )?;
                model_cmd::print(&r, json)?;
                return Ok(ExitCode::SUCCESS);
            }
            let r = umbra::cli::model::eval(
                &model,
                &sentences,
                &mode,
                tokens,
                limit,
                &preset,
                backend.as_deref(),
                false,
            )?;
            model_cmd::print(&r, json)?
        }
        Cmd::Keygen {
            model,
            tokens,
            preset,
            out,
            json,
        } => {
            let r = if is_gpt2(&model) {
                gpt2_files::keygen(&model, tokens, &preset, &out)?
            } else {
                umbra::cli::model::keygen(&model, tokens, &preset, &out)?
            };
            model_cmd::print(&r, json)?
        }
        Cmd::Encrypt {
            model,
            keys,
            text,
            token,
            position,
            tokens,
            out,
            json,
        } => {
            if is_gpt2(&model) {
                let input = match (&text, token, position) {
                    (Some(t), _, _) => gpt2_files::StepInput::Prompt(t),
                    (None, Some(id), Some(position)) => {
                        gpt2_files::StepInput::Token { id, position }
                    }
                    _ => return Err("pass --text PROMPT, or --token ID --position P".into()),
                };
                model_cmd::print(
                    &gpt2_files::encrypt(&model, &keys, input, tokens, &out)?,
                    json,
                )?
            } else {
                let text = text.ok_or(
                    "--token and --position are for GPT-2 decode steps: pass --text for this model",
                )?;
                model_cmd::print(
                    &umbra::cli::model::encrypt(&model, &keys, &text, tokens, &out)?,
                    json,
                )?
            }
        }
        Cmd::Infer {
            model,
            eval_keys,
            input,
            out,
            cache,
            argmax,
            stop_after_layers,
            backend,
            threads,
            json,
        } => {
            set_threads(threads)?;
            if is_gpt2(&model) {
                let cache = cache.ok_or(
                    "a GPT-2 step needs --cache FILE: the encrypted KV cache that the prefill \
                     writes and every decode step reads and updates",
                )?;
                let opt = gpt2_files::InferOptions {
                    argmax,
                    backend: backend.as_deref(),
                    stop_after_layers,
                    quiet: false,
                };
                let r = gpt2_files::infer(&model, &eval_keys, &input, &cache, &out, &opt)?;
                if let Some(ck) = r.checkpoint.as_deref().filter(|_| !json) {
                    eprintln!(
                        "umbra: stopped after layer {} of {}; {ck} holds the step: run the same \
                         command again (without --stop-after-layers, or with a later layer) to \
                         resume",
                        r.layers_done, r.layers
                    );
                }
                model_cmd::print(&r, json)?
            } else {
                if cache.is_some() || argmax || stop_after_layers.is_some() {
                    return Err(
                        "--cache, --argmax and --stop-after-layers are for GPT-2 directories"
                            .into(),
                    );
                }
                let r = umbra::cli::model::infer(
                    &model,
                    &eval_keys,
                    &input,
                    &out,
                    backend.as_deref(),
                    false,
                )?;
                model_cmd::print(&r, json)?
            }
        }
        Cmd::Decrypt {
            model,
            keys,
            input,
            prefix_ids,
            json,
        } => {
            if is_gpt2(&model) {
                let prefix = (!prefix_ids.is_empty()).then_some(prefix_ids.as_slice());
                model_cmd::print(&gpt2_files::decrypt(&model, &keys, &input, prefix)?, json)?
            } else {
                if !prefix_ids.is_empty() {
                    return Err("--prefix-ids is for GPT-2 directories".into());
                }
                model_cmd::print(&umbra::cli::model::decrypt(&model, &keys, &input)?, json)?
            }
        }
        Cmd::Embed {
            model,
            text,
            tokens,
            json,
            check_ranges,
        } => embed(&model, &text, tokens, json, check_ranges)?,
        Cmd::Calibrate {
            model,
            sentences,
            tokens,
            margin,
            json,
        } => calibrate(&model, sentences.as_deref(), tokens, margin, json)?,
        Cmd::GenModel {
            arch,
            out,
            tokenizer_from,
            seed,
            json,
        } => gen_model(&arch, &out, tokenizer_from.as_deref(), seed, json)?,
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

/// The model commands' printing (the work is in `umbra::cli::model`).
mod model_cmd {
    use super::{emit, set_threads, LayerShape};
    use std::path::{Path, PathBuf};
    use umbra::cli::model;

    /// A report: one JSON object, or `key  value` lines (vectors shortened).
    pub fn print<T: serde::Serialize>(r: &T, json: bool) -> Result<(), String> {
        let v = serde_json::to_value(r).map_err(|e| e.to_string())?;
        if json {
            return emit(v.to_string());
        }
        if let serde_json::Value::Object(m) = v {
            for (k, x) in m {
                let text = match &x {
                    serde_json::Value::Array(a) if a.len() > 8 => {
                        let head: Vec<String> = a.iter().take(6).map(|v| v.to_string()).collect();
                        format!("[{}, ... {} values]", head.join(", "), a.len())
                    }
                    serde_json::Value::Null => continue,
                    serde_json::Value::Number(n) if n.is_f64() => {
                        let f = n.as_f64().unwrap_or(f64::NAN);
                        if f != 0.0 && f.abs() < 1e-3 {
                            format!("{f:.3e}")
                        } else if f.abs() >= 100.0 {
                            format!("{f:.0}")
                        } else {
                            format!("{f:.10}")
                        }
                    }
                    other => other.to_string(),
                };
                emit(format!("{k:<26} {text}"))?;
            }
        }
        Ok(())
    }

    /// `umbra run`: the default model is fetched when absent (models/fetch.sh).
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        dir: Option<PathBuf>,
        text: &str,
        tokens: Option<usize>,
        layers: Option<usize>,
        preset: &str,
        backend: Option<String>,
        plaintext: bool,
        json: bool,
    ) -> Result<(), String> {
        let dir = match dir {
            Some(d) => d,
            None => {
                let d = PathBuf::from(model::DEFAULT_MODEL);
                if !d.join("model.safetensors").is_file() {
                    fetch_default()?;
                }
                d
            }
        };
        // The estimate and the progress bar go to stderr, even with --json.
        let mut say = |line: String| eprintln!("{line}");
        let r = model::run_layers(
            &dir,
            text,
            tokens,
            layers,
            preset,
            backend.as_deref(),
            plaintext,
            false,
            &mut say,
        )?;
        print(&r, json)
    }

    fn fetch_default() -> Result<(), String> {
        let script = Path::new("models/fetch.sh");
        if !script.is_file() {
            return Err(format!(
                "{} is absent and there is no models/fetch.sh here to fetch it (run from the \
                 repository root, or pass --model DIR)",
                model::DEFAULT_MODEL
            ));
        }
        eprintln!("umbra: fetching all-MiniLM-L6-v2 (models/fetch.sh all-MiniLM-L6-v2)");
        let st = std::process::Command::new("bash")
            .arg(script)
            .arg("all-MiniLM-L6-v2")
            .status()
            .map_err(|e| format!("models/fetch.sh: {e}"))?;
        if !st.success() {
            return Err(format!("models/fetch.sh all-MiniLM-L6-v2 failed ({st})"));
        }
        Ok(())
    }

    /// `umbra estimate --model DIR`.
    pub fn estimate(dir: &Path, s: &LayerShape, layers: Option<usize>) -> Result<(), String> {
        set_threads(s.threads)?;
        if umbra::cli::generate::is_gpt2(dir) {
            if layers.is_some() {
                return Err("--layers: a GPT-2 estimate covers the whole model".into());
            }
            let r = umbra::cli::generate::estimate_model(
                dir,
                s.tokens,
                &s.preset,
                s.backend.as_deref(),
            )?;
            return print(&r, s.json);
        }
        let r = model::estimate(dir, s.tokens, layers, &s.preset, s.backend.as_deref())?;
        print(&r, s.json)
    }
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
impl LayerShape {
    fn kind(&self) -> Result<&str, String> {
        self.kind.as_deref().ok_or_else(|| {
            "--kind is required (matmul, attention, softmax, layernorm, gelu, argmax, bert-block, \
             gpt2-block), or --model DIR for a whole model"
                .to_string()
        })
    }
}

fn layer_device(s: &LayerShape) -> Result<Device, String> {
    umbra::cli::tooling::layer_bench::check_shape(
        s.kind()?,
        s.hidden,
        s.heads,
        s.tokens,
        &s.preset,
    )
    .map_err(|e| e.to_string())?;
    set_threads(s.threads)?;
    Device::choose(s.backend.as_deref()).map_err(|e| e.to_string())
}

fn bench_layer(s: LayerShape, seed: u64, estimate: bool) -> Result<(), String> {
    let device = layer_device(&s)?;
    let r = umbra::cli::tooling::layer_bench::bench_layer(
        s.kind()?,
        s.hidden,
        s.heads,
        s.tokens,
        &s.preset,
        device,
        seed,
        estimate,
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
        s.kind()?,
        s.hidden,
        s.heads,
        s.tokens,
        layers,
        &s.preset,
        device,
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
    emit(format!("one bootstrap        {:>10.0} ms", r.bootstrap_ms))?;
    emit(format!(
        "calibration          {:>10.0} ms",
        r.calibration_ms
    ))?;
    emit(format!("operations           {:?}", r.ops))
}

fn gen_model(
    arch: &str,
    out: &std::path::Path,
    tokenizer_from: Option<&std::path::Path>,
    seed: u64,
    json: bool,
) -> Result<(), String> {
    use umbra::models::generate::{self, BertArch, Gpt2Arch};
    let t0 = std::time::Instant::now();
    let (parameters, layers, hidden, heads, ffn) = if arch.starts_with("gpt2") {
        let a = Gpt2Arch::by_name(arch).map_err(|e| e.to_string())?;
        let from = tokenizer_from.unwrap_or(std::path::Path::new("models/gpt2-tokenizer"));
        generate::generate_gpt2(&a, out, from, seed).map_err(|e| e.to_string())?;
        (a.parameters(), a.layers, a.hidden, a.heads, a.inner)
    } else {
        let a = BertArch::by_name(arch).map_err(|e| e.to_string())?;
        let from = tokenizer_from.unwrap_or(std::path::Path::new("models/all-MiniLM-L6-v2"));
        generate::generate_bert(&a, out, from, seed).map_err(|e| e.to_string())?;
        (a.parameters(), a.layers, a.hidden, a.heads, a.intermediate)
    };
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let bytes = std::fs::metadata(out.join("model.safetensors"))
        .map(|m| m.len())
        .unwrap_or(0);
    if json {
        let row = serde_json::json!({
            "arch": arch,
            "out": out.display().to_string(),
            "parameters": parameters,
            "bytes": bytes,
            "ms": ms,
        });
        return emit(row.to_string());
    }
    emit(format!(
        "# {arch}: {layers} layers, hidden {hidden}, {heads} heads, FFN {ffn} (weights at trained scale, not trained)"
    ))?;
    emit(format!("directory            {}", out.display()))?;
    emit(format!("parameters           {parameters:>10}"))?;
    emit(format!(
        "model.safetensors    {:>10.1} MB",
        bytes as f64 / 1e6
    ))?;
    emit(format!("time                 {ms:>10.0} ms"))
}

fn embed(
    dir: &std::path::Path,
    text: &str,
    tokens: Option<usize>,
    json: bool,
    check_ranges: bool,
) -> Result<(), String> {
    use umbra::models::calibration::{Fingerprint, Observations, Ranges};
    let t0 = std::time::Instant::now();
    let m = umbra::models::Embedder::load(dir).map_err(|e| e.to_string())?;
    let ranges = Ranges::for_model(dir, &Fingerprint::of_dir(dir).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    if check_ranges && ranges.is_none() {
        return Err(format!(
            "--check-ranges: {} does not exist (run `umbra calibrate --model {}` first)",
            Ranges::path_in(dir).display(),
            dir.display()
        ));
    }
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = std::time::Instant::now();
    let encoding = m.encode(text, tokens).map_err(|e| e.to_string())?;
    let mask = encoding.attention_mask.clone();
    let mut obs = Observations::new(&m.model.config);
    obs.count(&mask);
    let e = m
        .embed_encoding_observed(encoding, &mut |p| {
            if ranges.is_some() {
                obs.observe(&mask, p)
            }
        })
        .map_err(|e| e.to_string())?;
    let ms = t1.elapsed().as_secs_f64() * 1e3;
    let violations = ranges.as_ref().map(|r| r.check(&obs));
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
            "ranges": ranges.as_ref().map(|_| Ranges::path_in(dir).display().to_string()),
            "out_of_range": violations.as_ref().map(|v| v.len()),
            "violations": violations,
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
    if let (Some(v), Some(r)) = (&violations, &ranges) {
        emit(format!(
            "out of range         {:>10} (calibrated ranges: {}, {} sentences at {} tokens)",
            v.len(),
            Ranges::path_in(dir).display(),
            r.observed.inputs,
            r.tokens
        ))?;
        // Per layer (the embeddings first), how many per site.
        let mut by_layer = std::collections::BTreeMap::<
            Option<usize>,
            std::collections::BTreeMap<&str, usize>,
        >::new();
        for x in v {
            *by_layer
                .entry(x.layer)
                .or_default()
                .entry(x.site.as_str())
                .or_default() += 1;
        }
        for (layer, sites) in by_layer {
            let counts: Vec<String> = sites.iter().map(|(s, n)| format!("{s} {n}")).collect();
            let layer = layer
                .map(|l| format!("layer {l}"))
                .unwrap_or("before layer 0".into());
            emit(format!("  {layer}: {}", counts.join(", ")))?;
        }
        for x in v.iter().take(10) {
            emit(format!("  {x}"))?;
        }
        if v.len() > 10 {
            emit(format!(
                "  ... and {} more (--json lists all)",
                v.len() - 10
            ))?;
        }
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

fn calibrate(
    dir: &std::path::Path,
    sentences: Option<&std::path::Path>,
    tokens: Option<usize>,
    margin: f64,
    json: bool,
) -> Result<(), String> {
    use umbra::models::calibration::{self, Fingerprint, Ranges};
    if is_gpt2(dir) {
        let t0 = std::time::Instant::now();
        let (r, path) = umbra::cli::generate::calibrate(dir, sentences, margin)?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let row = serde_json::json!({
            "model": dir.display().to_string(),
            "file": path.display().to_string(),
            "prompts": r.prompts,
            "max_tokens": r.max_tokens,
            "source": r.source,
            "margin": r.margin,
            "ms": ms,
            "layers": r.layers.len(),
        });
        if json {
            return emit(row.to_string());
        }
        emit(format!(
            "calibrated {} on {} prompts ({}; up to {} tokens) in {ms:.0} ms: {}",
            dir.display(),
            r.prompts,
            r.source,
            r.max_tokens,
            path.display()
        ))?;
        for (i, l) in r.layers.iter().enumerate() {
            let top: Vec<String> = l
                .residual_top_features
                .iter()
                .take(3)
                .map(|(j, v)| format!("{j}: {v:.1}"))
                .collect();
            emit(format!(
                "layer {i:>2}  score max-mean {:>6.2}  ln_1 |x| {:>7.2}  ln_2 |x| {:>7.2}  gelu in [{:.1}, {:.1}]  top residual features {}",
                l.above,
                l.ln_1.input_abs_max,
                l.ln_2.input_abs_max,
                l.activation.map_or(0.0, |a| a.min),
                l.activation.map_or(0.0, |a| a.max),
                top.join(", ")
            ))?;
        }
        return Ok(());
    }
    let (text, source) = match sentences {
        Some(p) => (
            calibration::read_sentences(p).map_err(|e| e.to_string())?,
            p.display().to_string(),
        ),
        None => (
            umbra::models::sample::SENTENCES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            "built-in sample (synthetic)".to_string(),
        ),
    };
    let t0 = std::time::Instant::now();
    let m = umbra::models::Embedder::load(dir).map_err(|e| e.to_string())?;
    // A ranges file already there must be this model's (or unreadable: then say so).
    let path = Ranges::path_in(dir);
    if path.exists() && !Ranges::is_stale(dir) {
        let fp = Fingerprint::of_dir(dir).map_err(|e| e.to_string())?;
        Ranges::for_model(dir, &fp)
            .map_err(|e| format!("{e}; remove it to calibrate this model"))?;
    }
    let t = tokens.or(m.tokenizer.fixed_length()).unwrap_or(128);
    let r = calibration::calibrate(&m, &text, t, margin, &source).map_err(|e| e.to_string())?;
    let written = r.write(dir).map_err(|e| e.to_string())?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let summary = r.summary();
    if json {
        let row = serde_json::json!({
            "model": dir.display().to_string(),
            "file": written.display().to_string(),
            "tokens": r.tokens,
            "sentences": r.observed.inputs,
            "real_tokens": r.observed.real_tokens,
            "padding_tokens": r.observed.padding_tokens,
            "source": r.source,
            "margin": r.margin,
            "ms": ms,
            "layers": summary,
        });
        return emit(row.to_string());
    }
    let f = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
    let iv =
        |v: Option<calibration::Interval>| v.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
    emit(format!(
        "# {}: {} sentences ({}) at {} tokens ({} real, {} padding rows), margin {}%, {:.0} ms",
        dir.display(),
        r.observed.inputs,
        r.source,
        r.tokens,
        r.observed.real_tokens,
        r.observed.padding_tokens,
        r.margin * 100.0,
        ms
    ))?;
    emit(format!("wrote                {}", written.display()))?;
    if let Some(e) = r.observed.embeddings.range.real {
        emit(format!("embeddings output    {e} (real rows)"))?;
    }
    emit(
        "observed (no margin): max-mean and mean-min of scores over visible keys, real/padding \
          query rows; softmax row sum after the row-mean shift; LayerNorm input variance \
          (attention, output); GELU input; largest residual |x| (feature: value)"
            .to_string(),
    )?;
    for l in &summary {
        let top: Vec<String> = l
            .residual_top
            .iter()
            .map(|(j, v)| format!("{j}: {v:.1}"))
            .collect();
        emit(format!(
            "layer {}  max-mean {}/{}  mean-min {}/{}  row sum {}  var {} {}  GELU {}  |x| {}",
            l.layer,
            f(l.above.0),
            f(l.above.1),
            f(l.below.0),
            f(l.below.1),
            iv(l.row_sum),
            iv(l.variance.0),
            iv(l.variance.1),
            iv(l.gelu),
            top.join(", ")
        ))?;
    }
    Ok(())
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
