//! Inputs found by the fuzz targets in `fuzz/` (`scripts/fuzz.sh`) that crashed or nearly
//! crashed a loader of this crate. Each must now give a typed error naming the file.

use fm_data::{DataError, read_points};

/// The bytes of a `.npy` file: magic, `version`, the header length (`header_len`, or the real
/// length when `None`), the header text and the payload.
fn npy(version: u8, header_len: Option<u32>, header: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY".to_vec();
    out.extend([version, 0]);
    let len = header_len.unwrap_or(header.len() as u32);
    if version == 1 {
        out.extend((len as u16).to_le_bytes());
    } else {
        out.extend(len.to_le_bytes());
    }
    out.extend(header.as_bytes());
    out.extend(payload);
    out
}

fn load(name: &str, bytes: &[u8]) -> Result<ndarray::Array2<f64>, DataError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    read_points(&path)
}

fn assert_refused(name: &str, bytes: &[u8]) {
    match load(name, bytes) {
        Ok(x) => panic!(
            "{name}: loaded a {:?} array from {} bytes",
            x.dim(),
            bytes.len()
        ),
        Err(e) => assert!(
            e.to_string().contains(name),
            "{name}: error does not name the file: {e}"
        ),
    }
}

/// Found by the `npy` target (`oom-5eec64cd…`, 64 bytes): a version-2 header whose 4-byte
/// length field (0x9300_0074) says 2.4 GB while the file has 64 bytes. ndarray-npy allocates the
/// declared header length before reading it (libFuzzer: "out-of-memory (malloc(2466250868))").
/// It must be an error, and should be one without allocating more than the file's size.
#[test]
fn npy_header_length_beyond_the_file_is_an_error() {
    let found =
        b"\x93NUMPY\x02\x00\x74\x00\x00\x93\x00{'descrg: '<f8', 'fortran_order': False, 'shape': (";
    assert_eq!(found.len(), 64);
    assert_refused("fuzz-header-len.npy", found);
    assert_refused("max-header-len.npy", &npy(2, Some(u32::MAX), "{", b""));
}

/// A 128-byte `.npy` file whose header declares a (10⁸, 10⁸) float64 array (80 PB): the
/// reader allocates the declared size before reading the data, the allocation fails and the
/// process aborts ("memory allocation of 80000000000000000 bytes failed", exit 134 from
/// `fm train --target huge.npy`). Any declared size above RAM + swap does the same, e.g. (10⁵, 10⁵).
/// The data size the header declares is now checked against the file's length first.
#[test]
fn npy_shape_beyond_the_file_is_an_error_not_an_abort() {
    for shape in [
        "(100000000, 100000000)",
        "(100000, 100000)",
        "(1, 1152921504606846975)",
    ] {
        let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        assert_refused("huge-shape.npy", &npy(1, None, &header, &[0; 16]));
    }
}

/// The size check must not refuse a valid file: a (2, 3) float64 array with exactly its 48
/// data bytes loads, and one byte less is refused.
#[test]
fn npy_size_check_accepts_exact_data_and_refuses_one_byte_short() {
    let mut header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }".to_string();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let payload: Vec<u8> = (0..6).flat_map(|i| (i as f64).to_le_bytes()).collect();
    let x = load("exact.npy", &npy(1, None, &header, &payload)).unwrap();
    assert_eq!(x, ndarray::array![[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]);
    assert_refused("short.npy", &npy(1, None, &header, &payload[..47]));
}
