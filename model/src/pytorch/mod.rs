//! Reading PyTorch `.pt` files (what `torch.save` writes) in Rust, no Python.
//!
//! A `.pt` file is a zip: `ARCHIVE/data.pkl` (a pickle describing the object)
//! and `ARCHIVE/data/KEY` (raw little-endian tensor storages). CAI's users hold
//! three kinds of them, and [`PtFile`] reads each:
//! - a `state_dict` (`OrderedDict` of name → tensor): [`PtFile::named_tensors`];
//! - a pickled module (`torch.save(nn.DataParallel(model))`, CAI's checkpoint):
//!   the same names, found by walking `_modules` / `_parameters` / `_buffers`;
//! - a `TensorDataset` (CAI's data partitions): [`PtFile::dataset_tensors`].
//!
//! None of the classes in the file is ever built (see [`pickle`]), and every size
//! is checked against the zip before anything is allocated from it.

pub mod pickle;

use pickle::{Dtype, Id, Node, Pickle, TensorRef, unpickle};
use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

/// Largest `data.pkl` read: a checkpoint's pickle is a few hundred KB (the
/// small AstroMAE fixture's module pickle, 71 KB), and each byte may cost the
/// reader tens of bytes of memory (see [`pickle`]).
const MAX_PICKLE_BYTES: u64 = 16 << 20;
/// Deepest module nesting followed (cycles in a hostile pickle stop here).
const MAX_DEPTH: usize = 64;

/// Why a `.pt` file cannot be read, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct PtError {
    pub path: PathBuf,
    pub problem: String,
}

/// A tensor's values, converted to f32, with its shape and stored type.
#[derive(Debug, Clone, PartialEq)]
pub struct PtTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// An open `.pt` file: its zip and its unpickled object graph.
pub struct PtFile<R> {
    path: PathBuf,
    zip: zip::ZipArchive<R>,
    /// The file's length: what no record in it can be longer than.
    len: u64,
    /// `ARCHIVE/` before `data.pkl` and `data/KEY`.
    prefix: String,
    pickle: Pickle,
}

impl PtFile<std::io::BufReader<std::fs::File>> {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, PtError> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| PtError {
            path: path.into(),
            problem: format!("cannot open: {e}"),
        })?;
        PtFile::new(path, std::io::BufReader::new(file))
    }
}

