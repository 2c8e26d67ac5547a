//! Atomic file writes: a temporary file in the same directory, fsync, rename.

use crate::TrainError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: the data goes to a temporary file in the same directory,
/// which is flushed to disk (`fsync`) and then renamed over `path`. A crash or kill at any
/// moment leaves either the previous file or the new one, never a torn mix.
///
/// The parent directory must exist; an error names the path and says so otherwise.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("a.txt");
/// fm_train::write_atomic(&path, b"one").unwrap();
/// fm_train::write_atomic(&path, b"two").unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"two");
/// ```
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let parent = match path.parent() {
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
    if path.is_dir() {
        return Err(TrainError::bad_file(
            path,
            "is a directory: give a file name",
        ));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = parent.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable; not every platform can open a directory, so ignore failures.
        if let Ok(d) = std::fs::File::open(&parent) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e: std::io::Error| {
        let _ = std::fs::remove_file(&tmp);
        TrainError::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
