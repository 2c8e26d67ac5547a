//! The normalizing flows of issue 16 through the real binary: `fm train --model
//! coupling|residual|cnf-mle`, then `fm sample`, `fm likelihood` and `fm eval` on the file it
//! wrote (dispatched on the `kind` the file names), and the flag combinations that make no sense
//! for a kind (exit 2, naming the flag and the kind).

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const KINDS: [&str; 3] = ["coupling", "residual", "cnf-mle"];

/// Runs `fm` with `args` in `dir`.
fn fm(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fm"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run fm")
}

/// Runs `fm --json …`, asserts success and returns the JSON of the last stdout line.
fn fm_json(args: &[&str], dir: &Path) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = fm(&all, dir);
    assert!(
        out.status.success(),
        "fm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().expect("a JSON line")).expect("JSON")
}

/// Small, fast settings of each kind (the `--hidden` widths apply to all three).
fn train_args<'a>(kind: &'a str, steps: &'a str, out: &'a str) -> Vec<&'a str> {
    let mut a = vec![
        "train", "--model", kind, "--target", "moons", "--steps", steps, "--batch", "64",
        "--hidden", "16,16", "--lr", "5e-3", "--seed", "3", "--out", out,
    ];
    match kind {
        "coupling" => a.extend(["--layers", "4"]),
        "residual" => a.extend(["--layers", "2", "--estimator", "truncated:4"]),
        _ => a.extend(["--solver-steps", "4", "--eval-steps", "8"]),
    }
    a
}

/// Reads a CSV points file written by `fm` (header `x0,x1,…`).
fn read_csv(path: &Path) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(path).expect("read csv");
    text.lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .map(|v| v.trim().parse().expect("a number"))
                .collect()
        })
        .collect()
}

fn mean_ll(dir: &Path, model: &str) -> f64 {
    let j = fm_json(
        &[
            "likelihood",
            "--model",
            model,
            "--data",
            "moons",
            "--n",
            "500",
            "--seed",
            "9",
        ],
        dir,
    );
    j["mean_log_likelihood"]
        .as_f64()
        .expect("mean_log_likelihood")
}

#[test]
fn every_kind_trains_samples_and_scores_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for kind in KINDS {
        let model = format!("{kind}.safetensors");
        let t = fm_json(&train_args(kind, "30", &model), d);
        assert_eq!(t["kind"], kind);
        assert_eq!(t["steps"], 30);
        assert!(t["final_loss"].as_f64().unwrap().is_finite(), "{kind}: {t}");
        assert!(d.join(&model).is_file());

        // Samples: the asked number of finite 2-D rows; the same seed gives the same bytes.
        let s = fm_json(
            &[
                "sample", "--model", &model, "--n", "300", "--seed", "4", "--out", "a.csv",
            ],
            d,
        );
        assert_eq!(s["kind"], kind);
        let rows = read_csv(&d.join("a.csv"));
        assert_eq!(rows.len(), 300, "{kind}");
        assert!(
            rows.iter()
                .all(|r| r.len() == 2 && r.iter().all(|v| v.is_finite()))
        );
        fm_json(
            &[
                "sample", "--model", &model, "--n", "300", "--seed", "4", "--out", "b.csv",
            ],
            d,
        );
        assert_eq!(
            std::fs::read(d.join("a.csv")).unwrap(),
            std::fs::read(d.join("b.csv")).unwrap(),
            "{kind}: same seed, different samples"
        );

        // Likelihood: the reported mean is the mean of the per-point values it writes, and
        // bits/dim is −mean / (d ln 2).
        let l = fm_json(
            &[
                "likelihood",
                "--model",
                &model,
                "--data",
                "moons",
                "--n",
                "400",
                "--out",
                "ll.csv",
            ],
            d,
        );
        assert_eq!(l["kind"], kind);
        assert_eq!(l["n"], 400);
        let mean = l["mean_log_likelihood"].as_f64().unwrap();
        assert!(
            mean.is_finite() && mean < 0.0 && mean > -50.0,
            "{kind}: {l}"
        );
        let per_point = read_csv(&d.join("ll.csv"));
        assert_eq!(per_point.len(), 400);
        let m = per_point.iter().map(|r| r[0]).sum::<f64>() / 400.0;
        assert!(
            (m - mean).abs() < 1e-9 * mean.abs().max(1.0),
            "{kind}: {m} vs {mean}"
        );
        let bpd = l["bits_per_dim"].as_f64().unwrap();
        assert!((bpd + mean / (2.0 * std::f64::consts::LN_2)).abs() < 1e-12);

        // Eval: W2 and MMD of the model's samples against moons.
        let e = fm_json(
            &["eval", "--model", &model, "--target", "moons", "--n", "300"],
            d,
        );
        assert_eq!(e["kind"], kind);
        let (w2, mmd) = (e["w2"].as_f64().unwrap(), e["mmd"].as_f64().unwrap());
        assert!(w2.is_finite() && w2 > 0.0 && mmd.is_finite(), "{kind}: {e}");
    }
}

