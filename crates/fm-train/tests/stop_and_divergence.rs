//! Stopping a run through its stop flag, and the divergence rule across resumes.

use fm_data::Dataset;
use fm_train::{
    ArchConfig, Checkpoint, DIVERGENCE_FACTOR, MAX_ABS_WEIGHT, MatcherSpec, Objective, TrainError,
    TrainOutcome, TrainParams, TrainedModel, Trainer,
};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn trainer(params: TrainParams, ckpt: &Path, resume: bool) -> Trainer {
    let target = Dataset::parse("moons", None).unwrap();
    let source = Dataset::parse("gaussian", Some(2)).unwrap();
    let spec = MatcherSpec::parse("icfm", Some(0.1), None, None).unwrap();
    let arch = ArchConfig {
        hidden: vec![16, 16],
        ..ArchConfig::default()
    };
    Trainer::new(
        source,
        target,
        spec,
        Objective::Flow,
        arch,
        params.check().unwrap(),
    )
    .unwrap()
    .checkpoint_path(ckpt)
    .resume(resume)
}

fn bits(m: &TrainedModel) -> Vec<u32> {
    let mut v: Vec<u32> = m.mlp.params().iter().map(|x| x.to_bits()).collect();
    v.extend(
        m.ema
            .iter()
            .flat_map(|e| e.params().iter().map(|x| x.to_bits())),
    );
    v
}

fn stop_at(t: Trainer, at: usize) -> TrainOutcome {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    t.stop_flag(flag)
        .run(&mut move |p| {
            if p.step == at {
                f.store(true, Ordering::SeqCst);
            }
        })
        .unwrap()
}

#[test]
fn a_stopped_run_writes_a_checkpoint_and_resumes_bit_identically() {
    for threads in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("m.ckpt");
        let p = TrainParams::default()
            .steps(40)
            .batch(32)
            .seed(5)
            .log_every(3)
            .threads(threads);
        let full = trainer(p.clone(), &dir.path().join("other.ckpt"), false)
            .run(&mut |_| {})
            .unwrap();
        assert!(!full.interrupted);
        // No --checkpoint-every: the stop alone writes the checkpoint.
        let part = stop_at(trainer(p.clone(), &ck, false), 13);
        assert!(part.interrupted);
        assert_eq!(part.model.config.steps_done, 13);
        assert_eq!(part.steps_run, 13);
        assert_eq!(part.checkpoints_written, 1);
        assert_eq!(Checkpoint::load(&ck).unwrap().step(), 13);
        assert_ne!(bits(&part.model), bits(&full.model));
        let rest = trainer(p, &ck, true).run(&mut |_| {}).unwrap();
        assert_eq!(rest.start_step, 13);
        assert!(!rest.interrupted);
        assert_eq!(bits(&rest.model), bits(&full.model), "threads {threads}");
        assert_eq!(rest.model.config, full.model.config);
    }
}

#[test]
fn a_flag_set_before_the_run_stops_after_the_first_step() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("m.ckpt");
    let flag = Arc::new(AtomicBool::new(true));
    let out = trainer(TrainParams::default().steps(30).batch(16), &ck, false)
        .stop_flag(flag)
        .run(&mut |_| {})
        .unwrap();
    assert!(out.interrupted);
    assert_eq!(out.model.config.steps_done, 1);
    assert_eq!(Checkpoint::load(&ck).unwrap().step(), 1);
}

/// Whatever the learning rate, a checkpoint left on disk is sane: it resumes with a small
/// learning rate to a finite model whose loss keeps the rule against the stored reference.
#[test]
fn every_checkpoint_left_after_a_divergence_is_sane() {
    for lr in [3.0, 30.0, 300.0, 1e4, 1e5] {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("m.ckpt");
        let p = TrainParams::default()
            .steps(200)
            .batch(32)
            .checkpoint_every(Some(1));
        let first = trainer(p.clone().lr(lr), &ck, false).run(&mut |_| {});
        let step = match &first {
            Ok(out) => out.model.config.steps_done,
            Err(TrainError::NonFiniteLoss { step, .. }) => *step,
            Err(e) => panic!("lr {lr}: {e}"),
        };
        if !ck.exists() {
            let msg = first.unwrap_err().to_string();
            assert!(msg.contains("none was written"), "lr {lr}: {msg}");
            continue;
        }
        let saved = Checkpoint::load(&ck).unwrap();
        let reference = saved.reference_loss().expect("the reference is stored");
        assert!(reference.is_finite() && reference > 0.0);
        assert!(
            saved
                .params()
                .iter()
                .all(|w| w.is_finite() && f64::from(w.abs()) <= MAX_ABS_WEIGHT)
        );
        let out = trainer(p.lr(1e-3).steps(step + 5), &ck, true)
            .run(&mut |_| {})
            .unwrap_or_else(|e| panic!("lr {lr}: resuming the checkpoint failed: {e}"));
        assert!(
            out.final_loss.is_finite() && out.final_loss <= DIVERGENCE_FACTOR * reference,
            "lr {lr}: final loss {} against reference {reference}",
            out.final_loss
        );
        assert!(out.model.mlp.params().iter().all(|w| w.is_finite()));
    }
}

/// The reference loss is the run's first, kept across a resume: a resumed run with a huge
/// learning rate trips the rule against it (not against its own first loss).
#[test]
fn the_rule_survives_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("m.ckpt");
    let p = TrainParams::default()
        .steps(20)
        .batch(32)
        .checkpoint_every(Some(10));
    trainer(p.clone(), &ck, false).run(&mut |_| {}).unwrap();
    let reference = Checkpoint::load(&ck).unwrap().reference_loss().unwrap();
    let err = trainer(p.lr(1e5).steps(200), &ck, true)
        .run(&mut |_| {})
        .unwrap_err();
    let TrainError::NonFiniteLoss { step, .. } = &err else {
        panic!("{err}");
    };
    assert!(*step > 20, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("{reference:e}")), "{msg}");
    assert!(msg.contains("intact") && msg.contains("--resume"), "{msg}");
    // The checkpoint on disk is still the good one of step 20.
    assert_eq!(Checkpoint::load(&ck).unwrap().step(), 20);
}
