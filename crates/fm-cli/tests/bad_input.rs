//! The bad-input matrix of issue 10: every way a user can hand `fm` a wrong flag, a broken data
//! file or a damaged model, run through the real binary.
//!
//! This file lives in the `fm-cli` package (not in the workspace's `tests/`) because only the
//! tests of the package that defines a binary get `env!("CARGO_BIN_EXE_fm")`, the path of the
//! freshly built `fm`.
//!
//! Each case asserts the exit code (2 when the input is at fault, 1 when the computation fails on
//! a valid input, e.g. a solver that exceeds `--max-steps`), that stderr has an `error:` line
//! naming both the problem and the thing at fault (flag, file, value), and that no panic message
//! or backtrace appears. Files that should be rejected are checked against positive controls
//! written by the same helpers (a valid `.npy`, an unmodified rewritten model), so a case cannot
//! pass because the helper wrote garbage. Training that diverges (huge `--lr`) is covered in
//! `cli.rs` (`diverging_training_exits_with_1_naming_the_step`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `fm` with `args` in `dir`.
fn fm<S: AsRef<std::ffi::OsStr>>(args: &[S], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fm"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run fm")
}

/// One bad-input case: the arguments, the exit code and the words the `error:` line must hold.
struct Case {
    args: Vec<String>,
    code: i32,
    needles: Vec<String>,
}

fn case(args: &[&str], code: i32, needles: &[&str]) -> Case {
    Case {
        args: args.iter().map(|s| s.to_string()).collect(),
        code,
        needles: needles.iter().map(|s| s.to_string()).collect(),
    }
}

/// What is wrong with the outcome of `c`, if anything.
fn check(c: &Case, o: &Output) -> Option<String> {
    let err = String::from_utf8_lossy(&o.stderr);
    let mut problems = Vec::new();
    if o.status.code() != Some(c.code) {
        problems.push(format!(
            "exit code {:?}, expected {}",
            o.status.code(),
            c.code
        ));
    }
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE", "internal error"] {
        if err.contains(bad) {
            problems.push(format!("stderr mentions `{bad}`"));
        }
    }
    match err.lines().find(|l| l.starts_with("error:")) {
        None => problems.push("no `error:` line".into()),
        Some(line) => {
            for n in &c.needles {
                if !line.contains(n.as_str()) {
                    problems.push(format!("`{n}` not in the error line"));
                }
            }
        }
    }
    if problems.is_empty() {
        None
    } else {
        Some(format!(
            "fm {}\n  {}\n  stderr: {}",
            c.args.join(" "),
            problems.join("; "),
            err.trim_end()
        ))
    }
}

