//! Reading named f32 tensors from safetensors or PyTorch `.pt` files into burn modules.
//!
//! PyTorch and burn store some parameters differently (a `Linear` weight is
//! `[out, in]` in PyTorch, `[in, out]` in burn); the helpers here take the
//! PyTorch layout and name, check the shape, and build the burn parameter.

use burn::module::{Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, LayerNorm, Linear};
use burn::prelude::*;
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why weights cannot be loaded, naming the file and the tensor.
#[derive(Debug, thiserror::Error)]
#[error("weights {}: {name}: {problem}", path.display())]
pub struct WeightsError {
    pub path: PathBuf,
    pub name: String,
    pub problem: String,
}

/// The largest weight file read (AstroMAE's checkpoint has 63 MB): a file is
/// read whole, so this bounds what opening one costs.
pub const MAX_WEIGHTS_BYTES: u64 = 4 << 30;

/// What a `.pt` file's tensors may come to, as f32, per byte of the file: 2 for
/// a half-precision checkpoint, a little more for the tensors two names share.
const READ_PER_FILE_BYTE: usize = 4;

/// A tensor whose name ends so is AstroMAE's first: a checkpoint that holds it
/// under a prefix (`{'model': state_dict, 'optimizer': ...}`, `{'state_dict':
/// ...}`) holds the model there.
const MODEL_ROOTS: [&str; 1] = ["patch_embed.proj.weight"];

/// Whether `bytes` are a `torch.save` from before PyTorch 1.6: a pickle (PROTO
/// opcode) whose first object is torch's magic number, 0x1950a86a20f9469cfc6c,
/// as a 10-byte LONG1. No safetensors file starts so: its first 8 bytes are a
/// header length, and these would make it exabytes long.
fn is_legacy_pt(bytes: &[u8]) -> bool {
    const MAGIC: [u8; 12] = [
        0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
    ];
    bytes.first() == Some(&0x80) && bytes.get(2..14) == Some(&MAGIC[..])
}

/// All f32 tensors of one safetensors file, by name.
pub struct Weights {
    path: PathBuf,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    root: Option<String>,
}

