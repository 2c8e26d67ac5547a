//! Conditional flow matching through the `fm` binary: `fm train --context/--context-cols/
//! --label-col`, `fm sample --context/--context-file/--label/--guidance`, `fm likelihood` with
//! contexts, and the bad inputs (exit 2, an `error:` line naming the thing and the fix).

use std::path::Path;
use std::process::{Command, Output};

fn fm<S: AsRef<std::ffi::OsStr>>(args: &[S], dir: &Path) -> Output {
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
        "fm failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Exit code 2, no panic, and an `error:` line holding every needle.
fn bad(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    for n in needles {
        assert!(line.contains(n), "`{n}` missing from: {line}");
    }
}

/// Rows of a CSV written by `fm` (header skipped).
fn read_csv(path: &Path) -> Vec<Vec<f64>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect()
}

fn write_csv(path: &Path, header: &str, rows: &[Vec<f64>]) {
    let mut s = format!("{header}\n");
    for r in rows {
        let cells: Vec<String> = r.iter().map(|v| v.to_string()).collect();
        s.push_str(&cells.join(","));
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

/// A small deterministic generator (no RNG crate needed here): uniform in [0, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-300), self.next());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let s = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt();
    (m, s)
}

/// `x | c ~ N(2c, 0.2²)`, `c ~ U(−1, 1)`, written as theta.csv (x), ctx.csv (c) and both.csv
/// (columns `x0,c`).
fn linear_files(dir: &Path, n: usize) {
    let mut g = Lcg(7);
    let (mut x, mut c, mut both) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let ci = 2.0 * g.next() - 1.0;
        let xi = 2.0 * ci + 0.2 * g.normal();
        x.push(vec![xi]);
        c.push(vec![ci]);
        both.push(vec![xi, ci]);
    }
    write_csv(&dir.join("theta.csv"), "x0", &x);
    write_csv(&dir.join("ctx.csv"), "c0", &c);
    write_csv(&dir.join("both.csv"), "x0,c", &both);
}

