//! all-MiniLM-L6-v2 on ciphertexts (issue 13): the encrypted encoder's twin against the plaintext
//! model at 128 tokens, the encrypted model end to end at 16 tokens on an insecure N = 2^12
//! preset, the client/server files (keygen -> encrypt -> infer -> decrypt) and their refusals,
//! and calibrated ranges that an input leaves.

#[path = "common/minilm.rs"]
mod minilm;

use minilm::{model_dir, tmp_dir};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use umbra::ckks::CkksError;
use umbra::cli::model;
use umbra::models::bundle::Bundle;
use umbra::models::calibration::{self, Ranges};
use umbra::models::{Embedder, EncryptedEncoder, ModelError};

/// Insecure (8-bit) bootstrapping parameters at N = 2^12, CI-fast.
const PRESET: &str = "N12_QP1654_L9_S50_boot_insecure";
const TEXT: &str = "Homomorphic encryption lets a server compute on data it cannot read.";

/// The model directory with its ranges file (calibrated once per test binary when absent; the
/// tests of this binary share the directory, so the first one writes it under a lock).
fn ready() -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    static DONE: OnceLock<()> = OnceLock::new();
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = model_dir();
    minilm::minilm();
    DONE.get_or_init(|| {
        model::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    });
    dir
}

fn sentences_file(name: &str, lines: &[&str]) -> PathBuf {
    let d = tmp_dir("models_encrypted", name);
    let p = d.join("sentences.txt");
    std::fs::write(&p, lines.join("\n")).unwrap();
    p
}

#[test]
fn twin_matches_the_plaintext_model_at_128_tokens() {
    let dir = ready();
    // Lengths from 3 to ~60 word pieces; real text (pyjokes, BSD), not the calibration sample.
    let f = sentences_file(
        "twin",
        &[
            "Ubuntu users are apt to get this joke.",
            "Obfuscated Reality Mappers (ORMs) can be useful database tools.",
            "Why did the programmer quit his job? Because he didn't get arrays.",
            "Hi.",
            "A SQL query goes into a bar, walks up to two tables and asks, 'Can I join you?'",
            "There are 10 types of people: those who understand binary and those who don't, \
             and those who weren't expecting a base 3 joke, plus a long tail of words to make \
             this sentence reach a few dozen word pieces in the tokenizer's vocabulary.",
        ],
    );
    let r = model::eval(
        &dir,
        &f,
        "twin",
        128,
        None,
        model::DEFAULT_PRESET,
        None,
        true,
    )
    .unwrap();
    eprintln!("{r:?}");
    assert_eq!(r.n, 6);
    assert_eq!(r.out_of_range, 0, "{:?}", r.out_of_range_examples);
    assert!(r.cosine_min >= 0.999, "{r:?}");
    assert_eq!(r.nearest_neighbor_agreement, 1.0, "{r:?}");
}

fn copy_model(name: &str) -> PathBuf {
    // A model directory of its own: links to the model's files, no ranges file.
    let d = tmp_dir("models_encrypted", name);
    for e in std::fs::read_dir(model_dir()).unwrap() {
        let e = e.unwrap();
        let n = e.file_name();
        if n == calibration::FILE_NAME {
            continue;
        }
        std::os::unix::fs::symlink(e.path(), d.join(&n)).unwrap();
    }
    d
}

#[test]
fn activations_outside_the_calibrated_ranges_are_reported() {
    let _ = ready();
    let d = copy_model("narrow");
    // Calibrated on one short sentence without margin: longer real text leaves its ranges.
    let e = Embedder::load(&d).unwrap();
    let r =
        calibration::calibrate(&e, &["Hi there.".to_string()], 16, 0.0, "one sentence").unwrap();
    r.write(&d).unwrap();
    let back = Ranges::read(&Ranges::path_in(&d)).unwrap();
    assert_eq!(back, r, "the ranges file round-trips");
    let f = sentences_file(
        "narrow_text",
        &[
            "The patient reported mild headaches and occasional dizziness after the new \
             medication, so the doctor halved the dose and ordered more blood tests.",
            "Our quarterly revenue grew by 12.5% to $4.2 million, driven mostly by \
             subscriptions in Europe and Asia.",
        ],
    );
    let rep = model::eval(&d, &f, "twin", 32, None, model::DEFAULT_PRESET, None, true).unwrap();
    eprintln!("{rep:?}");
    assert!(rep.out_of_range > 0, "{rep:?}");
    // The encoder's twin names the interval it left.
    let params = model::preset(model::DEFAULT_PRESET).unwrap().1;
    let mut enc = EncryptedEncoder::new(&e.model, &e.sentence, &r, 32, params.max_slots()).unwrap();
    let encoding = e
        .encode(
            "Our quarterly revenue grew by 12.5% to $4.2 million, driven mostly by subscriptions.",
            Some(32),
        )
        .unwrap();
    let (rows, n) = enc.client_rows(&e.model, &encoding).unwrap();
    enc.set_length(n).unwrap();
    match enc.twin(&rows) {
        Err(ModelError::Layer(CkksError::OutOfRange(m))) => {
            assert!(m.contains("layer") && m.contains("outside"), "{m}")
        }
        other => panic!("expected OutOfRange, got {:?}", other.map(|v| v.len())),
    }
}

fn flip_byte(src: &Path, dst: &Path, at: usize) {
    let mut b = std::fs::read(src).unwrap();
    let i = at.min(b.len() - 1);
    b[i] ^= 0x40;
    std::fs::write(dst, b).unwrap();
}

fn truncate(src: &Path, dst: &Path) {
    let b = std::fs::read(src).unwrap();
    std::fs::write(dst, &b[..b.len() / 2]).unwrap();
}

