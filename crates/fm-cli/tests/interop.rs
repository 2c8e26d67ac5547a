//! `fm export --format torchcfm` and `fm import --format torchcfm`: TorchCFM's `MLP` state-dict
//! layout (`net.0`, `net.2`, … of an `nn.Sequential` of `Linear` layers and activations).
//!
//! The round trip must give bit-identical weights and identical `fm sample` output; a Python
//! check (`scripts/interop/torchcfm_check.py`, numpy + safetensors, PyTorch and torchcfm when
//! importable) must reproduce the Rust model's `v(t, x)` from the exported file. Without
//! python3 and numpy the Python test prints a skip line, unless `FM_REQUIRE_PYTHON=1` (CI).

use flow_matching::core::VectorField;
use flow_matching::train::TrainedModel;
use flow_matching::train::tensors::{self, Tensor, TensorData};
use ndarray::{Array1, Array2};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Largest accepted per-point `‖v_rust − v_python‖ / ‖v_python‖`: the Rust network computes in
/// f32, the Python side in f64 from the same f32 weights.
const REL_TOL: f64 = 1e-5;

fn fm(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fm"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run fm")
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "fm failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Exit code 2, an `error:` line containing every needle, no panic.
fn fails(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
}

/// Trains a small model into `dir/name`.
fn train(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "train", "--target", "moons", "--steps", "40", "--batch", "64", "--lr", "0.01", "--seed",
        "3", "--quiet", "--out", name,
    ];
    args.extend_from_slice(extra);
    ok(fm(&args, dir));
    dir.join(name)
}

fn tensors_of(path: &Path) -> (HashMap<String, String>, Vec<Tensor>) {
    let bytes = std::fs::read(path).unwrap();
    tensors::decode(path, &bytes).unwrap()
}

fn f32s(t: &Tensor) -> &[f32] {
    match &t.data {
        TensorData::F32(v) => v,
        TensorData::F64(_) => panic!("{} is F64", t.name),
    }
}

/// Export, import and sample both models: the weights must survive bit for bit and the samples
/// byte for byte.
fn round_trip(dir: &Path, model: &Path, no_ema: bool) {
    let m = model.to_str().unwrap();
    let mut export = vec![
        "export",
        "--format",
        "torchcfm",
        "--model",
        m,
        "--out",
        "sd.safetensors",
    ];
    if no_ema {
        export.push("--no-ema");
    }
    ok(fm(&export, dir));
    ok(fm(
        &[
            "import",
            "--format",
            "torchcfm",
            "--in",
            "sd.safetensors",
            "--out",
            "back.safetensors",
        ],
        dir,
    ));
    let orig = TrainedModel::load(model).unwrap();
    let back = TrainedModel::load(&dir.join("back.safetensors")).unwrap();
    let used = orig.network(!no_ema);
    assert!(
        !no_ema || orig.ema.is_some(),
        "the test needs a model with EMA weights"
    );
    assert_ne!(
        orig.network(true).params(),
        orig.network(false).params(),
        "EMA and raw weights must differ, or picking the wrong set would go unnoticed"
    );
    // The state dict: net.{2i} holds layer i's weights, bit for bit.
    let (meta, sd) = tensors_of(&dir.join("sd.safetensors"));
    let by_name: HashMap<String, Vec<f32>> = used
        .to_tensors()
        .into_iter()
        .map(|(n, _, d)| (n, d))
        .collect();
    assert_eq!(sd.len(), by_name.len());
    for t in &sd {
        let (i, kind) = t.name["net.".len()..].split_once('.').unwrap();
        let i: usize = i.parse().unwrap();
        assert_eq!(i % 2, 0, "{}", t.name);
        let want = &by_name[&format!("layers.{}.{kind}", i / 2)];
        assert_eq!(
            f32s(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{}",
            t.name
        );
    }
    let record: serde_json::Value = serde_json::from_str(&meta["fm_export"]).unwrap();
    assert_eq!(record["weights"], if no_ema { "raw" } else { "ema" });
    assert_eq!(record["input"], "[x, t]");
    assert_eq!(
        record["activation"],
        orig.config
            .architecture
            .mlp_config()
            .unwrap()
            .activation
            .name()
    );
    // The imported model: the exported weights as its (only) weights.
    assert!(back.ema.is_none());
    assert_eq!(
        back.mlp
            .params()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>(),
        used.params()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    );
    assert_eq!(back.config.source, orig.config.source);
    assert_eq!(back.config.architecture, orig.config.architecture);
    // `fm sample` of the original (EMA by default, or --no-ema) equals that of the import.
    let mut a = vec![
        "sample", "--model", m, "--n", "300", "--seed", "5", "--out", "a.csv",
    ];
    if no_ema {
        a.push("--no-ema");
    }
    ok(fm(&a, dir));
    ok(fm(
        &[
            "sample",
            "--model",
            "back.safetensors",
            "--n",
            "300",
            "--seed",
            "5",
            "--out",
            "b.csv",
        ],
        dir,
    ));
    let sa = std::fs::read(dir.join("a.csv")).unwrap();
    assert!(sa.len() > 300 * 4, "the samples file is too short");
    assert_eq!(sa, std::fs::read(dir.join("b.csv")).unwrap());
}

#[test]
fn export_then_import_keeps_the_weights_and_the_samples_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let model = train(dir.path(), "m.safetensors", &["--hidden", "16,16,16"]);
    round_trip(dir.path(), &model, false);
}

