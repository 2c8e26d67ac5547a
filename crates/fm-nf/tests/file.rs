//! The model file (round trip, kinds, damaged files), bad input, and reproducibility.
use fm_core::LogDensity;
use fm_nf::{CouplingConfig, CouplingFlow, MaxLikelihood, NfError, TrainConfig, model_kind, train};
use ndarray::Array2;
use std::collections::HashMap;

fn small() -> CouplingConfig {
    CouplingConfig {
        dim: 3,
        layers: 3,
        hidden: vec![8],
        ..Default::default()
    }
}

fn data(n: usize) -> Array2<f64> {
    Array2::from_shape_fn((n, 3), |(i, j)| ((i * 31 + j * 17) % 23) as f64 / 7.0 - 1.5)
}

#[test]
fn save_load_round_trip_keeps_every_bit() {
    let mut rng = fm_core::rng::seeded(3);
    let mut flow = CouplingFlow::new(small(), &mut rng).unwrap();
    let tc = TrainConfig {
        steps: 20,
        batch_size: 16,
        lr: 1e-2,
        ..Default::default()
    };
    train(&mut flow, data(64).view(), &tc, &mut rng).unwrap();
    assert!(flow.actnorm_ready());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flow.safetensors");
    flow.save(&path).unwrap();
    let back = CouplingFlow::load(&path).unwrap();
    assert_eq!(back, flow);
    let x = data(10);
    assert_eq!(
        back.log_prob(x.view()).unwrap(),
        flow.log_prob(x.view()).unwrap()
    );
    assert_eq!(model_kind(&path).unwrap().as_deref(), Some("coupling"));
    // No temporary file is left beside it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

fn write_with_config(path: &std::path::Path, json: &str) {
    let meta = HashMap::from([("fm_config".to_string(), json.to_string())]);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = Vec::new();
    std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

#[test]
fn a_file_of_another_kind_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.safetensors");
    write_with_config(&path, r#"{"kind": "residual", "format_version": 1}"#);
    let err = CouplingFlow::load(&path).unwrap_err();
    assert!(
        matches!(&err, NfError::WrongKind { found, .. } if found == "residual"),
        "{err}"
    );
    assert!(
        err.to_string().contains("`residual`, not `coupling`"),
        "{err}"
    );
    // A flow-matching model file (no kind).
    write_with_config(&path, r#"{"format": "fm-model", "format_version": 1}"#);
    let err = CouplingFlow::load(&path).unwrap_err().to_string();
    assert!(err.contains("flow matching"), "{err}");
    assert_eq!(model_kind(&path).unwrap(), None);
}

#[test]
fn damaged_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    assert!(
        CouplingFlow::load(&path)
            .unwrap_err()
            .to_string()
            .contains("no such file")
    );
    std::fs::write(&path, b"not a model").unwrap();
    assert!(matches!(
        CouplingFlow::load(&path),
        Err(NfError::BadFile { .. })
    ));
    // A coupling config whose tensors are missing.
    let cfg = serde_json::json!({
        "kind": "coupling", "format_version": 1, "crate_version": "0.1.0",
        "flow": small(), "actnorm_ready": true,
    });
    write_with_config(&path, &cfg.to_string());
    let err = CouplingFlow::load(&path).unwrap_err().to_string();
    assert!(err.contains("tensors"), "{err}");
    // Saving into a directory that does not exist.
    let flow = CouplingFlow::new(small(), &mut fm_core::rng::seeded(0)).unwrap();
    let err = flow
        .save(&dir.path().join("nope").join("m.safetensors"))
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn bad_settings_and_inputs_are_errors_not_panics() {
    let mut rng = fm_core::rng::seeded(0);
    for (cfg, name) in [
        (CouplingConfig { dim: 1, ..small() }, "dim"),
        (
            CouplingConfig {
                layers: 0,
                ..small()
            },
            "layers",
        ),
        (
            CouplingConfig {
                hidden: vec![],
                ..small()
            },
            "hidden",
        ),
        (
            CouplingConfig {
                hidden: vec![4, 0],
                ..small()
            },
            "hidden",
        ),
        (
            CouplingConfig {
                scale_bound: 0.0,
                ..small()
            },
            "scale_bound",
        ),
        (
            CouplingConfig {
                scale_bound: f64::NAN,
                ..small()
            },
            "scale_bound",
        ),
    ] {
        let err = CouplingFlow::new(cfg, &mut rng).unwrap_err();
        assert!(
            matches!(&err, NfError::InvalidParameter { name: n, .. } if *n == name),
            "{err}"
        );
    }
    let mut flow = CouplingFlow::new(small(), &mut rng).unwrap();
    assert!(flow.log_prob(Array2::zeros((2, 2)).view()).is_err());
    assert!(flow.inverse(Array2::zeros((0, 3)).view()).is_err());
    assert!(flow.sample(0, &mut rng).is_err());
    let mut bad = data(8);
    bad[[3, 1]] = f64::NAN;
    assert!(flow.log_prob(bad.view()).is_err());
    let tc = TrainConfig::default();
    assert!(train(&mut flow, bad.view(), &tc, &mut rng).is_err());
    let zero_steps = TrainConfig {
        steps: 0,
        ..tc.clone()
    };
    assert!(train(&mut flow, data(8).view(), &zero_steps, &mut rng).is_err());
    let bad_lr = TrainConfig { lr: -1.0, ..tc };
    assert!(train(&mut flow, data(8).view(), &bad_lr, &mut rng).is_err());
    assert!(flow.init_actnorm(data(1).view()).is_err());
}

#[test]
fn same_seed_same_bits() {
    let run = || {
        let mut rng = fm_core::rng::seeded(42);
        let mut flow = CouplingFlow::new(small(), &mut rng).unwrap();
        let tc = TrainConfig {
            steps: 15,
            batch_size: 8,
            lr: 1e-2,
            ..Default::default()
        };
        train(&mut flow, data(40).view(), &tc, &mut rng).unwrap();
        (flow.params().to_vec(), flow.sample(5, &mut rng).unwrap())
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    // And training did change the parameters.
    let fresh = CouplingFlow::new(small(), &mut fm_core::rng::seeded(42)).unwrap();
    assert_ne!(fresh.params(), a.0.as_slice());
}

#[test]
fn actnorm_data_init_standardises_the_first_layer() {
    let x = data(200).mapv(|v| 3.0 * v + 5.0);
    // With a one-layer flow whose coupling is the identity (fresh: zero last layer), the output
    // of the first ActNorm is the latent: zero mean and unit variance per dimension.
    let one = CouplingConfig {
        layers: 1,
        ..small()
    };
    let mut f1 = CouplingFlow::new(one, &mut fm_core::rng::seeded(1)).unwrap();
    f1.init_actnorm(x.view()).unwrap();
    let (z, _) = f1.forward(x.view()).unwrap();
    for j in 0..3 {
        let c = z.column(j);
        assert!(c.mean().unwrap().abs() < 1e-12);
        assert!((c.std(0.0) - 1.0).abs() < 1e-12);
    }
}
