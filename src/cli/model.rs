//! The model commands: `umbra run`, `eval`, `keygen`, `encrypt`, `infer`, `decrypt` and
//! `estimate --model` on a Hugging Face BERT directory (issue 13). Client and server steps are
//! separate functions; `run` chains them in one process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::backend::Device;
use crate::ckks::bootstrap::{self, gen_bootstrap_keys_at, BootstrapPreset, Refreshing};
use crate::ckks::serialize::{secret_seed_from_bytes, secret_seed_to_bytes, Serial};
use crate::ckks::{
    Bootstrapper, Ciphertext, CkksError, Context, Decryptor, Encoder, Encryptor, EvaluationKeys,
    Evaluator, KeyGenerator, Parameters, SecretKey,
};
use crate::math::fft::C64;
use crate::models::bundle::{Bundle, Header};
use crate::models::calibration::{self, Fingerprint, Ranges};
use crate::models::sentence::l2_normalize;
use crate::models::{Embedder, EncryptedEncoder, ModelError};
use crate::nn::planner::{self, CostModel};

/// The default model directory (`models/fetch.sh all-MiniLM-L6-v2` fills it).
pub const DEFAULT_MODEL: &str = "models/all-MiniLM-L6-v2";
/// The default parameters: 128-bit secure, bootstrapping (N = 2^16).
pub const DEFAULT_PRESET: &str = "N16_QP1701_L9_S50_boot";

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn ckks(e: ModelError) -> CkksError {
    match e {
        ModelError::Layer(e) => e,
        other => CkksError::Invalid(other.to_string()),
    }
}

/// A model directory with its calibrated ranges.
pub struct Loaded {
    pub dir: PathBuf,
    pub embedder: Embedder,
    pub ranges: Ranges,
    pub fingerprint: Fingerprint,
}

/// `load`, keeping only the first `layers` encoder layers (model and ranges) when given: for
/// measuring part of a model against its estimate. Errors: as `load`, 0 or more layers than the
/// model has.
pub fn load_layers(dir: &Path, layers: Option<usize>) -> Result<Loaded, String> {
    let mut m = load(dir)?;
    if let Some(l) = layers {
        let have = m.embedder.model.config.layers;
        if l == 0 || l > have {
            return Err(format!("--layers {l}: the model has {have} layers"));
        }
        m.embedder.model.encoder.layers.truncate(l);
        m.embedder.model.config.layers = l;
        m.ranges.observed.layers.truncate(l);
    }
    Ok(m)
}

/// Loads `dir` and its ranges file; calibrates on the built-in sample (and writes the file) when
/// there is none, saying so on stderr. Errors: the model's, a ranges file of another model.
pub fn load(dir: &Path) -> Result<Loaded, String> {
    let embedder = Embedder::load(dir).map_err(s)?;
    let fingerprint = Fingerprint::of_dir(dir).map_err(s)?;
    if Ranges::is_stale(dir) {
        let p = Ranges::path_in(dir);
        let old = p.with_extension("json.old");
        eprintln!(
            "umbra: {} is of an older format: kept as {}, recalibrating (`umbra calibrate \
             --sentences FILE` to calibrate on your own text again)",
            p.display(),
            old.display()
        );
        std::fs::rename(&p, &old).map_err(s)?;
    }
    let ranges = match Ranges::for_model(dir, &fingerprint).map_err(s)? {
        Some(r) => r,
        None => {
            let t = embedder.tokenizer.fixed_length().unwrap_or(128);
            eprintln!(
                "umbra: no {} yet: calibrating on the built-in sample at {t} tokens (once; `umbra \
                 calibrate --sentences FILE` calibrates on your own text)",
                Ranges::path_in(dir).display()
            );
            let text: Vec<String> = crate::models::sample::SENTENCES
                .iter()
                .map(|x| x.to_string())
                .collect();
            let r = calibration::calibrate(
                &embedder,
                &text,
                t,
                calibration::DEFAULT_MARGIN,
                "built-in sample (synthetic)",
            )
            .map_err(s)?;
            r.write(dir).map_err(s)?;
            r
        }
    };
    Ok(Loaded {
        dir: dir.to_path_buf(),
        embedder,
        ranges,
        fingerprint,
    })
}

/// The bootstrapping preset `name` and its parameters; insecure presets are allowed (their name
/// says so) with a warning on stderr.
pub fn preset(name: &str) -> Result<(BootstrapPreset, Arc<Parameters>), String> {
    let pr = bootstrap::preset(name).map_err(s)?;
    let params = Parameters::new(pr.params.clone()).map_err(s)?;
    if !params.is_secure() {
        eprintln!(
            "umbra: warning: {name} is not 128-bit secure ({} bits): for tests only",
            params.security_bits()
        );
    }
    Ok((pr, params))
}