/// Train with `--context FILE` and with `--context-cols NAME`: samples at c = ±0.5 have mean
/// within 0.15 of 2c and standard deviation below 0.35 (the marginal's is about 1.2); the two
/// ways of giving the context train bit-identical models (same samples).
#[test]
fn continuous_context_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    linear_files(d, 4000);
    let common = [
        "--steps",
        "600",
        "--batch",
        "256",
        "--hidden",
        "32,32",
        "--matcher",
        "icfm",
        "--quiet",
        "--lr",
        "3e-3",
    ];
    let mut a: Vec<&str> = vec![
        "train",
        "--target",
        "theta.csv",
        "--context",
        "ctx.csv",
        "--out",
        "a.safetensors",
    ];
    a.extend(common);
    ok(&fm(&a, d));
    let mut b: Vec<&str> = vec![
        "train",
        "--target",
        "both.csv",
        "--context-cols",
        "c",
        "--out",
        "b.safetensors",
    ];
    b.extend(common);
    ok(&fm(&b, d));
    for (c, name) in [(0.5, "p"), (-0.5, "m")] {
        let cs = c.to_string();
        let out_a = format!("sa_{name}.csv");
        let out_b = format!("sb_{name}.csv");
        ok(&fm(
            &[
                "sample",
                "--model",
                "a.safetensors",
                "--context",
                &cs,
                "--n",
                "1500",
                "--out",
                &out_a,
            ],
            d,
        ));
        ok(&fm(
            &[
                "sample",
                "--model",
                "b.safetensors",
                "--context",
                &cs,
                "--n",
                "1500",
                "--out",
                &out_b,
            ],
            d,
        ));
        let xs: Vec<f64> = read_csv(&d.join(&out_a)).iter().map(|r| r[0]).collect();
        let (m, s) = mean_std(&xs);
        eprintln!(
            "c = {c}: mean {m:.3} (closed form {}), std {s:.3} (closed form 0.2)",
            2.0 * c
        );
        assert!((m - 2.0 * c).abs() < 0.15, "c = {c}: mean {m}");
        assert!(s < 0.35, "c = {c}: std {s}");
        assert_eq!(
            std::fs::read(d.join(&out_a)).unwrap(),
            std::fs::read(d.join(&out_b)).unwrap()
        );
    }
    // One context per row from a file: rows alternate c = ±0.5.
    let rows: Vec<Vec<f64>> = (0..400)
        .map(|i| vec![if i % 2 == 0 { 0.5 } else { -0.5 }])
        .collect();
    write_csv(&d.join("q.csv"), "c0", &rows);
    ok(&fm(
        &[
            "sample",
            "--model",
            "a.safetensors",
            "--context-file",
            "q.csv",
            "--n",
            "400",
            "--out",
            "sq.csv",
        ],
        d,
    ));
    let s = read_csv(&d.join("sq.csv"));
    let even: Vec<f64> = s.iter().step_by(2).map(|r| r[0]).collect();
    let odd: Vec<f64> = s.iter().skip(1).step_by(2).map(|r| r[0]).collect();
    assert!((mean_std(&even).0 - 1.0).abs() < 0.2 && (mean_std(&odd).0 + 1.0).abs() < 0.2);
    // Likelihood: context columns of --data and --context-file give the same numbers.
    ok(&fm(
        &[
            "likelihood",
            "--model",
            "b.safetensors",
            "--data",
            "both.csv",
            "--context-cols",
            "c",
            "--n",
            "4000",
            "--solver",
            "rk4",
            "--steps",
            "40",
            "--out",
            "l1.csv",
        ],
        d,
    ));
    ok(&fm(
        &[
            "likelihood",
            "--model",
            "b.safetensors",
            "--data",
            "theta.csv",
            "--context-file",
            "ctx.csv",
            "--n",
            "4000",
            "--solver",
            "rk4",
            "--steps",
            "40",
            "--out",
            "l2.csv",
        ],
        d,
    ));
    let (l1, l2) = (read_csv(&d.join("l1.csv")), read_csv(&d.join("l2.csv")));
    assert_eq!(l1.len(), 4000);
    assert_eq!(l1, l2);
    let ll: Vec<f64> = l1.iter().map(|r| r[0]).collect();
    let (m, _) = mean_std(&ll);
    // The true conditional log-density averages −½ log(2π 0.2²) − ½ = 0.19 (measured when
    // written: 0.183); the marginal's would be far lower (log N(0, 1.2²) averages −1.6), and a
    // missing −log σ of the z-scoring would shift it by log 1.17 ≈ 0.16.
    eprintln!("mean log p(x | c) = {m:.3} (true conditional 0.19)");
    assert!((m - 0.19).abs() < 0.1, "mean log-likelihood {m}");
}

