//! `fm simulate` and `fm c2st` through the real binary: the happy paths with values checked
//! against closed forms, and bad inputs (exit code 2, an `error:` line naming the fix).

use flow_matching::data::read_points;
use std::path::Path;
use std::process::{Command, Output};

fn fm(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fm"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run fm")
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "fm failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn simulate_writes_pairs_of_the_task_dimensions_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (seed, suffix) in [("3", "a"), ("3", "b"), ("4", "c")] {
        let (th, x) = (format!("theta_{suffix}.npy"), format!("x_{suffix}.csv"));
        let o = fm(
            &[
                "simulate",
                "--task",
                "slcp",
                "--n",
                "40",
                "--seed",
                seed,
                "--out-theta",
                &th,
                "--out-x",
                &x,
            ],
            d,
        );
        ok(&o);
    }
    let theta = read_points(d.join("theta_a.npy")).unwrap();
    let x = read_points(d.join("x_a.csv")).unwrap();
    assert_eq!((theta.dim(), x.dim()), ((40, 5), (40, 8)));
    assert!(
        theta.iter().all(|t| t.abs() <= 3.0),
        "slcp's prior is U([-3, 3]^5)"
    );
    assert_eq!(theta, read_points(d.join("theta_b.npy")).unwrap());
    assert_eq!(x, read_points(d.join("x_b.csv")).unwrap());
    assert_ne!(theta, read_points(d.join("theta_c.npy")).unwrap());
}

#[test]
fn reference_posterior_of_gaussian_linear_has_the_closed_form_mean() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = fm(
        &[
            "--json",
            "simulate",
            "--task",
            "gaussian_linear",
            "--reference",
            "--observation",
            "2",
            "--n",
            "4000",
            "--out",
            "post.csv",
        ],
        d,
    );
    ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["observation"], 2);
    let post = read_points(d.join("post.csv")).unwrap();
    use flow_matching::sbi::Task;
    let x = flow_matching::sbi::GaussianLinear.observation(2).unwrap();
    // The report carries x_obs (for `fm sample --context`), bit for bit.
    let reported: Vec<f64> = report["x_obs"]
        .as_array()
        .expect("x_obs in the report")
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(reported, x.to_vec());
    // Posterior N(x / 2, 0.05 I): the sample mean is within 4 standard errors.
    let se = (0.05f64 / 4000.0).sqrt();
    for (j, m) in post.mean_axis(ndarray::Axis(0)).unwrap().iter().enumerate() {
        assert!(
            (m - x[j] / 2.0).abs() < 4.0 * se,
            "column {j}: {m} vs {}",
            x[j] / 2.0
        );
    }
}

#[test]
fn c2st_tells_prior_from_posterior_but_not_posterior_from_itself() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (seed, out) in [("1", "p1.csv"), ("2", "p2.csv")] {
        ok(&fm(
            &[
                "simulate",
                "--task",
                "two_moons",
                "--reference",
                "--observation",
                "1",
                "--n",
                "300",
                "--seed",
                seed,
                "--out",
                out,
            ],
            d,
        ));
    }
    ok(&fm(
        &[
            "simulate",
            "--task",
            "two_moons",
            "--n",
            "300",
            "--out-theta",
            "prior.csv",
            "--out-x",
            "x.csv",
        ],
        d,
    ));
    let acc = |a: &str, b: &str| {
        let o = fm(
            &["--json", "c2st", "--a", a, "--b", b, "--max-epochs", "60"],
            d,
        );
        ok(&o);
        let s = String::from_utf8_lossy(&o.stdout);
        let v: serde_json::Value = serde_json::from_str(s.lines().last().unwrap()).unwrap();
        v["c2st"].as_f64().unwrap()
    };
    let same = acc("p1.csv", "p2.csv");
    // 4σ of a guessing classifier's accuracy over 600 points.
    assert!(
        (same - 0.5).abs() < 4.0 * (0.25f64 / 600.0).sqrt(),
        "{same}"
    );
    let apart = acc("p1.csv", "prior.csv");
    // Far above the 0.5 ± 0.02 of the line above (60 epochs on 480 points stop short of the
    // Bayes accuracy, so no tighter bound is claimed).
    assert!(apart > 0.8, "{apart}");
}

#[test]
fn bad_inputs_exit_with_2_and_name_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("two.csv"), "a,b\n1,2\n3,4\n5,6\n7,8\n9,10\n11,12\n").unwrap();
    std::fs::write(
        d.join("three.csv"),
        "a,b,c\n1,2,3\n3,4,5\n5,6,7\n7,8,9\n9,10,11\n",
    )
    .unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[
                "simulate",
                "--task",
                "three_moons",
                "--out-theta",
                "t.csv",
                "--out-x",
                "x.csv",
            ],
            &[
                "three_moons",
                "two_moons",
                "gaussian_linear",
                "slcp",
                "gaussian_mixture",
            ],
        ),
        (
            &[
                "simulate",
                "--task",
                "slcp",
                "--reference",
                "--observation",
                "4",
                "--out",
                "p.csv",
            ],
            &["observation 4", "1..=3"],
        ),
        (
            &[
                "simulate",
                "--task",
                "slcp",
                "--reference",
                "--observation",
                "0",
                "--out",
                "p.csv",
            ],
            &["observation 0"],
        ),
        (
            &[
                "simulate",
                "--task",
                "two_moons",
                "--n",
                "0",
                "--out-theta",
                "t.csv",
                "--out-x",
                "x.csv",
            ],
            &["--n 0", "between 1"],
        ),
        (
            &[
                "simulate",
                "--task",
                "two_moons",
                "--n",
                "-5",
                "--out-theta",
                "t.csv",
                "--out-x",
                "x.csv",
            ],
            &["--n -5"],
        ),
        (
            &[
                "simulate",
                "--task",
                "two_moons",
                "--reference",
                "--out",
                "p.csv",
            ],
            &["--observation"],
        ),
        (
            &["simulate", "--task", "two_moons"],
            &["--out-theta", "--out-x"],
        ),
        (
            &[
                "simulate",
                "--task",
                "two_moons",
                "--out-theta",
                "no/such/t.csv",
                "--out-x",
                "x.csv",
            ],
            &["does not exist"],
        ),
        (
            &["c2st", "--a", "two.csv", "--b", "three.csv"],
            &["second c2st sample", "2 columns"],
        ),
        (
            &["c2st", "--a", "two.csv", "--b", "missing.csv"],
            &["missing.csv"],
        ),
    ];
    for (args, needles) in cases {
        let o = fm(args, d);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or("");
        for n in *needles {
            assert!(line.contains(n), "{args:?}: `{line}` lacks `{n}`");
        }
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(!d.join("t.csv").exists() && !d.join("p.csv").exists());
}

