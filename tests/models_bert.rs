//! `umbra::models` against Hugging Face: the tokenizer's ids and the plaintext f64 model's
//! sentence embeddings equal sentence-transformers' (fixtures: models/reference/, written by
//! make_reference.py), and every loading fault is a clear error naming its file, field or tensor.
//!
//! The tests on all-MiniLM-L6-v2 need `models/fetch.sh all-MiniLM-L6-v2` first; without the
//! model they fail and say so (CI fetches it).

use safetensors::tensor::{Dtype, TensorView};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[path = "common/minilm.rs"]
mod minilm;
use minilm::{err_text, minilm, model_dir};
use umbra::models::config::Head;
use umbra::models::sentence::{l2_normalize, pool};
use umbra::models::{
    Activation, BertConfig, BertModel, Embedder, Pooling, SentenceConfig, Tokenizer, Weights,
};

const TOL: f64 = 1e-5;

fn reference() -> &'static Value {
    static R: OnceLock<Value> = OnceLock::new();
    R.get_or_init(|| {
        let p =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("models/reference/all-MiniLM-L6-v2.json");
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&text).unwrap()
    })
}

fn cases() -> &'static [Value] {
    let c = reference()["cases"].as_array().unwrap();
    assert!(c.len() >= 6, "the fixture has {} sentences", c.len());
    c
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn config_of_minilm() {
    let c = &minilm().model.config;
    assert_eq!(
        (c.hidden, c.heads, c.layers, c.intermediate),
        (384, 12, 6, 1536)
    );
    assert_eq!((c.vocab, c.max_positions, c.type_vocab), (30522, 512, 2));
    assert_eq!(c.layer_norm_eps, 1e-12);
    assert_eq!(c.activation, Activation::GeluErf);
    assert_eq!(c.head, Head::None);
    let s = &minilm().sentence;
    assert_eq!(
        (s.pooling, s.normalize, s.max_seq_length),
        (Pooling::Mean, true, Some(256))
    );
    assert!(minilm().model.pooler.is_some());
}

#[test]
fn tokenizer_ids_equal_hf() {
    let tok = &minilm().tokenizer;
    let vocab = Tokenizer::from_vocab(&model_dir().join("vocab.txt"), true).unwrap();
    let mut split = false;
    for case in cases() {
        let text = case["text"].as_str().unwrap();
        let ids = u32s(&case["ids"]);
        let n = ids.len();
        // tokenizer.json pads and truncates to 128 tokens.
        let e = tok.encode(text).unwrap();
        assert_eq!(e.len(), 128, "{text}");
        assert_eq!(&e.ids[..n], &ids[..], "{text}");
        assert_eq!(&e.type_ids[..n], &u32s(&case["type_ids"])[..], "{text}");
        assert_eq!(
            &e.attention_mask[..n],
            &u32s(&case["attention_mask"])[..],
            "{text}"
        );
        assert!(
            e.ids[n..].iter().all(|&i| i == 0) && e.attention_mask[n..].iter().all(|&m| m == 0)
        );
        assert_eq!(e.real_tokens(), n);
        // Exactly T tokens.
        let t = tok.encode_to(text, n + 3).unwrap();
        assert_eq!(
            (&t.ids[..n], t.len(), t.real_tokens()),
            (&ids[..], n + 3, n)
        );
        assert_eq!(tok.encode_to(text, n).unwrap().ids, ids);
        // The vocab.txt fallback gives the same ids.
        assert_eq!(vocab.encode(text).unwrap().ids, ids, "vocab.txt: {text}");
        split |= e.tokens.iter().any(|t| t.starts_with("##"));
    }
    assert!(split, "no sentence splits into word pieces");
}

