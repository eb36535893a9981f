//! GPT-2's client and server files (issue 14): `umbra keygen`, `encrypt`, `infer` and `decrypt`
//! on a GPT-2 directory, in the bundle format of the BERT commands (`models::bundle`).
//!
//! ```text
//! client: keygen --tokens T        -> KEYDIR/secret.key (0600), KEYDIR/eval.keys
//! client: encrypt --text PROMPT    -> prompt.ct   (n tokens' wte + wpe, copies of the last)
//! server: infer --in prompt.ct --cache kv.cache   -> logits.ct, kv.cache (positions 0..n)
//! client: decrypt --in logits.ct   -> the next token t_n (greedy)
//! client: encrypt --token t_n --position n         -> step.ct
//! server: infer --in step.ct --cache kv.cache      -> logits.ct, kv.cache (positions 0..n+1)
//! ...
//! ```
//!
//! The server never opens a secret key; the position of each new token is public to it (as the
//! prompt's length is, D14), the token is not. The cache file is bound to its key set, model,
//! preset and window like every other file, and carries how many positions it holds: a decode
//! step for another position is refused. A step is hours long on a CPU at GPT-2 small's size, so
//! the server writes a checkpoint (`CACHE.checkpoint`) after every layer; the same `infer` run
//! again resumes from it (`--stop-after-layers` cuts a step into slices on purpose).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::generate::{
    cache_from_bytes, cache_to_bytes, decrypt_slots, encrypt_rows, eval_keys, load,
    relative_logit_err, Gpt2Loaded,
};
use super::model::{
    header, input_and_keys, preset, progress_bar, read_secret, write_cts, write_keys, KeygenReport,
    Server,
};
use crate::backend::Device;
use crate::ckks::bootstrap::Refreshing;
use crate::ckks::serialize::Serial;
use crate::ckks::{Ciphertext, Context, EvaluationKeys, KeyGenerator};
use crate::models::bundle::{Bundle, Progress};
use crate::models::gpt2::argmax;
use crate::models::gpt2_encrypted::{EncryptedGpt2, LayerKv};

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn model_at(l: &Gpt2Loaded, tokens: usize, max_slots: usize) -> Result<EncryptedGpt2, String> {
    EncryptedGpt2::new(&l.model, &l.ranges, tokens, max_slots).map_err(s)
}

/// `umbra keygen` on a GPT-2 directory: a key set for a window of `tokens` positions (prompt and
/// every new token; a power of two at most n_positions). Errors: a window the model or the ring
/// cannot hold, an existing secret key in `out`.
pub fn keygen(
    dir: &Path,
    tokens: usize,
    preset_name: &str,
    out: &Path,
) -> Result<KeygenReport, String> {
    let l = load(dir)?;
    let max = l.model.config.max_positions;
    if !tokens.is_power_of_two() || tokens < 2 || tokens > max {
        return Err(format!(
            "--tokens {tokens}: the window (prompt + new tokens - 1 positions) must be a power of \
             two from 2 to the model's n_positions = {max}"
        ));
    }
    let (pr, params) = preset(preset_name)?;
    let enc = model_at(&l, tokens, params.max_slots())?;
    if super::model::secret_key_path(out).exists() {
        return Err(format!(
            "{} exists: a secret key is never overwritten (remove it, or use another directory)",
            super::model::secret_key_path(out).display()
        ));
    }
    if out.exists() && !out.is_dir() {
        return Err(format!(
            "--out {}: a file; pass a directory for the keys",
            out.display()
        ));
    }
    check_preset(&enc, &pr, &params, preset_name)?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let ctx = Context::new(params.clone(), Device::Cpu).map_err(s)?;
    let t0 = Instant::now();
    let mut kg = KeyGenerator::new(&ctx);
    let (sk, seed) = kg.gen_secret_key_seeded();
    let keys = eval_keys(&mut kg, &sk, &params, &pr, &enc)?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    write_keys(
        &l.fingerprint,
        preset_name,
        tokens,
        out,
        &ctx,
        &seed,
        &keys,
        ms,
    )
}