impl<R: Read + Seek> PtFile<R> {
    /// Reads the zip directory and the pickle of `reader`; `path` names it in errors.
    pub fn new(path: impl AsRef<Path>, mut reader: R) -> Result<Self, PtError> {
        let path = path.as_ref().to_path_buf();
        let fail = |problem: String| PtError {
            path: path.clone(),
            problem,
        };
        let len = reader
            .seek(std::io::SeekFrom::End(0))
            .and_then(|len| reader.rewind().map(|()| len))
            .map_err(|e| fail(format!("cannot read: {e}")))?;
        if len == 0 {
            return Err(fail("is empty (0 bytes): not a torch.save file".into()));
        }
        let mut zip = zip::ZipArchive::new(reader).map_err(|e| {
            fail(format!(
                "not a PyTorch zip file ({e}), {len} bytes: cut short (a copy not finished?), \
                 or from torch.save before PyTorch 1.6, which must be re-saved with a newer torch"
            ))
        })?;
        let pkl = (0..zip.len())
            .filter_map(|i| zip.name_for_index(i).map(str::to_string))
            .find(|name| name == "data.pkl" || name.ends_with("/data.pkl"))
            .ok_or_else(|| fail("no data.pkl in the zip: not a torch.save file".into()))?;
        let prefix = pkl.trim_end_matches("data.pkl").to_string();
        // torch.jit.save writes its module's code beside the pickle: a
        // TorchScript archive, whose pickle holds compiled classes, not a
        // state_dict or a module this reads.
        let script = (0..zip.len())
            .filter_map(|i| zip.name_for_index(i))
            .any(|name| {
                name.strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest == "constants.pkl" || rest.starts_with("code/"))
            });
        if script {
            return Err(fail(
                "a TorchScript archive (torch.jit.save), not a checkpoint: save the model's \
                 weights with torch.save(model.state_dict(), FILE) and give that file"
                    .into(),
            ));
        }
        let bytes = {
            let entry = zip.by_name(&pkl).map_err(|e| fail(format!("{pkl}: {e}")))?;
            if entry.size() > MAX_PICKLE_BYTES {
                return Err(fail(format!(
                    "{pkl} is {} bytes, more than the {MAX_PICKLE_BYTES} a checkpoint needs",
                    entry.size()
                )));
            }
            let mut bytes = Vec::new();
            entry
                .take(MAX_PICKLE_BYTES)
                .read_to_end(&mut bytes)
                .map_err(|e| fail(format!("{pkl}: {e}")))?;
            bytes
        };
        let pickle = unpickle(&bytes).map_err(|e| fail(format!("{pkl}: {e}")))?;
        Ok(PtFile {
            path,
            zip,
            len,
            prefix,
            pickle,
        })
    }

    fn fail(&self, problem: impl Into<String>) -> PtError {
        PtError {
            path: self.path.clone(),
            problem: problem.into(),
        }
    }

    /// Every tensor of a state_dict or a pickled module, by its `state_dict` name
    /// (a `DataParallel`'s `module.` prefix included, as PyTorch writes it).
    pub fn named_tensors(&self) -> Result<BTreeMap<String, TensorRef>, PtError> {
        let mut out = BTreeMap::new();
        // A module registered under two names is walked twice, as torch's
        // state_dict does; a file whose containers share each other level on
        // level would be walked 2^depth times, so the walk (containers visited
        // and names given) is bounded by the file's size.
        let mut visits = 4 * self.pickle.nodes.len() + 1024;
        self.collect(self.pickle.root, "", 0, &mut visits, &mut out)?;
        if out.is_empty() {
            return Err(
                self.fail("holds no tensors: neither a state_dict nor a pickled torch module")
            );
        }
        Ok(out)
    }

    fn collect(
        &self,
        id: Id,
        prefix: &str,
        depth: usize,
        visits: &mut usize,
        out: &mut BTreeMap<String, TensorRef>,
    ) -> Result<(), PtError> {
        if depth > MAX_DEPTH {
            return Err(self.fail(format!("modules nested deeper than {MAX_DEPTH}")));
        }
        self.spend(visits)?;
        let p = &self.pickle;
        let name = |key: Id| {
            p.str(key)
                .map(|k| format!("{prefix}{k}"))
                .or_else(|| match p.node(key) {
                    Node::Int(i) => Some(format!("{prefix}{i}")),
                    _ => None,
                })
        };
        match p.node(id) {
            Node::Tensor(t) => {
                out.insert(prefix.trim_end_matches('.').to_string(), (**t).clone());
            }
            Node::Dict(items) => {
                for &(k, v) in items {
                    if let Some(n) = name(k) {
                        self.collect(v, &format!("{n}."), depth + 1, visits, out)?;
                    }
                }
            }
            // A module: its state holds _parameters, _buffers and _modules.
            Node::Object {
                state: Some(state), ..
            } => {
                for field in ["_parameters", "_buffers"] {
                    if let Some(Node::Dict(items)) = p.get(*state, field).map(|d| p.node(d)) {
                        for &(k, v) in items {
                            if let (Some(n), Node::Tensor(t)) = (name(k), p.node(v)) {
                                self.spend(visits)?;
                                out.insert(n, (**t).clone());
                            }
                        }
                    }
                }
                if let Some(Node::Dict(items)) = p.get(*state, "_modules").map(|d| p.node(d)) {
                    for &(k, v) in items {
                        if let Some(n) = name(k) {
                            self.collect(v, &format!("{n}."), depth + 1, visits, out)?;
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// One step of [`Self::collect`]'s walk (a container visited, a name given).
    fn spend(&self, visits: &mut usize) -> Result<(), PtError> {
        *visits = visits.checked_sub(1).ok_or_else(|| {
            self.fail(
                "its modules and dicts refer to each other over and over: no file torch writes",
            )
        })?;
        Ok(())
    }

    /// The tensors of a pickled `TensorDataset` (`dataset.tensors`), in order.
    pub fn dataset_tensors(&self) -> Result<Vec<TensorRef>, PtError> {
        let p = &self.pickle;
        let Node::Object {
            class,
            state: Some(state),
            ..
        } = p.node(p.root)
        else {
            return Err(self.fail("is not a pickled TensorDataset (no object at its root)"));
        };
        let class = p
            .global(*class)
            .map(|(m, n)| format!("{m}.{n}"))
            .unwrap_or_else(|| "?".into());
        let tensors = p.get(*state, "tensors").map(|t| p.node(t));
        let Some(Node::Tuple(items) | Node::List(items)) = tensors else {
            return Err(self.fail(format!(
                "is a pickled {class} without a `tensors` tuple, not a TensorDataset"
            )));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, &t)| match p.node(t) {
                Node::Tensor(t) => Ok((**t).clone()),
                _ => Err(self.fail(format!("dataset tensor {i} is not a tensor"))),
            })
            .collect()
    }

    /// The values of `tensor` as f32, read from its storage record; every extent
    /// is checked against the record's real size before reading.
    pub fn read(&mut self, tensor: &TensorRef) -> Result<PtTensor, PtError> {
        let what = format!("tensor of storage {}", tensor.storage);
        let numel = tensor
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| self.fail(format!("{what}: shape {:?} overflows", tensor.shape)))?;
        // The last element's index + 1: what the view needs of the storage.
        let extent = if numel == 0 {
            0
        } else {
            tensor
                .shape
                .iter()
                .zip(&tensor.stride)
                .try_fold(tensor.offset, |end, (&d, &s)| {
                    (d - 1).checked_mul(s).and_then(|x| end.checked_add(x))
                })
                .and_then(|last| last.checked_add(1))
                .ok_or_else(|| self.fail(format!("{what}: strides overflow")))?
        };
        // A view that repeats elements (stride 0, overlaps) is no weight or data
        // tensor, and would let a tiny storage ask for a huge allocation.
        if numel > extent {
            return Err(self.fail(format!(
                "{what}: shape {:?} with strides {:?} repeats elements of its storage",
                tensor.shape, tensor.stride
            )));
        }
        let record = format!("{}data/{}", self.prefix, tensor.storage);
        let bytes = {
            let entry = self.zip.by_name(&record).map_err(|e| PtError {
                path: self.path.clone(),
                problem: format!("{record}: {e}"),
            })?;
            let needed = extent
                .checked_mul(tensor.dtype.size())
                .ok_or_else(|| PtError {
                    path: self.path.clone(),
                    problem: format!("{what}: size overflows"),
                })?;
            // The zip's directory says how long a record is, and a forged one can
            // say anything: torch.save stores records as they are, so a record's
            // size must be what it takes in the file, and lie inside the file,
            // before it sizes an allocation.
            let start = entry.data_start().unwrap_or(entry.header_start());
            if entry.compression() != zip::CompressionMethod::Stored
                || entry.compressed_size() != entry.size()
                || start
                    .checked_add(entry.size())
                    .is_none_or(|end| end > self.len)
            {
                return Err(PtError {
                    path: self.path.clone(),
                    problem: format!(
                        "{record}: the zip says {} bytes ({:?}, {} in the file, from byte \
                         {start}), which a {}-byte file made by torch.save cannot hold",
                        entry.size(),
                        entry.compression(),
                        entry.compressed_size(),
                        self.len
                    ),
                });
            }
            if (entry.size() as u128) < needed as u128 {
                return Err(PtError {
                    path: self.path.clone(),
                    problem: format!(
                        "{record} holds {} bytes, shorter than its tensor of shape {:?} ({} x {} needs {needed})",
                        entry.size(),
                        tensor.shape,
                        tensor.dtype,
                        extent
                    ),
                });
            }
            let read_fail = |e: std::io::Error| PtError {
                path: self.path.clone(),
                problem: format!("{record}: {e}"),
            };
            let mut entry = entry.take(needed as u64);
            if tensor.dtype == Dtype::F32 && is_contiguous(tensor) {
                // CAI's images: read straight into the values, one copy of the
                // storage in memory rather than its bytes and then its floats.
                std::io::copy(
                    &mut (&mut entry).take(tensor.offset as u64 * 4),
                    &mut std::io::sink(),
                )
                .map_err(read_fail)?;
                let mut values = vec![0f32; numel];
                entry
                    .read_exact(f32_bytes_mut(&mut values))
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::UnexpectedEof => PtError {
                            path: self.path.clone(),
                            problem: format!("{record} ends before its {needed} bytes"),
                        },
                        _ => read_fail(e),
                    })?;
                if cfg!(target_endian = "big") {
                    for v in &mut values {
                        *v = f32::from_bits(v.to_bits().swap_bytes());
                    }
                }
                return Ok(PtTensor {
                    dtype: tensor.dtype,
                    shape: tensor.shape.clone(),
                    values,
                });
            }
            let mut bytes = Vec::with_capacity(needed);
            entry.read_to_end(&mut bytes).map_err(read_fail)?;
            if bytes.len() < needed {
                return Err(PtError {
                    path: self.path.clone(),
                    problem: format!("{record} ends after {} of its {needed} bytes", bytes.len()),
                });
            }
            bytes
        };
        let values = gather(&bytes, tensor, numel);
        Ok(PtTensor {
            dtype: tensor.dtype,
            shape: tensor.shape.clone(),
            values,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The tensor's elements in row-major order, from a storage that covers its extent.
fn gather(bytes: &[u8], t: &TensorRef, numel: usize) -> Vec<f32> {
    let size = t.dtype.size();
    let value = |i: usize| -> f32 {
        let b = &bytes[i * size..(i + 1) * size];
        match t.dtype {
            Dtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Dtype::F64 => f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32,
            Dtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            Dtype::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            Dtype::I64 => i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32,
            Dtype::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            Dtype::I16 => i16::from_le_bytes([b[0], b[1]]) as f32,
            Dtype::I8 => b[0] as i8 as f32,
            Dtype::U8 | Dtype::Bool => b[0] as f32,
        }
    };
    if is_contiguous(t) {
        return (t.offset..t.offset + numel).map(value).collect();
    }
    // A strided view: walk the indices like an odometer.
    let mut out = Vec::with_capacity(numel);
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        let at = t.offset
            + index
                .iter()
                .zip(&t.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        out.push(value(at));
        for axis in (0..index.len()).rev() {
            index[axis] += 1;
            if index[axis] < t.shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

/// Whether the view walks its storage in row-major order without gaps.
fn is_contiguous(t: &TensorRef) -> bool {
    let mut expected = 1;
    for (&d, &s) in t.shape.iter().zip(&t.stride).rev() {
        if d > 1 && s != expected {
            return false;
        }
        expected *= d;
    }
    true
}

/// `values` as their bytes, to read little-endian storage into them directly.
fn f32_bytes_mut(values: &mut [f32]) -> &mut [u8] {
    // SAFETY: every bit pattern is a valid f32, u8 has no alignment, and the
    // slice borrows `values` mutably for as long as it lives.
    unsafe {
        std::slice::from_raw_parts_mut(
            values.as_mut_ptr().cast::<u8>(),
            std::mem::size_of_val(values),
        )
    }
}
