//! `umbra gen-model`: a Hugging Face BERT or GPT-2 directory with a real architecture's
//! `config.json`, tensor names, shapes and dtype (F32, as `transformers` saves them), and weights
//! drawn at trained scale, for benchmarks where the real weights are not at hand (BERT-base: 110M
//! parameters, 438 MB; GPT-2 small: 124M, 498 MB). Any real HF directory of either loads the same
//! way; only the accuracy figures need real weights.
//!
//! BERT: names and shapes follow `BertModel` in `transformers/models/bert/modeling_bert.py` (no
//! `bert.` prefix, `nn.Linear` weights stored [out, in]); the uncased WordPiece tokenizer files are
//! copied from a model directory that has them (all-MiniLM-L6-v2 uses BERT's own vocabulary).
//! GPT-2: names as the hub's `gpt2` checkpoint has them (`wte`, `h.{i}.attn.c_attn`, ..., no
//! `transformer.` prefix, `Conv1D` weights stored [in, out], LM head tied to `wte`); the
//! byte-level BPE files (`vocab.json`, `merges.txt`) are copied from `models/gpt2-tokenizer`.

use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use super::ModelError;
use crate::math::sampling::Prng;
use crate::nn::block::gaussian;

/// The shape of a BERT architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct BertArch {
    pub hidden: usize,
    pub heads: usize,
    pub layers: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
}

impl BertArch {
    /// `bert-base-uncased`: 12 layers, hidden 768, 12 heads, FFN 3072 (Devlin et al. 2019).
    pub fn bert_base() -> Self {
        BertArch {
            hidden: 768,
            heads: 12,
            layers: 12,
            intermediate: 3072,
            vocab: 30522,
            max_positions: 512,
            type_vocab: 2,
        }
    }

    /// By name: `bert-base`. Errors: another name (the message lists the known ones).
    pub fn by_name(name: &str) -> Result<Self, ModelError> {
        match name {
            "bert-base" => Ok(Self::bert_base()),
            other => Err(unknown_arch(other)),
        }
    }

    /// Parameters in all (embeddings, encoder, pooler).
    pub fn parameters(&self) -> usize {
        self.tensors()
            .iter()
            .map(|(_, s, _)| s.iter().product::<usize>())
            .sum()
    }

    /// The `config.json` that `transformers` writes for this shape.
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["BertModel"],
            "attention_probs_dropout_prob": 0.1,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "hidden_size": self.hidden,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate,
            "layer_norm_eps": 1e-12,
            "max_position_embeddings": self.max_positions,
            "model_type": "bert",
            "num_attention_heads": self.heads,
            "num_hidden_layers": self.layers,
            "pad_token_id": 0,
            "position_embedding_type": "absolute",
            "type_vocab_size": self.type_vocab,
            "vocab_size": self.vocab,
            "_umbra_generated": "weights drawn at trained scale by `umbra gen-model`, not trained",
        })
    }

    /// Every tensor: HF name, shape, and how to draw it.
    fn tensors(&self) -> Vec<(String, Vec<usize>, Draw)> {
        let (d, f) = (self.hidden, self.intermediate);
        let mut t = vec![
            (
                "embeddings.word_embeddings.weight".to_string(),
                vec![self.vocab, d],
                Draw::Embedding,
            ),
            (
                "embeddings.position_embeddings.weight".into(),
                vec![self.max_positions, d],
                Draw::Embedding,
            ),
            (
                "embeddings.token_type_embeddings.weight".into(),
                vec![self.type_vocab, d],
                Draw::Embedding,
            ),
            ("embeddings.LayerNorm.weight".into(), vec![d], Draw::Gain),
            ("embeddings.LayerNorm.bias".into(), vec![d], Draw::Bias),
        ];
        let linear = |t: &mut Vec<(String, Vec<usize>, Draw)>,
                      name: String,
                      d_in: usize,
                      d_out: usize,
                      gain: f64| {
            t.push((
                format!("{name}.weight"),
                vec![d_out, d_in],
                Draw::Linear { d_in, gain },
            ));
            t.push((format!("{name}.bias"), vec![d_out], Draw::Bias));
        };
        let norm = |t: &mut Vec<(String, Vec<usize>, Draw)>, name: String| {
            t.push((format!("{name}.weight"), vec![d], Draw::Gain));
            t.push((format!("{name}.bias"), vec![d], Draw::Bias));
        };
        for i in 0..self.layers {
            let l = format!("encoder.layer.{i}");
            // Q and K a little larger than unit gain so that attention is not uniform.
            linear(&mut t, format!("{l}.attention.self.query"), d, d, 1.2);
            linear(&mut t, format!("{l}.attention.self.key"), d, d, 1.2);
            linear(&mut t, format!("{l}.attention.self.value"), d, d, 1.0);
            linear(&mut t, format!("{l}.attention.output.dense"), d, d, 1.0);
            norm(&mut t, format!("{l}.attention.output.LayerNorm"));
            linear(&mut t, format!("{l}.intermediate.dense"), d, f, 1.0);
            linear(&mut t, format!("{l}.output.dense"), f, d, 1.0);
            norm(&mut t, format!("{l}.output.LayerNorm"));
        }
        linear(&mut t, "pooler.dense".into(), d, d, 1.0);
        t
    }
}