/// The token count for `text`: `tokens` when given (a power of two), else the smallest power of
/// two holding its real tokens (at least 8), at most `max` (the ring's limit for this model).
pub fn choose_tokens(
    m: &Loaded,
    text: &str,
    tokens: Option<usize>,
    max: usize,
) -> Result<usize, String> {
    if let Some(t) = tokens {
        if !t.is_power_of_two() {
            return Err(format!(
                "--tokens {t}: need a power of two (8, 16, 32, 64, 128)"
            ));
        }
        if t > max {
            return Err(format!(
                "--tokens {t}: at most {max} tokens fit this model's attention in the ring"
            ));
        }
        return Ok(t);
    }
    let n = m.embedder.encode(text, None).map_err(s)?.real_tokens();
    Ok(n.next_power_of_two().clamp(8, max))
}

/// The most tokens this model's attention fits in `max_slots` slots.
pub fn max_tokens(m: &Loaded, max_slots: usize) -> usize {
    let c = &m.embedder.model.config;
    crate::nn::attention::max_attention_tokens(max_slots, c.hidden / c.heads)
}

/// The encoder on ciphertexts of `m` at `tokens` tokens, for `params`.
pub fn encoder(m: &Loaded, tokens: usize, params: &Parameters) -> Result<EncryptedEncoder, String> {
    EncryptedEncoder::new(
        &m.embedder.model,
        &m.embedder.sentence,
        &m.ranges,
        tokens,
        params.max_slots(),
    )
    .map_err(s)
}

/// What the plaintext model gives for a text at T tokens.
pub struct Plain {
    pub encoding: crate::models::Encoding,
    pub embedding: Vec<f64>,
    pub ms: f64,
}

/// The exact f64 model (Hugging Face's semantics, padding keys masked).
pub fn plaintext(m: &Loaded, text: &str, tokens: usize) -> Result<Plain, String> {
    let t = Instant::now();
    let encoding = m.embedder.encode(text, Some(tokens)).map_err(s)?;
    let e = m.embedder.embed_encoding(encoding.clone()).map_err(s)?;
    Ok(Plain {
        encoding,
        embedding: e.embedding,
        ms: t.elapsed().as_secs_f64() * 1e3,
    })
}

/// cos(a, b).
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn max_abs_err(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The client's last step: the model's output from the pooled vector.
fn finish(enc: &EncryptedEncoder, pooled: Vec<f64>) -> Vec<f64> {
    if enc.normalize {
        l2_normalize(&pooled)
    } else {
        pooled
    }
}

/// The plan of the server's work: bootstraps and operation counts on the simulator.
pub fn plan(
    enc: &EncryptedEncoder,
    pr: &BootstrapPreset,
    params: &Arc<Parameters>,
) -> Result<planner::Plan, String> {
    let cts = enc.layout.cts();
    planner::plan(params, &pr.boot, cts, params.max_slots(), |c, x| {
        enc.forward(c, x, &mut |_| {}).map_err(ckks)
    })
    .map_err(|e| format!("planning on the simulator: {e}"))
}

/// Predicted time of the server's work (cost model timed on `ctx`'s backend).
pub fn estimate_ms(
    ctx: &Arc<Context>,
    pr: &BootstrapPreset,
    plan: &planner::Plan,
) -> Result<f64, String> {
    let model = CostModel::calibrate(ctx, Some(&pr.boot), 4, 3).map_err(s)?;
    Ok(model.estimate_ms(&plan.ops))
}

/// A fresh key-set id (16 hex digits from the OS CSPRNG) that every file of one keygen carries.
pub(crate) fn new_key_id() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 8];
    rand_core::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The server's keys for `enc`: relinearization, the encoder's rotations, bootstrapping's.
fn eval_keys(
    kg: &mut KeyGenerator,
    sk: &SecretKey,
    params: &Arc<Parameters>,
    pr: &BootstrapPreset,
    enc: &EncryptedEncoder,
) -> Result<EvaluationKeys, String> {
    keys_with_rotations(kg, sk, params, pr, enc.rotations().map_err(s)?)
}

/// Relinearization and bootstrapping keys, plus the model's rotations `rots` at the top compute
/// level (where the layers rotate).
pub(crate) fn keys_with_rotations(
    kg: &mut KeyGenerator,
    sk: &SecretKey,
    params: &Arc<Parameters>,
    pr: &BootstrapPreset,
    rots: Vec<i64>,
) -> Result<EvaluationKeys, String> {
    let top = params.compute_top_level();
    let rots: Vec<(i64, usize)> = rots.into_iter().map(|r| (r, top)).collect();
    gen_bootstrap_keys_at(kg, sk, params, &pr.boot, &rots).map_err(s)
}

/// Client: the packed embeddings of a text, encrypted at the top compute level.
fn encrypt_rows(
    ctx: &Arc<Context>,
    enc: &EncryptedEncoder,
    rows: &[Vec<f64>],
    sk: &SecretKey,
) -> Result<Vec<Ciphertext>, String> {
    encrypt_slots(ctx, &enc.pack(rows).map_err(s)?, sk)
}

