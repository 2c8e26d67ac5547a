//! `cargo xtask reproduce --task nflows` and `cargo xtask bench-nflows` (issue 16): normalizing
//! flows beside flow matching.
//!
//! * `reproduce --task nflows [--quick] [--steps N] [--only T,T] [--fm PATH] [--out FILE]
//!   [--figure FILE]`: trains a coupling flow (RealNVP), a residual flow (i-ResNet), a CNF by
//!   maximum likelihood (FFJORD-style), I-CFM and OT-CFM on moons, 8gaussians, checkerboard,
//!   spirals and the 6-D mixture of `docs/results-6d.md`, all through the `fm` binary, and
//!   writes one table (test log-likelihood and its gap to the true density, W2, training time at
//!   an equal step budget, log-likelihood at an equal CPU-time budget, the cost of 10,000
//!   samples) between two marker lines of `docs/results.md`, and the learned log-densities of the
//!   2-D tasks to `docs/nflows-densities.png`.
//! * `bench-nflows [--steps N] [--fm PATH] [--python PATH] [--out FILE]`: times a training step
//!   of our coupling flow and CNF-MLE against zuko's RealNVP and CNF (`scripts/nflows/zuko_bench.py`)
//!   on the same moons train/test split and batch, and prints the ratios; the table goes between
//!   markers of `docs/benchmarks.md`.
//!
//! Every `fm` child runs single-threaded (`--threads 1` where the kind takes it,
//! `RAYON_NUM_THREADS=1` for all), and its CPU time (user + system, from the `cutime`/`cstime`
//! of `/proc/self/stat`, which count waited-for children) is recorded beside the wall time the
//! binary reports: on a shared machine the CPU time is the steadier of the two.

use crate::mixture6d::{Mixture, write_csv as write_csv6};
use crate::{flag_value, machine, root, run_cmd, splice, write_atomic};
use anyhow::{Context, Result, bail};
use fm_data::{Affine, Toy};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const BEGIN: &str =
    "<!-- cargo xtask reproduce --task nflows: begin (generated; edits here are overwritten) -->";
const END: &str = "<!-- cargo xtask reproduce --task nflows: end -->";
const BENCH_BEGIN: &str =
    "<!-- cargo xtask bench-nflows: begin (generated; edits here are overwritten) -->";
const BENCH_END: &str = "<!-- cargo xtask bench-nflows: end -->";

/// The tasks, in table order; `mixture6d` is the 6-D mixture of `docs/results-6d.md`.
pub(crate) const TASKS: [&str; 5] = [
    "moons",
    "8gaussians",
    "checkerboard",
    "spirals",
    "mixture6d",
];

/// A model of the table: its label and the `fm train` flags that select it.
struct ModelSpec {
    key: &'static str,
    label: &'static str,
    flags: &'static [&'static str],
    /// Flow matching (takes `--threads`, samples by an ODE solve).
    fm: bool,
}

const MODELS: [ModelSpec; 5] = [
    ModelSpec {
        key: "coupling",
        label: "coupling (RealNVP)",
        flags: &["--model", "coupling", "--layers", "8", "--hidden", "64,64"],
        fm: false,
    },
    ModelSpec {
        key: "residual",
        label: "residual (i-ResNet)",
        flags: &["--model", "residual", "--layers", "4", "--hidden", "64,64"],
        fm: false,
    },
    ModelSpec {
        key: "cnf-mle",
        label: "CNF-MLE (FFJORD)",
        flags: &[
            "--model",
            "cnf-mle",
            "--hidden",
            "64,64",
            "--cnf-solver",
            "rk4",
            "--solver-steps",
            "8",
            "--eval-steps",
            "32",
        ],
        fm: false,
    },
    ModelSpec {
        key: "icfm",
        label: "I-CFM",
        flags: &[
            "--matcher",
            "icfm",
            "--sigma",
            "0.1",
            "--hidden",
            "64,64",
            "--ema",
            "0",
            "--threads",
            "1",
        ],
        fm: true,
    },
    ModelSpec {
        key: "otcfm",
        label: "OT-CFM",
        flags: &[
            "--matcher",
            "otcfm",
            "--sigma",
            "0.1",
            "--hidden",
            "64,64",
            "--ema",
            "0",
            "--threads",
            "1",
        ],
        fm: true,
    },
];

/// Options of `reproduce --task nflows`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Opts {
    pub quick: bool,
    pub steps: usize,
    pub out: String,
    pub figure: String,
    pub fm: Option<PathBuf>,
    pub only: Vec<String>,
}

/// The budget a run uses (derived from the options).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Budget {
    pub steps: usize,
    pub batch: usize,
    pub n_train: usize,
    pub n_test: usize,
    pub n_w2: usize,
    pub n_samples: usize,
    pub grid: usize,
}

impl Opts {
    fn budget(&self) -> Budget {
        Budget {
            steps: self.steps,
            batch: 256,
            n_train: 20_000,
            n_test: if self.quick { 200 } else { 1_000 },
            n_w2: if self.quick { 300 } else { 1_000 },
            n_samples: if self.quick { 1_000 } else { 10_000 },
            grid: if self.quick { 16 } else { 32 },
        }
    }
}

/// Default steps: full run and `--quick`.
pub(crate) const FULL_STEPS: usize = 1_000;
pub(crate) const QUICK_STEPS: usize = 60;

/// Parses the options of `reproduce --task nflows` (the `--task nflows` pair included or not).
pub(crate) fn parse_opts(args: &[String]) -> Result<Opts> {
    let known_values = ["--task", "--steps", "--out", "--figure", "--fm", "--only"];
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if known_values.contains(&a) {
            i += 2;
            continue;
        }
        if a != "--quick" {
            bail!(
                "unknown option `{a}` for `reproduce --task nflows`; options: --quick, --steps N, \
                 --only TASK[,TASK], --fm PATH, --out FILE, --figure FILE"
            );
        }
        i += 1;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let steps = match flag_value(args, "--steps")? {
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .with_context(|| format!("--steps {s}: give a whole number of at least 1"))?,
        None if quick => QUICK_STEPS,
        None => FULL_STEPS,
    };
    let only = match flag_value(args, "--only")? {
        None => TASKS.iter().map(|s| s.to_string()).collect(),
        Some(list) => {
            let v: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
            if let Some(bad) = v.iter().find(|t| !TASKS.contains(&t.as_str())) {
                bail!(
                    "--only {list}: unknown task `{bad}`; choose from {}",
                    TASKS.join(", ")
                );
            }
            v
        }
    };
    Ok(Opts {
        quick,
        steps,
        out: flag_value(args, "--out")?.unwrap_or_else(|| "docs/results.md".into()),
        figure: flag_value(args, "--figure")?.unwrap_or_else(|| "docs/nflows-densities.png".into()),
        fm: flag_value(args, "--fm")?.map(PathBuf::from),
        only,
    })
}

