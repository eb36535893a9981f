//! GPT-2 directories on the command line (issue 14): `umbra generate` (encrypted prefill and
//! greedy decoding, the plaintext model beside it), calibration and estimates. The client and the
//! server of one generation live in a [`Session`]: the client holds the secret key, embeds and
//! encrypts, decrypts logits and picks tokens; the server holds the evaluation keys and the
//! encrypted KV cache between steps.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::model::{estimate_ms, preset, progress_bar, Server};
use crate::backend::Device;
use crate::ckks::bootstrap::{BootstrapPreset, Refreshing};
use crate::ckks::serialize::Serial;
use crate::ckks::{
    Ciphertext, CkksError, Context, Decryptor, EvaluationKeys, KeyGenerator, Parameters, SecretKey,
    SimCiphertext, Simulator,
};
use crate::models::calibration::{read_sentences, Fingerprint, DEFAULT_MARGIN};
use crate::models::gpt2::{argmax, Gpt2Model};
use crate::models::gpt2_calibration::{self, Gpt2Ranges};
use crate::models::gpt2_encrypted::{EncryptedGpt2, LayerKv};
use crate::models::{ModelConfig, ModelError, Tokenizer};
use crate::nn::planner;

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Whether `dir/config.json` says GPT-2 (by `model_type` or `architectures`; a GPT-2 config with
/// a bad field is GPT-2's, so that its own validation names the field).
pub fn is_gpt2(dir: &Path) -> bool {
    ModelConfig::says_gpt2(&dir.join("config.json"))
}

/// The model and tokenizer only (no ranges: the plaintext model needs none). Errors: not a
/// GPT-2 directory, the model's errors.
pub fn load_plain(dir: &Path) -> Result<(Gpt2Model, Tokenizer), String> {
    if !is_gpt2(dir) {
        return Err(format!(
            "{} is not a GPT-2 directory (its config.json has no model_type \"gpt2\"); \
             `umbra gen-model --arch gpt2 --out DIR` writes one",
            dir.display()
        ));
    }
    let model = Gpt2Model::load(dir).map_err(s)?;
    let tokenizer = Tokenizer::from_dir(dir).map_err(s)?;
    Ok((model, tokenizer))
}

/// A GPT-2 directory with its tokenizer and calibrated ranges.
pub struct Gpt2Loaded {
    pub dir: PathBuf,
    pub model: Gpt2Model,
    pub tokenizer: Tokenizer,
    pub ranges: Gpt2Ranges,
    pub fingerprint: Fingerprint,
}

/// Loads `dir` and its ranges file, calibrating on the built-in sample (and writing the file)
/// when there is none. Errors: the model's, a ranges file of another model.
pub fn load(dir: &Path) -> Result<Gpt2Loaded, String> {
    let (model, tokenizer) = load_plain(dir)?;
    let fingerprint = gpt2_calibration::fingerprint(dir, &model).map_err(s)?;
    let ranges = match Gpt2Ranges::for_model(dir, &fingerprint).map_err(s)? {
        Some(r) => r,
        None => {
            eprintln!(
                "umbra: calibrating {} on the built-in sample (once; `umbra calibrate` to choose \
                 the text)",
                dir.display()
            );
            let r = calibrate_with(
                &model,
                &tokenizer,
                None,
                DEFAULT_MARGIN,
                fingerprint.clone(),
            )?;
            r.write(dir).map_err(s)?;
            r
        }
    };
    Ok(Gpt2Loaded {
        dir: dir.to_path_buf(),
        model,
        tokenizer,
        ranges,
        fingerprint,
    })
}

fn calibrate_with(
    model: &Gpt2Model,
    tokenizer: &Tokenizer,
    sentences: Option<&Path>,
    margin: f64,
    fingerprint: Fingerprint,
) -> Result<Gpt2Ranges, String> {
    let (text, source) = match sentences {
        Some(p) => (read_sentences(p).map_err(s)?, p.display().to_string()),
        None => (
            crate::models::sample::SENTENCES
                .iter()
                .map(|x| x.to_string())
                .collect(),
            "built-in sample (synthetic)".to_string(),
        ),
    };
    gpt2_calibration::calibrate(model, tokenizer, &text, margin, &source, fingerprint).map_err(s)
}

/// `umbra calibrate` on a GPT-2 directory: runs the prompts, writes `umbra-ranges.json`.
pub fn calibrate(
    dir: &Path,
    sentences: Option<&Path>,
    margin: f64,
) -> Result<(Gpt2Ranges, PathBuf), String> {
    let (model, tokenizer) = load_plain(dir)?;
    let fp = gpt2_calibration::fingerprint(dir, &model).map_err(s)?;
    let r = calibrate_with(&model, &tokenizer, sentences, margin, fp)?;
    let path = r.write(dir).map_err(s)?;
    Ok((r, path))
}

/// The window T for a prompt of `prompt` tokens and `max_new` new ones: the smallest power of
/// two (at least 8) holding every position a token is fed at (prompt + max_new - 1). Errors:
/// more than n_positions (or the ring's limit: the layout says so later).
pub fn window(prompt: usize, max_new: usize, max_positions: usize) -> Result<usize, String> {
    let need = prompt + max_new.saturating_sub(1);
    if prompt == 0 {
        return Err("an empty prompt".into());
    }
    if need > max_positions {
        return Err(format!(
            "{prompt} prompt tokens and {max_new} new ones need {need} positions (the last new \
             token is never fed back), more than the \
             model's n_positions = {max_positions}"
        ));
    }
    Ok(need
        .next_power_of_two()
        .max(8)
        .min(max_positions.next_power_of_two()))
}

/// The server's keys for `enc`: relinearization, the model's rotations (at the top compute
/// level), bootstrapping's.
pub(crate) fn eval_keys(
    kg: &mut KeyGenerator,
    sk: &SecretKey,
    params: &Arc<Parameters>,
    pr: &BootstrapPreset,
    enc: &EncryptedGpt2,
) -> Result<EvaluationKeys, String> {
    super::model::keys_with_rotations(kg, sk, params, pr, enc.rotations().map_err(s)?)
}

/// Client: T x D rows packed and encrypted under `sk` at the top compute level.
pub(crate) fn encrypt_rows(
    ctx: &Arc<Context>,
    enc: &EncryptedGpt2,
    rows: &[Vec<f64>],
    sk: &SecretKey,
) -> Result<Vec<Ciphertext>, String> {
    super::model::encrypt_slots(ctx, &enc.pack(rows).map_err(s)?, sk)
}

/// Client: the (real parts of the) slot vectors of ciphertexts.
pub(crate) fn decrypt_slots(
    ctx: &Arc<Context>,
    cts: &[Ciphertext],
    sk: &SecretKey,
) -> Result<Vec<Vec<f64>>, String> {
    let dec = Decryptor::new(ctx);
    cts.iter()
        .map(|ct| {
            let mut v = dec.decrypt(ct, sk)?;
            v.truncate(ct.slots);
            Ok(v)
        })
        .collect::<Result<_, CkksError>>()
        .map_err(s)
}

/// One encrypted generation: the client's secret key and the server's keys, evaluator and KV
/// cache (kept between steps, as the server keeps it between requests).
pub struct Session<'a> {
    pub loaded: &'a Gpt2Loaded,
    pub enc: EncryptedGpt2,
    pub ctx: Arc<Context>,
    pub device: Device,
    pub preset: BootstrapPreset,
    pub params: Arc<Parameters>,
    sk: SecretKey,
    server: Server,
    cache: Option<Vec<LayerKv<Ciphertext>>>,
    /// Whether the server also runs the encrypted argmax and the client decrypts only its
    /// one-hot (`--argmax`): the logits never leave the ciphertexts.
    pub argmax: bool,
    /// Bootstraps of the last step.
    pub bootstraps: usize,
    /// Wall time of the last step's server work (ms).
    pub server_ms: f64,
    quiet: bool,
}

