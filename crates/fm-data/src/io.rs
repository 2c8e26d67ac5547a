//! Reading and writing point clouds as CSV or `.npy`, chosen by the file extension.

use crate::DataError;
use ndarray::{Array2, ArrayView2};
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The largest data file [`read_points`] reads: 4 GiB (half a billion `f64` values as `.npy`).
pub const MAX_FILE_BYTES: u64 = 4 << 30;

/// The file formats [`read_points`] and [`write_points`] understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values, one sample per line, optional header line.
    Csv,
    /// A NumPy `.npy` array of shape `(n, d)`, `float32` or `float64`.
    Npy,
}

impl Format {
    /// The format named by the extension of `path` (`.csv` or `.npy`, any case).
    pub fn from_path(path: &Path) -> Result<Format, DataError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("csv") => Ok(Format::Csv),
            Some("npy") => Ok(Format::Npy),
            _ => Err(DataError::UnknownExtension {
                path: path.to_path_buf(),
            }),
        }
    }
}

/// Reads an `(n, d)` array of samples from a `.csv` or `.npy` file.
///
/// * CSV: comma separated, one sample per line, any number of numeric columns; blank lines and
///   lines starting with `#` are skipped. The first line is a header if *none* of its cells is a
///   number (a first line mixing numbers and text is an error at the first non-number).
///   Every row must have as many cells as the first; every cell must be a finite number.
/// * `.npy`: a 2-D `float64` or `float32` array (converted to `f64`), either byte order.
///
/// Every error names the file; CSV errors also give the 1-based line and column. The path must
/// name a regular file of at most [`MAX_FILE_BYTES`], checked before the file is opened (a FIFO
/// would block, a device such as `/dev/zero` would never end) and again on the opened file.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("points.csv");
/// std::fs::write(&path, "x,y\n1,2\n3,4.5\n").unwrap();
/// let x = fm_data::read_points(&path).unwrap();
/// assert_eq!(x, ndarray::array![[1.0, 2.0], [3.0, 4.5]]);
/// ```
pub fn read_points(path: impl AsRef<Path>) -> Result<Array2<f64>, DataError> {
    let path = path.as_ref();
    let format = Format::from_path(path)?;
    let io_err = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    // The shared bounded read: metadata checked before opening (a FIFO would block, a device
    // such as /dev/zero never ends) and again on the opened file.
    let bytes = fm_core::read_regular_file(path, MAX_FILE_BYTES).map_err(|e| match e {
        fm_core::ReadFileError::Io(e) => io_err(e),
        fm_core::ReadFileError::Directory | fm_core::ReadFileError::NotRegular => {
            DataError::NotAFile {
                path: path.to_path_buf(),
            }
        }
        fm_core::ReadFileError::TooLarge { size, .. } => DataError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit: MAX_FILE_BYTES,
        },
    })?;
    match format {
        Format::Csv => parse_csv(path, &bytes),
        Format::Npy => parse_npy(path, &bytes),
    }
}

fn parse_csv(path: &Path, bytes: &[u8]) -> Result<Array2<f64>, DataError> {
    let p = || path.to_path_buf();
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(DataError::EmptyFile {
            path: p(),
            reason: "the file is empty",
        });
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(bytes);
    let mut values: Vec<f64> = Vec::new();
    let mut ncols: Option<usize> = None;
    let mut saw_header = false;
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                return Err(DataError::CsvSyntax {
                    path: p(),
                    line: e.position().map_or(0, |pos| pos.line()),
                    reason: e.to_string(),
                });
            }
        }
        let line = record.position().map_or(0, |pos| pos.line());
        if record.iter().all(|c| c.is_empty()) {
            continue;
        }
        match ncols {
            None => {
                ncols = Some(record.len());
                if !saw_header && record.iter().all(|c| c.parse::<f64>().is_err()) {
                    saw_header = true;
                    continue;
                }
            }
            Some(expected) if expected != record.len() => {
                return Err(DataError::RaggedRow {
                    path: p(),
                    line,
                    expected,
                    found: record.len(),
                });
            }
            Some(_) => {}
        }
        for (j, cell) in record.iter().enumerate() {
            let value = cell.parse::<f64>().map_err(|_| DataError::NonNumeric {
                path: p(),
                line,
                column: j + 1,
                cell: cell.to_string(),
            })?;
            if !value.is_finite() {
                return Err(DataError::NonFiniteCell {
                    path: p(),
                    line,
                    column: j + 1,
                    value,
                });
            }
            values.push(value);
        }
    }
    let d = ncols.unwrap_or(0);
    if values.is_empty() {
        return Err(DataError::EmptyFile {
            path: p(),
            reason: if saw_header {
                "only a header"
            } else {
                "no data rows"
            },
        });
    }
    Array2::from_shape_vec((values.len() / d, d), values).map_err(|e| DataError::CsvSyntax {
        path: p(),
        line: 0,
        reason: e.to_string(),
    })
}

