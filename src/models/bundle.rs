//! The files between client and server (issue 13's `keygen`, `encrypt`, `infer`, `decrypt`): a
//! JSON header that says what the file is for (kind, model fingerprint, parameter preset, tokens,
//! real length) and the D9-framed objects it carries (each with its own parameter hash and
//! checksum), the whole under one SHA-256.
//!
//! ```text
//! "UMBRBNDL" | version u16 | header length u32 | header JSON | count u32
//!            | (length u64 | object bytes) x count | SHA-256 of everything before [32]
//! ```
//!
//! Kinds: `secret-key` (the client's `secret.key`: one framed secret seed; written with file mode
//! 0600, the only place a secret key is ever written), `eval-keys` (the server's bundle:
//! relinearization, rotation and bootstrapping keys), `input` (the encrypted embeddings),
//! `output` (the encrypted pooled vector, or a GPT-2 step's logits), `kv-cache` (GPT-2's
//! encrypted K and V of every layer, the server's between steps), `checkpoint` (a server step cut
//! short: its state after the last finished layer). Reading checks magic, version, every length, the
//! checksum, the kind, and (`Header::expect`) the model, preset and tokens of the other files.

use super::calibration::Fingerprint;
use super::ModelError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

const MAGIC: &[u8; 8] = b"UMBRBNDL";
/// The version this build reads and writes.
pub const VERSION: u16 = 1;

/// What a bundle holds and for which model and parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// `secret-key`, `eval-keys`, `input` or `output`.
    pub kind: String,
    /// The model it was made for.
    pub model: Fingerprint,
    /// The bootstrapping parameter preset.
    pub preset: String,
    /// Tokens per input (T, padded).
    pub tokens: usize,
    /// Real tokens of the input (input and output files); public to the server (D14).
    pub length: Option<usize>,
    /// Which key set (random, drawn by `keygen`): every file of one session carries it, so
    /// evaluation keys, inputs and outputs of another key set are refused, not decrypted into
    /// garbage.
    pub key_id: String,
    /// GPT-2 (issue 14): the position of the one token a decode step's input or output is for
    /// (public to the server, as the position of a token is); absent for a prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// GPT-2 step outputs: `logits` (the vocabulary's logits) or `argmax` (the encrypted argmax's
    /// one-hot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A server checkpoint's progress through the layers of one step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// How far a server step got (a `checkpoint` file: `umbra infer` resumes from it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Layers finished.
    pub layers_done: usize,
    /// Bootstraps and server wall time (ms) spent on them, over every run that contributed.
    pub bootstraps: usize,
    pub ms: f64,
    /// Lower-case hex SHA-256 of the input file the step runs on (a checkpoint of another input
    /// is refused).
    pub input_sha256: String,
}

/// What a kind of file is, for messages.
fn describe(kind: &str) -> String {
    match kind {
        "secret-key" => "the client's secret key (`umbra keygen`)".into(),
        "eval-keys" => "the server's evaluation keys (`umbra keygen`)".into(),
        "input" => "an encrypted input (`umbra encrypt`'s output)".into(),
        "output" => "an encrypted result (`umbra infer`'s output)".into(),
        "kv-cache" => "a GPT-2 KV cache (`umbra infer --cache`)".into(),
        "checkpoint" => "a server checkpoint (`umbra infer`, resumed by running it again)".into(),
        other => format!("a {other:?} file"),
    }
}

/// The first 12 characters of a header string (for messages; never splits a character).
fn short(s: &str) -> String {
    s.chars().take(12).collect()
}

impl Header {
    /// Errors (naming `path`) when `self` is not of `kind` or was made for another model, preset
    /// or token count than `other` (a header of the same session).
    pub fn expect(&self, kind: &str, other: &Header, path: &Path) -> Result<(), ModelError> {
        let err = |reason: String| ModelError::Input(format!("{}: {reason}", path.display()));
        if self.kind != kind {
            return Err(err(format!(
                "holds {}, expected {}",
                describe(&self.kind),
                describe(kind)
            )));
        }
        if !self.model.same_model(&other.model) {
            let id = |m: &Fingerprint| {
                format!(
                    "config sha256 {}..., weights sha256 {}..., {} layers, hidden {}",
                    short(&m.config_sha256),
                    short(&m.weights_sha256),
                    m.layers,
                    m.hidden
                )
            };
            return Err(err(format!(
                "was made for another model ({}), not this one ({}): pass the --model it was \
                 made for",
                id(&self.model),
                id(&other.model)
            )));
        }
        if self.preset != other.preset || self.tokens != other.tokens {
            return Err(err(format!(
                "was made for {} at {} tokens, the other files for {} at {} tokens",
                self.preset, self.tokens, other.preset, other.tokens
            )));
        }
        if self.key_id != other.key_id {
            return Err(err(format!(
                "belongs to key set {}, the other files to key set {} (another keygen)",
                short(&self.key_id),
                short(&other.key_id)
            )));
        }
        Ok(())
    }
}

/// A header and its objects (a secret key's bytes among them: `Debug` shows sizes only).
#[derive(Clone)]
pub struct Bundle {
    pub header: Header,
    pub objects: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: Vec<usize> = self.objects.iter().map(|o| o.len()).collect();
        f.debug_struct("Bundle")
            .field("header", &self.header)
            .field("object_bytes", &sizes)
            .finish()
    }
}