impl<'a> Session<'a> {
    /// Keys for a window of `tokens` on preset `preset_name` and backend `backend`.
    pub fn new(
        loaded: &'a Gpt2Loaded,
        tokens: usize,
        preset_name: &str,
        backend: Option<&str>,
        quiet: bool,
    ) -> Result<Self, String> {
        let (pr, params) = preset(preset_name)?;
        let enc = EncryptedGpt2::new(&loaded.model, &loaded.ranges, tokens, params.max_slots())
            .map_err(s)?;
        let device = Device::choose(backend).map_err(s)?;
        let ctx = Context::new(params.clone(), device).map_err(s)?;
        let mut kg = KeyGenerator::new(&ctx);
        let (sk, _seed) = kg.gen_secret_key_seeded();
        let keys = eval_keys(&mut kg, &sk, &params, &pr, &enc)?;
        let server = Server::new(&ctx, keys, &pr)?;
        let params = params.clone();
        Ok(Session {
            loaded,
            enc,
            ctx,
            device,
            preset: pr,
            params,
            sk,
            server,
            cache: None,
            argmax: false,
            bootstraps: 0,
            server_ms: 0.0,
            quiet,
        })
    }

    fn encrypt(&self, rows: &[Vec<f64>]) -> Result<Vec<Ciphertext>, String> {
        encrypt_rows(&self.ctx, &self.enc, rows, &self.sk)
    }

