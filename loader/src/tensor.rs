//! A tensor's decoded bytes, and conversions to typed vectors.

use std::borrow::Cow;
use std::fmt;

use crate::index::element_count;
use crate::{DType, LoadError, TensorRecord};

/// One tensor of an artifact, decoded to its dtype (docs/mlc-format.md, "Record
/// format and bf16").
///
/// `bytes` holds little-endian elements of `dtype`, row-major. Float32 records
/// stored as bf16 are widened into an owned buffer; every other record borrows
/// the shard's bytes as they are, so `bytes` may start at any alignment: read
/// it with the `to_*_vec` methods or by byte chunks, never by casting.
#[derive(Clone)]
pub struct Tensor<'a> {
    /// The parameter name.
    pub name: &'a str,
    /// Row-major shape.
    pub shape: &'a [usize],
    /// Element type of `bytes`.
    pub dtype: DType,
    /// The decoded little-endian elements.
    pub bytes: Cow<'a, [u8]>,
}

impl<'a> Tensor<'a> {
    /// Decodes a record from its stored bytes (`stored.len() == record.nbytes`).
    pub(crate) fn decode(record: &'a TensorRecord, stored: &'a [u8]) -> Tensor<'a> {
        let bytes = if record.is_bf16_encoded() {
            // A bf16 value is the upper half of the f32 with the same bits.
            let widened =
                stored.chunks_exact(2).flat_map(|half| [0, 0, half[0], half[1]]).collect();
            Cow::Owned(widened)
        } else {
            Cow::Borrowed(stored)
        };
        Tensor { name: &record.name, shape: &record.shape, dtype: record.dtype, bytes }
    }

    /// Number of elements: the product of the shape.
    pub fn numel(&self) -> usize {
        self.shape.iter().fold(1, |count, &dim| count.saturating_mul(dim))
    }

    /// The elements as f32 (from float32, float16 or bfloat16).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>, LoadError> {
        match self.dtype {
            DType::F32 => Ok(self.elements::<4>(&[DType::F32])?.map(f32::from_le_bytes).collect()),
            DType::F16 => Ok(self
                .elements::<2>(&[DType::F16])?
                .map(|b| half::f16::from_le_bytes(b).to_f32())
                .collect()),
            DType::BF16 => Ok(self
                .elements::<2>(&[DType::BF16])?
                .map(|b| half::bf16::from_le_bytes(b).to_f32())
                .collect()),
            DType::U32 => Err(self.invalid("is uint32, not a floating-point tensor")),
        }
    }

    /// The elements of a uint32 tensor.
    pub fn to_u32_vec(&self) -> Result<Vec<u32>, LoadError> {
        Ok(self.elements::<4>(&[DType::U32])?.map(u32::from_le_bytes).collect())
    }

    /// The raw bits of a float16 or bfloat16 tensor.
    pub fn to_u16_vec(&self) -> Result<Vec<u16>, LoadError> {
        Ok(self.elements::<2>(&[DType::F16, DType::BF16])?.map(u16::from_le_bytes).collect())
    }

    /// The elements as `N`-byte arrays, after checking that the dtype is one
    /// of `allowed` and that the bytes match the shape.
    fn elements<const N: usize>(
        &self,
        allowed: &[DType],
    ) -> Result<impl Iterator<Item = [u8; N]> + '_, LoadError> {
        if !allowed.contains(&self.dtype) {
            let names: Vec<&str> = allowed.iter().map(|dtype| dtype.name()).collect();
            return Err(self.invalid(&format!(
                "is {}, expected {}",
                self.dtype,
                names.join(" or ")
            )));
        }
        let expected = element_count(self.shape).and_then(|count| count.checked_mul(N));
        if expected != Some(self.bytes.len()) {
            return Err(self.invalid(&format!(
                "{} bytes do not hold shape {:?} of {}",
                self.bytes.len(),
                self.shape,
                self.dtype
            )));
        }
        Ok(self.bytes.chunks_exact(N).map(|chunk| {
            let mut element = [0; N];
            element.copy_from_slice(chunk);
            element
        }))
    }

    fn invalid(&self, message: &str) -> LoadError {
        LoadError::InvalidTensor { name: self.name.to_string(), message: message.to_string() }
    }
}

