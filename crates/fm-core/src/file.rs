//! Reading a whole input file without blocking or running away: the one mechanism behind the
//! data readers (`fm-data`) and the model-file readers (`fm-train`), each of which words the
//! failure in its own error type.

use std::io::Read;
use std::path::Path;

/// Why [`read_regular_file`] refused or failed.
#[derive(Debug)]
pub enum ReadFileError {
    /// Opening or reading failed (missing file, permissions, an I/O error).
    Io(std::io::Error),
    /// The path names a directory.
    Directory,
    /// The path names something other than a regular file: a device, FIFO or socket.
    NotRegular,
    /// The file holds more than the limit: `size` bytes by its metadata, or — with `grew` — it
    /// grew past the limit while it was read.
    TooLarge {
        /// The size seen (metadata, or the bytes read when `grew`).
        size: u64,
        /// Whether the file grew past the limit during the read.
        grew: bool,
    },
}

/// The bytes of the regular file `path`, at most `limit` of them. The path's metadata is checked
/// before the file is opened (opening a FIFO blocks, a device such as `/dev/zero` never ends), the
/// opened file is checked again, and no more than `limit + 1` bytes are ever read.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("f.txt");
/// std::fs::write(&path, "abc").unwrap();
/// assert_eq!(fm_core::read_regular_file(&path, 3).unwrap(), b"abc");
/// assert!(matches!(
///     fm_core::read_regular_file(&path, 2),
///     Err(fm_core::ReadFileError::TooLarge { size: 3, grew: false })
/// ));
/// assert!(matches!(
///     fm_core::read_regular_file(dir.path(), 10),
///     Err(fm_core::ReadFileError::Directory)
/// ));
/// ```
pub fn read_regular_file(path: &Path, limit: u64) -> Result<Vec<u8>, ReadFileError> {
    let check = |meta: &std::fs::Metadata| {
        if meta.is_dir() {
            return Err(ReadFileError::Directory);
        }
        if !meta.is_file() {
            return Err(ReadFileError::NotRegular);
        }
        if meta.len() > limit {
            return Err(ReadFileError::TooLarge {
                size: meta.len(),
                grew: false,
            });
        }
        Ok(())
    };
    check(&std::fs::metadata(path).map_err(ReadFileError::Io)?)?;
    let file = std::fs::File::open(path).map_err(ReadFileError::Io)?;
    let meta = file.metadata().map_err(ReadFileError::Io)?;
    check(&meta)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadFileError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadFileError::TooLarge {
            size: bytes.len() as u64,
            grew: true,
        });
    }
    Ok(bytes)
}
