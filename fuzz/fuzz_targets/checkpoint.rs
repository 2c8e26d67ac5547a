//! Checkpoints: raw bytes to `Checkpoint::from_bytes`, save/load round trip, one resumed step.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = flow_matching_fuzz::load_checkpoint_bytes(data);
});