/// How a tensor's values are drawn (the scales of trained BERT-base, as in
/// `nn::block::BlockWeights::random`).
#[derive(Clone, Copy, Debug)]
enum Draw {
    /// N(0, 0.05^2): trained BERT's embedding rows (and GPT-2's position rows).
    Embedding,
    /// N(0, 0.14^2): trained GPT-2's token embeddings (also its tied LM head).
    Token,
    /// N(0, (gain / sqrt(d_in))^2): unit activations stay unit.
    Linear { d_in: usize, gain: f64 },
    /// 1 + N(0, 0.1^2): LayerNorm gains.
    Gain,
    /// N(0, 0.02^2): biases and LayerNorm shifts.
    Bias,
}

impl Draw {
    fn sample(self, prng: &mut Prng) -> f64 {
        let g = gaussian(prng);
        match self {
            Draw::Embedding => 0.05 * g,
            Draw::Token => 0.14 * g,
            Draw::Linear { d_in, gain } => gain / (d_in as f64).sqrt() * g,
            Draw::Gain => 1.0 + 0.1 * g,
            Draw::Bias => 0.02 * g,
        }
    }
}

/// Tokenizer files copied from `tokenizer_from` (those present; `vocab.txt` or `tokenizer.json`
/// must be).
const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// Writes `out/config.json`, `out/model.safetensors` and the tokenizer files of `tokenizer_from`.
/// Deterministic in `seed`. Errors: `out` exists and is not an empty directory (nothing is
/// overwritten), no tokenizer in `tokenizer_from`, a vocabulary of another size than the
/// architecture's, I/O.
pub fn generate_bert(
    arch: &BertArch,
    out: &Path,
    tokenizer_from: &Path,
    seed: u64,
) -> Result<(), ModelError> {
    check_new_dir(out)?;
    let present: Vec<&str> = TOKENIZER_FILES
        .into_iter()
        .filter(|f| tokenizer_from.join(f).is_file())
        .collect();
    if !present.contains(&"vocab.txt") && !present.contains(&"tokenizer.json") {
        return Err(ModelError::Input(format!(
            "{} has no tokenizer.json or vocab.txt to copy (`models/fetch.sh all-MiniLM-L6-v2` fetches BERT's uncased vocabulary)",
            tokenizer_from.display()
        )));
    }
    if present.contains(&"vocab.txt") {
        let path = tokenizer_from.join("vocab.txt");
        let vocab = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        if vocab.lines().count() != arch.vocab {
            return Err(ModelError::Input(format!(
                "{} has {} entries, the architecture {}",
                path.display(),
                vocab.lines().count(),
                arch.vocab
            )));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| ModelError::io(out, e))?;
    for f in present {
        let (from, to) = (tokenizer_from.join(f), out.join(f));
        std::fs::copy(&from, &to).map_err(|e| ModelError::io(&from, e))?;
    }
    write_config(out, &arch.config_json())?;
    write_weights(out, arch.tensors(), seed, |_, _| {})
}

/// Draws every tensor (in order, from one PRNG seeded by `seed`), lets `patch` change a tensor's
/// values by name, and writes `out/model.safetensors` (F32).
fn write_weights(
    out: &Path,
    tensors: Vec<(String, Vec<usize>, Draw)>,
    seed: u64,
    patch: impl Fn(&str, &mut [f64]),
) -> Result<(), ModelError> {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    let mut prng = Prng::from_seed(s);
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, draw)| {
            let n: usize = shape.iter().product();
            let mut values: Vec<f64> = (0..n).map(|_| draw.sample(&mut prng)).collect();
            patch(&name, &mut values);
            let bytes: Vec<u8> = values
                .iter()
                .flat_map(|&v| (v as f32).to_le_bytes())
                .collect();
            (name, shape, bytes)
        })
        .collect();
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| ModelError::Input(format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let weights = out.join("model.safetensors");
    safetensors::serialize_to_file(views, None, &weights).map_err(|e| ModelError::Safetensors {
        path: weights.clone(),
        reason: e.to_string(),
    })
}