/// Runs every case in `dir` and fails listing all the cases that went wrong.
fn run_all(dir: &Path, cases: &[Case]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| check(c, &fm(&c.args, dir)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// `fm train --target moons` with tiny settings plus `extra` (later flags win).
fn train_args(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<&str> = vec![
        "train", "--target", "moons", "--steps", "2", "--batch", "8", "--hidden", "8", "--quiet",
    ];
    // Replace a flag's default above rather than giving it twice (clap refuses repeats).
    let mut i = 0;
    while i < extra.len() {
        let flag = extra[i];
        let value = extra.get(i + 1).filter(|v| !v.starts_with("--")).copied();
        match (v.iter().position(|a| *a == flag), value) {
            (Some(k), Some(val)) => v[k + 1] = val,
            (_, Some(val)) => v.extend([flag, val]),
            (_, None) => v.push(flag),
        }
        i += if value.is_some() { 2 } else { 1 };
    }
    v.into_iter().map(String::from).collect()
}

fn train_case(extra: &[&str], code: i32, needles: &[&str]) -> Case {
    Case {
        args: train_args(extra),
        code,
        needles: needles.iter().map(|s| s.to_string()).collect(),
    }
}

/// Trains a tiny model (2 steps, one hidden layer of 8) to `dir/name`.
fn tiny_model(dir: &Path, name: &str) -> PathBuf {
    let mut args = train_args(&[]);
    args.extend(["--out".to_string(), name.to_string()]);
    let o = fm(&args, dir);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    dir.join(name)
}

/// A `.npy` file written by hand: magic, version 1.0, little-endian header length, the header
/// dict padded with spaces and a newline to a multiple of 64 bytes, then `payload`.
fn npy(descr: &str, shape: &str, payload: &[u8]) -> Vec<u8> {
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let header = format!("{dict}{}\n", " ".repeat(pad));
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    assert_eq!((out.len()) % 64, 0);
    out.extend_from_slice(payload);
    out
}

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A safetensors file split into its JSON header and its data.
struct Safetensors {
    header: serde_json::Value,
    data: Vec<u8>,
}

impl Safetensors {
    fn read(path: &Path) -> Self {
        let bytes = std::fs::read(path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        Self {
            header: serde_json::from_slice(&bytes[8..8 + n]).unwrap(),
            data: bytes[8 + n..].to_vec(),
        }
    }

    /// The bytes, header padded with spaces to a multiple of 8 as safetensors writes it.
    fn bytes(&self) -> Vec<u8> {
        let mut h = serde_json::to_vec(&self.header).unwrap();
        while h.len() % 8 != 0 {
            h.push(b' ');
        }
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&h);
        out.extend_from_slice(&self.data);
        out
    }

    /// Removes the checksum, as in a file written before checksums: the edits below then reach
    /// the checks they are meant for instead of the checksum (tested in `reliability.rs`).
    fn drop_checksum(&mut self) {
        self.header["__metadata__"]
            .as_object_mut()
            .unwrap()
            .remove("fm_checksum");
    }

    /// Edits the model config stored as a JSON string under `__metadata__.fm_config`.
    fn edit_config(&mut self, f: impl FnOnce(&mut serde_json::Value)) {
        self.drop_checksum();
        let meta = &mut self.header["__metadata__"]["fm_config"];
        let mut cfg: serde_json::Value = serde_json::from_str(meta.as_str().unwrap()).unwrap();
        f(&mut cfg);
        *meta = serde_json::Value::String(cfg.to_string());
    }

    /// Multiplies every f32 weight by `factor` (little-endian bytes rewritten in place).
    fn scale_f32(&mut self, factor: f32) {
        self.drop_checksum();
        let mut scaled = 0;
        for (name, t) in self.header.as_object().unwrap() {
            if name == "__metadata__" {
                continue;
            }
            assert_eq!(t["dtype"], "F32", "{name}");
            let off = &t["data_offsets"];
            let (a, b) = (
                off[0].as_u64().unwrap() as usize,
                off[1].as_u64().unwrap() as usize,
            );
            for chunk in self.data[a..b].chunks_exact_mut(4) {
                let x = f32::from_le_bytes(chunk.try_into().unwrap()) * factor;
                chunk.copy_from_slice(&x.to_le_bytes());
                scaled += 1;
            }
        }
        assert!(scaled > 0);
    }
}

#[test]
fn unknown_names_exit_2_naming_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = tiny_model(d, "m.safetensors");
    let m = m.to_str().unwrap();
    run_all(
        d,
        &[
            train_case(
                &["--target", "mooons"],
                2,
                &["--target", "mooons", "unknown data set", "moons"],
            ),
            train_case(&["--source", "spiralz"], 2, &["--source", "spiralz"]),
            train_case(&["--matcher", "ddpm"], 2, &["matcher", "ddpm", "otcfm"]),
            train_case(
                &["--matcher", "affine", "--scheduler", "sigmoid"],
                2,
                &["scheduler", "sigmoid", "condot"],
            ),
            train_case(
                &["--activation", "swish9"],
                2,
                &["activation", "swish9", "selu"],
            ),
            train_case(&["--optimizer", "sgdx"], 2, &["optimizer", "sgdx", "adam"]),
            train_case(&["--coupling", "greedy"], 2, &["coupling", "greedy"]),
            train_case(&["--objective", "elbo"], 2, &["objective", "elbo"]),
            train_case(&["--time-features", "wavelet"], 2, &["time", "wavelet"]),
            case(
                &["sample", "--model", m, "--solver", "rk45", "--out", "s.csv"],
                2,
                &["--solver", "rk45", "dopri5"],
            ),
            case(
                &[
                    "likelihood",
                    "--model",
                    m,
                    "--data",
                    "moons",
                    "--solver",
                    "bdf",
                ],
                2,
                &["--solver", "bdf"],
            ),
            // Usage errors from clap: a subcommand or flag that does not exist.
            case(&["frobnicate"], 2, &["frobnicate"]),
            train_case(&["--lr-schedule", "cosine"], 2, &["--lr-schedule"]),
        ],
    );
}

#[test]
fn out_of_range_numbers_exit_2_naming_the_flag_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = tiny_model(d, "m.safetensors");
    let m = m.to_str().unwrap();
    let sample = |extra: &[&str], needles: &[&str]| {
        let mut v = vec!["sample", "--model", m, "--n", "10", "--out", "s.csv"];
        for pair in extra.chunks(2) {
            match v.iter().position(|a| *a == pair[0]) {
                Some(i) => v[i + 1] = pair[1],
                None => v.extend_from_slice(pair),
            }
        }
        case(&v, 2, needles)
    };
    run_all(
        d,
        &[
            train_case(&["--steps", "-3"], 2, &["--steps", "-3"]),
            train_case(&["--steps", "0"], 2, &["--steps", "0"]),
            train_case(&["--steps", "1e12"], 2, &["--steps", "1e12"]),
            train_case(
                &["--steps", "1000000000000"],
                2,
                &["--steps", "1000000000000"],
            ),
            train_case(&["--batch", "0"], 2, &["--batch", "0"]),
            train_case(&["--batch", "-8"], 2, &["--batch", "-8"]),
            train_case(
                &["--batch", "1000000000000"],
                2,
                &["--batch", "1000000000000"],
            ),
            train_case(&["--lr", "0"], 2, &["lr", "0", "positive"]),
            train_case(&["--lr", "-1"], 2, &["lr", "-1"]),
            train_case(&["--lr", "1e12"], 2, &["lr", "1000000000000"]),
            train_case(&["--lr", "NaN"], 2, &["lr", "NaN"]),
            train_case(&["--sigma", "-1"], 2, &["sigma", "-1"]),
            train_case(&["--sigma", "1e12"], 2, &["sigma", "1000000000000"]),
            train_case(&["--sigma", "inf"], 2, &["sigma", "inf"]),
            train_case(&["--ema", "1"], 2, &["ema", "1"]),
            train_case(&["--ema", "-0.5"], 2, &["ema", "-0.5"]),
            train_case(&["--ema", "1.5"], 2, &["ema", "1.5"]),
            train_case(&["--hidden", "0"], 2, &["--hidden", "0"]),
            train_case(&["--hidden", "abc"], 2, &["--hidden", "abc"]),
            train_case(&["--hidden", "8,-1"], 2, &["--hidden", "8,-1"]),
            train_case(&["--weight-decay", "-1"], 2, &["weight-decay", "-1"]),
            train_case(&["--max-grad-norm", "0"], 2, &["max-grad-norm", "0"]),
            train_case(&["--threads", "0"], 2, &["--threads", "0"]),
            train_case(&["--log-every", "0"], 2, &["--log-every", "0"]),
            train_case(
                &["--checkpoint-every", "-1"],
                2,
                &["--checkpoint-every", "-1"],
            ),
            sample(&["--n", "0"], &["--n", "0"]),
            sample(&["--n", "-5"], &["--n", "-5"]),
            sample(&["--n", "1000000000000"], &["--n", "1000000000000"]),
            sample(&["--steps", "0"], &["--steps", "0"]),
            sample(&["--steps", "-1"], &["--steps", "-1"]),
            sample(&["--solver", "dopri5", "--rtol", "0"], &["rtol", "0"]),
            sample(&["--solver", "dopri5", "--rtol", "-1"], &["rtol", "-1"]),
            sample(
                &["--solver", "dopri5", "--atol", "1e12"],
                &["atol", "1000000000000"],
            ),
            sample(&["--solver", "dopri5", "--atol", "nan"], &["atol", "NaN"]),
            sample(
                &["--solver", "dopri5", "--max-steps", "0"],
                &["--max-steps", "0"],
            ),
            // Tolerances on a fixed-step solver are a contradiction, not silently ignored.
            sample(&["--rtol", "1e-3"], &["rtol", "dopri5"]),
            case(
                &[
                    "likelihood",
                    "--model",
                    m,
                    "--data",
                    "moons",
                    "--n",
                    "10",
                    "--rtol",
                    "-1",
                ],
                2,
                &["rtol", "-1"],
            ),
            case(
                &[
                    "likelihood",
                    "--model",
                    m,
                    "--data",
                    "moons",
                    "--n",
                    "10",
                    "--atol",
                    "inf",
                ],
                2,
                &["atol", "inf"],
            ),
            case(
                &[
                    "likelihood",
                    "--model",
                    m,
                    "--data",
                    "moons",
                    "--hutchinson",
                    "0",
                ],
                2,
                &["--hutchinson", "0"],
            ),
            case(
                &["likelihood", "--model", m, "--data", "moons", "--n", "0"],
                2,
                &["--n", "0"],
            ),
            case(
                &[
                    "eval",
                    "--samples",
                    "s.csv",
                    "--target",
                    "moons",
                    "--n",
                    "0",
                ],
                2,
                &["--n", "0"],
            ),
            case(
                &[
                    "plot", "samples", "--model", m, "--n", "-1", "--out", "p.png",
                ],
                2,
                &["--n", "-1"],
            ),
        ],
    );
}

