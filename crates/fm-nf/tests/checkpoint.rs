//! Stop flag, checkpoints and resume of `train_with`: for each kind, a run stopped part-way
//! (by the flag, set from inside the loss at a chosen step) and resumed from its checkpoint
//! ends bit-identical to an uninterrupted run — parameters, losses and the RNG stream — and a
//! checkpoint refuses to continue a different run.
use fm_autograd::Activation;
use fm_nf::{
    CnfConfig, CnfEval, CnfMle, CouplingConfig, CouplingFlow, LogDetEstimator, MaxLikelihood,
    NfCheckpoint, NfError, ProbeNoise, ResidualConfig, ResidualFlow, Result, Resumable,
    TraceEstimator, TrainConfig, TrainControl, train, train_with,
};
use ndarray::{Array2, ArrayView2};
use rand::{Rng, RngCore};
use serde_json::Value;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// A model that raises `flag` during its `at`-th loss evaluation (as Ctrl-C would mid-step).
struct Stopper<'a, M> {
    inner: M,
    flag: &'a AtomicBool,
    calls: Cell<usize>,
    at: usize,
}

impl<M: MaxLikelihood> MaxLikelihood for Stopper<'_, M> {
    fn params(&self) -> &[f64] {
        self.inner.params()
    }
    fn params_mut(&mut self) -> &mut [f64] {
        self.inner.params_mut()
    }
    fn nll_and_grad(&self, x: ArrayView2<f64>, rng: &mut dyn RngCore) -> Result<(f64, Vec<f64>)> {
        self.calls.set(self.calls.get() + 1);
        if self.calls.get() == self.at {
            self.flag.store(true, Ordering::SeqCst);
        }
        self.inner.nll_and_grad(x, rng)
    }
    fn prepare(&mut self, b: ArrayView2<f64>) -> Result<()> {
        self.inner.prepare(b)
    }
}

impl<M: Resumable> Resumable for Stopper<'_, M> {
    fn kind(&self) -> &str {
        self.inner.kind()
    }
    fn settings(&self) -> Value {
        self.inner.settings()
    }
    fn state(&self) -> Value {
        self.inner.state()
    }
    fn restore_state(&mut self, s: &Value) -> Result<()> {
        self.inner.restore_state(s)
    }
}

fn data() -> Array2<f64> {
    let mut rng = fm_core::rng::seeded(5);
    Array2::from_shape_fn((300, 2), |(_, j)| {
        rng.random_range(-1.0..1.0) * if j == 0 { 2.0 } else { 0.5 } + 1.0
    })
}

const TC: TrainConfig = TrainConfig {
    steps: 24,
    batch_size: 32,
    lr: 5e-3,
    max_grad_norm: Some(10.0),
    log_every: 5,
};

/// Runs the three scenarios for a model built by `make(seed)` and compares the bits.
fn check_resume<M: Resumable + Clone>(make: impl Fn(u64) -> M) {
    let data = data();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.ckpt");
    // Uninterrupted, with the plain `train`.
    let mut full = make(1);
    let mut rng = fm_core::rng::seeded(9);
    let full_report = train(&mut full, data.view(), &TC, &mut rng).unwrap();
    let next_full: u64 = rng.random();

    // Stopped by the flag during step 11: the step completes, the checkpoint is written.
    let flag = AtomicBool::new(false);
    let mut stopped = Stopper {
        inner: make(1),
        flag: &flag,
        calls: Cell::new(0),
        at: 11,
    };
    let control = TrainControl {
        stop: Some(&flag),
        checkpoint: Some(&ckpt),
        checkpoint_every: None,
        resume: false,
    };
    let r = train_with(
        &mut stopped,
        data.view(),
        &TC,
        &mut fm_core::rng::seeded(9),
        &control,
    )
    .unwrap();
    assert!(
        r.interrupted && r.steps_done == 11 && r.checkpoints_written == 1,
        "{r:?}"
    );
    assert_eq!(NfCheckpoint::load(&ckpt).unwrap().step(), 11);
    assert_ne!(stopped.inner.params(), full.params());

    // Resumed into a model with other initial weights and an RNG at another position: the
    // checkpoint replaces both.
    let mut resumed = make(2);
    assert_ne!(resumed.params(), full.params());
    let mut rng = fm_core::rng::seeded(12345);
    let control = TrainControl {
        checkpoint: Some(&ckpt),
        resume: true,
        ..Default::default()
    };
    let r = train_with(&mut resumed, data.view(), &TC, &mut rng, &control).unwrap();
    assert_eq!((r.start_step, r.steps_done, r.interrupted), (11, 24, false));
    let bits = |m: &M| m.params().iter().map(|p| p.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&resumed),
        bits(&full),
        "{}: parameters differ",
        full.kind()
    );
    assert_eq!(
        r.losses,
        full_report.losses,
        "{}: losses differ",
        full.kind()
    );
    assert_eq!(resumed.state(), full.state());
    assert_eq!(rng.random::<u64>(), next_full, "the RNG stream differs");

    // Periodic checkpoints: every 8 steps, the last at step 24.
    let mut periodic = make(1);
    let control = TrainControl {
        checkpoint: Some(&ckpt),
        checkpoint_every: Some(8),
        ..Default::default()
    };
    let r = train_with(
        &mut periodic,
        data.view(),
        &TC,
        &mut fm_core::rng::seeded(9),
        &control,
    )
    .unwrap();
    assert_eq!(r.checkpoints_written, 3);
    assert_eq!(bits(&periodic), bits(&full));
    assert_eq!(NfCheckpoint::load(&ckpt).unwrap().step(), 24);

    // A checkpoint refuses other runs: other training settings, other data, a smaller total.
    let resume = TrainControl {
        checkpoint: Some(&ckpt),
        resume: true,
        ..Default::default()
    };
    let other_lr = TrainConfig { lr: 1e-3, ..TC };
    let mut m = make(1);
    let err = train_with(
        &mut m,
        data.view(),
        &other_lr,
        &mut fm_core::rng::seeded(9),
        &resume,
    )
    .unwrap_err();
    assert!(err.to_string().contains("training settings"), "{err}");
    let other_data = data.mapv(|v| v + 1e-9);
    let err = train_with(
        &mut m,
        other_data.view(),
        &TC,
        &mut fm_core::rng::seeded(9),
        &resume,
    )
    .unwrap_err();
    assert!(err.to_string().contains("training data"), "{err}");
    let short = TrainConfig { steps: 10, ..TC };
    let err = train_with(
        &mut m,
        data.view(),
        &short,
        &mut fm_core::rng::seeded(9),
        &resume,
    )
    .unwrap_err();
    assert!(
        matches!(err, NfError::InvalidParameter { name: "steps", .. }),
        "{err}"
    );
}

