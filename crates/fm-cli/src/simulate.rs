//! `fm simulate` (simulation-based inference tasks of `fm-sbi`) and `fm c2st` (the classifier
//! two-sample test of `fm-metrics`).

use crate::commands::Report;
use crate::safety::{self, Kind};
use crate::{check_out_dir, input};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use flow_matching::data::{read_points, write_points};
use flow_matching::metrics::{C2stOptions, c2st};
use flow_matching::sbi::{SbiError, task};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The simulation-based inference verbs.
#[derive(Subcommand, Debug)]
pub enum SbiCommand {
    /// Simulate (θ, x) pairs of an sbibm task (two_moons, gaussian_linear, slcp,
    /// gaussian_mixture), or with --reference draw its reference posterior for an observation.
    Simulate(SimulateArgs),
    /// Classifier two-sample test (sbibm's C2ST) between two sample files: 0.5 means
    /// indistinguishable, 1 perfectly separable.
    C2st(C2stArgs),
}

/// `fm simulate`.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// The task: gaussian_linear, gaussian_mixture, two_moons or slcp.
    #[arg(long, value_name = "NAME")]
    pub task: String,
    /// Number of pairs (or of posterior samples with --reference).
    #[arg(
        long,
        default_value_t = 10_000,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub n: i64,
    /// Random seed.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Where to write θ (.csv or .npy).
    #[arg(long, value_name = "FILE")]
    pub out_theta: Option<PathBuf>,
    /// Where to write x (.csv or .npy).
    #[arg(long, value_name = "FILE")]
    pub out_x: Option<PathBuf>,
    /// Draw the reference posterior p(θ | x_obs) instead of simulating.
    #[arg(long)]
    pub reference: bool,
    /// The observation (1, 2 or 3, as in sbibm) of --reference.
    #[arg(long, value_name = "I", allow_negative_numbers = true)]
    pub observation: Option<i64>,
    /// Where to write the reference posterior samples (.csv or .npy).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `fm c2st`.
#[derive(Args, Debug)]
pub struct C2stArgs {
    /// The first sample (e.g. the reference posterior); it sets the z-scoring.
    #[arg(long, value_name = "FILE")]
    pub a: PathBuf,
    /// The second sample.
    #[arg(long, value_name = "FILE")]
    pub b: PathBuf,
    /// Cross-validation folds.
    #[arg(
        long,
        default_value_t = 5,
        value_name = "K",
        allow_negative_numbers = true
    )]
    pub folds: i64,
    /// The most training epochs per fold (sbibm: 10000; training stops earlier when the loss
    /// stalls).
    #[arg(
        long,
        default_value_t = 10_000,
        value_name = "E",
        allow_negative_numbers = true
    )]
    pub max_epochs: i64,
    /// Seed of the folds, initial weights and minibatch order.
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,
}

/// Runs an SBI verb.
pub fn run(cmd: SbiCommand) -> Result<Report> {
    match cmd {
        SbiCommand::Simulate(a) => simulate(a),
        SbiCommand::C2st(a) => c2st_cmd(a),
    }
}

fn positive(flag: &str, v: i64, max: i64) -> Result<usize> {
    if v < 1 || v > max {
        bail!(input(format!("--{flag} {v}: must be between 1 and {max}")));
    }
    Ok(v as usize)
}

/// An `fm-sbi` error: the user's input unless a sampler gave up on a valid one.
fn sbi_err(e: SbiError) -> anyhow::Error {
    match e {
        SbiError::SamplerStalled { .. } => anyhow::Error::new(e),
        other => input(other.to_string()),
    }
}

fn write(path: &Path, x: &ndarray::Array2<f64>, what: &str) -> Result<()> {
    write_points(path, x.view()).with_context(|| format!("writing {what} to {}", path.display()))
}