    fn decrypt(&self, cts: &[Ciphertext]) -> Result<Vec<Vec<f64>>, String> {
        decrypt_slots(&self.ctx, cts, &self.sk)
    }

    /// Server (the argmax, with `argmax`) and client: the step's output from its logit
    /// ciphertexts.
    fn finish<C: crate::ckks::Circuit<Ct = Ciphertext>>(
        &self,
        c: &C,
        logits: Vec<Ciphertext>,
    ) -> Result<Step, String> {
        if self.argmax {
            let onehot = self.enc.argmax(c, &logits).map_err(s)?;
            let token = self.enc.read_choice(&self.decrypt(&onehot)?).map_err(s)?;
            return Ok(Step {
                logits: None,
                token,
            });
        }
        let logits = self.enc.read_logits(&self.decrypt(&logits)?).map_err(s)?;
        Ok(Step {
            token: argmax(&logits),
            logits: Some(logits),
        })
    }

    fn bar(&self, what: &str) -> indicatif::ProgressBar {
        if self.quiet {
            indicatif::ProgressBar::hidden()
        } else {
            progress_bar(self.enc.blocks.len(), what)
        }
    }

    /// Client + server: the prompt's last token's output, the cache kept server side.
    pub fn prefill(&mut self, ids: &[u32]) -> Result<Step, String> {
        let rows = self.enc.prompt_rows(&self.loaded.model, ids).map_err(s)?;
        let x = self.encrypt(&rows)?;
        let r = Refreshing::new(&self.server.eval, &self.server.boot);
        let pb = self.bar("prefill");
        let t = Instant::now();
        let (logits, cache) = self
            .enc
            .prefill(&r, &x, ids.len(), &mut |_| pb.inc(1))
            .map_err(s)?;
        let out = self.finish(&r, logits);
        self.ctx.backend.synchronize();
        self.server_ms = t.elapsed().as_secs_f64() * 1e3;
        pb.finish_and_clear();
        self.bootstraps = r.bootstraps();
        self.cache = Some(cache);
        out
    }