// ---------------------------------------------------------------------------------------------
// True densities.

/// `log Σ exp(v_k)`, stable.
fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// The true log-density of a 2-D toy at `x`, where it has a closed form: the 8 Gaussians
/// (`log p = log Σ_k ⅛ N(x; μ_k, s² I)`, centres `r (cos kπ/4, sin kπ/4)`) and the checkerboard
/// (uniform on 8 cells: `log p = −log(8 a²)` on the support, `−∞` off it, `a` the scale). The
/// affine post-processing (`scale · x + shift`) is folded in; a standardised toy (data-dependent
/// affine map) has no fixed density and gives `None`, as do moons and spirals.
pub(crate) fn true_log_density(toy: &Toy, x: [f64; 2]) -> Option<f64> {
    let unmap = |a: &Affine| -> Option<([f64; 2], f64)> {
        if a.standardize || a.scale == 0.0 {
            return None;
        }
        let u = [(x[0] - a.shift[0]) / a.scale, (x[1] - a.shift[1]) / a.scale];
        // Jacobian of x = s u + b in 2-D: s².
        Some((u, -2.0 * a.scale.abs().ln()))
    };
    match toy {
        Toy::EightGaussians {
            radius,
            std,
            affine,
        } => {
            let (u, log_jac) = unmap(affine)?;
            let s2 = std * std;
            let terms: Vec<f64> = (0..8)
                .map(|k| {
                    let a = f64::from(k) * PI / 4.0;
                    let d0 = u[0] - radius * a.cos();
                    let d1 = u[1] - radius * a.sin();
                    -(d0 * d0 + d1 * d1) / (2.0 * s2)
                })
                .collect();
            Some(log_sum_exp(&terms) - 8f64.ln() - (2.0 * PI * s2).ln() + log_jac)
        }
        Toy::Checkerboard { affine } => {
            let (u, log_jac) = unmap(affine)?;
            let inside = (-2.0..2.0).contains(&u[0])
                && (-2.0..2.0).contains(&u[1])
                && (u[0].floor() + u[1].floor()).rem_euclid(2.0) == 0.0;
            Some(if inside {
                -(8f64.ln()) + log_jac
            } else {
                f64::NEG_INFINITY
            })
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Running fm.

/// Clock ticks per second of `/proc` times.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// `cutime + cstime` (fields 16 and 17) of a `/proc/<pid>/stat` line, in ticks.
pub(crate) fn children_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field k is f[k - 3].
    Some(f.get(13)?.parse::<u64>().ok()? + f.get(14)?.parse::<u64>().ok()?)
}

fn children_cpu(ticks: f64) -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| children_ticks(&s))
        .map_or(f64::NAN, |t| t as f64 / ticks)
}

/// The `fm` binary and how to call it.
struct Fm {
    bin: PathBuf,
    ticks: f64,
}

impl Fm {
    /// The binary given by `--fm`, or the release build (built here).
    fn new(given: Option<&Path>) -> Result<Self> {
        let bin = match given {
            Some(p) => {
                let p = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    root().join(p)
                };
                if !p.is_file() {
                    bail!(
                        "--fm {}: no such file; build it or leave --fm out",
                        p.display()
                    );
                }
                p
            }
            None => {
                run_cmd(Command::new("cargo").args(["build", "--release", "-p", "fm-cli"]))?;
                let dir = root().join("target/reproduce/nflows");
                std::fs::create_dir_all(&dir)?;
                let p = dir.join("fm");
                std::fs::copy(root().join("target/release/fm"), &p)
                    .context("copying the fm binary")?;
                p
            }
        };
        Ok(Self {
            bin,
            ticks: clock_ticks(),
        })
    }

    /// Runs `fm ARGS --json` single-threaded; its JSON last line and its CPU seconds.
    fn json(&self, args: &[String]) -> Result<(serde_json::Value, f64)> {
        let c0 = children_cpu(self.ticks);
        let mut cmd = Command::new(&self.bin);
        cmd.env("RAYON_NUM_THREADS", "1");
        let v = crate::reproduce::fm_json_with(&mut cmd, args)?;
        Ok((v, children_cpu(self.ticks) - c0))
    }
}

use crate::reproduce::num;

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn strs(a: &[&str]) -> Vec<String> {
    a.iter().map(|x| x.to_string()).collect()
}

/// Reads a CSV of numbers (a non-numeric first line is a header).
pub(crate) fn read_rows(path: &Path) -> Result<Vec<Vec<f64>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Result<Vec<f64>, _> = line.split(',').map(|f| f.trim().parse::<f64>()).collect();
        match v {
            Ok(v) => rows.push(v),
            Err(_) if i == 0 => {}
            Err(_) => bail!("{} line {}: not numbers", path.display(), i + 1),
        }
    }
    Ok(rows)
}

fn write_rows(path: &Path, rows: &[Vec<f64>]) -> Result<()> {
    let mut t = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().map(|v| format!("{v:?}")).collect();
        t.push_str(&line.join(","));
        t.push('\n');
    }
    let tmp = path.with_extension("csv.tmp");
    std::fs::write(&tmp, t).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Train and test rows of a task, and the true mean log-density of the test rows if known.
struct TaskData {
    train: PathBuf,
    test: PathBuf,
    test_rows: Vec<Vec<f64>>,
    true_ll: Option<f64>,
    toy: Option<Toy>,
}

fn task_data(task: &str, b: &Budget, dir: &Path) -> Result<TaskData> {
    let (train, test) = (dir.join("train.csv"), dir.join("test.csv"));
    if task == "mixture6d" {
        let mix = Mixture::new()?;
        let tr = mix.draw(b.n_train, 1);
        let te = mix.draw(b.n_test, 2);
        write_csv6(&train, &tr)?;
        write_csv6(&test, &te)?;
        let (_, ll) = mix.stats(&te);
        return Ok(TaskData {
            train,
            test,
            test_rows: te.iter().map(|r| r.to_vec()).collect(),
            true_ll: Some(ll),
            toy: None,
        });
    }
    let toy = Toy::named(task).with_context(|| format!("no built-in toy `{task}`"))?;
    let draw = |n: usize, seed: u64| -> Result<Vec<Vec<f64>>> {
        let mut rng = fm_core::rng::seeded(seed);
        let x = toy.sample(n, &mut rng)?;
        Ok(x.rows().into_iter().map(|r| r.to_vec()).collect())
    };
    let tr = draw(b.n_train, 1)?;
    let te = draw(b.n_test, 2)?;
    write_rows(&train, &tr)?;
    write_rows(&test, &te)?;
    let true_ll = te
        .iter()
        .map(|r| true_log_density(&toy, [r[0], r[1]]))
        .collect::<Option<Vec<f64>>>()
        .map(|v| v.iter().sum::<f64>() / v.len() as f64);
    Ok(TaskData {
        train,
        test,
        test_rows: te,
        true_ll,
        toy: Some(toy),
    })
}