fn simulate(a: SimulateArgs) -> Result<Report> {
    let t = task(&a.task).map_err(sbi_err)?;
    let n = positive("n", a.n, 100_000_000)?;
    let mut rng = flow_matching::core::rng::seeded(a.seed);
    let start = Instant::now();
    let mut report = Report::new();
    report.insert("task".into(), json!(t.name()));
    report.insert("n".into(), json!(n));
    report.insert("seed".into(), json!(a.seed));
    if a.reference {
        if a.out_theta.is_some() || a.out_x.is_some() {
            bail!(input(
                "--reference writes posterior samples to --out; --out-theta and --out-x are for simulations"
            ));
        }
        let Some(i) = a.observation else {
            bail!(input(format!(
                "--reference needs --observation I (1..={} for {})",
                t.observations().len(),
                t.name()
            )));
        };
        let Some(out) = a.out else {
            bail!(input("--reference needs --out FILE (.csv or .npy)"));
        };
        check_out_dir(&out)?;
        safety::check_outputs(&[], &[safety::out("--out", &out, Kind::Points)])?;
        crate::interrupt::install_quit(&[&out])?;
        let i = usize::try_from(i).unwrap_or(0);
        let samples = t.reference_posterior(i, n, &mut rng).map_err(sbi_err)?;
        write(&out, &samples, "the reference posterior samples")?;
        println!(
            "{}: {n} reference posterior samples for observation {i} -> {} ({:.2} s)",
            t.name(),
            out.display(),
            start.elapsed().as_secs_f64()
        );
        report.insert("observation".into(), json!(i));
        // The observation itself, so a caller can condition a model on it (`fm sample --context`).
        report.insert(
            "x_obs".into(),
            json!(t.observation(i).map_err(sbi_err)?.to_vec()),
        );
        report.insert("out".into(), json!(out.display().to_string()));
    } else {
        if a.observation.is_some() || a.out.is_some() {
            bail!(input(
                "--observation and --out belong to --reference; simulations go to --out-theta and --out-x"
            ));
        }
        let (Some(ot), Some(ox)) = (a.out_theta, a.out_x) else {
            bail!(input(
                "give --out-theta FILE and --out-x FILE (.csv or .npy) for the simulated pairs"
            ));
        };
        check_out_dir(&ot)?;
        check_out_dir(&ox)?;
        safety::check_outputs(
            &[],
            &[
                safety::out("--out-theta", &ot, Kind::Points),
                safety::out("--out-x", &ox, Kind::Points),
            ],
        )?;
        crate::interrupt::install_quit(&[&ot, &ox])?;
        let (theta, x) = t.simulate_pairs(n, &mut rng).map_err(sbi_err)?;
        write(&ot, &theta, "θ")?;
        write(&ox, &x, "x")?;
        println!(
            "{}: {n} simulations, θ ({} columns) -> {}, x ({} columns) -> {} ({:.2} s)",
            t.name(),
            t.theta_dim(),
            ot.display(),
            t.x_dim(),
            ox.display(),
            start.elapsed().as_secs_f64()
        );
        report.insert("out_theta".into(), json!(ot.display().to_string()));
        report.insert("out_x".into(), json!(ox.display().to_string()));
    }
    report.insert("seconds".into(), json!(start.elapsed().as_secs_f64()));
    Ok(report)
}

fn c2st_cmd(a: C2stArgs) -> Result<Report> {
    let opts = C2stOptions {
        folds: positive("folds", a.folds, 1000)?,
        max_epochs: positive("max-epochs", a.max_epochs, 1_000_000)?,
        seed: a.seed,
        ..C2stOptions::default()
    };
    let x_a = read_points(&a.a)?;
    let x_b = read_points(&a.b)?;
    let start = Instant::now();
    let r = c2st(x_a.view(), x_b.view(), &opts).map_err(|e| {
        input(format!(
            "c2st of {} against {}: {e}",
            a.a.display(),
            a.b.display()
        ))
    })?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "c2st accuracy {:.4} (folds {:?}; 0.5 = indistinguishable, guessing spread ±{:.4}) ({secs:.1} s)",
        r.accuracy,
        r.fold_accuracies
            .iter()
            .map(|v| (v * 1e4).round() / 1e4)
            .collect::<Vec<_>>(),
        flow_matching::metrics::C2st::null_std(x_a.nrows() + x_b.nrows()),
    );
    let mut report = Report::new();
    report.insert("c2st".into(), json!(r.accuracy));
    report.insert("fold_accuracies".into(), json!(r.fold_accuracies));
    report.insert("epochs".into(), json!(r.epochs));
    report.insert("seconds".into(), json!(secs));
    Ok(report)
}
