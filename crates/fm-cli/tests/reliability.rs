//! Issue 18 through the real binary: outputs never destroy inputs or devices, inputs never hang,
//! plots of extreme points terminate, failed writes exit alike, damaged model files are caught.
//!
//! Every run has a deadline (a regression that hangs fails instead of blocking the suite).
//! `FM_BIN` overrides the binary under test (e.g. to check that a case fails on an older build;
//! never point it at a build without the output checks while running as root: the device cases
//! would then replace `/dev/full` and `/dev/null`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Run {
    code: Option<i32>,
    stderr: String,
}

fn bin() -> PathBuf {
    std::env::var_os("FM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_fm")))
}

/// Seconds a run may take: `FM_TEST_DEADLINE_SECS`, default 120 (a debug build of a tiny run
/// takes well under a second).
fn deadline() -> u64 {
    std::env::var("FM_TEST_DEADLINE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120)
}

/// Runs `cmd` in `dir` with a deadline; a run that does not finish in time is killed and fails the test.
fn run_cmd(mut cmd: Command, dir: &Path, what: &str, secs: u64) -> Run {
    let err_path = dir.join(format!(".stderr.{}", std::process::id()));
    let err_file = std::fs::File::create(&err_path).unwrap();
    let mut child = cmd
        .current_dir(dir)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_file)
        .spawn()
        .expect("run fm");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&err_path);
            panic!("`{what}` did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&err_path);
    Run {
        code: status.code(),
        stderr,
    }
}

fn fm(args: &[&str], dir: &Path) -> Run {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    run_cmd(cmd, dir, &format!("fm {}", args.join(" ")), deadline())
}

/// Asserts exit code `code` and an `error:` line holding every needle, without a panic.
fn expect(r: &Run, code: i32, needles: &[&str], what: &str) {
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or("");
    assert_eq!(r.code, Some(code), "{what}: stderr {}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{what}: {}", r.stderr);
    for n in needles {
        assert!(line.contains(n), "{what}: `{n}` not in `{line}`");
    }
}

fn ok(r: &Run, what: &str) {
    assert_eq!(r.code, Some(0), "{what}: {}", r.stderr);
}

const TRAIN: &[&str] = &[
    "train", "--steps", "2", "--batch", "8", "--hidden", "8", "--quiet",
];

fn train(extra: &[&str], dir: &Path) -> Run {
    let mut a = TRAIN.to_vec();
    a.extend_from_slice(extra);
    fm(&a, dir)
}

fn points_csv(dir: &Path, name: &str) -> Vec<u8> {
    let mut s = String::from("a,b\n");
    for i in 0..40 {
        let t = i as f64 / 7.0;
        s.push_str(&format!("{},{}\n", t.cos(), t.sin()));
    }
    std::fs::write(dir.join(name), &s).unwrap();
    s.into_bytes()
}