#[test]
fn training_longer_raises_the_likelihood_of_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (kind, long) in [("coupling", "300"), ("residual", "300"), ("cnf-mle", "120")] {
        fm_json(&train_args(kind, "1", "short.safetensors"), d);
        fm_json(&train_args(kind, long, "long.safetensors"), d);
        let (short, trained) = (
            mean_ll(d, "short.safetensors"),
            mean_ll(d, "long.safetensors"),
        );
        assert!(
            trained > short + 0.5,
            "{kind}: log-likelihood {short} after 1 step, {trained} after {long}"
        );
    }
}

#[test]
fn flags_that_do_not_apply_to_a_kind_exit_2_naming_flag_and_kind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = |kind: &'static str| {
        vec![
            "train",
            "--model",
            kind,
            "--target",
            "moons",
            "--steps",
            "2",
            "--out",
            "m.safetensors",
        ]
    };
    let cases: Vec<(Vec<&str>, [&str; 2])> = vec![
        (
            [base("coupling"), vec!["--matcher", "otcfm"]].concat(),
            ["--matcher", "coupling"],
        ),
        (
            [base("residual"), vec!["--sigma", "0.1"]].concat(),
            ["--sigma", "residual"],
        ),
        (
            [base("cnf-mle"), vec!["--coupling", "exact"]].concat(),
            ["--coupling", "cnf-mle"],
        ),
        (
            [base("coupling"), vec!["--source", "8gaussians"]].concat(),
            ["--source", "coupling"],
        ),
        (
            [base("coupling"), vec!["--probes", "2"]].concat(),
            ["--probes", "coupling"],
        ),
        (
            [base("cnf-mle"), vec!["--layers", "3"]].concat(),
            ["--layers", "cnf-mle"],
        ),
        (
            [base("residual"), vec!["--solver-steps", "3"]].concat(),
            ["--solver-steps", "residual"],
        ),
        (
            [base("fm"), vec!["--estimator", "truncated:3"]].concat(),
            ["--estimator", "fm"],
        ),
        (base("realnvp"), ["unknown --model realnvp", "coupling"]),
        (
            [base("residual"), vec!["--estimator", "lots"]].concat(),
            ["--estimator lots", "truncated:N"],
        ),
        (
            [base("coupling"), vec!["--activation", "sine"]].concat(),
            ["--activation sine", "tanh"],
        ),
    ];
    for (args, needles) in cases {
        let out = fm(&args, d);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: `{n}` not in {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
        assert!(!d.join("m.safetensors").exists(), "{args:?} wrote a model");
    }
    // Positive control: the same command without the bad flag trains.
    let ok = fm(&base("coupling"), d);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(d.join("m.safetensors").is_file());

    // ODE flags on sample and likelihood of a normalizing flow.
    for (args, flag) in [
        (
            vec![
                "sample",
                "--model",
                "m.safetensors",
                "--out",
                "s.csv",
                "--solver",
                "rk4",
            ],
            "--solver",
        ),
        (
            vec![
                "sample",
                "--model",
                "m.safetensors",
                "--out",
                "s.csv",
                "--trajectory",
                "t.csv",
            ],
            "--trajectory",
        ),
        (
            vec![
                "likelihood",
                "--model",
                "m.safetensors",
                "--data",
                "moons",
                "--hutchinson",
                "2",
            ],
            "--hutchinson",
        ),
        (
            vec![
                "eval",
                "--model",
                "m.safetensors",
                "--target",
                "moons",
                "--steps",
                "5",
            ],
            "--steps",
        ),
    ] {
        let out = fm(&args, d);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(flag) && err.contains("coupling"),
            "{args:?}: {err}"
        );
        assert!(!d.join("s.csv").exists());
    }
    // Likelihood of data of the wrong dimension.
    let out = fm(
        &[
            "likelihood",
            "--model",
            "m.safetensors",
            "--data",
            "gaussian:3",
        ],
        d,
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn flow_matching_models_keep_their_own_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = fm_json(
        &[
            "train",
            "--target",
            "moons",
            "--steps",
            "5",
            "--batch",
            "32",
            "--hidden",
            "8",
            "--out",
            "fm.safetensors",
            "--quiet",
        ],
        d,
    );
    assert!(t.get("kind").is_none(), "{t}");
    assert!(t["matcher"].is_string(), "{t}");
    let s = fm_json(
        &[
            "sample",
            "--model",
            "fm.safetensors",
            "--n",
            "50",
            "--steps",
            "5",
            "--out",
            "s.csv",
        ],
        d,
    );
    assert!(
        s.get("kind").is_none() && s["nfe"].as_u64().unwrap() > 0,
        "{s}"
    );
}