    /// Client + server: token `id` at position p; its output. Errors: no prefill yet, p outside
    /// the window.
    pub fn decode(&mut self, id: u32, p: usize) -> Result<Step, String> {
        let rows = self.enc.token_rows(&self.loaded.model, id, p).map_err(s)?;
        let x = self.encrypt(&rows)?;
        let mut cache = self
            .cache
            .take()
            .ok_or("decode before prefill: the server has no KV cache")?;
        let r = Refreshing::new(&self.server.eval, &self.server.boot);
        let pb = self.bar(&format!("token {p}"));
        let t = Instant::now();
        let out = self.enc.decode(&r, &x, &mut cache, p, &mut |_| pb.inc(1));
        self.cache = Some(cache);
        let out = self.finish(&r, out.map_err(s)?);
        self.ctx.backend.synchronize();
        self.server_ms = t.elapsed().as_secs_f64() * 1e3;
        pb.finish_and_clear();
        self.bootstraps = r.bootstraps();
        out
    }

    /// The server's KV cache serialized ([`cache_to_bytes`]).
    pub fn cache_bytes(&self) -> Result<Vec<Vec<u8>>, String> {
        let cache = self
            .cache
            .as_ref()
            .ok_or("no KV cache yet (prefill first)")?;
        cache_to_bytes(&self.ctx, cache)
    }

    /// Replaces the server's KV cache by one read back from [`Session::cache_bytes`]. Errors: as
    /// [`cache_from_bytes`].
    pub fn restore_cache(&mut self, objects: &[Vec<u8>]) -> Result<(), String> {
        let layers = self.enc.blocks.len();
        self.cache = Some(cache_from_bytes(&self.ctx, &self.enc, objects, layers)?);
        Ok(())
    }
}

/// A KV cache serialized: per layer K's ciphertexts, then V's (D9 framing each).
pub fn cache_to_bytes(
    ctx: &Arc<Context>,
    cache: &[LayerKv<Ciphertext>],
) -> Result<Vec<Vec<u8>>, String> {
    cache
        .iter()
        .flat_map(|kv| kv.k.iter().chain(&kv.v))
        .map(|ct| ct.to_bytes(ctx).map_err(s))
        .collect()
}

/// The first `layers` layers of a KV cache from [`cache_to_bytes`]'s objects. Errors: another
/// number of objects, a malformed ciphertext or one of other parameters.
pub fn cache_from_bytes(
    ctx: &Arc<Context>,
    enc: &EncryptedGpt2,
    objects: &[Vec<u8>],
    layers: usize,
) -> Result<Vec<LayerKv<Ciphertext>>, String> {
    let per = enc.layout.cts();
    if objects.len() != layers * 2 * per {
        return Err(format!(
            "a KV cache of {} ciphertexts, expected {} ({layers} layers, K and V of {per})",
            objects.len(),
            layers * 2 * per
        ));
    }
    let cts = objects
        .iter()
        .map(|b| Ciphertext::from_bytes(ctx, b))
        .collect::<Result<Vec<_>, _>>()
        .map_err(s)?;
    Ok(cts
        .chunks_exact(2 * per)
        .map(|c| LayerKv {
            k: c[..per].to_vec(),
            v: c[per..].to_vec(),
        })
        .collect())
}

/// One step's output on the client: the chosen token and, without `--argmax`, the logits.
#[derive(Clone, Debug)]
pub struct Step {
    pub logits: Option<Vec<f64>>,
    pub token: u32,
}

/// What `umbra generate --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct GenerateReport {
    pub model: String,
    pub mode: &'static str,
    pub prompt: String,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    /// The window T (prompt + new tokens, a power of two).
    pub tokens: usize,
    pub layers: usize,
    pub preset: Option<String>,
    pub backend: Option<String>,
    pub threads: usize,
    pub keygen_ms: Option<f64>,
    pub prefill_ms: f64,
    pub decode_ms_per_token: Vec<f64>,
    pub estimated_prefill_ms: Option<f64>,
    pub estimated_decode_ms: Option<f64>,
    /// Bootstraps of the prefill and of each decode step.
    pub bootstraps: Vec<usize>,
    /// The generated ids and text (encrypted run; the plaintext model's with `--plaintext`).
    pub ids: Vec<u32>,
    pub text: String,
    /// The plaintext model's own greedy continuation.
    pub plaintext_ids: Vec<u32>,
    pub plaintext_text: String,
    /// Fraction of steps whose encrypted top-1 is the plaintext top-1 given the same prefix.
    pub top1_agreement: Option<f64>,
    /// Largest |encrypted - plaintext| logit over all steps, in units of the plaintext logits'
    /// standard deviation.
    pub max_logit_err: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
}