fn malformed(path: &Path, reason: impl std::fmt::Display) -> ModelError {
    ModelError::Input(format!(
        "{}: not a valid Umbra file: {reason}",
        path.display()
    ))
}

impl Bundle {
    /// The bytes of the file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).expect("a header serializes");
        let mut out = Vec::with_capacity(
            64 + header.len() + self.objects.iter().map(|o| o.len() + 8).sum::<usize>(),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&(self.objects.len() as u32).to_le_bytes());
        for o in &self.objects {
            out.extend_from_slice(&(o.len() as u64).to_le_bytes());
            out.extend_from_slice(o);
        }
        let sum: [u8; 32] = Sha256::digest(&out).into();
        out.extend_from_slice(&sum);
        out
    }

    /// Parses `bytes` (read from `path`, for messages): every length, the checksum and the
    /// header's JSON checked.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, ModelError> {
        if bytes.len() < MAGIC.len() + 2 + 4 + 4 + 32 {
            return Err(malformed(
                path,
                format!("truncated ({} bytes)", bytes.len()),
            ));
        }
        if &bytes[..8] != MAGIC {
            return Err(malformed(path, "bad magic"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        let want: [u8; 32] = Sha256::digest(body).into();
        // The checksum first: a corrupt length field is corruption, not truncation.
        if sum != want {
            return Err(malformed(
                path,
                "checksum mismatch: the file is corrupt or truncated",
            ));
        }
        let mut at = 8;
        let take = |at: &mut usize, n: usize, what: &str| -> Result<&[u8], ModelError> {
            let end = at
                .checked_add(n)
                .filter(|&e| e <= body.len())
                .ok_or_else(|| malformed(path, format!("truncated in {what}")))?;
            let s = &body[*at..end];
            *at = end;
            Ok(s)
        };
        let version = u16::from_le_bytes(take(&mut at, 2, "the version")?.try_into().unwrap());
        if version != VERSION {
            return Err(malformed(
                path,
                format!("version {version} (this build reads {VERSION})"),
            ));
        }
        let hl = u32::from_le_bytes(take(&mut at, 4, "the header length")?.try_into().unwrap());
        let header_bytes = take(&mut at, hl as usize, "the header")?;
        let count = u32::from_le_bytes(take(&mut at, 4, "the object count")?.try_into().unwrap());
        let mut objects = Vec::new();
        for i in 0..count {
            let what = format!("object {i}");
            let n = u64::from_le_bytes(take(&mut at, 8, &what)?.try_into().unwrap());
            let n = usize::try_from(n).map_err(|_| malformed(path, "an object too large"))?;
            objects.push(take(&mut at, n, &what)?.to_vec());
        }
        if at != body.len() {
            return Err(malformed(
                path,
                format!("{} trailing bytes", body.len() - at),
            ));
        }
        let header: Header = serde_json::from_slice(header_bytes)
            .map_err(|e| malformed(path, format!("header: {e}")))?;
        Ok(Bundle { header, objects })
    }

    /// Reads and parses `path` (the file's bytes are zeroized once parsed: it may be a secret
    /// key; the caller zeroizes the objects it gets). A directory is an error saying which file
    /// to pass.
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        if path.is_dir() {
            return Err(ModelError::Input(format!(
                "{} is a directory: pass a file (`umbra keygen`'s key directory holds secret.key \
                 and eval.keys; the other files are what encrypt, infer and decrypt wrote)",
                path.display()
            )));
        }
        let bytes =
            zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| ModelError::io(path, e))?);
        Self::from_bytes(&bytes, path)
    }

    /// Errors unless a `kind` bundle may be written at `path`: nothing there, or a bundle of the
    /// same kind. Never over a key of another kind, nor over a file that is not Umbra's (call it
    /// before long work whose result goes there).
    pub fn check_target(path: &Path, kind: &str) -> Result<(), ModelError> {
        if !path.exists() {
            return Ok(());
        }
        let old = std::fs::read(path)
            .ok()
            .and_then(|b| Self::from_bytes(&b, path).ok());
        match old {
            Some(old) if old.header.kind == kind => Ok(()),
            Some(old) => Err(ModelError::Input(format!(
                "{} holds {}: not overwriting it with {}",
                path.display(),
                describe(&old.header.kind),
                describe(kind)
            ))),
            None => Err(ModelError::Input(format!(
                "{} exists and is not an Umbra file: not overwriting it",
                path.display()
            ))),
        }
    }

    /// Writes `path` (mode 0600 when `secret`: the file is created with it, never wider).
    pub fn write(&self, path: &Path, secret: bool) -> Result<(), ModelError> {
        use std::io::Write;
        if !secret {
            Self::check_target(path, &self.header.kind)?;
        }
        let mut o = std::fs::OpenOptions::new();
        o.write(true);
        if secret {
            // Never over an existing secret key (it may be the only copy of one).
            o.create_new(true);
        } else {
            o.create(true).truncate(true);
        }
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let mut f = o.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                ModelError::Input(format!(
                    "{} exists: a secret key is never overwritten (remove it, or use another \
                     directory)",
                    path.display()
                ))
            } else {
                ModelError::io(path, e)
            }
        })?;
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| ModelError::io(path, e))?;
        }
        let mut bytes = self.to_bytes();
        let r = f.write_all(&bytes).and_then(|_| f.sync_all());
        if secret {
            use zeroize::Zeroize;
            bytes.zeroize();
        }
        r.map_err(|e| ModelError::io(path, e))
    }
}
