//! Model files and checkpoints carry a CRC-32 of their content (issue 18): any flipped bit in a
//! tensor is caught on load with an error naming the file, files without a checksum still load.

use fm_train::tensors::{CHECKSUM_KEY, Tensor, decode, encode};
use proptest::prelude::*;
use std::collections::HashMap;
use std::path::Path;

/// The offset of the data section: 8 bytes of header length, then the header.
fn data_start(bytes: &[u8]) -> usize {
    8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

proptest! {
    /// A single flipped bit anywhere in the tensor bytes is caught (CRC-32 detects every
    /// single-bit error), and the same bytes unflipped decode to the same tensors.
    #[test]
    fn any_flipped_bit_in_the_data_is_caught(
        a in proptest::collection::vec(-1e3f32..1e3, 1..40),
        b in proptest::collection::vec(-1e3f64..1e3, 0..20),
        pick in any::<proptest::sample::Index>(),
        bit in 0u8..8,
    ) {
        let t = vec![
            Tensor::f32("a", vec![a.len()], a.clone()),
            Tensor::f64("b", vec![b.len()], b.clone()),
        ];
        let meta = HashMap::from([("k".to_string(), "{\"x\":1}".to_string())]);
        let bytes = encode(meta.clone(), &t).unwrap();
        let (m, back) = decode(Path::new("m.safetensors"), &bytes).unwrap();
        prop_assert_eq!(m, meta);
        prop_assert_eq!(back, t);
        let start = data_start(&bytes);
        let at = start + pick.index(bytes.len() - start);
        let mut bad = bytes.clone();
        bad[at] ^= 1 << bit;
        let err = decode(Path::new("m.safetensors"), &bad).unwrap_err();
        let msg = err.to_string();
        prop_assert!(msg.starts_with("m.safetensors: corrupt: checksum mismatch"), "{}", msg);
        prop_assert!(err.is_invalid_input());
    }
}

/// Rewrites the header of `bytes` with `f` applied to its metadata map.
fn edit_metadata(
    bytes: &[u8],
    f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> Vec<u8> {
    let start = data_start(bytes);
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..start]).unwrap();
    f(header["__metadata__"].as_object_mut().unwrap());
    let mut h = serde_json::to_vec(&header).unwrap();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[start..]);
    out
}

#[test]
fn metadata_edits_are_caught_and_files_without_a_checksum_load() {
    let t = vec![Tensor::f32("w", vec![3], vec![1.0, 2.0, 3.0])];
    let meta = HashMap::from([("fm_config".to_string(), "{\"steps\":10}".to_string())]);
    let bytes = encode(meta.clone(), &t).unwrap();
    // Same content, header laid out anew: still valid.
    let same = edit_metadata(&bytes, |_| {});
    assert!(decode(Path::new("m"), &same).is_ok());
    let edited = edit_metadata(&bytes, |m| {
        m.insert("fm_config".into(), "{\"steps\":11}".into());
    });
    let err = decode(Path::new("m"), &edited).unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    let garbled = edit_metadata(&bytes, |m| {
        m.insert(CHECKSUM_KEY.into(), "crc32:zz".into());
    });
    assert!(decode(Path::new("m"), &garbled).is_err());
    // A file from before checksums: no key, loads as before.
    let old = edit_metadata(&bytes, |m| {
        m.remove(CHECKSUM_KEY);
    });
    let (m, back) = decode(Path::new("m"), &old).unwrap();
    assert_eq!((m, back), (meta, t));
}
