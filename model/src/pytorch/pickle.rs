//! The part of Python's pickle machine that `torch.save` files need.
//!
//! No Python object is ever built: every value goes into an arena of [`Node`]s,
//! classes stay names ([`Node::Global`]), and objects stay "class + arguments +
//! state" ([`Node::Object`]). That is why unknown classes (a user's `AstroMAE`,
//! `DataParallel`, `TensorDataset`) cannot stop the reader. Objects that pickle
//! refers to twice (a module registered under two names) are one node, as in
//! Python. Only torch's tensor rebuild and `OrderedDict` are understood.
//!
//! The arena grows by at most one node per opcode, and containers by at most
//! one entry per byte of the pickle in all (BUILD, which copies a dict, is
//! counted too); nodes, memo entries, marks and entries are also capped well
//! above what a real checkpoint holds (the small AstroMAE fixture's module
//! pickle: 29,008 opcodes), so a pickle of opcodes that each cost bytes of
//! memory stops at `MAX_NODES`' bound. Malformed input is an error, never a
//! panic.

use std::fmt;

/// Index of a node in the arena.
pub type Id = usize;

/// Element type of a torch storage, from its class name (`torch.FloatStorage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    fn from_storage(name: &str) -> Option<Dtype> {
        Some(match name {
            "FloatStorage" => Dtype::F32,
            "DoubleStorage" => Dtype::F64,
            "HalfStorage" => Dtype::F16,
            "BFloat16Storage" => Dtype::BF16,
            "LongStorage" => Dtype::I64,
            "IntStorage" => Dtype::I32,
            "ShortStorage" => Dtype::I16,
            "CharStorage" => Dtype::I8,
            "ByteStorage" => Dtype::U8,
            "BoolStorage" => Dtype::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F64 | Dtype::F16 | Dtype::BF16)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // torch's own names, as a CAI user sees them in Python.
        f.write_str(match self {
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
            Dtype::I64 => "int64",
            Dtype::I32 => "int32",
            Dtype::I16 => "int16",
            Dtype::I8 => "int8",
            Dtype::U8 => "uint8",
            Dtype::Bool => "bool",
        })
    }
}

/// A tensor as the pickle describes it: a view into a storage record of the zip.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// The storage's record name (`data/<key>` in the zip).
    pub storage: String,
    pub dtype: Dtype,
    /// Elements in the storage, as the pickle claims.
    pub storage_len: usize,
    /// Offset into the storage, in elements.
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// One value of the unpickled graph.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    /// Dicts and `OrderedDict`s, in insertion order.
    Dict(Vec<(Id, Id)>),
    /// A class or function by name, never imported.
    Global {
        module: String,
        name: String,
    },
    /// `class(*args)` (REDUCE, NEWOBJ, `copyreg._reconstructor`), then `__setstate__(state)` (BUILD).
    Object {
        class: Id,
        args: Id,
        state: Option<Id>,
    },
    /// A persistent id `('storage', torch.XStorage, key, location, numel)`.
    Storage {
        key: String,
        dtype: Dtype,
        len: usize,
    },
    /// Boxed: the arena holds one node per opcode, and most are small.
    Tensor(Box<TensorRef>),
}

/// Why a pickle cannot be read, with the byte offset where it went wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("pickle byte {offset}: {problem}")]
pub struct PickleError {
    pub offset: usize,
    pub problem: String,
}

/// The arena and the root node of one pickle.
#[derive(Debug, Default)]
pub struct Pickle {
    pub nodes: Vec<Node>,
    pub root: Id,
}

impl Pickle {
    pub fn node(&self, id: Id) -> &Node {
        // Ids come from this arena only, so this index is always in range.
        &self.nodes[id]
    }

