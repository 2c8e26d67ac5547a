//! CSV and .npy round trips, every bad-file case, and file-backed datasets.

use fm_data::{DataError, Dataset, Points, read_points, write_points};
use ndarray::{Array1, Array2, Array3, array};
use ndarray_npy::WriteNpyExt;
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn npy<T: WriteNpyExt>(dir: &Path, name: &str, a: &T) -> PathBuf {
    let p = dir.join(name);
    let mut buf = Vec::new();
    a.write_npy(&mut buf).unwrap();
    std::fs::write(&p, buf).unwrap();
    p
}

fn mentions(e: &DataError, p: &Path) {
    assert!(e.to_string().contains(&p.display().to_string()), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any finite (n, d) array survives a CSV and an .npy round trip bit for bit.
    #[test]
    fn round_trips_are_exact(n in 1usize..20, d in 1usize..7, seed in any::<u64>(), big in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = fm_core::rng::seeded(seed);
        let scale = if big { 1e200 } else { 1.0 };
        let x = fm_core::StandardNormal::new(d).unwrap().sample(n, &mut rng) * scale;
        for name in ["a.csv", "a.npy", "b.CSV", "b.NPY"] {
            let p = dir.path().join(name);
            write_points(&p, x.view()).unwrap();
            prop_assert_eq!(&read_points(&p).unwrap(), &x);
        }
    }
}

#[test]
fn csv_header_is_detected_and_whitespace_comments_blank_lines_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let want = array![[1.0, -2.5, 3e-3], [4.0, 5.0, 6.0]];
    let with = write(
        dir.path(),
        "h.csv",
        "# a comment\nx, y ,z\n\n1, -2.5,3e-3\n 4,5,6 \n",
    );
    assert_eq!(read_points(&with).unwrap(), want);
    let without = write(dir.path(), "n.csv", "1,-2.5,0.003\n4,5,6");
    assert_eq!(read_points(&without).unwrap(), want);
    let one_col = write(dir.path(), "o.csv", "v\n1\n2\n3\n");
    assert_eq!(read_points(&one_col).unwrap(), array![[1.0], [2.0], [3.0]]);
}

#[test]
fn f32_and_big_endian_npy_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let x32 = array![[1.5f32, -2.25], [0.1, 4.0]];
    let p = npy(dir.path(), "f.npy", &x32);
    assert_eq!(read_points(&p).unwrap(), x32.mapv(f64::from));
    // A hand-made big-endian float64 header.
    let header = "{'descr': '>f8', 'fortran_order': False, 'shape': (1, 2), }";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let pad = 64 - (10 + header.len() + 1) % 64;
    let hlen = header.len() + pad + 1;
    bytes.extend_from_slice(&(hlen as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(std::iter::repeat_n(b' ', pad));
    bytes.push(b'\n');
    bytes.extend_from_slice(&1.5f64.to_be_bytes());
    bytes.extend_from_slice(&(-3.0f64).to_be_bytes());
    let p = dir.path().join("be.npy");
    std::fs::write(&p, bytes).unwrap();
    assert_eq!(read_points(&p).unwrap(), array![[1.5, -3.0]]);
}

#[test]
fn csv_errors_give_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = write(d, "ragged.csv", "a,b\n1,2\n3,4,5\n");
    let e = read_points(&p).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::RaggedRow {
                line: 3,
                expected: 2,
                found: 3,
                ..
            }
        ),
        "{e}"
    );
    mentions(&e, &p);
    let p = write(d, "short.csv", "1,2\n3\n");
    assert!(matches!(
        read_points(&p).unwrap_err(),
        DataError::RaggedRow {
            line: 2,
            expected: 2,
            found: 1,
            ..
        }
    ));
    let p = write(d, "text.csv", "1,2\n3,4\n5,abc\n");
    let e = read_points(&p).unwrap_err();
    assert!(
        matches!(&e, DataError::NonNumeric { line: 3, column: 2, cell, .. } if cell == "abc"),
        "{e}"
    );
    assert!(e.to_string().contains("line 3, column 2"), "{e}");
    mentions(&e, &p);
    let p = write(d, "emptycell.csv", "1,2\n,4\n");
    assert!(matches!(
        read_points(&p).unwrap_err(),
        DataError::NonNumeric {
            line: 2,
            column: 1,
            ..
        }
    ));
    let p = write(d, "mixed_header.csv", "x,1\n2,3\n");
    assert!(matches!(
        read_points(&p).unwrap_err(),
        DataError::NonNumeric {
            line: 1,
            column: 1,
            ..
        }
    ));
    let p = write(d, "nan.csv", "x,y\n1,2\n3,NaN\n");
    let e = read_points(&p).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::NonFiniteCell {
                line: 3,
                column: 2,
                ..
            }
        ),
        "{e}"
    );
    let p = write(d, "inf.csv", "1,2\n-inf,2\n");
    assert!(matches!(
        read_points(&p).unwrap_err(),
        DataError::NonFiniteCell {
            line: 2,
            column: 1,
            ..
        }
    ));
    let p = write(d, "empty.csv", "");
    let e = read_points(&p).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::EmptyFile {
                reason: "the file is empty",
                ..
            }
        ),
        "{e}"
    );
    mentions(&e, &p);
    let p = write(d, "blank.csv", "\n  \n");
    assert!(matches!(
        read_points(&p).unwrap_err(),
        DataError::EmptyFile { .. }
    ));
    let p = write(d, "header.csv", "x,y\n");
    assert!(matches!(
        read_points(&p).unwrap_err(),
        DataError::EmptyFile {
            reason: "only a header",
            ..
        }
    ));
    let p = d.join("bad_utf8.csv");
    std::fs::write(&p, b"1,2\n3,\xff\n").unwrap();
    assert!(read_points(&p).is_err());
}

