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