    /// The string of a `Str` node.
    pub fn str(&self, id: Id) -> Option<&str> {
        match self.node(id) {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The `module.name` of a `Global` node.
    pub fn global(&self, id: Id) -> Option<(&str, &str)> {
        match self.node(id) {
            Node::Global { module, name } => Some((module, name)),
            _ => None,
        }
    }

    /// Value of key `key` in a dict node.
    pub fn get(&self, dict: Id, key: &str) -> Option<Id> {
        match self.node(dict) {
            Node::Dict(items) => items
                .iter()
                .find(|(k, _)| self.str(*k) == Some(key))
                .map(|(_, v)| *v),
            _ => None,
        }
    }
}

/// Deepest nesting of containers the machine accepts while building a value.
const MAX_STACK: usize = 1 << 20;
/// Most nodes in the arena, memo entries and container entries: 2M nodes of
/// 56 bytes at most (a tensor's reference is boxed; a test checks the size)
/// bound the arena at 2M x 56 B, about 117 MB.
const MAX_NODES: usize = 1 << 21;

/// Runs the pickle `bytes`.
pub fn unpickle(bytes: &[u8]) -> Result<Pickle, PickleError> {
    Machine {
        input: bytes,
        pos: 0,
        nodes: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: std::collections::HashMap::new(),
        entries: 0,
    }
    .run()
}

struct Machine<'a> {
    input: &'a [u8],
    pos: usize,
    nodes: Vec<Node>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u32, Id>,
    /// Entries added to lists, dicts and sets so far.
    entries: usize,
}

impl Machine<'_> {
    fn fail<T>(&self, problem: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError {
            offset: self.pos,
            problem: problem.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.input.len());
        let Some(end) = end else {
            return self.fail(format!("needs {n} more bytes, the pickle ends first"));
        };
        let slice = &self.input[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.input[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return self.fail("a text argument has no end of line");
        };
        let text = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(text)
    }

    fn text(&mut self, n: usize) -> Result<String, PickleError> {
        let bytes = self.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => self.fail("a string is not UTF-8"),
        }
    }

    fn push(&mut self, node: Node) -> Result<(), PickleError> {
        if self.nodes.len() >= MAX_NODES {
            return self.fail(format!(
                "more than {MAX_NODES} values: far more than any torch file holds"
            ));
        }
        self.nodes.push(node);
        self.push_id(self.nodes.len() - 1)
    }

    /// Pushes a node already in the arena (DUP, memo gets).
    fn push_id(&mut self, id: Id) -> Result<(), PickleError> {
        if self.stack.len() >= MAX_STACK {
            return self.fail("the stack is deeper than any torch file needs");
        }
        self.stack.push(id);
        Ok(())
    }

    /// Counts `n` more container entries: more than the pickle has bytes means
    /// containers copied into themselves (BUILD of a dict with itself doubles it).
    fn add_entries(&mut self, n: usize) -> Result<(), PickleError> {
        self.entries = self.entries.saturating_add(n);
        if self.entries > MAX_NODES {
            return self.fail(format!(
                "its containers hold more than {MAX_NODES} entries: far more than any torch file holds"
            ));
        }
        if self.entries > self.input.len() {
            return self.fail(format!(
                "its containers hold more entries than its {} bytes could: a dict or list copied into itself",
                self.input.len()
            ));
        }
        Ok(())
    }

