//! The weight index, `tensor-cache.json` or `ndarray-cache.json`
//! (docs/mlc-format.md, "Tensor index").

use std::collections::HashSet;

use serde::Deserialize;

use crate::paths::check_relative_file;
use crate::{DType, LoadError, json};

/// The index's current file name.
pub const TENSOR_CACHE_FILE: &str = "tensor-cache.json";
/// The index's file name in artifacts converted before September 2025.
pub const NDARRAY_CACHE_FILE: &str = "ndarray-cache.json";
/// Index file names, in the order they are tried.
pub(crate) const INDEX_FILES: [&str; 2] = [TENSOR_CACHE_FILE, NDARRAY_CACHE_FILE];

/// The record `format` that stores float32 tensors as bf16 (docs/mlc-format.md,
/// "Record format and bf16").
const F32_TO_BF16: &str = "f32-to-bf16";
/// The record `format` of bytes stored as they are.
const RAW: &str = "raw";
/// The only shard `format` there is.
const RAW_SHARD: &str = "raw-shard";

/// One tensor stored in a shard.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TensorRecord {
    /// MLC parameter name, e.g. `model.layers.0.self_attn.qkv_proj.q_weight`.
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Element type after decoding.
    pub dtype: DType,
    /// `f32-to-bf16` (applies to float32 records only) or `raw`.
    pub format: String,
    /// Stored bytes.
    pub nbytes: u64,
    /// Start of the stored bytes in the shard.
    #[serde(rename = "byteOffset")]
    pub byte_offset: u64,
}

impl TensorRecord {
    /// True when the record holds float32 values stored as bf16 halves.
    pub fn is_bf16_encoded(&self) -> bool {
        self.dtype == DType::F32 && self.format == F32_TO_BF16
    }

    /// Bytes per stored element: half the dtype's size for bf16-encoded float32.
    fn stored_element_size(&self) -> usize {
        if self.is_bf16_encoded() { 2 } else { self.dtype.size_in_bytes() }
    }
}

/// One shard file and the tensors in it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ShardEntry {
    /// File name relative to the artifact folder.
    #[serde(rename = "dataPath")]
    pub data_path: String,
    /// Always `raw-shard`.
    pub format: String,
    /// Exact file size.
    pub nbytes: u64,
    /// Hex md5 of the file (artifacts since late 2023).
    #[serde(default)]
    pub md5sum: Option<String>,
    /// The tensors stored in the file.
    pub records: Vec<TensorRecord>,
}

/// The parsed and validated weight index.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct TensorIndex {
    /// Shard files, in index order.
    #[serde(rename = "records")]
    pub shards: Vec<ShardEntry>,
    /// Informational totals (`ParamSize`, `ParamBytes`, `BitsPerParam`).
    #[serde(default)]
    pub metadata: serde_json::Value,
}

impl TensorIndex {
    /// Parses and validates the text of an index file.
    ///
    /// Checks that every shard is a `raw-shard` with a plain relative
    /// `dataPath`, that every record lies inside its shard and has the size its
    /// shape and dtype imply, and that tensor names are unique.
    pub fn from_json(text: &str) -> Result<TensorIndex, LoadError> {
        TensorIndex::parse(text, TENSOR_CACHE_FILE)
    }

    /// Parses index text read from `file`, naming it in errors.
    pub(crate) fn parse(text: &str, file: &str) -> Result<TensorIndex, LoadError> {
        let error = |message| LoadError::Index { file: file.to_string(), message };
        let index: TensorIndex = json::parse(text).map_err(error)?;
        index.validate().map_err(error)?;
        Ok(index)
    }

    /// Finds a tensor by name: its shard's position in [`TensorIndex::shards`] and its record.
    pub fn find(&self, name: &str) -> Option<(usize, &TensorRecord)> {
        // A scan rather than a map: the public fields stay the single source of
        // truth, and a few hundred comparisons per lookup cost nothing next to
        // reading the tensor.
        self.shards.iter().enumerate().find_map(|(shard, entry)| {
            entry.records.iter().find(|record| record.name == name).map(|record| (shard, record))
        })
    }

