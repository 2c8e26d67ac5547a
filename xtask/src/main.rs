//! `cargo xtask …`: project automation.
//!
//! * `cargo xtask bench [--quick] [--out docs/benchmarks.md]`: runs the criterion benches of the
//!   workspace and prints one table of medians, with the in-run baseline ratio where one exists.
//! * `cargo xtask reproduce [--quick] [--seeds N] [--out docs/results.md]`: the 2-D table of
//!   Tong et al. (AISTATS 2024) and the flow-matching vs score-matching comparison, through the
//!   `fm` binary.
//! * `cargo xtask reproduce --task mixture6d [--full | --steps N] [--seeds N] [--out FILE]`: I-CFM
//!   on a 6-D Gaussian mixture beside TorchCFM's measured figure (issue 20), into
//!   `docs/results-6d.md`.
//! * `cargo xtask reproduce --task nflows [--quick] [--steps N] [--only T,T] [--fm PATH]`:
//!   normalizing flows beside flow matching (issue 16), into `docs/results.md` and
//!   `docs/nflows-densities.png`; `cargo xtask bench-nflows`: their training steps against zuko.
//! * `cargo xtask reproduce --task sbi [--quick | --steps N] [--tasks a,b] [--budgets 1000,10000]
//!   [--observations 1,2,3] [--ema 0,0.999] [--fm PATH] [--out FILE] [--figure FILE]`: FMPE on
//!   the sbibm tasks (issue 17), C2ST against the reference posteriors beside lampe's and sbi's measured figures
//!   (`scripts/sbi/results/*.json`), into `docs/results-sbi.md` and `docs/sbi-posteriors.png`.
//! * `cargo xtask bench-sbi [--task T] [--budget N] [--steps S] [--repeats R] [--fm PATH]
//!   [--python PY] [--out docs/benchmarks.md]`: our FMPE training step and posterior sampling
//!   against lampe's, timed in the same run, with the ratios.

mod bench;
mod mixture6d;
mod nflows;
mod plot;
mod reproduce;
mod sbi;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const HELP: &str = "cargo xtask <task> [options]

tasks:
  bench [--quick] [--collect-only] [--out FILE]\n                                            run the criterion benches (or only summarise\n                                            stored results), print one summary table
  reproduce [--quick] [--seeds N] [--jobs J] [--reuse] [--only TASK] [--out FILE]
                                            reproduce the published 2-D results table
  reproduce --task mixture6d [--full | --steps N] [--seeds N] [--out FILE]
                                            I-CFM on a 6-D mixture beside TorchCFM (default
                                            1,000 steps; --full: 20,000) into docs/results-6d.md
  reproduce --task nflows [--quick] [--steps N] [--only T,T] [--fm PATH] [--out FILE]
                                            normalizing flows beside flow matching (default
                                            1,000 steps; --quick: 60) into docs/results.md
  bench-nflows [--steps N] [--fm PATH] [--python PATH] [--out FILE]
                                            our coupling / CNF-MLE training steps against
                                            zuko's, into docs/benchmarks.md
  reproduce --task sbi [--quick | --steps N] [--tasks a,b] [--budgets 1000,10000]
                       [--observations 1,2,3] [--ema 0,0.999] [--fm PATH] [--out FILE]
                       [--figure FILE]
                                            FMPE on the sbibm tasks: C2ST against the reference
                                            posteriors beside lampe/sbi (scripts/sbi/results),
                                            into docs/results-sbi.md (default 20,000 steps;
                                            --quick: 2,000; --ema: weight-averaging decays,
                                            one row each, default 0 as lampe; --fm: use
                                            this fm binary)
  bench-sbi [--task T] [--budget N] [--steps S] [--repeats R] [--fm PATH] [--python PY]
            [--out FILE]                    time our FMPE step and sampling against lampe's in
                                            one run, print the ratios (FM_SBI_PYTHON or --python:
                                            the interpreter with lampe)
  help                                      this text";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((t, r)) => (t.as_str(), r),
        None => ("help", &[][..]),
    };
    match task {
        "help" | "--help" | "-h" => {
            println!("{HELP}");
            Ok(())
        }
        "bench" => bench::run(rest),
        "reproduce" => reproduce::run(rest),
        "bench-nflows" => nflows::bench(rest),
        "bench-sbi" => sbi::bench(rest),
        other => bail!("unknown xtask `{other}`; run `cargo xtask help`"),
    }
}

/// The workspace root (the parent of the xtask crate).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Runs a command in the workspace root, failing with its name if it fails.
pub(crate) fn run_cmd(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("could not start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// The value following `--name` in `args`, if present.
pub(crate) fn flag_value(args: &[String], name: &str) -> Result<Option<String>> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .cloned()
            .map(Some)
            .with_context(|| format!("{name} needs a value")),
    }
}

/// A one-line description of this machine for result tables.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cpu}, {cores} cores, {}", std::env::consts::OS)
}

/// Writes `text` to `path` atomically (temp file + rename).
/// `old` with the block between the markers `begin` and `end` replaced by `section` (markers
/// kept); without the markers, the block is appended. Generated sections of the docs are written
/// this way, so the text around them (other tasks' sections, notes written by hand) survives.
pub(crate) fn splice(old: &str, begin: &str, end: &str, section: &str) -> String {
    let block = format!("{begin}\n{section}{end}\n");
    match (old.find(begin), old.find(end)) {
        (Some(b), Some(e)) if e > b => format!(
            "{}{block}{}",
            &old[..b],
            old[e + end.len()..].trim_start_matches('\n')
        ),
        _ if old.is_empty() => block,
        _ => format!("{}\n\n{block}", old.trim_end()),
    }
}

pub(crate) fn write_atomic(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
