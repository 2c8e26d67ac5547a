//! The Python loader `scripts/interop/fm_model.py` (numpy + safetensors) against the Rust side:
//! for a model file written by `fm-train`, both must give the same `v(t, x)`.
//!
//! Needs `python3` with numpy and safetensors. Without them each test prints a skip line and
//! passes, unless `FM_REQUIRE_PYTHON=1` (as in CI), where a missing Python is a failure.

use fm_autograd::Activation;
use fm_data::Dataset;
use fm_train::tensors::{self, Tensor};
use fm_train::{
    ArchConfig, CONFIG_KEY, MODEL_FORMAT, MODEL_FORMAT_VERSION, MatcherSpec, Objective,
    TrainParams, TrainedModel, Trainer,
};
use ndarray::{Array1, Array2, ArrayView2};
use rand::Rng;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Largest accepted `‖v_rust − v_python‖ / ‖v_python‖` per point. The Rust network computes in
/// f32, the loader in f64 from the same f32 weights.
const REL_TOL: f64 = 1e-5;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/interop/fm_model.py")
}

/// Whether python3 with numpy and safetensors is there; panics if it is not but required.
fn python_available(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import numpy, safetensors"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("FM_REQUIRE_PYTHON").as_deref() != Ok("1"),
            "FM_REQUIRE_PYTHON=1 but python3 with numpy and safetensors is missing: \
             run `python3 -m pip install numpy safetensors`"
        );
        println!("skipped {test}: python3 with numpy and safetensors not found");
    }
    ok
}

/// The loader's velocities for the points (row `i` at time `t[i]`), raw or EMA weights.
fn python_velocity(model: &Path, t: &Array1<f64>, x: ArrayView2<f64>, raw: bool) -> Array2<f64> {
    let dir = model.parent().unwrap();
    let points = dir.join("points.json");
    let rows: Vec<Vec<f64>> = x.outer_iter().map(|r| r.to_vec()).collect();
    let json = serde_json::json!({ "t": t.to_vec(), "x": rows });
    std::fs::write(&points, json.to_string()).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(script()).arg(model).arg(&points);
    if raw {
        cmd.arg("--raw");
    }
    let out = cmd.output().expect("run python3");
    assert!(
        out.status.success(),
        "the loader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from the loader");
    let v = v["v"].as_array().expect("a `v` array");
    let n = v.len();
    let d = x.ncols();
    assert_eq!(n, x.nrows(), "one velocity per point");
    Array2::from_shape_fn((n, d), |(i, j)| v[i][j].as_f64().expect("a number"))
}

/// The velocities `fm sample` would use: the model's field at each point's own time.
fn rust_velocity(m: &TrainedModel, t: &Array1<f64>, x: ArrayView2<f64>, ema: bool) -> Array2<f64> {
    let field = m.field(ema).unwrap();
    let mut out = Array2::zeros(x.raw_dim());
    for (i, &ti) in t.iter().enumerate() {
        let xi = x.row(i).insert_axis(ndarray::Axis(0));
        out.row_mut(i).assign(&field.velocity_vec(ti, xi).row(0));
    }
    out
}

/// The largest per-point relative difference.
fn max_rel_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    a.outer_iter()
        .zip(b.outer_iter())
        .map(|(ra, rb)| {
            let diff = (&ra - &rb).mapv(|v| v * v).sum().sqrt();
            let norm = rb.mapv(|v| v * v).sum().sqrt();
            diff / norm.max(1e-12)
        })
        .fold(0.0, f64::max)
}

/// `n` points with `t` in [0, 1] and `x` in [−3, 3]^d (both exactly representable in f32, the
/// network's input precision, so both sides see the same inputs).
fn points(n: usize, d: usize, seed: u64) -> (Array1<f64>, Array2<f64>) {
    let mut rng = fm_core::rng::seeded(seed);
    let t = Array1::from_shape_fn(n, |_| f64::from(rng.random_range(0.0f32..=1.0)));
    let x = Array2::from_shape_fn((n, d), |_| f64::from(rng.random_range(-3.0f32..3.0)));
    (t, x)
}

fn train(activation: &str, time_features: &str, dim: usize) -> TrainedModel {
    let arch = ArchConfig {
        dim,
        hidden: vec![16, 12],
        activation: activation.into(),
        time_features: time_features.into(),
    };
    let params = TrainParams::default()
        .steps(30)
        .batch(32)
        .lr(1e-2)
        .seed(7)
        .ema(Some(0.9))
        .check()
        .unwrap();
    let target = Dataset::parse("moons", None).unwrap();
    let target = if dim == 2 {
        target
    } else {
        Dataset::parse("gaussian", Some(dim)).unwrap()
    };
    let source = Dataset::parse("gaussian", Some(dim)).unwrap();
    let matcher = MatcherSpec::parse("icfm", Some(0.1), None, None).unwrap();
    Trainer::new(source, target, matcher, Objective::Flow, arch, params)
        .unwrap()
        .run(&mut |_| {})
        .unwrap()
        .model
}