/// Rows of a two_moons θ sample inside its prior box [-1, 1]^2.
fn inside_first(x: &ndarray::Array2<f64>) -> usize {
    x.rows()
        .into_iter()
        .filter(|r| r.iter().all(|v| v.abs() <= 1.0))
        .count()
}

/// `fm sample --prior-task`: every kept sample lies in the task's prior box; the kept samples
/// begin with the in-support rows of the plain draw of the same seed, in order (the first
/// round is that draw); the same seed gives the same bytes; the JSON's acceptance is n over
/// the draws made. Bad uses exit 2 naming the fix, and a posterior that lies wholly outside
/// the prior stops with an error instead of drawing forever.
#[test]
fn sample_prior_task_keeps_only_draws_inside_the_prior() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = [
        "simulate",
        "--task",
        "two_moons",
        "--n",
        "2000",
        "--seed",
        "1",
        "--out-theta",
        "th.csv",
        "--out-x",
        "x.csv",
    ];
    ok(&fm(&sim, d));
    let train = |target: &str, out: &str| {
        ok(&fm(
            &[
                "train",
                "--target",
                target,
                "--context",
                "x.csv",
                "--matcher",
                "icfm",
                "--hidden",
                "32,32",
                "--steps",
                "150",
                "--batch",
                "128",
                "--quiet",
                "--out",
                out,
            ],
            d,
        ))
    };
    train("th.csv", "m.safetensors");
    let sample = |extra: &[&str], out: &str| {
        let mut a = vec![
            "sample",
            "--model",
            "m.safetensors",
            "--context",
            "0.1,-0.2",
            "--n",
            "3000",
            "--solver",
            "midpoint",
            "--steps",
            "10",
            "--seed",
            "5",
            "--json",
            "--out",
            out,
        ];
        a.extend(extra);
        fm(&a, d)
    };
    ok(&sample(&[], "plain.csv"));
    let o = sample(&["--prior-task", "two_moons"], "kept.csv");
    ok(&o);
    ok(&sample(&["--prior-task", "two_moons"], "kept2.csv"));
    let plain = read_points(d.join("plain.csv")).unwrap();
    let kept = read_points(d.join("kept.csv")).unwrap();
    assert_eq!(kept.dim(), (3000, 2));
    assert!(
        kept.iter().all(|v| v.abs() <= 1.0),
        "two_moons' prior is U([-1, 1]^2)"
    );
    let inside: Vec<_> = plain
        .rows()
        .into_iter()
        .filter(|r| r.iter().all(|v| v.abs() <= 1.0))
        .collect();
    assert!(
        inside.len() < 3000,
        "an undertrained model should leak outside the prior; the test needs some rejections"
    );
    for (i, r) in inside.iter().enumerate() {
        assert_eq!(*r, kept.row(i), "row {i}");
    }
    assert_eq!(
        std::fs::read(d.join("kept.csv")).unwrap(),
        std::fs::read(d.join("kept2.csv")).unwrap()
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let j: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let (drawn, inside) = (j["drawn"].as_u64().unwrap(), j["inside"].as_u64().unwrap());
    assert!(drawn > 3000 && (3000..=drawn).contains(&inside), "{j}");
    assert!((j["acceptance"].as_f64().unwrap() - inside as f64 / drawn as f64).abs() < 1e-12);
    // The first round is the plain draw: its in-support rows are among `inside`.
    assert!(inside as usize >= inside_first(&plain));

    let bad = |o: Output, needles: &[&str]| {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        for n in needles {
            assert!(err.contains(n), "`{n}` missing from: {err}");
        }
    };
    bad(
        sample(&["--prior-task", "moons"], "e.csv"),
        &["--prior-task", "two_moons"],
    );
    bad(
        sample(&["--prior-task", "gaussian_linear"], "e.csv"),
        &["--prior-task gaussian_linear", "10 dimensions"],
    );
    // θ far outside [-1, 1]^2: no draw is ever accepted.
    let far: Vec<String> = std::fs::read_to_string(d.join("th.csv"))
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                l.to_string()
            } else {
                l.split(',')
                    .map(|v| (v.parse::<f64>().unwrap() + 20.0).to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            }
        })
        .collect();
    std::fs::write(d.join("far.csv"), far.join("\n") + "\n").unwrap();
    train("far.csv", "far.safetensors");
    let o = fm(
        &[
            "sample",
            "--model",
            "far.safetensors",
            "--context",
            "0.1,-0.2",
            "--n",
            "20",
            "--solver",
            "euler",
            "--steps",
            "4",
            "--prior-task",
            "two_moons",
            "--out",
            "e.csv",
        ],
        d,
    );
    bad(o, &["acceptance", "outside the prior"]);
    assert!(!d.join("e.csv").exists());
}