/// One (task, model) cell of the table.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Cell {
    pub steps: usize,
    pub test_ll: f64,
    pub w2: f64,
    pub train_wall: f64,
    pub train_cpu: f64,
    /// (steps, test log-likelihood) at the equal CPU-time budget.
    pub eq: Option<(usize, f64)>,
    pub sample_wall: f64,
    pub failed: Option<String>,
}

/// The most steps the equal-time budget gives a model, as a multiple of the step budget.
pub(crate) const EQUAL_TIME_CAP: usize = 20;

/// The steps a model whose equal-step run took `cpu` seconds gets in the equal-time budget
/// `budget` (the coupling flow's CPU seconds at the step budget): `⌊steps · budget / cpu⌋`, at
/// least 1, at most `EQUAL_TIME_CAP · steps`.
pub(crate) fn equal_time_steps(steps: usize, budget: f64, cpu: f64) -> usize {
    if !(cpu > 0.0 && budget.is_finite() && budget > 0.0) {
        return steps;
    }
    ((steps as f64 * budget / cpu).floor() as usize).clamp(1, EQUAL_TIME_CAP * steps)
}

fn train(
    fm: &Fm,
    m: &ModelSpec,
    data: &TaskData,
    b: &Budget,
    steps: usize,
    out: &Path,
) -> Result<(f64, f64)> {
    let mut args = vec!["train".to_string()];
    args.extend(strs(m.flags));
    args.extend(strs(&[
        "--target",
        &s(&data.train),
        "--steps",
        &steps.to_string(),
        "--batch",
        &b.batch.to_string(),
        "--lr",
        "1e-3",
        "--seed",
        "0",
        "--log-every",
        "50",
        "--quiet",
        "--force",
        "--out",
        &s(out),
    ]));
    let (v, cpu) = fm.json(&args)?;
    Ok((num(&v, "wall_seconds")?, cpu))
}

fn likelihood(
    fm: &Fm,
    m: &ModelSpec,
    model: &Path,
    data: &Path,
    n: usize,
    out: Option<&Path>,
) -> Result<f64> {
    let mut args = strs(&[
        "likelihood",
        "--model",
        &s(model),
        "--data",
        &s(data),
        "--n",
        &n.to_string(),
    ]);
    if m.fm {
        args.extend(strs(&["--threads", "1"]));
    }
    if let Some(o) = out {
        args.extend(strs(&["--force", "--out", &s(o)]));
    }
    let (v, _) = fm.json(&args)?;
    num(&v, "mean_log_likelihood")
}

fn eval_w2(fm: &Fm, m: &ModelSpec, model: &Path, data: &TaskData, n: usize) -> Result<f64> {
    let mut args = strs(&[
        "eval",
        "--model",
        &s(model),
        "--target",
        &s(&data.test),
        "--n",
        &n.to_string(),
        "--seed",
        "0",
    ]);
    if m.fm {
        args.extend(strs(&["--threads", "1"]));
    }
    let (v, _) = fm.json(&args)?;
    num(&v, "w2")
}

fn sample_cost(fm: &Fm, m: &ModelSpec, model: &Path, n: usize, out: &Path) -> Result<f64> {
    let mut args = strs(&[
        "sample",
        "--model",
        &s(model),
        "--n",
        &n.to_string(),
        "--seed",
        "1",
        "--force",
        "--out",
        &s(out),
    ]);
    if m.fm {
        args.extend(strs(&["--threads", "1"]));
    }
    let (v, _) = fm.json(&args)?;
    num(&v, "seconds")
}

