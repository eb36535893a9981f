//! `umbra gen-model`: a BERT-base directory with the real config, tensor names, shapes and
//! parameter count, weights at the intended scale, BERT's tokenizer, that the models layer loads and
//! runs like any HF directory; bad requests are errors.

#[path = "common/minilm.rs"]
mod minilm;

use minilm::{minilm, model_dir, tmp_dir};
use umbra::models::generate::{generate_bert, BertArch};
use umbra::models::{BertConfig, Embedder, Weights};

/// bert-base-uncased's `BertModel` (with its pooler) has 109 482 240 parameters
/// (`sum(p.numel() for p in BertModel.from_pretrained("bert-base-uncased").parameters())`).
const BERT_BASE_PARAMETERS: usize = 109_482_240;

#[test]
fn bert_base_directory_loads_and_runs() {
    let _ = minilm(); // the tokenizer source must be there (fails with the fetch command if not)
    let arch = BertArch::bert_base();
    assert_eq!(arch.parameters(), BERT_BASE_PARAMETERS);
    let out = tmp_dir("gen", "bert_base");
    std::fs::remove_dir(&out).unwrap();
    generate_bert(&arch, &out, &model_dir(), 7).unwrap();

    let c = BertConfig::from_file(&out.join("config.json")).unwrap();
    assert_eq!(
        (
            c.hidden,
            c.heads,
            c.layers,
            c.intermediate,
            c.vocab,
            c.max_positions
        ),
        (768, 12, 12, 3072, 30522, 512)
    );
    let w = Weights::open(&out.join("model.safetensors")).unwrap();
    assert_eq!(w.names().len(), 5 + 12 * 16 + 2);
    // Q weights [out, in] at 1.2 / sqrt(768), LayerNorm gains around 1.
    let q = w
        .tensor("encoder.layer.11.attention.self.query.weight", &[768, 768])
        .unwrap();
    let std = (q.iter().map(|x| x * x).sum::<f64>() / q.len() as f64).sqrt();
    let want = 1.2 / 768f64.sqrt();
    assert!((std / want - 1.0).abs() < 0.02, "std {std}, want {want}");
    let g = w
        .vector("encoder.layer.0.output.LayerNorm.weight", 768)
        .unwrap();
    assert!((g.iter().sum::<f64>() / 768.0 - 1.0).abs() < 0.02);

    // It loads and runs like a real directory, with BERT's tokenizer.
    let m = Embedder::load(&out).unwrap();
    let text = "Generated weights keep the real shapes.";
    let e = m.embed(text, Some(16)).unwrap();
    assert_eq!(e.encoding.ids, minilm().encode(text, Some(16)).unwrap().ids);
    assert_eq!(e.embedding.len(), 768);
    let rms = (e.embedding.iter().map(|x| x * x).sum::<f64>() / 768.0).sqrt();
    assert!(rms.is_finite() && rms > 0.1 && rms < 10.0, "rms {rms}");

    // Deterministic in the seed.
    let again = tmp_dir("gen", "bert_base_again");
    std::fs::remove_dir(&again).unwrap();
    generate_bert(&arch, &again, &model_dir(), 7).unwrap();
    let q2 = Weights::open(&again.join("model.safetensors"))
        .unwrap()
        .tensor("encoder.layer.11.attention.self.query.weight", &[768, 768])
        .unwrap();
    assert_eq!(q, q2);
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&again);
}

#[test]
fn bad_requests_are_errors() {
    let arch = BertArch::bert_base();
    let msg = |r: Result<(), umbra::models::ModelError>| r.unwrap_err().to_string();
    assert!(BertArch::by_name("gpt9")
        .unwrap_err()
        .to_string()
        .contains("bert-base"));
    // A non-empty output directory is never overwritten.
    let full = tmp_dir("gen", "full");
    std::fs::write(full.join("keep.txt"), "mine").unwrap();
    assert!(msg(generate_bert(&arch, &full, &model_dir(), 1)).contains("not empty"));
    assert_eq!(
        std::fs::read_to_string(full.join("keep.txt")).unwrap(),
        "mine"
    );
    // No tokenizer to copy, and a vocabulary of another size.
    let empty = tmp_dir("gen", "no_tokenizer");
    let out = tmp_dir("gen", "out");
    std::fs::remove_dir(&out).unwrap();
    assert!(msg(generate_bert(&arch, &out, &empty, 1)).contains("no tokenizer.json or vocab.txt"));
    std::fs::write(empty.join("vocab.txt"), "[PAD]\n[UNK]\n").unwrap();
    assert!(msg(generate_bert(&arch, &out, &empty, 1)).contains("has 2 entries"));
    assert!(!out.join("model.safetensors").exists());
}
