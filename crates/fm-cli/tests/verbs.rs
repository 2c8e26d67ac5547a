//! `fm encode`, `fm field`, `fm sample --x0/--source`, `(T, n, d)` trajectories, models that
//! work from any folder, progress lines without a terminal, solver lists in `--help`, resume
//! errors in the user's words and the demo's closing lines.

use flow_matching::core::VectorField;
use flow_matching::train::TrainedModel;
use ndarray::{Array2, Array3};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn fm_env(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fm"));
    c.args(args)
        .current_dir(dir)
        .env_remove("RUST_BACKTRACE")
        .env_remove("FM_PROGRESS_EVERY");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run fm")
}

fn fm(args: &[&str], dir: &Path) -> Output {
    fm_env(args, dir, &[])
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `fm --json …`, asserts success and returns the JSON of the last stdout line.
fn fm_json(args: &[&str], dir: &Path) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = fm(&all, dir);
    assert!(out.status.success(), "fm {args:?} failed: {}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().expect("a JSON line")).expect("JSON")
}

/// Exit code `code` and an `error:` line holding every needle, no panic.
fn assert_fails(o: &Output, code: i32, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

/// A CSV points file written by `fm` (header `x0,x1,…`) as a matrix.
fn read_csv(path: &Path) -> Array2<f64> {
    let text = std::fs::read_to_string(path).expect("read csv");
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .map(|v| v.trim().parse().expect("a number"))
                .collect()
        })
        .collect();
    let d = rows[0].len();
    Array2::from_shape_vec((rows.len(), d), rows.into_iter().flatten().collect()).unwrap()
}

