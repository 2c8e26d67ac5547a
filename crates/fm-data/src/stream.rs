//! Writing a point cloud chunk by chunk, for outputs larger than memory.

use crate::{DataError, Format};
use ndarray::ArrayView2;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes `n` points of dimension `d` to a `.csv` or `.npy` file in chunks of rows, atomically
/// (a temporary file in the same directory, renamed over the path by [`PointsWriter::finish`];
/// dropped unfinished, the temporary file is removed). The bytes are exactly those
/// [`write_points`](crate::write_points) writes for the whole array.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("p.npy");
/// let x = ndarray::array![[0.5, -1.0], [2.0, 3.0], [4.0, 1e-300]];
/// let mut w = fm_data::PointsWriter::create(&path, 3, 2).unwrap();
/// w.write_rows(x.slice(ndarray::s![..2, ..])).unwrap();
/// w.write_rows(x.slice(ndarray::s![2.., ..])).unwrap();
/// w.finish().unwrap();
/// assert_eq!(fm_data::read_points(&path).unwrap(), x);
/// ```
pub struct PointsWriter {
    path: PathBuf,
    /// The file replaced at the end (`path`, or its target when `path` is a symlink).
    target: PathBuf,
    format: Format,
    n: usize,
    d: usize,
    written: usize,
    out: BufWriter<tempfile::NamedTempFile>,
}

impl std::fmt::Debug for PointsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PointsWriter")
            .field("path", &self.path)
            .field("n", &self.n)
            .field("d", &self.d)
            .field("written", &self.written)
            .finish()
    }
}

impl PointsWriter {
    /// Starts a file of `n ≥ 1` points of dimension `d ≥ 1` (the format from the extension).
    pub fn create(path: impl AsRef<Path>, n: usize, d: usize) -> Result<Self, DataError> {
        let path = path.as_ref().to_path_buf();
        let format = Format::from_path(&path)?;
        if n == 0 || d == 0 {
            return Err(DataError::InvalidParameter {
                name: "points",
                value: format!("{n} × {d}"),
                reason: "write at least one point of dimension at least 1",
            });
        }
        let (target, tmp) = crate::io::open_target(&path)?;
        let mut w = Self {
            path,
            target,
            format,
            n,
            d,
            written: 0,
            out: BufWriter::with_capacity(1 << 20, tmp),
        };
        match format {
            Format::Csv => {
                let header: Vec<String> = (0..d).map(|j| format!("x{j}")).collect();
                writeln!(w.out, "{}", header.join(",")).map_err(|e| w.io(e))?;
            }
            Format::Npy => {
                let header = npy_header(n, d);
                w.out.write_all(&header).map_err(|e| w.io(e))?;
            }
        }
        Ok(w)
    }

    fn io(&self, source: std::io::Error) -> DataError {
        DataError::Write {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends rows (finite values, `d` columns, at most the rows still due).
    pub fn write_rows(&mut self, x: ArrayView2<f64>) -> Result<(), DataError> {
        if x.ncols() != self.d || self.written + x.nrows() > self.n {
            return Err(DataError::InvalidParameter {
                name: "points",
                value: format!("{} × {}", x.nrows(), x.ncols()),
                reason: "rows of another width, or more rows than the file was created for",
            });
        }
        fm_core::shape::check_finite("points", x)?;
        for row in x.rows() {
            match self.format {
                Format::Csv => {
                    let cells: Vec<String> = row.iter().map(|v| format!("{v:?}")).collect();
                    writeln!(self.out, "{}", cells.join(",")).map_err(|e| self.io(e))?;
                }
                Format::Npy => {
                    for v in row {
                        self.out
                            .write_all(&v.to_le_bytes())
                            .map_err(|e| self.io(e))?;
                    }
                }
            }
        }
        self.written += x.nrows();
        Ok(())
    }

    /// Checks that all `n` rows were written, flushes to disk and renames the file into place.
    pub fn finish(self) -> Result<(), DataError> {
        if self.written != self.n {
            return Err(DataError::InvalidParameter {
                name: "points",
                value: self.written.to_string(),
                reason: "fewer rows were written than the file was created for",
            });
        }
        let path = self.path.clone();
        let self_target = self.target.clone();
        let io = |source| DataError::Write {
            path: path.clone(),
            source,
        };
        let tmp = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(io)?;
        }
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(&self_target).map_err(|e| io(e.error))?;
        Ok(())
    }
}

/// The `.npy` (format 1.0) header of a C-order little-endian `float64` array of shape `(n, d)`,
/// padded with spaces to a multiple of 64 bytes and ended by a newline.
fn npy_header(n: usize, d: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({n}, {d})}}");
    let unpadded = 10 + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.resize(total - 1, b' ');
    h.push(b'\n');
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// Chunked files are byte-identical to `write_points`' for both formats and any chunking.
    #[test]
    fn chunked_files_equal_whole_ones_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        for (n, d) in [(1, 1), (7, 3), (100, 2), (33, 17)] {
            let x = Array2::from_shape_fn((n, d), |(i, j)| {
                (i as f64 - 3.5) * 1.7f64.powi(j as i32) / 3.0
            });
            for ext in ["csv", "npy"] {
                let whole = dir.path().join(format!("w.{ext}"));
                crate::write_points(&whole, x.view()).unwrap();
                for chunk in [1, 2, 5, n] {
                    let part = dir.path().join(format!("p.{ext}"));
                    let mut w = PointsWriter::create(&part, n, d).unwrap();
                    let mut i = 0;
                    while i < n {
                        let e = (i + chunk).min(n);
                        w.write_rows(x.slice_axis(ndarray::Axis(0), ndarray::Slice::from(i..e)))
                            .unwrap();
                        i = e;
                    }
                    w.finish().unwrap();
                    assert_eq!(
                        std::fs::read(&part).unwrap(),
                        std::fs::read(&whole).unwrap(),
                        "{n}×{d} .{ext} in chunks of {chunk}"
                    );
                }
            }
        }
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 4, "no temporary file left");
    }

    #[test]
    fn too_few_or_too_many_rows_are_errors_and_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        let x = Array2::<f64>::zeros((3, 2));
        let mut w = PointsWriter::create(&p, 2, 2).unwrap();
        assert!(w.write_rows(x.view()).is_err());
        w.write_rows(x.slice_axis(ndarray::Axis(0), ndarray::Slice::from(..1)))
            .unwrap();
        assert!(w.finish().is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
