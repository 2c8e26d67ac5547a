//! Checkpoints, structured: the input is the `fm_checkpoint` JSON (+ NUL + params control).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = flow_matching_fuzz::load_checkpoint_state(data);
});
