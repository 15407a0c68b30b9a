//! A decode step of the fast CPU engine allocates nothing: every heap
//! allocation of the process is counted, and steps after the first two (which
//! size the tensor pool and scratch buffers) must add none.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use mlc_conformance::{converted_family, tiny_artifact};
use mlc_engine::backend::{Backend, PassInput, Placement};
use mlc_engine::cpu_fast::FastCpuBackend;
use mlc_engine::models::decoder::{Logits, forward};
use mlc_engine::models::spec_for;
use mlc_engine::weights;
use mlc_loader::{Artifact, OpenOptions};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting the calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_decode_step_allocates_nothing() {
    // One thread: rayon's workers allocate on their own schedule.
    // SAFETY: the only test of this binary sets it before any thread starts.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    let official = ["tiny-qwen2", "synthetic/qwen3-tiny"].map(|model| {
        let path = tiny_artifact(model);
        (model, None, Artifact::open(path.to_str().unwrap(), OpenOptions::default()).unwrap())
    });
    // Qwen3.5's Gated DeltaNet layers keep a recurrent state beside the KV
    // cache; Mistral's rolling cache (window 16) gathers what it holds at
    // every step, and the steps here (positions 5 to 18) fill the window and
    // then roll it.
    let families = ["families/qwen3_5-tiny", "families/mistral-window-tiny"].map(|model| {
        let (converted, artifact) = converted_family(model);
        (model, Some(converted), artifact)
    });
    for (model, _converted, artifact) in official.into_iter().chain(families) {
        let spec = spec_for(&artifact.config).unwrap();
        let mut backend = FastCpuBackend::new();
        let weights = weights::load(&spec, &artifact, &mut backend).unwrap();
        let prompt = [1u32, 2, 3, 4, 5];
        let logits = forward(
            &spec,
            &weights,
            &mut backend,
            PassInput::Tokens(&prompt),
            Placement::Run { start: 0 },
            Logits::Last,
            None,
        )
        .unwrap();
        backend.queue_argmax(&logits).unwrap();
        drop(logits);
        // The rolling cache's steps run past its window.
        let steps = if spec.rolling_window.is_some() { 14 } else { 6 };
        for step in 0..steps {
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            let position = prompt.len() + step;
            let logits = forward(
                &spec,
                &weights,
                &mut backend,
                PassInput::Queued,
                Placement::Run { start: position },
                Logits::Last,
                None,
            )
            .unwrap();
            let token = backend.queue_argmax(&logits).unwrap();
            drop(logits);
            let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
            assert!(token.is_some(), "{model}: step {step} chose a token");
            if step >= 2 {
                assert_eq!(allocations, 0, "{model}: decode step {step} allocated");
            }
        }
    }
}
