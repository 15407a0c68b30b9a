//! Element types of stored tensors.

use std::fmt;

use serde::Deserialize;

/// The element type of a tensor record, as named in the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum DType {
    /// `uint32`: packed quantized weights.
    #[serde(rename = "uint32")]
    U32,
    /// `float16`: IEEE half precision.
    #[serde(rename = "float16")]
    F16,
    /// `float32`: stored bf16-encoded when the record's format is `f32-to-bf16`.
    #[serde(rename = "float32")]
    F32,
    /// `bfloat16`.
    #[serde(rename = "bfloat16")]
    BF16,
}

impl DType {
    /// Parses an index dtype name (`uint32`, `float16`, `float32`, `bfloat16`).
    pub fn parse(name: &str) -> Option<DType> {
        match name {
            "uint32" => Some(DType::U32),
            "float16" => Some(DType::F16),
            "float32" => Some(DType::F32),
            "bfloat16" => Some(DType::BF16),
            _ => None,
        }
    }

    /// The name used in the index.
    pub fn name(self) -> &'static str {
        match self {
            DType::U32 => "uint32",
            DType::F16 => "float16",
            DType::F32 => "float32",
            DType::BF16 => "bfloat16",
        }
    }

    /// Bytes per element once decoded.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::U32 | DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_parse_and_serde() {
        for dtype in [DType::U32, DType::F16, DType::F32, DType::BF16] {
            assert_eq!(DType::parse(dtype.name()), Some(dtype));
            let from_json: DType = serde_json::from_str(&format!("\"{}\"", dtype.name())).unwrap();
            assert_eq!(from_json, dtype);
        }
        assert_eq!(DType::parse("int8"), None);
        assert_eq!(DType::F16.size_in_bytes(), 2);
        assert_eq!(DType::U32.size_in_bytes(), 4);
    }
}