/// Errors unless `out` is absent or an empty directory (gen-model never overwrites).
fn check_new_dir(out: &Path) -> Result<(), ModelError> {
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| ModelError::io(out, e))?
            .next()
            .is_some()
    {
        return Err(ModelError::Input(format!(
            "{} exists and is not empty: gen-model writes a new directory",
            out.display()
        )));
    }
    Ok(())
}

/// Writes `value` as `out/config.json`.
fn write_config(out: &Path, value: &serde_json::Value) -> Result<(), ModelError> {
    let config = out.join("config.json");
    let text = serde_json::to_string_pretty(value).expect("a JSON value prints");
    std::fs::write(&config, text).map_err(|e| ModelError::io(&config, e))
}

/// The shape of a GPT-2 architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct Gpt2Arch {
    pub hidden: usize,
    pub heads: usize,
    pub layers: usize,
    pub inner: usize,
    pub vocab: usize,
    pub max_positions: usize,
}

/// GPT-2's vocabulary: 50 000 merges + 256 bytes + `<|endoftext|>`.
pub const GPT2_VOCAB: usize = 50257;

impl Gpt2Arch {
    /// `gpt2` (GPT-2 small, Radford et al. 2019): 12 layers, hidden 768, 12 heads, FFN 3072,
    /// 1024 positions; 124M parameters.
    pub fn gpt2() -> Self {
        Gpt2Arch {
            hidden: 768,
            heads: 12,
            layers: 12,
            inner: 3072,
            vocab: GPT2_VOCAB,
            max_positions: 1024,
        }
    }

    /// `gpt2-tiny`: GPT-2's vocabulary and names with 2 layers, hidden 64, 4 heads, FFN 256 and
    /// 128 positions, for tests and quick encrypted runs (3.3M parameters, mostly `wte`).
    pub fn gpt2_tiny() -> Self {
        Gpt2Arch {
            hidden: 64,
            heads: 4,
            layers: 2,
            inner: 256,
            vocab: GPT2_VOCAB,
            max_positions: 128,
        }
    }

    /// By name: `gpt2`, `gpt2-tiny`. Errors: another name.
    pub fn by_name(name: &str) -> Result<Self, ModelError> {
        match name {
            "gpt2" => Ok(Self::gpt2()),
            "gpt2-tiny" => Ok(Self::gpt2_tiny()),
            other => Err(unknown_arch(other)),
        }
    }

    /// Parameters in all (LM head tied, so not counted twice).
    pub fn parameters(&self) -> usize {
        self.tensors()
            .iter()
            .map(|(_, s, _)| s.iter().product::<usize>())
            .sum()
    }

