//! Model files: raw bytes to `ModelFile::from_bytes` + `TrainedModel::from_file`, then the field.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = flow_matching_fuzz::load_model_bytes(data);
});
