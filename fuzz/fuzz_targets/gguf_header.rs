//! The GGUF header parser of the converter (`mlc_convert::gguf`), fed whole
//! files: any bytes give a header or an error, never a panic, and memory
//! stays proportional to the input (libFuzzer's -rss_limit_mb catches a
//! parser that trusts a declared count). A header that parses must keep the
//! promises the converter relies on, checked here independently: the
//! alignment is a power of two, every tensor's data lies inside the file at
//! an aligned offset, and its element count is the product of its
//! dimensions. The tokenizer rebuilder and the dequantizers then run on
//! whatever the header describes, and must be total too.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mlc_convert::gguf::{build_tokenizer_json, dequantize, parse_header_bytes};

fuzz_target!(|data: &[u8]| {
    let Ok(header) = parse_header_bytes(data) else { return };
    assert!(header.alignment.is_power_of_two(), "alignment {}", header.alignment);
    assert_eq!(header.data_offset % header.alignment, 0);
    for tensor in &header.tensors {
        let elements = tensor.dims.iter().try_fold(1u64, |count, &dim| count.checked_mul(dim));
        assert_eq!(
            elements,
            Some(tensor.n_elements),
            "tensor `{}`: dims {:?}",
            tensor.name,
            tensor.dims
        );
        assert_eq!(tensor.offset % header.alignment, 0, "tensor `{}`", tensor.name);
        let start = header.data_offset.checked_add(tensor.offset).expect("tensor start overflows");
        let end = start.checked_add(tensor.n_bytes).expect("tensor end overflows");
        assert!(
            end <= data.len() as u64,
            "tensor `{}` ends at {end}, past the file's {} bytes",
            tensor.name,
            data.len()
        );
        if tensor.ggml_type.can_dequantize() && tensor.n_bytes <= 1 << 16 {
            let mut out = Vec::new();
            if dequantize(
                tensor.ggml_type,
                &data[start as usize..end as usize],
                &tensor.name,
                &mut out,
            )
            .is_ok()
            {
                assert_eq!(
                    out.len() as u64,
                    tensor.n_elements,
                    "tensor `{}` dequantized to the wrong length",
                    tensor.name
                );
            }
        }
    }
    let _ = build_tokenizer_json(&header, Path::new("<fuzz>"));
});