    /// The `config.json` that `transformers` writes for `GPT2LMHeadModel` of this shape.
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "activation_function": "gelu_new",
            "architectures": ["GPT2LMHeadModel"],
            "attn_pdrop": 0.1,
            "bos_token_id": 50256,
            "embd_pdrop": 0.1,
            "eos_token_id": 50256,
            "initializer_range": 0.02,
            "layer_norm_epsilon": 1e-5,
            "model_type": "gpt2",
            "n_ctx": self.max_positions,
            "n_embd": self.hidden,
            "n_head": self.heads,
            "n_inner": null,
            "n_layer": self.layers,
            "n_positions": self.max_positions,
            "resid_pdrop": 0.1,
            "scale_attn_weights": true,
            "tie_word_embeddings": true,
            "vocab_size": self.vocab,
            "_umbra_generated": "weights drawn at trained scale by `umbra gen-model`, not trained",
        })
    }

    fn tensors(&self) -> Vec<(String, Vec<usize>, Draw)> {
        let (d, f) = (self.hidden, self.inner);
        let mut t = vec![
            ("wte.weight".to_string(), vec![self.vocab, d], Draw::Token),
            (
                "wpe.weight".into(),
                vec![self.max_positions, d],
                Draw::Embedding,
            ),
        ];
        // Conv1D: weight [in, out].
        let conv = |t: &mut Vec<(String, Vec<usize>, Draw)>, name: String, d_in, d_out, gain| {
            t.push((
                format!("{name}.weight"),
                vec![d_in, d_out],
                Draw::Linear { d_in, gain },
            ));
            t.push((format!("{name}.bias"), vec![d_out], Draw::Bias));
        };
        let norm = |t: &mut Vec<(String, Vec<usize>, Draw)>, name: String| {
            t.push((format!("{name}.weight"), vec![d], Draw::Gain));
            t.push((format!("{name}.bias"), vec![d], Draw::Bias));
        };
        for i in 0..self.layers {
            let l = format!("h.{i}");
            norm(&mut t, format!("{l}.ln_1"));
            // Q and K (the first 2D columns) share c_attn's gain; 1.2 keeps attention peaked.
            conv(&mut t, format!("{l}.attn.c_attn"), d, 3 * d, 1.2);
            conv(&mut t, format!("{l}.attn.c_proj"), d, d, 1.0);
            norm(&mut t, format!("{l}.ln_2"));
            conv(&mut t, format!("{l}.mlp.c_fc"), d, f, 1.0);
            conv(&mut t, format!("{l}.mlp.c_proj"), f, d, 1.0);
        }
        norm(&mut t, "ln_f".into());
        t
    }

    /// The residual features made into outliers (GPT-2 small's best known are 138, 378 and
    /// 447; a narrower model takes them modulo its width).
    pub fn outlier_features(&self) -> Vec<usize> {
        let mut f: Vec<usize> = [138, 378, 447].iter().map(|j| j % self.hidden).collect();
        f.sort_unstable();
        f.dedup();
        f
    }

    /// Trained GPT-2's residual stream has a few features of very large magnitude that every
    /// block adds to and every LayerNorm scales down (Dettmers et al. 2022, "LLM.int8()"; Sun et
    /// al. 2024, "Massive activations"): each `mlp.c_proj` adds +-[`OUTLIER_STEP`] to them and
    /// each LayerNorm's gain there is [`OUTLIER_GAIN`], so they reach about 5 x layers in the
    /// last block (60 in GPT-2 small, where the other features are of unit scale) while
    /// LayerNorm outputs stay at unit scale.
    fn patch(&self, name: &str, values: &mut [f64]) {
        let features = self.outlier_features();
        if name.ends_with("mlp.c_proj.bias") {
            for (k, &j) in features.iter().enumerate() {
                values[j] = if k % 2 == 0 {
                    OUTLIER_STEP
                } else {
                    -OUTLIER_STEP
                };
            }
        } else if (name.contains(".ln_") || name.starts_with("ln_f")) && name.ends_with(".weight") {
            for &j in &features {
                values[j] = OUTLIER_GAIN;
            }
        }
    }
}

/// What each block's `mlp.c_proj` bias adds to an outlier feature ([`Gpt2Arch::patch`]).
const OUTLIER_STEP: f64 = 5.0;
/// LayerNorm gain on an outlier feature.
const OUTLIER_GAIN: f64 = 0.02;

fn unknown_arch(name: &str) -> ModelError {
    ModelError::Input(format!(
        "unknown architecture `{name}` (known: bert-base, gpt2, gpt2-tiny)"
    ))
}

/// GPT-2 tokenizer files copied from `tokenizer_from` (`vocab.json` and `merges.txt` must be).
const GPT2_TOKENIZER_FILES: [&str; 3] = ["vocab.json", "merges.txt", "tokenizer.json"];

/// Writes `out/config.json`, `out/model.safetensors` and GPT-2's BPE files from `tokenizer_from`.
/// Deterministic in `seed`. Errors: `out` exists and is not an empty directory, no `vocab.json` and
/// `merges.txt` in `tokenizer_from` or a vocabulary of another size than the architecture's, I/O.
pub fn generate_gpt2(
    arch: &Gpt2Arch,
    out: &Path,
    tokenizer_from: &Path,
    seed: u64,
) -> Result<(), ModelError> {
    check_new_dir(out)?;
    let vocab = tokenizer_from.join("vocab.json");
    if !vocab.is_file() || !tokenizer_from.join("merges.txt").is_file() {
        return Err(ModelError::Input(format!(
            "{} has no vocab.json and merges.txt to copy (`models/fetch.sh gpt2-tokenizer` fetches GPT-2's)",
            tokenizer_from.display()
        )));
    }
    let entries: std::collections::HashMap<String, u32> = super::read_json(&vocab)?;
    if entries.len() != arch.vocab {
        return Err(ModelError::Input(format!(
            "{} has {} entries, the architecture {}",
            vocab.display(),
            entries.len(),
            arch.vocab
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| ModelError::io(out, e))?;
    for f in GPT2_TOKENIZER_FILES {
        let (from, to) = (tokenizer_from.join(f), out.join(f));
        if from.is_file() {
            std::fs::copy(&from, &to).map_err(|e| ModelError::io(&from, e))?;
        }
    }
    write_config(out, &arch.config_json())?;
    write_weights(out, arch.tensors(), seed, |name, v| arch.patch(name, v))
}
