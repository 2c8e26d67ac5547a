//! Evaluation fidelity (issue 20): dense-output trajectories, independent subsamples in `eval`,
//! subsampled files in `likelihood`, `--threads` / `--no-ema` on the sampling commands, and
//! TorchCFM's exact-with-replacement pairing.

use std::path::Path;
use std::process::{Command, Output};

fn fm(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fm"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run fm")
}

fn ok_json(o: &Output) -> serde_json::Value {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().last().expect("stdout has lines");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {line}"))
}

/// A small model trained with EMA on moons, and a CSV file of 600 moons-like points.
fn setup(d: &Path) {
    ok_json(&fm(
        &[
            "train",
            "--target",
            "moons",
            "--matcher",
            "icfm",
            "--sigma",
            "0.1",
            "--steps",
            "60",
            "--batch",
            "64",
            "--hidden",
            "16,16",
            "--quiet",
            "--out",
            "m.safetensors",
            "--json",
        ],
        d,
    ));
    ok_json(&fm(
        &[
            "sample",
            "--model",
            "m.safetensors",
            "--n",
            "600",
            "--out",
            "data.csv",
            "--json",
        ],
        d,
    ));
}

#[test]
fn sampling_commands_report_fidelity_and_take_threads_and_no_ema() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);

    // dopri5 with and without a trajectory: the same samples, byte for byte.
    let base = [
        "sample",
        "--model",
        "m.safetensors",
        "--n",
        "50",
        "--solver",
        "dopri5",
        "--json",
    ];
    let a = ok_json(&fm(&[&base[..], &["--out", "a.csv"]].concat(), d));
    let b = ok_json(&fm(
        &[&base[..], &["--out", "b.csv", "--trajectory", "tr.csv"]].concat(),
        d,
    ));
    assert_eq!(a["nfe"], b["nfe"]);
    let (sa, sb) = (
        std::fs::read(d.join("a.csv")).unwrap(),
        std::fs::read(d.join("b.csv")).unwrap(),
    );
    assert_eq!(sa, sb, "the trajectory changed the samples");
    let traj = std::fs::read_to_string(d.join("tr.csv")).unwrap();
    // A header line, then 21 blocks of 50 rows.
    let lines: Vec<&str> = traj.lines().collect();
    assert!(lines[0].starts_with("x0"), "{}", lines[0]);
    assert_eq!(lines.len() - 1, 21 * 50);

    // eval of a file against itself, subsampled: independent subsamples, so W2 > 0.
    let e = ok_json(&fm(
        &[
            "eval",
            "--samples",
            "data.csv",
            "--target",
            "data.csv",
            "--n",
            "200",
            "--json",
        ],
        d,
    ));
    assert!(e["w2"].as_f64().unwrap() > 1e-3, "{e}");
    assert_eq!(e["n"], 200);
    // Whole files (n ≥ rows) are still compared whole: X against itself is 0.
    let e = ok_json(&fm(
        &[
            "eval",
            "--samples",
            "data.csv",
            "--target",
            "data.csv",
            "--n",
            "600",
            "--json",
        ],
        d,
    ));
    assert!(e["w2"].as_f64().unwrap() < 1e-9, "{e}");

    // likelihood --n subsamples a file (seeded) and says so.
    let lik = |extra: &[&str]| {
        ok_json(&fm(
            &[
                &[
                    "likelihood",
                    "--model",
                    "m.safetensors",
                    "--data",
                    "data.csv",
                    "--solver",
                    "euler",
                    "--steps",
                    "10",
                    "--json",
                ][..],
                extra,
            ]
            .concat(),
            d,
        ))
    };
    let l1 = lik(&["--n", "40"]);
    assert_eq!(l1["n"], 40);
    assert_eq!(l1["subsampled"], true);
    assert_eq!(l1["rows_in_file"], 600);
    assert_eq!(l1["ema"], true);
    let l2 = lik(&["--n", "40", "--threads", "2"]);
    assert_eq!(l1["mean_log_likelihood"], l2["mean_log_likelihood"]);
    let l3 = lik(&["--n", "40", "--seed", "7"]);
    assert_ne!(l1["mean_log_likelihood"], l3["mean_log_likelihood"]);
    let whole = lik(&["--n", "5000"]);
    assert_eq!(whole["n"], 600);
    assert_eq!(whole["subsampled"], false);
    let raw = lik(&["--n", "40", "--no-ema"]);
    assert_eq!(raw["ema"], false);
    assert_ne!(raw["mean_log_likelihood"], l1["mean_log_likelihood"]);

    // eval --model --no-ema uses the raw weights; --threads does not change a bit.
    let ev = |extra: &[&str]| {
        ok_json(&fm(
            &[
                &[
                    "eval",
                    "--model",
                    "m.safetensors",
                    "--target",
                    "moons",
                    "--n",
                    "100",
                    "--json",
                ][..],
                extra,
            ]
            .concat(),
            d,
        ))
    };
    let e1 = ev(&["--threads", "1"]);
    let e2 = ev(&["--threads", "2"]);
    assert_eq!(e1["w2"], e2["w2"]);
    assert_ne!(ev(&["--no-ema"])["w2"], e1["w2"]);
    let s1 = ok_json(&fm(
        &[&base[..], &["--out", "c.csv", "--threads", "2"]].concat(),
        d,
    ));
    assert_eq!(s1["nfe"], a["nfe"]);
    assert_eq!(std::fs::read(d.join("c.csv")).unwrap(), sa);
}

#[test]
fn exact_with_replacement_coupling_trains_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let train = |coupling: &str, out: &str| {
        ok_json(&fm(
            &[
                "train",
                "--target",
                "moons",
                "--matcher",
                "otcfm",
                "--sigma",
                "0.1",
                "--coupling",
                coupling,
                "--steps",
                "20",
                "--batch",
                "32",
                "--hidden",
                "8",
                "--quiet",
                "--out",
                out,
                "--json",
            ],
            d,
        ))
    };
    let a = train("exact-with-replacement", "a.safetensors");
    let b = train("exact", "b.safetensors");
    assert!(a["final_loss"].as_f64().unwrap().is_finite());
    assert_ne!(
        a["final_loss"], b["final_loss"],
        "the pairing made no difference"
    );
    let o = fm(
        &[
            "train",
            "--target",
            "moons",
            "--coupling",
            "exact-replace",
            "--steps",
            "2",
            "--out",
            "c.safetensors",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("exact-with-replacement"));
}