    fn pop(&mut self) -> Result<Id, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return self.fail("pops an empty stack");
        }
        Ok(self.stack.pop().unwrap_or_default())
    }

    fn top(&self) -> Result<Id, PickleError> {
        match self.stack.last() {
            Some(&id) => Ok(id),
            None => self.fail("reads the top of an empty stack"),
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>, PickleError> {
        let Some(mark) = self.marks.pop() else {
            return self.fail("no MARK to pop to");
        };
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn extend(&mut self, target: Id, items: Vec<Id>, pairs: bool) -> Result<(), PickleError> {
        if pairs && !items.len().is_multiple_of(2) {
            return self.fail("SETITEMS with an odd number of values");
        }
        self.add_entries(items.len())?;
        match &mut self.nodes[target] {
            Node::List(list) if !pairs => list.extend(items),
            Node::Dict(dict) if pairs => {
                dict.extend(items.chunks_exact(2).map(|kv| (kv[0], kv[1])));
            }
            // `state` dicts of objects built without one: ignore what we do not use.
            Node::Object { .. } => {}
            _ => return self.fail("adds items to something that is not a list or dict"),
        }
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<(), PickleError> {
        match self.memo.get(&key) {
            Some(&id) => self.push_id(id),
            None => self.fail(format!("memo {key} was never stored")),
        }
    }

    fn memo_put(&mut self, key: u32) -> Result<(), PickleError> {
        let id = self.top()?;
        if self.memo.len() >= MAX_NODES && !self.memo.contains_key(&key) {
            return self.fail(format!("more than {MAX_NODES} memo entries"));
        }
        self.memo.insert(key, id);
        Ok(())
    }

    fn int(&self, id: Id) -> Option<i64> {
        match self.nodes[id] {
            Node::Int(i) => Some(i),
            Node::Bool(b) => Some(b as i64),
            _ => None,
        }
    }

    fn usizes(&self, id: Id, what: &str) -> Result<Vec<usize>, PickleError> {
        let Node::Tuple(items) = &self.nodes[id] else {
            return self.fail(format!("tensor {what} is not a tuple"));
        };
        items
            .iter()
            .map(|&i| self.int(i).and_then(|v| usize::try_from(v).ok()))
            .collect::<Option<Vec<_>>>()
            .map_or_else(
                || self.fail(format!("tensor {what} holds a value that is not a size")),
                Ok,
            )
    }

    /// `callable(*args)`: tensors and OrderedDicts are understood, the rest stays an object.
    fn reduce(&mut self, callable: Id, args: Id) -> Result<Node, PickleError> {
        let name = match &self.nodes[callable] {
            Node::Global { module, name } => format!("{module}.{name}"),
            _ => String::new(),
        };
        // Read in place: a hostile pickle reduces one tuple of a million items
        // many times over, and a copy each time would cost seconds each.
        let args_list: &[Id] = match &self.nodes[args] {
            Node::Tuple(items) => items,
            _ => &[],
        };
        let first = args_list.first().copied();
        match name.as_str() {
            "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
                let [storage, offset, shape, stride, ..] = *args_list else {
                    return self.fail(format!("{name} with {} arguments", args_list.len()));
                };
                let Node::Storage { key, dtype, len } = self.nodes[storage].clone() else {
                    return self.fail(format!("{name} of something that is not a storage"));
                };
                let offset = self
                    .int(offset)
                    .and_then(|o| usize::try_from(o).ok())
                    .map_or_else(|| self.fail("tensor offset is not a size"), Ok)?;
                let shape = self.usizes(shape, "shape")?;
                let stride = self.usizes(stride, "stride")?;
                if shape.len() != stride.len() {
                    return self.fail(format!("tensor of shape {shape:?} has strides {stride:?}"));
                }
                Ok(Node::Tensor(Box::new(TensorRef {
                    storage: key,
                    dtype,
                    storage_len: len,
                    offset,
                    shape,
                    stride,
                })))
            }
            // A Parameter is its tensor.
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
                match first.map(|t| self.nodes[t].clone()) {
                    Some(tensor @ Node::Tensor(_)) => Ok(tensor),
                    _ => self.fail(format!("{name} of something that is not a tensor")),
                }
            }
            "collections.OrderedDict" => Ok(Node::Dict(Vec::new())),
            // copyreg._reconstructor(cls, base, state): an instance of cls.
            "copyreg._reconstructor" => Ok(Node::Object {
                class: first.unwrap_or(callable),
                args,
                state: None,
            }),
            _ => Ok(Node::Object {
                class: callable,
                args,
                state: None,
            }),
        }
    }

    fn persistent(&mut self, pid: Id) -> Result<Node, PickleError> {
        let Node::Tuple(items) = &self.nodes[pid] else {
            return self.fail("a persistent id that is not a tuple");
        };
        let [tag, class, key, _location, len, ..] = items[..] else {
            return self.fail("a persistent id that is not a torch storage");
        };
        if self.str(tag) != Some("storage") {
            return self.fail("a persistent id that is not a torch storage");
        }
        let Some(dtype) = self.global_name(class).and_then(Dtype::from_storage) else {
            return self.fail(format!(
                "storage class {:?} is not a tensor storage",
                self.global_name(class).unwrap_or("?")
            ));
        };
        let Some(key) = self.str(key).map(str::to_string) else {
            return self.fail("storage key is not a string");
        };
        let Some(len) = self.int(len).and_then(|l| usize::try_from(l).ok()) else {
            return self.fail("storage length is not a size");
        };
        Ok(Node::Storage { key, dtype, len })
    }

    fn str(&self, id: Id) -> Option<&str> {
        match &self.nodes[id] {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    fn global_name(&self, id: Id) -> Option<&str> {
        match &self.nodes[id] {
            Node::Global { name, .. } => Some(name),
            _ => None,
        }
    }

    fn run(mut self) -> Result<Pickle, PickleError> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let v = self.u8()?;
                    if v > 5 {
                        return self.fail(format!("pickle protocol {v} is newer than 5"));
                    }
                }
                0x95 => {
                    // FRAME: a length hint only
                    self.take(8)?;
                }
                b'.' => {
                    // STOP
                    let root = self.pop()?;
                    return Ok(Pickle {
                        nodes: self.nodes,
                        root,
                    });
                }
                b'(' => {
                    if self.marks.len() >= MAX_STACK {
                        return self.fail("more MARKs open than any torch file needs");
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let id = self.top()?;
                    self.push_id(id)?;
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.push(Node::Int(v.into()))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Node::Int(v.into()))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.push(Node::Int(v.into()))?;
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes
                    let n = self.u8()? as usize;
                    let bytes = self.take(n)?;
                    if n > 8 {
                        return self.fail(format!("an integer of {n} bytes"));
                    }
                    let mut v: i64 = 0;
                    for (i, &b) in bytes.iter().enumerate() {
                        v |= (b as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && bytes[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(Node::Int(v))?;
                }
                b'N' => self.push(Node::None)?,
                0x88 => self.push(Node::Bool(true))?,
                0x89 => self.push(Node::Bool(false))?,
                b'G' => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.push(Node::Float(v))?;
                }
                0x8c => {
                    // SHORT_BINUNICODE
                    let n = self.u8()? as usize;
                    let s = self.text(n)?;
                    self.push(Node::Str(s))?;
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.le()?) as usize;
                    let s = self.text(n)?;
                    self.push(Node::Str(s))?;
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.le()?);
                    let s = self.text(usize::try_from(n).unwrap_or(usize::MAX))?;
                    self.push(Node::Str(s))?;
                }
                b'U' | b'C' => {
                    // SHORT_BINSTRING, SHORT_BINBYTES
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(if op == b'U' {
                        Node::Str(String::from_utf8_lossy(&b).into_owned())
                    } else {
                        Node::Bytes(b)
                    })?;
                }
                b'T' | b'B' => {
                    // BINSTRING, BINBYTES
                    let n = u32::from_le_bytes(self.le()?) as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(if op == b'T' {
                        Node::Str(String::from_utf8_lossy(&b).into_owned())
                    } else {
                        Node::Bytes(b)
                    })?;
                }
                b')' => self.push(Node::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Node::Tuple(items))?;
                }
                0x85..=0x87 => {
                    // TUPLE1..3
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Node::Tuple(items))?;
                }
                b']' => self.push(Node::List(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Node::List(items))?;
                }
                b'a' => {
                    let item = self.pop()?;
                    let list = self.top()?;
                    self.extend(list, vec![item], false)?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.extend(list, items, false)?;
                }
                b'}' => self.push(Node::Dict(Vec::new()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return self.fail("DICT with an odd number of values");
                    }
                    let pairs = items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect();
                    self.push(Node::Dict(pairs))?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    let dict = self.top()?;
                    self.extend(dict, vec![key, value], true)?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let dict = self.top()?;
                    self.extend(dict, items, true)?;
                }
                0x8f => self.push(Node::List(Vec::new()))?, // EMPTY_SET: as a list
                0x90 => {
                    // ADDITEMS
                    let items = self.pop_mark()?;
                    let set = self.top()?;
                    self.extend(set, items, false)?;
                }
                0x91 => {
                    // FROZENSET
                    let items = self.pop_mark()?;
                    self.push(Node::List(items))?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Node::Global { module, name })?;
                }
                0x93 => {
                    // STACK_GLOBAL
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(module), Some(name)) = (self.str(module), self.str(name)) else {
                        return self.fail("STACK_GLOBAL of values that are not strings");
                    };
                    let (module, name) = (module.to_string(), name.to_string());
                    self.push(Node::Global { module, name })?;
                }
                b'R' | 0x81 => {
                    // REDUCE, NEWOBJ
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let node = self.reduce(callable, args)?;
                    self.push(node)?;
                }
                b'b' => {
                    // BUILD
                    let state = self.pop()?;
                    let target = self.top()?;
                    let items = match (&self.nodes[state], &self.nodes[target]) {
                        (Node::Dict(items), Node::Dict(_)) => items.clone(),
                        _ => Vec::new(),
                    };
                    self.add_entries(items.len())?;
                    match &mut self.nodes[target] {
                        Node::Object { state: s, .. } => *s = Some(state),
                        Node::Dict(d) => d.extend(items),
                        // Tensors carry no state we use (requires_grad and hooks).
                        _ => {}
                    }
                }
                b'Q' => {
                    // BINPERSID
                    let pid = self.pop()?;
                    let node = self.persistent(pid)?;
                    self.push(node)?;
                }
                b'q' => {
                    let key = self.u8()?.into();
                    self.memo_put(key)?;
                }
                b'r' => {
                    let key = u32::from_le_bytes(self.le()?);
                    self.memo_put(key)?;
                }
                0x94 => {
                    // MEMOIZE
                    let key = u32::try_from(self.memo.len()).unwrap_or(u32::MAX);
                    self.memo_put(key)?;
                }
                b'h' => {
                    let key = self.u8()?.into();
                    self.memo_get(key)?;
                }
                b'j' => {
                    let key = u32::from_le_bytes(self.le()?);
                    self.memo_get(key)?;
                }
                other => {
                    self.pos = at;
                    return self.fail(format!("unknown or unsupported opcode 0x{other:02x}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_dict_of_ints_and_strings() {
        // pickle.dumps({'a': 1, 'b': 'x'}, protocol=2)
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02X\x01\x00\x00\x00xq\x03u.";
        let p = unpickle(bytes).unwrap();
        let a = p.get(p.root, "a").unwrap();
        assert_eq!(p.node(a), &Node::Int(1));
        let b = p.get(p.root, "b").unwrap();
        assert_eq!(p.str(b), Some("x"));
    }

    #[test]
    fn bad_input_is_an_error_naming_the_offset() {
        let e = unpickle(b"\x80\x02\xff").unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(e.problem.contains("opcode 0xff"), "{e}");
        assert!(unpickle(b"").is_err());
        assert!(unpickle(b"\x80\x02X\xff\xff\xff\xff").is_err()); // a string past the end
        assert!(unpickle(b"\x80\x02.").is_err()); // STOP on an empty stack
        assert!(unpickle(b"\x80\x02h\x05.").is_err()); // memo never stored
        assert!(unpickle(b"\x80\x02Ns.").is_err()); // SETITEM with too few values
        assert!(unpickle(b"\x80\x02N\x8a\x09").is_err()); // LONG1 past the end
    }

    #[test]
    fn a_dict_built_with_itself_cannot_double_past_the_file() {
        // {1: 2}, then DUP + BUILD 40 times: 2^40 entries from 90 bytes.
        let mut bytes = b"\x80\x02}K\x01K\x02s".to_vec();
        for _ in 0..40 {
            bytes.extend(b"2b");
        }
        bytes.push(b'.');
        let e = unpickle(&bytes).unwrap_err();
        assert!(e.problem.contains("copied into itself"), "{e}");
    }

    #[test]
    fn a_node_is_at_most_56_bytes() {
        assert!(
            std::mem::size_of::<Node>() <= 56,
            "{}",
            std::mem::size_of::<Node>()
        );
    }

    #[test]
    fn values_marks_and_memo_entries_stop_at_their_caps() {
        // NONE, POP: a node a pair of bytes that the stack never holds.
        let mut bytes = b"\x80\x02".to_vec();
        bytes.extend(b"N0".repeat(MAX_NODES));
        bytes.extend(b"N.");
        let e = unpickle(&bytes).unwrap_err();
        assert!(e.problem.contains("values"), "{e}");
        // One byte a MARK, never closed.
        let mut bytes = b"\x80\x02".to_vec();
        bytes.extend(b"(".repeat(MAX_STACK + 1));
        let e = unpickle(&bytes).unwrap_err();
        assert!(e.problem.contains("MARK"), "{e}");
        // Under the caps, the same shapes still read.
        let mut bytes = b"\x80\x02".to_vec();
        bytes.extend(b"N0".repeat(1000));
        bytes.extend(b"N.");
        assert_eq!(unpickle(&bytes).unwrap().nodes.len(), 1001);
    }

    #[test]
    fn long1_is_signed() {
        let p = unpickle(b"\x80\x02\x8a\x02\xff\xff.").unwrap();
        assert_eq!(p.node(p.root), &Node::Int(-1));
        let p = unpickle(b"\x80\x02\x8a\x02\xff\x7f.").unwrap();
        assert_eq!(p.node(p.root), &Node::Int(32767));
    }
}
