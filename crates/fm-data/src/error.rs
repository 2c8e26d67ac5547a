use fm_core::CoreError;
use std::path::PathBuf;
use thiserror::Error;

/// Errors of `fm-data`: unknown data set names or parameters, and unreadable or malformed files.
///
/// File errors name the file; CSV errors also give the 1-based line and column of the cell at
/// fault, `.npy` errors the 0-based row and column of the entry at fault.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataError {
    /// A shape, emptiness or finiteness check of `fm-core` failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The name is neither a built-in data set nor a path ending in `.csv` or `.npy`.
    #[error("unknown data set {name:?}: expected one of {known}, or a path ending in .csv or .npy")]
    UnknownDataset {
        /// The name given.
        name: String,
        /// The built-in names, comma separated.
        known: String,
    },
    /// A parameter key that the data set does not have.
    #[error("unknown parameter {key:?} for data set {dataset}: expected one of {known}")]
    UnknownKey {
        /// The data set.
        dataset: String,
        /// The key given.
        key: String,
        /// The keys the data set accepts, comma separated.
        known: String,
    },
    /// A parameter value that cannot be parsed or is out of range.
    #[error("invalid value {value:?} for parameter {key} of data set {dataset}: {reason}")]
    InvalidValue {
        /// The data set.
        dataset: String,
        /// The parameter.
        key: String,
        /// The value given.
        value: String,
        /// What is required of it.
        reason: String,
    },
    /// A spec that is not of the form `name` or `name:key=value,key=value`.
    #[error("malformed data set spec {spec:?}: {reason}")]
    BadSpec {
        /// The spec given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The data set has another dimension than the one asked for.
    #[error("dimension mismatch for {what}: expected {expected}, found {found}")]
    DimMismatch {
        /// The data set.
        what: String,
        /// The dimension asked for.
        expected: usize,
        /// The data set's dimension.
        found: usize,
    },
    /// A sample size, split fraction or other argument is out of range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidParameter {
        /// The argument's name.
        name: &'static str,
        /// The value given, written out.
        value: String,
        /// What is required of it.
        reason: &'static str,
    },
    /// A file name whose extension is neither `.csv` nor `.npy`.
    #[error("cannot tell the format of {}: use a .csv or .npy extension", path.display())]
    UnknownExtension {
        /// The file.
        path: PathBuf,
    },
    /// The operating system refused to read or write the file (missing, no permission, ...).
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error; its `kind()` tells missing files from permission problems.
        source: std::io::Error,
    },
    /// Writing an output file failed (no space left, permission denied, an I/O error): a
    /// failure of the write, not of the input, which the `fm` CLI reports with exit code 1.
    #[error("cannot write {}: {}", path.display(), write_reason(source))]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The underlying error; `ErrorKind::StorageFull` reads "no space left on device".
        source: std::io::Error,
    },
    /// An input file larger than [`MAX_FILE_BYTES`](crate::MAX_FILE_BYTES).
    #[error("{} is {size} bytes, more than the limit of {limit} bytes for a data file: is it the right file?", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The path names a directory or another non-regular file (device, FIFO, socket): it is
    /// neither read (a FIFO would block) nor replaced.
    #[error("{} is not a regular file (a directory, device, FIFO or socket): give a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The file holds no data rows (it is empty or has only a header).
    #[error("{} holds no data: {reason}", path.display())]
    EmptyFile {
        /// The file.
        path: PathBuf,
        /// `"the file is empty"`, `"only a header"`, `"zero rows"`, ...
        reason: &'static str,
    },
    /// A CSV row with another number of cells than the first row.
    #[error("{} line {line}: expected {expected} columns, found {found}", path.display())]
    RaggedRow {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// The number of columns of the first row.
        expected: usize,
        /// The number of cells in this row.
        found: usize,
    },
    /// A CSV cell that is not a number.
    #[error("{} line {line}, column {column}: {cell:?} is not a number", path.display())]
    NonNumeric {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// The 1-based column number.
        column: usize,
        /// The cell's text.
        cell: String,
    },
    /// A CSV cell holding NaN or an infinity.
    #[error("{} line {line}, column {column}: non-finite value {value}", path.display())]
    NonFiniteCell {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// The 1-based column number.
        column: usize,
        /// The value.
        value: f64,
    },
    /// A CSV file the csv reader rejects (for example invalid UTF-8).
    #[error("{} line {line}: {reason}", path.display())]
    CsvSyntax {
        /// The file.
        path: PathBuf,
        /// The 1-based line number (0 if unknown).
        line: u64,
        /// The reader's message.
        reason: String,
    },
    /// A `.npy` entry holding NaN or an infinity.
    #[error("{} row {row}, column {col} (0-based): non-finite value {value}", path.display())]
    NonFiniteEntry {
        /// The file.
        path: PathBuf,
        /// The 0-based row.
        row: usize,
        /// The 0-based column.
        col: usize,
        /// The value.
        value: f64,
    },
    /// A `.npy` array whose element type is not `f32` or `f64`.
    #[error("{} has element type {found}: expected float32 or float64", path.display())]
    NpyDtype {
        /// The file.
        path: PathBuf,
        /// The descriptor found in the header, e.g. `'<i8'`.
        found: String,
    },
    /// A `.npy` array that is not 2-D.
    #[error("{} holds a {found}-D array: expected a 2-D array (one sample per row)", path.display())]
    NpyNdim {
        /// The file.
        path: PathBuf,
        /// The number of dimensions found.
        found: usize,
    },
    /// A malformed or truncated `.npy` file.
    #[error("{} is not a valid .npy file: {reason}", path.display())]
    NpyFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A write error in words: "no space left on device" for ENOSPC, "permission denied", or the
/// system's message.
fn write_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::StorageFull => {
            "no space left on device (free some space or choose another output path)".into()
        }
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (choose a writable output path)".into()
        }
        _ => e.to_string(),
    }
}