/// Plans a prefill of T - 1 tokens and a decode step on the simulator: a preset with too few
/// levels for the model's stages is refused before keys are made. Errors: that, naming the
/// preset.
fn check_preset(
    enc: &EncryptedGpt2,
    pr: &crate::ckks::bootstrap::BootstrapPreset,
    params: &Arc<crate::ckks::Parameters>,
    name: &str,
) -> Result<(), String> {
    let n = enc.tokens() - 1;
    crate::nn::planner::plan(
        params,
        &pr.boot,
        enc.layout.cts(),
        params.max_slots(),
        |c, x| {
            let err = |e: crate::models::ModelError| match e {
                crate::models::ModelError::Layer(e) => e,
                other => crate::ckks::CkksError::Invalid(other.to_string()),
            };
            let (_, mut cache) = enc.prefill(c, x, n, &mut |_| {}).map_err(err)?;
            enc.decode(c, x, &mut cache, n, &mut |_| {}).map_err(err)
        },
    )
    .map(|_| ())
    .map_err(|e| {
        format!(
            "preset {name} cannot run this model ({e}); `umbra presets` lists the others \
             (the default, {}, can)",
            super::model::DEFAULT_PRESET
        )
    })
}

/// What a GPT-2 `encrypt` encrypts: the prompt (prefill) or one new token at its position.
#[derive(Clone, Copy, Debug)]
pub enum StepInput<'a> {
    Prompt(&'a str),
    Token { id: u32, position: usize },
}

/// What `umbra encrypt` reports on a GPT-2 directory.
#[derive(Clone, Debug, Serialize)]
pub struct EncryptReport {
    pub out: String,
    /// `prefill` or `decode`.
    pub step: &'static str,
    /// The window T of the keys.
    pub tokens: usize,
    /// Positions the server's cache holds after this step (the prompt's length; p + 1).
    pub length: usize,
    /// The decode step's position.
    pub position: Option<usize>,
    /// The token ids encrypted (the client's own: never in the file's header).
    pub ids: Vec<u32>,
    pub ciphertexts: usize,
    pub bytes: u64,
}

/// `umbra encrypt` (client) on a GPT-2 directory: the prompt's or one token's embeddings
/// (wte + wpe) under KEYDIR's secret key. Errors: a prompt longer than the keys' window (or
/// empty), a position outside 1..T, a token id past the vocabulary.
pub fn encrypt(
    dir: &Path,
    keys: &Path,
    input: StepInput<'_>,
    tokens: Option<usize>,
    out: &Path,
) -> Result<EncryptReport, String> {
    let l = load(dir)?;
    let (h, params, _pr, sk, ctx) = read_secret(keys, &l.fingerprint)?;
    Bundle::check_target(out, "input").map_err(s)?;
    if let Some(t) = tokens.filter(|&t| t != h.tokens) {
        return Err(format!(
            "--tokens {t}: the keys in {} were made for a window of {}",
            keys.display(),
            h.tokens
        ));
    }
    let enc = model_at(&l, h.tokens, params.max_slots())?;
    let t = h.tokens;
    let (rows, ids, length, position) = match input {
        StepInput::Prompt(text) => {
            let ids = l.tokenizer.encode(text).map_err(s)?.ids;
            if ids.is_empty() {
                return Err("the prompt is empty".into());
            }
            if ids.len() > t {
                return Err(format!(
                    "the prompt has {} tokens, more than the keys' window of {t} positions \
                     (`umbra keygen --tokens` a larger power of two, up to n_positions = {})",
                    ids.len(),
                    l.model.config.max_positions
                ));
            }
            let rows = enc.prompt_rows(&l.model, &ids).map_err(s)?;
            let n = ids.len();
            (rows, ids, n, None)
        }
        StepInput::Token { id, position } => {
            if position >= t {
                return Err(format!(
                    "--position {position}: the keys' window of {t} positions (0 to {}) is full; \
                     generating further needs keys for a larger window (`keygen --tokens {}`)",
                    t - 1,
                    2 * t
                ));
            }
            if position == 0 {
                return Err(
                    "--position 0: position 0 is the prompt's first token; a new token goes \
                     right after the prompt (decrypt's next_position)"
                        .into(),
                );
            }
            let rows = enc.token_rows(&l.model, id, position).map_err(s)?;
            (rows, vec![id], position + 1, Some(position))
        }
    };
    let cts = encrypt_rows(&ctx, &enc, &rows, &sk)?;
    let mut hd = header(
        &l.fingerprint,
        "input",
        &h.preset,
        t,
        Some(length),
        &h.key_id,
    );
    hd.position = position;
    write_cts(&ctx, hd, &cts, out)?;
    Ok(EncryptReport {
        out: out.display().to_string(),
        step: if position.is_some() {
            "decode"
        } else {
            "prefill"
        },
        tokens: t,
        length,
        position,
        ids,
        ciphertexts: cts.len(),
        bytes: std::fs::metadata(out).map(|m| m.len()).unwrap_or(0),
    })
}