/// Width and height of a PNG from its IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).expect("read png");
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    assert_eq!(&b[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

#[test]
fn plot_density_and_samples_draw_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fm_model = [
        "train",
        "--target",
        "moons",
        "--steps",
        "5",
        "--batch",
        "32",
        "--hidden",
        "8",
        "--out",
        "fm.safetensors",
        "--quiet",
    ];
    fm_json(&fm_model, d);
    let mut models = vec![("fm.safetensors".to_string(), "flow matching")];
    for kind in KINDS {
        let model = format!("{kind}.safetensors");
        fm_json(&train_args(kind, "10", &model), d);
        models.push((model, kind));
    }
    for (model, kind) in &models {
        let png = format!("{model}.density.png");
        let j = fm_json(
            &[
                "plot", "density", "--model", model, "--grid", "24", "--range", "-8,8", "--values",
                "grid.csv", "--out", &png,
            ],
            d,
        );
        assert_eq!(png_size(&d.join(&png)), (800, 800), "{kind}");
        assert!(j["model_kind"].as_str().unwrap().contains(kind), "{j}");
        assert_eq!(j["non_finite"], 0, "{j}");
        // Barely trained models are close to N(0, I): nearly all their mass is in [−8, 8]²
        // (the midpoint rule on 24² cells of width 2/3 is within a few % for such a density).
        let mass = j["mass_in_window"].as_f64().unwrap();
        assert!((mass - 1.0).abs() < 0.05, "{kind}: mass {mass}");
        // The grid values are the cell centres and their log-densities, whose maximum the
        // report names.
        let rows = read_csv(&d.join("grid.csv"));
        assert_eq!(rows.len(), 24 * 24);
        assert!(
            (rows[0][0] + 8.0 - 8.0 / 24.0).abs() < 1e-12,
            "{:?}",
            rows[0]
        );
        let max = rows.iter().map(|r| r[2]).fold(f64::NEG_INFINITY, f64::max);
        assert!((max - j["max_log_p"].as_f64().unwrap()).abs() < 1e-9);

        // `fm plot samples --model` dispatches on the kind too.
        let png = format!("{model}.samples.png");
        fm_json(
            &[
                "plot", "samples", "--model", model, "--n", "200", "--target", "moons", "--out",
                &png,
            ],
            d,
        );
        assert_eq!(png_size(&d.join(&png)), (800, 800), "{kind}");
    }
    // The coupling flow's grid values agree with `fm likelihood` at the same points.
    fm_json(
        &[
            "plot",
            "density",
            "--model",
            "coupling.safetensors",
            "--grid",
            "6",
            "--range",
            "-2,1,0,3",
            "--values",
            "g6.csv",
            "--out",
            "g6.png",
        ],
        d,
    );
    let rows = read_csv(&d.join("g6.csv"));
    let pts: String = std::iter::once("x0,x1".to_string())
        .chain(rows.iter().map(|r| format!("{},{}", r[0], r[1])))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(d.join("pts.csv"), pts + "\n").unwrap();
    fm_json(
        &[
            "likelihood",
            "--model",
            "coupling.safetensors",
            "--data",
            "pts.csv",
            "--n",
            "36",
            "--out",
            "lp.csv",
        ],
        d,
    );
    let lp = read_csv(&d.join("lp.csv"));
    for (r, l) in rows.iter().zip(&lp) {
        assert!((r[2] - l[0]).abs() < 1e-9, "{} vs {}", r[2], l[0]);
    }
}

#[test]
fn plot_density_refuses_bad_inputs_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut three_d = train_args("coupling", "2", "c3.safetensors");
    let at = three_d.iter().position(|a| *a == "moons").unwrap();
    three_d[at] = "gaussian:dim=3";
    fm_json(&three_d, d);
    fm_json(&train_args("coupling", "2", "c.safetensors"), d);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "plot",
                "density",
                "--model",
                "c3.safetensors",
                "--out",
                "p.png",
            ],
            "3-dimensional",
        ),
        (
            vec![
                "plot",
                "density",
                "--model",
                "missing.safetensors",
                "--out",
                "p.png",
            ],
            "missing.safetensors",
        ),
        (
            vec![
                "plot",
                "density",
                "--model",
                "c.safetensors",
                "--range",
                "3,-3",
                "--out",
                "p.png",
            ],
            "--range 3,-3",
        ),
        (
            vec![
                "plot",
                "density",
                "--model",
                "c.safetensors",
                "--grid",
                "1",
                "--out",
                "p.png",
            ],
            "--grid",
        ),
        (
            vec![
                "plot",
                "density",
                "--model",
                "c.safetensors",
                "--out",
                "p.jpg",
            ],
            "png",
        ),
        (
            vec![
                "plot",
                "density",
                "--model",
                "c.safetensors",
                "--rtol",
                "1e-6",
                "--out",
                "p.png",
            ],
            "--rtol",
        ),
        (
            vec![
                "plot",
                "trajectories",
                "--model",
                "c.safetensors",
                "--out",
                "p.png",
            ],
            "coupling",
        ),
        (
            vec!["plot", "loss", "--model", "c.safetensors", "--out", "p.png"],
            "loss history",
        ),
    ];
    for (args, needle) in cases {
        let out = fm(&args, d);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: `{needle}` not in {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            !d.join("p.png").exists() && !d.join("p.jpg").exists(),
            "{args:?}"
        );
    }
}

