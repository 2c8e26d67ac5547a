//! Output safety and input sanity, checked before a command does any work.
//!
//! Rules (issue 18):
//!
//! * Every output path is resolved canonically: symlinks are followed (a symlink given as an
//!   output is **followed**: its target is replaced atomically and the link stays; a dangling
//!   symlink is refused), and a file that does not exist yet is its canonical directory plus
//!   its name.
//! * An output that resolves to one of the command's input files (or is the same file by device
//!   and inode), or to another of its outputs, is refused.
//! * An existing non-regular file (directory, device such as `/dev/full`, FIFO, socket) is never
//!   replaced.
//! * An existing regular file is replaced only if it is empty or is recognisably "ours", i.e. of
//!   the kind the command writes ([`Kind`]); anything else needs `--force`.
//!
//! Refusals are input errors (exit code 2).

use crate::input;
use anyhow::Result;
use flow_matching::data::Dataset;
use flow_matching::train::{CHECKPOINT_KEY, CONFIG_KEY, tensors};
use ndarray::ArrayView2;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The kind of file an output is, which decides when an existing file may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A model file: replaces a safetensors file whose metadata holds an fm model config.
    Model,
    /// A checkpoint: replaces a safetensors file whose metadata holds an fm checkpoint state.
    Checkpoint,
    /// Points as `.csv` or `.npy`: replaces a CSV whose first line is the header fm writes
    /// (`x0,x1,...`), or an `.npy` holding a 2-D little-endian float64 C-order array (what fm
    /// writes; NumPy's `np.save` of such an array looks the same, so keep data you care about
    /// out of the way or rely on the input check), or a 3-D one (a `(T, n, d)` trajectory).
    Points,
    /// A PNG plot: replaces a PNG of one of the sizes fm draws (800×800 or 800×600).
    Png,
    /// A state dict written by `fm export`: replaces a safetensors file whose metadata holds
    /// the export record.
    Export,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Model => "an fm model file",
            Kind::Checkpoint => "an fm checkpoint",
            Kind::Points => "a points file written by fm (CSV header x0,x1,... or a float64 .npy)",
            Kind::Png => "a plot written by fm (an 800×800 or 800×600 PNG)",
            Kind::Export => "a state dict written by fm export",
        }
    }
}

/// The largest absolute value accepted in a data file: squared distances (cost matrices, W2)
/// and losses of points beyond it overflow f64 or the solvers' range.
pub const MAX_ABS_VALUE: f64 = 1e100;

/// The file a write to `path` replaces: `path`, or the target of a symlink (an input error if
/// the link dangles).
pub fn write_target(path: &Path) -> Result<PathBuf> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).map_err(|_| {
            input(format!(
                "{}: is a symlink whose target does not exist: remove the link or create its target",
                path.display()
            ))
        }),
        _ => Ok(path.to_path_buf()),
    }
}

/// A file's identity (device, inode), if it exists.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// The canonical form of an output path (see the module docs).
fn resolve_output(flag: &str, path: &Path) -> Result<PathBuf> {
    if path.as_os_str().is_empty() {
        return Err(input(format!(
            "{flag}: the output path is empty: give a file name"
        )));
    }
    let target = write_target(path)?;
    if let Ok(c) = std::fs::canonicalize(&target) {
        return Ok(c);
    }
    let name = target.file_name().ok_or_else(|| {
        input(format!(
            "{}: {flag} must name a file, not a directory",
            path.display()
        ))
    })?;
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir).map_err(|_| {
        input(format!(
            "{}: the directory {} does not exist: create it first or choose another output path",
            path.display(),
            dir.display()
        ))
    })?;
    Ok(dir.join(name))
}

/// What a non-regular file is, in words.
fn file_type_name(m: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = m.file_type();
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if m.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// The first `n` bytes of a file (fewer if it is shorter).
fn head(path: &Path, n: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(n).read_to_end(&mut buf);
    }
    buf
}

/// Whether the existing regular file `path` is of the kind an output of `kind` writes.
fn is_ours(kind: Kind, path: &Path) -> bool {
    match kind {
        Kind::Model => tensors::peek_metadata(path).is_some_and(|m| m.contains_key(CONFIG_KEY)),
        Kind::Checkpoint => {
            tensors::peek_metadata(path).is_some_and(|m| m.contains_key(CHECKPOINT_KEY))
        }
        Kind::Export => {
            tensors::peek_metadata(path).is_some_and(|m| m.contains_key(crate::interop::EXPORT_KEY))
        }
        Kind::Png => {
            let h = head(path, 24);
            h.len() == 24
                && h[..8] == *b"\x89PNG\r\n\x1a\n"
                && h[12..16] == *b"IHDR"
                && u32::from_be_bytes([h[16], h[17], h[18], h[19]]) == 800
                && matches!(u32::from_be_bytes([h[20], h[21], h[22], h[23]]), 800 | 600)
        }
        Kind::Points => {
            let npy = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
            if npy {
                let h = head(path, 4096);
                let text = String::from_utf8_lossy(&h);
                h.starts_with(b"\x93NUMPY")
                    && text.contains("'descr': '<f8'")
                    && text.contains("'fortran_order': False")
                    && text
                        .split("'shape': (")
                        .nth(1)
                        .and_then(|r| r.split(')').next())
                        .is_some_and(|dims| {
                            // (n, d) points, or a (T, n, d) trajectory.
                            matches!(
                                dims.split(',').filter(|d| !d.trim().is_empty()).count(),
                                2 | 3
                            )
                        })
            } else {
                let h = head(path, 1 << 16);
                let first = String::from_utf8_lossy(&h);
                let first = first.lines().next().unwrap_or("").trim();
                !first.is_empty()
                    && first
                        .split(',')
                        .enumerate()
                        .all(|(j, c)| c.trim() == format!("x{j}"))
            }
        }
    }
}