#[test]
fn the_round_trip_holds_for_other_depths_activations_and_the_raw_weights() {
    let dir = tempfile::tempdir().unwrap();
    let model = train(
        dir.path(),
        "m.safetensors",
        &["--hidden", "12,8", "--activation", "gelu"],
    );
    round_trip(dir.path(), &model, true);
    let dir = tempfile::tempdir().unwrap();
    let model = train(
        dir.path(),
        "m.safetensors",
        &[
            "--hidden",
            "10,10,10,10",
            "--activation",
            "gelu-tanh",
            "--source",
            "8gaussians",
        ],
    );
    round_trip(dir.path(), &model, false);
}

/// Whether python3 with numpy and safetensors is there; panics if not but required.
fn python_available(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import numpy, safetensors"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("FM_REQUIRE_PYTHON").as_deref() != Ok("1"),
            "FM_REQUIRE_PYTHON=1 but python3 with numpy and safetensors is missing"
        );
        println!("skipped {test}: python3 with numpy and safetensors not found");
    }
    ok
}

fn max_rel_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    a.outer_iter()
        .zip(b.outer_iter())
        .map(|(ra, rb)| {
            let diff = (&ra - &rb).mapv(|v| v * v).sum().sqrt();
            diff / rb.mapv(|v| v * v).sum().sqrt().max(1e-12)
        })
        .fold(0.0, f64::max)
}

fn matrix(v: &serde_json::Value, n: usize, d: usize) -> Array2<f64> {
    let rows = v.as_array().expect("an array of rows");
    assert_eq!(rows.len(), n);
    Array2::from_shape_fn((n, d), |(i, j)| rows[i][j].as_f64().unwrap())
}

#[test]
fn the_exported_state_dict_reproduces_the_rust_field_in_python() {
    if !python_available("the_exported_state_dict_reproduces_the_rust_field_in_python") {
        return;
    }
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/interop/torchcfm_check.py");
    for (hidden, act) in [("16,16,16", "selu"), ("12,8", "gelu"), ("9,9", "gelu-tanh")] {
        let dir = tempfile::tempdir().unwrap();
        let model = train(
            dir.path(),
            "m.safetensors",
            &["--hidden", hidden, "--activation", act],
        );
        ok(fm(
            &[
                "export",
                "--model",
                "m.safetensors",
                "--out",
                "sd.safetensors",
            ],
            dir.path(),
        ));
        let m = TrainedModel::load(&model).unwrap();
        // Points with t and x exactly representable in f32 (the network's input precision).
        let n = 40;
        let t = Array1::from_shape_fn(n, |i| i as f64 / (n - 1) as f64 * 0.75 + 0.125);
        let x = Array2::from_shape_fn((n, 2), |(i, j)| ((i * 7 + j * 3) % 13) as f64 / 4.0 - 1.5);
        let field = m.field(true).unwrap();
        let mut want = Array2::zeros((n, 2));
        for i in 0..n {
            let xi = x.row(i).insert_axis(ndarray::Axis(0));
            want.row_mut(i).assign(&field.velocity_vec(t[i], xi).row(0));
        }
        let rows: Vec<Vec<f64>> = x.outer_iter().map(|r| r.to_vec()).collect();
        let points = dir.path().join("points.json");
        std::fs::write(
            &points,
            serde_json::json!({"t": t.to_vec(), "x": rows}).to_string(),
        )
        .unwrap();
        let out = Command::new("python3")
            .arg(&script)
            .arg(dir.path().join("sd.safetensors"))
            .arg(&points)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let rel = max_rel_diff(&want, &matrix(&v["v"], n, 2));
        println!(
            "{hidden} {act}: numpy forward of the state dict, max relative difference {rel:.2e}"
        );
        assert!(rel <= REL_TOL, "{hidden} {act}: numpy differs by {rel:e}");
        if v["torch"].is_null() {
            println!("{hidden} {act}: torch not importable, PyTorch comparison skipped");
        } else {
            let rel = max_rel_diff(&want, &matrix(&v["torch"], n, 2));
            println!(
                "{hidden} {act}: {} forward, max relative difference {rel:.2e}",
                v["torch_module"]
            );
            assert!(rel <= REL_TOL, "{hidden} {act}: torch differs by {rel:e}");
            if act == "selu" && hidden == "16,16,16" {
                // TorchCFM itself is used whenever it is installed next to torch.
                let has_torchcfm = Command::new("python3")
                    .args(["-c", "import torchcfm"])
                    .output()
                    .is_ok_and(|o| o.status.success());
                if has_torchcfm {
                    assert_eq!(v["torch_module"], "torchcfm.models.models.MLP");
                }
            }
        }
    }
}

