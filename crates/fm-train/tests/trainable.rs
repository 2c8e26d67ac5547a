//! Networks other than the built-in MLP trained through `Trainer::run_with`: the loss falls, a
//! stopped run resumes bit-identically, the divergence rule fires, named tensors round trip; and
//! the MLP through the generic path gives the bits of `Trainer::run`.

use fm_autograd::Mlp;
use fm_core::VectorField;
use fm_data::Dataset;
use fm_train::tensors::{Tensor, TensorData};
use fm_train::{
    ArchConfig, Batch, Checkpoint, DIVERGENCE_FACTOR, MatcherSpec, NetworkField, Objective,
    TrainError, TrainOutcome, TrainParams, TrainableField, TrainedNet, Trainer,
};
use ndarray::{Array2, ArrayView1, ArrayView2};
use rand::Rng;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One hidden tanh layer, `v(t, x) = W2 tanh(W1 [x, t] + b1) + b2`, with a hand-written backward
/// pass in f64: a network that shares no code with `fm_autograd::Mlp`.
#[derive(Debug, Clone)]
struct TanhNet {
    d: usize,
    h: usize,
    /// `[W1 (h × (d + 1)), b1 (h), W2 (d × h), b2 (d)]`, row-major.
    p: Vec<f32>,
}

impl TanhNet {
    fn new(d: usize, h: usize, rng: &mut impl Rng) -> Self {
        let n = h * (d + 1) + h + d * h + d;
        let p = (0..n).map(|_| rng.random_range(-0.5..0.5)).collect();
        Self { d, h, p }
    }
    /// Offsets of W1, b1, W2, b2.
    fn offsets(&self) -> [usize; 4] {
        let (d, h) = (self.d, self.h);
        let w1 = 0;
        let b1 = h * (d + 1);
        let w2 = b1 + h;
        let b2 = w2 + d * h;
        [w1, b1, w2, b2]
    }
    /// Hidden activations and outputs of one row.
    fn row(&self, t: f64, x: ArrayView1<f64>) -> (Vec<f64>, Vec<f64>) {
        let (d, h) = (self.d, self.h);
        let [w1, b1, w2, b2] = self.offsets();
        let p = |i: usize| f64::from(self.p[i]);
        let a: Vec<f64> = (0..h)
            .map(|k| {
                let mut z = p(b1 + k) + p(w1 + k * (d + 1) + d) * t;
                for j in 0..d {
                    z += p(w1 + k * (d + 1) + j) * x[j];
                }
                z.tanh()
            })
            .collect();
        let v = (0..d)
            .map(|i| p(b2 + i) + (0..h).map(|k| p(w2 + i * h + k) * a[k]).sum::<f64>())
            .collect();
        (a, v)
    }
}