/// Client: real slot vectors encrypted under `sk` at the top compute level, one ciphertext each.
pub(crate) fn encrypt_slots(
    ctx: &Arc<Context>,
    slots: &[Vec<f64>],
    sk: &SecretKey,
) -> Result<Vec<Ciphertext>, String> {
    let top = ctx.params.compute_top_level();
    let encoder = Encoder::new(ctx);
    let mut encryptor = Encryptor::secret(ctx);
    slots
        .iter()
        .map(|v| {
            let c: Vec<C64> = v.iter().map(|&a| C64::new(a, 0.0)).collect();
            encryptor.encrypt_sk(&encoder.encode_complex(&c, top, None)?, sk)
        })
        .collect::<Result<_, _>>()
        .map_err(s)
}

/// Client: decrypts the pooled ciphertexts and reads the model's output.
fn decrypt_pooled(
    ctx: &Arc<Context>,
    enc: &EncryptedEncoder,
    out: &[Ciphertext],
    sk: &SecretKey,
) -> Result<Vec<f64>, String> {
    let dec = Decryptor::new(ctx);
    let slots: Vec<Vec<f64>> = out
        .iter()
        .map(|ct| {
            let mut v = dec.decrypt(ct, sk)?;
            v.truncate(ct.slots);
            Ok(v)
        })
        .collect::<Result<_, CkksError>>()
        .map_err(s)?;
    Ok(finish(enc, enc.read_pooled(&slots).map_err(s)?))
}

pub(crate) fn progress_bar(layers: usize, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(layers as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {bar:30} layer {pos}/{len} (eta {eta})",
        )
        .expect("a valid template"),
    );
    pb.set_prefix(what.to_string());
    pb
}

/// The server: an evaluator on the evaluation keys and the prepared bootstrapping circuit.
pub(crate) struct Server {
    pub(crate) ctx: Arc<Context>,
    pub(crate) eval: Evaluator,
    pub(crate) boot: Bootstrapper<crate::ckks::Plaintext>,
}

impl Server {
    pub(crate) fn new(
        ctx: &Arc<Context>,
        keys: EvaluationKeys,
        pr: &BootstrapPreset,
    ) -> Result<Self, String> {
        let eval = Evaluator::new(ctx, Arc::new(keys)).map_err(s)?;
        let boot = Bootstrapper::new(&eval, &pr.boot).map_err(s)?;
        Ok(Server {
            ctx: ctx.clone(),
            eval,
            boot,
        })
    }
}

/// The server's work on the input ciphertexts (a progress bar per layer on stderr).
fn serve(
    ctx: &Arc<Context>,
    keys: EvaluationKeys,
    pr: &BootstrapPreset,
    enc: &EncryptedEncoder,
    input: &[Ciphertext],
    quiet: bool,
) -> Result<(Vec<Ciphertext>, usize, f64), String> {
    serve_on(&Server::new(ctx, keys, pr)?, enc, input, quiet)
}

/// `serve` on a prepared server: outputs, bootstraps, wall time (ms).
fn serve_on(
    server: &Server,
    enc: &EncryptedEncoder,
    input: &[Ciphertext],
    quiet: bool,
) -> Result<(Vec<Ciphertext>, usize, f64), String> {
    let ctx = &server.ctx;
    let r = Refreshing::new(&server.eval, &server.boot);
    let pb = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        progress_bar(enc.blocks.len(), "encrypted")
    };
    let t = Instant::now();
    let out = enc.forward(&r, input, &mut |_| pb.inc(1)).map_err(s)?;
    ctx.backend.synchronize();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    pb.finish_and_clear();
    Ok((out, r.bootstraps(), ms))
}

/// What `umbra run --json` prints (the fields, plus a few).
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub model: String,
    pub mode: &'static str,
    pub text: String,
    pub tokens: usize,
    pub real_tokens: usize,
    pub truncated: bool,
    pub layers: usize,
    pub preset: Option<String>,
    pub backend: Option<String>,
    pub threads: usize,
    /// Wall time of the encrypted forward pass (the server's work), or of the plaintext model.
    pub ms: f64,
    pub keygen_ms: Option<f64>,
    pub encrypt_ms: Option<f64>,
    pub decrypt_ms: Option<f64>,
    pub bootstraps: Option<usize>,
    pub estimated_ms: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
    pub normalized: bool,
    pub embedding: Vec<f64>,
    pub cosine_vs_plaintext: Option<f64>,
    pub max_abs_err_vs_plaintext: Option<f64>,
}

/// `umbra run`: keygen, encrypt, infer, decrypt in one process (or the exact model only with
/// `plaintext`). `say` gets the human-readable progress lines (the estimate before encrypting).
#[allow(clippy::too_many_arguments)]
pub fn run(
    dir: &Path,
    text: &str,
    tokens: Option<usize>,
    preset_name: &str,
    backend: Option<&str>,
    plaintext_only: bool,
    quiet: bool,
    say: &mut dyn FnMut(String),
) -> Result<RunReport, String> {
    run_layers(
        dir,
        text,
        tokens,
        None,
        preset_name,
        backend,
        plaintext_only,
        quiet,
        say,
    )
}