fn std_dev(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt()
}

/// |a - b| max over b's standard deviation.
pub fn relative_logit_err(a: &[f64], b: &[f64]) -> f64 {
    let e = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    e / std_dev(b)
}

/// An estimate: server milliseconds and bootstraps.
pub type Estimated = (f64, usize);

/// Estimated server time of a prefill of T - 2 tokens and of one decode step at position T - 2
/// (a step with padding keys masked, as every step but the window's last; the planner on the
/// simulator, the cost model timed on `ctx`), with their bootstraps; each with the encrypted
/// argmax when `with_argmax`. Errors: a window below 4.
pub fn estimate(
    enc: &EncryptedGpt2,
    ctx: &Arc<Context>,
    pr: &BootstrapPreset,
    params: &Arc<Parameters>,
    with_argmax: bool,
) -> Result<(Estimated, Estimated), String> {
    let cts = enc.layout.cts();
    let t = enc.tokens();
    if t < 4 {
        return Err(format!(
            "an estimate at a window of {t} tokens (need at least 4)"
        ));
    }
    let ck = |e: ModelError| match e {
        ModelError::Layer(e) => e,
        other => CkksError::Invalid(other.to_string()),
    };
    let out = |c: &Refreshing<'_, Simulator>, l: Vec<SimCiphertext>| {
        if with_argmax {
            enc.argmax(c, &l).map_err(ck)
        } else {
            Ok(l)
        }
    };
    let pre = planner::plan(params, &pr.boot, cts, params.max_slots(), |c, x| {
        let l = enc.prefill(c, x, t - 2, &mut |_| {}).map_err(ck)?.0;
        out(c, l)
    })
    .map_err(|e| format!("planning the prefill: {e}"))?;
    // A decode step after a prefill, less the prefill.
    let both = planner::plan(params, &pr.boot, cts, params.max_slots(), |c, x| {
        let (l, mut cache) = enc.prefill(c, x, t - 2, &mut |_| {}).map_err(ck)?;
        out(c, l)?;
        let l = enc
            .decode(c, x, &mut cache, t - 2, &mut |_| {})
            .map_err(ck)?;
        out(c, l)
    })
    .map_err(|e| format!("planning a decode step: {e}"))?;
    let pre_ms = estimate_ms(ctx, pr, &pre)?;
    let both_ms = estimate_ms(ctx, pr, &both)?;
    Ok((
        (pre_ms, pre.bootstraps),
        (both_ms - pre_ms, both.bootstraps - pre.bootstraps),
    ))
}