impl TrainableField for TanhNet {
    fn dim(&self) -> usize {
        self.d
    }
    fn params(&self) -> &[f32] {
        &self.p
    }
    fn params_mut(&mut self) -> &mut [f32] {
        &mut self.p
    }
    fn velocity(&self, t: ArrayView1<f64>, x: ArrayView2<f64>) -> Result<Array2<f64>, TrainError> {
        let mut out = Array2::zeros((x.nrows(), self.d));
        for (i, r) in x.rows().into_iter().enumerate() {
            let (_, v) = self.row(t[i], r);
            out.row_mut(i).assign(&ndarray::Array1::from(v));
        }
        Ok(out)
    }
    fn loss_and_grad(&mut self, b: &Batch, grads: &mut [f32]) -> Result<f64, TrainError> {
        let (d, h) = (self.d, self.h);
        let [w1, b1, w2, b2] = self.offsets();
        let n = b.x_t.nrows();
        let scale = 2.0 / (n * d) as f64;
        let mut g = vec![0.0_f64; self.p.len()];
        let mut sq = 0.0;
        for i in 0..n {
            let x = b.x_t.row(i);
            let (a, v) = self.row(b.t[i], x);
            let mut da = vec![0.0; h];
            for o in 0..d {
                let r = v[o] - b.target[[i, o]];
                sq += r * r;
                let e = scale * r;
                g[b2 + o] += e;
                for k in 0..h {
                    g[w2 + o * h + k] += e * a[k];
                    da[k] += e * f64::from(self.p[w2 + o * h + k]);
                }
            }
            for k in 0..h {
                let dz = da[k] * (1.0 - a[k] * a[k]);
                g[b1 + k] += dz;
                for j in 0..d {
                    g[w1 + k * (d + 1) + j] += dz * x[j];
                }
                g[w1 + k * (d + 1) + d] += dz * b.t[i];
            }
        }
        for (dst, v) in grads.iter_mut().zip(g) {
            *dst = v as f32;
        }
        Ok(sq / (n * d) as f64)
    }
    fn architecture(&self) -> String {
        format!("tanh-net d={} h={}", self.d, self.h)
    }
    fn to_tensors(&self) -> Vec<Tensor> {
        let (d, h) = (self.d, self.h);
        let [w1, b1, w2, b2] = self.offsets();
        let p = &self.p;
        vec![
            Tensor::f32("w1", vec![h, d + 1], p[w1..b1].to_vec()),
            Tensor::f32("b1", vec![h], p[b1..w2].to_vec()),
            Tensor::f32("w2", vec![d, h], p[w2..b2].to_vec()),
            Tensor::f32("b2", vec![d], p[b2..].to_vec()),
        ]
    }
    fn set_tensors(&mut self, tensors: &[Tensor]) -> Result<(), TrainError> {
        let mine = self.to_tensors();
        let mut p = Vec::with_capacity(self.p.len());
        for want in &mine {
            let found = tensors.iter().find(|t| t.name == want.name);
            match found {
                Some(Tensor {
                    shape,
                    data: TensorData::F32(v),
                    ..
                }) if *shape == want.shape => p.extend_from_slice(v),
                _ => {
                    return Err(TrainError::UnknownName {
                        what: "tensor",
                        name: want.name.clone(),
                        expected: format!("an F32 tensor of shape {:?}", want.shape),
                    });
                }
            }
        }
        if tensors.len() != mine.len() {
            return Err(TrainError::UnknownName {
                what: "tensor set",
                name: format!("{} tensors", tensors.len()),
                expected: "w1, b1, w2, b2".into(),
            });
        }
        self.p = p;
        Ok(())
    }
}

fn trainer(params: TrainParams, ckpt: Option<&Path>, resume: bool) -> Trainer {
    let target = Dataset::parse("moons", None).unwrap();
    let source = Dataset::parse("gaussian", Some(2)).unwrap();
    let spec = MatcherSpec::parse("icfm", Some(0.1), None, None).unwrap();
    let arch = ArchConfig {
        hidden: vec![16, 16],
        ..ArchConfig::default()
    };
    let t = Trainer::new(
        source,
        target,
        spec,
        Objective::Flow,
        arch,
        params.check().unwrap(),
    )
    .unwrap()
    .resume(resume);
    match ckpt {
        Some(p) => t.checkpoint_path(p),
        None => t,
    }
}

fn net(seed: u64) -> TanhNet {
    TanhNet::new(2, 24, &mut fm_core::rng::seeded(seed))
}

fn bits<N: TrainableField>(m: &TrainedNet<N>) -> Vec<u32> {
    let mut v: Vec<u32> = m.net.params().iter().map(|x| x.to_bits()).collect();
    v.extend(
        m.ema
            .iter()
            .flat_map(|e| e.params().iter().map(|x| x.to_bits())),
    );
    v
}

