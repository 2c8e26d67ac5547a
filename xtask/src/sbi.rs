//! `cargo xtask reproduce --task sbi` and `cargo xtask bench-sbi`: simulation-based inference
//! results (issue 17), through the `fm` binary.
//!
//! For each task × simulation budget: `fm simulate` the training pairs (seed 1) and, once per
//! task, `fm simulate --reference` 10,000 reference posterior samples for sbibm's observations
//! 1–3 (seed 100 + k); `fm train --target θ --context x` (FMPE with lampe's architecture: MLP
//! 4 × 128 ELU, Adam 1e-3, batch 256, three Fourier time frequencies, no EMA); `fm sample
//! --context x_obs` 10,000 posterior samples (Dopri5 at zuko's tolerances, rtol 1e-5, atol 1e-6);
//! `fm c2st` against the reference. The Python baselines (`scripts/sbi/baseline.py`: lampe's
//! FMPE and sbi's NPE) read the same files and are scored by the same `fm c2st`; their measured
//! figures are read from `scripts/sbi/results/*.json` and shown beside ours, marked as such.
//!
//! The generated section replaces the part of `docs/results-sbi.md` between two marker lines;
//! `docs/sbi-posteriors.png` shows samples against the reference for observation 1 of each task.
//!
//! `bench-sbi` times one training step and the sampling of 10,000 posterior samples of ours and
//! of lampe in the same run (same data, same architecture and batch, one thread each) and prints
//! the ratios; with `--out` it writes them into a section of `docs/benchmarks.md`.

use crate::reproduce::fm_json;
use crate::{flag_value, machine, root, run_cmd};
use anyhow::{Context, Result, bail};
use plotters::prelude::*;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The tasks, in the order of the table.
pub(crate) const TASKS: [&str; 4] = ["two_moons", "gaussian_linear", "slcp", "gaussian_mixture"];
/// Seed of the training simulations (`fm simulate --seed`); the Python side uses the same.
const TRAIN_SEED: u64 = 1;
/// Reference posterior samples per observation, and posterior samples drawn per method.
const REFERENCE_N: usize = 10_000;
const N_SAMPLES: usize = 10_000;
/// lampe's budget in the issue, and the `--quick` one.
const FULL_STEPS: usize = 20_000;
const QUICK_STEPS: usize = 2_000;
/// The θ columns plotted per task.
const PLOT_DIMS: (usize, usize) = (0, 1);

const BEGIN: &str =
    "<!-- cargo xtask reproduce --task sbi: begin (generated; edits here are overwritten) -->";
const END: &str = "<!-- cargo xtask reproduce --task sbi: end -->";
/// Markers of the `bench-sbi` section of `docs/benchmarks.md` (kept by `cargo xtask bench`).
pub(crate) const BENCH_BEGIN: &str =
    "<!-- cargo xtask bench-sbi: begin (generated; edits here are overwritten) -->";
pub(crate) const BENCH_END: &str = "<!-- cargo xtask bench-sbi: end -->";

/// `fm train` flags of FMPE with lampe's architecture (besides data, steps, seed, EMA and output).
const FMPE_FLAGS: &[&str] = &[
    "--matcher",
    "fm",
    "--sigma",
    "0.001",
    "--hidden",
    "128,128,128,128",
    "--activation",
    "elu",
    "--time-features",
    "fourier:3",
    "--optimizer",
    "adam",
    "--lr",
    "1e-3",
    "--batch",
    "256",
    "--threads",
    "1",
];
/// `fm sample` flags: Dopri5 at the tolerances of zuko's `FreeFormJacobianTransform` (lampe's
/// sampler).
const SAMPLE_FLAGS: &[&str] = &[
    "--solver",
    "dopri5",
    "--rtol",
    "1e-5",
    "--atol",
    "1e-6",
    "--threads",
    "1",
];

/// A comma-separated list of values, e.g. `1000,10000`.
fn parse_list<T: std::str::FromStr>(s: &str, flag: &str) -> Result<Vec<T>> {
    let v: Vec<T> = s
        .split(',')
        .map(|p| {
            let p = p.trim();
            // Digits may be grouped with `_` (10_000).
            p.parse::<T>()
                .or_else(|_| p.replace('_', "").parse::<T>())
                .map_err(|_| anyhow::anyhow!("{flag} {s}: `{p}` is not a valid entry"))
        })
        .collect::<Result<_>>()?;
    if v.is_empty() {
        bail!("{flag} needs at least one entry");
    }
    Ok(v)
}

/// The value of `--context` for an observation: full precision (`{:?}` prints the shortest
/// decimal that parses back to the same f64).
fn context_arg(x: &[f64]) -> String {
    x.iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Rows of a CSV written by `fm` or `baseline.py` (a first line that is not numbers is a header).
fn read_rows(path: &Path) -> Result<Vec<Vec<f64>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Result<Vec<f64>, _> = line.split(',').map(|f| f.trim().parse()).collect();
        match parsed {
            Ok(r) => rows.push(r),
            Err(_) if i == 0 => {} // header
            Err(_) => bail!("{} line {}: not numbers", path.display(), i + 1),
        }
    }
    if let Some(w) = rows.first().map(Vec::len)
        && let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != w)
    {
        bail!(
            "{}: data row {} has {} columns, the first has {w}",
            path.display(),
            i + 1,
            r.len()
        );
    }
    Ok(rows)
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// The shared files of one task: training pairs per budget, reference samples and x_obs per
/// observation (the file names `scripts/sbi/baseline.py` reads).
struct TaskData {
    dir: PathBuf,
    /// (observation, reference samples file, x_obs)
    observations: Vec<(usize, PathBuf, Vec<f64>)>,
}

impl TaskData {
    fn train_files(&self, budget: usize) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("train-{budget}-theta.csv")),
            self.dir.join(format!("train-{budget}-x.csv")),
        )
    }
}

