//! `tensor-cache.json` / `ndarray-cache.json`: any text must parse and
//! validate or fail with an error, never panic. An index that passes
//! validation must keep the promises `Artifact::tensor` relies on, so the
//! target checks them independently: every record's bytes lie inside its
//! shard's declared size, that size matches shape × dtype, names are unique
//! and `find` returns the record of the name.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use mlc_loader::{DType, TensorIndex};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(index) = TensorIndex::from_json(text) else { return };
    let _ = index.total_bytes();
    let mut names = HashSet::new();
    for (position, shard) in index.shards.iter().enumerate() {
        assert_eq!(shard.format, "raw-shard");
        let shard_len =
            usize::try_from(shard.nbytes).expect("a validated shard size fits in memory");
        for record in &shard.records {
            assert!(
                names.insert(record.name.as_str()),
                "duplicate tensor `{}` passed validation",
                record.name
            );
            let start = usize::try_from(record.byte_offset)
                .expect("offset inside a shard that fits in memory");
            let end = start
                .checked_add(usize::try_from(record.nbytes).unwrap())
                .expect("record end overflows");
            assert!(
                end <= shard_len,
                "tensor `{}` ends at {end}, past its shard of {shard_len} bytes",
                record.name
            );
            let stored_size =
                if record.is_bf16_encoded() { 2 } else { record.dtype.size_in_bytes() };
            assert!(!record.is_bf16_encoded() || record.dtype == DType::F32);
            let elements = record
                .shape
                .iter()
                .try_fold(1usize, |count, &dim| count.checked_mul(dim))
                .expect("shape overflows");
            assert_eq!(
                elements.checked_mul(stored_size),
                Some(end - start),
                "tensor `{}`: size disagrees with shape",
                record.name
            );
            let (found_shard, found) = index.find(&record.name).expect("a listed tensor is found");
            assert_eq!((found_shard, found), (position, record));
        }
    }
    assert_eq!(index.names().count(), names.len());
});