#[test]
fn encrypted_minilm_end_to_end_and_the_client_server_files() {
    let dir = ready();
    // In one process.
    let r = model::run(
        &dir,
        TEXT,
        Some(16),
        PRESET,
        Some("cpu"),
        false,
        true,
        &mut |_| {},
    )
    .unwrap();
    eprintln!(
        "run: {:.0} ms, {} bootstraps, cosine {:.9}, max abs err {:.2e}, estimate {:.0} ms",
        r.ms,
        r.bootstraps.unwrap(),
        r.cosine_vs_plaintext.unwrap(),
        r.max_abs_err_vs_plaintext.unwrap(),
        r.estimated_ms.unwrap()
    );
    assert_eq!(r.mode, "encrypted");
    assert!(r.cosine_vs_plaintext.unwrap() >= 0.999, "{r:?}");
    assert!(r.bootstraps.unwrap() > 0);
    let plain = model::run(&dir, TEXT, Some(16), PRESET, None, true, true, &mut |_| {}).unwrap();
    assert_eq!(plain.mode, "plaintext");
    assert!(model::cosine(&r.embedding, &plain.embedding) >= 0.999);

    // The same through files.
    let w = tmp_dir("models_encrypted", "files");
    let keys = w.join("keys");
    let k = model::keygen(&dir, 16, PRESET, &keys).unwrap();
    let sk = model::secret_key_path(&keys);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sk).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "secret.key mode {mode:o}");
    }
    assert!(k.eval_keys_bytes > 0);
    let input = w.join("in.ct");
    let e = model::encrypt(&dir, &keys, TEXT, None, &input).unwrap();
    assert_eq!((e.tokens, e.real_tokens), (16, plain.real_tokens));
    // The server never needs the secret key: infer with it moved away.
    let hidden = w.join("secret.key.away");
    std::fs::rename(&sk, &hidden).unwrap();
    let out = w.join("out.ct");
    let ev = model::eval_keys_path(&keys);
    let inf = model::infer(&dir, &ev, &input, &out, Some("cpu"), true).unwrap();
    assert!(inf.bootstraps > 0);
    std::fs::rename(&hidden, &sk).unwrap();
    let d = model::decrypt(&dir, &keys, &out).unwrap();
    let c_run = model::cosine(&d.embedding, &r.embedding);
    let c_plain = model::cosine(&d.embedding, &plain.embedding);
    eprintln!("files: cosine {c_plain:.9} vs plaintext, {c_run:.9} vs run");
    assert!(c_plain >= 0.999 && c_run >= 0.999, "{c_plain} {c_run}");

    // Refusals: corrupt, truncated, wrong kind, other tokens, other model, missing key.
    let bad = w.join("bad.ct");
    flip_byte(&input, &bad, 40);
    let m = model::infer(&dir, &ev, &bad, &out, Some("cpu"), true).unwrap_err();
    assert!(m.contains("bad.ct"), "{m}");
    flip_byte(&input, &bad, 1 << 20);
    let m = model::infer(&dir, &ev, &bad, &out, Some("cpu"), true).unwrap_err();
    assert!(m.contains("corrupt") || m.contains("checksum"), "{m}");
    truncate(&out, &bad);
    let m = model::decrypt(&dir, &keys, &bad).unwrap_err();
    assert!(m.contains("truncated"), "{m}");
    let m = model::decrypt(&dir, &keys, &input).unwrap_err();
    assert!(m.contains("expected an encrypted result"), "{m}");
    // No output file is written over a key (or over a file that is not Umbra's).
    let m = model::encrypt(&dir, &keys, TEXT, None, &sk).unwrap_err();
    assert!(m.contains("not overwriting"), "{m}");
    let m = model::infer(&dir, &ev, &input, &ev, None, true).unwrap_err();
    assert!(m.contains("not overwriting"), "{m}");
    // Outputs of the refusals below would go to a path that does not exist yet.
    let fresh = w.join("fresh.ct");
    let m = model::encrypt(&dir, &keys, TEXT, Some(32), &fresh).unwrap_err();
    assert!(m.contains("16 tokens"), "{m}");
    let keys8 = w.join("keys8");
    model::keygen(&dir, 8, PRESET, &keys8).unwrap();
    let m = model::infer(
        &dir,
        &model::eval_keys_path(&keys8),
        &input,
        &fresh,
        None,
        true,
    )
    .unwrap_err();
    assert!(m.contains("8 tokens") && m.contains("16 tokens"), "{m}");
    // Evaluation keys of another keygen (same model, preset and tokens).
    let keys_b = w.join("keys_b");
    model::keygen(&dir, 16, PRESET, &keys_b).unwrap();
    let m = model::infer(
        &dir,
        &model::eval_keys_path(&keys_b),
        &input,
        &fresh,
        None,
        true,
    )
    .unwrap_err();
    assert!(m.contains("another keygen"), "{m}");
    // A secret key is never overwritten.
    let m = model::keygen(&dir, 16, PRESET, &keys_b).unwrap_err();
    assert!(m.contains("never overwritten"), "{m}");
    // A file made for another model (its config.json hashes differently).
    let mut b = Bundle::read(&out).unwrap();
    b.header.model.config_sha256 = "0".repeat(64);
    b.write(&fresh, false).unwrap();
    let m = model::decrypt(&dir, &keys, &fresh).unwrap_err();
    assert!(m.contains("another model"), "{m}");
    std::fs::remove_file(&sk).unwrap();
    let m = model::decrypt(&dir, &keys, &out).unwrap_err();
    assert!(m.contains("secret.key"), "{m}");
}
