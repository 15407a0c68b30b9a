//! The fast CPU engine's int8 prefill (`MLC_WGPU_CPU_INT8=1`, off by
//! default) against the float32 oracle on the tiny fixtures. Its own test
//! binary, because it sets the variable for the whole process.
//!
//! int8 activations put the logits outside the 5e-2 × std bound the default
//! int16 engine is held to (`cpu_fast.rs`; docs/performance.md, "Accuracy
//! against the oracle": up to 1.0e-1 here), so this checks what the opt-in
//! promises instead: a prompt of at least four tokens takes the int8
//! products (its logits differ from the default engine's) and stays within
//! 0.2 × the oracle's logit std, twice the worst error measured, which a
//! wrong zero point or scale would exceed; a prompt of fewer tokens and
//! one-token steps run the int16 products, bit for bit the default engine's.

use mlc_conformance::*;
use mlc_engine::{LanguageModel, load_cpu, load_cpu_fast};
use mlc_loader::{Artifact, OpenOptions};
use pollster::FutureExt as _;

/// The bound on the int8 prefill's error, relative to the oracle's std.
const INT8_TOLERANCE: f32 = 0.2;

#[test]
fn int8_prefill_is_taken_and_stays_near_the_oracle() {
    for model in TINY_MODELS {
        let artifact =
            Artifact::open(tiny_artifact(model).to_str().unwrap(), OpenOptions::default()).unwrap();
        let mut oracle = load_cpu(&artifact).unwrap();
        // SAFETY: this binary's only test sets and reads the variable, on
        // its one thread.
        unsafe { std::env::remove_var("MLC_WGPU_CPU_INT8") };
        let mut int16 = load_cpu_fast(&artifact).unwrap();
        unsafe { std::env::set_var("MLC_WGPU_CPU_INT8", "1") };
        let mut int8 = load_cpu_fast(&artifact).unwrap();
        let mut long_prompts = 0;
        for prompt in golden(model).prompts {
            let ids = &prompt.token_ids;
            oracle.reset();
            int16.reset();
            int8.reset();
            let want = oracle.prefill(ids).block_on().unwrap();
            let default = int16.prefill(ids).block_on().unwrap();
            let got = int8.prefill(ids).block_on().unwrap();
            let what = format!("{model} {}", prompt.name);
            assert_close(&format!("{what} int8 prefill"), &got, &want, INT8_TOLERANCE);
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            if ids.len() >= 4 {
                long_prompts += 1;
                assert!(bits(&got) != bits(&default), "{what}: the int8 products were not taken");
            } else {
                assert!(bits(&got) == bits(&default), "{what}: fewer than four tokens are int16");
            }
            // Fed one token at a time (a decode step's one-row products),
            // the prompt gives the default engine's logits at every step.
            int16.reset();
            int8.reset();
            for &id in ids {
                let a = int16.prefill(&[id]).block_on().unwrap();
                let b = int8.prefill(&[id]).block_on().unwrap();
                assert!(bits(&a) == bits(&b), "{what}: a one-token step is int16");
            }
        }
        assert!(long_prompts > 0, "{model}: no prompt of four tokens or more");
    }
}