/// Saves `m`, evaluates it on both sides with EMA and raw weights, checks they agree and that
/// the two weight sets differ by more than the tolerance (so a loader that picked the wrong
/// set would fail).
fn check_model(m: &TrainedModel, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    m.save(&path).unwrap();
    let (t, x) = points(24, m.config.architecture.dim, 11);
    let ema_rust = rust_velocity(m, &t, x.view(), true);
    let raw_rust = rust_velocity(m, &t, x.view(), false);
    assert!(
        max_rel_diff(&ema_rust, &raw_rust) > 100.0 * REL_TOL,
        "{label}: EMA and raw weights give nearly the same field; the check would not bite"
    );
    for (raw, want) in [(false, &ema_rust), (true, &raw_rust)] {
        let got = python_velocity(&path, &t, x.view(), raw);
        let rel = max_rel_diff(want, &got);
        println!(
            "{label} ({}): max relative difference {rel:.2e}",
            if raw { "raw" } else { "EMA" }
        );
        assert!(
            rel <= REL_TOL,
            "{label} ({}): Rust and Python differ by {rel:e} relative",
            if raw { "raw" } else { "EMA" }
        );
    }
}

#[test]
fn python_loader_matches_rust_for_every_activation_with_ema_and_raw_weights() {
    if !python_available("python_loader_matches_rust_for_every_activation") {
        return;
    }
    let names = [
        "selu",
        "silu",
        "elu",
        "relu",
        "tanh",
        "softplus",
        "gelu",
        "gelu-tanh",
    ];
    // Every activation the config accepts is named here (the alias `swish` is `silu`).
    assert_eq!(names.len(), Activation::ALL.len());
    for name in names {
        let m = train(name, "raw", 2);
        assert_eq!(
            m.config.architecture.mlp_config().unwrap().activation,
            Activation::ALL[names.iter().position(|n| *n == name).unwrap()],
            "the names follow Activation::ALL"
        );
        check_model(&m, name);
    }
}

#[test]
fn python_loader_matches_rust_with_fourier_time_features_in_3d() {
    if !python_available("python_loader_matches_rust_with_fourier_time_features_in_3d") {
        return;
    }
    check_model(&train("silu", "fourier:3", 3), "fourier:3, d = 3");
}

