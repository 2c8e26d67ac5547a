//! The `fm` binary end to end: a small training run through every command, and bad input
//! giving exit code 2 with an `error:` line naming the problem (never a panic).

use std::path::Path;
use std::process::{Command, Output};

fn fm(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fm"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run fm")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn last_json(o: &Output) -> serde_json::Value {
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().last().expect("stdout has lines");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {line}"))
}

/// Exit code `code`, an `error:` line on stderr containing every `needle`, no panic.
fn assert_fails(o: &Output, code: i32, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(
        err.starts_with("error: ") || err.contains("\nerror: ") || err.starts_with("error:"),
        "{err}"
    );
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
    assert!(
        !err.contains("panicked") && !err.contains("backtrace") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

#[test]
fn help_on_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        "train",
        "sample",
        "encode",
        "field",
        "eval",
        "likelihood",
        "plot",
        "demo",
        "datasets",
    ] {
        let o = fm(&[cmd, "--help"], dir.path());
        assert_eq!(o.status.code(), Some(0), "{cmd}: {}", stderr(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Usage"),
            "{cmd}"
        );
    }
}

#[test]
fn train_sample_eval_likelihood_plot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = fm(
        &[
            "train",
            "--target",
            "moons",
            "--matcher",
            "otcfm",
            "--sigma",
            "0.1",
            "--steps",
            "60",
            "--batch",
            "64",
            "--hidden",
            "16,16",
            "--ema",
            "0.9",
            "--out",
            "m.safetensors",
            "--json",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = last_json(&o);
    assert_eq!(j["steps"], 60);
    assert!(j["wall_seconds"].as_f64().unwrap() > 0.0);
    assert!(j["steps_per_second"].as_f64().unwrap() > 0.0);
    assert!(j["final_loss"].as_f64().unwrap().is_finite());

    let o = fm(
        &[
            "sample",
            "--model",
            "m.safetensors",
            "--n",
            "200",
            "--out",
            "s.csv",
            "--trajectory",
            "traj.csv",
            "--json",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(last_json(&o)["nfe"], 100);
    assert!(d.join("s.csv").exists() && d.join("traj.csv").exists());

    let o = fm(
        &[
            "sample",
            "--model",
            "m.safetensors",
            "--n",
            "50",
            "--solver",
            "dopri5",
            "--rtol",
            "1e-4",
            "--atol",
            "1e-4",
            "--out",
            "s2.npy",
            "--json",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let o = fm(
        &[
            "eval",
            "--samples",
            "s.csv",
            "--target",
            "moons",
            "--n",
            "200",
            "--json",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let w = last_json(&o)["w2"].as_f64().unwrap();
    assert!(w > 0.0 && w < 5.0, "{w}");

    let o = fm(
        &[
            "eval",
            "--model",
            "m.safetensors",
            "--target",
            "moons",
            "--n",
            "200",
            "--json",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = last_json(&o);
    for k in ["w2", "mmd", "path_energy", "npe", "nfe"] {
        assert!(j[k].is_number(), "{k}: {j}");
    }

    let o = fm(
        &[
            "likelihood",
            "--model",
            "m.safetensors",
            "--data",
            "moons",
            "--n",
            "50",
            "--out",
            "ll.csv",
            "--json",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        last_json(&o)["mean_log_likelihood"]
            .as_f64()
            .unwrap()
            .is_finite()
    );

    for args in [
        vec![
            "plot",
            "samples",
            "--samples",
            "s.csv",
            "--target",
            "moons",
            "--out",
            "a.png",
        ],
        vec![
            "plot",
            "trajectories",
            "--trajectory",
            "traj.csv",
            "--out",
            "b.png",
        ],
        vec![
            "plot",
            "trajectories",
            "--model",
            "m.safetensors",
            "--n",
            "20",
            "--out",
            "c.png",
        ],
        vec!["plot", "loss", "--model", "m.safetensors", "--out", "d.png"],
    ] {
        let o = fm(&args, d);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        let png = std::fs::read(d.join(args.last().unwrap())).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}

#[test]
fn bad_input_exits_with_2_and_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ragged.csv"), "1,2\n3\n").unwrap();
    std::fs::write(d.join("three.csv"), "1,2,3\n4,5,6\n").unwrap();
    std::fs::write(d.join("junk.safetensors"), b"not a model at all").unwrap();
    let t = |extra: &[&str]| {
        let mut v = vec!["train", "--steps", "5", "--batch", "8", "--quiet"];
        v.extend_from_slice(extra);
        fm(&v, d)
    };
    assert_fails(
        &t(&["--target", "moons", "--matcher", "ddpm"]),
        2,
        &["matcher", "ddpm", "otcfm"],
    );
    assert_fails(&t(&["--target", "mooons"]), 2, &["mooons"]);
    assert_fails(&t(&["--target", "moons", "--lr", "0"]), 2, &["lr"]);
    assert_fails(&t(&["--target", "moons", "--sigma", "-1"]), 2, &["sigma"]);
    assert_fails(
        &fm(&["train", "--target", "moons", "--steps", "-3"], d),
        2,
        &["steps"],
    );
    assert_fails(
        &t(&["--target", "moons", "--source", "three.csv"]),
        2,
        &["dimension"],
    );
    assert_fails(&t(&["--target", "ragged.csv"]), 2, &["ragged.csv"]);
    assert_fails(&t(&["--target", "missing.csv"]), 2, &["missing.csv"]);
    assert_fails(
        &t(&["--target", "moons", "--out", "nodir/m.safetensors"]),
        2,
        &["nodir", "does not exist"],
    );
    assert_fails(
        &t(&["--target", "moons", "--resume"]),
        2,
        &["checkpoint", "--resume"],
    );
    assert_fails(
        &fm(
            &["sample", "--model", "junk.safetensors", "--out", "s.csv"],
            d,
        ),
        2,
        &["junk.safetensors"],
    );
    assert_fails(
        &fm(
            &["sample", "--model", "none.safetensors", "--out", "s.csv"],
            d,
        ),
        2,
        &["none.safetensors"],
    );
    assert_fails(
        &fm(&["eval", "--samples", "ragged.csv", "--target", "moons"], d),
        2,
        &["ragged.csv"],
    );
    assert_fails(
        &fm(
            &[
                "plot",
                "loss",
                "--model",
                "junk.safetensors",
                "--out",
                "x.png",
            ],
            d,
        ),
        2,
        &["junk.safetensors"],
    );
    // Usage errors from clap also exit with 2.
    assert_eq!(fm(&["train"], d).status.code(), Some(2));
    assert_eq!(fm(&["frobnicate"], d).status.code(), Some(2));
}

#[test]
fn diverging_training_exits_with_1_naming_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let o = fm(
        &[
            "train",
            "--target",
            "moons",
            "--steps",
            "300",
            "--batch",
            "16",
            "--hidden",
            "8",
            "--lr",
            "100000",
            "--checkpoint-every",
            "1",
            "--quiet",
        ],
        dir.path(),
    );
    // The weights after step 1 already explode: no checkpoint passes the divergence rule.
    assert_fails(&o, 1, &["diverged at step", "--lr", "none was written"]);
    assert!(!dir.path().join("model.safetensors.ckpt").exists());
    assert!(!dir.path().join("model.safetensors").exists());
}

#[test]
fn thread_count_and_resume_do_not_change_a_bit_of_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = [
        "train",
        "--target",
        "8gaussians",
        "--matcher",
        "otcfm",
        "--sigma",
        "0.1",
        "--batch",
        "32",
        "--hidden",
        "16",
        "--checkpoint-every",
        "10",
        "--quiet",
    ];
    let run = |extra: &[&str]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        let o = fm(&v, d);
        assert_eq!(o.status.code(), Some(0), "{extra:?}: {}", stderr(&o));
    };
    run(&["--steps", "40", "--threads", "1", "--out", "a.safetensors"]);
    run(&["--steps", "40", "--threads", "2", "--out", "b.safetensors"]);
    // Interrupted after 20 steps, then resumed to 40 with the checkpoint of the first run.
    run(&[
        "--steps",
        "20",
        "--out",
        "c.safetensors",
        "--checkpoint",
        "c.ckpt",
    ]);
    run(&[
        "--steps",
        "40",
        "--out",
        "c.safetensors",
        "--checkpoint",
        "c.ckpt",
        "--resume",
    ]);
    let a = std::fs::read(d.join("a.safetensors")).unwrap();
    assert_eq!(
        a,
        std::fs::read(d.join("b.safetensors")).unwrap(),
        "threads 1 vs 2"
    );
    assert_eq!(
        a,
        std::fs::read(d.join("c.safetensors")).unwrap(),
        "resumed vs uninterrupted"
    );
}

#[test]
fn sigkill_mid_run_then_resume_gives_the_uninterrupted_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [
        "train",
        "--target",
        "moons",
        "--matcher",
        "otcfm",
        "--sigma",
        "0.1",
        "--batch",
        "32",
        "--hidden",
        "16",
        "--steps",
        "3000",
        "--checkpoint-every",
        "50",
        "--quiet",
        "--out",
        "k.safetensors",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_fm"))
        .args(args)
        .current_dir(d)
        .spawn()
        .unwrap();
    let ckpt = d.join("k.safetensors.ckpt");
    let start = std::time::Instant::now();
    while !ckpt.exists() && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(ckpt.exists());
    let mut resume = args.to_vec();
    resume.push("--resume");
    let o = fm(&resume, d);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut full = args.to_vec();
    full.pop();
    full.push("full.safetensors");
    full.extend(["--checkpoint", "full.ckpt"]);
    let o = fm(&full, d);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(d.join("k.safetensors")).unwrap(),
        std::fs::read(d.join("full.safetensors")).unwrap()
    );
}

/// A reader that closes stdout early (`fm datasets | head -1`) is no bug: fm stops quietly with
/// 141 (128 + SIGPIPE) instead of reporting an internal error; with stdout open it succeeds.
#[test]
fn a_closed_stdout_is_a_quiet_exit_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // every write to the pipe now fails with a broken pipe
    let out = Command::new(env!("CARGO_BIN_EXE_fm"))
        .arg("datasets")
        .current_dir(dir.path())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(141), "stderr: {err}");
    assert!(
        !err.contains("internal error") && !err.contains("panicked"),
        "{err}"
    );
    let ok = fm(&["datasets"], dir.path());
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("moons"));
}