/// 4 modes on a circle, one label each: `--label k` samples land nearest mode k, `--guidance 1`
/// writes the same bytes as no guidance, and the guidance scale changes the samples.
#[test]
fn label_model_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut g = Lcg(3);
    let modes = [[3.0, 0.0], [0.0, 3.0], [-3.0, 0.0], [0.0, -3.0]];
    let rows: Vec<Vec<f64>> = (0..4000)
        .map(|_| {
            let k = (g.next() * 4.0) as usize;
            vec![
                modes[k][0] + 0.3 * g.normal(),
                modes[k][1] + 0.3 * g.normal(),
                (10 + k) as f64,
            ]
        })
        .collect();
    write_csv(&d.join("lab.csv"), "x,y,cls", &rows);
    ok(&fm(
        &[
            "train",
            "--target",
            "lab.csv",
            "--label-col",
            "cls",
            "--steps",
            "600",
            "--batch",
            "256",
            "--hidden",
            "32,32",
            "--lr",
            "3e-3",
            "--out",
            "m.safetensors",
            "--quiet",
        ],
        d,
    ));
    for k in 0..4 {
        let lab = (10 + k).to_string();
        ok(&fm(
            &[
                "sample",
                "--model",
                "m.safetensors",
                "--label",
                &lab,
                "--n",
                "300",
                "--out",
                "s.csv",
            ],
            d,
        ));
        let hits = read_csv(&d.join("s.csv"))
            .iter()
            .filter(|r| {
                let dist = |m: &[f64; 2]| (r[0] - m[0]).powi(2) + (r[1] - m[1]).powi(2);
                (0..4).all(|j| dist(&modes[k]) <= dist(&modes[j]))
            })
            .count();
        eprintln!("label {lab}: {hits} of 300 nearest to mode {k}");
        assert!(hits >= 270, "label {lab}: {hits} of 300 in its mode");
    }
    ok(&fm(
        &[
            "sample",
            "--model",
            "m.safetensors",
            "--label",
            "11",
            "--n",
            "200",
            "--out",
            "a.csv",
        ],
        d,
    ));
    ok(&fm(
        &[
            "sample",
            "--model",
            "m.safetensors",
            "--label",
            "11",
            "--guidance",
            "1",
            "--n",
            "200",
            "--out",
            "b.csv",
        ],
        d,
    ));
    ok(&fm(
        &[
            "sample",
            "--model",
            "m.safetensors",
            "--label",
            "11",
            "--guidance",
            "0",
            "--n",
            "200",
            "--out",
            "c.csv",
        ],
        d,
    ));
    assert_eq!(
        std::fs::read(d.join("a.csv")).unwrap(),
        std::fs::read(d.join("b.csv")).unwrap()
    );
    assert_ne!(
        std::fs::read(d.join("a.csv")).unwrap(),
        std::fs::read(d.join("c.csv")).unwrap()
    );
    // The unconditional samples (w = 0) spread over the modes: not all nearest mode 1.
    let c = read_csv(&d.join("c.csv"));
    let in_mode_1 = c.iter().filter(|r| r[1] > 1.5 && r[0].abs() < 1.5).count();
    assert!(
        in_mode_1 < 150,
        "{in_mode_1} of 200 unguided samples in mode 1"
    );
    // Likelihood with the label column.
    ok(&fm(
        &[
            "likelihood",
            "--model",
            "m.safetensors",
            "--data",
            "lab.csv",
            "--label-col",
            "cls",
            "--n",
            "100",
        ],
        d,
    ));
}