/// Simulates what is missing of a task's files (existing ones are kept, so ours and the Python
/// baselines see the same bits).
fn ensure_data(
    fm: &Path,
    data: &Path,
    task: &str,
    budgets: &[usize],
    observations: &[usize],
) -> Result<TaskData> {
    let dir = data.join(task);
    std::fs::create_dir_all(&dir)?;
    let mut td = TaskData {
        dir,
        observations: Vec::new(),
    };
    for &b in budgets {
        let (th, x) = td.train_files(b);
        if !(th.exists() && x.exists()) {
            fm_json(
                fm,
                &[
                    "simulate".into(),
                    "--task".into(),
                    task.into(),
                    "--n".into(),
                    b.to_string(),
                    "--seed".into(),
                    TRAIN_SEED.to_string(),
                    "--out-theta".into(),
                    p(&th),
                    "--out-x".into(),
                    p(&x),
                    "--force".into(),
                ],
            )?;
        }
    }
    for &k in observations {
        let reference = td.dir.join(format!("reference-{k}.csv"));
        let meta = td.dir.join(format!("obs-{k}.json"));
        if !(reference.exists() && meta.exists()) {
            let j = fm_json(
                fm,
                &[
                    "simulate".into(),
                    "--task".into(),
                    task.into(),
                    "--reference".into(),
                    "--observation".into(),
                    k.to_string(),
                    "--n".into(),
                    REFERENCE_N.to_string(),
                    "--seed".into(),
                    (100 + k).to_string(),
                    "--out".into(),
                    p(&reference),
                    "--force".into(),
                ],
            )?;
            let tmp = meta.with_extension("json.tmp");
            std::fs::write(&tmp, format!("{j}\n"))?;
            std::fs::rename(&tmp, &meta)?;
        }
        let j: Value = serde_json::from_str(&std::fs::read_to_string(&meta)?)
            .with_context(|| format!("{} is not JSON", meta.display()))?;
        let x_obs = f64_array(&j["x_obs"])
            .with_context(|| format!("{}: no x_obs array", meta.display()))?;
        td.observations.push((k, reference, x_obs));
    }
    Ok(td)
}

fn f64_array(v: &Value) -> Option<Vec<f64>> {
    v.as_array()?.iter().map(Value::as_f64).collect()
}

/// A duration: wall seconds, and CPU seconds of the process where known. On a loaded machine
/// the wall time measures the load as much as the code; the CPU time does not, so ratios use
/// it when both sides have it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Time {
    wall: f64,
    cpu: Option<f64>,
}

impl Time {
    fn scale(self, k: f64) -> Time {
        Time {
            wall: self.wall * k,
            cpu: self.cpu.map(|c| c * k),
        }
    }

