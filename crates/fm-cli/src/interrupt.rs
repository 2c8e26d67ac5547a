//! Ctrl-C (SIGINT) and SIGTERM.
//!
//! `fm sample` and `fm simulate` ([`install_quit`]) remove the temporary files of their
//! unfinished outputs and exit with 130: outputs are written atomically, so an existing file is
//! never replaced by a partial one. During `fm train` ([`install`]):
//!
//! The first signal asks the trainer to stop after the step under way
//! ([`flow_matching::train::Trainer::stop_flag`]): it then writes a checkpoint and the model so
//! far (both atomically), the command prints how to resume and exits with 130. A second signal
//! exits at once with 130; the files on disk are then the previous complete ones (writes are
//! atomic), and temporary files this run left behind in the output directories are removed
//! first.

use anyhow::{Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The exit code of an interrupted command (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// `fm train` stopped by a signal after writing its checkpoint and model: exit code 130.
#[derive(Debug)]
pub struct Interrupted {
    /// Steps done.
    pub step: usize,
    /// Steps asked for.
    pub steps: usize,
    /// The checkpoint written.
    pub checkpoint: PathBuf,
    /// The model written.
    pub model: PathBuf,
    /// The command that continues the run.
    pub resume_command: String,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interrupted after step {} of {}: the checkpoint {} and the model so far {} were written; \
             to continue the run to step {} (bit-identical to an uninterrupted run), run: {} \
             (--steps is the total; raise it to train longer)",
            self.step,
            self.steps,
            self.checkpoint.display(),
            self.model.display(),
            self.steps,
            self.resume_command
        )
    }
}

impl std::error::Error for Interrupted {}

/// Installs the SIGINT/SIGTERM handler and returns the flag it sets on the first signal.
///
/// `outputs` are the files the command writes: on a second signal, files that appeared in
/// their directories since now and look like temporary files (hidden, with `tmp` in the name)
/// are removed before the process exits with [`EXIT_INTERRUPTED`].
pub fn install(outputs: &[&Path]) -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let count = AtomicUsize::new(0);
    let cleanup = TempCleanup::new(outputs);
    let set = flag.clone();
    ctrlc::set_handler(move || {
        if count.fetch_add(1, Ordering::SeqCst) == 0 {
            set.store(true, Ordering::SeqCst);
            eprintln!(
                "\nstopping after the current step, then writing a checkpoint and the model (interrupt again to quit at once)"
            );
        } else {
            cleanup.run();
            eprintln!("interrupted again: quitting at once; the files on disk are the last complete ones");
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(flag)
}

/// Installs a SIGINT/SIGTERM handler for a command with nothing to save on the way out
/// (`sample`, `likelihood`, `simulate`, …): the first signal removes the temporary files this
/// run left in the directories of `outputs` (a half-written output never replaces a complete
/// one: writes are atomic) and exits with [`EXIT_INTERRUPTED`].
pub fn install_quit(outputs: &[&Path]) -> Result<()> {
    let cleanup = TempCleanup::new(outputs);
    ctrlc::set_handler(move || {
        cleanup.run();
        eprintln!("interrupted: quitting; no output was replaced by a partial file");
        std::process::exit(i32::from(EXIT_INTERRUPTED));
    })
    .context("cannot install the Ctrl-C handler")
}

/// The temporary files to remove on a signal: files that appear in the outputs' directories
/// after the handler was installed and look like the atomic writers' temporary files (hidden,
/// with `tmp` in the name).
struct TempCleanup {
    dirs: Vec<PathBuf>,
    before: HashSet<PathBuf>,
}

impl TempCleanup {
    fn new(outputs: &[&Path]) -> Self {
        let dirs: Vec<PathBuf> = outputs.iter().map(|p| dir_of(p)).collect();
        let before = dirs.iter().flat_map(|d| listing(d)).collect();
        Self { dirs, before }
    }

    fn run(&self) {
        for d in &self.dirs {
            for f in listing(d) {
                if !self.before.contains(&f) && is_temp_name(&f) {
                    let _ = std::fs::remove_file(&f);
                }
            }
        }
    }
}

fn dir_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Whether a file name looks like one of the atomic writers' temporary files.
fn is_temp_name(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n.contains("tmp"))
}

/// The command line that resumes this `fm train` run: its arguments with `--resume` added (once).
pub fn resume_command(args: &[String]) -> String {
    let mut out = vec!["fm".to_string()];
    out.extend(
        args.iter()
            .skip(1)
            .filter(|a| a.as_str() != "--resume")
            .map(|a| shell_quote(a)),
    );
    out.push("--resume".into());
    out.join(" ")
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,:/=+@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// If `path` is an fm checkpoint, an error saying so and how to get a model from it; `err`
/// (the model loader's error) otherwise.
pub fn explain_checkpoint(path: &Path, err: anyhow::Error) -> anyhow::Error {
    use flow_matching::train::{Checkpoint, TrainError};
    let bad_file = err
        .chain()
        .any(|c| matches!(c.downcast_ref(), Some(TrainError::BadFile { .. })));
    // Only a plain file of checkpoint size is read again (never a device or a FIFO).
    let plain = std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() < (1 << 32));
    if !(bad_file && plain) {
        return err;
    }
    match Checkpoint::load(path) {
        Ok(ck) => crate::input(format!(
            "{}: this is a training checkpoint (step {}), not a model: continue training with \
             `fm train --checkpoint {} --resume` and the run's other flags (that writes the model to --out), \
             or use the model file the run wrote with --out",
            path.display(),
            ck.step(),
            path.display()
        )),
        Err(_) => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_command_adds_resume_once_and_quotes() {
        let args: Vec<String> = [
            "/x/fm",
            "train",
            "--target",
            "my data.csv",
            "--resume",
            "--steps",
            "9",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            resume_command(&args),
            "fm train --target 'my data.csv' --steps 9 --resume"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn temp_names() {
        assert!(is_temp_name(Path::new("d/.m.safetensors.tmp.123")));
        assert!(is_temp_name(Path::new(".tmpAbc123")));
        assert!(!is_temp_name(Path::new("d/m.safetensors")));
        assert!(!is_temp_name(Path::new("d/.hidden")));
    }
}