/// `run` on the first `layers` encoder layers only (all when None), against the plaintext model
/// cut the same way.
#[allow(clippy::too_many_arguments)]
pub fn run_layers(
    dir: &Path,
    text: &str,
    tokens: Option<usize>,
    layers: Option<usize>,
    preset_name: &str,
    backend: Option<&str>,
    plaintext_only: bool,
    quiet: bool,
    say: &mut dyn FnMut(String),
) -> Result<RunReport, String> {
    let m = load_layers(dir, layers)?;
    let c = m.embedder.model.config.clone();
    let (pr, params) = preset(preset_name)?;
    let t = choose_tokens(&m, text, tokens, max_tokens(&m, params.max_slots()))?;
    let plain = plaintext(&m, text, t)?;
    if plain.encoding.truncated {
        say(format!(
            "warning: the text was cut to {t} tokens (both models see the cut text)"
        ));
    }
    let mut report = RunReport {
        model: dir.display().to_string(),
        mode: "plaintext",
        text: text.to_string(),
        tokens: t,
        real_tokens: plain.encoding.real_tokens(),
        truncated: plain.encoding.truncated,
        layers: c.layers,
        preset: None,
        backend: None,
        threads: rayon::current_num_threads(),
        ms: plain.ms,
        keygen_ms: None,
        encrypt_ms: None,
        decrypt_ms: None,
        bootstraps: None,
        estimated_ms: None,
        peak_rss_bytes: None,
        normalized: m.embedder.sentence.normalize,
        embedding: plain.embedding.clone(),
        cosine_vs_plaintext: None,
        max_abs_err_vs_plaintext: None,
    };
    if plaintext_only {
        report.peak_rss_bytes = crate::cli::tooling::bench::peak_rss_bytes();
        return Ok(report);
    }
    let device = Device::choose(backend).map_err(s)?;
    let mut enc = encoder(&m, t, &params)?;
    let (rows, n) = enc
        .client_rows(&m.embedder.model, &plain.encoding)
        .map_err(s)?;
    enc.set_length(n).map_err(s)?;
    let ctx = Context::new(params.clone(), device).map_err(s)?;
    let p = plan(&enc, &pr, &params)?;
    let est = estimate_ms(&ctx, &pr, &p)?;
    say(format!(
        "estimate: {:.1} s for {} layers at {t} tokens ({n} real) on {device} with {} threads, \
         {} bootstraps, {} key switches ({preset_name})",
        est / 1e3,
        c.layers,
        rayon::current_num_threads(),
        p.bootstraps,
        p.ops.key_switches()
    ));
    let tk = Instant::now();
    let mut kg = KeyGenerator::new(&ctx);
    let (sk, _seed) = kg.gen_secret_key_seeded();
    let keys = eval_keys(&mut kg, &sk, &params, &pr, &enc)?;
    let keygen_ms = tk.elapsed().as_secs_f64() * 1e3;
    let te = Instant::now();
    let input = encrypt_rows(&ctx, &enc, &rows, &sk)?;
    let encrypt_ms = te.elapsed().as_secs_f64() * 1e3;
    let (out, bootstraps, ms) = serve(&ctx, keys, &pr, &enc, &input, quiet)?;
    let td = Instant::now();
    let embedding = decrypt_pooled(&ctx, &enc, &out, &sk)?;
    let decrypt_ms = td.elapsed().as_secs_f64() * 1e3;
    report.mode = "encrypted";
    report.preset = Some(preset_name.to_string());
    report.backend = Some(device.to_string());
    report.ms = ms;
    report.keygen_ms = Some(keygen_ms);
    report.encrypt_ms = Some(encrypt_ms);
    report.decrypt_ms = Some(decrypt_ms);
    report.bootstraps = Some(bootstraps);
    report.estimated_ms = Some(est);
    report.cosine_vs_plaintext = Some(cosine(&embedding, &plain.embedding));
    report.max_abs_err_vs_plaintext = Some(max_abs_err(&embedding, &plain.embedding));
    report.embedding = embedding;
    report.peak_rss_bytes = crate::cli::tooling::bench::peak_rss_bytes();
    Ok(report)
}

/// What `umbra eval --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub sentences: String,
    pub mode: String,
    pub tokens: usize,
    pub preset: Option<String>,
    /// Sentences compared.
    pub n: usize,
    pub cosine_mean: f64,
    pub cosine_min: f64,
    /// Fraction of sentences whose nearest other sentence (by cosine) is the one the plaintext
    /// model picks.
    pub nearest_neighbor_agreement: f64,
    /// Sentences whose activations left an approximation's interval (reported by the twin, in
    /// both modes). They count in `n` with the cosine of what the run returned (0 when the twin
    /// stopped).
    pub out_of_range: usize,
    /// The first out-of-range messages (at most 10).
    pub out_of_range_examples: Vec<String>,
    pub truncated: usize,
    pub ms: f64,
}

