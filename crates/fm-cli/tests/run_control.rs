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
    // Whatever checkpoint is on disk is complete: it reads as a checkpoint.
    if d.join("model.safetensors.ckpt").exists() {
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

/// Issue 18, item 3: sizes whose buffers cannot fit are refused (exit 2) before allocating,
/// naming the flag, the estimate and the limit (they aborted with SIGABRT before).
#[test]
fn sizes_beyond_memory_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (args, flag) in [
        (
            vec![
                "train", "--target", "moons", "--batch", "1000000", "--steps", "1",
            ],
            "--batch",
        ),
        (
            vec![
                "train",
                "--target",
                "moons",
                "--hidden",
                "65536,65536,65536",
                "--steps",
                "1",
            ],
            "--hidden",
        ),
        (
            vec![
                "train",
                "--target",
                "gaussian:dim=100000000",
                "--source",
                "gaussian",
                "--steps",
                "1",
            ],
            "d = 100000000",
        ),
        (
            vec![
                "--memory-limit",
                "1M",
                "train",
                "--target",
                "moons",
                "--steps",
                "1",
            ],
            "--memory-limit 1M",
        ),
    ] {
        let o = fm(&args, d);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("error: not enough memory")
                && err.contains(flag)
                && err.contains("memory limit"),
            "{args:?}: {err}"
        );
        assert!(!d.join("model.safetensors").exists());
    }
    let o = fm(&["--memory-limit", "lots", "train", "--target", "moons"], d);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--memory-limit lots"), "{}", stderr(&o));
}

/// `fm sample` under a small memory limit integrates and writes in chunks, and the file is
/// byte-identical to the one made in one piece; an adaptive solver's fixed chunk that does
/// not fit is refused naming --n.
#[test]
fn sampling_in_chunks_under_a_memory_limit_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = fm(
        &[
            "train", "--target", "moons", "--steps", "10", "--batch", "16", "--hidden", "8",
            "--quiet",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for ext in ["csv", "npy"] {
        let whole = format!("whole.{ext}");
        let parts = format!("parts.{ext}");
        let base = [
            "sample",
            "--model",
            "model.safetensors",
            "--n",
            "5000",
            "--seed",
            "3",
            "--json",
        ];
        let mut a: Vec<&str> = base.to_vec();
        a.extend(["--out", &whole]);
        let o = fm(&a, d);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(last_json(&o)["chunk"], 5000);
        let mut b: Vec<&str> = vec!["--memory-limit", "600K"];
        b.extend(base);
        b.extend(["--out", &parts]);
        let o = fm(&b, d);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let chunk = last_json(&o)["chunk"].as_u64().unwrap();
        assert!(chunk < 5000, "chunk {chunk}");
        assert_eq!(
            std::fs::read(d.join(&whole)).unwrap(),
            std::fs::read(d.join(&parts)).unwrap(),
            ".{ext} in chunks of {chunk}"
        );
    }
    let o = fm(
        &[
            "--memory-limit",
            "1M",
            "sample",
            "--model",
            "model.safetensors",
            "--n",
            "100000",
            "--solver",
            "dopri5",
            "--out",
            "x.npy",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--n"), "{}", stderr(&o));
    assert!(!d.join("x.npy").exists());
}

/// Ctrl-C during `fm sample`: exit 130, the previous output file is untouched and the run's
/// temporary file is gone (before the handler, the process died with the temporary file left in
/// the output directory).
#[test]
fn ctrl_c_during_sampling_keeps_the_old_output_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = fm(
        &[
            "train",
            "--target",
            "moons",
            "--steps",
            "5",
            "--batch",
            "32",
            "--hidden",
            "16",
            "--out",
            "m.safetensors",
            "--quiet",
        ],
        d,
    );
    assert!(t.status.success(), "{}", stderr(&t));
    let s = fm(
        &[
            "sample",
            "--model",
            "m.safetensors",
            "--n",
            "10",
            "--out",
            "s.npy",
        ],
        d,
    );
    assert!(s.status.success(), "{}", stderr(&s));
    let old = std::fs::read(d.join("s.npy")).unwrap();
    // Long enough to be interrupted while the output is being written: many points, many steps.
    let mut child = Command::new(env!("CARGO_BIN_EXE_fm"))
        .args([
            "sample",
            "--model",
            "m.safetensors",
            "--n",
            "20000000",
            "--solver",
            "euler",
            "--steps",
            "1000",
            "--out",
            "s.npy",
            "--threads",
            "1",
        ])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let temp_files = || -> Vec<String> {
        std::fs::read_dir(d)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.') && n.contains("tmp"))
            .collect()
    };
    let t0 = Instant::now();
    while temp_files().is_empty() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("fm sample ended ({status}) before its temporary file appeared");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no temporary output file appeared within 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, "-INT");
    let status = wait_with_timeout(&mut child, 60);
    assert_eq!(status.code(), Some(130), "exit status {status}");
    assert_eq!(
        temp_files(),
        Vec::<String>::new(),
        "temporary files left behind"
    );
    assert_eq!(
        std::fs::read(d.join("s.npy")).unwrap(),
        old,
        "the old output changed"
    );
}