#[test]
fn npy_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = npy(d, "one_d.npy", &Array1::from(vec![1.0f64, 2.0]));
    let e = read_points(&p).unwrap_err();
    assert!(matches!(e, DataError::NpyNdim { found: 1, .. }), "{e}");
    mentions(&e, &p);
    let p = npy(d, "three_d.npy", &Array3::<f64>::zeros((2, 2, 2)));
    assert!(matches!(
        read_points(&p).unwrap_err(),
        DataError::NpyNdim { found: 3, .. }
    ));
    let p = npy(d, "int.npy", &array![[1i64, 2], [3, 4]]);
    let e = read_points(&p).unwrap_err();
    assert!(
        matches!(&e, DataError::NpyDtype { found, .. } if found.contains("i8")),
        "{e}"
    );
    let full = std::fs::read(npy(d, "ok.npy", &array![[1.0f64, 2.0], [3.0, 4.0]])).unwrap();
    let p = d.join("truncated.npy");
    std::fs::write(&p, &full[..full.len() - 4]).unwrap();
    let e = read_points(&p).unwrap_err();
    assert!(matches!(e, DataError::NpyFormat { .. }), "{e}");
    mentions(&e, &p);
    std::fs::write(&p, &full[..20]).unwrap();
    assert!(matches!(
        read_points(&p).unwrap_err(),
        DataError::NpyFormat { .. }
    ));
    let p = write(d, "garbage.npy", "this is not numpy");
    assert!(matches!(
        read_points(&p).unwrap_err(),
        DataError::NpyFormat { .. }
    ));
    let p = npy(d, "nan.npy", &array![[1.0f64, 2.0], [f64::NAN, 4.0]]);
    assert!(matches!(
        read_points(&p).unwrap_err(),
        DataError::NonFiniteEntry { row: 1, col: 0, .. }
    ));
    let p = npy(d, "zero_rows.npy", &Array2::<f64>::zeros((0, 3)));
    assert!(matches!(
        read_points(&p).unwrap_err(),
        DataError::EmptyFile { .. }
    ));
}

#[test]
fn filesystem_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let missing = d.join("missing.csv");
    let e = read_points(&missing).unwrap_err();
    assert!(
        matches!(&e, DataError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{e}"
    );
    mentions(&e, &missing);
    let sub = d.join("folder.npy");
    std::fs::create_dir(&sub).unwrap();
    assert!(matches!(
        read_points(&sub).unwrap_err(),
        DataError::NotAFile { .. }
    ));
    let e = read_points(d.join("points.txt")).unwrap_err();
    assert!(matches!(e, DataError::UnknownExtension { .. }), "{e}");
    assert!(matches!(
        write_points(d.join("x.json"), array![[1.0]].view()).unwrap_err(),
        DataError::UnknownExtension { .. }
    ));
    assert!(matches!(
        write_points(d.join("no/such/dir/x.csv"), array![[1.0]].view()).unwrap_err(),
        DataError::Io { .. }
    ));
}

