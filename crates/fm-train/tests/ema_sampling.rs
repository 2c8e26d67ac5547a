//! Sampling uses the EMA weights when the model has them (and the raw weights when asked or
//! when there are none), through the public API: `fm_train::sample` on a trained model, before
//! and after a save/load round trip.

use fm_train::{
    ArchConfig, MatcherSpec, Objective, SampleOptions, TrainParams, TrainedModel, Trainer, sample,
};
use ndarray::{Array1, Array2};

/// A small model trained for a few steps, with an EMA.
fn trained() -> TrainedModel {
    let target = fm_data::Dataset::parse("moons", None).unwrap();
    let source = fm_data::Dataset::parse("gaussian", Some(2)).unwrap();
    let params = TrainParams::default()
        .steps(20)
        .batch(32)
        .seed(4)
        .ema(Some(0.9))
        .check()
        .unwrap();
    let arch = ArchConfig {
        hidden: vec![16, 16],
        ..ArchConfig::default()
    };
    let matcher = MatcherSpec::parse("icfm", Some(0.1), None, None).unwrap();
    let out = Trainer::new(source, target, matcher, Objective::Flow, arch, params)
        .unwrap()
        .run(&mut |_| {})
        .unwrap();
    assert!(out.model.ema.is_some(), "the run kept no EMA");
    out.model
}

/// Euler with `steps` steps of the network's own forward pass from `x_0`: an integrator that
/// shares no code with fm-ode.
fn euler(mlp: &fm_autograd::Mlp, x_0: &Array2<f64>, steps: usize) -> Array2<f64> {
    let mut x = x_0.clone();
    let h = 1.0 / steps as f64;
    for k in 0..steps {
        let t = Array1::from_elem(x.nrows(), k as f64 * h);
        let v = mlp.forward(t.view(), x.view()).unwrap();
        x = x + v * h;
    }
    x
}

fn max_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    (a - b).iter().fold(0.0, |m, d| m.max(d.abs()))
}

/// The model with EMA weights that clearly differ from the raw ones (the raw weights halved),
/// so a sampler that picked the wrong network cannot pass by accident.
fn model_with_distinct_ema() -> TrainedModel {
    let mut model = trained();
    let mut ema = model.mlp.clone();
    for p in ema.params_mut() {
        *p *= 0.5;
    }
    model.ema = Some(ema);
    model
}

fn options(use_ema: bool) -> SampleOptions {
    SampleOptions {
        n: 64,
        solver: fm_ode::SolverKind::Euler,
        steps: Some(50),
        seed: 3,
        use_ema,
        ..SampleOptions::default()
    }
}

#[test]
fn samples_come_from_the_ema_network() {
    let model = model_with_distinct_ema();
    let ema = model.ema.clone().unwrap();
    // The default options use the EMA.
    assert!(SampleOptions::default().use_ema);
    let (x_0, sol) = sample(&model, &options(true)).unwrap();
    let with_ema = euler(&ema, &x_0, 50);
    let with_raw = euler(&model.mlp, &x_0, 50);
    // The two networks really give different samples here...
    assert!(
        max_diff(&with_ema, &with_raw) > 0.05,
        "EMA and raw samples nearly agree: {}",
        max_diff(&with_ema, &with_raw)
    );
    // ...and the sampler's are the EMA network's (up to the f32 network's rounding of t).
    let d = max_diff(&sol.x, &with_ema);
    assert!(d < 1e-5, "samples are {d} from the EMA network's");
    assert!(max_diff(&sol.x, &with_raw) > 0.05);
}

#[test]
fn use_ema_false_and_no_ema_sample_the_raw_network() {
    let model = model_with_distinct_ema();
    let (x_0, sol) = sample(&model, &options(false)).unwrap();
    let d = max_diff(&sol.x, &euler(&model.mlp, &x_0, 50));
    assert!(d < 1e-5, "samples are {d} from the raw network's");
    // Without EMA weights the raw network is used even when the EMA is asked for.
    let mut plain = model.clone();
    plain.ema = None;
    let (_, sol_plain) = sample(&plain, &options(true)).unwrap();
    assert_eq!(sol_plain.x, sol.x);
}

#[test]
fn a_saved_and_loaded_model_still_samples_its_ema() {
    let model = model_with_distinct_ema();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    model.save(&path).unwrap();
    let loaded = TrainedModel::load(&path).unwrap();
    assert!(loaded.config.has_ema && loaded.ema.is_some());
    let (x_0, before) = sample(&model, &options(true)).unwrap();
    let (_, after) = sample(&loaded, &options(true)).unwrap();
    assert_eq!(after.x, before.x);
    let d = max_diff(&after.x, &euler(model.ema.as_ref().unwrap(), &x_0, 50));
    assert!(d < 1e-5, "loaded samples are {d} from the EMA network's");
}
