//! Model files, structured: the input is the `fm_config` JSON (+ NUL + tensor damage).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = flow_matching_fuzz::load_model_config(data);
});