/// The square grid of a 2-D task's density panels: `(lo, hi)` of both axes, from the test rows
/// with a 10% margin.
fn grid_box(rows: &[Vec<f64>]) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for r in rows {
        for &v in &r[..2] {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    let pad = 0.1 * (hi - lo);
    (lo - pad, hi + pad)
}

/// Grid centres, row-major with y descending (the image's top row first).
fn grid_points(g: usize, lo: f64, hi: f64) -> Vec<Vec<f64>> {
    let h = (hi - lo) / g as f64;
    let mut v = Vec::with_capacity(g * g);
    for iy in 0..g {
        for ix in 0..g {
            v.push(vec![lo + (ix as f64 + 0.5) * h, hi - (iy as f64 + 0.5) * h]);
        }
    }
    v
}

/// `log` of a histogram density estimate of `rows` on the grid (empty cells: −∞).
fn histogram_log_density(rows: &[Vec<f64>], g: usize, lo: f64, hi: f64) -> Vec<f64> {
    let h = (hi - lo) / g as f64;
    let mut c = vec![0usize; g * g];
    for r in rows {
        let ix = ((r[0] - lo) / h).floor();
        let iy = ((hi - r[1]) / h).floor();
        if ix >= 0.0 && iy >= 0.0 && (ix as usize) < g && (iy as usize) < g {
            c[iy as usize * g + ix as usize] += 1;
        }
    }
    let norm = rows.len() as f64 * h * h;
    c.iter().map(|&k| (k as f64 / norm).ln()).collect()
}

/// `reproduce --task nflows`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let opts = parse_opts(args)?;
    let b = opts.budget();
    let command = format!("cargo xtask reproduce {}", args.join(" "));
    let fm = Fm::new(opts.fm.as_deref())?;
    let work = root().join("target/reproduce/nflows");
    std::fs::create_dir_all(&work)?;
    let started = Instant::now();
    let mut cells: BTreeMap<(String, &str), Cell> = BTreeMap::new();
    let mut truths: BTreeMap<String, Option<f64>> = BTreeMap::new();
    let mut panels: Vec<Panel> = Vec::new();
    for task in &opts.only {
        let dir = work.join(task);
        std::fs::create_dir_all(&dir)?;
        let data = task_data(task, &b, &dir)?;
        truths.insert(task.clone(), data.true_ll);
        println!(
            "== {task}: true mean test log-density {}",
            data.true_ll.map_or("unknown".into(), |v| format!("{v:.4}"))
        );
        let grid = data.toy.as_ref().map(|_| {
            let (lo, hi) = grid_box(&data.test_rows);
            (lo, hi, grid_points(b.grid, lo, hi))
        });
        let grid_csv = dir.join("grid.csv");
        if let Some((_, _, pts)) = &grid {
            write_rows(&grid_csv, pts)?;
        }
        let mut row_panels = Vec::new();
        if let Some((lo, hi, _)) = &grid {
            let train_rows = read_rows(&data.train)?;
            row_panels.push((
                "data (histogram)".to_string(),
                Some(histogram_log_density(&train_rows, b.grid, *lo, *hi)),
            ));
        }
        for m in &MODELS {
            let model = dir.join(format!("{}.safetensors", m.key));
            let mut cell = Cell {
                steps: b.steps,
                ..Cell::default()
            };
            let res: Result<()> = (|| {
                let (wall, cpu) = train(&fm, m, &data, &b, b.steps, &model)?;
                cell.train_wall = wall;
                cell.train_cpu = cpu;
                cell.test_ll = likelihood(&fm, m, &model, &data.test, b.n_test, None)?;
                cell.w2 = eval_w2(&fm, m, &model, &data, b.n_w2)?;
                cell.sample_wall = sample_cost(
                    &fm,
                    m,
                    &model,
                    b.n_samples,
                    &dir.join(format!("{}-samples.csv", m.key)),
                )?;
                Ok(())
            })();
            if let Err(e) = res {
                println!("  {}: FAILED: {e:#}", m.key);
                cell.failed = Some(format!("{e:#}"));
            } else {
                println!(
                    "  {:<9} {} steps: test LL {:.4}, W2 {:.4}, train {:.1} s wall / {:.1} s CPU, 10k samples {:.3} s",
                    m.key,
                    b.steps,
                    cell.test_ll,
                    cell.w2,
                    cell.train_wall,
                    cell.train_cpu,
                    cell.sample_wall
                );
            }
            if let Some((lo, hi, _)) = &grid {
                let lp = if cell.failed.is_none() {
                    let out = dir.join(format!("{}-grid-logp.csv", m.key));
                    match likelihood(&fm, m, &model, &grid_csv, b.grid * b.grid, Some(&out))
                        .and_then(|_| read_rows(&out))
                    {
                        Ok(r) => Some(r.iter().map(|v| v[0]).collect()),
                        Err(e) => {
                            println!("  {}: grid log-density failed: {e:#}", m.key);
                            None
                        }
                    }
                } else {
                    None
                };
                let _ = (lo, hi);
                row_panels.push((m.label.to_string(), lp));
            }
            cells.insert((task.clone(), m.key), cell);
        }
        // Equal CPU-time budget: the coupling flow's CPU seconds at the step budget (the
        // classic maximum-likelihood baseline; the fastest model would leave the others a
        // handful of steps).
        let budget = cells
            .get(&(task.clone(), "coupling"))
            .filter(|c| c.failed.is_none())
            .map_or(f64::NAN, |c| c.train_cpu);
        for m in &MODELS {
            let Some(c) = cells.get(&(task.clone(), m.key)).cloned() else {
                continue;
            };
            if c.failed.is_some() {
                continue;
            }
            let k = equal_time_steps(b.steps, budget, c.train_cpu);
            let eq = if k == b.steps {
                Some((k, c.test_ll))
            } else {
                let model = dir.join(format!("{}-eqtime.safetensors", m.key));
                match train(&fm, m, &data, &b, k, &model)
                    .and_then(|_| likelihood(&fm, m, &model, &data.test, b.n_test, None))
                {
                    Ok(ll) => Some((k, ll)),
                    Err(e) => {
                        println!("  {} at equal time: FAILED: {e:#}", m.key);
                        None
                    }
                }
            };
            if let Some((k, ll)) = eq {
                println!(
                    "  {:<9} equal time ({budget:.1} s CPU): {k} steps, test LL {ll:.4}",
                    m.key
                );
            }
            if let Some(cm) = cells.get_mut(&(task.clone(), m.key)) {
                cm.eq = eq;
            }
        }
        if let Some((lo, hi, _)) = grid {
            panels.push(Panel {
                task: task.clone(),
                lo,
                hi,
                columns: row_panels,
            });
        }
    }
    let total = started.elapsed().as_secs_f64();
    let fig_note = if panels.is_empty() {
        None
    } else {
        let fig = root().join(&opts.figure);
        if let Some(d) = fig.parent() {
            std::fs::create_dir_all(d)?;
        }
        density_figure(&fig, &panels, b.grid)?;
        println!("wrote {}", fig.display());
        Some(opts.figure.clone())
    };
    let section = table(
        &command,
        total,
        &opts,
        &b,
        &cells,
        &truths,
        fig_note.as_deref(),
    );
    let out_path = root().join(&opts.out);
    let old = std::fs::read_to_string(&out_path).unwrap_or_default();
    if let Some(d) = out_path.parent() {
        std::fs::create_dir_all(d)?;
    }
    write_atomic(&out_path, &splice(&old, BEGIN, END, &section))?;
    println!("{section}");
    println!("wrote {}", out_path.display());
    Ok(())
}

/// A number for the table, `—` when not finite.
pub(crate) fn fmt_num(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "—".into()
    }
}

/// One table row: the cells of a (task, model) pair, `truth` the true mean log-density.
pub(crate) fn row(task: &str, label: &str, c: &Cell, truth: Option<f64>) -> String {
    if let Some(e) = &c.failed {
        let short: String = e.chars().take(80).collect();
        return format!("| {task} | {label} | failed: {short} | | | | | | |\n");
    }
    let gap = truth.map_or("—".into(), |t| format!("{:+.3}", c.test_ll - t));
    let eq =
        c.eq.map_or("—".into(), |(k, ll)| format!("{} ({k})", fmt_num(ll, 3)));
    format!(
        "| {task} | {label} | {} | {gap} | {} | {} / {} | {} | {eq} | {} |\n",
        fmt_num(c.test_ll, 3),
        fmt_num(c.w2, 3),
        fmt_num(c.train_wall, 1),
        fmt_num(c.train_cpu, 1),
        fmt_num(1000.0 * c.train_cpu / c.steps.max(1) as f64, 2),
        fmt_num(c.sample_wall, 3),
    )
}