/// The hand-written backward pass against central differences of its own loss, so "the loss
/// falls" below tests the trainer, not a wrong gradient.
#[test]
fn the_test_network_gradient_matches_finite_differences() {
    let t = trainer(TrainParams::default().batch(16), None, false);
    let batch = t.batch(0).unwrap();
    let mut n = net(3);
    let mut g = vec![0.0; n.params().len()];
    n.loss_and_grad(&batch, &mut g).unwrap();
    let mut scratch = vec![0.0; g.len()];
    for i in (0..g.len()).step_by(7) {
        let h = 1e-2_f32;
        let mut plus = n.clone();
        plus.p[i] += h;
        let mut minus = n.clone();
        minus.p[i] -= h;
        let lp = plus.loss_and_grad(&batch, &mut scratch).unwrap();
        let lm = minus.loss_and_grad(&batch, &mut scratch).unwrap();
        let h = f64::from(plus.p[i]) - f64::from(minus.p[i]);
        let fd = (lp - lm) / h;
        assert!(
            (fd - f64::from(g[i])).abs() < 1e-3 * (1.0 + fd.abs()),
            "parameter {i}: {} vs {fd}",
            g[i]
        );
    }
}

#[test]
fn a_custom_network_learns_and_samples() {
    let p = TrainParams::default()
        .steps(800)
        .batch(64)
        .lr(1e-2)
        .seed(2)
        .log_every(10);
    let t = trainer(p, None, false);
    let out = t.run_with(net(1), &mut |_| {}).unwrap();
    assert_eq!(out.model.steps_done, 800);
    assert!(out.model.ema.is_some());
    // The loss on ten batches the run never drew, before and after training.
    let held_out = |n: &TanhNet| {
        let mut n = n.clone();
        let mut g = vec![0.0; n.params().len()];
        (1000..1010)
            .map(|k| n.loss_and_grad(&t.batch(k).unwrap(), &mut g).unwrap())
            .sum::<f64>()
            / 10.0
    };
    let (before, after) = (held_out(&net(1)), held_out(&out.model.net));
    assert!(after < 0.8 * before, "{before} -> {after}");
    // The EMA network is the same network with other weights, and samples through fm-ode.
    let field = out.model.field(true).unwrap();
    let x_0 = fm_core::StandardNormal::new(2)
        .unwrap()
        .sample(200, &mut fm_core::rng::seeded(9));
    let sol = fm_ode::Integrator::new(fm_ode::Euler::default())
        .span(0.0, 1.0)
        .steps(50)
        .run(&*field, x_0.view())
        .unwrap();
    assert!(sol.x.iter().all(|v| v.is_finite()));
    // Samples moved towards the moons: their mean is nearer the moons' than N(0, I)'s 0 is.
    let m = sol.x.mean_axis(ndarray::Axis(0)).unwrap();
    let x_1 = Dataset::parse("moons", None)
        .unwrap()
        .sample(4000, &mut fm_core::rng::seeded(10))
        .unwrap();
    let target = x_1.mean_axis(ndarray::Axis(0)).unwrap();
    let off = (&m - &target).mapv(|v| v * v).sum().sqrt();
    let start = target.mapv(|v| v * v).sum().sqrt();
    assert!(off < 0.8 * start, "{m} vs {target}");
}

fn stop_at<N: TrainableField>(t: Trainer, n: N, at: usize) -> TrainOutcome<TrainedNet<N>> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    t.stop_flag(flag)
        .run_with(n, &mut move |p| {
            if p.step == at {
                f.store(true, Ordering::SeqCst);
            }
        })
        .unwrap()
}

#[test]
fn a_custom_network_resumes_bit_identically() {
    for threads in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("n.ckpt");
        let p = TrainParams::default()
            .steps(40)
            .batch(32)
            .seed(4)
            .log_every(3)
            .checkpoint_every(Some(10))
            .threads(threads);
        let full = trainer(p.clone(), None, false)
            .run_with(net(1), &mut |_| {})
            .unwrap();
        let part = stop_at(trainer(p.clone(), Some(&ck), false), net(1), 23);
        assert!(part.interrupted);
        assert_eq!(part.model.steps_done, 23);
        assert_eq!(
            part.checkpoints_written, 3,
            "steps 10, 20 and the stop at 23"
        );
        assert_eq!(Checkpoint::load(&ck).unwrap().step(), 23);
        assert_ne!(bits(&part.model), bits(&full.model));
        // Resumed into a network initialised differently: the checkpoint's weights win.
        let rest = trainer(p, Some(&ck), true)
            .run_with(net(77), &mut |_| {})
            .unwrap();
        assert_eq!(rest.start_step, 23);
        assert_eq!(bits(&rest.model), bits(&full.model), "threads {threads}");
        assert_eq!(rest.model.loss_history, full.model.loss_history);
        assert_eq!(rest.final_loss.to_bits(), full.final_loss.to_bits());
    }
}

