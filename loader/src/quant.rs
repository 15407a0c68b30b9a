//! The quantization modes this loader supports (docs/mlc-format.md,
//! "Quantization").

use std::fmt;

use crate::{DType, LoadError};

/// A supported MLC quantization mode.
///
/// Only the NK-layout group quantizations (`*_1`) and the unquantized modes are
/// listed: their stored tensors are all this crate's consumers know how to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Quantization {
    /// 4-bit codes in groups of 32, float16 scales and activations.
    Q4F16_1,
    /// 4-bit codes in groups of 32, float32 scales and activations.
    Q4F32_1,
    /// No quantization, float16 weights.
    Q0F16,
    /// No quantization, float32 weights (stored bf16-encoded).
    Q0F32,
}

impl Quantization {
    /// Every supported mode.
    pub const ALL: [Quantization; 4] =
        [Quantization::Q4F16_1, Quantization::Q4F32_1, Quantization::Q0F16, Quantization::Q0F32];

    /// The names of [`Quantization::ALL`], for error messages.
    const NAMES: &'static [&'static str] = &["q4f16_1", "q4f32_1", "q0f16", "q0f32"];

    /// Parses a config's `quantization` value.
    pub fn parse(name: &str) -> Result<Quantization, LoadError> {
        Quantization::ALL.into_iter().find(|q| q.name() == name).ok_or_else(|| {
            LoadError::UnsupportedQuantization {
                name: name.to_string(),
                supported: Quantization::NAMES,
            }
        })
    }

    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            Quantization::Q4F16_1 => "q4f16_1",
            Quantization::Q4F32_1 => "q4f32_1",
            Quantization::Q0F16 => "q0f16",
            Quantization::Q0F32 => "q0f32",
        }
    }

    /// Weights per scale along the input dimension; `None` when unquantized.
    pub fn group_size(self) -> Option<usize> {
        match self {
            Quantization::Q4F16_1 | Quantization::Q4F32_1 => Some(32),
            Quantization::Q0F16 | Quantization::Q0F32 => None,
        }
    }

    /// The dtype of activations, scales and unquantized parameters.
    pub fn model_dtype(self) -> DType {
        match self {
            Quantization::Q4F16_1 | Quantization::Q0F16 => DType::F16,
            Quantization::Q4F32_1 | Quantization::Q0F32 => DType::F32,
        }
    }
}

impl fmt::Display for Quantization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_supported_name() {
        for q in Quantization::ALL {
            assert_eq!(Quantization::parse(q.name()).unwrap(), q);
        }
        assert_eq!(Quantization::ALL.map(Quantization::name), Quantization::NAMES);
        assert_eq!(Quantization::parse("q4f16_1").unwrap(), Quantization::Q4F16_1);
        assert_eq!(Quantization::Q4F32_1.group_size(), Some(32));
        assert_eq!(Quantization::Q0F16.group_size(), None);
        assert_eq!(Quantization::Q4F16_1.model_dtype(), DType::F16);
        assert_eq!(Quantization::Q0F32.model_dtype(), DType::F32);
    }

    #[test]
    fn unsupported_name_lists_the_supported_ones() {
        let error = Quantization::parse("q4f16_0").unwrap_err();
        assert!(
            matches!(&error, LoadError::UnsupportedQuantization { name, .. } if name == "q4f16_0")
        );
        assert_eq!(
            error.to_string(),
            "unsupported quantization `q4f16_0` (supported: q4f16_1, q4f32_1, q0f16, q0f32)"
        );
    }
}