fn table(
    command: &str,
    total: f64,
    opts: &Opts,
    b: &Budget,
    cells: &BTreeMap<(String, &str), Cell>,
    truths: &BTreeMap<String, Option<f64>>,
    figure: Option<&str>,
) -> String {
    let mut t = String::new();
    let _ = write!(
        t,
        "## From normalizing flows to flow matching: `cargo xtask reproduce --task nflows`\n\n\
         Made by `{command}` in {total:.0} s on {} (every `fm` call single-threaded){}.\n\n\
         Budget: {} optimizer steps for every model, batch {}, Adam lr 1e-3, seed 0, the same\n\
         {} training rows per task (drawn once with seed 1; the 6-D mixture's rows by the\n\
         mixture6d generator) and {} test rows (seed 2). Models, all with hidden widths 64,64:\n\
         coupling = `--model coupling --layers 8` (affine couplings, ActNorm, SiLU), residual =\n\
         `--model residual --layers 4` (Lipschitz 0.9, Russian-roulette log-determinant with one\n\
         probe), CNF-MLE = `--model cnf-mle --cnf-solver rk4 --solver-steps 8 --eval-steps 32`\n\
         (exact divergence, tanh), I-CFM / OT-CFM = `--matcher icfm|otcfm --sigma 0.1 --ema 0`\n\
         (SELU; OT-CFM with the exact OT coupling per batch).\n\n\
         Columns: **test LL** = `fm likelihood` on the test rows (mean log-likelihood, nats; flows\n\
         exactly / by their fixed 32-step solve, flow matching by dopri5 at rtol = atol = 1e-5\n\
         with the exact divergence); **gap** = test LL − true mean log-density of the same rows\n\
         (closed forms computed in `xtask/src/nflows.rs` — 8 Gaussians: log Σ_k ⅛ N(x; μ_k, s²I);\n\
         checkerboard: −log 32 on its support; the 6-D mixture: its 8 components, as in\n\
         `docs/results-6d.md`; moons and spirals have none); **W2** = `fm eval --model --target\n\
         test.csv --n {}` (flow matching sampled by Euler, 100 steps); **train s** = training wall\n\
         seconds reported by `fm train` / CPU seconds of the whole `fm train` process; **ms/step** =\n\
         CPU ms per step; **LL @ equal time (steps)** = test LL of the model retrained for\n\
         ⌊{} · T / its CPU seconds⌋ steps (at least 1, at most {EQUAL_TIME_CAP}× the budget), T the\n\
         CPU seconds the coupling flow took for the step budget on that task (so every model gets\n\
         the coupling flow's CPU time); **samples s** = wall seconds of `fm sample --n {}`.\n\n",
        machine(),
        if opts.fm.is_some() {
            " with the `fm` binary given by `--fm`"
        } else {
            ""
        },
        b.steps,
        b.batch,
        b.n_train,
        b.n_test,
        b.n_w2,
        b.steps,
        b.n_samples,
    );
    let _ = writeln!(
        t,
        "| task | model | test LL | gap to true | W2 | train s (wall / CPU) | CPU ms/step | LL @ equal time (steps) | {} samples s |",
        b.n_samples
    );
    t.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for task in &opts.only {
        let truth = truths.get(task).copied().flatten();
        let name = match truth {
            Some(v) => format!("{task} (true {v:.3})"),
            None => task.clone(),
        };
        for m in &MODELS {
            if let Some(c) = cells.get(&(task.clone(), m.key)) {
                t.push_str(&row(&name, m.label, c, truth));
            }
        }
    }
    if let Some(f) = figure {
        let rel = Path::new(f)
            .file_name()
            .map_or(f.to_string(), |n| n.to_string_lossy().into_owned());
        let _ = write!(
            t,
            "\nLearned log-densities of the 2-D tasks (rows: tasks; columns: a histogram of the\n\
             training rows, then each model; colour = log p on a {g}×{g} grid of the test rows'\n\
             box, clipped to the 10 nats below the row's maximum; `fm likelihood --data grid.csv\n\
             --out`):\n\n![learned densities]({rel})\n",
            g = b.grid
        );
    }
    t
}

// ---------------------------------------------------------------------------------------------
// The density figure.

struct Panel {
    task: String,
    lo: f64,
    hi: f64,
    columns: Vec<(String, Option<Vec<f64>>)>,
}

/// A viridis-like colour for `v ∈ [0, 1]` (piecewise linear through five of viridis' anchors).
pub(crate) fn colour(v: f64) -> RGBColor {
    const A: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let v = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = v * 4.0;
    let i = (x.floor() as usize).min(3);
    let f = x - i as f64;
    let lerp = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    RGBColor(
        lerp(A[i].0, A[i + 1].0),
        lerp(A[i].1, A[i + 1].1),
        lerp(A[i].2, A[i + 1].2),
    )
}

static FONT: &[u8] = include_bytes!("../../crates/fm-cli/assets/DejaVuSans.ttf");