#[test]
fn truncation_to_t_keeps_cls_and_sep() {
    let tok = &minilm().tokenizer;
    let long = cases()
        .iter()
        .map(|c| u32s(&c["ids"]))
        .max_by_key(Vec::len)
        .unwrap();
    let text = cases().iter().find(|c| u32s(&c["ids"]) == long).unwrap()["text"]
        .as_str()
        .unwrap();
    let e = tok.encode_to(text, 16).unwrap();
    assert!(e.truncated);
    assert_eq!(e.ids.len(), 16);
    assert_eq!(&e.ids[..15], &long[..15]);
    assert_eq!(e.ids[15], 102, "[SEP] last");
    assert!(!tok.encode_to("Hello world.", 16).unwrap().truncated);
}

#[test]
fn embedding_equals_hf() {
    let m = minilm();
    let mut worst = 0.0f64;
    for case in cases() {
        let text = case["text"].as_str().unwrap();
        let n = case["ids"].as_array().unwrap().len();
        let e = m.embed(text, Some(n)).unwrap();
        let d_emb = max_abs_diff(&e.embedding, &f64s(&case["embedding"]));
        let d_pool = max_abs_diff(&e.pooled, &f64s(&case["pooled"]));
        println!("{n:3} tokens: max |diff| normalized {d_emb:.2e}, pooled {d_pool:.2e}  {text}");
        assert!(
            d_emb <= TOL,
            "{text}: normalized embedding differs by {d_emb:e}"
        );
        assert!(
            d_pool <= TOL,
            "{text}: mean-pooled embedding differs by {d_pool:e}"
        );
        worst = worst.max(d_emb);
    }
    println!("worst max |diff| on the normalized embedding: {worst:.2e}");
}

#[test]
fn padding_keys_are_masked() {
    // The tokenizer file's own 128-token padding gives the same embedding as no padding.
    let m = minilm();
    let case = &cases()[2];
    let padded = m.embed(case["text"].as_str().unwrap(), None).unwrap();
    assert_eq!(padded.encoding.len(), 128);
    let d = max_abs_diff(&padded.embedding, &f64s(&case["embedding"]));
    assert!(d <= TOL, "padded to 128 tokens: differs by {d:e}");
    // With the padding keys visible the result moves far away (the mask matters).
    let mut e = padded.encoding.clone();
    e.attention_mask.iter_mut().for_each(|v| *v = 1);
    let h = m
        .model
        .forward(&e.ids, &e.type_ids, &e.attention_mask)
        .unwrap();
    let unmasked = l2_normalize(&pool(&h, &padded.encoding.attention_mask, Pooling::Mean).unwrap());
    assert!(max_abs_diff(&unmasked, &padded.embedding) > 1e-2);
}

// ---- loading faults, on small files written here ----

fn tmp_dir(name: &str) -> PathBuf {
    minilm::tmp_dir("models_bert", name)
}

/// A tensor to write: dtype, shape, little-endian bytes.
struct T(Dtype, Vec<usize>, Vec<u8>);