    /// All tensor names, shard by shard in index order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.shards.iter().flat_map(|shard| shard.records.iter().map(|record| record.name.as_str()))
    }

    /// Total size of the shard files.
    pub fn total_bytes(&self) -> u64 {
        self.shards.iter().fold(0, |total, shard| total.saturating_add(shard.nbytes))
    }

    fn validate(&self) -> Result<(), String> {
        let mut paths = HashSet::new();
        let mut names = HashSet::new();
        for shard in &self.shards {
            let path = &shard.data_path;
            check_relative_file(path).map_err(|message| format!("shard `dataPath`: {message}"))?;
            if !paths.insert(path.as_str()) {
                return Err(format!("shard `{path}` is listed twice"));
            }
            if shard.format != RAW_SHARD {
                return Err(format!(
                    "shard `{path}`: format `{}` is not supported (only `{RAW_SHARD}`)",
                    shard.format
                ));
            }
            // Shards are read whole into memory.
            if usize::try_from(shard.nbytes).is_err() {
                return Err(format!(
                    "shard `{path}`: {} bytes do not fit in memory on this platform",
                    shard.nbytes
                ));
            }
            let malformed_md5 = shard
                .md5sum
                .as_ref()
                .filter(|md5| md5.len() != 32 || !md5.bytes().all(|b| b.is_ascii_hexdigit()));
            if let Some(md5) = malformed_md5 {
                return Err(format!("shard `{path}`: md5sum `{md5}` is not 32 hex digits"));
            }
            for record in &shard.records {
                if !names.insert(record.name.as_str()) {
                    return Err(format!("tensor `{}` is listed twice", record.name));
                }
                check_record(record, shard)?;
            }
        }
        Ok(())
    }
}

fn check_record(record: &TensorRecord, shard: &ShardEntry) -> Result<(), String> {
    let name = &record.name;
    if record.format != F32_TO_BF16 && record.format != RAW {
        return Err(format!(
            "tensor `{name}`: format `{}` is not supported (`{F32_TO_BF16}` or `{RAW}`)",
            record.format
        ));
    }
    let end = record.byte_offset.checked_add(record.nbytes).filter(|&end| end <= shard.nbytes);
    if end.is_none() {
        return Err(format!(
            "tensor `{name}`: {} bytes at offset {} do not fit in shard `{}` of {} bytes",
            record.nbytes, record.byte_offset, shard.data_path, shard.nbytes
        ));
    }
    let expected = element_count(&record.shape)
        .and_then(|count| count.checked_mul(record.stored_element_size()))
        .and_then(|bytes| u64::try_from(bytes).ok());
    if expected != Some(record.nbytes) {
        let encoding = if record.is_bf16_encoded() { " stored as bf16" } else { "" };
        let implied =
            expected.map_or("an overflowing size".to_string(), |bytes| format!("{bytes} bytes"));
        return Err(format!(
            "tensor `{name}`: nbytes {} disagrees with shape {:?} of {}{encoding}, which takes {implied}",
            record.nbytes, record.shape, record.dtype
        ));
    }
    Ok(())
}