/// `umbra generate`: greedy decoding of `max_new` tokens after `prompt`, encrypted (or the
/// plaintext model only with `plaintext_only`). `say` gets progress lines (the estimate, each
/// new token's text as it comes).
#[allow(clippy::too_many_arguments)]
pub fn generate(
    dir: &Path,
    prompt: &str,
    max_new: usize,
    tokens: Option<usize>,
    preset_name: &str,
    backend: Option<&str>,
    encrypted_argmax: bool,
    plaintext_only: bool,
    quiet: bool,
    say: &mut dyn FnMut(String),
) -> Result<GenerateReport, String> {
    if max_new == 0 {
        return Err("--max-new-tokens 0: nothing to generate".into());
    }
    let (m, tokenizer) = load_plain(dir)?;
    let ids = tokenizer.encode(prompt).map_err(s)?.ids;
    let c = &m.config;
    let t = match tokens {
        Some(t) => {
            let need = window(ids.len(), max_new, c.max_positions)?;
            if !t.is_power_of_two() || t < need || t > c.max_positions {
                return Err(format!(
                    "--tokens {t}: need a power of two from {need} (prompt {} + {max_new} new \
                     - 1: the last new token is never fed back) to the model's n_positions = {}",
                    ids.len(),
                    c.max_positions
                ));
            }
            t
        }
        None => window(ids.len(), max_new, c.max_positions)?,
    };
    let t0 = Instant::now();
    let plain_ids = m.generate_greedy(&ids, max_new).map_err(s)?;
    let plain_ms = t0.elapsed().as_secs_f64() * 1e3;
    let decode = |v: &[u32]| tokenizer.decode(v).map_err(s);
    let mut report = GenerateReport {
        model: dir.display().to_string(),
        mode: "plaintext",
        prompt: prompt.to_string(),
        prompt_tokens: ids.len(),
        new_tokens: max_new,
        tokens: t,
        layers: c.layers,
        preset: None,
        backend: None,
        threads: rayon::current_num_threads(),
        keygen_ms: None,
        prefill_ms: plain_ms,
        decode_ms_per_token: Vec::new(),
        estimated_prefill_ms: None,
        estimated_decode_ms: None,
        bootstraps: Vec::new(),
        ids: plain_ids.clone(),
        text: decode(&plain_ids)?,
        plaintext_ids: plain_ids.clone(),
        plaintext_text: decode(&plain_ids)?,
        top1_agreement: None,
        max_logit_err: None,
        peak_rss_bytes: None,
    };
    if plaintext_only {
        report.peak_rss_bytes = crate::cli::tooling::bench::peak_rss_bytes();
        return Ok(report);
    }
    let loaded = load(dir)?;
    let m = &loaded.model;
    let tk = Instant::now();
    let mut session = Session::new(&loaded, t, preset_name, backend, quiet)?;
    session.argmax = encrypted_argmax;
    let keygen_ms = tk.elapsed().as_secs_f64() * 1e3;
    let ((pre_ms, pre_boot), (dec_ms, dec_boot)) = estimate(
        &session.enc,
        &session.ctx,
        &session.preset,
        &session.params,
        encrypted_argmax,
    )?;
    say(format!(
        "estimate: prefill {:.1} s ({pre_boot} bootstraps), then {:.1} s per token ({dec_boot} \
         bootstraps) at a window of {t} tokens ({} in the prompt), {} layers, on {} with {} \
         threads ({preset_name})",
        pre_ms / 1e3,
        dec_ms / 1e3,
        ids.len(),
        c.layers,
        session.device,
        rayon::current_num_threads()
    ));
    let mut plain_cache = m.new_cache();
    let mut plain = m
        .forward(&ids, &mut plain_cache)
        .map_err(s)?
        .pop()
        .ok_or("no logits")?;
    let mut got = session.prefill(&ids)?;
    report.prefill_ms = session.server_ms;
    report.bootstraps.push(session.bootstraps);
    let (mut agree, mut worst, mut out) = (0usize, 0.0f64, Vec::with_capacity(max_new));
    for step in 0..max_new {
        if let Some(l) = &got.logits {
            worst = worst.max(relative_logit_err(l, &plain));
        }
        let next = got.token;
        agree += usize::from(next == argmax(&plain));
        out.push(next);
        say(format!("token {}: {:?}", step + 1, decode(&[next])?));
        if step + 1 == max_new {
            break;
        }
        let p = ids.len() + step;
        got = session.decode(next, p)?;
        report.decode_ms_per_token.push(session.server_ms);
        report.bootstraps.push(session.bootstraps);
        plain = m
            .forward(&[next], &mut plain_cache)
            .map_err(s)?
            .pop()
            .ok_or("no logits")?;
    }
    report.mode = "encrypted";
    report.preset = Some(preset_name.to_string());
    report.backend = Some(session.device.to_string());
    report.keygen_ms = Some(keygen_ms);
    report.estimated_prefill_ms = Some(pre_ms);
    report.estimated_decode_ms = Some(dec_ms);
    report.text = decode(&out)?;
    report.ids = out;
    report.top1_agreement = Some(agree as f64 / max_new as f64);
    report.max_logit_err = (!encrypted_argmax).then_some(worst);
    report.peak_rss_bytes = crate::cli::tooling::bench::peak_rss_bytes();
    Ok(report)
}