impl Weights {
    /// A safetensors file, or a PyTorch `.pt` (a zip: a state_dict or a pickled module).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, WeightsError> {
        let path = path.as_ref();
        let fail = |problem: String| WeightsError {
            path: path.into(),
            name: "file".into(),
            problem,
        };
        let size = std::fs::metadata(path)
            .map_err(|e| fail(format!("cannot read: {e}")))?
            .len();
        if size > MAX_WEIGHTS_BYTES {
            return Err(fail(format!(
                "{} MiB, more than the {} MiB a weight file may have",
                size >> 20,
                MAX_WEIGHTS_BYTES >> 20
            )));
        }
        // Read through a limit too: the file may grow after the check.
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| {
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(f, MAX_WEIGHTS_BYTES + 1),
                    &mut bytes,
                )
            })
            .map_err(|e| fail(format!("cannot read: {e}")))?;
        if bytes.len() as u64 > MAX_WEIGHTS_BYTES {
            return Err(fail(format!(
                "more than the {} MiB a weight file may have",
                MAX_WEIGHTS_BYTES >> 20
            )));
        }
        Self::from_file_bytes(path, bytes)
    }

    /// The bytes of a weight file of either kind: a `.pt` zip or safetensors.
    pub fn from_file_bytes(path: impl AsRef<Path>, bytes: Vec<u8>) -> Result<Self, WeightsError> {
        Self::from_file_slice(path, &bytes)
    }

    /// [`Self::from_file_bytes`] of bytes the caller keeps (to send on, say).
    pub fn from_file_slice(path: impl AsRef<Path>, bytes: &[u8]) -> Result<Self, WeightsError> {
        if bytes.starts_with(b"PK\x03\x04") {
            return Self::from_pt_bytes(path, bytes);
        }
        if is_legacy_pt(bytes) {
            return Err(WeightsError {
                path: path.as_ref().into(),
                name: "file".into(),
                problem: "a PyTorch file saved before PyTorch 1.6 (a bare pickle, not a zip): \
                          re-save it with torch 1.6 or newer, `torch.save(torch.load(F), F2)`"
                    .into(),
            });
        }
        Self::from_bytes(path, bytes)
    }

    /// The float tensors of a PyTorch `.pt` file (state_dict or pickled module), as f32.
    pub fn from_pt_bytes(path: impl AsRef<Path>, bytes: &[u8]) -> Result<Self, WeightsError> {
        let path = path.as_ref().to_path_buf();
        let bytes_len = bytes.len();
        let fail = |e: crate::pytorch::PtError| WeightsError {
            path: path.clone(),
            name: "file".into(),
            problem: e.problem,
        };
        let mut file =
            crate::pytorch::PtFile::new(&path, std::io::Cursor::new(bytes)).map_err(fail)?;
        let mut tensors = HashMap::new();
        // Names may share a storage (a module registered twice), and each is
        // read on its own: what they read in all is bounded by the file's size.
        let most = bytes_len
            .saturating_mul(READ_PER_FILE_BYTE)
            .saturating_add(1 << 20);
        let mut read = 0usize;
        for (name, tensor) in file.named_tensors().map_err(fail)? {
            // Integer bookkeeping such as BatchNorm's num_batches_tracked is not a weight.
            if !tensor.dtype.is_float() {
                continue;
            }
            let t = file.read(&tensor).map_err(fail)?;
            read = read.saturating_add(t.values.len().saturating_mul(4));
            if read > most {
                return Err(WeightsError {
                    path: path.clone(),
                    name,
                    problem: format!(
                        "its tensors come to over {READ_PER_FILE_BYTE}x the file's {bytes_len} bytes: names sharing storages over and over, which no checkpoint does"
                    ),
                });
            }
            tensors.insert(name, (t.shape, t.values));
        }
        Ok(Weights::new(path, tensors))
    }

    /// Named tensors; DataParallel's `module.` prefix, when every name has it, is
    /// dropped. A checkpoint that holds the model under a prefix (a dict of
    /// `model` and `optimizer`, say) keeps only the model's tensors, named as
    /// in its state_dict, when one prefix alone holds them ([`Self::root`]).
    pub fn new(path: PathBuf, mut tensors: HashMap<String, (Vec<usize>, Vec<f32>)>) -> Self {
        let mut root = None;
        if !MODEL_ROOTS.iter().any(|r| tensors.contains_key(*r)) {
            let prefixes: std::collections::BTreeSet<&str> = tensors
                .keys()
                .filter_map(|k| {
                    MODEL_ROOTS
                        .iter()
                        .find_map(|r| k.strip_suffix(r).filter(|p| p.ends_with('.')))
                })
                .collect();
            if let [prefix] = prefixes.into_iter().collect::<Vec<_>>()[..] {
                let prefix = prefix.to_string();
                tensors = tensors
                    .into_iter()
                    .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|n| (n.to_string(), v)))
                    .collect();
                root = Some(prefix);
            }
        }
        if !tensors.is_empty() && tensors.keys().all(|k| k.starts_with("module.")) {
            tensors = tensors
                .into_iter()
                .map(|(k, v)| (k["module.".len()..].to_string(), v))
                .collect();
        }
        Weights {
            path,
            tensors,
            root,
        }
    }

    /// The prefix the model was found under in the file (`model.`), if any.
    pub fn root(&self) -> Option<&str> {
        self.root.as_deref()
    }

    /// Every tensor, sorted by name: `(name, shape, values)`.
    pub fn sorted(&self) -> Vec<(&str, &[usize], &[f32])> {
        let mut all: Vec<_> = self
            .tensors
            .iter()
            .map(|(k, (s, v))| (k.as_str(), s.as_slice(), v.as_slice()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all
    }

    /// All tensors as one safetensors file (f32, names sorted, canonical header).
    pub fn to_safetensors(&self) -> Result<Vec<u8>, String> {
        let all = self.sorted();
        let bytes: Vec<Vec<u8>> = all
            .iter()
            .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let views = all
            .iter()
            .zip(&bytes)
            .map(|((name, shape, _), b)| {
                safetensors::tensor::TensorView::new(Dtype::F32, shape.to_vec(), b)
                    .map(|view| (name.to_string(), view))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let out = safetensors::serialize(views, None).map_err(|e| e.to_string())?;
        canonical_safetensors(out)
    }

    /// The values of tensor `name`, if present.
    pub fn values(&self, name: &str) -> Option<&[f32]> {
        self.tensors.get(name).map(|(_, v)| v.as_slice())
    }

    /// Parses safetensors `bytes`; `path` only names the source in errors.
    pub fn from_bytes(path: impl AsRef<Path>, bytes: &[u8]) -> Result<Self, WeightsError> {
        let path = path.as_ref().to_path_buf();
        let file = SafeTensors::deserialize(bytes).map_err(|e| WeightsError {
            path: path.clone(),
            name: "header".into(),
            problem: if bytes.is_empty() {
                "is empty (0 bytes): not a weights file".into()
            } else {
                format!("not a valid safetensors file ({e}), {} bytes", bytes.len())
            },
        })?;
        let mut tensors = HashMap::new();
        for (name, view) in file.iter() {
            // Float tensors of any width are read as f32, as a `.pt` file's are;
            // integer bookkeeping such as BatchNorm's num_batches_tracked is not a weight.
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Dtype::F16 => data
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => data
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::F64 => data
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
                    .collect(),
                _ => continue,
            };
            tensors.insert(name.to_string(), (view.shape().to_vec(), values));
        }
        Ok(Weights::new(path, tensors))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Names of all f32 tensors.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn error(&self, name: &str, problem: impl Into<String>) -> WeightsError {
        WeightsError {
            path: self.path.clone(),
            name: name.into(),
            problem: problem.into(),
        }
    }

    /// Tensor `name`, which must have exactly `shape`.
    pub fn tensor<B: Backend, const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &B::Device,
    ) -> Result<Tensor<B, D>, WeightsError> {
        let (found, values) = self.tensors.get(name).ok_or_else(|| self.missing(name))?;
        if found.as_slice() != shape {
            return Err(self.error(name, format!("shape {found:?}, expected {shape:?}")));
        }
        // A NaN or infinity in a weight gives predictions that look like any
        // others, or none: a broken checkpoint is refused by its tensor's name.
        let broken = values.iter().filter(|v| !v.is_finite()).count();
        if broken > 0 {
            return Err(self.error(
                name,
                format!(
                    "{broken} of its {} values are not finite numbers (NaN or infinite): a broken checkpoint",
                    values.len()
                ),
            ));
        }
        Ok(Tensor::from_data(
            TensorData::new(values.clone(), shape),
            device,
        ))
    }

    /// The first dimension of tensor `name` (for sizes a file decides, like depth).
    pub fn shape(&self, name: &str) -> Result<&[usize], WeightsError> {
        self.tensors
            .get(name)
            .map(|(s, _)| s.as_slice())
            .ok_or_else(|| self.missing(name))
    }

    /// "missing tensor", with the names that end like it where the file has
    /// some (a model kept under two prefixes: `model.` and `ema.`, say).
    fn missing(&self, name: &str) -> WeightsError {
        let suffix = format!(".{name}");
        let mut like: Vec<&str> = self.names().filter(|n| n.ends_with(&suffix)).collect();
        if like.is_empty() {
            return self.error(name, "missing tensor");
        }
        like.sort_unstable();
        like.truncate(3);
        self.error(
            name,
            format!(
                "missing tensor; the file has {}: give the model's own state_dict (torch.save(checkpoint['model'], F), say)",
                like.join(", ")
            ),
        )
    }

    /// Loads `prefix.weight` (PyTorch `[out, in]`) and `prefix.bias` into `linear`.
    pub fn linear<B: Backend>(
        &self,
        prefix: &str,
        linear: Linear<B>,
    ) -> Result<Linear<B>, WeightsError> {
        self.linear_named(
            &format!("{prefix}.weight"),
            &format!("{prefix}.bias"),
            linear,
        )
    }

    /// Loads a PyTorch-layout `[out, in]` weight and its bias, by full names.
    pub fn linear_named<B: Backend>(
        &self,
        weight: &str,
        bias: &str,
        mut linear: Linear<B>,
    ) -> Result<Linear<B>, WeightsError> {
        let [d_in, d_out] = linear.weight.shape().dims();
        let device = linear.weight.device();
        let w: Tensor<B, 2> = self.tensor(weight, [d_out, d_in], &device)?;
        linear.weight = Param::from_tensor(w.transpose());
        if linear.bias.is_some() {
            linear.bias = Some(Param::from_tensor(self.tensor(bias, [d_out], &device)?));
        }
        Ok(linear)
    }

    /// Loads `prefix.weight` `[out, in, kh, kw]` and `prefix.bias` into `conv`.
    pub fn conv2d<B: Backend>(
        &self,
        prefix: &str,
        mut conv: Conv2d<B>,
    ) -> Result<Conv2d<B>, WeightsError> {
        let shape = conv.weight.shape().dims::<4>();
        let device = conv.weight.device();
        conv.weight =
            Param::from_tensor(self.tensor(&format!("{prefix}.weight"), shape, &device)?);
        if conv.bias.is_some() {
            conv.bias = Some(Param::from_tensor(self.tensor(
                &format!("{prefix}.bias"),
                [shape[0]],
                &device,
            )?));
        }
        Ok(conv)
    }

    /// Loads PyTorch BatchNorm `weight`, `bias`, `running_mean`, `running_var`.
    pub fn batch_norm<B: Backend>(
        &self,
        prefix: &str,
        mut bn: BatchNorm<B>,
    ) -> Result<BatchNorm<B>, WeightsError> {
        let [c] = bn.gamma.shape().dims();
        let device = bn.gamma.device();
        bn.gamma = Param::from_tensor(self.tensor(&format!("{prefix}.weight"), [c], &device)?);
        bn.beta = Param::from_tensor(self.tensor(&format!("{prefix}.bias"), [c], &device)?);
        bn.running_mean =
            RunningState::new(self.tensor(&format!("{prefix}.running_mean"), [c], &device)?);
        bn.running_var =
            RunningState::new(self.tensor(&format!("{prefix}.running_var"), [c], &device)?);
        Ok(bn)
    }

    /// Loads PyTorch LayerNorm `weight` and `bias`.
    pub fn layer_norm<B: Backend>(
        &self,
        prefix: &str,
        mut ln: LayerNorm<B>,
    ) -> Result<LayerNorm<B>, WeightsError> {
        let [d] = ln.gamma.shape().dims();
        let device = ln.gamma.device();
        ln.gamma = Param::from_tensor(self.tensor(&format!("{prefix}.weight"), [d], &device)?);
        if ln.beta.is_some() {
            ln.beta = Some(Param::from_tensor(self.tensor(
                &format!("{prefix}.bias"),
                [d],
                &device,
            )?));
        }
        Ok(ln)
    }
}

/// The same safetensors bytes with the JSON header's keys in sorted order.
///
/// The safetensors writer keeps `__metadata__` in a `HashMap`, whose order changes
/// from run to run; sorting makes equal content give equal bytes (reproducible
/// training, stable content hashes). Tensor offsets are explicit, so only the
/// header (re-padded to 8 bytes with spaces, as the format asks) changes.
pub fn canonical_safetensors(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .ok_or("no header")?;
    let header = bytes.get(8..8 + n).ok_or("header past the end")?;
    let json = canonical_header(header)?;
    let mut out = Vec::with_capacity(8 + json.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

/// A safetensors header (the JSON after the length) with its keys, and the
/// metadata's, in sorted order, padded with spaces to a multiple of 8 bytes.
/// The same entries in another order give a header of the same length.
pub fn canonical_header(header: &[u8]) -> Result<Vec<u8>, String> {
    use std::collections::BTreeMap;
    let parsed: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| e.to_string())?;
    let mut sorted = serde_json::Map::new();
    for (key, value) in parsed {
        let value = match (key.as_str(), value) {
            ("__metadata__", serde_json::Value::Object(m)) => {
                let m: BTreeMap<String, serde_json::Value> = m.into_iter().collect();
                serde_json::to_value(m).map_err(|e| e.to_string())?
            }
            (_, v) => v,
        };
        sorted.insert(key, value);
    }
    let mut json = serde_json::to_vec(&sorted).map_err(|e| e.to_string())?;
    json.resize(json.len().next_multiple_of(8), b' ');
    Ok(json)
}