/// A state dict as PyTorch writes one for TorchCFM's `MLP(dim=2, w=5, time_varying=True)`,
/// without the export record, with weights `w(i)`.
fn torchcfm_state_dict(path: &Path, names: &[(usize, usize, usize)]) -> Vec<(Vec<f32>, Vec<f32>)> {
    let mut ts = Vec::new();
    let mut layers = Vec::new();
    for (k, &(idx, out, inp)) in names.iter().enumerate() {
        let w: Vec<f32> = (0..out * inp)
            .map(|j| ((j * 37 + k * 11) % 17) as f32 / 17.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..out).map(|j| (j as f32 - 1.0) / 8.0).collect();
        ts.push(Tensor::f32(
            format!("net.{idx}.weight"),
            vec![out, inp],
            w.clone(),
        ));
        ts.push(Tensor::f32(format!("net.{idx}.bias"), vec![out], b.clone()));
        layers.push((w, b));
    }
    std::fs::write(path, tensors::encode(HashMap::new(), &ts).unwrap()).unwrap();
    layers
}

#[test]
fn a_plain_torchcfm_state_dict_imports_as_selu_from_a_gaussian_and_computes_its_mlp() {
    let dir = tempfile::tempdir().unwrap();
    let shape = [(0, 5, 3), (2, 5, 5), (4, 5, 5), (6, 2, 5)];
    let layers = torchcfm_state_dict(&dir.path().join("sd.safetensors"), &shape);
    ok(fm(
        &[
            "import",
            "--in",
            "sd.safetensors",
            "--out",
            "m.safetensors",
            "--width",
            "5",
            "--dim",
            "2",
        ],
        dir.path(),
    ));
    let m = TrainedModel::load(&dir.path().join("m.safetensors")).unwrap();
    assert_eq!(m.config.architecture.hidden, vec![5, 5, 5]);
    assert_eq!(m.config.architecture.activation, "selu");
    assert_eq!(m.config.source, "gaussian");
    // The oracle: TorchCFM's forward pass written out, Linear and SELU on [x, t].
    let selu = |z: f64| {
        let (l, a) = (1.050_700_987_355_480_5, 1.673_263_242_354_377_3);
        if z > 0.0 {
            l * z
        } else {
            l * a * (z.exp() - 1.0)
        }
    };
    let (t, x) = (0.25, [0.5, -1.0]);
    let mut h = vec![x[0], x[1], t];
    for (k, (w, b)) in layers.iter().enumerate() {
        let out = b.len();
        let mut next = vec![0.0; out];
        for (o, nx) in next.iter_mut().enumerate() {
            *nx = f64::from(b[o])
                + (0..h.len())
                    .map(|i| f64::from(w[o * h.len() + i]) * h[i])
                    .sum::<f64>();
            if k + 1 < layers.len() {
                *nx = selu(*nx);
            }
        }
        h = next;
    }
    let v = m
        .field(true)
        .unwrap()
        .velocity_vec(t, ndarray::array![[x[0], x[1]]].view());
    for j in 0..2 {
        assert!(
            (v[[0, j]] - h[j]).abs() < 1e-5 * (1.0 + h[j].abs()),
            "{v} vs {h:?}"
        );
    }
    ok(fm(
        &[
            "sample",
            "--model",
            "m.safetensors",
            "--n",
            "10",
            "--out",
            "s.csv",
        ],
        dir.path(),
    ));
}

