//! Determinism, resume and divergence of the trainer.

use fm_data::Dataset;
use fm_train::{
    ArchConfig, MatcherSpec, Objective, TrainError, TrainOutcome, TrainParams, TrainedModel,
    Trainer,
};
use std::path::Path;

fn arch() -> ArchConfig {
    ArchConfig {
        hidden: vec![16, 16],
        ..ArchConfig::default()
    }
}

fn train(
    matcher: &str,
    params: TrainParams,
    ckpt: Option<&Path>,
    resume: bool,
) -> Result<TrainOutcome, TrainError> {
    let target = Dataset::parse("moons", None).unwrap();
    let source = Dataset::parse("gaussian", Some(2)).unwrap();
    let spec = MatcherSpec::parse(matcher, Some(0.1), None, None).unwrap();
    let mut t = Trainer::new(
        source,
        target,
        spec,
        Objective::Flow,
        arch(),
        params.check()?,
    )?;
    if let Some(p) = ckpt {
        t = t.checkpoint_path(p);
    }
    t.resume(resume).run(&mut |_| {})
}

fn bits(m: &TrainedModel) -> Vec<u32> {
    let mut v: Vec<u32> = m.mlp.params().iter().map(|x| x.to_bits()).collect();
    if let Some(e) = &m.ema {
        v.extend(e.params().iter().map(|x| x.to_bits()));
    }
    v
}

#[test]
fn same_seed_same_bits_with_one_or_two_threads() {
    for matcher in ["otcfm", "icfm"] {
        // Batch 300 > the autograd's 256-row chunk, so the gradient is summed over chunks.
        let p = TrainParams::default()
            .steps(15)
            .batch(300)
            .seed(3)
            .ema(Some(0.9));
        let a = train(matcher, p.clone().threads(1), None, false).unwrap();
        let b = train(matcher, p.clone().threads(2), None, false).unwrap();
        assert_eq!(bits(&a.model), bits(&b.model), "{matcher}");
        let c = train(matcher, p.seed(4).threads(1), None, false).unwrap();
        assert_ne!(
            bits(&a.model),
            bits(&c.model),
            "{matcher}: seed must matter"
        );
    }
}

#[test]
fn resumed_run_is_bit_identical_to_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("m.ckpt");
    let p = TrainParams::default()
        .batch(64)
        .seed(9)
        .ema(Some(0.95))
        .log_every(5)
        .checkpoint_every(Some(10));
    let full = train("otcfm", p.clone().steps(30), None, false).unwrap();
    // An interrupted run: 20 of the steps, checkpointed.
    let part = train("otcfm", p.clone().steps(20), Some(&ck), false).unwrap();
    assert_eq!(part.checkpoints_written, 2);
    let resumed = train("otcfm", p.clone().steps(30).threads(2), Some(&ck), true).unwrap();
    assert_eq!(resumed.start_step, 20);
    assert_eq!(resumed.steps_run, 10);
    assert_eq!(bits(&resumed.model), bits(&full.model));
    assert_eq!(
        resumed.model.config.loss_history,
        full.model.config.loss_history
    );
    // A different seed cannot resume this checkpoint.
    let err = train("otcfm", p.clone().steps(30).seed(10), Some(&ck), true).unwrap_err();
    assert!(
        matches!(err, TrainError::CheckpointMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("seed"), "{err}");
    // No checkpoint: a clear error.
    let err = train(
        "otcfm",
        p.steps(30),
        Some(&dir.path().join("none.ckpt")),
        true,
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::NoCheckpoint { .. }), "{err}");
}

#[test]
fn divergence_names_the_step_and_writes_no_exploded_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("m.ckpt");
    let p = TrainParams::default()
        .batch(32)
        .steps(300)
        .lr(1e5)
        .checkpoint_every(Some(1));
    let err = train("icfm", p, Some(&ck), false).unwrap_err();
    let TrainError::NonFiniteLoss { step, .. } = &err else {
        panic!("{err}");
    };
    assert!(*step > 1, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("step {step}")) && msg.contains("--lr"),
        "{msg}"
    );
    assert!(!err.is_invalid_input());
    // The weights after step 1 already gave the exploded loss of step 2: no checkpoint is
    // called good, and none is left on disk (tests/stop_and_divergence.rs resumes the ones left
    // at smaller learning rates).
    assert_eq!(*step, 2, "{msg}");
    assert!(msg.contains("none was written"), "{msg}");
    assert!(!ck.exists());
}

#[test]
fn model_file_round_trip_samples_identically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let out = train(
        "otcfm",
        TrainParams::default().steps(5).batch(16).ema(Some(0.9)),
        None,
        false,
    )
    .unwrap();
    out.model.save(&path).unwrap();
    let back = TrainedModel::load(&path).unwrap();
    assert_eq!(bits(&back), bits(&out.model));
    let opts = fm_train::SampleOptions {
        n: 50,
        ..Default::default()
    };
    let (_, a) = fm_train::sample(&out.model, &opts).unwrap();
    let (_, b) = fm_train::sample(&back, &opts).unwrap();
    assert_eq!(a.x, b.x);
    assert_eq!(a.stats.nfe, 100);
}

#[test]
fn mismatched_dimensions_are_rejected() {
    let target = Dataset::parse("moons", None).unwrap();
    let source = Dataset::parse("gaussian", Some(3)).unwrap();
    let spec = MatcherSpec::parse("icfm", None, None, None).unwrap();
    let err = Trainer::new(
        source,
        target,
        spec,
        Objective::Flow,
        arch(),
        TrainParams::default().check().unwrap(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::DimensionMismatch {
                source_dim: 3,
                target_dim: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_invalid_input());
}