impl fmt::Debug for Tensor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("name", &self.name)
            .field("shape", &self.shape)
            .field("dtype", &self.dtype)
            .field("bytes", &format_args!("{} bytes", self.bytes.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(dtype: DType, format: &str, shape: &[usize], nbytes: u64) -> TensorRecord {
        TensorRecord {
            name: "t".into(),
            shape: shape.to_vec(),
            dtype,
            format: format.into(),
            nbytes,
            byte_offset: 0,
        }
    }

    #[test]
    fn float32_stored_as_bf16_is_widened() {
        let values = [1.0f32, -2.5, 3.140625];
        let stored: Vec<u8> =
            values.iter().flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes()).collect();
        let record = record(DType::F32, "f32-to-bf16", &[3], 6);
        let tensor = Tensor::decode(&record, &stored);
        assert!(matches!(tensor.bytes, Cow::Owned(_)));
        assert_eq!(tensor.bytes.len(), 12);
        assert_eq!(tensor.to_f32_vec().unwrap(), values);
    }

    #[test]
    fn other_records_borrow_the_stored_bytes() {
        let stored: Vec<u8> = [1.5f32, -0.25].iter().flat_map(|v| v.to_le_bytes()).collect();
        let raw = record(DType::F32, "raw", &[2], 8);
        let tensor = Tensor::decode(&raw, &stored);
        assert!(matches!(tensor.bytes, Cow::Borrowed(_)));
        assert_eq!(tensor.to_f32_vec().unwrap(), [1.5, -0.25]);

        // The converter writes `f32-to-bf16` on every record; only float32 is encoded.
        let halves: Vec<u8> = [half::f16::from_f32(0.5), half::f16::from_f32(-3.0)]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        let f16 = record(DType::F16, "f32-to-bf16", &[2], 4);
        let tensor = Tensor::decode(&f16, &halves);
        assert!(matches!(tensor.bytes, Cow::Borrowed(_)));
        assert_eq!(tensor.to_f32_vec().unwrap(), [0.5, -3.0]);
        assert_eq!(tensor.to_u16_vec().unwrap(), [0x3800, 0xC200]);
        assert_eq!(tensor.numel(), 2);
    }

    #[test]
    fn reads_elements_at_any_alignment() {
        // Two leading bytes put the u32s at offset 2 mod 4 inside the buffer.
        let mut buffer = vec![0xAA, 0xBB];
        buffer.extend([0xDEADBEEFu32, 7].iter().flat_map(|v| v.to_le_bytes()));
        let record = record(DType::U32, "f32-to-bf16", &[2], 8);
        let tensor = Tensor::decode(&record, &buffer[2..]);
        assert_eq!(tensor.to_u32_vec().unwrap(), [0xDEADBEEF, 7]);
    }

    #[test]
    fn bfloat16_converts_to_f32() {
        let stored: Vec<u8> = [0x3F80u16, 0xC000].iter().flat_map(|v| v.to_le_bytes()).collect();
        let record = record(DType::BF16, "raw", &[1, 2], 4);
        let tensor = Tensor::decode(&record, &stored);
        assert_eq!(tensor.to_f32_vec().unwrap(), [1.0, -2.0]);
        assert_eq!(tensor.to_u16_vec().unwrap(), [0x3F80, 0xC000]);
    }

    #[test]
    fn conversions_check_dtype_and_size() {
        let words = 5u32.to_le_bytes();
        let record = record(DType::U32, "raw", &[1], 4);
        let tensor = Tensor::decode(&record, &words);
        let error = tensor.to_f32_vec().unwrap_err();
        assert_eq!(error.to_string(), "tensor `t`: is uint32, not a floating-point tensor");
        assert!(
            tensor
                .to_u16_vec()
                .unwrap_err()
                .to_string()
                .contains("is uint32, expected float16 or bfloat16")
        );

        let short =
            Tensor { name: "s", shape: &[3], dtype: DType::F16, bytes: Cow::Borrowed(&[0; 4]) };
        let error = short.to_f32_vec().unwrap_err();
        assert!(error.to_string().contains("4 bytes do not hold shape [3] of float16"), "{error}");
        assert!(
            short.to_u32_vec().unwrap_err().to_string().contains("is float16, expected uint32")
        );

        let overflowing = Tensor {
            name: "o",
            shape: &[usize::MAX, 4],
            dtype: DType::U32,
            bytes: Cow::Borrowed(&[]),
        };
        assert_eq!(overflowing.numel(), usize::MAX);
        assert!(overflowing.to_u32_vec().is_err());
    }
}