#[test]
fn outputs_that_are_inputs_or_each_other_are_refused_and_nothing_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = points_csv(d, "d.csv");
    std::os::unix::fs::symlink("d.csv", d.join("alias.safetensors")).unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    let same = "is the same file as the input";
    expect(
        &train(&["--target", "d.csv", "--out", "d.csv"], d),
        2,
        &["--out d.csv", same, "--target d.csv"],
        "data as --out",
    );
    expect(
        &train(&["--target", "d.csv", "--out", "sub/../d.csv"], d),
        2,
        &[same],
        "data as --out, spelt differently",
    );
    expect(
        &train(&["--target", "d.csv", "--out", "alias.safetensors"], d),
        2,
        &[same],
        "a symlink to the data as --out",
    );
    expect(
        &train(
            &[
                "--target",
                "d.csv",
                "--checkpoint-every",
                "1",
                "--checkpoint",
                "d.csv",
            ],
            d,
        ),
        2,
        &["--checkpoint d.csv", same],
        "data as --checkpoint",
    );
    expect(
        &train(
            &["--source", "d.csv", "--target", "moons", "--out", "d.csv"],
            d,
        ),
        2,
        &["--source d.csv"],
        "source as --out",
    );
    expect(
        &train(
            &[
                "--target",
                "moons",
                "--out",
                "m.safetensors",
                "--checkpoint",
                "m.safetensors",
            ],
            d,
        ),
        2,
        &["--checkpoint m.safetensors", "same file as --out"],
        "--checkpoint equal to --out",
    );
    assert_eq!(std::fs::read(d.join("d.csv")).unwrap(), data);
    assert!(!d.join("m.safetensors").exists());

    ok(
        &train(&["--target", "moons", "--out", "m.safetensors"], d),
        "train",
    );
    let model = std::fs::read(d.join("m.safetensors")).unwrap();
    expect(
        &fm(
            &[
                "likelihood",
                "--model",
                "m.safetensors",
                "--data",
                "d.csv",
                "--out",
                "d.csv",
            ],
            d,
        ),
        2,
        &["--out d.csv", same, "--data d.csv"],
        "likelihood data as --out",
    );
    expect(
        &fm(
            &[
                "sample",
                "--model",
                "m.safetensors",
                "--out",
                "s.csv",
                "--trajectory",
                "./s.csv",
            ],
            d,
        ),
        2,
        &["--trajectory ./s.csv", "same file as --out"],
        "sample --trajectory equal to --out",
    );
    expect(
        &fm(
            &[
                "plot",
                "samples",
                "--samples",
                "d.csv",
                "--target",
                "d.csv",
                "--out",
                "d.csv",
            ],
            d,
        ),
        2,
        &[],
        "plot over its input",
    );
    assert_eq!(std::fs::read(d.join("d.csv")).unwrap(), data);
    assert_eq!(std::fs::read(d.join("m.safetensors")).unwrap(), model);
    assert!(!d.join("s.csv").exists());
}