/// Checks, before anything is allocated, that the data a `.npy` header declares fits in the file:
/// a corrupt or hostile header (a huge header length, or a shape of 10¹⁶ values) must give an
/// error, not an allocation that aborts the process. Headers this cannot read are left to the
/// full parser, which reports them.
fn check_npy_sizes(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let bad = |reason: String| DataError::NpyFormat {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Ok(());
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Ok(()),
    };
    let Some(data) = bytes.get(start..).and_then(|rest| rest.get(len..)) else {
        return Err(bad(format!(
            "truncated: the header claims {len} bytes but the file has only {}",
            bytes.len()
        )));
    };
    let header = String::from_utf8_lossy(&bytes[start..start + len]);
    let item = header
        .split("'descr'")
        .nth(1)
        .and_then(|r| r.split('\'').nth(1))
        .and_then(|d| d.get(2..)?.parse::<usize>().ok());
    let shape = header
        .split("'shape'")
        .nth(1)
        .and_then(|r| Some(&r[r.find('(')? + 1..r.find(')')?]))
        .map(|dims| {
            dims.split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(|d| d.parse::<usize>().ok())
                .collect::<Option<Vec<_>>>()
        });
    if let (Some(item), Some(Some(shape))) = (item, shape) {
        let needed = shape.iter().try_fold(item, |acc, &d| acc.checked_mul(d));
        match needed {
            Some(n) if n <= data.len() => {}
            _ => {
                return Err(bad(format!(
                    "truncated: the header declares shape {shape:?} of {item}-byte values, \
                     more than the {} data bytes in the file",
                    data.len()
                )));
            }
        }
    }
    Ok(())
}

fn parse_npy(path: &Path, bytes: &[u8]) -> Result<Array2<f64>, DataError> {
    let p = || path.to_path_buf();
    check_npy_sizes(path, bytes)?;
    let x: Array2<f64> = match Array2::<f64>::read_npy(bytes) {
        Ok(x) => x,
        Err(ReadNpyError::WrongDescriptor(_)) => match Array2::<f32>::read_npy(bytes) {
            Ok(x) => x.mapv(f64::from),
            Err(e) => return Err(npy_error(path, e)),
        },
        Err(e) => return Err(npy_error(path, e)),
    };
    if x.nrows() == 0 || x.ncols() == 0 {
        return Err(DataError::EmptyFile {
            path: p(),
            reason: "the array has no entries",
        });
    }
    if let Some(((row, col), &value)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(DataError::NonFiniteEntry {
            path: p(),
            row,
            col,
            value,
        });
    }
    Ok(x)
}

fn npy_error(path: &Path, e: ReadNpyError) -> DataError {
    let path = path.to_path_buf();
    match e {
        ReadNpyError::WrongDescriptor(d) => DataError::NpyDtype {
            path,
            found: d.to_string(),
        },
        ReadNpyError::WrongNdim(_, found) => DataError::NpyNdim { path, found },
        ReadNpyError::MissingData => DataError::NpyFormat {
            path,
            reason: "truncated: the data is shorter than the header says".into(),
        },
        ReadNpyError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DataError::NpyFormat {
                path,
                reason: "truncated file".into(),
            }
        }
        other => DataError::NpyFormat {
            path,
            reason: other.to_string(),
        },
    }
}