/// The other vector closest to v[i] by cosine (a non-finite cosine, from a zero vector, ranks
/// last).
fn nearest(v: &[Vec<f64>], i: usize) -> Option<usize> {
    let cos = |a: usize| {
        let c = cosine(&v[i], &v[a]);
        if c.is_finite() {
            c
        } else {
            f64::NEG_INFINITY
        }
    };
    (0..v.len())
        .filter(|&j| j != i)
        .max_by(|&a, &b| cos(a).total_cmp(&cos(b)))
}

/// `umbra eval`: the encrypted model's twin (`mode` "twin") or the encrypted model itself
/// ("encrypted", one key set for all sentences) against the plaintext model on a file of
/// sentences, each padded to `tokens`.
#[allow(clippy::too_many_arguments)]
pub fn eval(
    dir: &Path,
    sentences: &Path,
    mode: &str,
    tokens: usize,
    limit: Option<usize>,
    preset_name: &str,
    backend: Option<&str>,
    quiet: bool,
) -> Result<EvalReport, String> {
    if mode != "twin" && mode != "encrypted" {
        return Err(format!("--mode {mode}: twin or encrypted"));
    }
    let t0 = Instant::now();
    let m = load(dir)?;
    let mut text = calibration::read_sentences(sentences).map_err(s)?;
    if let Some(l) = limit {
        text.truncate(l);
    }
    if text.len() < 2 {
        return Err(format!(
            "{}: at least 2 sentences are needed (nearest neighbours)",
            sentences.display()
        ));
    }
    let (pr, params) = preset(preset_name)?;
    let max = max_tokens(&m, params.max_slots());
    let t = choose_tokens(&m, "", Some(tokens), max)?;
    let mut enc = encoder(&m, t, &params)?;
    let plains: Vec<Plain> = {
        use rayon::prelude::*;
        text.par_iter()
            .map(|x| plaintext(&m, x, t))
            .collect::<Result<_, _>>()?
    };
    let mut got: Vec<Vec<f64>> = Vec::with_capacity(text.len());
    let mut out_of_range = Vec::new();
    let pb = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(text.len() as u64)
    };
    let session = if mode == "encrypted" {
        let device = Device::choose(backend).map_err(s)?;
        let ctx = Context::new(params.clone(), device).map_err(s)?;
        let mut kg = KeyGenerator::new(&ctx);
        let (sk, _seed) = kg.gen_secret_key_seeded();
        let keys = eval_keys(&mut kg, &sk, &params, &pr, &enc)?;
        let server = Server::new(&ctx, keys, &pr)?;
        Some((ctx, sk, server))
    } else {
        None
    };
    if session.is_none() {
        // The twin, sentences in parallel (each with its own copy: the length is per input).
        use rayon::prelude::*;
        // Ok(Err(message)): the sentence left a calibrated interval; Err: a fault.
        let results: Vec<Result<Result<Vec<f64>, String>, String>> = plains
            .par_iter()
            .map(|p| {
                let mut e = enc.clone();
                let (rows, n) = e.client_rows(&m.embedder.model, &p.encoding).map_err(s)?;
                e.set_length(n).map_err(s)?;
                let r = e.twin(&rows);
                pb.inc(1);
                match r {
                    Ok(pooled) => Ok(Ok(finish(&e, pooled))),
                    Err(ModelError::Layer(CkksError::OutOfRange(msg))) => Ok(Err(msg)),
                    Err(other) => Err(other.to_string()),
                }
            })
            .collect();
        for (i, (r, p)) in results.into_iter().zip(&plains).enumerate() {
            match r? {
                Ok(y) => got.push(y),
                Err(msg) => {
                    out_of_range.push(format!("sentence {}: {msg}", i + 1));
                    got.push(vec![0.0; p.embedding.len()]);
                }
            }
        }
    }
    for (i, p) in plains.iter().enumerate() {
        let Some((ctx, sk, server)) = &session else {
            break;
        };
        let (rows, n) = enc.client_rows(&m.embedder.model, &p.encoding).map_err(s)?;
        enc.set_length(n).map_err(s)?;
        // The twin says whether this input left the calibrated ranges.
        if let Err(ModelError::Layer(CkksError::OutOfRange(msg))) = enc.twin(&rows) {
            out_of_range.push(format!("sentence {}: {msg}", i + 1));
        }
        let input = encrypt_rows(ctx, &enc, &rows, sk)?;
        let (out, _, _) = serve_on(server, &enc, &input, true)?;
        got.push(decrypt_pooled(ctx, &enc, &out, sk)?);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let cos: Vec<f64> = got
        .iter()
        .zip(&plains)
        .map(|(g, p)| {
            let c = cosine(g, &p.embedding);
            if c.is_finite() {
                c
            } else {
                0.0
            }
        })
        .collect();
    let want: Vec<Vec<f64>> = plains.iter().map(|p| p.embedding.clone()).collect();
    let agree = (0..got.len())
        .filter(|&i| nearest(&got, i) == nearest(&want, i))
        .count();
    let n = got.len();
    Ok(EvalReport {
        model: dir.display().to_string(),
        sentences: sentences.display().to_string(),
        mode: mode.into(),
        tokens: t,
        preset: (mode == "encrypted").then(|| preset_name.to_string()),
        n,
        cosine_mean: cos.iter().sum::<f64>() / n as f64,
        cosine_min: cos.iter().cloned().fold(f64::INFINITY, f64::min),
        nearest_neighbor_agreement: agree as f64 / n as f64,
        out_of_range: out_of_range.len(),
        out_of_range_examples: out_of_range.into_iter().take(10).collect(),
        truncated: plains.iter().filter(|p| p.encoding.truncated).count(),
        ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}

/// A file header for the model of fingerprint `model` (no GPT-2 step fields).
pub(crate) fn header(
    model: &Fingerprint,
    kind: &str,
    preset: &str,
    tokens: usize,
    length: Option<usize>,
    key_id: &str,
) -> Header {
    Header {
        kind: kind.into(),
        model: model.clone(),
        preset: preset.into(),
        tokens,
        length,
        key_id: key_id.into(),
        position: None,
        content: None,
        progress: None,
    }
}

/// The key files of a key directory.
pub fn secret_key_path(keys: &Path) -> PathBuf {
    keys.join("secret.key")
}

pub fn eval_keys_path(keys: &Path) -> PathBuf {
    keys.join("eval.keys")
}

/// What `umbra keygen` reports.
#[derive(Clone, Debug, Serialize)]
pub struct KeygenReport {
    pub secret_key: String,
    pub eval_keys: String,
    pub preset: String,
    pub tokens: usize,
    pub eval_keys_bytes: u64,
    pub keygen_ms: f64,
}

/// `umbra keygen`: KEYDIR/secret.key (0600) and KEYDIR/eval.keys for `dir` at `tokens`.
pub fn keygen(
    dir: &Path,
    tokens: usize,
    preset_name: &str,
    out: &Path,
) -> Result<KeygenReport, String> {
    let m = load(dir)?;
    let (pr, params) = preset(preset_name)?;
    let t = choose_tokens(&m, "", Some(tokens), max_tokens(&m, params.max_slots()))?;
    let enc = encoder(&m, t, &params)?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let ctx = Context::new(params.clone(), Device::Cpu).map_err(s)?;
    let t0 = Instant::now();
    let mut kg = KeyGenerator::new(&ctx);
    let (sk, seed) = kg.gen_secret_key_seeded();
    let keys = eval_keys(&mut kg, &sk, &params, &pr, &enc)?;
    let keygen_ms = t0.elapsed().as_secs_f64() * 1e3;
    write_keys(
        &m.fingerprint,
        preset_name,
        t,
        out,
        &ctx,
        &seed,
        &keys,
        keygen_ms,
    )
}

/// Writes a new key set: OUT/secret.key (0600, never over an existing one) and OUT/eval.keys,
/// under a fresh key-set id.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_keys(
    model: &Fingerprint,
    preset_name: &str,
    t: usize,
    out: &Path,
    ctx: &Arc<Context>,
    seed: &crate::ckks::SecretSeed,
    keys: &EvaluationKeys,
    keygen_ms: f64,
) -> Result<KeygenReport, String> {
    let key_id = new_key_id();
    let sk_path = secret_key_path(out);
    let mut secret = Bundle {
        header: header(model, "secret-key", preset_name, t, None, &key_id),
        objects: vec![secret_seed_to_bytes(&ctx.params, seed)],
    };
    let written = secret.write(&sk_path, true);
    {
        use zeroize::Zeroize;
        secret.objects.iter_mut().for_each(|o| o.zeroize());
    }
    written.map_err(s)?;
    let ek_path = eval_keys_path(out);
    let ek = Bundle {
        header: header(model, "eval-keys", preset_name, t, None, &key_id),
        objects: vec![keys.to_bytes(ctx).map_err(s)?],
    };
    ek.write(&ek_path, false).map_err(s)?;
    Ok(KeygenReport {
        secret_key: sk_path.display().to_string(),
        eval_keys: ek_path.display().to_string(),
        preset: preset_name.into(),
        tokens: t,
        eval_keys_bytes: std::fs::metadata(&ek_path).map(|m| m.len()).unwrap_or(0),
        keygen_ms,
    })
}

/// The secret key of KEYDIR (the client only) for the model of fingerprint `model`, with its
/// header.
#[allow(clippy::type_complexity)]
pub(crate) fn read_secret(
    keys: &Path,
    model: &Fingerprint,
) -> Result<
    (
        Header,
        Arc<Parameters>,
        BootstrapPreset,
        SecretKey,
        Arc<Context>,
    ),
    String,
> {
    if !keys.is_dir() {
        return Err(format!(
            "--keys {}: pass the key directory of `umbra keygen` (it holds secret.key)",
            keys.display()
        ));
    }
    let path = secret_key_path(keys);
    let mut b = Bundle::read(&path).map_err(s)?;
    let h = b.header.clone();
    h.expect(
        "secret-key",
        &header(model, "secret-key", &h.preset, h.tokens, None, &h.key_id),
        &path,
    )
    .map_err(s)?;
    let (pr, params) = preset(&h.preset)?;
    let ctx = Context::new(params.clone(), Device::Cpu).map_err(s)?;
    let bytes = b
        .objects
        .first()
        .ok_or_else(|| format!("{}: no key in the file", path.display()))?;
    let seed = secret_seed_from_bytes(&params, bytes);
    {
        use zeroize::Zeroize;
        b.objects.iter_mut().for_each(|o| o.zeroize());
    }
    let seed = seed.map_err(|e| format!("{}: {e}", path.display()))?;
    let sk = KeyGenerator::new(&ctx).secret_key_from_seed(&seed);
    Ok((h, params, pr, sk, ctx))
}

/// Writes ciphertexts as a bundle with `header` at `out`.
pub(crate) fn write_cts(
    ctx: &Arc<Context>,
    header: Header,
    cts: &[Ciphertext],
    out: &Path,
) -> Result<(), String> {
    let b = Bundle {
        header,
        objects: cts
            .iter()
            .map(|c| c.to_bytes(ctx))
            .collect::<Result<_, _>>()
            .map_err(s)?,
    };
    b.write(out, false).map_err(s)
}

/// What `umbra encrypt` reports.
#[derive(Clone, Debug, Serialize)]
pub struct EncryptReport {
    pub out: String,
    pub tokens: usize,
    pub real_tokens: usize,
    pub truncated: bool,
    pub ciphertexts: usize,
    pub bytes: u64,
}

/// `umbra encrypt` (client): tokenize and embed `text`, pad with copies, encrypt under KEYDIR's
/// secret key, write `out`.
pub fn encrypt(
    dir: &Path,
    keys: &Path,
    text: &str,
    tokens: Option<usize>,
    out: &Path,
) -> Result<EncryptReport, String> {
    let m = load(dir)?;
    let (h, params, _pr, sk, ctx) = read_secret(keys, &m.fingerprint)?;
    Bundle::check_target(out, "input").map_err(s)?;
    if let Some(t) = tokens {
        if t != h.tokens {
            return Err(format!(
                "--tokens {t}: the keys in {} were made for {} tokens",
                keys.display(),
                h.tokens
            ));
        }
    }
    let t = h.tokens;
    let mut enc = encoder(&m, t, &params)?;
    let encoding = m.embedder.encode(text, Some(t)).map_err(s)?;
    if encoding.truncated {
        eprintln!("umbra: warning: the text was cut to the keys' {t} tokens");
    }
    let (rows, n) = enc.client_rows(&m.embedder.model, &encoding).map_err(s)?;
    enc.set_length(n).map_err(s)?;
    let cts = encrypt_rows(&ctx, &enc, &rows, &sk)?;
    write_cts(
        &ctx,
        header(&m.fingerprint, "input", &h.preset, t, Some(n), &h.key_id),
        &cts,
        out,
    )?;
    Ok(EncryptReport {
        out: out.display().to_string(),
        tokens: t,
        real_tokens: n,
        truncated: encoding.truncated,
        ciphertexts: cts.len(),
        bytes: std::fs::metadata(out).map(|m| m.len()).unwrap_or(0),
    })
}

/// Server: the header and length of an input bundle (read from `input`) checked against the model
/// `fp`, and the evaluation keys' bundle at `eval_keys` checked against the input (model, preset,
/// tokens, key set). Errors: either check, no length in the header.
pub(crate) fn input_and_keys(
    fp: &Fingerprint,
    inb: &Bundle,
    input: &Path,
    eval_keys: &Path,
) -> Result<(Header, usize, Bundle), String> {
    let h = inb.header.clone();
    let want = header(fp, "input", &h.preset, h.tokens, None, &h.key_id);
    h.expect("input", &want, input).map_err(s)?;
    let n = h
        .length
        .ok_or_else(|| format!("{}: no length in the header", input.display()))?;
    let kb = Bundle::read(eval_keys).map_err(s)?;
    kb.header.expect("eval-keys", &h, eval_keys).map_err(s)?;
    Ok((h, n, kb))
}

/// What `umbra infer` reports.
#[derive(Clone, Debug, Serialize)]
pub struct InferReport {
    pub out: String,
    pub preset: String,
    pub backend: String,
    pub tokens: usize,
    pub real_tokens: usize,
    pub layers: usize,
    pub ms: f64,
    pub bootstraps: usize,
    pub peak_rss_bytes: Option<u64>,
}

/// `umbra infer` (server): every layer and the pooling on IN's ciphertexts with the evaluation
/// keys only (it never opens a secret key), writing OUT.
pub fn infer(
    dir: &Path,
    eval_keys: &Path,
    input: &Path,
    out: &Path,
    backend: Option<&str>,
    quiet: bool,
) -> Result<InferReport, String> {
    let m = load(dir)?;
    Bundle::check_target(out, "output").map_err(s)?;
    let inb = Bundle::read(input).map_err(s)?;
    let (h, n, kb) = input_and_keys(&m.fingerprint, &inb, input, eval_keys)?;
    let (pr, params) = preset(&h.preset)?;
    let device = Device::choose(backend).map_err(s)?;
    let ctx = Context::new(params.clone(), device).map_err(s)?;
    let keys = EvaluationKeys::from_bytes(
        &ctx,
        kb.objects
            .first()
            .ok_or_else(|| format!("{}: no keys in the file", eval_keys.display()))?,
    )
    .map_err(|e| format!("{}: {e}", eval_keys.display()))?;
    let mut enc = encoder(&m, h.tokens, &params)?;
    enc.set_length(n).map_err(s)?;
    let cts: Vec<Ciphertext> = inb
        .objects
        .iter()
        .map(|b| Ciphertext::from_bytes(&ctx, b))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", input.display()))?;
    if cts.len() != enc.layout.cts() {
        return Err(format!(
            "{}: {} ciphertexts, the model needs {}",
            input.display(),
            cts.len(),
            enc.layout.cts()
        ));
    }
    let (y, bootstraps, ms) = serve(&ctx, keys, &pr, &enc, &cts, quiet)?;
    write_cts(
        &ctx,
        header(
            &m.fingerprint,
            "output",
            &h.preset,
            h.tokens,
            Some(n),
            &h.key_id,
        ),
        &y,
        out,
    )?;
    Ok(InferReport {
        out: out.display().to_string(),
        preset: h.preset,
        backend: device.to_string(),
        tokens: h.tokens,
        real_tokens: n,
        layers: enc.blocks.len(),
        ms,
        bootstraps,
        peak_rss_bytes: crate::cli::tooling::bench::peak_rss_bytes(),
    })
}

/// What `umbra decrypt` prints.
#[derive(Clone, Debug, Serialize)]
pub struct DecryptReport {
    pub model: String,
    pub tokens: usize,
    pub real_tokens: usize,
    pub normalized: bool,
    pub embedding: Vec<f64>,
}

/// `umbra decrypt` (client): the model's output from OUT.
pub fn decrypt(dir: &Path, keys: &Path, input: &Path) -> Result<DecryptReport, String> {
    let m = load(dir)?;
    let (h, params, _pr, sk, ctx) = read_secret(keys, &m.fingerprint)?;
    let b = Bundle::read(input).map_err(s)?;
    b.header.expect("output", &h, input).map_err(s)?;
    let n = b
        .header
        .length
        .ok_or_else(|| format!("{}: no real length in the header", input.display()))?;
    let mut enc = encoder(&m, h.tokens, &params)?;
    enc.set_length(n).map_err(s)?;
    let cts: Vec<Ciphertext> = b
        .objects
        .iter()
        .map(|o| Ciphertext::from_bytes(&ctx, o))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", input.display()))?;
    let embedding = decrypt_pooled(&ctx, &enc, &cts, &sk)?;
    Ok(DecryptReport {
        model: dir.display().to_string(),
        tokens: h.tokens,
        real_tokens: n,
        normalized: enc.normalize,
        embedding,
    })
}

/// What `umbra estimate --model` prints.
#[derive(Clone, Debug, Serialize)]
pub struct ModelEstimate {
    pub model: String,
    pub tokens: usize,
    pub real_tokens: usize,
    pub layers: usize,
    pub preset: String,
    pub backend: String,
    pub threads: usize,
    pub estimated_ms: f64,
    pub estimated_ms_per_layer: f64,
    pub bootstraps: usize,
    pub key_switches: usize,
    pub ops: std::collections::BTreeMap<&'static str, usize>,
}

/// `umbra estimate --model`: the encrypted model (its first `layers` layers when given) at
/// `tokens` tokens (all of them real), planned on the simulator and priced on the backend.
pub fn estimate(
    dir: &Path,
    tokens: usize,
    layers: Option<usize>,
    preset_name: &str,
    backend: Option<&str>,
) -> Result<ModelEstimate, String> {
    let m = load_layers(dir, layers)?;
    let (pr, params) = preset(preset_name)?;
    let t = choose_tokens(&m, "", Some(tokens), max_tokens(&m, params.max_slots()))?;
    let mut enc = encoder(&m, t, &params)?;
    enc.set_length(t).map_err(s)?;
    let device = Device::choose(backend).map_err(s)?;
    let ctx = Context::new(params.clone(), device).map_err(s)?;
    let p = plan(&enc, &pr, &params)?;
    let ms = estimate_ms(&ctx, &pr, &p)?;
    let layers = enc.blocks.len();
    Ok(ModelEstimate {
        model: dir.display().to_string(),
        tokens: t,
        real_tokens: t,
        layers,
        preset: preset_name.into(),
        backend: device.to_string(),
        threads: rayon::current_num_threads(),
        estimated_ms: ms,
        estimated_ms_per_layer: ms / layers as f64,
        bootstraps: p.bootstraps,
        key_switches: p.ops.key_switches(),
        ops: p.ops.by_kind(),
    })
}