#[test]
fn coupling_runs_resume_bit_identically() {
    check_resume(|seed| {
        let cfg = CouplingConfig {
            layers: 3,
            hidden: vec![8],
            ..Default::default()
        };
        assert!(
            cfg.actnorm,
            "the test covers ActNorm's data-dependent state"
        );
        CouplingFlow::new(cfg, &mut fm_core::rng::seeded(seed)).unwrap()
    });
}

#[test]
fn residual_runs_resume_bit_identically() {
    // Russian roulette and the probes draw from the training RNG at every step.
    check_resume(|seed| {
        let cfg = ResidualConfig {
            blocks: 2,
            hidden: vec![8],
            estimator: LogDetEstimator::RussianRoulette {
                min_terms: 1,
                p: 0.5,
            },
            ..Default::default()
        };
        ResidualFlow::new(cfg, &mut fm_core::rng::seeded(seed)).unwrap()
    });
}

#[test]
fn cnf_runs_resume_bit_identically() {
    // Hutchinson probes draw from the training RNG at every step.
    check_resume(|seed| {
        let cfg = CnfConfig {
            hidden: vec![8],
            activation: Activation::Tanh,
            solver: "midpoint".into(),
            train_steps: 2,
            eval: CnfEval::Fixed,
            trace: TraceEstimator::Hutchinson {
                probes: 1,
                noise: ProbeNoise::Gaussian,
            },
            ..Default::default()
        };
        CnfMle::new(cfg, &mut fm_core::rng::seeded(seed)).unwrap()
    });
}

#[test]
fn a_checkpoint_of_one_kind_does_not_resume_another_and_bad_files_are_named() {
    let data = data();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("c.ckpt");
    let mut cnf = CnfMle::new(
        CnfConfig {
            hidden: vec![4],
            train_steps: 1,
            ..Default::default()
        },
        &mut fm_core::rng::seeded(0),
    )
    .unwrap();
    let control = TrainControl {
        checkpoint: Some(&ckpt),
        checkpoint_every: Some(2),
        ..Default::default()
    };
    let tc = TrainConfig { steps: 2, ..TC };
    train_with(
        &mut cnf,
        data.view(),
        &tc,
        &mut fm_core::rng::seeded(0),
        &control,
    )
    .unwrap();
    let mut flow = CouplingFlow::new(Default::default(), &mut fm_core::rng::seeded(0)).unwrap();
    let resume = TrainControl {
        checkpoint: Some(&ckpt),
        resume: true,
        ..Default::default()
    };
    let err = train_with(
        &mut flow,
        data.view(),
        &tc,
        &mut fm_core::rng::seeded(0),
        &resume,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("cnf-mle") && err.contains("--model cnf-mle"),
        "{err}"
    );
    // A missing checkpoint, a model file and garbage are errors naming the file.
    let missing = dir.path().join("none.ckpt");
    let err = NfCheckpoint::load(&missing).unwrap_err().to_string();
    assert!(
        err.contains("none.ckpt") && err.contains("no such checkpoint"),
        "{err}"
    );
    let model = dir.path().join("m.safetensors");
    cnf.save(&model).unwrap();
    let err = NfCheckpoint::load(&model).unwrap_err().to_string();
    assert!(err.contains("not a checkpoint"), "{err}");
    std::fs::write(&missing, b"garbage").unwrap();
    assert!(NfCheckpoint::load(&missing).is_err());
    // Resume or periodic checkpoints without a path are refused.
    let err = train_with(
        &mut cnf,
        data.view(),
        &tc,
        &mut fm_core::rng::seeded(0),
        &TrainControl {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            NfError::InvalidParameter {
                name: "checkpoint",
                ..
            }
        ),
        "{err}"
    );
}