/// Writes `x` (shape `(n, d)`, finite, non-empty) to a `.csv` or `.npy` file, atomically: the
/// data goes to a temporary file in the same directory, which is then renamed over `path`, so
/// readers never see a half-written file. The temporary file has a random name created
/// exclusively and is removed if the write fails. A symlink `path` is followed (its target is
/// replaced, the link stays); an existing non-regular file (directory, device, FIFO, socket) is
/// never replaced ([`DataError::NotAFile`]). A failed write is a [`DataError::Write`] that says
/// why in words ("no space left on device").
///
/// CSV files get a header `x0,x1,...` and every value in the shortest form that reads back
/// exactly; `.npy` files hold little-endian `float64` in C order.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("points.npy");
/// let x = ndarray::array![[0.1, -2.0], [3.0, 1e-300]];
/// fm_data::write_points(&path, x.view()).unwrap();
/// assert_eq!(fm_data::read_points(&path).unwrap(), x);
/// ```
pub fn write_points(path: impl AsRef<Path>, x: ArrayView2<f64>) -> Result<(), DataError> {
    let path = path.as_ref();
    let format = Format::from_path(path)?;
    fm_core::shape::check_nonempty("points", x)?;
    fm_core::shape::check_finite("points", x)?;
    let io_err = |source| DataError::Write {
        path: path.to_path_buf(),
        source,
    };
    let (target, mut tmp) = open_target(path)?;
    write_body(tmp.as_file_mut(), format, x, path)?;
    #[cfg(unix)]
    {
        // Temporary files are created private (0600); a data file is an ordinary file.
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io_err)?;
    }
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(&target).map_err(|e| io_err(e.error))?;
    Ok(())
}

/// The file a write to `path` replaces (a symlink's target; the link stays) and a fresh temporary
/// file beside it (random name, created exclusively, removed when dropped unpersisted). An
/// existing non-regular file is never replaced ([`DataError::NotAFile`]); a missing directory is
/// a [`DataError::Io`] (a wrong path), any other failure a [`DataError::Write`].
pub(crate) fn open_target(path: &Path) -> Result<(PathBuf, tempfile::NamedTempFile), DataError> {
    let target: PathBuf = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::canonicalize(path).map_err(|_| DataError::Write {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "it is a symlink whose target does not exist",
                ),
            })?
        }
        _ => path.to_path_buf(),
    };
    if let Ok(m) = std::fs::metadata(&target)
        && !m.is_file()
    {
        return Err(DataError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let dir: PathBuf = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".fm-data-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|source| {
            // A missing directory is a wrong path (caught before any work by the CLI), not a
            // failed write.
            if source.kind() == std::io::ErrorKind::NotFound {
                DataError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            } else {
                DataError::Write {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
    Ok((target, tmp))
}

/// Writes the encoded points into `out` (buffered, flushed); errors are [`DataError::Write`]s
/// naming `path`.
fn write_body(
    out: &mut impl Write,
    format: Format,
    x: ArrayView2<f64>,
    path: &Path,
) -> Result<(), DataError> {
    let io_err = |source| DataError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut w = std::io::BufWriter::new(out);
    match format {
        Format::Csv => {
            let header: Vec<String> = (0..x.ncols()).map(|j| format!("x{j}")).collect();
            writeln!(w, "{}", header.join(",")).map_err(io_err)?;
            for row in x.rows() {
                let cells: Vec<String> = row.iter().map(|v| format!("{v:?}")).collect();
                writeln!(w, "{}", cells.join(",")).map_err(io_err)?;
            }
        }
        Format::Npy => {
            x.as_standard_layout()
                .write_npy(&mut w)
                .map_err(|e| match e {
                    ndarray_npy::WriteNpyError::Io(source) => io_err(source),
                    other => DataError::NpyFormat {
                        path: path.to_path_buf(),
                        reason: other.to_string(),
                    },
                })?;
        }
    }
    w.flush().map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ENOSPC from the kernel (`/dev/full`) reads "no space left on device", for both
    /// formats, and is a write error, not "cannot access".
    #[cfg(target_os = "linux")]
    #[test]
    fn enospc_reads_no_space_left_on_device() {
        let x = ndarray::Array2::<f64>::ones((2000, 3));
        for (format, name) in [(Format::Csv, "s.csv"), (Format::Npy, "s.npy")] {
            let mut full = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap();
            let err = write_body(&mut full, format, x.view(), Path::new(name)).unwrap_err();
            assert!(matches!(err, DataError::Write { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("cannot write {name}: no space left on device")),
                "{msg}"
            );
        }
    }
}