/// What `umbra estimate --model DIR` prints for a GPT-2 directory.
#[derive(Clone, Debug, Serialize)]
pub struct Gpt2Estimate {
    pub model: String,
    /// The window T (a prompt of T - 2 tokens, then a decode step at position T - 2).
    pub tokens: usize,
    pub layers: usize,
    pub preset: String,
    pub backend: String,
    pub threads: usize,
    pub prefill_ms: f64,
    pub prefill_bootstraps: usize,
    pub decode_ms_per_token: f64,
    pub decode_bootstraps_per_token: usize,
}

/// `umbra estimate --model DIR --tokens T` on a GPT-2 directory: a prefill at a window of T and
/// one decode step, planned and priced without keys.
pub fn estimate_model(
    dir: &Path,
    tokens: usize,
    preset_name: &str,
    backend: Option<&str>,
) -> Result<Gpt2Estimate, String> {
    let loaded = load(dir)?;
    let (pr, params) = preset(preset_name)?;
    if !tokens.is_power_of_two() || tokens < 4 {
        return Err(format!("--tokens {tokens}: need a power of two >= 4"));
    }
    let enc =
        EncryptedGpt2::new(&loaded.model, &loaded.ranges, tokens, params.max_slots()).map_err(s)?;
    let device = Device::choose(backend).map_err(s)?;
    let ctx = Context::new(params.clone(), device).map_err(s)?;
    let ((pre, pre_b), (dec, dec_b)) = estimate(&enc, &ctx, &pr, &params, false)?;
    Ok(Gpt2Estimate {
        model: dir.display().to_string(),
        tokens,
        layers: enc.blocks.len(),
        preset: preset_name.into(),
        backend: device.to_string(),
        threads: rayon::current_num_threads(),
        prefill_ms: pre,
        prefill_bootstraps: pre_b,
        decode_ms_per_token: dec,
        decode_bootstraps_per_token: dec_b,
    })
}

/// What `umbra eval` prints for a GPT-2 directory (twin mode).
#[derive(Clone, Debug, Serialize)]
pub struct Gpt2EvalReport {
    pub model: String,
    pub sentences: String,
    pub mode: String,
    /// The window T.
    pub tokens: usize,
    pub preset: String,
    /// Prompts run, prompts cut to fit the window.
    pub prompts: usize,
    pub truncated: usize,
    pub new_tokens: usize,
    /// Positions compared: new_tokens per prompt (the prefill's prediction and each decode
    /// step's), the plaintext model's choice fed back (the same prefix for both); a prompt that
    /// left a range stops there, its remaining positions not compared.
    pub positions: usize,
    pub top1_agreement: f64,
    /// Largest |twin - plaintext| logit over the logits' standard deviation.
    pub max_logit_err: f64,
    /// Prompts whose activations left an approximation's interval (the twin stopped there).
    pub out_of_range: usize,
    pub out_of_range_examples: Vec<String>,
    pub ms: f64,
}

