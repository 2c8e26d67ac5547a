//! `.npy` loader: the bytes as a `.npy` file given to `fm_data::read_points`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = flow_matching_fuzz::read_points_bytes("npy", data);
});