#[test]
fn devices_fifos_and_directories_are_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(
        &train(&["--target", "moons", "--out", "m.safetensors"], d),
        "train",
    );
    let fifo = d.join("f.csv");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::os::unix::fs::symlink("/dev/full", d.join("full.csv")).unwrap();
    std::os::unix::fs::symlink("/dev/full", d.join("full.png")).unwrap();
    let never = "fm never replaces one";
    expect(
        &train(&["--target", "moons", "--out", "/dev/full"], d),
        2,
        &["/dev/full", "a device", never],
        "/dev/full as --out",
    );
    expect(
        &train(
            &[
                "--target",
                "moons",
                "--checkpoint-every",
                "1",
                "--checkpoint",
                "/dev/null",
            ],
            d,
        ),
        2,
        &["/dev/null", "a device"],
        "/dev/null as --checkpoint",
    );
    expect(
        &fm(
            &["sample", "--model", "m.safetensors", "--out", "full.csv"],
            d,
        ),
        2,
        &["full.csv", "a device"],
        "a symlink to /dev/full as --out",
    );
    expect(
        &fm(&["sample", "--model", "m.safetensors", "--out", "f.csv"], d),
        2,
        &["f.csv", "a FIFO", never],
        "a FIFO as --out",
    );
    expect(
        &fm(
            &[
                "plot",
                "loss",
                "--model",
                "m.safetensors",
                "--out",
                "full.png",
            ],
            d,
        ),
        2,
        &["full.png", "a device"],
        "a symlink to /dev/full as a plot",
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::metadata("/dev/full")
            .unwrap()
            .file_type()
            .is_char_device()
    );
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn files_that_are_not_ours_need_force_and_ours_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("notes.safetensors"), b"my notes").unwrap();
    std::fs::write(d.join("mine.csv"), b"a,b\n1,2\n").unwrap();
    std::fs::write(d.join("photo.png"), b"\x89PNG\r\n\x1a\n not a plot of fm").unwrap();
    expect(
        &train(&["--target", "moons", "--out", "notes.safetensors"], d),
        2,
        &["notes.safetensors", "is not an fm model file", "--force"],
        "a foreign file as --out",
    );
    assert_eq!(
        std::fs::read(d.join("notes.safetensors")).unwrap(),
        b"my notes"
    );
    ok(
        &train(&["--target", "moons", "--out", "m.safetensors"], d),
        "train",
    );
    // A model replaces a model; a checkpoint is not a model.
    ok(
        &train(&["--target", "moons", "--out", "m.safetensors"], d),
        "retrain",
    );
    ok(
        &train(
            &[
                "--target",
                "moons",
                "--out",
                "c.safetensors",
                "--checkpoint-every",
                "1",
            ],
            d,
        ),
        "train with a checkpoint",
    );
    expect(
        &train(&["--target", "moons", "--out", "c.safetensors.ckpt"], d),
        2,
        &["c.safetensors.ckpt", "--force"],
        "a checkpoint as a model --out",
    );
    expect(
        &train(
            &[
                "--target",
                "moons",
                "--out",
                "x.safetensors",
                "--checkpoint-every",
                "1",
                "--checkpoint",
                "m.safetensors",
            ],
            d,
        ),
        2,
        &["m.safetensors", "is not an fm checkpoint", "--force"],
        "a model as --checkpoint",
    );
    let m = "m.safetensors";
    expect(
        &fm(&["sample", "--model", m, "--out", "mine.csv"], d),
        2,
        &["mine.csv", "--force"],
        "a user's CSV as --out",
    );
    assert_eq!(std::fs::read(d.join("mine.csv")).unwrap(), b"a,b\n1,2\n");
    for out in ["s.csv", "s.npy"] {
        ok(
            &fm(&["sample", "--model", m, "--out", out, "--n", "5"], d),
            out,
        );
        ok(
            &fm(&["sample", "--model", m, "--out", out, "--n", "5"], d),
            out,
        );
    }
    expect(
        &fm(&["plot", "loss", "--model", m, "--out", "photo.png"], d),
        2,
        &["photo.png", "--force"],
        "a foreign PNG as a plot",
    );
    ok(
        &fm(&["plot", "loss", "--model", m, "--out", "l.png"], d),
        "plot",
    );
    ok(
        &fm(&["plot", "loss", "--model", m, "--out", "l.png"], d),
        "replot",
    );
    // An empty file holds nothing to lose.
    std::fs::write(d.join("empty.csv"), b"").unwrap();
    ok(
        &fm(
            &["sample", "--model", m, "--out", "empty.csv", "--n", "5"],
            d,
        ),
        "empty",
    );
    // --force replaces a foreign regular file, but never an input or a device.
    ok(
        &fm(
            &[
                "--force", "sample", "--model", m, "--out", "mine.csv", "--n", "5",
            ],
            d,
        ),
        "force",
    );
    assert!(
        std::fs::read_to_string(d.join("mine.csv"))
            .unwrap()
            .starts_with("x0,x1")
    );
    expect(
        &train(&["--target", "moons", "--out", "/dev/full", "--force"], d),
        2,
        &["a device"],
        "--force and a device",
    );
    points_csv(d, "d.csv");
    expect(
        &train(&["--target", "d.csv", "--out", "d.csv", "--force"], d),
        2,
        &["same file as the input"],
        "--force and an input",
    );
}

