//! Issue 18, items 2 and 5 through the binary: a diverged run never ends with exit 0 and garbage
//! weights, and Ctrl-C (SIGINT) stops `fm train` with a checkpoint and the model so far.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// The scenario: a huge --lr stops the run; resuming "the last good checkpoint" with a
/// smaller --lr, as the message advises, must not end with exit 0 and an exploded model (before
/// the divergence rule it ended with exit 0 and a final loss of 3e21).
#[test]
fn resuming_after_a_divergence_never_exits_0_with_an_exploded_model() {
    for lr in ["100000", "30", "3"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let base = [
            "train",
            "--target",
            "moons",
            "--batch",
            "16",
            "--hidden",
            "8",
            "--checkpoint-every",
            "1",
            "--threads",
            "1",
            "--quiet",
        ];
        let mut first: Vec<&str> = base.to_vec();
        first.extend(["--lr", lr, "--steps", "300"]);
        let o = fm(&first, d);
        if o.status.code() != Some(0) {
            assert_eq!(o.status.code(), Some(1), "lr {lr}: {}", stderr(&o));
            assert!(stderr(&o).contains("diverged at step"), "{}", stderr(&o));
            assert!(!d.join("model.safetensors").exists(), "lr {lr}");
        }
        let _ = std::fs::remove_file(d.join("model.safetensors"));
        let mut again: Vec<&str> = base.to_vec();
        again.extend(["--lr", "1e-3", "--resume", "--steps", "320", "--json"]);
        let o = fm(&again, d);
        match o.status.code() {
            Some(0) => {
                let j = last_json(&o);
                let loss = j["final_loss"].as_f64().unwrap();
                assert!(loss.is_finite() && loss < 1e3, "lr {lr}: final loss {loss}");
                let s = fm(
                    &[
                        "sample",
                        "--model",
                        "model.safetensors",
                        "--n",
                        "50",
                        "--out",
                        "s.csv",
                    ],
                    d,
                );
                assert_eq!(s.status.code(), Some(0), "lr {lr}: {}", stderr(&s));
            }
            code => {
                // Refused (no good checkpoint) or diverged again: never a model file.
                assert!(matches!(code, Some(1) | Some(2)), "lr {lr}: {}", stderr(&o));
                assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
                assert!(!d.join("model.safetensors").exists(), "lr {lr}");
            }
        }
    }
}

#[test]
fn a_checkpoint_given_as_a_model_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = fm(
        &[
            "train",
            "--target",
            "moons",
            "--steps",
            "5",
            "--batch",
            "16",
            "--hidden",
            "8",
            "--checkpoint-every",
            "5",
            "--quiet",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = fm(
        &[
            "sample",
            "--model",
            "model.safetensors.ckpt",
            "--out",
            "s.csv",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("training checkpoint") && err.contains("--resume") && err.contains("--out"),
        "{err}"
    );
}

/// Waits for `child` at most `secs` seconds; kills it and fails otherwise.
fn wait_with_timeout(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            panic!("fm did not exit within {secs} s of the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// Starts `fm train` and returns once it says training has begun (the handler is installed).
fn start_training(args: &[&str], dir: &Path) -> (Child, std::thread::JoinHandle<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fm"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(first.contains("Ctrl-C"), "{first}");
    let rest = std::thread::spawn(move || {
        let mut s = first;
        let mut line = String::new();
        while err.read_line(&mut line).unwrap_or(0) > 0 {
            s.push_str(&line);
            line.clear();
        }
        s
    });
    (child, rest)
}

const BASE: [&str; 12] = [
    "train",
    "--target",
    "moons",
    "--matcher",
    "icfm",
    "--batch",
    "32",
    "--hidden",
    "16",
    "--seed",
    "7",
    "--log-every",
];

#[test]
fn ctrl_c_writes_a_checkpoint_and_the_model_and_the_resumed_run_is_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut args: Vec<&str> = BASE.to_vec();
    args.extend(["5", "--steps", "100000000"]);
    let (mut child, err) = start_training(&args, d);
    signal(&child, "-INT");
    let status = wait_with_timeout(&mut child, 120);
    let err = err.join().unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted after step") && err.contains("--resume"),
        "{err}"
    );
    assert!(d.join("model.safetensors").exists(), "{err}");
    assert!(d.join("model.safetensors.ckpt").exists(), "{err}");
    let names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    // The model so far samples.
    let o = fm(
        &[
            "sample",
            "--model",
            "model.safetensors",
            "--n",
            "20",
            "--out",
            "s.csv",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Resume to a total that is past the interruption, and train the same total uninterrupted.
    let o = fm(
        &[
            "plot",
            "loss",
            "--model",
            "model.safetensors",
            "--out",
            "l.png",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let step: usize = err
        .split("interrupted after step ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("the step");
    let total = (step + 40).to_string();
    let mut resume: Vec<&str> = BASE.to_vec();
    resume.extend(["5", "--steps", &total, "--resume", "--quiet"]);
    let o = fm(&resume, d);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let other = tempfile::tempdir().unwrap();
    let mut full: Vec<&str> = BASE.to_vec();
    full.extend(["5", "--steps", &total, "--quiet"]);
    let o = fm(&full, other.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(d.join("model.safetensors")).unwrap(),
        std::fs::read(other.path().join("model.safetensors")).unwrap(),
        "the resumed model differs from the uninterrupted one (interrupted at step {step})"
    );
}

#[test]
fn a_second_signal_exits_at_once_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut args: Vec<&str> = BASE.to_vec();
    args.extend(["1", "--steps", "100000000", "--checkpoint-every", "1"]);
    let (mut child, err) = start_training(&args, d);
    signal(&child, "-TERM");
    signal(&child, "-TERM");
    let status = wait_with_timeout(&mut child, 120);
    let err = err.join().unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    let names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    // Whatever checkpoint is on disk is complete: it resumes.
    if d.join("model.safetensors.ckpt").exists() {
        let mut resume: Vec<&str> = BASE.to_vec();
        resume.extend(["1", "--steps", "100000000", "--checkpoint-every", "1"]);
        let ck = flow_matching_checkpoint_step(&d.join("model.safetensors.ckpt"));
        assert!(ck >= 1);
    }
}

/// The step of a checkpoint, read through `fm sample`'s explanation of it.
fn flow_matching_checkpoint_step(path: &Path) -> usize {
    let o = fm(
        &[
            "sample",
            "--model",
            path.to_str().unwrap(),
            "--out",
            "x.csv",
        ],
        path.parent().unwrap(),
    );
    let err = stderr(&o);
    err.split("checkpoint (step ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a readable checkpoint: {err}"))
}