#[test]
fn a_checkpoint_resumes_only_the_network_that_wrote_it() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("n.ckpt");
    let p = TrainParams::default()
        .steps(10)
        .batch(16)
        .checkpoint_every(Some(5));
    trainer(p.clone(), Some(&ck), false)
        .run_with(net(1), &mut |_| {})
        .unwrap();
    let saved = Checkpoint::load(&ck).unwrap();
    let id = saved
        .identity()
        .network
        .as_ref()
        .expect("a network identity");
    assert_eq!(id.architecture, "tanh-net d=2 h=24");
    assert_eq!(id.params, net(1).params().len());
    let more = p.clone().steps(20);
    // Another width, the MLP of `run`, and the MLP through `run_with` are all refused.
    let wider = TanhNet::new(2, 25, &mut fm_core::rng::seeded(0));
    let err = trainer(more.clone(), Some(&ck), true)
        .run_with(wider, &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(err, TrainError::CheckpointMismatch { .. }) && err.to_string().contains("network"),
        "{err}"
    );
    let err = trainer(more.clone(), Some(&ck), true)
        .run(&mut |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("network"), "{err}");
    // And the other way round: an MLP checkpoint does not resume a custom network.
    let mlp_ck = dir.path().join("m.ckpt");
    trainer(p, Some(&mlp_ck), false).run(&mut |_| {}).unwrap();
    assert!(
        Checkpoint::load(&mlp_ck)
            .unwrap()
            .identity()
            .network
            .is_none()
    );
    let err = trainer(more, Some(&mlp_ck), true)
        .run_with(net(1), &mut |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("network"), "{err}");
}

/// `run` is `run_with` on the MLP initialised from stream 0 of the seed: same weights, EMA,
/// losses, for one thread and several, with checkpoints and a resume in between.
#[test]
fn the_mlp_through_run_with_gives_the_bits_of_run() {
    for threads in [1, 2] {
        let p = TrainParams::default()
            .steps(30)
            .batch(32)
            .seed(8)
            .log_every(4)
            .threads(threads);
        let t = trainer(p.clone(), None, false);
        let reference = t.run(&mut |_| {}).unwrap();
        let cfg = t.arch().mlp_config().unwrap();
        let mlp = Mlp::new(&cfg, &mut fm_core::rng::seeded(8)).unwrap();
        let mut losses = Vec::new();
        let generic = t
            .run_with(mlp.clone(), &mut |p| losses.push(p.loss))
            .unwrap();
        let want: Vec<u32> = reference
            .model
            .mlp
            .params()
            .iter()
            .map(|x| x.to_bits())
            .collect();
        let got: Vec<u32> = generic
            .model
            .net
            .params()
            .iter()
            .map(|x| x.to_bits())
            .collect();
        assert_eq!(got, want, "threads {threads}");
        assert_eq!(
            generic.model.ema.as_ref().unwrap().params(),
            reference.model.ema.as_ref().unwrap().params()
        );
        assert_eq!(
            generic.model.loss_history,
            reference.model.config.loss_history
        );
        assert_eq!(generic.final_loss.to_bits(), reference.final_loss.to_bits());
        assert_eq!(losses.len(), 30);
        // Through a stop and a resume of the generic path too.
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("g.ckpt");
        stop_at(trainer(p.clone(), Some(&ck), false), mlp.clone(), 11);
        let rest = trainer(p, Some(&ck), true)
            .run_with(mlp, &mut |_| {})
            .unwrap();
        assert_eq!(rest.model.net.params(), reference.model.mlp.params());
    }
}

