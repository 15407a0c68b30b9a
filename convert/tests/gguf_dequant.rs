//! The GGUF reader against llama.cpp's own Python package (gguf-py): every
//! dequantizer bit for bit against gguf-py's numpy dequantizers, and every
//! metadata value type as gguf-py's writer wrote it. The fixtures are made by
//! conformance/tools/make_gguf_fixtures.py.

mod common;

use common::{fixtures, read_f32};
use mlc_convert::gguf::{GgmlType, GgufArray, GgufFile, GgufValue};
use serde_json::{Value, json};

#[test]
fn every_supported_type_dequantizes_bit_for_bit_like_gguf_py() {
    let mut file = GgufFile::open(&fixtures().join("dequant.gguf")).unwrap();
    let names: Vec<(String, GgmlType, Vec<u64>)> = file
        .header()
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.ggml_type, t.dims.clone()))
        .collect();
    let want_types = [
        "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K",
        "Q5_K", "Q6_K", "Q8_K",
    ];
    assert_eq!(names.iter().map(|(n, _, _)| n.as_str()).collect::<Vec<_>>(), want_types);
    for (name, ty, dims) in names {
        // Each tensor is named after its type; GGUF lists [columns, rows].
        assert_eq!(ty.name(), name);
        assert_eq!(dims, [512, 3], "{name}");
        assert!(ty.can_dequantize(), "{name}");
        let got = file.read_f32(&name).unwrap();
        let want = read_f32(&fixtures().join("expected").join(format!("{name}.f32")));
        assert_eq!(got.len(), want.len(), "{name}");
        let mismatches: Vec<usize> =
            (0..got.len()).filter(|&i| got[i].to_bits() != want[i].to_bits()).collect();
        assert!(
            mismatches.is_empty(),
            "{name}: {} of {} values differ from gguf-py, first at {}: {} vs {}",
            mismatches.len(),
            got.len(),
            mismatches[0],
            got[mismatches[0]],
            want[mismatches[0]]
        );
        // Not all zeros: the fixture exercises the codes and the scales.
        assert!(got.iter().filter(|v| **v != 0.0).count() > got.len() / 2, "{name}");
    }
}

/// The type name and value of a metadata entry, as the fixture script lists them.
fn describe(value: &GgufValue) -> (String, Value) {
    match value {
        GgufValue::U8(v) => ("UINT8".into(), json!(v)),
        GgufValue::I8(v) => ("INT8".into(), json!(v)),
        GgufValue::U16(v) => ("UINT16".into(), json!(v)),
        GgufValue::I16(v) => ("INT16".into(), json!(v)),
        GgufValue::U32(v) => ("UINT32".into(), json!(v)),
        GgufValue::I32(v) => ("INT32".into(), json!(v)),
        GgufValue::F32(v) => ("FLOAT32".into(), json!(f64::from(*v))),
        GgufValue::Bool(v) => ("BOOL".into(), json!(v)),
        GgufValue::String(v) => ("STRING".into(), json!(v)),
        GgufValue::U64(v) => ("UINT64".into(), json!(v)),
        GgufValue::I64(v) => ("INT64".into(), json!(v)),
        GgufValue::F64(v) => ("FLOAT64".into(), json!(v)),
        GgufValue::Array(a) => {
            let (ty, v) = describe_array(a);
            (format!("ARRAY[{ty}]"), v)
        }
    }
}

fn describe_array(a: &GgufArray) -> (&'static str, Value) {
    match a {
        GgufArray::U8(v) => ("UINT8", json!(v)),
        GgufArray::I8(v) => ("INT8", json!(v)),
        GgufArray::U16(v) => ("UINT16", json!(v)),
        GgufArray::I16(v) => ("INT16", json!(v)),
        GgufArray::U32(v) => ("UINT32", json!(v)),
        GgufArray::I32(v) => ("INT32", json!(v)),
        GgufArray::F32(v) => {
            ("FLOAT32", json!(v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>()))
        }
        GgufArray::Bool(v) => ("BOOL", json!(v)),
        GgufArray::String(v) => ("STRING", json!(v)),
        GgufArray::U64(v) => ("UINT64", json!(v)),
        GgufArray::I64(v) => ("INT64", json!(v)),
        GgufArray::F64(v) => ("FLOAT64", json!(v)),
        GgufArray::Array(v) => {
            ("ARRAY", Value::Array(v.iter().map(|a| describe_array(a).1).collect()))
        }
    }
}

#[test]
fn every_metadata_value_type_reads_as_gguf_py_wrote_it() {
    let expected: serde_json::Map<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("metadata.expected.json")).unwrap(),
    )
    .unwrap();
    let mut file = GgufFile::open(&fixtures().join("metadata.gguf")).unwrap();
    let header = file.header().clone();
    assert_eq!(header.version, 3);
    assert_eq!(header.alignment, 64, "general.alignment is honoured");
    assert_eq!(header.data_offset % 64, 0);
    assert_eq!(header.get("general.architecture").and_then(GgufValue::as_str), Some("test"));
    for (key, want) in &expected {
        let got = header.get(key).unwrap_or_else(|| panic!("{key} missing"));
        let (ty, value) = describe(got);
        assert_eq!(ty, want["type"].as_str().unwrap(), "{key} type");
        assert_eq!(value, want["value"], "{key} value");
    }
    // -0.0 keeps its sign (JSON equality would not notice).
    let GgufValue::Array(GgufArray::F64(f)) = header.get("test.array.f64").unwrap() else {
        panic!()
    };
    assert!(f[1].is_sign_negative());

    // The two tensors, at 64-byte aligned offsets, read back exactly.
    assert_eq!(header.tensors.len(), 2);
    assert!(header.tensors.iter().all(|t| t.offset % 64 == 0));
    assert_eq!(file.read_f32("first").unwrap(), (0..8).map(|i| i as f32).collect::<Vec<_>>());
    assert_eq!(file.read_f32("second").unwrap(), (0..64).map(|i| i as f32).collect::<Vec<_>>());
}
