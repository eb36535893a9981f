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
    let mut logits = s.prefill(&ids).unwrap().logits.unwrap();
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
        logits = s.decode(next, p).unwrap().logits.unwrap();
        plain = m.forward(&[next], &mut plain_cache).unwrap().pop().unwrap();
    }
    // A truncated cache and a position outside the window are refused.
    let bytes = s.cache_bytes().unwrap();
    let e = s.restore_cache(&bytes[1..]).unwrap_err();
    assert!(e.contains("KV cache"), "{e}");
    let e = s.decode(11, 8).unwrap_err();
    assert!(e.contains("position 8"), "{e}");
}

/// The encrypted argmax over more logits than a ciphertext holds (4500 logits in three
/// ciphertexts of 2048 slots, insecure N = 2^12 with bootstrapping): the right one-hot when the
/// top logit leads by the gap, wherever it sits; on an exact tie every tied slot is marked and the
/// lowest id is the documented choice.
#[test]
fn encrypted_argmax_over_three_ciphertexts() {
    use std::sync::Arc;
    use umbra::ckks::bootstrap::{gen_bootstrap_keys_at, preset, Refreshing};
    use umbra::ckks::{
        Bootstrapper, Context, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters,
    };
    use umbra::math::fft::C64;
    use umbra::nn::argmax::{argmax_multi, argmax_multi_twin, rotations, ArgmaxOptions};

    let pr = preset("N12_QP1654_L9_S50_boot_insecure").unwrap();
    let params = Parameters::new(pr.params.clone()).unwrap();
    let ctx = Context::new(params.clone(), umbra::backend::Device::Cpu).unwrap();
    let s = params.max_slots();
    let mut kg = KeyGenerator::new(&ctx);
    let (sk, _) = kg.gen_secret_key_seeded();
    let top = params.compute_top_level();
    let rots: Vec<(i64, usize)> = rotations(s).into_iter().map(|r| (r, top)).collect();
    let keys = gen_bootstrap_keys_at(&mut kg, &sk, &params, &pr.boot, &rots).unwrap();
    let eval = Evaluator::new(&ctx, Arc::new(keys)).unwrap();
    let boot = Bootstrapper::new(&eval, &pr.boot).unwrap();
    let o = ArgmaxOptions::new(8.0, 2.0, 12.0).unwrap();
    let count = 4500;
    let mut rng = 7u64;
    let mut uniform = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((rng >> 11) as f64 / (1u64 << 53) as f64) * 10.0 - 7.0 // [-7, 3]
    };
    let base: Vec<f64> = (0..count).map(|_| uniform()).collect();
    let run = |logits: &[f64]| -> Vec<f64> {
        let mut slots = logits.to_vec();
        slots.resize(3 * s, 0.0);
        let enc = Encoder::new(&ctx);
        let mut encryptor = Encryptor::secret(&ctx);
        let cts: Vec<_> = slots
            .chunks(s)
            .map(|v| {
                let c: Vec<C64> = v.iter().map(|&a| C64::new(a, 0.0)).collect();
                encryptor
                    .encrypt_sk(&enc.encode_complex(&c, top, None).unwrap(), &sk)
                    .unwrap()
            })
            .collect();
        let r = Refreshing::new(&eval, &boot);
        let out = argmax_multi(&r, &cts, count, &o).unwrap();
        let twin = argmax_multi_twin(
            &slots.chunks(s).map(<[f64]>::to_vec).collect::<Vec<_>>(),
            count,
            &o,
        )
        .unwrap();
        let dec = Decryptor::new(&ctx);
        let got: Vec<f64> = out
            .iter()
            .flat_map(|ct| {
                let mut v = dec.decrypt(ct, &sk).unwrap();
                v.truncate(s);
                v
            })
            .collect();
        let err = got
            .iter()
            .zip(twin.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 2f64.powi(-6), "encrypted vs twin: {err}");
        got[..count].to_vec()
    };
    let marked = |v: &[f64]| -> Vec<usize> { (0..v.len()).filter(|&i| v[i] > 0.5).collect() };
    // A winner in the last ciphertext, then one in the first.
    for win in [4200usize, 100] {
        let mut l = base.clone();
        l[win] = 6.0;
        let got = run(&l);
        assert_eq!(marked(&got), vec![win], "winner {win}");
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, v)| i == win || v.abs() < 0.1));
    }
    // An exact tie across the two ciphertexts: both marked; the client takes the lowest id.
    let mut l = base.clone();
    l[300] = 6.0;
    l[4400] = 6.0;
    let got = run(&l);
    assert_eq!(marked(&got), vec![300, 4400]);
    assert_eq!(marked(&got)[0], argmax(&l) as usize);
}