#[test]
fn a_symlink_output_is_followed_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("store")).unwrap();
    ok(
        &train(&["--target", "moons", "--out", "store/real.safetensors"], d),
        "train",
    );
    std::os::unix::fs::symlink("store/real.safetensors", d.join("link.safetensors")).unwrap();
    let before = std::fs::read(d.join("store/real.safetensors")).unwrap();
    ok(
        &train(
            &[
                "--target",
                "moons",
                "--out",
                "link.safetensors",
                "--seed",
                "7",
            ],
            d,
        ),
        "train through the link",
    );
    let meta = std::fs::symlink_metadata(d.join("link.safetensors")).unwrap();
    assert!(meta.file_type().is_symlink(), "the link was replaced");
    let after = std::fs::read(d.join("store/real.safetensors")).unwrap();
    assert_ne!(before, after, "the link's target was not rewritten");
    ok(
        &fm(
            &[
                "sample",
                "--model",
                "link.safetensors",
                "--out",
                "s.csv",
                "--n",
                "3",
            ],
            d,
        ),
        "the rewritten target is a model",
    );
    let leftovers: Vec<_> = std::fs::read_dir(d.join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    std::os::unix::fs::symlink("store/nowhere.safetensors", d.join("dangling.safetensors"))
        .unwrap();
    expect(
        &train(&["--target", "moons", "--out", "dangling.safetensors"], d),
        2,
        &["dangling.safetensors", "symlink", "does not exist"],
        "a dangling symlink",
    );
}

#[test]
fn inputs_that_would_block_or_never_end_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(
        Command::new("mkfifo")
            .arg(d.join("fifo.safetensors"))
            .status()
            .unwrap()
            .success()
    );
    assert!(
        Command::new("mkfifo")
            .arg(d.join("fifo.csv"))
            .status()
            .unwrap()
            .success()
    );
    expect(
        &fm(
            &["sample", "--model", "fifo.safetensors", "--out", "s.csv"],
            d,
        ),
        2,
        &["fifo.safetensors", "not a regular file"],
        "a FIFO model",
    );
    expect(
        &fm(&["sample", "--model", "/dev/zero", "--out", "s.csv"], d),
        2,
        &["/dev/zero", "not a regular file"],
        "/dev/zero as a model",
    );
    expect(
        &fm(
            &["plot", "loss", "--model", "/dev/zero", "--out", "l.png"],
            d,
        ),
        2,
        &["/dev/zero"],
        "/dev/zero as plot's model",
    );
    expect(
        &train(&["--target", "fifo.csv"], d),
        2,
        &["fifo.csv", "not a regular file"],
        "a FIFO as data",
    );
    expect(
        &train(
            &[
                "--target",
                "moons",
                "--resume",
                "--checkpoint",
                "fifo.safetensors",
            ],
            d,
        ),
        2,
        &["fifo.safetensors", "not a regular file"],
        "a FIFO as the checkpoint to resume",
    );
    // A (sparse) file beyond the model-size limit is refused by its size, without reading it.
    let big = std::fs::File::create(d.join("big.safetensors")).unwrap();
    big.set_len((4u64 << 30) + 1).unwrap();
    drop(big);
    expect(
        &fm(
            &["sample", "--model", "big.safetensors", "--out", "s.csv"],
            d,
        ),
        2,
        &["big.safetensors", "limit of 4294967296 bytes"],
        "a model beyond the size limit",
    );
}

#[test]
fn plots_of_extreme_points_terminate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("huge.csv"), "x,y\n1e308,-1e308\n-1e308,1e308\n0,0\n").unwrap();
    std::fs::write(
        d.join("max.csv"),
        "x,y\n1.7976931348623157e308,1\n-1.7976931348623157e308,2\n",
    )
    .unwrap();
    std::fs::write(d.join("big.csv"), "x,y\n1e300,-1e300\n-1e300,1e300\n").unwrap();
    std::fs::write(
        d.join("tight.csv"),
        "x,y\n1e16,1e16\n10000000000000002,1e16\n",
    )
    .unwrap();
    std::fs::write(d.join("same.csv"), "x,y\n3,3\n3,3\n").unwrap();
    for f in ["huge.csv", "max.csv"] {
        expect(
            &fm(&["plot", "samples", "--samples", f, "--out", "p.png"], d),
            2,
            &["cannot plot", "overflows"],
            f,
        );
        let traj = format!("t-{f}");
        let rows = std::fs::read_to_string(d.join(f)).unwrap();
        let mut s = String::from("t,x,y\n");
        for t in ["0", "1"] {
            for line in rows.lines().skip(1).take(2) {
                s.push_str(&format!("{t},{line}\n"));
            }
        }
        std::fs::write(d.join(&traj), s).unwrap();
        expect(
            &fm(
                &[
                    "plot",
                    "trajectories",
                    "--trajectory",
                    &traj,
                    "--out",
                    "t.png",
                ],
                d,
            ),
            2,
            &["overflows"],
            &traj,
        );
    }
    for f in ["big.csv", "tight.csv", "same.csv"] {
        ok(
            &fm(&["plot", "samples", "--samples", f, "--out", "p.png"], d),
            f,
        );
    }
    assert!(!d.join("t.png").exists());
}