fn write_csv(path: &Path, x: &Array2<f64>) {
    let mut s = (0..x.ncols())
        .map(|j| format!("x{j}"))
        .collect::<Vec<_>>()
        .join(",");
    s.push('\n');
    for r in x.rows() {
        s.push_str(
            &r.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

/// A small flow-matching model from N(0, I) to moons in `dir/name`.
fn train_moons(dir: &Path, name: &str, steps: &str) {
    fm_json(
        &[
            "train",
            "--target",
            "moons",
            "--matcher",
            "icfm",
            "--sigma",
            "0.1",
            "--steps",
            steps,
            "--batch",
            "64",
            "--hidden",
            "32,32",
            "--lr",
            "3e-3",
            "--out",
            name,
        ],
        dir,
    );
}

fn max_abs_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn a_model_trained_from_files_samples_from_any_folder() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    // A ring of 300 points as the source.
    let ring = Array2::from_shape_fn((300, 2), |(i, j)| {
        let phi = i as f64 * 0.37;
        let r = 1.0 + 0.1 * ((i * 7 % 11) as f64 / 11.0);
        if j == 0 { r * phi.cos() } else { r * phi.sin() }
    });
    write_csv(&a.join("ring.csv"), &ring);
    let j = fm_json(
        &[
            "train",
            "--source",
            "ring.csv",
            "--target",
            "moons",
            "--steps",
            "30",
            "--batch",
            "32",
            "--hidden",
            "16",
            "--out",
            "m.safetensors",
        ],
        &a,
    );
    let canonical = std::fs::canonicalize(a.join("ring.csv")).unwrap();
    assert_eq!(j["source"], canonical.display().to_string());
    let model = TrainedModel::load(&a.join("m.safetensors")).unwrap();
    assert_eq!(model.config.source, canonical.display().to_string());

    // From another folder, the recorded absolute path is found.
    let o = fm(
        &[
            "sample",
            "--model",
            "../a/m.safetensors",
            "--n",
            "40",
            "--seed",
            "5",
            "--out",
            "s.csv",
        ],
        &b,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let first = read_csv(&b.join("s.csv"));
    assert_eq!(first.dim(), (40, 2));

    // The file moves: a clear error naming it and the fix, from sample, eval and plot.
    std::fs::rename(a.join("ring.csv"), a.join("moved.csv")).unwrap();
    let path = canonical.display().to_string();
    let o = fm(
        &[
            "sample",
            "--model",
            "../a/m.safetensors",
            "--n",
            "40",
            "--out",
            "s2.csv",
        ],
        &b,
    );
    assert_fails(
        &o,
        2,
        &[&path, "--source FILE", "does not exist", "--x0 FILE"],
    );
    let o = fm(
        &[
            "eval",
            "--model",
            "../a/m.safetensors",
            "--target",
            "moons",
            "--n",
            "50",
        ],
        &b,
    );
    assert_fails(
        &o,
        2,
        &[&path, "fm sample --model ../a/m.safetensors --source FILE"],
    );
    let o = fm(
        &[
            "plot",
            "samples",
            "--model",
            "../a/m.safetensors",
            "--n",
            "50",
            "--out",
            "p.png",
        ],
        &b,
    );
    assert_fails(
        &o,
        2,
        &[&path, "fm sample --model ../a/m.safetensors --source FILE"],
    );

    // --source names the moved file: the same points, seed and solver give the same samples.
    let o = fm(
        &[
            "sample",
            "--model",
            "../a/m.safetensors",
            "--n",
            "40",
            "--seed",
            "5",
            "--source",
            "../a/moved.csv",
            "--out",
            "s3.csv",
        ],
        &b,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_csv(&b.join("s3.csv")), first);

    // A --source of the wrong dimension is refused, naming the dimension.
    write_csv(&b.join("three.csv"), &Array2::ones((10, 3)));
    let o = fm(
        &[
            "sample",
            "--model",
            "../a/m.safetensors",
            "--source",
            "three.csv",
            "--out",
            "s4.csv",
        ],
        &b,
    );
    assert_fails(&o, 2, &["--source three.csv", "dimension 2"]);
}

/// The `step k/N loss L T s` lines of stderr as (k, N, L, T).
fn progress_lines(err: &str) -> Vec<(usize, usize, f64, f64)> {
    err.lines()
        .filter(|l| l.starts_with("step "))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            assert_eq!((w.len(), w[2], w[5]), (6, "loss", "s"), "{l}");
            let (k, n) = w[1].split_once('/').expect("k/N");
            (
                k.parse().unwrap(),
                n.parse().unwrap(),
                w[3].parse().unwrap(),
                w[4].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn without_a_terminal_training_prints_plain_progress_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = [
        "train",
        "--target",
        "moons",
        "--steps",
        "40",
        "--batch",
        "32",
        "--hidden",
        "16",
        "--log-every",
        "1",
        "--out",
        "m.safetensors",
    ];
    // Interval 0: a line per step (stderr is a pipe here, not a terminal), each with that step's
    // loss as the model file records it.
    let mut args = base.to_vec();
    args.extend(["--progress-every", "0"]);
    let o = fm(&args, d);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = progress_lines(&stderr(&o));
    let history = TrainedModel::load(&d.join("m.safetensors"))
        .unwrap()
        .config
        .loss_history;
    assert_eq!(lines.len(), 40, "{}", stderr(&o));
    assert_eq!(history.len(), 40);
    let mut last_t = 0.0;
    for (i, ((k, n, loss, t), (step, want))) in lines.iter().zip(&history).enumerate() {
        assert_eq!((*k, *n, *k), (i + 1, 40, *step));
        assert!(
            (loss - want).abs() <= 1e-3 * want.abs(),
            "step {k}: {loss} vs {want}"
        );
        assert!(*t >= last_t);
        last_t = *t;
    }
    assert!(!stderr(&o).contains('\r'), "no bar redraws in a log");

    // A long interval from the environment: only the last step's line, whose loss is the mean
    // over all the steps.
    let o = fm_env(&base, d, &[("FM_PROGRESS_EVERY", "100000")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = progress_lines(&stderr(&o));
    assert_eq!(lines.len(), 1, "{}", stderr(&o));
    let mean = history.iter().map(|h| h.1).sum::<f64>() / 40.0;
    assert_eq!((lines[0].0, lines[0].1), (40, 40));
    assert!(
        (lines[0].2 - mean).abs() <= 1e-3 * mean,
        "{} vs {mean}",
        lines[0].2
    );

    // --quiet silences; a bad interval is an input error naming its source.
    let mut args = base.to_vec();
    args.extend(["--progress-every", "0", "--quiet"]);
    let o = fm(&args, d);
    assert!(o.status.success());
    assert!(progress_lines(&stderr(&o)).is_empty(), "{}", stderr(&o));
    let o = fm_env(&base, d, &[("FM_PROGRESS_EVERY", "soon")]);
    assert_fails(&o, 2, &["FM_PROGRESS_EVERY=soon"]);
    let mut args = base.to_vec();
    args.extend(["--progress-every", "-1"]);
    assert_fails(&fm(&args, d), 2, &["--progress-every"]);
}

#[test]
fn encode_then_sample_x0_round_trips_within_solver_tolerance() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    train_moons(d, "m.safetensors", "150");
    fm_json(
        &[
            "sample",
            "--model",
            "m.safetensors",
            "--n",
            "60",
            "--out",
            "x.csv",
        ],
        d,
    );
    let x = read_csv(&d.join("x.csv"));
    for (solver, extra) in [
        ("rk4", &["--steps", "100"][..]),
        ("dopri5", &["--rtol", "1e-9", "--atol", "1e-9"][..]),
    ] {
        let mut enc: Vec<&str> = vec![
            "encode",
            "--model",
            "m.safetensors",
            "--data",
            "x.csv",
            "--out",
            "z.csv",
            "--solver",
            solver,
        ];
        enc.extend_from_slice(extra);
        let j = fm_json(&enc, d);
        assert_eq!(j["n"], 60);
        let z = read_csv(&d.join("z.csv"));
        // The codes are not the data: the flow moved them.
        let moved = (&z - &x).mapv(f64::abs).mean().unwrap();
        assert!(moved > 0.3, "{solver}: mean move {moved}");
        let mut dec: Vec<&str> = vec![
            "sample",
            "--model",
            "m.safetensors",
            "--x0",
            "z.csv",
            "--out",
            "x2.csv",
            "--solver",
            solver,
        ];
        dec.extend_from_slice(extra);
        let j = fm_json(&dec, d);
        assert_eq!(j["n"], 60);
        let err = max_abs_diff(&read_csv(&d.join("x2.csv")), &x);
        assert!(err < 1e-5, "{solver}: round trip error {err}");
    }
    // Encoding a built-in data set draws --n points.
    let j = fm_json(
        &[
            "encode",
            "--model",
            "m.safetensors",
            "--data",
            "moons",
            "--n",
            "25",
            "--out",
            "zm.npy",
        ],
        d,
    );
    assert_eq!(j["n"], 25);
}

#[test]
fn x0_encode_and_field_check_shapes_and_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    train_moons(d, "m.safetensors", "20");
    write_csv(&d.join("three.csv"), &Array2::ones((5, 3)));
    let o = fm(
        &[
            "sample",
            "--model",
            "m.safetensors",
            "--x0",
            "three.csv",
            "--out",
            "o.csv",
        ],
        d,
    );
    assert_fails(&o, 2, &["--x0 three.csv", "3 column(s)", "dimension 2"]);
    let o = fm(
        &[
            "encode",
            "--model",
            "m.safetensors",
            "--data",
            "three.csv",
            "--out",
            "o.csv",
        ],
        d,
    );
    assert_fails(&o, 2, &["--data three.csv", "dimension 2"]);
    let o = fm(
        &[
            "field",
            "--model",
            "m.safetensors",
            "--t",
            "0.5",
            "--points",
            "three.csv",
            "--out",
            "o.csv",
        ],
        d,
    );
    assert_fails(&o, 2, &["--points three.csv", "dimension 2"]);
    // No output may replace an input.
    write_csv(&d.join("two.csv"), &Array2::ones((5, 2)));
    let o = fm(
        &[
            "sample",
            "--model",
            "m.safetensors",
            "--x0",
            "two.csv",
            "--out",
            "two.csv",
        ],
        d,
    );
    assert_fails(&o, 2, &["--x0"]);
    let o = fm(
        &[
            "encode",
            "--model",
            "m.safetensors",
            "--data",
            "two.csv",
            "--out",
            "two.csv",
        ],
        d,
    );
    assert_fails(&o, 2, &["--data"]);
    let o = fm(
        &[
            "field",
            "--model",
            "m.safetensors",
            "--t",
            "0",
            "--points",
            "two.csv",
            "--out",
            "m.safetensors",
        ],
        d,
    );
    assert_fails(&o, 2, &[".csv or .npy"]);
    let o = fm(
        &[
            "field",
            "--model",
            "m.safetensors",
            "--t",
            "0",
            "--points",
            "two.csv",
            "--out",
            "two.csv",
        ],
        d,
    );
    assert_fails(&o, 2, &["--points"]);
    assert_eq!(read_csv(&d.join("two.csv")), Array2::<f64>::ones((5, 2)));
    // --n/--seed draw points, which --x0 and a --data file give: refused, not ignored.
    let o = fm(
        &[
            "sample",
            "--model",
            "m.safetensors",
            "--x0",
            "two.csv",
            "--n",
            "9",
            "--out",
            "o.csv",
        ],
        d,
    );
    assert_fails(&o, 2, &["--n and --seed", "drop --n/--seed"]);
    let o = fm(
        &[
            "encode",
            "--model",
            "m.safetensors",
            "--data",
            "two.csv",
            "--seed",
            "3",
            "--out",
            "o.csv",
        ],
        d,
    );
    assert_fails(&o, 2, &["encoded whole"]);
    assert!(!d.join("o.csv").exists());
    // --t outside [0, 1].
    let o = fm(
        &[
            "field",
            "--model",
            "m.safetensors",
            "--t",
            "1.5",
            "--points",
            "two.csv",
            "--out",
            "v.csv",
        ],
        d,
    );
    assert_fails(&o, 2, &["--t 1.5"]);
}

#[test]
fn field_equals_the_library_field_on_the_same_points() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    train_moons(d, "m.safetensors", "60");
    let x = Array2::from_shape_fn((17, 2), |(i, j)| {
        (i as f64 * 0.31 - 2.0) * if j == 0 { 1.0 } else { -0.7 }
    });
    write_csv(&d.join("x.csv"), &x);
    let model = TrainedModel::load(&d.join("m.safetensors")).unwrap();
    for (t, ema) in [(0.0, true), (0.37, true), (1.0, true), (0.37, false)] {
        let ts = t.to_string();
        let mut args = vec![
            "field",
            "--model",
            "m.safetensors",
            "--t",
            &ts,
            "--points",
            "x.csv",
            "--out",
            "v.csv",
        ];
        if !ema {
            args.push("--no-ema");
        }
        fm_json(&args, d);
        let got = read_csv(&d.join("v.csv"));
        let field = model.field(ema).unwrap();
        let mut want = Array2::zeros(x.dim());
        field.velocity(t, x.view(), want.view_mut());
        // CSV holds every value in its shortest exact form: the numbers are the library's.
        assert_eq!(got, want, "t = {t}, ema = {ema}");
    }
    // EMA and raw weights differ, so the flag matters.
    let (fe, fr) = (model.field(true).unwrap(), model.field(false).unwrap());
    let (mut a, mut b) = (Array2::zeros(x.dim()), Array2::zeros(x.dim()));
    fe.velocity(0.5, x.view(), a.view_mut());
    fr.velocity(0.5, x.view(), b.view_mut());
    assert!(max_abs_diff(&a, &b) > 1e-6);
}

#[test]
fn npy_trajectories_have_torchcfm_layout_and_the_csv_values() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    train_moons(d, "m.safetensors", "40");
    let common = [
        "sample",
        "--model",
        "m.safetensors",
        "--n",
        "13",
        "--seed",
        "4",
    ];
    let mut a = common.to_vec();
    a.extend(["--out", "a.csv", "--trajectory", "t.npy"]);
    fm_json(&a, d);
    let mut b = common.to_vec();
    b.extend(["--out", "b.csv", "--trajectory", "t.csv"]);
    fm_json(&b, d);
    let npy: Array3<f64> = ndarray_npy::read_npy(d.join("t.npy")).unwrap();
    assert_eq!(npy.dim(), (21, 13, 2));
    let rows = read_csv(&d.join("t.csv"));
    assert_eq!(rows.dim(), (21 * 13, 3));
    for k in 0..21 {
        for i in 0..13 {
            let r = rows.row(k * 13 + i);
            assert!((r[0] - k as f64 / 20.0).abs() < 1e-12);
            assert_eq!(
                (r[1], r[2]),
                (npy[[k, i, 0]], npy[[k, i, 1]]),
                "time {k}, point {i}"
            );
        }
    }
    // The last time is the samples.
    let s = read_csv(&d.join("a.csv"));
    assert_eq!(npy.index_axis(ndarray::Axis(0), 20), s);
    // Plotted from the file; rewritten by a second run without --force (it is fm's own).
    fm_json(
        &[
            "plot",
            "trajectories",
            "--trajectory",
            "t.npy",
            "--out",
            "t.png",
        ],
        d,
    );
    fm_json(&a, d);
    // encode's trajectory runs from the data (t = 1) to the codes (t = 0).
    fm_json(
        &[
            "encode",
            "--model",
            "m.safetensors",
            "--data",
            "a.csv",
            "--out",
            "z.csv",
            "--trajectory",
            "zt.npy",
        ],
        d,
    );
    let zt: Array3<f64> = ndarray_npy::read_npy(d.join("zt.npy")).unwrap();
    assert_eq!(zt.dim(), (21, 13, 2));
    assert_eq!(zt.index_axis(ndarray::Axis(0), 0), s);
    assert_eq!(
        zt.index_axis(ndarray::Axis(0), 20),
        read_csv(&d.join("z.csv"))
    );
}

#[test]
fn coupling_flows_encode_and_decode_exactly_other_flows_refuse_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (kind, extra) in [
        ("coupling", &["--layers", "2"][..]),
        (
            "residual",
            &["--layers", "1", "--estimator", "truncated:2"][..],
        ),
    ] {
        let out = format!("{kind}.safetensors");
        let mut args = vec![
            "train", "--model", kind, "--target", "moons", "--steps", "30", "--batch", "32",
            "--hidden", "8", "--out", &out,
        ];
        args.extend_from_slice(extra);
        fm_json(&args, d);
    }
    let x = Array2::from_shape_fn((23, 2), |(i, j)| ((i * 3 + j * 5) % 7) as f64 * 0.4 - 1.2);
    write_csv(&d.join("x.csv"), &x);

    // Coupling: encode is the flow's forward map, sample --x0 its exact inverse.
    let j = fm_json(
        &[
            "encode",
            "--model",
            "coupling.safetensors",
            "--data",
            "x.csv",
            "--out",
            "z.csv",
        ],
        d,
    );
    assert_eq!(
        (j["kind"].as_str(), j["n"].as_u64()),
        (Some("coupling"), Some(23))
    );
    let z = read_csv(&d.join("z.csv"));
    let flow = flow_matching::nf::CouplingFlow::load(&d.join("coupling.safetensors")).unwrap();
    assert_eq!(z, flow.forward(x.view()).unwrap().0);
    assert!(max_abs_diff(&z, &x) > 0.01, "the flow moved the points");
    fm_json(
        &[
            "sample",
            "--model",
            "coupling.safetensors",
            "--x0",
            "z.csv",
            "--out",
            "x2.csv",
        ],
        d,
    );
    let err = max_abs_diff(&read_csv(&d.join("x2.csv")), &x);
    assert!(err < 1e-9, "coupling round trip error {err}");
    // ODE flags do not apply to an exact map.
    let o = fm(
        &[
            "encode",
            "--model",
            "coupling.safetensors",
            "--data",
            "x.csv",
            "--solver",
            "rk4",
            "--out",
            "o.csv",
        ],
        d,
    );
    assert_fails(
        &o,
        2,
        &["coupling flow", "maps points exactly", "drop --solver"],
    );
    let o = fm(
        &[
            "field",
            "--model",
            "coupling.safetensors",
            "--t",
            "0.5",
            "--points",
            "x.csv",
            "--out",
            "o.csv",
        ],
        d,
    );
    assert_fails(&o, 2, &["coupling normalizing flow", "`fm field`"]);

    // Residual: no exact inverse here and no field: refused, naming the kind.
    let o = fm(
        &[
            "sample",
            "--model",
            "residual.safetensors",
            "--x0",
            "x.csv",
            "--out",
            "o.csv",
        ],
        d,
    );
    assert_fails(&o, 2, &["normalizing flow", "--x0"]);
    let o = fm(
        &[
            "encode",
            "--model",
            "residual.safetensors",
            "--data",
            "x.csv",
            "--out",
            "o.csv",
        ],
        d,
    );
    assert_fails(&o, 2, &["residual normalizing flow", "`fm encode`"]);
    let o = fm(
        &[
            "field",
            "--model",
            "residual.safetensors",
            "--t",
            "0.5",
            "--points",
            "x.csv",
            "--out",
            "o.csv",
        ],
        d,
    );
    assert_fails(&o, 2, &["residual normalizing flow", "`fm field`"]);
    assert!(!d.join("o.csv").exists());
}

#[test]
fn help_lists_every_solver_fm_accepts() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["sample", "eval", "likelihood", "encode"] {
        let o = fm(&[cmd, "--help"], dir.path());
        assert!(o.status.success());
        let help = String::from_utf8_lossy(&o.stdout);
        for name in flow_matching::ode::SOLVER_NAMES {
            // Every listed name is accepted ...
            assert!(flow_matching::ode::solver_by_name(name).is_ok());
            // ... and shown.
            assert!(
                help.contains(name),
                "fm {cmd} --help does not list {name}:\n{help}"
            );
        }
    }
    for cmd in ["encode", "field"] {
        let o = fm(&["--help"], dir.path());
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(cmd),
            "fm --help lists {cmd}"
        );
    }
}