/// What `umbra infer` reports on a GPT-2 directory.
#[derive(Clone, Debug, Serialize)]
pub struct InferReport {
    /// The output file (absent when the step stopped early at `--stop-after-layers`).
    pub out: Option<String>,
    pub cache: String,
    /// The checkpoint left for the next run (a step stopped early).
    pub checkpoint: Option<String>,
    /// `prefill` or `decode`.
    pub step: &'static str,
    /// The position whose next token the output predicts (n - 1 at prefill, p at decode).
    pub position: usize,
    /// `logits` or `argmax`.
    pub content: &'static str,
    pub preset: String,
    pub backend: String,
    pub tokens: usize,
    pub layers: usize,
    /// Layers done before this run (a resumed step), and after it.
    pub resumed_after_layers: usize,
    pub layers_done: usize,
    /// Server wall time and bootstraps of the whole step (over every run of a resumed one).
    pub ms: f64,
    pub bootstraps: usize,
    /// This run's wall time (ms).
    pub run_ms: f64,
    pub peak_rss_bytes: Option<u64>,
}

/// The checkpoint file of a cache file: `CACHE.checkpoint`.
pub fn checkpoint_path(cache: &Path) -> PathBuf {
    let mut p = cache.as_os_str().to_owned();
    p.push(".checkpoint");
    PathBuf::from(p)
}

/// Writes `b` at `path` through `PATH.tmp` and a rename (a kill mid-write leaves the old file
/// whole; a `PATH.tmp` that is not an Umbra file of the same kind is refused, not overwritten).
fn write_atomic(b: &Bundle, path: &Path) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    b.write(&tmp, false).map_err(s)?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse_cts(
    ctx: &Arc<Context>,
    objects: &[Vec<u8>],
    path: &Path,
) -> Result<Vec<Ciphertext>, String> {
    objects
        .iter()
        .map(|b| Ciphertext::from_bytes(ctx, b))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The options of a GPT-2 `infer`.
#[derive(Clone, Debug, Default)]
pub struct InferOptions<'a> {
    /// Run the encrypted argmax too: the output is its one-hot, not the logits.
    pub argmax: bool,
    pub backend: Option<&'a str>,
    /// Stop after this many layers of the step (counted from the first), leaving the checkpoint.
    pub stop_after_layers: Option<usize>,
    pub quiet: bool,
}