/// The bad inputs of conditioning: exit 2 and an error naming the thing and the fix.
#[test]
fn bad_conditional_inputs_exit_2_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    linear_files(d, 200);
    let short: Vec<Vec<f64>> = (0..150).map(|i| vec![i as f64]).collect();
    write_csv(&d.join("short.csv"), "c0", &short);
    let frac: Vec<Vec<f64>> = (0..200)
        .map(|i| vec![i as f64, 0.5 * (i % 3) as f64])
        .collect();
    write_csv(&d.join("frac.csv"), "x0,cls", &frac);
    let tr = |extra: &[&str]| {
        let mut a = vec![
            "train", "--steps", "3", "--batch", "16", "--hidden", "4", "--quiet",
        ];
        a.extend(extra);
        fm(&a, d)
    };
    bad(
        &tr(&[
            "--target",
            "theta.csv",
            "--context",
            "short.csv",
            "--out",
            "x.safetensors",
        ]),
        &["150 rows", "200", "one context row per target row"],
    );
    bad(
        &tr(&[
            "--target",
            "both.csv",
            "--context-cols",
            "nope",
            "--out",
            "x.safetensors",
        ]),
        &["--context-cols", "no column named `nope`", "x0,c"],
    );
    bad(
        &tr(&[
            "--target",
            "both.csv",
            "--context-cols",
            "5",
            "--out",
            "x.safetensors",
        ]),
        &["column 5 does not exist", "2 columns"],
    );
    bad(
        &tr(&[
            "--target",
            "both.csv",
            "--context-cols",
            "x0,c",
            "--out",
            "x.safetensors",
        ]),
        &["leaves no data"],
    );
    bad(
        &tr(&[
            "--target",
            "frac.csv",
            "--label-col",
            "cls",
            "--out",
            "x.safetensors",
        ]),
        &["--label-col cls", "row 1", "0.5", "integer"],
    );
    bad(
        &tr(&[
            "--target",
            "moons",
            "--context",
            "ctx.csv",
            "--out",
            "x.safetensors",
        ]),
        &["--target", "file"],
    );
    bad(
        &tr(&[
            "--target",
            "theta.csv",
            "--label-dropout",
            "0.2",
            "--out",
            "x.safetensors",
        ]),
        &["--label-dropout", "conditional training only"],
    );
    bad(
        &tr(&[
            "--target",
            "theta.csv",
            "--context",
            "ctx.csv",
            "--label-dropout",
            "0.2",
            "--out",
            "x.safetensors",
        ]),
        &["--label-dropout", "label models"],
    );
    bad(
        &tr(&[
            "--model",
            "coupling",
            "--target",
            "theta.csv",
            "--context",
            "ctx.csv",
            "--out",
            "x.safetensors",
        ]),
        &["--context", "--model coupling"],
    );
    bad(
        &tr(&[
            "--target",
            "theta.csv",
            "--context",
            "ctx.csv",
            "--matcher",
            "sbcfm",
            "--coupling",
            "sinkhorn",
            "--out",
            "x.safetensors",
        ]),
        &["coupling", "icfm or otcfm"],
    );

    // Models to query: conditional (continuous), label, unconditional.
    ok(&tr(&[
        "--target",
        "theta.csv",
        "--context",
        "ctx.csv",
        "--out",
        "c.safetensors",
    ]));
    let labs: Vec<Vec<f64>> = (0..200)
        .map(|i| vec![i as f64 / 50.0, (i % 3) as f64])
        .collect();
    write_csv(&d.join("lab.csv"), "x0,cls", &labs);
    ok(&tr(&[
        "--target",
        "lab.csv",
        "--label-col",
        "1",
        "--out",
        "l.safetensors",
    ]));
    ok(&tr(&["--target", "theta.csv", "--out", "u.safetensors"]));
    let sm = |extra: &[&str]| {
        let mut a = vec!["sample", "--n", "5", "--out", "o.csv"];
        a.extend(extra);
        fm(&a, d)
    };
    bad(
        &sm(&["--model", "c.safetensors"]),
        &["c.safetensors", "conditional", "--context"],
    );
    bad(
        &sm(&["--model", "c.safetensors", "--context", "1,2"]),
        &["2 values", "exactly 1"],
    );
    bad(
        &sm(&["--model", "c.safetensors", "--context", "abc"]),
        &["--context", "comma-separated numbers"],
    );
    bad(
        &sm(&[
            "--model",
            "c.safetensors",
            "--context",
            "0.5",
            "--guidance",
            "2",
        ]),
        &["--guidance", "label model"],
    );
    bad(
        &sm(&["--model", "c.safetensors", "--label", "1"]),
        &["continuous contexts"],
    );
    bad(
        &sm(&["--model", "l.safetensors"]),
        &["label model", "--label"],
    );
    bad(
        &sm(&["--model", "l.safetensors", "--label", "7"]),
        &["label", "7", "[0, 1, 2]"],
    );
    bad(
        &sm(&["--model", "l.safetensors", "--label", "1.5"]),
        &["--label", "not an integer"],
    );
    bad(
        &sm(&["--model", "u.safetensors", "--context", "0.5"]),
        &["unconditional", "drop --context"],
    );
    bad(
        &sm(&["--model", "u.safetensors", "--guidance", "2"]),
        &["--guidance", "label model", "unconditional"],
    );
    bad(
        &sm(&["--model", "c.safetensors", "--context-file", "short.csv"]),
        &["150 rows", "one per point"],
    );
    bad(
        &fm(
            &[
                "likelihood",
                "--model",
                "c.safetensors",
                "--data",
                "theta.csv",
            ],
            d,
        ),
        &["conditional", "--context"],
    );
    bad(
        &fm(
            &[
                "likelihood",
                "--model",
                "u.safetensors",
                "--data",
                "theta.csv",
                "--context",
                "1",
            ],
            d,
        ),
        &["unconditional"],
    );
    bad(
        &fm(
            &[
                "likelihood",
                "--model",
                "c.safetensors",
                "--data",
                "both.csv",
                "--context",
                "1",
            ],
            d,
        ),
        &["x has 2 columns", "--context-cols"],
    );
}