/// The model file at `path` with its checksum removed (as written before checksums) and its
/// config edited by `edit`.
fn rewrite_model(path: &Path, out: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta = header["__metadata__"].as_object_mut().unwrap();
    assert!(
        meta.remove("fm_checksum").is_some(),
        "no checksum was written"
    );
    let mut cfg: serde_json::Value =
        serde_json::from_str(meta["fm_config"].as_str().unwrap()).unwrap();
    edit(&mut cfg);
    meta.insert(
        "fm_config".into(),
        serde_json::Value::String(cfg.to_string()),
    );
    let mut h = serde_json::to_vec(&header).unwrap();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut o = (h.len() as u64).to_le_bytes().to_vec();
    o.extend_from_slice(&h);
    o.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(out, o).unwrap();
}

#[test]
fn a_loss_curve_of_huge_losses_terminates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(
        &train(&["--target", "moons", "--out", "m.safetensors"], d),
        "train",
    );
    for (name, hist, code) in [
        (
            "a.safetensors",
            serde_json::json!([[1, 1.7e308], [2, 1.79e308]]),
            2,
        ),
        (
            "b.safetensors",
            serde_json::json!([[1, 5e-324], [2, 1.79e308]]),
            2,
        ),
        (
            "c.safetensors",
            serde_json::json!([[1, 1e16], [2, 1e16]]),
            0,
        ),
        (
            "d.safetensors",
            serde_json::json!([[1, 1e-300], [2, 1.0], [3, 1e300]]),
            0,
        ),
        (
            "e.safetensors",
            serde_json::json!([[1, 1e-150], [2, 1e150]]),
            0,
        ),
    ] {
        rewrite_model(&d.join("m.safetensors"), &d.join(name), |c| {
            c["loss_history"] = hist;
        });
        let r = fm(&["plot", "loss", "--model", name, "--out", "l.png"], d);
        if code == 0 {
            ok(&r, name);
        } else {
            expect(&r, 2, &["no loss history to plot", "1e150"], name);
        }
    }
}