fn density_figure(out: &Path, panels: &[Panel], g: usize) -> Result<()> {
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let cols = panels.iter().map(|p| p.columns.len()).max().unwrap_or(1);
    let (pw, ph) = (210u32, 230u32);
    let tmp = out.with_extension("tmp.png");
    {
        let root_area =
            BitMapBackend::new(&tmp, (pw * cols as u32 + 110, ph * panels.len() as u32))
                .into_drawing_area();
        root_area.fill(&WHITE)?;
        let (labels, grid_area) = root_area.split_horizontally(110);
        let label_rows = labels.split_evenly((panels.len(), 1));
        let rows = grid_area.split_evenly((panels.len(), cols));
        for (ri, p) in panels.iter().enumerate() {
            label_rows[ri].draw(&Text::new(
                p.task.clone(),
                (8, ph as i32 / 2),
                ("sans-serif", 18).into_font(),
            ))?;
            let hi_v = p
                .columns
                .iter()
                .filter_map(|c| c.1.as_ref())
                .flatten()
                .copied()
                .filter(|v| v.is_finite())
                .fold(f64::NEG_INFINITY, f64::max);
            let lo_v = hi_v - 10.0;
            for (ci, (name, lp)) in p.columns.iter().enumerate() {
                let area = &rows[ri * cols + ci];
                let mut chart = ChartBuilder::on(area)
                    .caption(name, ("sans-serif", 14))
                    .margin(6)
                    .build_cartesian_2d(p.lo..p.hi, p.lo..p.hi)?;
                match lp {
                    Some(v) if v.len() == g * g => {
                        let h = (p.hi - p.lo) / g as f64;
                        chart.draw_series((0..g * g).map(|k| {
                            let (iy, ix) = (k / g, k % g);
                            let x0 = p.lo + ix as f64 * h;
                            let y1 = p.hi - iy as f64 * h;
                            let c = colour((v[k] - lo_v) / (hi_v - lo_v));
                            Rectangle::new([(x0, y1 - h), (x0 + h, y1)], c.filled())
                        }))?;
                    }
                    _ => {
                        chart.draw_series(std::iter::once(Text::new(
                            "failed",
                            (p.lo + 0.35 * (p.hi - p.lo), 0.5 * (p.lo + p.hi)),
                            ("sans-serif", 16).into_font(),
                        )))?;
                    }
                }
            }
        }
        root_area.present()?;
    }
    std::fs::rename(&tmp, out)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// bench-nflows.

/// `bench-nflows [--steps N] [--fm PATH] [--python PATH] [--out FILE]`.
pub(crate) fn bench(args: &[String]) -> Result<()> {
    let steps: usize = match flag_value(args, "--steps")? {
        Some(v) => v
            .parse()
            .ok()
            .filter(|&n: &usize| n >= 2)
            .with_context(|| format!("--steps {v}: give a whole number of at least 2"))?,
        None => 200,
    };
    let python = flag_value(args, "--python")?.unwrap_or_else(|| "python3".into());
    let out = flag_value(args, "--out")?.unwrap_or_else(|| "docs/benchmarks.md".into());
    let fm = Fm::new(flag_value(args, "--fm")?.as_deref().map(Path::new))?;
    let command = format!("cargo xtask bench-nflows {}", args.join(" "));
    let dir = root().join("target/reproduce/nflows/bench");
    std::fs::create_dir_all(&dir)?;
    let b = Budget {
        n_test: 2_000,
        ..Opts {
            quick: false,
            steps,
            out: String::new(),
            figure: String::new(),
            fm: None,
            only: vec![],
        }
        .budget()
    };
    let data = task_data("moons", &b, &dir)?;
    let (solver_steps, eval_steps) = (8, 32);

    // Ours: steps/s from the training loop's wall time and the process CPU time minus that of
    // a 1-step run (start-up, data, saving).
    let ours_specs: [(&str, Vec<String>); 2] = [
        (
            "coupling",
            strs(&[
                "--model",
                "coupling",
                "--layers",
                "8",
                "--hidden",
                "64,64",
                "--activation",
                "relu",
            ]),
        ),
        (
            "cnf-mle",
            strs(&[
                "--model",
                "cnf-mle",
                "--hidden",
                "64,64",
                "--activation",
                "elu",
                "--cnf-solver",
                "rk4",
                "--solver-steps",
                &solver_steps.to_string(),
                "--eval-steps",
                &eval_steps.to_string(),
            ]),
        ),
    ];
    let mut ours = BTreeMap::new();
    for (key, flags) in &ours_specs {
        let model = dir.join(format!("{key}.safetensors"));
        let run = |k: usize| -> Result<(f64, f64)> {
            let mut a = vec!["train".to_string()];
            a.extend(flags.iter().cloned());
            a.extend(strs(&[
                "--target",
                &s(&data.train),
                "--steps",
                &k.to_string(),
                "--batch",
                "256",
                "--lr",
                "1e-3",
                "--seed",
                "0",
                "--quiet",
                "--force",
                "--out",
                &s(&model),
            ]));
            let (v, cpu) = fm.json(&a)?;
            Ok((num(&v, "wall_seconds")?, cpu))
        };
        let (_, cpu1) = run(1)?;
        let (wall, cpu) = run(steps)?;
        let m = ModelSpec {
            key: "",
            label: "",
            flags: &[],
            fm: false,
        };
        let ll = likelihood(&fm, &m, &model, &data.test, b.n_test, None)?;
        let step_wall = wall / steps as f64;
        let step_cpu = (cpu - cpu1) / (steps - 1) as f64;
        println!(
            "ours {key}: {:.3} ms/step wall, {:.3} ms/step CPU, test LL {ll:.4}",
            1e3 * step_wall,
            1e3 * step_cpu
        );
        ours.insert(*key, (step_wall, step_cpu, ll));
    }

    // zuko.
    let script = root().join("scripts/nflows/zuko_bench.py");
    let output = Command::new(&python)
        .arg(&script)
        .args(strs(&[
            "--train",
            &s(&data.train),
            "--test",
            &s(&data.test),
            "--steps",
            &steps.to_string(),
            "--batch",
            "256",
            "--solver-steps",
            &solver_steps.to_string(),
            "--eval-steps",
            &eval_steps.to_string(),
        ]))
        .env("OMP_NUM_THREADS", "1")
        .output()
        .with_context(|| format!("could not start {python}; give --python PATH"))?;
    if !output.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let mut zuko = BTreeMap::new();
    let mut versions = String::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("zuko_bench.py printed `{line}`"))?;
        let name = v["model"].as_str().unwrap_or("?").to_string();
        versions = format!(
            "torch {}, zuko {}",
            v["torch"].as_str().unwrap_or("?"),
            v["zuko"].as_str().unwrap_or("?")
        );
        println!("zuko {name}: {line}");
        zuko.insert(name, v);
    }
    let section = bench_table(
        &command,
        steps,
        &versions,
        &ours,
        &zuko,
        solver_steps,
        eval_steps,
    )?;
    println!("{section}");
    let out_path = root().join(&out);
    let old = std::fs::read_to_string(&out_path).unwrap_or_default();
    write_atomic(&out_path, &splice(&old, BENCH_BEGIN, BENCH_END, &section))?;
    println!("wrote {}", out_path.display());
    Ok(())
}

/// The ratio `theirs / ours` (how many times faster ours is), `—` if not finite.
pub(crate) fn ratio(theirs: f64, ours: f64) -> String {
    let r = theirs / ours;
    if r.is_finite() && r > 0.0 {
        format!("{r:.2}×")
    } else {
        "—".into()
    }
}