/// `umbra eval --mode twin` on a GPT-2 directory: each prompt (cut to T - max_new + 1 tokens)
/// prefilled and decoded `max_new` steps by the twin of the encrypted model at a window of T in
/// `preset_name`'s slots, against the plaintext model on the same prefix. Prompts in parallel.
pub fn eval_twin(
    dir: &Path,
    sentences: &Path,
    tokens: usize,
    max_new: usize,
    limit: Option<usize>,
    preset_name: &str,
) -> Result<Gpt2EvalReport, String> {
    use rayon::prelude::*;
    let loaded = load(dir)?;
    let (_, params) = preset(preset_name)?;
    let m = &loaded.model;
    let mut prompts = read_sentences(sentences).map_err(s)?;
    if let Some(l) = limit {
        prompts.truncate(l);
    }
    if max_new == 0 || max_new >= tokens {
        return Err(format!(
            "--max-new-tokens {max_new} in a window of {tokens}: need 1 to {}",
            tokens - 1
        ));
    }
    let enc = EncryptedGpt2::new(m, &loaded.ranges, tokens, params.max_slots()).map_err(s)?;
    let keep = tokens - max_new + 1;
    let t0 = Instant::now();
    // (agreements, positions compared, worst error, cut, out of range)
    type One = Result<(usize, usize, f64, bool, Option<String>), String>;
    let one = |text: &String| -> One {
        let mut ids = loaded.tokenizer.encode(text).map_err(s)?.ids;
        let cut = ids.len() > keep;
        ids.truncate(keep);
        if ids.is_empty() {
            return Err(format!("the prompt {text:?} has no tokens"));
        }
        let mut pc = m.new_cache();
        let mut plain = m
            .forward(&ids, &mut pc)
            .map_err(s)?
            .pop()
            .ok_or("no logits")?;
        let rows = enc.prompt_rows(m, &ids).map_err(s)?;
        let (mut logits, mut cache) = match enc.prefill_twin(&rows, ids.len()) {
            Ok(r) => r,
            Err(ModelError::Layer(CkksError::OutOfRange(e))) => {
                return Ok((0, 0, 0.0, cut, Some(format!("{text:?}: prefill: {e}"))))
            }
            Err(e) => return Err(e.to_string()),
        };
        let (mut agree, mut worst) = (0, 0.0f64);
        for step in 0..max_new {
            worst = worst.max(relative_logit_err(&logits, &plain));
            let next = argmax(&plain);
            agree += usize::from(argmax(&logits) == next);
            if step + 1 == max_new {
                break;
            }
            let p = ids.len() + step;
            let rows = enc.token_rows(m, next, p).map_err(s)?;
            logits = match enc.decode_twin(&rows, &mut cache, p) {
                Ok(l) => l,
                Err(ModelError::Layer(CkksError::OutOfRange(e))) => {
                    return Ok((
                        agree,
                        step + 1,
                        worst,
                        cut,
                        Some(format!("{text:?}: position {p}: {e}")),
                    ))
                }
                Err(e) => return Err(e.to_string()),
            };
            plain = m
                .forward(&[next], &mut pc)
                .map_err(s)?
                .pop()
                .ok_or("no logits")?;
        }
        Ok((agree, max_new, worst, cut, None))
    };
    let runs = prompts.par_iter().map(one).collect::<Result<Vec<_>, _>>()?;
    let positions: usize = runs.iter().map(|r| r.1).sum();
    let agree: usize = runs.iter().map(|r| r.0).sum();
    let examples: Vec<String> = runs.iter().filter_map(|r| r.4.clone()).collect();
    Ok(Gpt2EvalReport {
        model: dir.display().to_string(),
        sentences: sentences.display().to_string(),
        mode: "twin".into(),
        tokens,
        preset: preset_name.into(),
        prompts: prompts.len(),
        truncated: runs.iter().filter(|r| r.3).count(),
        new_tokens: max_new,
        positions,
        top1_agreement: agree as f64 / positions.max(1) as f64,
        max_logit_err: runs.iter().fold(0.0, |a, r| a.max(r.2)),
        out_of_range: examples.len(),
        out_of_range_examples: examples.into_iter().take(10).collect(),
        ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}