#[test]
fn bad_state_dicts_and_flags_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    torchcfm_state_dict(
        &d.join("sd.safetensors"),
        &[(0, 5, 3), (2, 5, 5), (4, 2, 5)],
    );
    let import = |extra: &[&str]| {
        let mut a = vec!["import", "--in", "sd.safetensors", "--out", "m.safetensors"];
        a.extend_from_slice(extra);
        fm(&a, d)
    };
    fails(&import(&["--width", "6"]), &["--width 6", "5,5"]);
    fails(
        &import(&["--hidden", "5,5,5"]),
        &["--hidden 5,5,5", "--hidden 5,5"],
    );
    fails(&import(&["--dim", "3"]), &["--dim 3", "dimension 2"]);
    fails(
        &import(&["--activation", "sine"]),
        &["--activation sine", "gelu-tanh"],
    );
    fails(
        &import(&["--format", "onnx"]),
        &["--format onnx", "torchcfm"],
    );
    fails(&import(&["--source", "moons3d"]), &["--source moons3d"]);
    assert!(
        !d.join("m.safetensors").exists(),
        "a refused import wrote its output"
    );
    // Linear layers not at net.0, net.2, …; a state dict without time input; other tensors.
    torchcfm_state_dict(&d.join("gap.safetensors"), &[(0, 5, 3), (4, 2, 5)]);
    fails(
        &fm(
            &[
                "import",
                "--in",
                "gap.safetensors",
                "--out",
                "m.safetensors",
            ],
            d,
        ),
        &["net.4", "net.0, net.2"],
    );
    torchcfm_state_dict(&d.join("notime.safetensors"), &[(0, 5, 2), (2, 2, 5)]);
    fails(
        &fm(
            &[
                "import",
                "--in",
                "notime.safetensors",
                "--out",
                "m.safetensors",
            ],
            d,
        ),
        &["time_varying"],
    );
    torchcfm_state_dict(&d.join("chain.safetensors"), &[(0, 5, 3), (2, 2, 4)]);
    fails(
        &fm(
            &[
                "import",
                "--in",
                "chain.safetensors",
                "--out",
                "m.safetensors",
            ],
            d,
        ),
        &["net.0.weight has 5 outputs", "net.2.weight takes 4 inputs"],
    );
    // A NaN weight is refused by the model reader's checks before anything is written.
    let ts = vec![
        Tensor::f32(
            "net.0.weight",
            vec![2, 3],
            vec![0.1, f32::NAN, 0.0, 0.0, 0.0, 0.0],
        ),
        Tensor::f32("net.0.bias", vec![2], vec![0.0; 2]),
    ];
    std::fs::write(
        d.join("nan.safetensors"),
        tensors::encode(HashMap::new(), &ts).unwrap(),
    )
    .unwrap();
    fails(
        &fm(
            &[
                "import",
                "--in",
                "nan.safetensors",
                "--out",
                "m.safetensors",
            ],
            d,
        ),
        &["NaN"],
    );
    assert!(!d.join("m.safetensors").exists());
    // Models TorchCFM's MLP cannot hold, and an fm model given to import.
    train(
        d,
        "f.safetensors",
        &["--hidden", "8", "--time-features", "fourier:2"],
    );
    fails(
        &fm(
            &[
                "export",
                "--model",
                "f.safetensors",
                "--out",
                "x.safetensors",
            ],
            d,
        ),
        &["fourier:2", "--time-features raw"],
    );
    fails(
        &fm(
            &["import", "--in", "f.safetensors", "--out", "x.safetensors"],
            d,
        ),
        &["fm model file already"],
    );
    fails(
        &fm(&["export", "--model", "f.safetensors", "--out", "x.pt"], d),
        &[".safetensors"],
    );
}

#[test]
fn export_and_import_have_help_and_report_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for cmd in ["export", "import"] {
        let o = ok(fm(&[cmd, "--help"], d));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("--format") && text.contains("torchcfm"),
            "{cmd}: {text}"
        );
    }
    train(d, "m.safetensors", &["--hidden", "8,8", "--ema", "0"]);
    let o = ok(fm(
        &[
            "export",
            "--model",
            "m.safetensors",
            "--out",
            "sd.safetensors",
            "--json",
        ],
        d,
    ));
    let out = String::from_utf8_lossy(&o.stdout);
    let r: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    // Without EMA weights the raw ones are exported.
    assert_eq!(r["weights"], "raw");
    assert_eq!(r["hidden"], serde_json::json!([8, 8]));
    let o = ok(fm(
        &[
            "import",
            "--in",
            "sd.safetensors",
            "--out",
            "back.safetensors",
            "--json",
        ],
        d,
    ));
    let out = String::from_utf8_lossy(&o.stdout);
    let r: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(r["dim"], 2);
    assert_eq!(r["activation"], "selu");
    assert_eq!(r["source"], "gaussian");
    // Export again over its own earlier output: fm recognises the file as its own.
    ok(fm(
        &[
            "export",
            "--model",
            "m.safetensors",
            "--out",
            "sd.safetensors",
        ],
        d,
    ));
    // But an unrelated existing file is not replaced without --force.
    std::fs::write(d.join("other.safetensors"), b"not ours").unwrap();
    fails(
        &fm(
            &[
                "export",
                "--model",
                "m.safetensors",
                "--out",
                "other.safetensors",
            ],
            d,
        ),
        &["other.safetensors", "--force"],
    );
}