fn bench_table(
    command: &str,
    steps: usize,
    versions: &str,
    ours: &BTreeMap<&str, (f64, f64, f64)>,
    zuko: &BTreeMap<String, serde_json::Value>,
    solver_steps: usize,
    eval_steps: usize,
) -> Result<String> {
    let mut t = String::new();
    let _ = write!(
        t,
        "## Normalizing flows against zuko: `cargo xtask bench-nflows`\n\n\
         Made by `{command}` on {} ({versions}, `torch.set_num_threads(1)`; every `fm` call\n\
         single-threaded). Task: moons, the same 20,000 training rows and 2,000 test rows for both\n\
         sides, batch 256, Adam lr 1e-3, gradient norm clipped at 10, {steps} steps, seed 0.\n\
         Ours: `fm train --model coupling --layers 8 --hidden 64,64 --activation relu` and\n\
         `fm train --model cnf-mle --hidden 64,64 --activation elu --cnf-solver rk4 --solver-steps\n\
         {solver_steps} --eval-steps {eval_steps}` (f64, exact divergence, backpropagated\n\
         through the RK4 stages by fm-nf's fused pass). zuko: `RealNVP(2, transforms=8, hidden_features=(64, 64))` (ReLU) and\n\
         `CNF(2, hidden_features=(64, 64), exact=True)` (ELU, 3-frequency time embedding), f32;\n\
         `cnf (rk4)` replaces zuko's integrator by a fixed-step RK4 autograd records ({solver_steps}\n\
         steps for training, {eval_steps} for the test likelihood) — the same scheme as ours;\n\
         `cnf (adaptive)` is zuko's default (Dormand–Prince, atol 1e-6, rtol 1e-5, adaptive\n\
         checkpoint adjoint). Step times: ours = the training loop's wall time / steps, and\n\
         (process CPU of the {steps}-step run − that of a 1-step run) / (steps − 1); zuko = the\n\
         median over the steps of each step timed alone (wall, and CPU by `time.process_time`).\n\
         Ratio = zuko's time / ours (> 1: ours faster).\n\n\
         | model | ours ms/step (wall / CPU) | zuko ms/step (wall / CPU) | ratio wall / CPU | ours test LL | zuko test LL |\n\
         | --- | --- | --- | --- | --- | --- |\n",
        machine()
    );
    let rows = [
        ("coupling vs RealNVP", "coupling", "realnvp"),
        ("CNF-MLE vs CNF (rk4)", "cnf-mle", "cnf-rk4"),
        ("CNF-MLE vs CNF (adaptive)", "cnf-mle", "cnf-adaptive"),
    ];
    for (label, o, z) in rows {
        let (Some(&(ow, oc, oll)), Some(zv)) = (ours.get(o), zuko.get(z)) else {
            continue;
        };
        let zw = zv["median_step_wall"].as_f64().unwrap_or(f64::NAN);
        let zc = zv["median_step_cpu"].as_f64().unwrap_or(f64::NAN);
        let zll = zv["test_ll"].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            t,
            "| {label} | {} / {} | {} / {} | {} / {} | {} | {} |",
            fmt_num(1e3 * ow, 2),
            fmt_num(1e3 * oc, 2),
            fmt_num(1e3 * zw, 2),
            fmt_num(1e3 * zc, 2),
            ratio(zw, ow),
            ratio(zc, oc),
            fmt_num(oll, 3),
            fmt_num(zll, 3),
        );
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_parse_to_their_budgets_and_bad_ones_are_named() {
        let o = parse_opts(&a(&["--task", "nflows"])).unwrap();
        assert_eq!(o.steps, FULL_STEPS);
        assert!(!o.quick);
        assert_eq!(o.out, "docs/results.md");
        assert_eq!(o.only.len(), 5);
        assert_eq!(o.budget().n_test, 1_000);
        let q = parse_opts(&a(&[
            "--task",
            "nflows",
            "--quick",
            "--only",
            "moons, 8gaussians",
        ]))
        .unwrap();
        assert_eq!(q.steps, QUICK_STEPS);
        assert_eq!(q.only, vec!["moons", "8gaussians"]);
        assert!(q.budget().n_test < o.budget().n_test);
        let s = parse_opts(&a(&["--quick", "--steps", "7", "--fm", "x/fm"])).unwrap();
        assert_eq!(s.steps, 7);
        assert_eq!(s.fm, Some(PathBuf::from("x/fm")));
        for (bad, needle) in [
            (vec!["--steps", "0"], "--steps 0"),
            (vec!["--steps", "x"], "--steps x"),
            (vec!["--steps"], "--steps needs a value"),
            (vec!["--only", "moons,swiss"], "unknown task `swiss`"),
            (vec!["--seeds", "3"], "unknown option `--seeds`"),
        ] {
            let e = format!("{:#}", parse_opts(&a(&bad)).unwrap_err());
            assert!(e.contains(needle), "{bad:?}: {e}");
        }
    }

    /// Midpoint-rule integral of `exp(log p)` over `[lo, hi]²` with `k × k` cells.
    fn integrate(toy: &Toy, lo: [f64; 2], hi: [f64; 2], k: usize) -> f64 {
        let h = [(hi[0] - lo[0]) / k as f64, (hi[1] - lo[1]) / k as f64];
        let mut s = 0.0;
        for i in 0..k {
            for j in 0..k {
                let x = [
                    lo[0] + (i as f64 + 0.5) * h[0],
                    lo[1] + (j as f64 + 0.5) * h[1],
                ];
                s += true_log_density(toy, x).unwrap().exp();
            }
        }
        s * h[0] * h[1]
    }

    /// The fraction of `n` draws of the fm-data generator inside `[lo, hi]²`.
    fn fraction(toy: &Toy, lo: [f64; 2], hi: [f64; 2], n: usize) -> f64 {
        let mut rng = fm_core::rng::seeded(7);
        let x = toy.sample(n, &mut rng).unwrap();
        let inside = x
            .rows()
            .into_iter()
            .filter(|r| r[0] >= lo[0] && r[0] < hi[0] && r[1] >= lo[1] && r[1] < hi[1])
            .count();
        inside as f64 / n as f64
    }

    #[test]
    fn eight_gaussians_density_integrates_to_one_and_matches_the_generator() {
        for spec in [
            "8gaussians",
            "8gaussians:radius=4,std=0.5,scale=3,shift_x=1",
        ] {
            let toy = Toy::parse(spec, None).unwrap();
            let total = integrate(&toy, [-25.0, -25.0], [25.0, 25.0], 1000);
            assert!((total - 1.0).abs() < 1e-3, "{spec}: ∫p = {total}");
            // Boxes: around one centre, between two centres, off-centre corner.
            let n = 200_000;
            for (lo, hi) in [
                ([4.0, -1.0], [6.0, 1.0]),
                ([1.0, 1.0], [4.0, 4.0]),
                ([-6.0, -6.0], [-2.0, 0.0]),
            ] {
                let p = integrate(&toy, lo, hi, 400);
                let f = fraction(&toy, lo, hi, n);
                let se = (p * (1.0 - p) / n as f64).sqrt().max(1e-6);
                assert!(
                    (f - p).abs() < 5.0 * se,
                    "{spec} {lo:?}..{hi:?}: MC {f} vs ∫ {p}"
                );
            }
        }
        assert!(
            true_log_density(
                &Toy::parse("8gaussians:standardize=true", None).unwrap(),
                [0.0, 0.0]
            )
            .is_none()
        );
        assert!(true_log_density(&Toy::named("moons").unwrap(), [0.0, 0.0]).is_none());
    }

    #[test]
    fn checkerboard_density_is_uniform_on_the_cells_the_generator_fills() {
        let toy = Toy::named("checkerboard").unwrap();
        let total = integrate(&toy, [-5.0, -5.0], [5.0, 5.0], 1000);
        assert!((total - 1.0).abs() < 1e-2, "∫p = {total}");
        // The 16 cells of side 2 in [−4, 4)²: a cell's draw fraction is 1/8 where the density
        // is positive and 0 where it is −∞.
        let n = 160_000;
        let mut rng = fm_core::rng::seeded(3);
        let x = toy.sample(n, &mut rng).unwrap();
        for i in 0..4 {
            for j in 0..4 {
                let (lo0, lo1) = (-4.0 + 2.0 * i as f64, -4.0 + 2.0 * j as f64);
                let lp = true_log_density(&toy, [lo0 + 1.0, lo1 + 1.0]).unwrap();
                let f = x
                    .rows()
                    .into_iter()
                    .filter(|r| r[0] >= lo0 && r[0] < lo0 + 2.0 && r[1] >= lo1 && r[1] < lo1 + 2.0)
                    .count() as f64
                    / n as f64;
                let expect = (lp.exp() * 4.0).min(1.0);
                assert!(
                    (f - expect).abs() < 0.005,
                    "cell ({i},{j}): {f} vs {expect}"
                );
            }
        }
        for r in x.rows() {
            let lp = true_log_density(&toy, [r[0], r[1]]).unwrap();
            assert!(
                (lp + 32f64.ln()).abs() < 1e-12,
                "a draw off the support: {r}"
            );
        }
    }

    #[test]
    fn equal_time_steps_scale_with_the_cpu_ratio() {
        assert_eq!(equal_time_steps(1000, 10.0, 10.0), 1000);
        assert_eq!(equal_time_steps(1000, 10.0, 40.0), 250);
        assert_eq!(equal_time_steps(1000, 10.0, 1e9), 1);
        assert_eq!(equal_time_steps(1000, 10.0, 5.0), 2000);
        assert_eq!(equal_time_steps(1000, 10.0, 1e-6), EQUAL_TIME_CAP * 1000);
        assert_eq!(equal_time_steps(1000, f64::NAN, 5.0), 1000);
        assert_eq!(equal_time_steps(1000, f64::INFINITY, 5.0), 1000);
        assert_eq!(equal_time_steps(1000, 10.0, 0.0), 1000);
    }

    #[test]
    fn proc_stat_children_times_are_fields_16_and_17() {
        // pid (comm with ") (" inside) state ppid … : fields 14..17 = utime stime cutime cstime.
        let line = "123 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17";
        // After ')' field 3 = S, 4 = 1, …, 16 = 13, 17 = 14.
        assert_eq!(children_ticks(line), Some(13 + 14));
        assert_eq!(children_ticks("no paren"), None);
        assert_eq!(children_ticks("1 (x) S 1 2"), None);
        if let Ok(own) = std::fs::read_to_string("/proc/self/stat") {
            assert!(children_ticks(&own).is_some(), "{own}");
        }
    }

    #[test]
    fn rows_format_numbers_gaps_and_failures() {
        let c = Cell {
            steps: 100,
            test_ll: -2.5,
            w2: 0.25,
            train_wall: 3.0,
            train_cpu: 2.0,
            eq: Some((40, -2.75)),
            sample_wall: 0.125,
            failed: None,
        };
        let r = row("8gaussians", "I-CFM", &c, Some(-2.0));
        assert_eq!(
            r,
            "| 8gaussians | I-CFM | -2.500 | -0.500 | 0.250 | 3.0 / 2.0 | 20.00 | -2.750 (40) | 0.125 |\n"
        );
        let r = row(
            "moons",
            "I-CFM",
            &Cell {
                eq: None,
                w2: f64::NAN,
                ..c.clone()
            },
            None,
        );
        assert!(r.contains("| -2.500 | — | — |"), "{r}");
        assert!(r.contains("| — | 0.125 |"), "{r}");
        let f = row(
            "moons",
            "x",
            &Cell {
                failed: Some("boom".into()),
                ..c
            },
            None,
        );
        assert!(f.contains("failed: boom"), "{f}");
        assert_eq!(ratio(10.0, 2.0), "5.00×");
        assert_eq!(ratio(1.0, 0.0), "—");
    }

    #[test]
    fn splice_replaces_only_its_section() {
        let old = format!("intro\n{BEGIN}\nold\n{END}\nafter\n");
        let new = splice(&old, BEGIN, END, "new\n");
        assert_eq!(new, format!("intro\n{BEGIN}\nnew\n{END}\nafter\n"));
        assert_eq!(
            splice("", BEGIN, END, "t\n"),
            format!("{BEGIN}\nt\n{END}\n")
        );
        assert_eq!(
            splice("x\n", BEGIN, END, "t\n"),
            format!("x\n\n{BEGIN}\nt\n{END}\n")
        );
        // The other task's markers are left alone.
        let both = splice(&new, BENCH_BEGIN, BENCH_END, "b\n");
        assert!(both.contains("new\n") && both.contains("b\n"));
    }

    #[test]
    fn grid_and_histogram_agree_on_orientation_and_mass() {
        let pts = grid_points(4, 0.0, 4.0);
        assert_eq!(pts[0], vec![0.5, 3.5]); // top-left first
        assert_eq!(pts[15], vec![3.5, 0.5]);
        let rows = vec![
            vec![0.5, 3.5],
            vec![0.6, 3.4],
            vec![3.5, 0.5],
            vec![3.9, 0.1],
        ];
        let h = histogram_log_density(&rows, 4, 0.0, 4.0);
        // Two of four points in the top-left cell of area 1: density 0.5.
        assert!((h[0] - 0.5f64.ln()).abs() < 1e-12);
        assert!((h[15] - 0.5f64.ln()).abs() < 1e-12);
        assert_eq!(h[1], f64::NEG_INFINITY);
        let mass: f64 = h.iter().map(|v| v.exp()).sum();
        assert!((mass - 1.0).abs() < 1e-12);
        let (lo, hi) = grid_box(&rows);
        assert!(lo < 0.5 && hi > 3.9);
    }

    #[test]
    fn colour_map_runs_from_dark_to_bright_and_clamps() {
        assert_eq!(colour(0.0), RGBColor(68, 1, 84));
        assert_eq!(colour(1.0), RGBColor(253, 231, 37));
        assert_eq!(colour(-3.0), colour(0.0));
        assert_eq!(colour(f64::NAN), colour(0.0));
        assert_eq!(colour(7.0), colour(1.0));
        let lum = |c: RGBColor| 0.3 * c.0 as f64 + 0.59 * c.1 as f64 + 0.11 * c.2 as f64;
        let mut prev = -1.0;
        for k in 0..=20 {
            let l = lum(colour(k as f64 / 20.0));
            assert!(l > prev, "brightness must rise with the value");
            prev = l;
        }
    }
}