/// The product of a shape, or `None` when it overflows.
pub(crate) fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |count, &dim| count.checked_mul(dim))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const TINY_QWEN2: &str = include_str!("../tests/fixtures/tiny-qwen2.tensor-cache.json");

    /// An index with one shard holding the given records, packed from offset 0.
    fn index_json(records: Value) -> Value {
        let nbytes: u64 =
            records.as_array().unwrap().iter().map(|r| r["nbytes"].as_u64().unwrap()).sum();
        json!({
            "metadata": {"ParamSize": 1},
            "records": [{"dataPath": "params_shard_0.bin", "format": "raw-shard", "nbytes": nbytes,
                         "records": records, "md5sum": "0123456789abcdef0123456789ABCDEF"}]
        })
    }

    fn record(name: &str, shape: &[usize], dtype: &str, nbytes: u64, offset: u64) -> Value {
        json!({"name": name, "shape": shape, "dtype": dtype, "format": "f32-to-bf16", "nbytes": nbytes, "byteOffset": offset})
    }

    fn parse(index: &Value) -> Result<TensorIndex, String> {
        TensorIndex::from_json(&index.to_string()).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_the_conformance_index() {
        let index = TensorIndex::from_json(TINY_QWEN2).unwrap();
        assert_eq!(index.shards.len(), 1);
        assert_eq!(index.names().count(), 25);
        assert_eq!(index.total_bytes(), 5_539_968);
        assert_eq!(index.metadata["ParamSize"], 25);
        let shard = &index.shards[0];
        assert_eq!(
            (shard.data_path.as_str(), shard.format.as_str()),
            ("params_shard_0.bin", "raw-shard")
        );
        assert_eq!(shard.md5sum.as_ref().map(String::len), Some(32));
        let (at, scale) = index.find("model.embed_tokens.q_scale").unwrap();
        assert_eq!(at, 0);
        assert_eq!(
            (scale.shape.as_slice(), scale.dtype, scale.nbytes, scale.byte_offset),
            (&[151936, 2][..], DType::F16, 607_744, 4_861_952)
        );
        assert!(!scale.is_bf16_encoded());
        assert!(index.find("lm_head.q_weight").is_none());
        assert_eq!(index.names().next(), Some("model.embed_tokens.q_weight"));
    }

    #[test]
    fn float32_records_encoded_as_bf16_take_half_the_bytes() {
        let index = parse(&index_json(json!([record("norm", &[3, 2], "float32", 12, 0)]))).unwrap();
        assert!(index.find("norm").unwrap().1.is_bf16_encoded());

        let mut raw = record("norm", &[3, 2], "float32", 24, 0);
        raw["format"] = json!("raw");
        let index = parse(&index_json(json!([raw]))).unwrap();
        assert!(!index.find("norm").unwrap().1.is_bf16_encoded());

        let error =
            parse(&index_json(json!([record("norm", &[3, 2], "float32", 24, 0)]))).unwrap_err();
        assert!(
            error.contains("tensor `norm`: nbytes 24 disagrees with shape [3, 2] of float32 stored as bf16, which takes 12 bytes"),
            "{error}"
        );
    }

    #[test]
    fn rejects_sizes_that_disagree_with_shape_or_shard() {
        let error = parse(&index_json(json!([record("w", &[4, 2], "uint32", 16, 0)]))).unwrap_err();
        assert!(
            error.starts_with(
                "tensor-cache.json: tensor `w`: nbytes 16 disagrees with shape [4, 2] of uint32"
            ),
            "{error}"
        );

        let mut index = index_json(json!([
            record("a", &[2], "float16", 4, 0),
            record("b", &[2], "float16", 4, 4)
        ]));
        index["records"][0]["records"][1]["byteOffset"] = json!(6);
        let error = parse(&index).unwrap_err();
        assert!(error.contains("tensor `b`: 4 bytes at offset 6 do not fit in shard `params_shard_0.bin` of 8 bytes"), "{error}");

        index["records"][0]["records"][1]["byteOffset"] = json!(u64::MAX);
        assert!(parse(&index).unwrap_err().contains("tensor `b`"));

        let huge = index_json(json!([record("h", &[usize::MAX, 2], "float16", 4, 0)]));
        assert!(parse(&huge).unwrap_err().contains("an overflowing size"));
    }

    #[test]
    fn rejects_duplicates_and_unknown_formats() {
        let twice = index_json(json!([
            record("a", &[2], "float16", 4, 0),
            record("a", &[2], "float16", 4, 4)
        ]));
        assert!(parse(&twice).unwrap_err().contains("tensor `a` is listed twice"));

        let mut odd_format = index_json(json!([record("a", &[2], "float16", 4, 0)]));
        odd_format["records"][0]["records"][0]["format"] = json!("f16-to-q8");
        assert!(
            parse(&odd_format)
                .unwrap_err()
                .contains("tensor `a`: format `f16-to-q8` is not supported")
        );

        let mut shard_format = index_json(json!([record("a", &[2], "float16", 4, 0)]));
        shard_format["records"][0]["format"] = json!("zip");
        assert!(
            parse(&shard_format)
                .unwrap_err()
                .contains("shard `params_shard_0.bin`: format `zip` is not supported")
        );

        let mut two_shards = index_json(json!([record("a", &[2], "float16", 4, 0)]));
        let copy = two_shards["records"][0].clone();
        two_shards["records"].as_array_mut().unwrap().push(copy);
        assert!(
            parse(&two_shards).unwrap_err().contains("shard `params_shard_0.bin` is listed twice")
        );

        let mut bad_md5 = index_json(json!([record("a", &[2], "float16", 4, 0)]));
        bad_md5["records"][0]["md5sum"] = json!("xyz");
        assert!(parse(&bad_md5).unwrap_err().contains("md5sum `xyz` is not 32 hex digits"));
    }

    #[test]
    fn rejects_data_paths_outside_the_artifact() {
        for path in ["../secret.bin", "/etc/passwd", "a/../../b", "C:\\x.bin"] {
            let mut index = index_json(json!([record("a", &[2], "float16", 4, 0)]));
            index["records"][0]["dataPath"] = json!(path);
            let error = parse(&index).unwrap_err();
            assert!(error.contains("shard `dataPath`"), "{path}: {error}");
        }
    }

    #[test]
    fn schema_errors_name_the_json_path() {
        let error = parse(&index_json(json!([record("a", &[2], "int8", 2, 0)]))).unwrap_err();
        assert!(error.contains("`records[0].records[0].dtype`: unknown variant `int8`"), "{error}");
        let error = TensorIndex::from_json(r#"{"records": [{"dataPath": "x.bin"}]}"#).unwrap_err();
        assert!(error.to_string().contains("missing field"), "{error}");
        let error = TensorIndex::parse("[]", "/m/ndarray-cache.json").unwrap_err();
        assert!(
            matches!(&error, LoadError::Index { file, .. } if file == "/m/ndarray-cache.json"),
            "{error:?}"
        );
    }

    #[test]
    fn empty_index_is_valid_and_empty() {
        let index = TensorIndex::from_json(r#"{"records": []}"#).unwrap();
        assert_eq!((index.total_bytes(), index.names().count()), (0, 0));
        assert_eq!(index.metadata, Value::Null);
    }
}