/// `umbra infer` (server) on a GPT-2 directory: the prefill of an encrypted prompt (writing the
/// cache) or one decode step (reading and updating it), with the evaluation keys only. Resumes
/// from `CACHE.checkpoint` when one of the same input is there. Errors: files of another model,
/// key set, preset or window; a decode step at another position than the cache's next one; a
/// checkpoint of another input; the circuit's (exhausted levels, values past an interval).
pub fn infer(
    dir: &Path,
    eval_keys_file: &Path,
    input: &Path,
    cache_path: &Path,
    out: &Path,
    opt: &InferOptions<'_>,
) -> Result<InferReport, String> {
    let l = load(dir)?;
    for (p, what) in [
        (input, "--in"),
        (eval_keys_file, "--eval-keys"),
        (cache_path, "--cache"),
        (out, "--out"),
    ] {
        if p.is_dir() {
            return Err(format!("{what} {}: a directory; pass a file", p.display()));
        }
    }
    Bundle::check_target(out, "output").map_err(s)?;
    Bundle::check_target(cache_path, "kv-cache").map_err(s)?;
    let ckpt_path = checkpoint_path(cache_path);
    Bundle::check_target(&ckpt_path, "checkpoint").map_err(s)?;
    let in_bytes = std::fs::read(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let input_sha256: String = Sha256::digest(&in_bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let inb = Bundle::from_bytes(&in_bytes, input).map_err(s)?;
    drop(in_bytes);
    let (h, length, kb) = input_and_keys(&l.fingerprint, &inb, input, eval_keys_file)?;
    let (pr, params) = preset(&h.preset)?;
    let device = Device::choose(opt.backend).map_err(s)?;
    let ctx = Context::new(params.clone(), device).map_err(s)?;
    let enc = model_at(&l, h.tokens, params.max_slots())?;
    let layers = enc.blocks.len();
    let per = enc.layout.cts();

    // The cache a decode step reads: its header now (the position), its ciphertexts unless a
    // checkpoint carries a newer copy.
    let cache_file = match h.position {
        None => {
            // A prefill starts a conversation: never over another one's cache.
            if let Ok(b) = Bundle::read(cache_path) {
                if !checkpoint_path(cache_path).exists() {
                    return Err(format!(
                        "{} already holds a conversation's cache ({} positions): a prefill \
                         starts a new one; remove the file or pass another --cache",
                        cache_path.display(),
                        b.header.length.unwrap_or(0)
                    ));
                }
            }
            None
        }
        Some(p) => {
            if !cache_path.exists() {
                return Err(format!(
                    "{}: no KV cache for a decode step (the prefill's `infer --cache` writes it)",
                    cache_path.display()
                ));
            }
            let cb = Bundle::read(cache_path).map_err(s)?;
            cb.header.expect("kv-cache", &h, cache_path).map_err(s)?;
            let held = cb.header.length.unwrap_or(0);
            if held != p {
                let again = if held == p + 1 {
                    " (this step already ran: its output is the last `infer --out`)"
                } else {
                    ""
                };
                return Err(format!(
                    "a decode step at the wrong position: {} holds {held} positions (0 to {}), \
                     so the next token goes at position {held}; {} is for position {p}{again}",
                    cache_path.display(),
                    held.saturating_sub(1),
                    input.display()
                ));
            }
            Some(cb)
        }
    };

    // A checkpoint of this very input resumes the step.
    let resume = if ckpt_path.exists() {
        let b = Bundle::read(&ckpt_path).map_err(s)?;
        b.header.expect("checkpoint", &h, &ckpt_path).map_err(s)?;
        let pg = b
            .header
            .progress
            .clone()
            .ok_or_else(|| format!("{}: no progress in the header", ckpt_path.display()))?;
        if pg.input_sha256 != input_sha256 {
            return Err(format!(
                "{} is the checkpoint of another input than {}: remove it to start this step over",
                ckpt_path.display(),
                input.display()
            ));
        }
        Some((b, pg))
    } else {
        None
    };
    let (start, x, mut cache, prior) = match resume {
        Some((b, pg)) => {
            let cache_layers = if h.position.is_some() {
                layers
            } else {
                pg.layers_done
            };
            if pg.layers_done > layers || b.objects.len() != per + cache_layers * 2 * per {
                return Err(format!(
                    "{}: a checkpoint of {} objects after {} layers does not fit this model",
                    ckpt_path.display(),
                    b.objects.len(),
                    pg.layers_done
                ));
            }
            let x = parse_cts(&ctx, &b.objects[..per], &ckpt_path)?;
            let cache = cache_from_bytes(&ctx, &enc, &b.objects[per..], cache_layers)
                .map_err(|e| format!("{}: {e}", ckpt_path.display()))?;
            (pg.layers_done, x, cache, (pg.bootstraps, pg.ms))
        }
        None => {
            let x = parse_cts(&ctx, &inb.objects, input)?;
            if x.len() != per {
                return Err(format!(
                    "{}: {} ciphertexts, the model needs {per}",
                    input.display(),
                    x.len()
                ));
            }
            let cache = match &cache_file {
                Some(cb) => cache_from_bytes(&ctx, &enc, &cb.objects, layers)
                    .map_err(|e| format!("{}: {e}", cache_path.display()))?,
                None => Vec::new(),
            };
            (0, x, cache, (0, 0.0))
        }
    };
    drop(cache_file);
    drop(inb);

    let keys = EvaluationKeys::from_bytes(
        &ctx,
        kb.objects
            .first()
            .ok_or_else(|| format!("{}: no keys in the file", eval_keys_file.display()))?,
    )
    .map_err(|e| format!("{}: {e}", eval_keys_file.display()))?;
    drop(kb);
    let server = Server::new(&ctx, keys, &pr)?;
    let r = Refreshing::new(&server.eval, &server.boot);
    let step = if h.position.is_some() {
        "decode"
    } else {
        "prefill"
    };
    if let Some(k) = opt.stop_after_layers {
        if k == 0 || k >= layers || k <= start {
            return Err(format!(
                "--stop-after-layers {k}: this step has {layers} layers{}; stop after one of \
                 {} to {}",
                if start > 0 {
                    format!(" and its checkpoint is past layer {start}")
                } else {
                    String::new()
                },
                start + 1,
                layers - 1
            ));
        }
    }
    let pb = if opt.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        progress_bar(layers, step)
    };
    pb.set_position(start as u64);
    let t0 = Instant::now();
    let stop = opt.stop_after_layers;
    let mut stopped = false;
    let mut hook = |done: usize, hh: &[Ciphertext], c: &[LayerKv<Ciphertext>]| {
        pb.set_position(done as u64);
        let mut hd = h.clone();
        hd.kind = "checkpoint".into();
        hd.progress = Some(Progress {
            layers_done: done,
            bootstraps: prior.0 + r.bootstraps(),
            ms: prior.1 + t0.elapsed().as_secs_f64() * 1e3,
            input_sha256: input_sha256.clone(),
        });
        let mut objects = hh
            .iter()
            .map(|ct| ct.to_bytes(&ctx))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| crate::models::ModelError::Input(e.to_string()))?;
        objects.extend(cache_to_bytes(&ctx, c).map_err(crate::models::ModelError::Input)?);
        write_atomic(
            &Bundle {
                header: hd,
                objects,
            },
            &ckpt_path,
        )
        .map_err(crate::models::ModelError::Input)?;
        if stop == Some(done) {
            stopped = true;
            return Err(crate::models::ModelError::Input("stopped".into()));
        }
        Ok(())
    };
    let ran = match h.position {
        None => {
            let prefix = std::mem::take(&mut cache);
            enc.prefill_from(&r, x, prefix, length, &mut hook)
                .map(|(lg, c)| {
                    cache = c;
                    lg
                })
        }
        Some(p) => enc.decode_from(&r, x, start, &mut cache, p, &mut hook),
    };
    pb.finish_and_clear();
    let position = h.position.unwrap_or(length - 1);
    let content = if opt.argmax { "argmax" } else { "logits" };
    let mut report = InferReport {
        out: None,
        cache: cache_path.display().to_string(),
        checkpoint: None,
        step,
        position,
        content,
        preset: h.preset.clone(),
        backend: device.to_string(),
        tokens: h.tokens,
        layers,
        resumed_after_layers: start,
        layers_done: layers,
        ms: 0.0,
        bootstraps: 0,
        run_ms: 0.0,
        peak_rss_bytes: None,
    };
    let logits = match ran {
        Ok(lg) => lg,
        Err(_) if stopped => {
            ctx.backend.synchronize();
            report.checkpoint = Some(ckpt_path.display().to_string());
            report.layers_done = stop.unwrap_or(layers);
            report.run_ms = t0.elapsed().as_secs_f64() * 1e3;
            report.ms = prior.1 + report.run_ms;
            report.bootstraps = prior.0 + r.bootstraps();
            report.peak_rss_bytes = crate::cli::tooling::bench::peak_rss_bytes();
            return Ok(report);
        }
        Err(e) => return Err(e.to_string()),
    };
    let y = if opt.argmax {
        enc.argmax(&r, &logits).map_err(s)?
    } else {
        logits
    };
    ctx.backend.synchronize();
    report.run_ms = t0.elapsed().as_secs_f64() * 1e3;
    report.ms = prior.1 + report.run_ms;
    report.bootstraps = prior.0 + r.bootstraps();

    let mut hd = header(
        &l.fingerprint,
        "output",
        &h.preset,
        h.tokens,
        Some(length),
        &h.key_id,
    );
    hd.position = Some(position);
    hd.content = Some(content.into());
    write_cts(&ctx, hd, &y, out)?;
    let hc = header(
        &l.fingerprint,
        "kv-cache",
        &h.preset,
        h.tokens,
        Some(length),
        &h.key_id,
    );
    write_atomic(
        &Bundle {
            header: hc,
            objects: cache_to_bytes(&ctx, &cache)?,
        },
        cache_path,
    )?;
    let _ = std::fs::remove_file(&ckpt_path);
    report.out = Some(out.display().to_string());
    report.peak_rss_bytes = crate::cli::tooling::bench::peak_rss_bytes();
    Ok(report)
}

