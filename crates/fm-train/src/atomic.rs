//! Atomic file writes: a uniquely named temporary file in the same directory, fsync, rename.

use crate::TrainError;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: the data goes to a temporary file in the same directory,
/// which is flushed to disk (`fsync`) and then renamed over `path`. A crash or kill at any
/// moment leaves either the previous file or the new one, never a torn mix.
///
/// * The temporary file has a random name created exclusively (`O_EXCL`), so two writers never
///   share one, even two processes with the same PID in different containers; a write that
///   fails removes it.
/// * A symlink is followed: its target is replaced (atomically, in the target's directory) and
///   the link stays. A symlink whose target does not exist is an error.
/// * An existing non-regular file (directory, device such as `/dev/full`, FIFO, socket) is
///   never replaced: that is an error naming it.
/// * The parent directory must exist; an error names the path and says so otherwise.
/// * A failed write says why in words (`no space left on device`, `permission denied`).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("a.txt");
/// fm_train::write_atomic(&path, b"one").unwrap();
/// fm_train::write_atomic(&path, b"two").unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"two");
/// ```
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// The file a write to `path` replaces: `path` itself, or the target of a symlink.
fn write_target(path: &Path) -> Result<PathBuf, TrainError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).map_err(|_| {
            TrainError::bad_file(
                path,
                "is a symlink whose target does not exist: remove the link or create its target",
            )
        }),
        _ => Ok(path.to_path_buf()),
    }
}

/// [`write_atomic`] with the content written by `write` into the temporary file.
pub(crate) fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<(), TrainError> {
    let target = write_target(path)?;
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(TrainError::bad_file(
            path,
            format!(
                "the directory {} does not exist: create it first or choose another output path",
                parent.display()
            ),
        ));
    }
    if let Ok(m) = std::fs::metadata(&target) {
        if m.is_dir() {
            return Err(TrainError::bad_file(
                path,
                "is a directory: give a file name",
            ));
        }
        if !m.is_file() {
            return Err(TrainError::bad_file(
                path,
                "is not a regular file (a device, FIFO or socket) and is never replaced: choose another output path",
            ));
        }
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    // Dropping the temporary file (on any error below) deletes it.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(&parent)
        .map_err(|e| write_error(path, e))?;
    write(tmp.as_file_mut()).map_err(|e| write_error(path, e))?;
    #[cfg(unix)]
    {
        // Temporary files are created private (0600); a model file is an ordinary file.
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| write_error(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| write_error(path, e))?;
    tmp.persist(&target)
        .map_err(|e| write_error(path, e.error))?;
    // Make the rename itself durable; not every platform can open a directory, so ignore failures.
    if let Ok(d) = File::open(&parent) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A failed write of `path` as a [`TrainError::Io`] whose message says what happened in words.
pub(crate) fn write_error(path: &Path, e: std::io::Error) -> TrainError {
    let reason = match e.kind() {
        std::io::ErrorKind::StorageFull => {
            "cannot write: no space left on device (free some space or choose another output path)"
                .to_string()
        }
        std::io::ErrorKind::PermissionDenied => {
            "cannot write: permission denied (choose a writable output path)".to_string()
        }
        _ => format!("cannot write: {e}"),
    };
    TrainError::io(path, std::io::Error::new(e.kind(), reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn missing_directory_is_a_bad_file_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope").join("m.safetensors");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(err.is_invalid_input());
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(entries(dir.path()), ["f.bin"]);
    }

    /// The temporary name used to be `.NAME.tmp.PID`: another process with the same PID (another
    /// container) holding that name made the write fail or clobbered its file.
    #[test]
    fn temp_names_do_not_depend_on_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let squatter = dir
            .path()
            .join(format!(".f.bin.tmp.{}", std::process::id()));
        std::fs::create_dir(&squatter).unwrap();
        std::fs::write(squatter.join("keep"), b"theirs").unwrap();
        write_atomic(&path, b"mine").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"mine");
        assert_eq!(std::fs::read(squatter.join("keep")).unwrap(), b"theirs");
    }

    #[test]
    fn a_failed_write_removes_its_temporary_file_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |f| {
            f.write_all(b"partial")?;
            Err(std::io::Error::from(std::io::ErrorKind::StorageFull))
        })
        .unwrap_err();
        assert!(!err.is_invalid_input(), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("f.bin") && msg.contains("no space left on device"),
            "{msg}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(dir.path()), ["f.bin"]);
    }

    /// A real ENOSPC from the kernel reads as words, not as "cannot access".
    #[cfg(target_os = "linux")]
    #[test]
    fn enospc_from_dev_full_reads_no_space_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let err = write_atomic_with(&path, |_| {
            let mut full = std::fs::OpenOptions::new().write(true).open("/dev/full")?;
            full.write_all(&[0u8; 4096])?;
            full.flush()
        })
        .unwrap_err();
        assert!(err.to_string().contains("no space left on device"), "{err}");
        assert!(entries(dir.path()).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_is_followed_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.bin");
        let link = dir.path().join("link.bin");
        std::fs::write(&real, b"old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        let dangling = dir.path().join("dangling.bin");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        let err = write_atomic(&dangling, b"x").unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
    }

    /// A socket (like a device or FIFO) is never replaced by a regular file.
    #[cfg(unix)]
    #[test]
    fn a_non_regular_file_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let err = write_atomic(&sock, b"x").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        use std::os::unix::fs::FileTypeExt;
        assert!(
            std::fs::symlink_metadata(&sock)
                .unwrap()
                .file_type()
                .is_socket()
        );
        assert_eq!(entries(dir.path()), ["s.sock"]);
    }
}