/// A config with only the required fields (as a user converting a model from elsewhere would
/// write it; see docs/interop.md) loads on both sides, with the omitted fields defaulted.
#[test]
fn a_minimal_config_loads_in_rust_and_python_alike() {
    let m = train("gelu", "raw", 2);
    let config = serde_json::json!({
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "architecture": { "hidden": [16, 12], "activation": "gelu" },
        "objective": "flow",
        "matcher": { "kind": "icfm", "sigma": 0.1, "coupling": "independent" },
    });
    let weights: Vec<Tensor> = m.to_file().weights;
    let bytes = tensors::encode(
        HashMap::from([(CONFIG_KEY.to_string(), config.to_string())]),
        &weights,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("minimal.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let back = TrainedModel::load(&path).unwrap();
    assert_eq!(back.config.architecture.dim, 2, "dim defaults to 2");
    assert_eq!(back.config.architecture.time_features, "raw");
    assert!(!back.config.has_ema && back.ema.is_none());
    assert_eq!(back.config.training, TrainParams::default());
    assert_eq!(back.mlp.params(), m.mlp.params());
    if !python_available("a_minimal_config_loads_in_rust_and_python_alike") {
        return;
    }
    let (t, x) = points(16, 2, 5);
    let want = rust_velocity(&back, &t, x.view(), true);
    let got = python_velocity(&path, &t, x.view(), false);
    let rel = max_rel_diff(&want, &got);
    assert!(rel <= REL_TOL, "minimal config: differ by {rel:e} relative");
}

/// The smallest config docs/interop.md shows (only the required fields, the architecture left
/// out) loads, read from the page itself, with TorchCFM's default architecture.
#[test]
fn the_minimal_config_of_the_docs_loads_with_every_default() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/interop.md"),
    )
    .unwrap();
    let start = doc
        .find("The smallest config")
        .expect("docs/interop.md shows the smallest config");
    let block = &doc[start..];
    let open = block.find("```json\n").unwrap() + "```json\n".len();
    let close = open + block[open..].find("```").unwrap();
    let config: serde_json::Value = serde_json::from_str(&block[open..close]).unwrap();
    let keys: Vec<&str> = config
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert!(!keys.contains(&"architecture"), "{keys:?}");
    // Weights of the default architecture (2-D, 3 × 64, raw t) from a short run.
    let params = TrainParams::default().steps(2).batch(8).check().unwrap();
    let m = Trainer::new(
        Dataset::parse("gaussian", Some(2)).unwrap(),
        Dataset::parse("moons", None).unwrap(),
        MatcherSpec::parse("icfm", Some(0.1), None, None).unwrap(),
        Objective::Flow,
        ArchConfig::default(),
        params,
    )
    .unwrap()
    .run(&mut |_| {})
    .unwrap()
    .model;
    let bytes = tensors::encode(
        HashMap::from([(CONFIG_KEY.to_string(), config.to_string())]),
        &m.to_file().weights,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("minimal.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let back = TrainedModel::load(&path).unwrap();
    assert_eq!(back.config.architecture, ArchConfig::default());
    assert_eq!(back.config.training, TrainParams::default());
    assert_eq!(
        back.config.source, "gaussian",
        "the source defaults to N(0, I)"
    );
    assert!(!back.config.has_ema && back.config.loss_history.is_empty());
    assert_eq!(back.mlp.params(), m.mlp.params());
    // It samples like the model its weights came from (raw weights: the file has no EMA).
    let opts = fm_train::SampleOptions {
        n: 20,
        use_ema: false,
        ..Default::default()
    };
    assert_eq!(
        fm_train::sample(&back, &opts).unwrap().1.x,
        fm_train::sample(&m, &opts).unwrap().1.x
    );
    // One required field left out is refused, naming it.
    for field in ["objective", "matcher", "format"] {
        let mut c = config.clone();
        c.as_object_mut().unwrap().remove(field);
        let bytes = tensors::encode(
            HashMap::from([(CONFIG_KEY.to_string(), c.to_string())]),
            &m.to_file().weights,
        )
        .unwrap();
        std::fs::write(&path, bytes).unwrap();
        let err = TrainedModel::load(&path).unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
}

/// A format-version-1 file said `gelu` for the tanh approximation: it must keep computing that
/// function on both sides, while a version-2 `gelu` is the exact GELU (a different field).
#[test]
fn a_version_1_gelu_file_keeps_the_tanh_gelu_on_both_sides() {
    let m = train("gelu-tanh", "raw", 2);
    let mut file = m.to_file();
    file.config.format_version = 1;
    file.config.architecture.activation = "gelu".into();
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("v1.safetensors");
    file.save(&old).unwrap();
    file.config.format_version = 2;
    let new = dir.path().join("v2.safetensors");
    file.save(&new).unwrap();
    let back_old = TrainedModel::load(&old).unwrap();
    let back_new = TrainedModel::load(&new).unwrap();
    assert_eq!(back_old.config.architecture.activation, "gelu-tanh");
    assert_eq!(
        back_new
            .config
            .architecture
            .mlp_config()
            .unwrap()
            .activation,
        Activation::Gelu
    );
    let (t, x) = points(16, 2, 9);
    let want = rust_velocity(&m, &t, x.view(), true);
    assert_eq!(rust_velocity(&back_old, &t, x.view(), true), want);
    let exact = rust_velocity(&back_new, &t, x.view(), true);
    assert!(
        max_rel_diff(&exact, &want) > 10.0 * REL_TOL,
        "the exact and tanh GELU give nearly the same field; the check would not bite"
    );
    if !python_available("a_version_1_gelu_file_keeps_the_tanh_gelu_on_both_sides") {
        return;
    }
    let rel_old = max_rel_diff(&want, &python_velocity(&old, &t, x.view(), false));
    let rel_new = max_rel_diff(&exact, &python_velocity(&new, &t, x.view(), false));
    assert!(
        rel_old <= REL_TOL,
        "version 1: differ by {rel_old:e} relative"
    );
    assert!(
        rel_new <= REL_TOL,
        "version 2: differ by {rel_new:e} relative"
    );
}

#[test]
fn the_loader_prints_a_usage_line_without_arguments() {
    if !python_available("the_loader_prints_a_usage_line_without_arguments") {
        return;
    }
    let out = Command::new("python3").arg(script()).output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("usage: fm_model.py MODEL"), "{text}");
}