#[test]
fn bad_data_files_exit_2_naming_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let w = |name: &str, bytes: &[u8]| std::fs::write(d.join(name), bytes).unwrap();
    w("ragged.csv", b"1,2\n3,4,5\n");
    w("text.csv", b"x,y\n1,abc\n");
    w("nan.csv", b"1,2\nNaN,3\n");
    w("inf.csv", b"1,2\n4,inf\n");
    w("header.csv", b"x,y\n");
    w("empty.csv", b"");
    w("three.csv", b"1,2,3\n4,5,6\n7,8,9\n");
    w("good.csv", b"x,y\n1,2\n3,4\n5,6\n");
    std::fs::create_dir(d.join("dir.csv")).unwrap();
    w("one.npy", &npy("<f8", "(3,)", &f64_bytes(&[1., 2., 3.])));
    w(
        "three.npy",
        &npy(
            "<f8",
            "(2, 2, 2)",
            &f64_bytes(&[0., 1., 2., 3., 4., 5., 6., 7.]),
        ),
    );
    let ints: Vec<u8> = (0..6i64).flat_map(|x| x.to_le_bytes()).collect();
    w("int.npy", &npy("<i8", "(3, 2)", &ints));
    w(
        "trunc.npy",
        &npy("<f8", "(3, 2)", &f64_bytes(&[0., 1., 2., 3.])),
    );
    w(
        "nan.npy",
        &npy("<f8", "(3, 2)", &f64_bytes(&[0., 1., f64::NAN, 3., 4., 5.])),
    );
    w(
        "good.npy",
        &npy("<f8", "(3, 2)", &f64_bytes(&[0., 1., 2., 3., 4., 5.])),
    );

    // Positive controls: the hand-written files that are valid train fine.
    for good in ["good.csv", "good.npy"] {
        let o = fm(
            &train_args(&["--target", good, "--out", "g.safetensors"]),
            d,
        );
        assert_eq!(
            o.status.code(),
            Some(0),
            "{good}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    let t = |file: &str, needles: &[&str]| {
        let mut n = vec!["--target", file];
        n.extend_from_slice(needles);
        train_case(&["--target", file], 2, &n)
    };
    run_all(
        d,
        &[
            t("ragged.csv", &["line 2", "expected 2 columns, found 3"]),
            t("text.csv", &["line 2", "\"abc\" is not a number"]),
            t("nan.csv", &["line 2", "non-finite", "NaN"]),
            t("inf.csv", &["line 2", "non-finite", "inf"]),
            t("header.csv", &["no data", "header"]),
            t("empty.csv", &["no data", "empty"]),
            t("dir.csv", &["not a regular file"]),
            t("missing.csv", &["cannot access", "No such file"]),
            t("one.npy", &["1-D", "2-D"]),
            t("three.npy", &["3-D", "2-D"]),
            t("int.npy", &["<i8", "float"]),
            t("trunc.npy", &["truncated"]),
            t("nan.npy", &["non-finite", "NaN"]),
            train_case(
                &["--source", "three.csv"],
                2,
                &["three.csv", "dimension 3", "moons", "dimension 2"],
            ),
            train_case(
                &["--source", "moons", "--target", "three.csv"],
                2,
                &["three.csv", "moons", "dimension"],
            ),
            case(
                &["eval", "--samples", "three.csv", "--target", "moons"],
                2,
                &["moons", "dimension", "3"],
            ),
            case(
                &["eval", "--samples", "nan.npy", "--target", "moons"],
                2,
                &["nan.npy", "non-finite"],
            ),
            case(
                &["eval", "--samples", "good.csv", "--target", "ragged.csv"],
                2,
                &["ragged.csv", "line 2"],
            ),
            case(
                &["plot", "samples", "--samples", "text.csv", "--out", "p.png"],
                2,
                &["text.csv", "abc"],
            ),
            case(
                &[
                    "plot",
                    "trajectories",
                    "--trajectory",
                    "good.csv",
                    "--out",
                    "p.png",
                ],
                2,
                &["trajectory", "d >= 2"],
            ),
            case(
                &[
                    "likelihood",
                    "--model",
                    "g.safetensors",
                    "--data",
                    "three.csv",
                ],
                2,
                &["--data", "three.csv", "dimension"],
            ),
            case(
                &[
                    "likelihood",
                    "--model",
                    "g.safetensors",
                    "--data",
                    "empty.csv",
                ],
                2,
                &["--data", "empty.csv", "no data"],
            ),
        ],
    );

    // No read permission. The suite may run as root, for whom mode 000 does not stop reading:
    // only when opening really fails does `fm` get to see the error, so only then is it asserted.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let p = d.join("secret.csv");
        std::fs::write(&p, b"1,2\n3,4\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
        let c = train_case(
            &["--target", "secret.csv"],
            2,
            &["secret.csv", "ermission denied"],
        );
        if std::fs::File::open(&p).is_err() {
            if let Some(f) = check(&c, &fm(&c.args, d)) {
                panic!("{f}");
            }
        } else {
            // Root reads it anyway: the run must then simply succeed, never crash.
            let o = fm(&c.args, d);
            assert_eq!(
                o.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

#[test]
fn bad_model_files_exit_2_naming_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = tiny_model(d, "m.safetensors");
    let bytes = std::fs::read(&m).unwrap();
    let w = |name: &str, bytes: &[u8]| std::fs::write(d.join(name), bytes).unwrap();
    w("trunc.safetensors", &bytes[..bytes.len() / 2]);
    w("header-only.safetensors", &bytes[..6]);
    w("text.safetensors", b"x,y\n1,2\n");
    w("empty.safetensors", b"");
    std::fs::create_dir(d.join("dir.safetensors")).unwrap();

    // Positive control: the rewrite helper round-trips a model that still samples.
    let st = Safetensors::read(&m);
    w("same.safetensors", &st.bytes());
    let o = fm(
        &[
            "sample",
            "--model",
            "same.safetensors",
            "--n",
            "5",
            "--out",
            "s.csv",
        ],
        d,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let mut st = Safetensors::read(&m);
    st.edit_config(|c| c["format_version"] = serde_json::json!(99));
    w("future.safetensors", &st.bytes());
    let mut st = Safetensors::read(&m);
    st.edit_config(|c| c["architecture"]["hidden"] = serde_json::json!([16, 16]));
    w("shapes.safetensors", &st.bytes());
    let mut st = Safetensors::read(&m);
    st.edit_config(|c| c["architecture"]["dim"] = serde_json::json!(3));
    w("dim.safetensors", &st.bytes());
    let mut st = Safetensors::read(&m);
    st.edit_config(|c| {
        c.as_object_mut().unwrap().remove("architecture");
    });
    w("noarch.safetensors", &st.bytes());
    let mut st = Safetensors::read(&m);
    st.scale_f32(f32::INFINITY);
    w("inf.safetensors", &st.bytes());

    let s = |model: &str, needles: &[&str]| {
        let mut n = vec![model];
        n.extend_from_slice(needles);
        case(&["sample", "--model", model, "--out", "s.csv"], 2, &n)
    };
    run_all(
        d,
        &[
            s("trunc.safetensors", &["truncated"]),
            s("header-only.safetensors", &["truncated"]),
            s("text.safetensors", &["not a readable safetensors file"]),
            s("empty.safetensors", &["safetensors"]),
            s("dir.safetensors", &["directory"]),
            s("missing.safetensors", &["no such file"]),
            s(
                "future.safetensors",
                &["format version 99", "versions 1 to 2", "upgrade"],
            ),
            s("shapes.safetensors", &["layers.0", "shape", "architecture"]),
            s("dim.safetensors", &["layers.0", "shape"]),
            s("noarch.safetensors", &["architecture"]),
            s("inf.safetensors", &["NaN or infinite"]),
            case(
                &[
                    "plot",
                    "loss",
                    "--model",
                    "future.safetensors",
                    "--out",
                    "l.png",
                ],
                2,
                &["future.safetensors", "version 99"],
            ),
            case(
                &[
                    "likelihood",
                    "--model",
                    "shapes.safetensors",
                    "--data",
                    "moons",
                ],
                2,
                &["shapes.safetensors", "shape"],
            ),
            case(
                &["eval", "--model", "text.safetensors", "--target", "moons"],
                2,
                &["text.safetensors"],
            ),
        ],
    );
}

#[test]
fn output_paths_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = tiny_model(d, "m.safetensors");
    let m = m.to_str().unwrap();
    std::fs::write(d.join("pts.csv"), b"1,2\n3,4\n5,6\n").unwrap();
    let missing = ["nodir", "does not exist"];
    run_all(
        d,
        &[
            train_case(
                &["--out", "nodir/m.safetensors"],
                2,
                &["nodir/m.safetensors", "does not exist"],
            ),
            train_case(
                &["--checkpoint-every", "1", "--checkpoint", "nodir/c.ckpt"],
                2,
                &["nodir/c.ckpt", "does not exist"],
            ),
            train_case(&["--out", "."], 2, &["directory"]),
            train_case(
                &["--resume", "--out", "r.safetensors"],
                2,
                &["r.safetensors.ckpt", "--resume", "checkpoint"],
            ),
            case(
                &["sample", "--model", m, "--out", "nodir/s.csv"],
                2,
                &missing,
            ),
            case(
                &[
                    "sample",
                    "--model",
                    m,
                    "--out",
                    "s.csv",
                    "--trajectory",
                    "nodir/t.csv",
                ],
                2,
                &missing,
            ),
            case(
                &["sample", "--model", m, "--out", "s.txt"],
                2,
                &["s.txt", ".csv or .npy"],
            ),
            case(
                &[
                    "likelihood",
                    "--model",
                    m,
                    "--data",
                    "moons",
                    "--out",
                    "nodir/ll.csv",
                ],
                2,
                &missing,
            ),
            case(
                &["plot", "loss", "--model", m, "--out", "nodir/l.png"],
                2,
                &missing,
            ),
            case(
                &[
                    "plot",
                    "samples",
                    "--samples",
                    "pts.csv",
                    "--out",
                    "nodir/p.png",
                ],
                2,
                &missing,
            ),
        ],
    );
    // Nothing was written by the failed runs.
    assert!(!d.join("nodir").exists());
    assert!(!d.join("r.safetensors").exists());
}

/// A model whose weights are scaled ×1000 is so stiff that dopri5 cannot reach t = 1 in 5 steps:
/// a failure of the computation (exit 1), with an error naming the solver and the limit.
#[test]
fn a_stiff_model_makes_dopri5_give_up_naming_the_solver_and_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = tiny_model(d, "m.safetensors");
    let mut st = Safetensors::read(&m);
    st.scale_f32(1e3);
    std::fs::write(d.join("stiff.safetensors"), st.bytes()).unwrap();
    run_all(
        d,
        &[
            case(
                &[
                    "sample",
                    "--model",
                    "stiff.safetensors",
                    "--n",
                    "20",
                    "--solver",
                    "dopri5",
                    "--max-steps",
                    "5",
                    "--out",
                    "s.csv",
                ],
                1,
                &["dopri5", "--max-steps 5", "more than 5 steps"],
            ),
            case(
                &[
                    "eval",
                    "--model",
                    "stiff.safetensors",
                    "--target",
                    "moons",
                    "--n",
                    "20",
                    "--solver",
                    "dopri5",
                    "--max-steps",
                    "3",
                ],
                1,
                &["dopri5", "--max-steps 3"],
            ),
        ],
    );
    assert!(!d.join("s.csv").exists(), "no samples from a failed run");
    // The unscaled model with a generous limit samples fine: the failure is the stiffness.
    let o = fm(
        &[
            "sample",
            "--model",
            "m.safetensors",
            "--n",
            "20",
            "--solver",
            "dopri5",
            "--max-steps",
            "1000",
            "--out",
            "s.csv",
        ],
        d,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