#[test]
fn a_resume_with_other_settings_says_which_flags_differ_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = [
        "train",
        "--target",
        "moons",
        "--steps",
        "20",
        "--batch",
        "32",
        "--checkpoint-every",
        "10",
        "--out",
        "m.safetensors",
    ];
    let mut args = base.to_vec();
    args.extend(["--matcher", "otcfm", "--sigma", "0.1", "--hidden", "16"]);
    fm_json(&args, d);
    let mut args = base.to_vec();
    args.extend([
        "--matcher",
        "icfm",
        "--sigma",
        "0.1",
        "--hidden",
        "16,8",
        "--resume",
    ]);
    let o = fm(&args, d);
    assert_fails(
        &o,
        2,
        &[
            "--matcher was otcfm (σ = 0.1, exact coupling), now icfm (σ = 0.1, independent coupling)",
            "--hidden 16 ",
            "--hidden 16,8 ",
        ],
    );
    let err = stderr(&o);
    for debug in ["MatcherSpec", "ArchConfig", "kind:", "Some(", "{"] {
        assert!(!err.contains(debug), "`{debug}` in {err}");
    }
}

#[test]
fn the_demo_ends_by_explaining_w2_and_what_to_try_next() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = fm(&["--json", "demo", "--steps", "50", "--out", "demo"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let j: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let (w2, src, floor) = (
        j["w2"].as_f64().unwrap(),
        j["w2_source"].as_f64().unwrap(),
        j["w2_floor"].as_f64().unwrap(),
    );
    // The scale makes sense: the floor is below the untrained source.
    assert!(floor > 0.0 && floor < src, "floor {floor}, source {src}");
    assert!(stdout.contains(&format!("W2 = {w2:.3}: the root-mean-square distance")));
    assert!(stdout.contains(&format!(
        "N(0, I), where the flow starts, is at W2 = {src:.3}"
    )));
    assert!(stdout.contains(&format!("W2 = {floor:.3} (the floor at this n)")));
    let lines: Vec<&str> = stdout.lines().collect();
    let next = lines
        .iter()
        .position(|l| *l == "next:")
        .expect("a `next:` line");
    let cmds: Vec<&str> = lines[next + 1..]
        .iter()
        .filter(|l| l.starts_with("  fm "))
        .copied()
        .collect();
    assert_eq!(cmds.len(), 3, "{stdout}");
    // Each suggestion is a command line fm accepts (checked with --help, which parses the verb).
    for c in cmds {
        let words: Vec<&str> = c.split('#').next().unwrap().split_whitespace().collect();
        assert_eq!(words[0], "fm");
        let o = fm(&[words[1], "--help"], d);
        assert!(o.status.success(), "{c}");
        let help = String::from_utf8_lossy(&o.stdout);
        for w in words.iter().filter(|w| w.starts_with("--")) {
            assert!(
                help.contains(&format!("{w} ")),
                "{c}: {w} is not a flag of fm {}",
                words[1]
            );
        }
    }
}