#[test]
fn damaged_model_files_and_checkpoints_fail_their_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(
        &train(
            &[
                "--target",
                "moons",
                "--out",
                "m.safetensors",
                "--checkpoint-every",
                "1",
            ],
            d,
        ),
        "train",
    );
    let bytes = std::fs::read(d.join("m.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    // One flipped bit in a weight's mantissa (the last data byte's lowest bit): a valid float.
    let mut flipped = bytes.clone();
    let last = flipped.len() - 4;
    flipped[last] ^= 1;
    std::fs::write(d.join("flip.safetensors"), &flipped).unwrap();
    // One changed digit in the stored loss history: still valid JSON.
    let mut cfg = bytes.clone();
    let header = String::from_utf8_lossy(&bytes[8..8 + n]).into_owned();
    let at = header.find("loss_history").unwrap();
    let digit = header[at..]
        .find(|c: char| c.is_ascii_digit() && c != '0')
        .unwrap()
        + at;
    cfg[8 + digit] = if cfg[8 + digit] == b'1' { b'2' } else { b'1' };
    std::fs::write(d.join("cfg.safetensors"), &cfg).unwrap();
    for f in ["flip.safetensors", "cfg.safetensors"] {
        expect(
            &fm(&["sample", "--model", f, "--out", "s.csv"], d),
            2,
            &[f, "corrupt: checksum mismatch"],
            f,
        );
    }
    // A file from before checksums (no checksum field) still loads.
    rewrite_model(&d.join("m.safetensors"), &d.join("old.safetensors"), |_| {});
    ok(
        &fm(
            &[
                "sample",
                "--model",
                "old.safetensors",
                "--out",
                "s.csv",
                "--n",
                "5",
            ],
            d,
        ),
        "old",
    );
    ok(
        &fm(
            &[
                "sample",
                "--model",
                "m.safetensors",
                "--out",
                "s.csv",
                "--n",
                "5",
            ],
            d,
        ),
        "intact",
    );
    // A flipped bit in the checkpoint's parameters.
    let ck = d.join("m.safetensors.ckpt");
    let mut c = std::fs::read(&ck).unwrap();
    let last = c.len() - 4;
    c[last] ^= 1;
    std::fs::write(&ck, &c).unwrap();
    expect(
        &train(
            &["--target", "moons", "--out", "m.safetensors", "--resume"],
            d,
        ),
        2,
        &["m.safetensors.ckpt", "corrupt: checksum mismatch"],
        "a damaged checkpoint",
    );
}

#[test]
fn huge_but_finite_data_names_the_flag_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut s = String::from("x,y\n");
    for i in 0..20 {
        s.push_str(&format!("{}e200,{}\n", i + 1, i));
    }
    std::fs::write(d.join("big.csv"), s).unwrap();
    expect(
        &train(&["--target", "big.csv"], d),
        2,
        &["--target big.csv", "1e200", "rescale"],
        "train on huge data",
    );
    expect(
        &train(
            &[
                "--source",
                "big.csv",
                "--target",
                "moons",
                "--coupling",
                "sinkhorn",
                "--sigma",
                "0.1",
            ],
            d,
        ),
        2,
        &["--source big.csv"],
        "huge source",
    );
    expect(
        &fm(&["eval", "--samples", "big.csv", "--target", "moons"], d),
        2,
        &["--samples big.csv"],
        "eval of huge samples",
    );
    expect(
        &fm(&["eval", "--samples", "big.csv", "--target", "big.csv"], d),
        2,
        &["big.csv"],
        "eval against a huge target",
    );
}

/// A write that fails once the work is done (here: the file-size limit, `EFBIG`) exits 1 from
/// every command, names the file, and leaves no temporary file.
#[test]
fn a_failed_write_exits_1_from_every_command_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(
        &train(&["--target", "moons", "--out", "m.safetensors"], d),
        "train",
    );
    let limited = |args: &[&str]| {
        // SIGXFSZ ignored (inherited across exec), so an oversized write fails with EFBIG.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("trap '' XFSZ; ulimit -f 1; exec \"$0\" \"$@\"")
            .arg(bin())
            .args(args);
        run_cmd(cmd, d, &args.join(" "), deadline())
    };
    let mut train_args = TRAIN.to_vec();
    train_args.extend(["--target", "moons", "--out", "w.safetensors"]);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (train_args, "w.safetensors"),
        (
            vec![
                "sample",
                "--model",
                "m.safetensors",
                "--n",
                "500",
                "--out",
                "w.csv",
            ],
            "w.csv",
        ),
        (
            vec![
                "likelihood",
                "--model",
                "m.safetensors",
                "--data",
                "moons",
                "--n",
                "300",
                "--solver",
                "euler",
                "--steps",
                "2",
                "--out",
                "l.csv",
            ],
            "l.csv",
        ),
    ];
    for (args, out) in &cases {
        expect(&limited(args), 1, &[out, "cannot write"], out);
        assert!(!d.join(out).exists());
    }
    let mut names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["m.safetensors"]);
}
