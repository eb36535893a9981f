//! `model.safetensors` read through the `safetensors` crate over a memory map (memmap2): tensors
//! by their Hugging Face names, converted to f64 on access (F32, and F16 / BF16 through `half`).
//!
//! Names are looked up as written and also with or without the model prefix that head
//! checkpoints add (`bert.` for `BertFor*`, `transformer.` for `GPT2LMHeadModel`: so
//! `encoder.layer.0...` finds `bert.encoder.layer.0...` and `h.0.attn...` finds
//! `transformer.h.0.attn...`), and a
//! [`Weights`] carries a prefix like candle's `VarBuilder`: `w.pp("encoder").pp("layer.0")`
//! looks up `encoder.layer.0.<name>`.

use super::ModelError;
use crate::nn::matmul::Linear;
use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata, SafeTensors, TensorInfo};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The prefixes head checkpoints put before the base model's names (`BertFor*`: `bert.`,
/// `GPT2LMHeadModel`: `transformer.`).
const MODEL_PREFIXES: [&str; 2] = ["bert.", "transformer."];

struct File_ {
    path: PathBuf,
    map: Mmap,
    /// Byte offset of the data section (8 + header length).
    data_start: usize,
    meta: Metadata,
}

/// A safetensors file and a name prefix. Cloning and [`Weights::pp`] share the mapped file.
#[derive(Clone)]
pub struct Weights {
    file: Arc<File_>,
    prefix: String,
}

impl Weights {
    /// Memory-maps and validates `path` (header, offsets and file length; no tensor is read).
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let f = File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the map is read-only; a file truncated or rewritten by another process while
        // mapped is outside what this loader defends against (as in candle and safetensors).
        let map = unsafe { Mmap::map(&f) }.map_err(|e| ModelError::io(path, e))?;
        let (header, meta) =
            SafeTensors::read_metadata(&map).map_err(|e| ModelError::Safetensors {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(Weights {
            file: Arc::new(File_ {
                path: path.to_path_buf(),
                map,
                data_start: 8 + header,
                meta,
            }),
            prefix: String::new(),
        })
    }

    /// The same file with `.name` appended to the prefix (candle's `VarBuilder::pp`).
    pub fn pp(&self, name: impl AsRef<str>) -> Weights {
        Weights {
            file: self.file.clone(),
            prefix: self.full(name.as_ref()),
        }
    }

    /// The current prefix (`""` at the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Every tensor name in the file, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.file.meta.tensors().into_keys().collect();
        n.sort();
        n
    }

    /// Whether `name` (under the prefix, with or without a model prefix) is in the file.
    pub fn contains(&self, name: &str) -> bool {
        self.find(&self.full(name)).is_some()
    }

    /// The shape of tensor `name` (under the prefix, with or without a model prefix), if present.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.find(&self.full(name)).map(|(_, i)| i.shape.clone())
    }

    /// The tensor `name` (under the prefix) as f64 in row-major order, checked against `shape`.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f64>, ModelError> {
        let full = self.full(name);
        let (found, info) = self.find(&full).ok_or_else(|| ModelError::MissingTensor {
            path: self.file.path.clone(),
            name: full.clone(),
            tried: {
                let others: Vec<String> = candidates(&full)
                    .into_iter()
                    .skip(1)
                    .map(|c| format!("`{c}`"))
                    .collect();
                if others.is_empty() {
                    String::new()
                } else {
                    format!(" (also tried {})", others.join(", "))
                }
            },
        })?;
        if info.shape != shape {
            return Err(ModelError::Shape {
                path: self.file.path.clone(),
                name: found,
                got: info.shape.clone(),
                expected: shape.to_vec(),
            });
        }
        let (a, b) = info.data_offsets;
        let bytes = &self.file.map[self.file.data_start + a..self.file.data_start + b];
        let values = match info.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64())
                .collect(),
            other => {
                return Err(ModelError::Dtype {
                    path: self.file.path.clone(),
                    name: found,
                    dtype: format!("{other:?}"),
                })
            }
        };
        Ok(values)
    }

    /// A vector of `len` values (a bias, a LayerNorm weight).
    pub fn vector(&self, name: &str, len: usize) -> Result<Vec<f64>, ModelError> {
        self.tensor(name, &[len])
    }

    /// A `rows x cols` matrix as rows.
    pub fn matrix(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Vec<Vec<f64>>, ModelError> {
        let flat = self.tensor(name, &[rows, cols])?;
        Ok(flat.chunks_exact(cols).map(<[f64]>::to_vec).collect())
    }

    /// A PyTorch `nn.Linear(d_in, d_out)` under the prefix: `weight` [d_out, d_in] and `bias`
    /// [d_out], transposed into `nn::matmul::Linear`'s [d_in][d_out].
    pub fn linear(&self, d_in: usize, d_out: usize) -> Result<Linear, ModelError> {
        let w = self.tensor("weight", &[d_out, d_in])?;
        let bias = self.vector("bias", d_out)?;
        let weight = (0..d_in)
            .map(|i| (0..d_out).map(|o| w[o * d_in + i]).collect())
            .collect();
        Linear::new(weight, bias).map_err(|e| {
            ModelError::Input(format!(
                "{}: {}: {e}",
                self.file.path.display(),
                self.prefix
            ))
        })
    }

    /// A GPT-2 `Conv1D(d_out, d_in)` under the prefix (transformers/pytorch_utils.py): `weight`
    /// stored [d_in, d_out] (already `Linear`'s orientation) and `bias` [d_out].
    pub fn conv1d(&self, d_in: usize, d_out: usize) -> Result<Linear, ModelError> {
        let weight = self.matrix("weight", d_in, d_out)?;
        let bias = self.vector("bias", d_out)?;
        Linear::new(weight, bias).map_err(|e| {
            ModelError::Input(format!(
                "{}: {}: {e}",
                self.file.path.display(),
                self.prefix
            ))
        })
    }

    fn full(&self, name: &str) -> String {
        match (self.prefix.is_empty(), name.is_empty()) {
            (true, _) => name.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}.{name}", self.prefix),
        }
    }

    fn find(&self, full: &str) -> Option<(String, &TensorInfo)> {
        candidates(full)
            .into_iter()
            .find_map(|c| self.file.meta.info(&c).map(|i| (c, i)))
    }
}

/// `name` first, then with its model prefix removed, or with each model prefix added.
fn candidates(name: &str) -> Vec<String> {
    let mut c = vec![name.to_string()];
    match MODEL_PREFIXES.iter().find_map(|p| name.strip_prefix(p)) {
        Some(rest) => c.push(rest.to_string()),
        None => c.extend(MODEL_PREFIXES.iter().map(|p| format!("{p}{name}"))),
    }
    c
}