/// One of the largest logits.
#[derive(Clone, Debug, Serialize)]
pub struct TopLogit {
    pub id: u32,
    pub text: String,
    pub logit: f64,
}

/// What `umbra decrypt` reports on a GPT-2 directory.
#[derive(Clone, Debug, Serialize)]
pub struct DecryptReport {
    pub model: String,
    /// `logits` or `argmax`.
    pub content: String,
    /// The position whose next token this is; the next `encrypt --token` goes at `next_position`.
    pub position: usize,
    pub next_position: usize,
    /// The greedy choice (the argmax's, or the largest decrypted logit).
    pub token: u32,
    pub token_text: String,
    /// The five largest logits (content `logits`).
    pub top: Vec<TopLogit>,
    /// With `--prefix-ids`: the plaintext model's choice on the same prefix, whether the
    /// encrypted one equals it, and the largest logit error over the plaintext logits' standard
    /// deviation (content `logits`).
    pub plaintext_token: Option<u32>,
    pub top1_match: Option<bool>,
    pub max_logit_err: Option<f64>,
}

/// `umbra decrypt` (client) on a GPT-2 directory: the step's logits (or argmax) and the next
/// token; compared with the plaintext model when `prefix_ids` (the prompt's ids and the tokens
/// fed since, position + 1 of them) is given. Errors: a file of another session, a prefix of
/// the wrong length, an argmax that marked nothing.
pub fn decrypt(
    dir: &Path,
    keys: &Path,
    input: &Path,
    prefix_ids: Option<&[u32]>,
) -> Result<DecryptReport, String> {
    let l = load(dir)?;
    let (h, params, _pr, sk, ctx) = read_secret(keys, &l.fingerprint)?;
    let b = Bundle::read(input).map_err(s)?;
    b.header.expect("output", &h, input).map_err(s)?;
    let bad = |what: &str| {
        format!(
            "{}: no {what} in the header (not a GPT-2 step's output)",
            input.display()
        )
    };
    let position = b.header.position.ok_or_else(|| bad("position"))?;
    let content = b.header.content.clone().ok_or_else(|| bad("content"))?;
    let enc = model_at(&l, h.tokens, params.max_slots())?;
    let slots = decrypt_slots(&ctx, &parse_cts(&ctx, &b.objects, input)?, &sk)?;
    let text = |id: u32| l.tokenizer.decode(&[id]).map_err(s);
    let (token, logits) = match content.as_str() {
        "argmax" => (enc.read_choice(&slots).map_err(s)?, None),
        "logits" => {
            let lg = enc.read_logits(&slots).map_err(s)?;
            (argmax(&lg), Some(lg))
        }
        other => return Err(format!("{}: unknown content {other:?}", input.display())),
    };
    let mut top = Vec::new();
    if let Some(lg) = &logits {
        let mut order: Vec<usize> = (0..lg.len()).collect();
        order.sort_by(|&a, &b| lg[b].total_cmp(&lg[a]));
        for &i in order.iter().take(5) {
            top.push(TopLogit {
                id: i as u32,
                text: text(i as u32)?,
                logit: lg[i],
            });
        }
    }
    let mut report = DecryptReport {
        model: dir.display().to_string(),
        content,
        position,
        next_position: position + 1,
        token,
        token_text: text(token)?,
        top,
        plaintext_token: None,
        top1_match: None,
        max_logit_err: None,
    };
    if let Some(prefix) = prefix_ids {
        if prefix.len() != position + 1 {
            return Err(format!(
                "--prefix-ids: {} ids, but {} is the output at position {position}: give the \
                 {} ids fed so far (the prompt's, then each new token's)",
                prefix.len(),
                input.display(),
                position + 1
            ));
        }
        let plain = l
            .model
            .forward(prefix, &mut l.model.new_cache())
            .map_err(s)?
            .pop()
            .ok_or("no logits")?;
        let want = argmax(&plain);
        report.plaintext_token = Some(want);
        report.top1_match = Some(want == token);
        report.max_logit_err = logits.as_ref().map(|lg| relative_logit_err(lg, &plain));
    }
    Ok(report)
}