fn f32s(shape: &[usize], seed: u32) -> T {
    let n: usize = shape.iter().product();
    let bytes = (0..n)
        .flat_map(|i| {
            let v = (((i as u32).wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0;
            (v * 0.5).to_le_bytes()
        })
        .collect();
    T(Dtype::F32, shape.to_vec(), bytes)
}

fn write(path: &Path, tensors: &[(String, T)]) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, T(d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

const TINY: &str = r#"{"model_type": "bert", "architectures": ["BertModel"], "hidden_size": 8,
  "num_attention_heads": 2, "num_hidden_layers": 2, "intermediate_size": 16, "vocab_size": 12,
  "layer_norm_eps": 1e-12, "hidden_act": "gelu", "max_position_embeddings": 10,
  "type_vocab_size": 2}"#;

/// Every tensor of a BERT of TINY's shapes, names under `prefix`.
fn tiny_tensors(prefix: &str) -> Vec<(String, T)> {
    let (d, f) = (8, 16);
    let mut t: Vec<(String, Vec<usize>)> = vec![
        ("embeddings.word_embeddings.weight".into(), vec![12, d]),
        ("embeddings.position_embeddings.weight".into(), vec![10, d]),
        ("embeddings.token_type_embeddings.weight".into(), vec![2, d]),
        ("embeddings.LayerNorm.weight".into(), vec![d]),
        ("embeddings.LayerNorm.bias".into(), vec![d]),
        ("pooler.dense.weight".into(), vec![d, d]),
        ("pooler.dense.bias".into(), vec![d]),
    ];
    for l in 0..2 {
        let p = format!("encoder.layer.{l}.");
        for (name, shape) in [
            ("attention.self.query", vec![d, d]),
            ("attention.self.key", vec![d, d]),
            ("attention.self.value", vec![d, d]),
            ("attention.output.dense", vec![d, d]),
            ("intermediate.dense", vec![f, d]),
            ("output.dense", vec![d, f]),
        ] {
            t.push((format!("{p}{name}.bias"), vec![shape[0]]));
            t.push((format!("{p}{name}.weight"), shape));
        }
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            t.push((format!("{p}{ln}.weight"), vec![d]));
            t.push((format!("{p}{ln}.bias"), vec![d]));
        }
    }
    t.into_iter()
        .enumerate()
        .map(|(i, (n, s))| (format!("{prefix}{n}"), f32s(&s, i as u32)))
        .collect()
}

fn tiny_config() -> BertConfig {
    BertConfig::from_json(TINY, "config.json").unwrap()
}

#[test]
fn tiny_bert_loads_with_or_without_prefix_and_masks_padding() {
    let dir = tmp_dir("prefix");
    let c = tiny_config();
    let mut outs = vec![];
    for prefix in ["", "bert."] {
        let p = dir.join(format!("m{}.safetensors", prefix.len()));
        write(&p, &tiny_tensors(prefix));
        let w = Weights::open(&p).unwrap();
        let m = BertModel::load(&w, &c).unwrap();
        assert_eq!(m.encoder.layers.len(), 2);
        // 4 real tokens, then 3 of padding: the real rows equal the unpadded run.
        let ids = [1u32, 5, 7, 2, 0, 0, 0];
        let mask = [1u32, 1, 1, 1, 0, 0, 0];
        let h = m.forward(&ids, &[0; 7], &mask).unwrap();
        let h4 = m.forward(&ids[..4], &[0; 4], &mask[..4]).unwrap();
        for t in 0..4 {
            assert!(max_abs_diff(&h[t], &h4[t]) < 1e-12);
        }
        outs.push(h4);
    }
    assert_eq!(outs[0], outs[1]);
}

#[test]
fn f16_and_bf16_weights_convert() {
    let dir = tmp_dir("half");
    let vals = [0.5f32, -1.25, 3.0, 0.0];
    let f16: Vec<u8> = vals
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let bf16: Vec<u8> = vals
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect();
    let p = dir.join("h.safetensors");
    write(
        &p,
        &[
            ("a".into(), T(Dtype::F16, vec![2, 2], f16)),
            ("b".into(), T(Dtype::BF16, vec![4], bf16)),
        ],
    );
    let w = Weights::open(&p).unwrap();
    let want: Vec<f64> = vals.iter().map(|&v| v as f64).collect();
    assert_eq!(w.tensor("a", &[2, 2]).unwrap(), want);
    assert_eq!(w.vector("b", 4).unwrap(), want);
    assert_eq!(
        w.matrix("a", 2, 2).unwrap(),
        vec![vec![0.5, -1.25], vec![3.0, 0.0]]
    );
}

#[test]
fn missing_tensor_is_named() {
    let dir = tmp_dir("missing");
    let name = "encoder.layer.1.attention.self.key.weight";
    let tensors: Vec<_> = tiny_tensors("bert.")
        .into_iter()
        .filter(|(n, _)| n != &format!("bert.{name}"))
        .collect();
    let p = dir.join("model.safetensors");
    write(&p, &tensors);
    let msg = err_text(BertModel::load(&Weights::open(&p).unwrap(), &tiny_config()));
    assert!(msg.contains(name) && msg.contains("not found"), "{msg}");
    assert!(
        msg.contains(&format!("bert.{name}")),
        "names both lookups: {msg}"
    );
    assert!(msg.contains("model.safetensors"), "{msg}");
    // pp() prefixes.
    let w = Weights::open(&p).unwrap();
    assert_eq!(w.pp("encoder").pp("layer.0").prefix(), "encoder.layer.0");
    assert!(w
        .pp("encoder.layer.0.attention.self.key")
        .contains("weight"));
    assert!(!w
        .pp("encoder.layer.1.attention.self.key")
        .contains("weight"));
}

#[test]
fn wrong_shape_is_named() {
    let dir = tmp_dir("shape");
    let mut tensors = tiny_tensors("");
    let name = "encoder.layer.0.intermediate.dense.weight";
    for (n, t) in tensors.iter_mut() {
        if n == name {
            *t = f32s(&[8, 16], 1); // transposed: [d, f] instead of [f, d]
        }
    }
    let p = dir.join("model.safetensors");
    write(&p, &tensors);
    let msg = err_text(BertModel::load(&Weights::open(&p).unwrap(), &tiny_config()));
    assert!(
        msg.contains(name) && msg.contains("[8, 16]") && msg.contains("[16, 8]"),
        "{msg}"
    );
}

#[test]
fn unsupported_dtype_is_named() {
    let dir = tmp_dir("dtype");
    let p = dir.join("model.safetensors");
    let ints: Vec<u8> = (0..6i32).flat_map(|v| v.to_le_bytes()).collect();
    write(
        &p,
        &[(
            "embeddings.position_ids".into(),
            T(Dtype::I32, vec![1, 6], ints),
        )],
    );
    let msg = err_text(
        Weights::open(&p)
            .unwrap()
            .tensor("embeddings.position_ids", &[1, 6]),
    );
    assert!(
        msg.contains("embeddings.position_ids") && msg.contains("I32") && msg.contains("F32"),
        "{msg}"
    );
}

#[test]
fn unsupported_config_is_named() {
    let cases = [
        (
            r#""hidden_act": "gelu""#,
            r#""hidden_act": "relu""#,
            "hidden_act",
        ),
        (
            r#""model_type": "bert""#,
            r#""model_type": "gpt2""#,
            "model_type",
        ),
        (
            r#""num_attention_heads": 2"#,
            r#""num_attention_heads": 3"#,
            "num_attention_heads",
        ),
        (r#""hidden_size": 8,"#, "", "hidden_size"),
        (
            r#""layer_norm_eps": 1e-12"#,
            r#""layer_norm_eps": -1"#,
            "layer_norm_eps",
        ),
        (
            r#"["BertModel"]"#,
            r#"["BertForQuestionAnswering"]"#,
            "architectures",
        ),
    ];
    for (from, to, field) in cases {
        let text = TINY.replace(from, to);
        assert_ne!(text, TINY);
        let msg = err_text(BertConfig::from_json(&text, "dir/config.json"));
        assert!(
            msg.contains(field) && msg.contains("dir/config.json"),
            "{field}: {msg}"
        );
    }
    let c = BertConfig::from_json(&TINY.replace(r#""gelu""#, r#""gelu_new""#), "c").unwrap();
    assert_eq!(c.activation, Activation::GeluTanh);
    let c = BertConfig::from_json(
        &TINY.replace(r#"["BertModel"]"#, r#"["BertForSequenceClassification"], "id2label": {"0": "neg", "1": "neu", "2": "pos"}"#),
        "c",
    )
    .unwrap();
    assert_eq!(c.head, Head::SequenceClassification { labels: 3 });
}

#[test]
fn unsupported_pooling_is_named() {
    let dir = tmp_dir("pooling");
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    std::fs::write(
        dir.join("modules.json"),
        r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
            {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        r#"{"pooling_mode_max_tokens": true}"#,
    )
    .unwrap();
    let msg = err_text(SentenceConfig::from_dir(&dir));
    assert!(msg.contains("pooling_mode_max_tokens"), "{msg}");
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        r#"{"pooling_mode_mean_tokens": true}"#,
    )
    .unwrap();
    let s = SentenceConfig::from_dir(&dir).unwrap().unwrap();
    assert_eq!((s.pooling, s.normalize), (Pooling::Mean, false));
    std::fs::write(
        dir.join("modules.json"),
        r#"[{"path":"","type":"sentence_transformers.models.Dense"}]"#,
    )
    .unwrap();
    let msg = err_text(SentenceConfig::from_dir(&dir));
    assert!(
        msg.contains("Dense") && msg.contains("modules.json"),
        "{msg}"
    );
}

#[test]
fn missing_and_corrupt_files_are_named() {
    let dir = tmp_dir("files");
    let msg = err_text(Embedder::load(&dir));
    assert!(
        msg.contains("config.json") && msg.contains("models/fetch.sh all-MiniLM-L6-v2"),
        "{msg}"
    );
    std::fs::write(dir.join("config.json"), TINY).unwrap();
    let msg = err_text(Embedder::load(&dir));
    assert!(msg.contains("model.safetensors"), "{msg}");
    std::fs::write(
        dir.join("model.safetensors"),
        b"\x10\0\0\0\0\0\0\0{not json",
    )
    .unwrap();
    let msg = err_text(Embedder::load(&dir));
    assert!(
        msg.contains("model.safetensors") && msg.contains("not a valid safetensors"),
        "{msg}"
    );
    write(&dir.join("model.safetensors"), &tiny_tensors(""));
    let msg = err_text(Embedder::load(&dir));
    assert!(
        msg.contains("tokenizer.json") && msg.contains("vocab.txt"),
        "{msg}"
    );
    let msg = err_text(Tokenizer::from_file(&dir.join("tokenizer.json")));
    assert!(msg.contains("tokenizer.json"), "{msg}");
    let msg = err_text(Weights::open(&dir.join("nope.safetensors")));
    assert!(msg.contains("nope.safetensors"), "{msg}");
    let msg = err_text(BertConfig::from_file(&dir.join("nope.json")));
    assert!(msg.contains("nope.json"), "{msg}");
    // With a vocabulary the tiny directory loads and embeds (plain transformers: mean, no
    // normalization).
    let vocab = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", ".", "he", "##llo", "a",
        "b",
    ];
    std::fs::write(dir.join("vocab.txt"), vocab.join("\n")).unwrap();
    let e = Embedder::load(&dir).unwrap();
    let out = e.embed("Hello world.", Some(8)).unwrap();
    assert_eq!(out.encoding.ids, vec![2, 5, 6, 7, 3, 0, 0, 0]);
    assert_eq!(out.embedding, out.pooled);
    let msg = err_text(e.embed("Hello world.", Some(11)));
    assert!(msg.contains("max_position_embeddings"), "{msg}");
}

/// Runs the `umbra` binary with `args`.
fn umbra(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cli_embed_prints_the_reference_embedding() {
    minilm();
    let case = &cases()[0];
    let dir = model_dir();
    let text = case["text"].as_str().unwrap();
    let args = ["embed", "--model"].map(std::ffi::OsStr::new);
    let rest = ["--text", text, "--tokens", "16", "--json"].map(std::ffi::OsStr::new);
    let out = umbra(&[&args[..], &[dir.as_os_str()], &rest[..]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["tokens"].as_u64(), v["real_tokens"].as_u64()),
        (Some(16), Some(5))
    );
    assert_eq!(v["mode"], "plaintext");
    let d = max_abs_diff(&f64s(&v["embedding"]), &f64s(&case["embedding"]));
    assert!(d <= TOL, "umbra embed differs by {d:e}");
    // A directory without a model: a clear error and a non-zero exit.
    let empty = tmp_dir("cli_empty");
    let out = umbra(&[&args[..], &[empty.as_os_str()], &rest[..2]].concat());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.json") && err.contains("models/fetch.sh"),
        "{err}"
    );
}
