//! The GGUF header: magic, version, metadata key/values and tensor infos.
//!
//! A GGUF file is untrusted input. Every count and length read from it is
//! checked before it is used: nothing is allocated in advance from a count
//! (collections grow as bytes actually arrive, and a declared length longer
//! than what remains of the file is rejected first), arithmetic on sizes and
//! offsets is checked, and every failure is a [`ConvertError::Malformed`]
//! naming the byte position, never a panic.

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::types::GgmlType;
use crate::ConvertError;

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Tensor data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`: a tensor has at most four dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays are legal GGUF; deeper nesting than this is refused so
/// that a crafted file cannot exhaust the stack.
const MAX_ARRAY_DEPTH: usize = 8;
/// No preallocation from an untrusted count beyond this many elements: a
/// collection grows further only as its bytes are actually read.
const MAX_PREALLOC: usize = 4096;

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    /// Type 0.
    U8(u8),
    /// Type 1.
    I8(i8),
    /// Type 2.
    U16(u16),
    /// Type 3.
    I16(i16),
    /// Type 4.
    U32(u32),
    /// Type 5.
    I32(i32),
    /// Type 6.
    F32(f32),
    /// Type 7 (a byte that must be 0 or 1).
    Bool(bool),
    /// Type 8 (length-prefixed UTF-8).
    String(String),
    /// Type 9.
    Array(GgufArray),
    /// Type 10.
    U64(u64),
    /// Type 11.
    I64(i64),
    /// Type 12.
    F64(f64),
}

/// A metadata array, stored by element type so that a 49,152-entry token
/// list or a megabyte of `u8` costs what its elements cost.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum GgufArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    /// An array of arrays (each may have its own element type).
    Array(Vec<GgufArray>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl GgufArray {
    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            GgufArray::U8(v) => v.len(),
            GgufArray::I8(v) => v.len(),
            GgufArray::U16(v) => v.len(),
            GgufArray::I16(v) => v.len(),
            GgufArray::U32(v) => v.len(),
            GgufArray::I32(v) => v.len(),
            GgufArray::F32(v) => v.len(),
            GgufArray::Bool(v) => v.len(),
            GgufArray::String(v) => v.len(),
            GgufArray::Array(v) => v.len(),
            GgufArray::U64(v) => v.len(),
            GgufArray::I64(v) => v.len(),
            GgufArray::F64(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as an integer, for integer arrays.
    pub fn int_at(&self, i: usize) -> Option<i64> {
        Some(match self {
            GgufArray::U8(v) => i64::from(*v.get(i)?),
            GgufArray::I8(v) => i64::from(*v.get(i)?),
            GgufArray::U16(v) => i64::from(*v.get(i)?),
            GgufArray::I16(v) => i64::from(*v.get(i)?),
            GgufArray::U32(v) => i64::from(*v.get(i)?),
            GgufArray::I32(v) => i64::from(*v.get(i)?),
            GgufArray::U64(v) => i64::try_from(*v.get(i)?).ok()?,
            GgufArray::I64(v) => *v.get(i)?,
            _ => return None,
        })
    }
}

impl GgufValue {
    /// The value as an unsigned integer, for any integer type holding a
    /// non-negative value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, for float and integer types.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&GgufArray> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One tensor's entry in the header.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// The GGUF name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions as GGUF stores them: innermost (contiguous) first, so a
    /// Hugging Face `[out, in]` matrix is `[in, out]` here.
    pub dims: Vec<u64>,
    /// The element type.
    pub ggml_type: GgmlType,
    /// Offset of the tensor's bytes from the start of the data section.
    pub offset: u64,
    /// Number of elements (product of `dims`).
    pub n_elements: u64,
    /// Number of bytes of the tensor's data.
    pub n_bytes: u64,
}

/// A parsed GGUF header. Tensor data is not read; it starts at
/// [`GgufHeader::data_offset`] in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufHeader {
    /// The format version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, GgufValue)>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    /// `general.alignment`, or 32.
    pub alignment: u64,
    /// Absolute file offset of the tensor data section.
    pub data_offset: u64,
}

impl GgufHeader {
    /// The metadata value of `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The tensor info named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Parses a GGUF header held in memory: `bytes` is the whole file, or at