    fn min(self, other: Time) -> Time {
        Time {
            wall: self.wall.min(other.wall),
            cpu: match (self.cpu, other.cpu) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    /// The mean of several times (CPU only if every one has it).
    fn mean(ts: &[Time]) -> Time {
        let n = ts.len().max(1) as f64;
        Time {
            wall: ts.iter().map(|t| t.wall).sum::<f64>() / n,
            cpu: ts.iter().map(|t| t.cpu).sum::<Option<f64>>().map(|c| c / n),
        }
    }
}

/// `theirs / ours` on CPU time where both have it, else on wall time (marked).
fn time_ratio(theirs: Time, ours: Time) -> String {
    match (theirs.cpu, ours.cpu) {
        (Some(t), Some(o)) => fmt_ratio(t, o),
        _ => format!("{} (wall)", fmt_ratio(theirs.wall, ours.wall)),
    }
}

/// `CPU (wall)` in milliseconds.
fn fmt_ms(t: Option<Time>) -> String {
    match t {
        None => "—".into(),
        Some(Time { wall, cpu: Some(c) }) => format!("{:.3} ({:.3})", c * 1e3, wall * 1e3),
        Some(Time { wall, cpu: None }) => format!("— ({:.3})", wall * 1e3),
    }
}

/// `CPU (wall)`, each in s or ms.
fn fmt_time(t: Time) -> String {
    match t.cpu {
        Some(c) => format!("{} ({})", fmt_secs(c), fmt_secs(t.wall)),
        None => format!("— ({})", fmt_secs(t.wall)),
    }
}

/// CPU seconds of this process's waited-for children (`cutime + cstime` of `/proc/self/stat`,
/// in USER_HZ = 100 ticks per second); `None` where there is no /proc.
fn children_cpu_seconds() -> Option<f64> {
    parse_children_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn parse_children_cpu(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 16 and 17 of stat(5); `rest` starts at field 3.
    let cutime: f64 = f.get(13)?.parse().ok()?;
    let cstime: f64 = f.get(14)?.parse().ok()?;
    Some((cutime + cstime) / 100.0)
}

/// `fm_json` with the wall and CPU seconds the command took.
fn fm_json_timed(fm: &Path, args: &[String]) -> Result<(Value, Time)> {
    let cpu0 = children_cpu_seconds();
    let started = Instant::now();
    let v = fm_json(fm, args)?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu0.zip(children_cpu_seconds()).map(|(a, b)| b - a);
    Ok((v, Time { wall, cpu }))
}

/// One observation's figures of one method.
#[derive(Debug, Clone, PartialEq)]
struct ObsResult {
    observation: usize,
    c2st: Option<f64>,
    sample: Time,
}

/// Where a row of the table comes from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// Run by this command.
    ThisRun,
    /// Read from a results JSON of `scripts/sbi/baseline.py`.
    Measured {
        file: String,
        date: String,
        versions: String,
    },
}

/// One method on one task and budget.
#[derive(Debug, Clone, PartialEq)]
struct MethodResult {
    task: String,
    budget: usize,
    method: String,
    /// Training steps, where the method has a fixed number.
    steps: Option<usize>,
    train_seconds: f64,
    per_step: Option<Time>,
    per_obs: Vec<ObsResult>,
    source: Source,
}

impl MethodResult {
    fn c2st_mean(&self) -> Option<f64> {
        let v: Vec<f64> = self.per_obs.iter().filter_map(|o| o.c2st).collect();
        (!v.is_empty() && v.len() == self.per_obs.len())
            .then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    fn sample_mean(&self) -> Time {
        Time::mean(&self.per_obs.iter().map(|o| o.sample).collect::<Vec<_>>())
    }

    fn c2st_of(&self, observation: usize) -> Option<f64> {
        self.per_obs
            .iter()
            .find(|o| o.observation == observation)
            .and_then(|o| o.c2st)
    }
}

/// A results JSON of `scripts/sbi/baseline.py`, checked.
fn parse_baseline(v: &Value, file: &str) -> Result<MethodResult> {
    let s = |k: &str| {
        v[k].as_str()
            .map(str::to_string)
            .with_context(|| format!("{file}: `{k}` is missing or not a string"))
    };
    let f = |k: &str| {
        v[k].as_f64()
            .with_context(|| format!("{file}: `{k}` is missing or not a number"))
    };
    let method = match s("method")?.as_str() {
        "lampe" => "lampe FMPE".to_string(),
        "sbi" => "sbi NPE (NSF)".to_string(),
        other => bail!("{file}: unknown method `{other}` (lampe or sbi)"),
    };
    let obs = v["observations"]
        .as_array()
        .filter(|a| !a.is_empty())
        .with_context(|| format!("{file}: `observations` is missing or empty"))?;
    let per_obs = obs
        .iter()
        .map(|o| {
            Ok(ObsResult {
                observation: o["observation"]
                    .as_u64()
                    .with_context(|| format!("{file}: an observation without its number"))?
                    as usize,
                c2st: o["c2st"].as_f64(),
                sample: Time {
                    wall: o["sample_seconds"].as_f64().with_context(|| {
                        format!("{file}: an observation without sample_seconds")
                    })?,
                    cpu: o["sample_cpu_seconds"].as_f64(),
                },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(c) = per_obs
        .iter()
        .filter_map(|o| o.c2st)
        .find(|c| !(0.0..=1.0).contains(c))
    {
        bail!("{file}: C2ST {c} is not an accuracy in [0, 1]");
    }
    let versions = v["versions"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let budget = v["budget"]
        .as_u64()
        .with_context(|| format!("{file}: `budget` is missing or not a whole number"))?
        as usize;
    Ok(MethodResult {
        task: s("task")?,
        budget,
        method,
        steps: v["steps"].as_u64().map(|x| x as usize),
        train_seconds: f("train_seconds")?,
        per_step: v["train_seconds_per_step"].as_f64().map(|wall| Time {
            wall,
            cpu: v["train_cpu_seconds_per_step"].as_f64(),
        }),
        per_obs,
        source: Source::Measured {
            file: file.to_string(),
            date: s("date_utc").unwrap_or_default(),
            versions,
        },
    })
}

/// Every results JSON under `dir` (sorted by name); a malformed file is an error naming it.
fn load_baselines(dir: &Path) -> Result<Vec<MethodResult>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let name = path
                .strip_prefix(root())
                .unwrap_or(path)
                .display()
                .to_string();
            let v: Value = serde_json::from_str(&std::fs::read_to_string(path)?)
                .with_context(|| format!("{name} is not JSON"))?;
            parse_baseline(&v, &name)
        })
        .collect()
}

fn fmt_c2st(c: Option<f64>) -> String {
    c.map_or("—".into(), |c| format!("{c:.3}"))
}

fn fmt_secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

fn fmt_ratio(theirs: f64, ours: f64) -> String {
    if ours > 0.0 && theirs.is_finite() && ours.is_finite() {
        format!("{:.1}×", theirs / ours)
    } else {
        "—".into()
    }
}

/// The C2ST table: one row per task × budget × method, ours first, then the measured Python
/// figures of the same task and budget.
fn c2st_table(results: &[MethodResult], observations: &[usize]) -> String {
    let mut s = String::from("| task | simulations | method | steps |");
    for k in observations {
        let _ = write!(s, " C2ST obs {k} |");
    }
    s.push_str(" mean C2ST | source |\n|---|---|---|---|");
    for _ in observations {
        s.push_str("---|");
    }
    s.push_str("---|---|\n");
    for r in results {
        let _ = write!(
            s,
            "| {} | {} | {} | {} |",
            r.task,
            r.budget,
            r.method,
            r.steps.map_or("—".into(), |n| n.to_string())
        );
        for &k in observations {
            let _ = write!(s, " {} |", fmt_c2st(r.c2st_of(k)));
        }
        let src = match &r.source {
            Source::ThisRun => "this run".to_string(),
            Source::Measured { file, date, .. } => format!("measured, `{file}` ({date})"),
        };
        let _ = writeln!(s, " **{}** | {src} |", fmt_c2st(r.c2st_mean()));
    }
    s
}

/// Times of ours beside lampe's for each task and budget where both exist.
fn speed_table(ours: &[MethodResult], baselines: &[MethodResult]) -> String {
    let mut s = String::from(
        "| task | simulations | ours ms/step | lampe ms/step | step: lampe / ours | \
         ours 10,000 samples | lampe 10,000 samples | sampling: lampe / ours | mean C2ST ours / lampe |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let mut any = false;
    for o in ours {
        let Some(l) = baselines
            .iter()
            .find(|b| b.task == o.task && b.budget == o.budget && b.method == "lampe FMPE")
        else {
            continue;
        };
        any = true;
        let step_ratio = match (l.per_step, o.per_step) {
            (Some(t), Some(u)) => time_ratio(t, u),
            _ => "—".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {step_ratio} | {} | {} | {} | {} / {} |",
            o.task,
            o.budget,
            fmt_ms(o.per_step),
            fmt_ms(l.per_step),
            fmt_time(o.sample_mean()),
            fmt_time(l.sample_mean()),
            time_ratio(l.sample_mean(), o.sample_mean()),
            fmt_c2st(o.c2st_mean()),
            fmt_c2st(l.c2st_mean()),
        );
    }
    if !any {
        s.push_str("| (no lampe results JSON for these tasks and budgets) | | | | | | | | |\n");
    }
    s
}

/// The `fm` binary: `--fm PATH` as given (copied, so a rebuild cannot swap it mid-run), else a
/// fresh release build of fm-cli.
fn fm_binary(args: &[String], work: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(work)?;
    let built = match flag_value(args, "--fm")? {
        Some(f) => PathBuf::from(f),
        None => {
            run_cmd(Command::new("cargo").args(["build", "--release", "-p", "fm-cli"]))?;
            root().join("target/release/fm")
        }
    };
    let fm = work.join("fm");
    if built != fm {
        std::fs::copy(&built, &fm)
            .with_context(|| format!("copying the fm binary {}", built.display()))?;
    }
    Ok(fm)
}

/// Time per training step: the `fm train` process's CPU seconds over the steps (start-up, data
/// reading and the model write included, so it errs against us), and the trainer's own wall
/// time per step.
fn train_step_time(report: &Value, process: Time, steps: usize) -> Result<Time> {
    let sps = report["steps_per_second"]
        .as_f64()
        .filter(|v| *v > 0.0)
        .with_context(|| format!("fm train printed no steps_per_second: {report}"))?;
    Ok(Time {
        wall: 1.0 / sps,
        cpu: process.scale(1.0 / steps as f64).cpu,
    })
}

/// "FMPE (ours)" for lampe's set-up (no weight averaging), else with the EMA decay named.
fn method_label(ema: f64) -> String {
    if ema == 0.0 {
        "FMPE (ours)".into()
    } else {
        format!("FMPE (ours, EMA {ema})")
    }
}

/// Trains FMPE on one budget and scores it on every observation.
fn run_fmpe(
    fm: &Path,
    runs: &Path,
    td: &TaskData,
    task: &str,
    budget: usize,
    steps: usize,
    ema: f64,
) -> Result<(MethodResult, Vec<PathBuf>)> {
    let (th, x) = td.train_files(budget);
    let model = runs.join(format!("{task}-{budget}-{steps}-ema{ema}.safetensors"));
    let mut a = strings(&["train", "--target"]);
    a.push(p(&th));
    a.push("--context".into());
    a.push(p(&x));
    a.extend(strings(FMPE_FLAGS));
    a.extend([
        "--ema".into(),
        ema.to_string(),
        "--steps".into(),
        steps.to_string(),
        "--seed".into(),
        "0".into(),
        "--quiet".into(),
        "--force".into(),
        "--out".into(),
        p(&model),
    ]);
    let (t, time) = fm_json_timed(fm, &a)?;
    let train_seconds = t["wall_seconds"]
        .as_f64()
        .with_context(|| format!("fm train printed no wall_seconds: {t}"))?;
    let per_step = train_step_time(&t, time, steps)?;
    println!(
        "  {task} n={budget}: trained {steps} steps in {train_seconds:.1} s, {} ms/step CPU (wall)",
        fmt_ms(Some(per_step))
    );
    let mut per_obs = Vec::new();
    let mut files = Vec::new();
    for (k, reference, x_obs) in &td.observations {
        let out = runs.join(format!("{task}-{budget}-{steps}-ema{ema}-obs{k}.csv"));
        let mut a = strings(&["sample", "--model"]);
        a.extend([
            p(&model),
            "--context".into(),
            context_arg(x_obs),
            "--n".into(),
            N_SAMPLES.to_string(),
            "--seed".into(),
            k.to_string(),
        ]);
        a.extend(strings(SAMPLE_FLAGS));
        a.extend(["--force".into(), "--out".into(), p(&out)]);
        let (_, sample) = fm_json_timed(fm, &a)?;
        let c = fm_json(
            fm,
            &[
                "c2st".into(),
                "--a".into(),
                p(reference),
                "--b".into(),
                p(&out),
            ],
        )?;
        let c2st = c["c2st"]
            .as_f64()
            .with_context(|| format!("fm c2st printed no c2st: {c}"))?;
        println!(
            "    observation {k}: {N_SAMPLES} samples in {} CPU (wall), C2ST {c2st:.4}",
            fmt_time(sample)
        );
        per_obs.push(ObsResult {
            observation: *k,
            c2st: Some(c2st),
            sample,
        });
        files.push(out);
    }
    Ok((
        MethodResult {
            task: task.into(),
            budget,
            method: method_label(ema),
            steps: Some(steps),
            train_seconds,
            per_step: Some(per_step),
            per_obs,
            source: Source::ThisRun,
        },
        files,
    ))
}

/// One panel of the figure: a task's reference and FMPE samples for one observation.
struct Panel {
    title: String,
    reference: Vec<(f64, f64)>,
    ours: Vec<(f64, f64)>,
}

fn columns(rows: &[Vec<f64>], (i, j): (usize, usize), n: usize) -> Vec<(f64, f64)> {
    rows.iter()
        .filter(|r| r.len() > i.max(j))
        .take(n)
        .map(|r| (r[i], r[j]))
        .collect()
}

/// One row per task: the reference samples on the left, ours on the right, on the same axes.
fn figure(out: &Path, panels: &[Panel]) -> Result<()> {
    static FONT: &[u8] = include_bytes!("../../crates/fm-cli/assets/DejaVuSans.ttf");
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    if panels.is_empty() {
        return Ok(());
    }
    let tmp = out.with_extension("tmp.png");
    {
        let area = BitMapBackend::new(&tmp, (1000, 460 * panels.len() as u32)).into_drawing_area();
        area.fill(&WHITE)?;
        let cells = area.split_evenly((panels.len(), 2));
        let colors = [RGBColor(90, 90, 90), RGBColor(31, 119, 180)];
        for (row, panel) in panels.iter().enumerate() {
            let (mut x0, mut x1, mut y0, mut y1) = (
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
            );
            for &(x, y) in panel.reference.iter().chain(&panel.ours) {
                x0 = x0.min(x);
                x1 = x1.max(x);
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
            if !(x0.is_finite() && y0.is_finite()) {
                continue;
            }
            let (px, py) = (0.05 * (x1 - x0).max(1e-9), 0.05 * (y1 - y0).max(1e-9));
            let sides = [
                (format!("{}: reference", panel.title), &panel.reference),
                (format!("{}: FMPE (ours)", panel.title), &panel.ours),
            ];
            for (col, (caption, pts)) in sides.iter().enumerate() {
                let mut chart = ChartBuilder::on(&cells[2 * row + col])
                    .caption(caption, ("sans-serif", 16))
                    .margin(12)
                    .x_label_area_size(35)
                    .y_label_area_size(50)
                    .build_cartesian_2d(x0 - px..x1 + px, y0 - py..y1 + py)?;
                chart
                    .configure_mesh()
                    .x_desc(format!("θ{}", PLOT_DIMS.0 + 1))
                    .y_desc(format!("θ{}", PLOT_DIMS.1 + 1))
                    .light_line_style(WHITE.mix(0.0))
                    .draw()?;
                let c = colors[col];
                chart.draw_series(pts.iter().map(|&q| Circle::new(q, 1, c.mix(0.4).filled())))?;
            }
        }
        area.present()?;
    }
    std::fs::rename(&tmp, out)?;
    Ok(())
}

/// `cargo xtask reproduce --task sbi [--quick | --steps N] [--tasks a,b] [--budgets 1000,10000]
/// [--observations 1,2,3] [--fm PATH] [--out FILE] [--figure FILE]`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let steps: usize = match flag_value(args, "--steps")? {
        Some(s) => s.parse().context("--steps takes a whole number")?,
        None if quick => QUICK_STEPS,
        None => FULL_STEPS,
    };
    let tasks: Vec<String> = match flag_value(args, "--tasks")? {
        Some(s) => parse_list(&s, "--tasks")?,
        None => TASKS.iter().map(|t| t.to_string()).collect(),
    };
    if let Some(t) = tasks.iter().find(|t| !TASKS.contains(&t.as_str())) {
        bail!(
            "--tasks: unknown task `{t}`; the tasks are {}",
            TASKS.join(", ")
        );
    }
    let budgets: Vec<usize> = match flag_value(args, "--budgets")? {
        Some(s) => parse_list(&s, "--budgets")?,
        None => vec![1_000, 10_000],
    };
    let observations: Vec<usize> = match flag_value(args, "--observations")? {
        Some(s) => parse_list(&s, "--observations")?,
        None => vec![1, 2, 3],
    };
    // EMA decays of the weights sampling uses: 0 is lampe's set-up; each value is a row.
    let emas: Vec<f64> = match flag_value(args, "--ema")? {
        Some(s) => parse_list(&s, "--ema")?,
        None => vec![0.0],
    };
    if emas.iter().any(|e| !(0.0..1.0).contains(e)) {
        bail!("--ema: each decay must be in [0, 1)");
    }
    if steps == 0 || budgets.contains(&0) || observations.iter().any(|&k| !(1..=3).contains(&k)) {
        bail!("--steps and --budgets must be at least 1, --observations between 1 and 3");
    }
    let out = root().join(flag_value(args, "--out")?.unwrap_or("docs/results-sbi.md".into()));
    let png =
        root().join(flag_value(args, "--figure")?.unwrap_or("docs/sbi-posteriors.png".into()));
    let command = format!("cargo xtask reproduce {}", args.join(" "));

    let work = root().join("target/reproduce/sbi");
    let fm = fm_binary(args, &work)?;
    let data = work.join("data");
    let runs = work.join("runs");
    std::fs::create_dir_all(&runs)?;
    let started = Instant::now();

    let mut ours = Vec::new();
    let mut panels = Vec::new();
    for task in &tasks {
        let td = ensure_data(&fm, &data, task, &budgets, &observations)?;
        for (&b, &ema) in budgets
            .iter()
            .flat_map(|b| emas.iter().map(move |e| (b, e)))
        {
            let (r, files) = run_fmpe(&fm, &runs, &td, task, b, steps, ema)?;
            // The figure: the largest budget, the last EMA value, the first observation.
            if Some(&b) == budgets.iter().max()
                && Some(&ema) == emas.last()
                && let (Some((k, reference, _)), Some(f)) = (td.observations.first(), files.first())
            {
                panels.push(Panel {
                    title: format!(
                        "{task}, n = {b}, obs {k}{} (C2ST {})",
                        if ema > 0.0 {
                            format!(", EMA {ema}")
                        } else {
                            String::new()
                        },
                        fmt_c2st(r.c2st_of(*k))
                    ),
                    reference: columns(&read_rows(reference)?, PLOT_DIMS, 5_000),
                    ours: columns(&read_rows(f)?, PLOT_DIMS, 5_000),
                });
            }
            ours.push(r);
        }
    }
    let total = started.elapsed().as_secs_f64();
    let baselines = load_baselines(&root().join("scripts/sbi/results"))?;

    let section = results_section(
        &command,
        total,
        steps,
        &ours,
        &baselines,
        &observations,
        png.strip_prefix(out.parent().unwrap_or(&root()))
            .unwrap_or(&png),
    );
    let old = std::fs::read_to_string(&out).unwrap_or_default();
    crate::write_atomic(&out, &crate::splice(&old, BEGIN, END, &section))?;
    figure(&png, &panels)?;
    println!("{section}");
    println!("wrote {} and {}", out.display(), png.display());
    Ok(())
}

/// The generated section of `docs/results-sbi.md`.
fn results_section(
    command: &str,
    total: f64,
    steps: usize,
    ours: &[MethodResult],
    baselines: &[MethodResult],
    observations: &[usize],
    png: &Path,
) -> String {
    let mut rows: Vec<MethodResult> = Vec::new();
    for o in ours {
        rows.push(o.clone());
        rows.extend(
            baselines
                .iter()
                .filter(|b| b.task == o.task && b.budget == o.budget)
                .cloned(),
        );
    }
    let mut s = String::new();
    let _ = write!(
        s,
        "## Generated: `{command}`\n\n\
         Ran in {total:.0} s on {} (every `fm` call single-threaded). FMPE: `fm train --target \
         train-N-theta.csv --context train-N-x.csv {} --ema E --steps {steps} --seed 0` (E = 0, \
         lampe's set-up without weight averaging, unless the row names an EMA decay); `fm sample \
         --context x_obs --n {N_SAMPLES} {} --seed k`; `fm c2st --a reference-k.csv --b \
         samples.csv` (5 folds). Simulations: `fm simulate --task T --n N --seed {TRAIN_SEED}`; \
         reference: `fm simulate --task T --reference --observation k --n {REFERENCE_N} --seed \
         100+k`. Rows marked *measured* are not rerun here: they are read from \
         `scripts/sbi/results/*.json`, written by `scripts/sbi/baseline.py` on the same files and \
         scored by the same `fm c2st`.\n\n",
        machine(),
        FMPE_FLAGS.join(" "),
        SAMPLE_FLAGS.join(" "),
    );
    if steps != FULL_STEPS {
        let _ = writeln!(
            s,
            "**Not the issue's budget**: FMPE trained {steps} steps here; lampe's set-up is \
             {FULL_STEPS}.\n"
        );
    }
    s.push_str("C2ST accuracy (0.5 = indistinguishable from the reference; lower is better):\n\n");
    s.push_str(&c2st_table(&rows, observations));
    s.push_str(
        "\nTimes, CPU seconds with wall seconds in parentheses (one thread each; the machine \
         was shared, so wall times carry other load and the ratios are on CPU time). Ours: \
         training per step is the `fm train` process's CPU time over the steps (start-up and \
         file writes included) and the trainer's wall time per step; sampling is the `fm \
         sample` process for 10,000 posterior samples, mean over the observations. lampe's \
         are from its results JSON (training loop and sampling call only), a different run: \
         `cargo xtask bench-sbi` measures both in one run.\n\n",
    );
    s.push_str(&speed_table(ours, baselines));
    let measured: Vec<String> = rows
        .iter()
        .filter_map(|b| match &b.source {
            Source::Measured { file, versions, .. } => Some(format!("`{file}`: {versions}")),
            Source::ThisRun => None,
        })
        .collect();
    if !measured.is_empty() {
        let _ = writeln!(s, "\nPython versions: {}.", measured.join("; "));
    }
    let _ = writeln!(
        s,
        "\n![posterior samples against the reference]({})\n",
        png.display()
    );
    s
}

/// `cargo xtask bench-sbi [--task T] [--budget N] [--steps S] [--repeats R] [--fm PATH]
/// [--python PY] [--out docs/benchmarks.md]`.
pub(crate) fn bench(args: &[String]) -> Result<()> {
    let task = flag_value(args, "--task")?.unwrap_or("two_moons".into());
    if !TASKS.contains(&task.as_str()) {
        bail!(
            "--task: unknown task `{task}`; the tasks are {}",
            TASKS.join(", ")
        );
    }
    let budget: usize = match flag_value(args, "--budget")? {
        Some(s) => s
            .replace('_', "")
            .parse()
            .context("--budget takes a whole number")?,
        None => 10_000,
    };
    let steps: usize = match flag_value(args, "--steps")? {
        Some(s) => s.parse().context("--steps takes a whole number")?,
        None => 2_000,
    };
    let repeats: usize = match flag_value(args, "--repeats")? {
        Some(s) => s.parse().context("--repeats takes a whole number")?,
        None => 2,
    };
    if budget == 0 || steps == 0 || repeats == 0 {
        bail!("--budget, --steps and --repeats must be at least 1");
    }
    let python = flag_value(args, "--python")?
        .or_else(|| std::env::var("FM_SBI_PYTHON").ok())
        .unwrap_or("python3".into());
    let out = flag_value(args, "--out")?;
    let command = format!("cargo xtask bench-sbi {}", args.join(" "));

    let work = root().join("target/reproduce/sbi");
    let bench_dir = work.join("bench");
    // Its own copy of the binary, so a `reproduce` run at the same time keeps its own.
    let fm = fm_binary(args, &bench_dir)?;
    let td = ensure_data(&fm, &work.join("data"), &task, &[budget], &[1])?;

    // Alternate ours and lampe `repeats` times; keep each side's fastest (the least disturbed
    // by other load on the machine).
    let inf = Time {
        wall: f64::INFINITY,
        cpu: None,
    };
    let (mut ours_step, mut ours_sample) = (inf, inf);
    let (mut lampe_step, mut lampe_sample) = (inf, inf);
    for r in 0..repeats {
        let o = run_fmpe_timed(&fm, &bench_dir, &td, &task, budget, steps)?;
        ours_step = ours_step.min(o.0);
        ours_sample = ours_sample.min(o.1);
        let json = bench_dir.join(format!("lampe-{r}.json"));
        let mut cmd = Command::new(&python);
        cmd.args([
            "scripts/sbi/baseline.py",
            "--method",
            "lampe",
            "--task",
            &task,
            "--budget",
            &budget.to_string(),
            "--steps",
            &steps.to_string(),
            "--observations",
            "1",
            "--skip-c2st",
            "--fm",
            &p(&fm),
            "--data",
            &p(&work.join("data")),
            "--samples-dir",
            &p(&bench_dir),
            "--results",
            &p(&json),
        ]);
        run_cmd(&mut cmd)?;
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
        let l = parse_baseline(&v, &p(&json))?;
        let l_step = l.per_step.context("lampe JSON without a step time")?;
        lampe_step = lampe_step.min(l_step);
        lampe_sample = lampe_sample.min(l.sample_mean());
        println!(
            "repeat {}: ours {} ms/step, sampling {}; lampe {} ms/step, sampling {} (CPU (wall))",
            r + 1,
            fmt_ms(Some(o.0)),
            fmt_time(o.1),
            fmt_ms(Some(l_step)),
            fmt_time(l.sample_mean())
        );
    }
    let section = bench_section(
        &command,
        &task,
        budget,
        steps,
        repeats,
        (ours_step, ours_sample),
        (lampe_step, lampe_sample),
    );
    println!("{section}");
    if let Some(out) = out {
        let path = root().join(out);
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        crate::write_atomic(
            &path,
            &crate::splice(&old, BENCH_BEGIN, BENCH_END, &section),
        )?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Our seconds per training step and seconds for 10,000 samples of observation 1.
fn run_fmpe_timed(
    fm: &Path,
    dir: &Path,
    td: &TaskData,
    task: &str,
    budget: usize,
    steps: usize,
) -> Result<(Time, Time)> {
    let (th, x) = td.train_files(budget);
    let model = dir.join(format!("{task}-{budget}-bench.safetensors"));
    let mut a = strings(&["train", "--target"]);
    a.extend([p(&th), "--context".into(), p(&x)]);
    a.extend(strings(FMPE_FLAGS));
    // lampe has no weight averaging; neither has this measurement.
    a.extend(["--ema".into(), "0".into()]);
    a.extend([
        "--steps".into(),
        steps.to_string(),
        "--quiet".into(),
        "--force".into(),
        "--out".into(),
        p(&model),
    ]);
    let (t, time) = fm_json_timed(fm, &a)?;
    let per_step = train_step_time(&t, time, steps)?;
    let (k, _, x_obs) = td.observations.first().context("no observation")?;
    let out = dir.join(format!("ours-{task}-{budget}-obs{k}.csv"));
    let mut a = strings(&["sample", "--model"]);
    a.extend([
        p(&model),
        "--context".into(),
        context_arg(x_obs),
        "--n".into(),
        N_SAMPLES.to_string(),
    ]);
    a.extend(strings(SAMPLE_FLAGS));
    a.extend(["--force".into(), "--out".into(), p(&out)]);
    let (_, sample) = fm_json_timed(fm, &a)?;
    Ok((per_step, sample))
}

fn bench_section(
    command: &str,
    task: &str,
    budget: usize,
    steps: usize,
    repeats: usize,
    ours: (Time, Time),
    lampe: (Time, Time),
) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "## FMPE against lampe (`cargo xtask bench-sbi`)\n\n\
         Made by `{command}` on {} (load average at the end: {}). Task {task}, {budget} \
         simulations, the same CSV files for both; MLP 4 × 128 ELU, three time frequencies, \
         batch 256, Adam 1e-3, one thread each; {steps} training steps per measurement, the \
         fastest of {repeats} alternating runs per side. Sampling: 10,000 posterior samples for \
         observation 1 (ours `fm sample {}`; lampe zuko's adaptive Dopri5, rtol 1e-5, atol \
         1e-6). Python: `scripts/sbi/baseline.py --method lampe --skip-c2st` (set \
         `FM_SBI_PYTHON` or `--python` to the interpreter with lampe). Times are CPU seconds \
         with wall seconds in parentheses; ours is the whole `fm` process's CPU time (start-up \
         and file writing included), lampe's only its training loop or sampling call; the \
         ratios are on CPU time, which other load on the machine changes least.\n\n\
         | | ours | lampe | lampe / ours |\n|---|---|---|---|\n",
        machine(),
        load_average(),
        SAMPLE_FLAGS.join(" "),
    );
    let _ = writeln!(
        s,
        "| training step (ms) | {} | {} | **{}** |",
        fmt_ms(Some(ours.0)),
        fmt_ms(Some(lampe.0)),
        time_ratio(lampe.0, ours.0)
    );
    let _ = writeln!(
        s,
        "| 10,000 posterior samples | {} | {} | **{}** |",
        fmt_time(ours.1),
        fmt_time(lampe.1),
        time_ratio(lampe.1, ours.1)
    );
    s
}

/// `/proc/loadavg`'s first three fields, or "unknown".
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn baseline_json() -> Value {
        json!({
            "task": "two_moons", "budget": 10000, "method": "lampe", "steps": 20000,
            "train_seconds": 100.0, "train_seconds_per_step": 0.005,
            "train_cpu_seconds_per_step": 0.004,
            "date_utc": "2026-12-02T15:00:00Z",
            "versions": {"torch": "2.15.0", "lampe": "0.9.0"},
            "observations": [
                {"observation": 1, "c2st": 0.6, "sample_seconds": 6.0, "sample_cpu_seconds": 5.0},
                {"observation": 2, "c2st": 0.7, "sample_seconds": 4.0, "sample_cpu_seconds": 3.0},
                {"observation": 3, "c2st": 0.65, "sample_seconds": 5.0, "sample_cpu_seconds": 4.0}
            ]
        })
    }

    #[test]
    fn baseline_json_is_read_with_its_figures() {
        let r = parse_baseline(&baseline_json(), "r.json").unwrap();
        assert_eq!((r.task.as_str(), r.budget), ("two_moons", 10_000));
        assert_eq!(r.method, "lampe FMPE");
        assert_eq!(r.steps, Some(20_000));
        assert_eq!(
            r.per_step,
            Some(Time {
                wall: 0.005,
                cpu: Some(0.004)
            })
        );
        assert!((r.c2st_mean().unwrap() - 0.65).abs() < 1e-12);
        let m = r.sample_mean();
        assert!((m.wall - 5.0).abs() < 1e-12 && (m.cpu.unwrap() - 4.0).abs() < 1e-12);
        assert_eq!(r.c2st_of(2), Some(0.7));
        assert_eq!(r.c2st_of(4), None);
        match r.source {
            Source::Measured { versions, date, .. } => {
                assert!(versions.contains("lampe 0.9.0"), "{versions}");
                assert_eq!(date, "2026-12-02T15:00:00Z");
            }
            Source::ThisRun => panic!("a JSON row is measured"),
        }
    }

    #[test]
    fn malformed_baseline_json_is_an_error_naming_file_and_field() {
        let mut v = baseline_json();
        v.as_object_mut().unwrap().remove("train_seconds");
        let e = parse_baseline(&v, "bad.json").unwrap_err().to_string();
        assert!(e.contains("bad.json") && e.contains("train_seconds"), "{e}");
        let mut v = baseline_json();
        v["method"] = json!("mcmc");
        assert!(
            parse_baseline(&v, "m.json")
                .unwrap_err()
                .to_string()
                .contains("mcmc")
        );
        let mut v = baseline_json();
        v["observations"][1]["c2st"] = json!(1.5);
        assert!(
            parse_baseline(&v, "c.json")
                .unwrap_err()
                .to_string()
                .contains("1.5")
        );
        let mut v = baseline_json();
        v["observations"] = json!([]);
        assert!(parse_baseline(&v, "e.json").is_err());
    }

    #[test]
    fn missing_c2st_gives_no_mean() {
        let mut v = baseline_json();
        v["observations"][0].as_object_mut().unwrap().remove("c2st");
        let r = parse_baseline(&v, "r.json").unwrap();
        assert_eq!(r.c2st_mean(), None);
        assert!(c2st_table(&[r], &[1, 2, 3]).contains("| — | 0.700 | 0.650 | **—** |"));
    }

    fn cpu(c: f64) -> Time {
        Time {
            wall: 2.0 * c,
            cpu: Some(c),
        }
    }

    fn ours(c: [f64; 3], step: f64, sample: f64) -> MethodResult {
        MethodResult {
            task: "two_moons".into(),
            budget: 10_000,
            method: "FMPE (ours)".into(),
            steps: Some(20_000),
            train_seconds: step * 20_000.0,
            per_step: Some(cpu(step)),
            per_obs: (0..3)
                .map(|i| ObsResult {
                    observation: i + 1,
                    c2st: Some(c[i]),
                    sample: cpu(sample),
                })
                .collect(),
            source: Source::ThisRun,
        }
    }

    #[test]
    fn c2st_table_has_one_row_per_method_with_its_mean_and_source() {
        let lampe = parse_baseline(&baseline_json(), "scripts/sbi/results/x.json").unwrap();
        let t = c2st_table(&[ours([0.52, 0.54, 0.56], 5e-4, 0.5), lampe], &[1, 2, 3]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].contains("C2ST obs 3") && lines[0].contains("mean C2ST"));
        // Column count of every line equals the header's.
        let cols = |l: &str| l.matches('|').count();
        assert!(lines.iter().all(|l| cols(l) == cols(lines[0])), "{t}");
        assert!(
            lines[2].contains("| 0.520 | 0.540 | 0.560 | **0.540** | this run |"),
            "{}",
            lines[2]
        );
        assert!(lines[3].contains("lampe FMPE") && lines[3].contains("**0.650**"));
        assert!(lines[3].contains("measured, `scripts/sbi/results/x.json`"));
    }

    #[test]
    fn speed_table_divides_lampe_by_ours() {
        let lampe = parse_baseline(&baseline_json(), "x.json").unwrap();
        // CPU: lampe 4 ms/step vs ours 0.25 ms → 16×; lampe 4 s sampling (mean) vs ours
        // 0.4 s → 10× (the wall times, twice ours and 5 ms / 5 s for lampe, are only shown).
        let t = speed_table(&[ours([0.5; 3], 2.5e-4, 0.4)], &[lampe]);
        let row = t.lines().nth(2).unwrap();
        assert!(
            row.contains("| 0.250 (0.500) | 4.000 (5.000) | 16.0× |"),
            "{row}"
        );
        assert!(
            row.contains("| 400 ms (800 ms) | 4.00 s (5.00 s) | 10.0× |"),
            "{row}"
        );
        // Without lampe's CPU times the ratio falls back to wall times and says so.
        let mut v = baseline_json();
        v.as_object_mut()
            .unwrap()
            .remove("train_cpu_seconds_per_step");
        let lampe = parse_baseline(&v, "x.json").unwrap();
        let t = speed_table(&[ours([0.5; 3], 2.5e-4, 0.4)], &[lampe]);
        assert!(t.contains("| — (5.000) | 10.0× (wall) |"), "{t}");
        // Without lampe figures for the task, the table says so instead of inventing a ratio.
        let mut other = ours([0.5; 3], 2.5e-4, 0.4);
        other.task = "slcp".into();
        let lampe = parse_baseline(&baseline_json(), "x.json").unwrap();
        assert!(speed_table(&[other], &[lampe]).contains("no lampe results"));
    }

    #[test]
    fn splice_replaces_only_the_generated_section() {
        let first = crate::splice("# T\n\nprose\n", BEGIN, END, "one\n");
        assert!(first.starts_with("# T\n\nprose\n") && first.contains("one"));
        let second = crate::splice(&format!("{first}\nafter\n"), BEGIN, END, "two\n");
        assert!(!second.contains("one") && second.contains("two"));
        assert!(second.starts_with("# T\n\nprose\n") && second.trim_end().ends_with("after"));
        assert_eq!(
            crate::splice("", BEGIN, END, "t\n"),
            format!("{BEGIN}\nt\n{END}\n")
        );
    }

    #[test]
    fn lists_parse_and_bad_entries_are_named() {
        assert_eq!(
            parse_list::<usize>("1000,10_000", "--budgets").unwrap(),
            vec![1000, 10000]
        );
        let e = parse_list::<usize>("1000,ten", "--budgets")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--budgets") && e.contains("ten"), "{e}");
        assert_eq!(
            parse_list::<String>("two_moons,slcp", "--tasks").unwrap(),
            vec!["two_moons", "slcp"]
        );
    }

    #[test]
    fn context_round_trips_every_bit() {
        let x = [-0.6396706f32 as f64, 0.16234657, 1e-300, -3.0];
        let back: Vec<f64> = context_arg(&x)
            .split(',')
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(back, x);
    }

    #[test]
    fn rows_skip_a_header_and_reject_ragged_data() {
        let dir = std::env::temp_dir().join(format!("xtask-sbi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.csv");
        std::fs::write(&f, "x0,x1\n1,2\n3.5,-4\n").unwrap();
        assert_eq!(
            read_rows(&f).unwrap(),
            vec![vec![1.0, 2.0], vec![3.5, -4.0]]
        );
        assert_eq!(
            columns(&read_rows(&f).unwrap(), (1, 0), 1),
            vec![(2.0, 1.0)]
        );
        std::fs::write(&f, "1,2\n3\n").unwrap();
        assert!(read_rows(&f).unwrap_err().to_string().contains("columns"));
        std::fs::write(&f, "1,2\nx,y\n").unwrap();
        assert!(read_rows(&f).unwrap_err().to_string().contains("line 2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bench_section_reports_both_ratios() {
        let lampe = (
            Time {
                wall: 6e-3,
                cpu: Some(4.8e-3),
            },
            Time {
                wall: 7.0,
                cpu: Some(6.0),
            },
        );
        let s = bench_section(
            "cmd",
            "two_moons",
            10_000,
            500,
            2,
            (cpu(4e-4), cpu(0.5)),
            lampe,
        );
        assert!(
            s.contains("| training step (ms) | 0.400 (0.800) | 4.800 (6.000) | **12.0×** |"),
            "{s}"
        );
        assert!(
            s.contains(
                "| 10,000 posterior samples | 500 ms (1.00 s) | 6.00 s (7.00 s) | **12.0×** |"
            ),
            "{s}"
        );
    }

    #[test]
    fn method_labels_name_the_ema_only_when_used() {
        assert_eq!(method_label(0.0), "FMPE (ours)");
        assert_eq!(method_label(0.999), "FMPE (ours, EMA 0.999)");
    }

    #[test]
    fn children_cpu_is_read_after_the_command_name() {
        // A command name with spaces and parentheses; utime 7, stime 8, cutime 250, cstime 50.
        let stat = "1234 (fm (x) y) S 1 2 3 4 5 6 7 8 9 10 7 8 250 50 20 0 1 0";
        assert_eq!(parse_children_cpu(stat), Some(3.0));
        assert_eq!(parse_children_cpu("1234 (fm) S 1 2"), None);
        // This process's own figure exists on Linux and only grows.
        if let Some(a) = children_cpu_seconds() {
            assert!(a >= 0.0 && children_cpu_seconds().unwrap() >= a);
        }
    }

    #[test]
    fn time_means_and_minima_keep_cpu_only_when_known() {
        let m = Time::mean(&[cpu(1.0), cpu(3.0)]);
        assert_eq!(m, cpu(2.0));
        let none = Time {
            wall: 1.0,
            cpu: None,
        };
        assert_eq!(Time::mean(&[cpu(1.0), none]).cpu, None);
        assert_eq!(cpu(1.0).min(cpu(0.5)), cpu(0.5));
        assert_eq!(none.min(cpu(3.0)).cpu, Some(3.0));
        assert_eq!(none.min(cpu(3.0)).wall, 1.0);
    }
}
