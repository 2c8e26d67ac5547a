//! The `fm` command-line tool: train flows, sample, evaluate, compute likelihoods and plot.
//!
//! Exit codes: 0 on success, 2 on bad usage or bad input (arguments, data files, model files),
//! 1 on any other failure (a diverging training run, a solver that gives up, a failed write),
//! 130 when `fm train` was stopped by Ctrl-C or SIGTERM (after writing a checkpoint and the model).
//! The rule for files: a problem found before any work starts (a missing directory, an output
//! that is an input, a device, a file that is not ours without `--force`) is bad usage, 2; a
//! write that fails once the work is done (no space left on device, an I/O error) is 1, from
//! every command alike.
//! With `--json` the last line of stdout is one JSON object with the figures the command printed.
//! Errors go to stderr as `error: ...`, naming the thing at fault and the fix.

mod args;
mod budget;
mod commands;
mod conditional;
mod density;
mod flows;
mod interop;
mod interrupt;
mod plot;
mod safety;
mod simulate;
mod verbs;

use std::path::Path;
use std::process::ExitCode;

/// An error caused by the user's input: exit code 2.
#[derive(Debug)]
pub struct InputError(pub String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// An [`InputError`] as an `anyhow::Error`.
pub fn input(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(InputError(msg.into()))
}

/// Checks that the directory of an output path exists (an input error naming it otherwise).
pub fn check_out_dir(out: &Path) -> anyhow::Result<()> {
    if out.as_os_str().is_empty() {
        return Err(input("the output path is empty: give a file name"));
    }
    if out.is_dir() {
        return Err(input(format!(
            "{}: is a directory, give a file name",
            out.display()
        )));
    }
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(input(format!(
            "{}: the directory {} does not exist: create it first or choose another output path",
            out.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// The exit code of an error: 2 when the user's input is at fault, 1 otherwise.
fn exit_code(err: &anyhow::Error) -> u8 {
    use flow_matching::{data::DataError, metrics::MetricsError, ode::OdeError, train::TrainError};
    let ode_input = |e: &OdeError| {
        matches!(
            e,
            OdeError::UnknownSolver { .. } | OdeError::InvalidParameter { .. }
        )
    };
    for cause in err.chain() {
        if cause.downcast_ref::<interrupt::Interrupted>().is_some() {
            return interrupt::EXIT_INTERRUPTED;
        }
        if let Some(DataError::Write { .. }) = cause.downcast_ref::<DataError>() {
            return 1;
        }
        if cause.downcast_ref::<InputError>().is_some()
            || cause.downcast_ref::<DataError>().is_some()
        {
            return 2;
        }
        if let Some(t) = cause.downcast_ref::<TrainError>() {
            return if t.is_invalid_input() { 2 } else { 1 };
        }
        // Metrics and solvers see the user's tolerances, probe counts and files directly
        // (`fm likelihood --rtol -1`, `fm eval` on samples of the wrong size).
        if let Some(m) = cause.downcast_ref::<MetricsError>() {
            return match m {
                MetricsError::InvalidParameter { .. } | MetricsError::SizeMismatch { .. } => 2,
                MetricsError::Ode(o) if ode_input(o) => 2,
                _ => 1,
            };
        }
        if let Some(o) = cause.downcast_ref::<OdeError>() {
            return if ode_input(o) { 2 } else { 1 };
        }
    }
    1
}

/// The error and its causes on one line, `: `-separated, leaving out a cause whose text the line
/// already holds (errors that print their source, e.g. `cannot access x.csv: No such file`, would
/// otherwise repeat it).
fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Builds from this repository target x86-64-v3 (see `.cargo/config.toml`): on a CPU without
/// AVX2/FMA, say so and how to rebuild, instead of dying on an illegal instruction later.
fn cpu_supports_build() -> Result<(), String> {
    // `is_x86_feature_detected!` is answered at compile time in such a build, so ask the CPU.
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        use std::arch::x86_64::__cpuid;
        let fma = __cpuid(1).ecx & (1 << 12) != 0;
        let avx2 = __cpuid(0).eax >= 7 && __cpuid(7).ebx & (1 << 5) != 0;
        if !(fma && avx2) {
            return Err(
                "this fm was built for x86-64-v3 CPUs (AVX2 and FMA) and this CPU lacks them; \
                 rebuild it for the plain x86-64 baseline: \
                 RUSTFLAGS=\"-C target-cpu=x86-64\" cargo build --release -p fm-cli"
                    .into(),
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    if let Err(msg) = cpu_supports_build() {
        eprintln!("error: {msg}");
        return ExitCode::FAILURE;
    }
    // A panic is a bug: report it in one line, without a backtrace, and exit with 1. The one
    // exception is stdout closed by its reader (`fm datasets | head`): `println!` then panics
    // with a broken pipe; that is no bug, so fm stops quietly with 141 (128 + SIGPIPE, what a
    // program killed by SIGPIPE reports), as other Unix tools do.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::SeqCst);
            return;
        }
        eprintln!(
            "error: internal error ({msg}); this is a bug in fm, please report it with the command you ran"
        );
    }));
    let matches = <args::Cli as clap::CommandFactory>::command().get_matches();
    let cli = <args::Cli as clap::FromArgMatches>::from_arg_matches(&matches)
        .unwrap_or_else(|e| e.exit());
    flows::record_given(&matches);
    let json = cli.json;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commands::run(cli)));
    match result {
        Ok(Ok(report)) => {
            if json {
                println!("{}", serde_json::Value::Object(report));
            }
            ExitCode::SUCCESS
        }
        Ok(Err(err)) => {
            eprintln!("error: {}", error_line(&err));
            ExitCode::from(exit_code(&err))
        }
        Err(_) if STDOUT_CLOSED.load(std::sync::atomic::Ordering::SeqCst) => ExitCode::from(141),
        Err(_) => ExitCode::from(1),
    }
}

/// Set when a write to stdout failed because its reader had closed the pipe.
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