/// least its header (tensor data bounds are then checked against
/// `bytes.len()`, so a header alone fails that check unless it has no
/// tensors). This is the entry point for fuzzing: any input gives `Ok` or a
/// [`ConvertError::Malformed`] / [`ConvertError::Unsupported`], never a panic,
/// and memory stays proportional to the input.
pub fn parse_header_bytes(bytes: &[u8]) -> Result<GgufHeader, ConvertError> {
    read_header(&mut &bytes[..], Some(bytes.len() as u64), Path::new("<memory>"))
}

/// Parses a GGUF header from `reader`, positioned at the file's first byte.
/// `file_len`, when known, bounds every declared length and every tensor's
/// data; `path` names the source in errors. Reads exactly the header (up to
/// the end of the tensor infos), never tensor data.
pub fn read_header(
    reader: &mut dyn Read,
    file_len: Option<u64>,
    path: &Path,
) -> Result<GgufHeader, ConvertError> {
    let mut p = Parser { reader, pos: 0, file_len, path: path.to_path_buf() };
    p.header()
}

/// A reader that knows its position, for error messages and bounds checks.
struct Parser<'a> {
    reader: &'a mut dyn Read,
    pos: u64,
    file_len: Option<u64>,
    path: PathBuf,
}

impl Parser<'_> {
    fn malformed(&self, message: impl std::fmt::Display) -> ConvertError {
        ConvertError::Malformed {
            path: self.path.clone(),
            message: format!("GGUF: {message} (at byte {})", self.pos),
        }
    }

    fn io(&self, e: io::Error, what: &str) -> ConvertError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            self.malformed(format!("file truncated while reading {what}"))
        } else {
            ConvertError::Io { path: self.path.clone(), source: e }
        }
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ConvertError> {
        let mut buf = [0u8; N];
        self.reader.read_exact(&mut buf).map_err(|e| self.io(e, what))?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u32(&mut self, what: &str) -> Result<u32, ConvertError> {
        self.bytes::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, ConvertError> {
        self.bytes::<8>(what).map(u64::from_le_bytes)
    }

    /// Bytes left in the file, when its length is known.
    fn remaining(&self) -> Option<u64> {
        self.file_len.map(|len| len.saturating_sub(self.pos))
    }

    /// Rejects a count of items of at least `min_size` bytes each that cannot
    /// fit in what remains of the file.
    fn check_count(&self, count: u64, min_size: u64, what: &str) -> Result<(), ConvertError> {
        if let Some(remaining) = self.remaining()
            && count.checked_mul(min_size).is_none_or(|need| need > remaining)
        {
            return Err(self.malformed(format!("{what} count {count} cannot fit in the {remaining} bytes left (truncated or corrupt file)")));
        }
        Ok(())
    }

    fn string(&mut self, what: &str) -> Result<String, ConvertError> {
        let len = self.u64(what)?;
        self.check_count(len, 1, &format!("{what} length"))?;
        let start = self.pos;
        // `take` + `read_to_end` grows the buffer only as bytes arrive, so a
        // huge declared length on an unbounded reader costs nothing.
        let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(usize::MAX).min(1 << 16));
        let got = self.reader.take(len).read_to_end(&mut buf).map_err(|e| self.io(e, what))?;
        self.pos += got as u64;
        if (got as u64) != len {
            return Err(
                self.malformed(format!("file truncated inside {what} ({got} of {len} bytes)"))
            );
        }
        String::from_utf8(buf).map_err(|e| {
            let at = start + e.utf8_error().valid_up_to() as u64;
            ConvertError::Malformed {
                path: self.path.clone(),
                message: format!("GGUF: {what} is not valid UTF-8 (at byte {at})"),
            }
        })
    }

    fn header(&mut self) -> Result<GgufHeader, ConvertError> {
        let magic = self.bytes::<4>("the magic")?;
        if magic != GGUF_MAGIC {
            self.pos = 0;
            return Err(self.malformed(format!("bad magic {magic:02x?}, expected \"GGUF\"")));
        }
        let version = self.u32("the version")?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(ConvertError::Unsupported {
                    what: "GGUF version 1".into(),
                    message: "only versions 2 and 3 are read (re-convert the model with a current llama.cpp)".into(),
                });
            }
            // A big-endian GGUF stores its version byte-swapped.
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                return Err(ConvertError::Unsupported {
                    what: "big-endian GGUF".into(),
                    message: "only little-endian GGUF files are read".into(),
                });
            }
            v => return Err(self.malformed(format!("unknown version {v}"))),
        }
        let n_tensors = self.u64("the tensor count")?;
        let n_kv = self.u64("the metadata count")?;
        // A key/value takes at least 13 bytes (key length, type, a u8 value);
        // a tensor info at least 24 (name length, n_dims, type, offset).
        self.check_count(n_kv, 13, "metadata")?;
        self.check_count(n_tensors, 24, "tensor")?;

        let mut metadata = Vec::with_capacity(clamp_prealloc(n_kv));
        let mut keys = HashSet::new();
        for i in 0..n_kv {
            let key = self.string(&format!("metadata key {i}"))?;
            if !keys.insert(key.clone()) {
                return Err(self.malformed(format!("duplicate metadata key `{key}`")));
            }
            let ty = self.u32(&format!("the type of `{key}`"))?;
            let value = self.value(ty, &key, 0)?;
            metadata.push((key, value));
        }

        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, GgufValue::U32(a))) if *a != 0 && a.is_power_of_two() => u64::from(*a),
            Some((_, v)) => {
                return Err(self.malformed(format!(
                    "general.alignment must be a u32 power of two, found {v:?}"
                )));
            }
        };

        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(clamp_prealloc(n_tensors));
        let mut names = HashSet::new();
        for i in 0..n_tensors {
            let name = self.string(&format!("the name of tensor {i}"))?;
            if !names.insert(name.clone()) {
                return Err(self.malformed(format!("duplicate tensor name `{name}`")));
            }
            let n_dims = self.u32(&format!("the dimension count of `{name}`"))?;
            if n_dims > MAX_DIMS {
                return Err(self.malformed(format!(
                    "tensor `{name}` has {n_dims} dimensions, at most {MAX_DIMS} allowed"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(self.u64(&format!("the dimensions of `{name}`"))?);
            }
            let type_id = self.u32(&format!("the type of `{name}`"))?;
            let ggml_type =
                GgmlType::from_id(type_id).ok_or_else(|| ConvertError::Unsupported {
                    what: format!(
                        "GGML tensor type id {type_id} (tensor `{name}` in {})",
                        self.path.display()
                    ),
                    message: "this id is not a ggml type this converter knows".into(),
                })?;
            let offset = self.u64(&format!("the offset of `{name}`"))?;
            let (n_elements, n_bytes) = self.tensor_size(&name, &dims, ggml_type)?;
            if offset % alignment != 0 {
                return Err(self.malformed(format!(
                    "tensor `{name}` offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            tensors.push(TensorInfo { name, dims, ggml_type, offset, n_elements, n_bytes });
        }

        let data_offset = self
            .pos
            .checked_next_multiple_of(alignment)
            .ok_or_else(|| self.malformed("data offset overflows"))?;
        if let Some(len) = self.file_len {
            for t in &tensors {
                let end = data_offset.checked_add(t.offset).and_then(|s| s.checked_add(t.n_bytes));
                if end.is_none_or(|end| end > len) {
                    return Err(ConvertError::Malformed {
                        path: self.path.clone(),
                        message: format!(
                            "GGUF: tensor `{}` ({} bytes at data offset {}, file offset {data_offset} + {}) extends beyond the end of the file ({len} bytes)",
                            t.name, t.n_bytes, t.offset, t.offset
                        ),
                    });
                }
            }
        }
        Ok(GgufHeader { version, metadata, tensors, alignment, data_offset })
    }

    /// Element and byte counts of a tensor, with every product checked.
    fn tensor_size(
        &self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
    ) -> Result<(u64, u64), ConvertError> {
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| {
                self.malformed(format!("tensor `{name}` dimensions {dims:?} overflow"))
            })?;
        let (block, block_bytes) = ty.block_layout();
        let inner = dims.first().copied().unwrap_or(1);
        if inner % block as u64 != 0 {
            return Err(self.malformed(format!(
                "tensor `{name}`: innermost dimension {inner} is not a multiple of the {ty} block size {block}"
            )));
        }
        let n_bytes = (n_elements / block as u64)
            .checked_mul(block_bytes as u64)
            .ok_or_else(|| self.malformed(format!("tensor `{name}` byte size overflows")))?;
        Ok((n_elements, n_bytes))
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<GgufValue, ConvertError> {
        Ok(match ty {
            0 => GgufValue::U8(self.bytes::<1>(key)?[0]),
            1 => GgufValue::I8(self.bytes::<1>(key)?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.bytes(key)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.bytes(key)?)),
            4 => GgufValue::U32(u32::from_le_bytes(self.bytes(key)?)),
            5 => GgufValue::I32(i32::from_le_bytes(self.bytes(key)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.bytes(key)?)),
            7 => GgufValue::Bool(self.bool(key)?),
            8 => GgufValue::String(self.string(key)?),
            9 => GgufValue::Array(self.array(key, depth)?),
            10 => GgufValue::U64(u64::from_le_bytes(self.bytes(key)?)),
            11 => GgufValue::I64(i64::from_le_bytes(self.bytes(key)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.bytes(key)?)),
            other => return Err(self.malformed(format!("unknown value type {other} for `{key}`"))),
        })
    }

    fn bool(&mut self, key: &str) -> Result<bool, ConvertError> {
        match self.bytes::<1>(key)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.malformed(format!("boolean `{key}` holds {b}, not 0 or 1"))),
        }
    }

    fn array(&mut self, key: &str, depth: usize) -> Result<GgufArray, ConvertError> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(
                self.malformed(format!("`{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH}"))
            );
        }
        let ty = self.u32(key)?;
        let n = self.u64(key)?;
        // Minimum bytes per element: strings and arrays need their 8-byte length.
        let min_size = match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10..=12 => 8,
            9 => 12,
            other => {
                return Err(
                    self.malformed(format!("unknown array element type {other} for `{key}`"))
                );
            }
        };
        self.check_count(n, min_size, &format!("`{key}` array"))?;
        macro_rules! read_all {
            ($variant:ident, $read:expr) => {{
                let mut v = Vec::with_capacity(clamp_prealloc(n));
                for _ in 0..n {
                    v.push($read);
                }
                GgufArray::$variant(v)
            }};
        }
        Ok(match ty {
            0 => read_all!(U8, self.bytes::<1>(key)?[0]),
            1 => read_all!(I8, self.bytes::<1>(key)?[0] as i8),
            2 => read_all!(U16, u16::from_le_bytes(self.bytes(key)?)),
            3 => read_all!(I16, i16::from_le_bytes(self.bytes(key)?)),
            4 => read_all!(U32, u32::from_le_bytes(self.bytes(key)?)),
            5 => read_all!(I32, i32::from_le_bytes(self.bytes(key)?)),
            6 => read_all!(F32, f32::from_le_bytes(self.bytes(key)?)),
            7 => read_all!(Bool, self.bool(key)?),
            8 => read_all!(String, self.string(key)?),
            9 => read_all!(Array, self.array(key, depth + 1)?),
            10 => read_all!(U64, u64::from_le_bytes(self.bytes(key)?)),
            11 => read_all!(I64, i64::from_le_bytes(self.bytes(key)?)),
            12 => read_all!(F64, f64::from_le_bytes(self.bytes(key)?)),
            _ => unreachable!("element type checked above"),
        })
    }
}

/// An untrusted count turned into an initial capacity.
fn clamp_prealloc(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX).min(MAX_PREALLOC)
}