#[cfg(unix)]
#[test]
fn unreadable_file_is_a_permission_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "secret.csv", "1,2\n");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&p).is_ok() {
        // Running as root: permissions are not enforced, nothing to test here.
        eprintln!("skipped: the file stays readable (root)");
        return;
    }
    let e = read_points(&p).unwrap_err();
    assert!(
        matches!(&e, DataError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied),
        "{e}"
    );
}

#[test]
fn writes_are_atomic_and_refuse_bad_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.csv");
    write_points(&p, array![[1.0, 2.0]].view()).unwrap();
    write_points(&p, array![[3.0, 4.0], [5.0, 6.0]].view()).unwrap();
    assert_eq!(read_points(&p).unwrap(), array![[3.0, 4.0], [5.0, 6.0]]);
    // A rejected write leaves the old file untouched and no temporary file behind.
    assert!(write_points(&p, array![[f64::NAN, 0.0]].view()).is_err());
    assert!(write_points(&p, Array2::<f64>::zeros((0, 2)).view()).is_err());
    assert_eq!(read_points(&p).unwrap(), array![[3.0, 4.0], [5.0, 6.0]]);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("x.csv")]);
    // A transposed (non-standard layout) view is written in logical order.
    let t = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
    let q = dir.path().join("t.npy");
    write_points(&q, t.t()).unwrap();
    assert_eq!(read_points(&q).unwrap(), t.t().to_owned());
}

#[test]
fn file_dataset_samples_rows_with_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("three.npy");
    let x = array![[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]];
    write_points(&p, x.view()).unwrap();
    let ds = Dataset::parse(p.to_str().unwrap(), Some(3)).unwrap();
    assert_eq!((ds.dim(), ds.name()), (3, p.display().to_string()));
    assert!(matches!(
        Dataset::parse(p.to_str().unwrap(), Some(2)).unwrap_err(),
        DataError::DimMismatch {
            expected: 2,
            found: 3,
            ..
        }
    ));
    let mut rng = fm_core::rng::seeded(5);
    let s = ds.sample(3000, &mut rng).unwrap();
    let mut counts = [0usize; 3];
    for r in s.rows() {
        let k = r[0] as usize;
        assert!(r.iter().all(|&v| v == k as f64));
        counts[k] += 1;
    }
    for c in counts {
        // Binomial(3000, 1/3): sd ≈ 26.
        assert!((c as f64 - 1000.0).abs() < 130.0, "{counts:?}");
    }
    assert_eq!(s, ds.sample(3000, &mut fm_core::rng::seeded(5)).unwrap());
    assert!(ds.sample(0, &mut rng).is_err());
}

#[test]
fn split_is_a_partition() {
    let x = Array2::from_shape_fn((10, 2), |(i, j)| (i * 2 + j) as f64);
    let pts = Points::new("ten", x.clone()).unwrap();
    let (train, test) = pts.split(0.3, &mut fm_core::rng::seeded(1)).unwrap();
    assert_eq!((train.len(), test.len()), (7, 3));
    let mut firsts: Vec<f64> = train
        .data()
        .column(0)
        .iter()
        .chain(test.data().column(0))
        .copied()
        .collect();
    firsts.sort_by(f64::total_cmp);
    assert_eq!(firsts, x.column(0).to_vec());
    for bad in [0.0, 1.0, -0.5, f64::NAN, 0.01] {
        assert!(
            pts.split(bad, &mut fm_core::rng::seeded(1)).is_err(),
            "{bad}"
        );
    }
    assert!(Points::new("nan", array![[f64::NAN]]).is_err());
    let toy = Dataset::parse("moons", None).unwrap();
    let (a, b) = toy.split(0.2, &mut fm_core::rng::seeded(1)).unwrap();
    assert_eq!((a, b), (toy.clone(), toy));
}