/// An output of a command: its flag, the path given and the kind of file it writes.
pub struct Output<'a> {
    /// The flag, e.g. `--out`.
    pub flag: &'a str,
    /// The path as given.
    pub path: &'a Path,
    /// What it writes.
    pub kind: Kind,
}

/// An [`Output`].
pub fn out<'a>(flag: &'a str, path: &'a Path, kind: Kind) -> Output<'a> {
    Output { flag, path, kind }
}

/// The input files of a data spec (a built-in name has none).
pub fn spec_file(spec: &str) -> Option<PathBuf> {
    let s = spec.trim();
    let lower = s.to_ascii_lowercase();
    (lower.ends_with(".csv") || lower.ends_with(".npy")).then(|| PathBuf::from(s))
}

/// Whether `--force` was given (set once by [`crate::commands::run`]).
static FORCE: AtomicBool = AtomicBool::new(false);

/// Records `--force` for [`check_outputs`].
pub fn set_force(force: bool) {
    FORCE.store(force, Ordering::Relaxed);
}

/// A file of a command, resolved: its flag, the path given, its canonical path and identity.
struct Resolved<'a> {
    flag: &'a str,
    path: &'a Path,
    canon: Option<PathBuf>,
    id: Option<(u64, u64)>,
}

/// Checks a command's outputs against its inputs, each other and the files they would replace
/// (see the module docs); `inputs` are `(flag, path)` of the files the command reads. Inputs that
/// do not exist are left for their reader to report. `--force` lifts only the "not ours" rule.
pub fn check_outputs(inputs: &[(&str, Option<&Path>)], outputs: &[Output<'_>]) -> Result<()> {
    let force = FORCE.load(Ordering::Relaxed);
    let inputs: Vec<Resolved<'_>> = inputs
        .iter()
        .filter_map(|&(flag, p)| p.map(|p| (flag, p)))
        .map(|(flag, path)| Resolved {
            flag,
            path,
            canon: std::fs::canonicalize(path).ok(),
            id: file_id(path),
        })
        .collect();
    let mut seen: Vec<Resolved<'_>> = Vec::new();
    for o in outputs {
        let canon = resolve_output(o.flag, o.path)?;
        let id = file_id(&canon);
        let same =
            |r: &&Resolved<'_>| r.canon.as_ref() == Some(&canon) || (id.is_some() && r.id == id);
        if let Some(r) = inputs.iter().find(same) {
            return Err(input(format!(
                "{} {}: is the same file as the input {} {}: writing it would destroy the input; choose another output path",
                o.flag,
                o.path.display(),
                r.flag,
                r.path.display()
            )));
        }
        if let Some(r) = seen.iter().find(same) {
            return Err(input(format!(
                "{} {}: is the same file as {} {}: one would overwrite the other; give them different paths",
                o.flag,
                o.path.display(),
                r.flag,
                r.path.display()
            )));
        }
        if let Ok(m) = std::fs::metadata(&canon) {
            if m.is_dir() {
                return Err(input(format!(
                    "{}: {} is a directory, give a file name",
                    o.path.display(),
                    o.flag
                )));
            }
            if !m.is_file() {
                return Err(input(format!(
                    "{}: {} names {}, not a regular file, and fm never replaces one: choose another output path",
                    o.path.display(),
                    o.flag,
                    file_type_name(&m)
                )));
            }
            if !force && m.len() > 0 && !is_ours(o.kind, &canon) {
                return Err(input(format!(
                    "{}: {} exists and is not {}: fm does not overwrite it; add --force to replace it, or choose another path",
                    o.path.display(),
                    o.flag,
                    o.kind.describe()
                )));
            }
        }
        seen.push(Resolved {
            flag: o.flag,
            path: o.path,
            canon: Some(canon),
            id,
        });
    }
    Ok(())
}

/// Refuses points beyond ±[`MAX_ABS_VALUE`] before they reach a cost matrix or a loss, naming
/// `what` (the flag and file) and the entry.
pub fn check_magnitude(what: &str, x: ArrayView2<f64>) -> Result<()> {
    if let Some(((i, j), v)) = x.indexed_iter().find(|(_, v)| v.abs() > MAX_ABS_VALUE) {
        return Err(input(format!(
            "{what}: value {v:e} (row {}, column {}) is beyond ±{MAX_ABS_VALUE:e}: squared distances and losses of such points overflow; rescale the data",
            i + 1,
            j + 1
        )));
    }
    Ok(())
}

/// [`check_magnitude`] of a dataset read from a file (built-in data sets are fine).
pub fn check_dataset(flag: &str, spec: &str, ds: &Dataset) -> Result<()> {
    match ds {
        Dataset::Points(p) => check_magnitude(&format!("{flag} {}", spec.trim()), p.data().view()),
        _ => Ok(()),
    }
}
