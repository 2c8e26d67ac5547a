//! End-to-end through the facade: train small flows, sample them, and measure W2 against fresh
//! target points. Budgets are small so the suite stays fast in a debug build; the margins are
//! set against the untrained network (and the source itself), which are far worse.

use flow_matching::data::Dataset;
use flow_matching::metrics::w2;
use flow_matching::train::{
    ArchConfig, MatcherSpec, Objective, SampleOptions, TrainParams, TrainedModel, Trainer, sample,
};

fn train(matcher: &str, sigma: f64, target: &str, steps: usize, seed: u64) -> TrainedModel {
    let tgt = Dataset::parse(target, None).unwrap();
    let src = Dataset::parse("gaussian", Some(tgt.dim())).unwrap();
    let spec = MatcherSpec::parse(matcher, Some(sigma), None, None).unwrap();
    let params = TrainParams::default()
        .steps(steps)
        .batch(128)
        .lr(3e-3)
        .seed(seed)
        .check()
        .unwrap();
    let arch = ArchConfig {
        hidden: vec![32, 32, 32],
        ..ArchConfig::default()
    };
    Trainer::new(src, tgt, spec, Objective::Flow, arch, params)
        .unwrap()
        .run(&mut |_| {})
        .unwrap()
        .model
}

/// W2 between `n` model samples (Euler, 50 steps) and `n` fresh target points.
fn model_w2(model: &TrainedModel, target: &str, n: usize) -> f64 {
    let opts = SampleOptions {
        n,
        steps: Some(50),
        seed: 11,
        ..Default::default()
    };
    let (_, sol) = sample(model, &opts).unwrap();
    let tgt = Dataset::parse(target, None).unwrap();
    let y = tgt
        .sample(n, &mut flow_matching::core::rng::seeded(12))
        .unwrap();
    w2(sol.x.view(), y.view()).unwrap()
}

#[test]
fn otcfm_learns_the_moons() {
    let untrained = train("otcfm", 0.1, "moons", 1, 0);
    let trained = train("otcfm", 0.1, "moons", 1200, 0);
    let (w_untrained, w_trained) = (
        model_w2(&untrained, "moons", 500),
        model_w2(&trained, "moons", 500),
    );
    eprintln!("moons W2: untrained {w_untrained:.3}, otcfm 1200 steps {w_trained:.3}");
    // Two independent 500-point moons samples are ~0.12 apart; N(0, I) is ~2.2 from the moons.
    assert!(w_untrained > 1.5, "{w_untrained}");
    assert!(w_trained < 0.6, "{w_trained}");
}

#[test]
fn icfm_learns_the_8gaussians() {
    let trained = train("icfm", 0.1, "8gaussians", 600, 1);
    let w = model_w2(&trained, "8gaussians", 500);
    // The source N(0, I) is ~3.8 from the 8 Gaussians; two 500-point samples ~0.7 apart.
    let src = Dataset::parse("gaussian", Some(2))
        .unwrap()
        .sample(500, &mut flow_matching::core::rng::seeded(3))
        .unwrap();
    let tgt = Dataset::parse("8gaussians", None)
        .unwrap()
        .sample(500, &mut flow_matching::core::rng::seeded(4))
        .unwrap();
    let w_source = w2(src.view(), tgt.view()).unwrap();
    eprintln!("8gaussians W2: source {w_source:.3}, icfm 600 steps {w:.3}");
    assert!(w_source > 3.0, "{w_source}");
    assert!(w < 1.5, "{w}");
}

#[test]
fn saved_model_samples_like_the_trained_one() {
    let dir = std::env::temp_dir().join(format!("fm-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    let model = train("otcfm", 0.1, "moons", 20, 5);
    model.save(&path).unwrap();
    let back = TrainedModel::load(&path).unwrap();
    let opts = SampleOptions {
        n: 64,
        solver: flow_matching::ode::SolverKind::Dopri5,
        ..Default::default()
    };
    let (_, a) = sample(&model, &opts).unwrap();
    let (_, b) = sample(&back, &opts).unwrap();
    assert_eq!(a.x, b.x);
    assert!(a.stats.nfe > 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