#[test]
fn cnf_evaluation_and_divergence_flags() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = |extra: &[&'static str]| {
        let mut a = vec![
            "train",
            "--model",
            "cnf-mle",
            "--target",
            "moons",
            "--steps",
            "3",
            "--batch",
            "16",
            "--hidden",
            "8",
            "--solver-steps",
            "2",
            "--out",
            "m.safetensors",
        ];
        a.extend_from_slice(extra);
        a
    };
    for (extra, needle) in [
        (&["--eval-solver", "fixed", "--rtol", "1e-3"][..], "--rtol"),
        (&["--eval-solver", "rk45"][..], "--eval-solver rk45"),
        (
            &["--eval-solver", "dopri5", "--eval-steps", "9"][..],
            "--eval-steps",
        ),
        (
            &["--divergence", "hutchinson:0"][..],
            "--divergence hutchinson:0",
        ),
        (&["--rtol", "-1"][..], "rtol"),
    ] {
        let out = fm(&base(extra), d);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: `{needle}` not in {err}");
        assert!(!d.join("m.safetensors").exists());
    }
    for (kind, flag) in [("coupling", "--rtol"), ("residual", "--divergence")] {
        let mut a = train_args(kind, "2", "m.safetensors");
        a.extend([flag, "1e-3"]);
        let out = fm(&a, d);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(flag) && err.contains(kind), "{err}");
    }
    // Hutchinson training runs; the model evaluates by dopri5 by default, and the likelihood
    // flags choose the solver at evaluation time: dopri5 at tight tolerances agrees with a
    // fine RK4 solve.
    fm_json(&base(&["--divergence", "hutchinson:2,gaussian"]), d);
    let ll = |extra: &[&str]| {
        let mut a = vec![
            "likelihood",
            "--model",
            "m.safetensors",
            "--data",
            "moons",
            "--n",
            "50",
        ];
        a.extend_from_slice(extra);
        fm_json(&a, d)["mean_log_likelihood"].as_f64().unwrap()
    };
    let default = ll(&[]);
    let tight = ll(&["--rtol", "1e-9", "--atol", "1e-9"]);
    let rk4 = ll(&["--solver", "rk4", "--steps", "400"]);
    let coarse = ll(&["--solver", "euler", "--steps", "1"]);
    assert!((tight - rk4).abs() < 1e-7, "{tight} vs {rk4}");
    assert!((default - tight).abs() < 1e-3, "{default} vs {tight}");
    assert!((coarse - tight).abs() > 1e-6, "{coarse} vs {tight}");
    let out = fm(
        &[
            "likelihood",
            "--model",
            "m.safetensors",
            "--data",
            "moons",
            "--solver",
            "dopri5",
            "--steps",
            "5",
        ],
        d,
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--checkpoint-every` then `--resume` to a larger total gives the bytes of an
/// uninterrupted run, for a CNF trained with Hutchinson probes (the RNG's position matters).
#[test]
fn flow_training_resumes_from_its_checkpoint_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let args = |steps: &'static str, extra: &[&'static str]| {
        let mut a = vec![
            "train",
            "--model",
            "cnf-mle",
            "--target",
            "moons",
            "--batch",
            "16",
            "--hidden",
            "8",
            "--solver-steps",
            "2",
            "--divergence",
            "hutchinson",
            "--seed",
            "4",
            "--steps",
            steps,
            "--out",
            "m.safetensors",
        ];
        a.extend_from_slice(extra);
        a
    };
    let j = fm_json(&args("10", &["--checkpoint-every", "5"]), dir.path());
    assert_eq!(j["checkpoints_written"], 2, "{j}");
    assert!(dir.path().join("m.safetensors.ckpt").is_file());
    let j = fm_json(&args("16", &["--resume"]), dir.path());
    assert_eq!(
        (j["start_step"].as_u64(), j["steps_run"].as_u64()),
        (Some(10), Some(6)),
        "{j}"
    );
    fm_json(&args("16", &[]), other.path());
    assert_eq!(
        std::fs::read(dir.path().join("m.safetensors")).unwrap(),
        std::fs::read(other.path().join("m.safetensors")).unwrap(),
        "the resumed model differs from the uninterrupted one"
    );
    // Other flags than --steps are refused on resume (exit 2), as is a missing checkpoint.
    let out = fm(&args("16", &["--resume", "--lr", "0.01"]), dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("training settings"), "{err}");
    let out = fm(
        &args("16", &["--resume", "--checkpoint", "none.ckpt"]),
        dir.path(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("none.ckpt"), "{err}");
    // The checkpoint given as a model says what it is.
    let out = fm(
        &["sample", "--model", "m.safetensors.ckpt", "--out", "s.csv"],
        dir.path(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("training checkpoint") && err.contains("--resume"),
        "{err}"
    );
}

/// Ctrl-C (SIGINT) during `fm train --model coupling` writes the checkpoint and the model so
/// far and exits with 130; resuming to a later total gives the bytes of an uninterrupted run.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_flow_training_and_the_resumed_run_is_bit_identical() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = [
        "train",
        "--model",
        "coupling",
        "--target",
        "moons",
        "--batch",
        "32",
        "--hidden",
        "16",
        "--layers",
        "4",
        "--seed",
        "7",
        "--log-every",
        "5",
    ];
    let mut args = base.to_vec();
    args.extend(["--steps", "100000000"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_fm"))
        .args(&args)
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(first.contains("Ctrl-C"), "{first}");
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("fm did not exit within 120 s of the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!(status.code(), Some(130), "{first}{rest}");
    assert!(
        rest.contains("interrupted after step") && rest.contains("--resume"),
        "{rest}"
    );
    let step: usize = rest
        .split("interrupted after step ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("the step");
    assert!(d.join("model.safetensors").is_file(), "{rest}");
    assert!(d.join("model.safetensors.ckpt").is_file(), "{rest}");
    let names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    let total = (step + 25).to_string();
    let mut resume = base.to_vec();
    resume.extend(["--steps", &total, "--resume", "--quiet"]);
    let o = fm(&resume, d);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let other = tempfile::tempdir().unwrap();
    let mut full = base.to_vec();
    full.extend(["--steps", &total, "--quiet"]);
    let o = fm(&full, other.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(d.join("model.safetensors")).unwrap(),
        std::fs::read(other.path().join("model.safetensors")).unwrap(),
        "the resumed model differs from the uninterrupted one (interrupted at step {step})"
    );
}
