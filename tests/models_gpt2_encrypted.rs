//! GPT-2 on ciphertexts (`umbra::models::gpt2_encrypted`) against the plaintext model on the
//! generated gpt2-tiny directory: the twin (same packing and approximations, f64) and the
//! encrypted prefill + decode steps with the KV cache on an insecure preset.
//!
//! Needs `models/fetch.sh gpt2-tokenizer` first (CI fetches it).

#[path = "common/minilm.rs"]
mod minilm;

use minilm::tmp_dir;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use umbra::models::generate::{generate_gpt2, Gpt2Arch};
use umbra::models::gpt2::{argmax, Gpt2Model};
use umbra::models::gpt2_calibration::{calibrate, fingerprint, Gpt2Ranges};
use umbra::models::gpt2_encrypted::EncryptedGpt2;
use umbra::models::sample::SENTENCES;
use umbra::models::Tokenizer;

fn tiny() -> &'static (PathBuf, Gpt2Model, Tokenizer, Gpt2Ranges) {
    static M: OnceLock<(PathBuf, Gpt2Model, Tokenizer, Gpt2Ranges)> = OnceLock::new();
    M.get_or_init(|| {
        let tok = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gpt2-tokenizer");
        assert!(
            tok.join("vocab.json").is_file(),
            "run `models/fetch.sh gpt2-tokenizer` first"
        );
        let out = tmp_dir("gpt2enc", "tiny");
        std::fs::remove_dir(&out).unwrap();
        generate_gpt2(&Gpt2Arch::gpt2_tiny(), &out, &tok, 1).unwrap();
        let m = Gpt2Model::load(&out).unwrap();
        let t = Tokenizer::from_dir(&out).unwrap();
        let prompts: Vec<String> = SENTENCES.iter().map(|s| s.to_string()).collect();
        let fp = fingerprint(&out, &m).unwrap();
        let r = calibrate(&m, &t, &prompts, 0.1, "built-in sample", fp).unwrap();
        (out, m, t, r)
    })
}

fn std_dev(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt()
}

fn max_err(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Prefill then `steps` greedy decode steps on the twin; at each step the logits are compared
/// with the plaintext model's on the same prefix. Returns (top-1 agreements, steps, worst
/// relative error).
fn twin_run(enc: &EncryptedGpt2, prompt: &str, steps: usize) -> (usize, usize, f64) {
    let (_, m, t, _) = tiny();
    let ids = t.encode(prompt).unwrap().ids;
    let n = ids.len();
    let (mut logits, mut cache) = enc
        .prefill_twin(&enc.prompt_rows(m, &ids).unwrap(), n)
        .unwrap();
    let mut plain_cache = m.new_cache();
    let mut plain = m.forward(&ids, &mut plain_cache).unwrap().pop().unwrap();
    let (mut agree, mut worst) = (0, 0.0f64);
    for step in 0..=steps {
        let err = max_err(&logits, &plain) / std_dev(&plain);
        worst = worst.max(err);
        let (a, b) = (argmax(&logits), argmax(&plain));
        agree += usize::from(a == b);
        if step == steps {
            break;
        }
        // The plaintext model's choice feeds both (top-1 agreement given the same prefix).
        let p = n + step;
        logits = enc
            .decode_twin(&enc.token_rows(m, b, p).unwrap(), &mut cache, p)
            .unwrap();
        plain = m.forward(&[b], &mut plain_cache).unwrap().pop().unwrap();
    }
    (agree, steps + 1, worst)
}

#[test]
fn twin_prefill_and_decode_follow_the_plaintext_model() {
    let (_, m, _, r) = tiny();
    let enc = EncryptedGpt2::new(m, r, 32, 1 << 11).unwrap();
    let mut total = (0, 0);
    for prompt in [
        "Hello world, this is",
        "Encrypted inference keeps my text private because",
        "The quick brown fox",
    ] {
        let (a, n, worst) = twin_run(&enc, prompt, 6);
        assert!(
            worst < 2f64.powi(-8),
            "{prompt:?}: logit error {worst} of the logits' std"
        );
        total = (total.0 + a, total.1 + n);
    }
    assert_eq!(
        total.0, total.1,
        "top-1 agreement {} / {}",
        total.0, total.1
    );
}

/// Prefill + 3 decode steps on ciphertexts (insecure N = 2^12 preset), the KV cache serialized
/// and read back between steps: logits within 2^-8 of the plaintext logits' scale, top-1
/// agreement 1.0; a decode step at a position outside the window is refused.
#[test]
fn encrypted_prefill_and_decode_with_a_serialized_cache() {
    let (dir, m, t, r) = tiny();
    let loaded = umbra::cli::generate::Gpt2Loaded {
        dir: dir.clone(),
        model: m.clone(),
        tokenizer: t.clone(),
        ranges: r.clone(),
        fingerprint: r.model.clone(),
    };
    let mut s = umbra::cli::generate::Session::new(
        &loaded,
        8,
        "N12_QP1654_L9_S50_boot_insecure",
        Some("cpu"),
        true,
    )
    .unwrap();
    let ids = t.encode("Hello world, this is").unwrap().ids;
    let mut plain_cache = m.new_cache();
    let mut plain = m.forward(&ids, &mut plain_cache).unwrap().pop().unwrap();
    let mut logits = s.prefill(&ids).unwrap();
    assert!(s.bootstraps > 0);
    for step in 0..4 {
        let err = umbra::cli::generate::relative_logit_err(&logits, &plain);
        assert!(
            err < 2f64.powi(-8),
            "step {step}: logit error {err} of the logits' std"
        );
        let next = argmax(&plain);
        assert_eq!(argmax(&logits), next, "step {step}: top-1");
        if step == 3 {
            break;
        }
        // The server's cache leaves memory and comes back between requests.
        let bytes = s.cache_bytes().unwrap();
        assert_eq!(bytes.len(), 2 * 2 * s.enc.layout.cts());
        s.restore_cache(&bytes).unwrap();
        let p = ids.len() + step;
        logits = s.decode(next, p).unwrap();
        plain = m.forward(&[next], &mut plain_cache).unwrap().pop().unwrap();
    }
    // A truncated cache and a position outside the window are refused.
    let bytes = s.cache_bytes().unwrap();
    let e = s.restore_cache(&bytes[1..]).unwrap_err();
    assert!(e.contains("KV cache"), "{e}");
    let e = s.decode(11, 8).unwrap_err();
    assert!(e.contains("position 8"), "{e}");
}
