//! Issue 18 at the library level: readers never block or run forever on a non-regular file,
//! writers never replace one, follow symlinks, and refuse oversized inputs by their size.

#![cfg(unix)]

use fm_data::{DataError, MAX_FILE_BYTES, read_points, write_points};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

/// `read_points(path)` on another thread, failing the test if it does not return in 30 s.
fn read_with_deadline(path: PathBuf) -> Result<ndarray::Array2<f64>, DataError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read_points(&path));
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("read_points blocked on a non-regular file")
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["p.csv", "p.npy"] {
        let fifo = dir.path().join(name);
        mkfifo(&fifo);
        let err = read_with_deadline(fifo.clone()).unwrap_err();
        assert!(matches!(err, DataError::NotAFile { .. }), "{err:?}");
        assert!(err.to_string().contains(name), "{err}");
    }
    // Through a symlink to a device that never ends.
    let zero = dir.path().join("zero.csv");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let err = read_with_deadline(zero).unwrap_err();
    assert!(matches!(err, DataError::NotAFile { .. }), "{err:?}");
}

#[test]
fn a_file_beyond_the_limit_is_refused_by_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.npy");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(MAX_FILE_BYTES + 1).unwrap();
    drop(f);
    let err = read_with_deadline(big).unwrap_err();
    match &err {
        DataError::TooLarge { size, limit, .. } => {
            assert_eq!((*size, *limit), (MAX_FILE_BYTES + 1, MAX_FILE_BYTES));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains(&MAX_FILE_BYTES.to_string()),
        "{err}"
    );
}

#[test]
fn a_fifo_or_socket_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let x = ndarray::array![[1.0, 2.0]];
    let fifo = dir.path().join("f.csv");
    mkfifo(&fifo);
    let err = write_points(&fifo, x.view()).unwrap_err();
    assert!(matches!(err, DataError::NotAFile { .. }), "{err:?}");
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let sock = dir.path().join("s.npy");
    let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    assert!(write_points(&sock, x.view()).is_err());
    assert!(
        std::fs::symlink_metadata(&sock)
            .unwrap()
            .file_type()
            .is_socket()
    );
    // Nothing else was left behind (no temporary files).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn a_symlink_is_followed_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("real")).unwrap();
    let target = dir.path().join("real/p.csv");
    let link = dir.path().join("p.csv");
    std::fs::write(&target, "x0,x1\n0.0,0.0\n").unwrap();
    std::os::unix::fs::symlink("real/p.csv", &link).unwrap();
    let x = ndarray::array![[1.5, -2.0], [3.0, 4.0]];
    write_points(&link, x.view()).unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(read_points(&target).unwrap(), x);
    let dangling = dir.path().join("d.csv");
    std::os::unix::fs::symlink("real/none.csv", &dangling).unwrap();
    let err = write_points(&dangling, x.view()).unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
}