/// The client/server files on a GPT-2 directory (insecure N = 2^12 preset, window 8): keygen,
/// encrypt of the prompt, a prefill stopped after one layer and resumed from its checkpoint,
/// decrypt against the plaintext model, one decode step with the cache file; refused: a
/// checkpoint of another input, a decode step at the wrong position, a cache of another key
/// set, a prompt longer than the window.
#[test]
fn file_commands_prefill_resume_decode_and_refusals() {
    use umbra::cli::gpt2_files::{decrypt, encrypt, infer, keygen, InferOptions, StepInput};
    let (dir, m, t, _) = tiny();
    let preset = "N12_QP1654_L9_S50_boot_insecure";
    let work = tmp_dir("gpt2files", "run");
    let keys = work.join("keys");
    let kr = keygen(dir, 8, preset, &keys).unwrap();
    assert_eq!(kr.tokens, 8);
    let prompt = "Hello world, this is";
    let ids = t.encode(prompt).unwrap().ids;
    let n = ids.len();
    let (pct, cache, out) = (
        work.join("prompt.ct"),
        work.join("kv.cache"),
        work.join("logits.ct"),
    );
    let er = encrypt(dir, &keys, StepInput::Prompt(prompt), None, &pct).unwrap();
    assert_eq!(
        (er.ids.clone(), er.length, er.position),
        (ids.clone(), n, None)
    );
    let ek = keys.join("eval.keys");
    let mut opt = InferOptions {
        backend: Some("cpu"),
        quiet: true,
        stop_after_layers: Some(1),
        ..Default::default()
    };
    // A step stopped after one layer leaves its checkpoint and no output.
    let r1 = infer(dir, &ek, &pct, &cache, &out, &opt).unwrap();
    assert_eq!((r1.layers_done, r1.out.as_deref()), (1, None));
    let ckpt = umbra::cli::gpt2_files::checkpoint_path(&cache);
    assert!(ckpt.is_file() && !out.exists() && !cache.exists());
    // The checkpoint is this input's: another prompt is refused while it is there.
    let other = work.join("other.ct");
    encrypt(
        dir,
        &keys,
        StepInput::Prompt("The quick brown fox"),
        None,
        &other,
    )
    .unwrap();
    opt.stop_after_layers = None;
    let e = infer(dir, &ek, &other, &cache, &out, &opt).unwrap_err();
    assert!(e.contains("checkpoint of another input"), "{e}");
    // Running the same step again resumes after layer 1.
    let r2 = infer(dir, &ek, &pct, &cache, &out, &opt).unwrap();
    assert_eq!((r2.resumed_after_layers, r2.layers_done), (1, 2));
    assert!(r2.bootstraps > r1.bootstraps && !ckpt.exists() && cache.is_file());
    let mut prefix = ids.clone();
    let d = decrypt(dir, &keys, &out, Some(&prefix)).unwrap();
    assert_eq!((d.position, d.next_position), (n - 1, n));
    assert_eq!(d.top1_match, Some(true), "{d:?}");
    let err = d.max_logit_err.unwrap();
    assert!(err < 2f64.powi(-8), "prefill: logit error {err} of the std");
    // One decode step with the cache file.
    let sct = work.join("step.ct");
    encrypt(
        dir,
        &keys,
        StepInput::Token {
            id: d.token,
            position: n,
        },
        None,
        &sct,
    )
    .unwrap();
    let r3 = infer(dir, &ek, &sct, &cache, &out, &opt).unwrap();
    assert_eq!((r3.step, r3.position), ("decode", n));
    prefix.push(d.token);
    let d2 = decrypt(dir, &keys, &out, Some(&prefix)).unwrap();
    let plain = m
        .forward(&prefix, &mut m.new_cache())
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(d2.token, argmax(&plain));
    assert_eq!(d2.top1_match, Some(true));
    let err = d2.max_logit_err.unwrap();
    assert!(err < 2f64.powi(-8), "decode: logit error {err} of the std");
    // The same step again: the cache now holds n + 1 positions.
    let e = infer(dir, &ek, &sct, &cache, &out, &opt).unwrap_err();
    assert!(
        e.contains("wrong position") && e.contains("already ran"),
        "{e}"
    );
    // A prefill never overwrites a conversation's cache; a stop outside the step is refused.
    let e = infer(dir, &ek, &pct, &cache, &out, &opt).unwrap_err();
    assert!(e.contains("already holds"), "{e}");
    let bad_stop = InferOptions {
        stop_after_layers: Some(2),
        ..opt.clone()
    };
    let e = infer(dir, &ek, &pct, &work.join("fresh.cache"), &out, &bad_stop).unwrap_err();
    assert!(e.contains("--stop-after-layers 2"), "{e}");
    // The window's size is the keys'.
    let unused = work.join("unused.ct");
    let e = encrypt(dir, &keys, StepInput::Prompt(prompt), Some(16), &unused).unwrap_err();
    assert!(e.contains("--tokens 16"), "{e}");
    // A model with the same config.json but other weights (another seed) is another model.
    let tok = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gpt2-tokenizer");
    let twin_dir = work.join("seed2");
    generate_gpt2(&Gpt2Arch::gpt2_tiny(), &twin_dir, &tok, 2).unwrap();
    let e = decrypt(&twin_dir, &keys, &out, None).unwrap_err();
    assert!(e.contains("another model"), "{e}");
    // A prefix of the wrong length is refused by decrypt.
    let e = decrypt(dir, &keys, &out, Some(&ids)).unwrap_err();
    assert!(e.contains("--prefix-ids"), "{e}");
    // Another key set's step on this cache is refused.
    let keys2 = work.join("keys2");
    keygen(dir, 8, preset, &keys2).unwrap();
    let s2 = work.join("step2.ct");
    let tok = StepInput::Token {
        id: d2.token,
        position: n + 1,
    };
    encrypt(dir, &keys2, tok, None, &s2).unwrap();
    let e = infer(dir, &keys2.join("eval.keys"), &s2, &cache, &out, &opt).unwrap_err();
    assert!(e.contains("key set"), "{e}");
    // A prompt longer than the window, a position outside it.
    let long = "one two three four five six seven eight nine ten";
    let e = encrypt(dir, &keys, StepInput::Prompt(long), None, &s2).unwrap_err();
    assert!(e.contains("window"), "{e}");
    let far = StepInput::Token { id: 1, position: 8 };
    let e = encrypt(dir, &keys, far, None, &s2).unwrap_err();
    assert!(e.contains("--position 8"), "{e}");
}