/// A network whose "gradient" points uphill: Adam climbs the loss until the rule stops the run,
/// and the checkpoint left on disk is the last one whose loss kept the rule.
#[test]
fn the_divergence_rule_fires_for_a_network_that_blows_up() {
    #[derive(Debug, Clone)]
    struct Uphill(TanhNet);
    impl TrainableField for Uphill {
        fn dim(&self) -> usize {
            2
        }
        fn params(&self) -> &[f32] {
            self.0.params()
        }
        fn params_mut(&mut self) -> &mut [f32] {
            self.0.params_mut()
        }
        fn velocity(
            &self,
            t: ArrayView1<f64>,
            x: ArrayView2<f64>,
        ) -> Result<Array2<f64>, TrainError> {
            self.0.velocity(t, x)
        }
        fn loss_and_grad(&mut self, b: &Batch, grads: &mut [f32]) -> Result<f64, TrainError> {
            let loss = self.0.loss_and_grad(b, grads)?;
            grads.iter_mut().for_each(|g| *g = -*g);
            Ok(loss)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("u.ckpt");
    let p = TrainParams::default()
        .steps(5000)
        .batch(16)
        .lr(0.5)
        .checkpoint_every(Some(10));
    let err = trainer(p.clone(), Some(&ck), false)
        .run_with(Uphill(net(1)), &mut |_| {})
        .unwrap_err();
    let TrainError::NonFiniteLoss {
        step,
        loss,
        reason,
        checkpoint_note,
        ..
    } = &err
    else {
        panic!("{err}");
    };
    assert!(*step > 10 && *step < 5000, "{err}");
    assert!(reason.contains("exceeds") || !loss.is_finite(), "{err}");
    let saved = Checkpoint::load(&ck).unwrap();
    assert!(
        checkpoint_note.contains(&format!("step {}", saved.step())),
        "{err}"
    );
    assert!(saved.step() < *step);
    // The saved weights keep the rule: their loss on the batch after them is within the bound.
    let reference = saved.reference_loss().unwrap();
    let mut n = net(1);
    n.params_mut().copy_from_slice(saved.params());
    let batch = trainer(p, None, false).batch(saved.step()).unwrap();
    let mut g = vec![0.0; n.params().len()];
    let l = n.loss_and_grad(&batch, &mut g).unwrap();
    assert!(
        l.is_finite() && l <= DIVERGENCE_FACTOR * reference,
        "{l} vs {reference}"
    );
}

#[test]
fn a_non_finite_loss_ends_the_run_at_its_step() {
    #[derive(Debug, Clone)]
    struct NanAfter(TanhNet, usize);
    impl TrainableField for NanAfter {
        fn dim(&self) -> usize {
            2
        }
        fn params(&self) -> &[f32] {
            self.0.params()
        }
        fn params_mut(&mut self) -> &mut [f32] {
            self.0.params_mut()
        }
        fn velocity(
            &self,
            t: ArrayView1<f64>,
            x: ArrayView2<f64>,
        ) -> Result<Array2<f64>, TrainError> {
            self.0.velocity(t, x)
        }
        fn loss_and_grad(&mut self, b: &Batch, grads: &mut [f32]) -> Result<f64, TrainError> {
            self.1 += 1;
            let loss = self.0.loss_and_grad(b, grads)?;
            Ok(if self.1 > 6 { f64::NAN } else { loss })
        }
    }
    let err = trainer(TrainParams::default().steps(20).batch(16), None, false)
        .run_with(NanAfter(net(1), 0), &mut |_| {})
        .unwrap_err();
    let TrainError::NonFiniteLoss { step, reason, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(*step, 7, "{err}");
    assert!(reason.contains("NaN"), "{err}");
}

#[test]
fn named_tensors_round_trip() {
    // The test network's own names, the MLP's PyTorch names, and the default single tensor.
    let a = net(1);
    let mut b = net(2);
    assert_ne!(a.params(), b.params());
    b.set_tensors(&a.to_tensors()).unwrap();
    assert_eq!(a.params(), b.params());
    let mut bad = a.to_tensors();
    bad[0].shape = vec![1, 1];
    assert!(b.set_tensors(&bad).is_err());

    let cfg = fm_autograd::MlpConfig::default();
    let m1 = Mlp::new(&cfg, &mut fm_core::rng::seeded(1)).unwrap();
    let mut m2 = Mlp::new(&cfg, &mut fm_core::rng::seeded(2)).unwrap();
    let names: Vec<String> = TrainableField::to_tensors(&m1)
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(names.contains(&"layers.0.weight".to_string()), "{names:?}");
    m2.set_tensors(&TrainableField::to_tensors(&m1)).unwrap();
    assert_eq!(m1, m2);

    #[derive(Debug, Clone)]
    struct Plain(TanhNet);
    impl TrainableField for Plain {
        fn dim(&self) -> usize {
            2
        }
        fn params(&self) -> &[f32] {
            self.0.params()
        }
        fn params_mut(&mut self) -> &mut [f32] {
            self.0.params_mut()
        }
        fn velocity(
            &self,
            t: ArrayView1<f64>,
            x: ArrayView2<f64>,
        ) -> Result<Array2<f64>, TrainError> {
            self.0.velocity(t, x)
        }
        fn loss_and_grad(&mut self, b: &Batch, g: &mut [f32]) -> Result<f64, TrainError> {
            self.0.loss_and_grad(b, g)
        }
    }
    let (p1, mut p2) = (Plain(net(1)), Plain(net(2)));
    let t = p1.to_tensors();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].name, "params");
    p2.set_tensors(&t).unwrap();
    assert_eq!(p1.params(), p2.params());
    assert!(
        Plain(TanhNet::new(2, 3, &mut fm_core::rng::seeded(0)))
            .set_tensors(&t)
            .is_err()
    );
}

/// A trained network saved as a file and loaded into a fresh template: same bits for the
/// weights and the EMA, same field; a template of another architecture is refused.
#[test]
fn a_trained_network_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.safetensors");
    let p = TrainParams::default().steps(15).batch(16);
    let out = trainer(p, None, false)
        .run_with(net(1), &mut |_| {})
        .unwrap();
    out.model.save(&path).unwrap();
    let back = TrainedNet::load(&path, net(50)).unwrap();
    assert_eq!(bits(&back), bits(&out.model));
    assert_eq!(back.loss_history, out.model.loss_history);
    assert_eq!(back.steps_done, 15);
    let x = ndarray::array![[0.3, -0.2], [1.0, 0.5]];
    let (f, g) = (out.model.field(true).unwrap(), back.field(true).unwrap());
    assert_eq!(f.velocity_vec(0.4, x.view()), g.velocity_vec(0.4, x.view()));
    assert_eq!(
        NetworkField::new(back.net.clone()).velocity_vec(0.4, x.view()),
        back.net
            .velocity(ndarray::Array1::from_elem(2, 0.4).view(), x.view())
            .unwrap()
    );
    let other = TanhNet::new(2, 8, &mut fm_core::rng::seeded(0));
    let err = TrainedNet::load(&path, other).unwrap_err();
    assert!(err.to_string().contains("tanh-net d=2 h=24"), "{err}");
    // An MLP model file is not a network file.
    let mlp_path = dir.path().join("mlp.safetensors");
    trainer(TrainParams::default().steps(2).batch(8), None, false)
        .run(&mut |_| {})
        .unwrap()
        .model
        .save(&mlp_path)
        .unwrap();
    let err = TrainedNet::load(&mlp_path, net(1)).unwrap_err();
    assert!(err.to_string().contains("not a network file"), "{err}");
}
