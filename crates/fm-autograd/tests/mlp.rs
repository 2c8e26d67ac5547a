//! The MLP: fused path vs tape, gradients and divergences vs finite differences, training,
//! determinism, tensors, serde and input validation.
use fm_autograd::{
    Activation, Adam, AdamConfig, AutogradError, Ema, Mlp, MlpConfig, MlpOf, Optimizer, Probe,
    TimeFeatures,
};
use ndarray::{Array1, Array2};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn batch(n: usize, d: usize, rng: &mut impl Rng) -> (Array1<f64>, Array2<f64>, Array2<f64>) {
    let t = Array1::from_shape_fn(n, |_| rng.random::<f64>());
    let x = Array2::from_shape_fn((n, d), |_| rng.random_range(-2.0..2.0));
    let y = Array2::from_shape_fn((n, d), |_| rng.random_range(-2.0..2.0));
    (t, x, y)
}

fn close<D: ndarray::Dimension>(
    a: &ndarray::Array<f64, D>,
    b: &ndarray::Array<f64, D>,
    tol: f64,
) -> bool {
    a.shape() == b.shape() && a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() <= tol)
}

fn config(d: usize, hidden: Vec<usize>, act: usize, fourier: usize) -> MlpConfig {
    MlpConfig {
        dim: d,
        hidden,
        activation: Activation::ALL[act],
        context: 0,
        time_features: if fourier == 0 {
            TimeFeatures::Raw
        } else {
            TimeFeatures::Fourier {
                frequencies: fourier,
            }
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// The fused training path and the generic tape agree to rounding in f64, for every
    /// activation, both time inputs, and batches that span several chunks.
    #[test]
    fn fused_path_equals_tape(d in 1usize..4, h1 in prop_oneof![1usize..9, 15usize..40], h2 in 0usize..6, act in 0usize..7,
                              fourier in 0usize..3, n in prop_oneof![1usize..40, 250usize..600], seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let hidden = if h2 == 0 { vec![h1] } else { vec![h1, h2] };
        let mlp = MlpOf::<f64>::new(&config(d, hidden, act, fourier), &mut rng).unwrap();
        let (t, x, y) = batch(n, d, &mut rng);
        let (l1, g1) = mlp.loss_and_grad(t.view(), x.view(), y.view()).unwrap();
        let (l2, g2) = mlp.loss_and_grad_tape(t.view(), x.view(), y.view()).unwrap();
        prop_assert!((l1 - l2).abs() <= 1e-12 * l2.abs().max(1.0), "{} vs {}", l1, l2);
        for (a, b) in g1.as_slice().iter().zip(g2.as_slice()) {
            prop_assert!((a - b).abs() <= 1e-11 * (1.0 + b.abs()), "{} vs {}", a, b);
        }
        let out = mlp.forward(t.view(), x.view()).unwrap();
        let mut g = fm_autograd::Graph::new();
        let tv = g.leaf(t.clone().insert_axis(ndarray::Axis(1)));
        let xv = g.leaf(x.clone());
        let (ov, _) = mlp.forward_graph(&mut g, tv, xv).unwrap();
        prop_assert!(close(&out, g.value(ov), 1e-12));
    }

    /// Whole-network parameter gradient, input VJP and exact divergence against central
    /// finite differences (f64), for zero to two hidden layers, narrow and wider than one line.
    #[test]
    fn derivatives_match_finite_differences(d in 1usize..4, h in prop_oneof![2usize..6, 17usize..20],
                                            depth in 0usize..3, smooth in 0usize..Activation::ALL.len() - 1,
                                            fourier in 0usize..2, seed in any::<u64>()) {
        // Every activation but ReLU (its kink breaks the stencil), drawn directly: rejecting
        // ReLU with prop_assume! exceeded proptest's 1024 global rejects at 10,000 cases.
        let smooth_acts: Vec<usize> = (0..Activation::ALL.len())
            .filter(|&i| Activation::ALL[i] != Activation::Relu)
            .collect();
        let act = smooth_acts[smooth];
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut mlp = MlpOf::<f64>::new(&config(d, vec![h; depth], act, fourier), &mut rng).unwrap();
        let (t, x, y) = batch(5, d, &mut rng);
        let (_, grads) = mlp.loss_and_grad(t.view(), x.view(), y.view()).unwrap();
        let eps = 1e-6;
        let p0 = mlp.params().to_vec();
        for k in 0..p0.len() {
            let mut p = p0.clone();
            p[k] += eps;
            mlp.set_params(&p).unwrap();
            let lp = mlp.loss_and_grad(t.view(), x.view(), y.view()).unwrap().0;
            p[k] -= 2.0 * eps;
            mlp.set_params(&p).unwrap();
            let lm = mlp.loss_and_grad(t.view(), x.view(), y.view()).unwrap().0;
            let fd = (lp - lm) / (2.0 * eps);
            let a = grads.as_slice()[k];
            prop_assert!((fd - a).abs() <= 1e-6 * (1.0 + fd.abs()), "param {}: {} vs {}", k, fd, a);
        }
        mlp.set_params(&p0).unwrap();
        // VJP and divergence: Jacobian columns by central differences in x.
        let cot = Array2::from_shape_fn(x.raw_dim(), |_| rng.random_range(-1.0..1.0));
        let vjp = mlp.vjp(t.view(), x.view(), cot.view()).unwrap();
        let div = mlp.divergence(t.view(), x.view()).unwrap();
        let mut div_fd = Array1::<f64>::zeros(5);
        for j in 0..d {
            let mut xp = x.clone();
            xp.column_mut(j).mapv_inplace(|v| v + eps);
            let mut xm = x.clone();
            xm.column_mut(j).mapv_inplace(|v| v - eps);
            let dv = (mlp.forward(t.view(), xp.view()).unwrap() - mlp.forward(t.view(), xm.view()).unwrap()) / (2.0 * eps);
            for i in 0..5 {
                let vjp_fd: f64 = (0..d).map(|k| cot[[i, k]] * dv[[i, k]]).sum();
                prop_assert!((vjp_fd - vjp[[i, j]]).abs() <= 1e-6 * (1.0 + vjp_fd.abs()));
                div_fd[i] += dv[[i, j]];
            }
        }
        prop_assert!(close(&div, &div_fd, 1e-6), "{} vs {}", div, div_fd);
    }
}

#[test]
fn f32_model_tracks_its_f64_twin() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mlp = Mlp::new(&MlpConfig::default(), &mut rng).unwrap();
    let twin = mlp.cast::<f64>();
    let (t, x, y) = batch(300, 2, &mut rng);
    let (l32, g32) = mlp.loss_and_grad(t.view(), x.view(), y.view()).unwrap();
    let (l64, g64) = twin.loss_and_grad(t.view(), x.view(), y.view()).unwrap();
    assert!((l32 - l64).abs() < 1e-5 * l64, "{l32} vs {l64}");
    let scale = g64.norm();
    for (a, b) in g32.as_slice().iter().zip(g64.as_slice()) {
        assert!((*a as f64 - b).abs() < 1e-5 * scale);
    }
    let d32 = mlp.divergence(t.view(), x.view()).unwrap();
    let d64 = twin.divergence(t.view(), x.view()).unwrap();
    assert!(close(&d32, &d64, 1e-4));
    let v32 = mlp.forward(t.view(), x.view()).unwrap();
    assert!(close(
        &v32,
        &twin.forward(t.view(), x.view()).unwrap(),
        1e-5
    ));
}

#[test]
fn hutchinson_averages_to_the_exact_divergence() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mlp = MlpOf::<f64>::new(&config(3, vec![16, 16], 1, 0), &mut rng).unwrap();
    let (t, x, _) = batch(4, 3, &mut rng);
    let exact = mlp.divergence(t.view(), x.view()).unwrap();
    for kind in [Probe::Rademacher, Probe::Gaussian] {
        let est = mlp
            .divergence_hutchinson(t.view(), x.view(), 4000, kind, &mut rng)
            .unwrap();
        // Per-probe spread is O(‖J‖_F) ≲ 1 here; 4000 probes give a standard error ≲ 0.02.
        assert!(close(&est, &exact, 0.08), "{kind:?}: {est} vs {exact}");
    }
    assert!(
        mlp.divergence_hutchinson(t.view(), x.view(), 0, Probe::Gaussian, &mut rng)
            .is_err()
    );
}

fn train(seed: u64, steps: usize) -> (Mlp, f64, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cfg = MlpConfig {
        hidden: vec![32, 32],
        ..MlpConfig::default()
    };
    let mut mlp = Mlp::new(&cfg, &mut rng).unwrap();
    let mut adam = Adam::new(AdamConfig {
        lr: 3e-3,
        ..AdamConfig::default()
    })
    .unwrap();
    let n = 128;
    let t = Array1::from_shape_fn(n, |_| rng.random::<f64>());
    let x = Array2::from_shape_fn((n, 2), |_| rng.random_range(-1.0..1.0));
    // A smooth fixed target: a rotation whose speed depends on t, plus a shift.
    let y = Array2::from_shape_fn((n, 2), |(i, j)| {
        let (a, b) = (x[[i, 0]], x[[i, 1]]);
        if j == 0 {
            -b * (1.0 + t[i]) + 0.3
        } else {
            a * (1.0 + t[i]) - 0.2
        }
    });
    let first = mlp.loss_and_grad(t.view(), x.view(), y.view()).unwrap().0;
    let mut last = first;
    for _ in 0..steps {
        let (l, g) = mlp.loss_and_grad(t.view(), x.view(), y.view()).unwrap();
        adam.step(&mut mlp, &g).unwrap();
        last = l;
    }
    (mlp, first, last)
}

#[test]
fn training_lowers_the_loss_by_orders_of_magnitude() {
    let (_, first, last) = train(5, 1500);
    assert!(first > 0.3, "initial loss {first}");
    assert!(last < 1e-3, "final loss {last} (initial {first})");
    assert!(last < first / 300.0);
}

#[test]
fn same_seed_same_bits_and_thread_count_does_not_matter() {
    let (a, _, _) = train(9, 20);
    let (b, _, _) = train(9, 20);
    assert_eq!(a.params(), b.params());
    let (c, _, _) = train(10, 20);
    assert_ne!(a.params(), c.params());
    // A batch of several chunks: identical bits on 1 and 2 threads.
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mlp = Mlp::new(&MlpConfig::default(), &mut rng).unwrap();
    let (t, x, y) = batch(1000, 2, &mut rng);
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (l, g) = mlp.loss_and_grad(t.view(), x.view(), y.view()).unwrap();
            (
                l,
                g,
                mlp.forward(t.view(), x.view()).unwrap(),
                mlp.divergence(t.view(), x.view()).unwrap(),
            )
        })
    };
    let (r1, r2) = (run(1), run(2));
    assert_eq!(r1.0.to_bits(), r2.0.to_bits());
    assert_eq!(r1.1, r2.1);
    assert_eq!(r1.2, r2.2);
    assert_eq!(r1.3, r2.3);
}

#[test]
fn init_is_pytorch_uniform_and_seeded() {
    let cfg = MlpConfig::default();
    let mlp = Mlp::new(&cfg, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    assert_eq!(
        mlp.num_params(),
        3 * 64 + 64 + 2 * (64 * 64 + 64) + 64 * 2 + 2
    );
    for (name, shape, data) in mlp.to_tensors() {
        let fan_in = if name.ends_with("weight") {
            shape[1]
        } else {
            0
        };
        if fan_in > 0 {
            let bound = 1.0 / (fan_in as f32).sqrt();
            assert!(data.iter().all(|v| v.abs() <= bound), "{name}");
            // Uniform on ±b has variance b²/3: the sample variance of 64·in draws is close.
            let var = data.iter().map(|v| v * v).sum::<f32>() / data.len() as f32;
            assert!(
                (var / (bound * bound / 3.0) - 1.0).abs() < 0.3,
                "{name}: {var}"
            );
        }
    }
    let again = Mlp::new(&cfg, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    assert_eq!(mlp, again);
}

#[test]
fn tensors_round_trip_and_reject_bad_names_and_shapes() {
    let cfg = MlpConfig::default();
    let mlp = Mlp::new(&cfg, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    let ts = mlp.to_tensors();
    assert_eq!(ts[0].0, "layers.0.weight");
    assert_eq!(ts[0].1, vec![64, 3]);
    assert_eq!(ts[7].0, "layers.3.bias");
    assert_eq!(Mlp::from_tensors(&cfg, &ts).unwrap(), mlp);

    let mut renamed = ts.clone();
    renamed[2].0 = "net.1.weight".into();
    let e = Mlp::from_tensors(&cfg, &renamed).unwrap_err();
    assert!(
        e.to_string().contains("net.1.weight") && e.to_string().contains("unexpected"),
        "{e}"
    );
    let mut reshaped = ts.clone();
    reshaped[0].1 = vec![3, 64];
    let e = Mlp::from_tensors(&cfg, &reshaped).unwrap_err();
    assert!(
        e.to_string().contains("layers.0.weight") && e.to_string().contains("[64, 3]"),
        "{e}"
    );
    let e = Mlp::from_tensors(&cfg, &ts[..7]).unwrap_err();
    assert!(e.to_string().contains("layers.3.bias: missing"), "{e}");
    let wider = MlpConfig {
        hidden: vec![64, 64, 32],
        ..cfg
    };
    assert!(Mlp::from_tensors(&wider, &ts).is_err());
}

#[test]
fn serde_round_trips_model_optimizer_and_ema() {
    let (mut mlp, _, _) = train(2, 3);
    let json = serde_json::to_string(&mlp).unwrap();
    let back: Mlp = serde_json::from_str(&json).unwrap();
    assert_eq!(back, mlp);
    let mut adam = Adam::new(AdamConfig::adamw()).unwrap();
    let mut ema = Ema::new(0.99, &mlp).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (t, x, y) = batch(16, 2, &mut rng);
    let (_, g) = mlp.loss_and_grad(t.view(), x.view(), y.view()).unwrap();
    adam.step(&mut mlp, &g).unwrap();
    ema.update(&mlp).unwrap();
    let adam2: Adam = serde_json::from_str(&serde_json::to_string(&adam).unwrap()).unwrap();
    let ema2: Ema = serde_json::from_str(&serde_json::to_string(&ema).unwrap()).unwrap();
    assert_eq!(adam2, adam);
    assert_eq!(ema2, ema);
    // A file whose parameter count does not match its config is rejected.
    let bad = json.replacen("[", "[1.0,", 2);
    assert!(serde_json::from_str::<Mlp>(&bad).is_err());
}

#[test]
fn bad_inputs_are_errors() {
    let mlp = Mlp::new(&MlpConfig::default(), &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    let (t, mut x, y) = batch(8, 2, &mut ChaCha8Rng::seed_from_u64(1));
    let ok = x.clone();
    x[[3, 1]] = f64::NAN;
    let e = mlp.forward(t.view(), x.view()).unwrap_err();
    assert!(
        matches!(e, AutogradError::NonFinite { index: 7, .. }),
        "{e}"
    );
    assert!(mlp.loss_and_grad(t.view(), x.view(), y.view()).is_err());
    assert!(mlp.divergence(t.view(), x.view()).is_err());
    let mut tn = t.clone();
    tn[0] = f64::INFINITY;
    assert!(mlp.forward(tn.view(), ok.view()).is_err());
    let mut yn = y.clone();
    yn[[0, 0]] = f64::NAN;
    assert!(mlp.loss_and_grad(t.view(), ok.view(), yn.view()).is_err());
    let wide = Array2::<f64>::zeros((8, 3));
    assert!(
        mlp.forward(t.view(), wide.view())
            .unwrap_err()
            .to_string()
            .contains("(n, 2)")
    );
    assert!(
        mlp.forward(t.slice_axis(ndarray::Axis(0), (0..4).into()), ok.view())
            .is_err()
    );
    let empty = Array2::<f64>::zeros((0, 2));
    assert!(matches!(
        mlp.loss_and_grad(Array1::zeros(0).view(), empty.view(), empty.view()),
        Err(AutogradError::Empty { .. })
    ));
    assert!(
        Mlp::new(
            &MlpConfig {
                dim: 0,
                ..MlpConfig::default()
            },
            &mut rand::rng()
        )
        .is_err()
    );
    assert!(
        Mlp::new(
            &MlpConfig {
                hidden: vec![4, 0],
                ..MlpConfig::default()
            },
            &mut rand::rng()
        )
        .is_err()
    );
    let f0 = MlpConfig {
        time_features: TimeFeatures::Fourier { frequencies: 0 },
        ..MlpConfig::default()
    };
    assert!(Mlp::new(&f0, &mut rand::rng()).is_err());
}

/// The packed copy of the weights the kernels use follows every parameter change: after
/// `params_mut`, `set_params` and an optimizer step, the network computes exactly what a fresh
/// network with the same parameters computes.
#[test]
fn parameter_changes_reach_the_kernels() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let cfg = MlpConfig::default();
    let mut mlp = Mlp::new(&cfg, &mut rng).unwrap();
    let (t, x, y) = batch(300, 2, &mut rng);
    let fresh = |m: &Mlp| Mlp::from_params(&cfg, m.params().to_vec()).unwrap();
    let before = mlp.forward(t.view(), x.view()).unwrap();
    mlp.params_mut().iter_mut().for_each(|p| *p *= 1.5);
    let after = mlp.forward(t.view(), x.view()).unwrap();
    assert_ne!(before, after);
    assert_eq!(after, fresh(&mlp).forward(t.view(), x.view()).unwrap());
    let p: Vec<f32> = mlp.params().iter().map(|v| -v).collect();
    mlp.set_params(&p).unwrap();
    assert_eq!(
        mlp.vjp(t.view(), x.view(), y.view()).unwrap(),
        fresh(&mlp).vjp(t.view(), x.view(), y.view()).unwrap()
    );
    let mut adam = Adam::new(AdamConfig::default()).unwrap();
    let (_, g) = mlp.loss_and_grad(t.view(), x.view(), y.view()).unwrap();
    adam.step(&mut mlp, &g).unwrap();
    assert_eq!(
        mlp.divergence(t.view(), x.view()).unwrap(),
        fresh(&mlp).divergence(t.view(), x.view()).unwrap()
    );
}

/// The benchmark helper rejects a gradient buffer of another network instead of panicking.
#[test]
fn bench_products_only_checks_the_gradient_size() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mlp = Mlp::new(&MlpConfig::default(), &mut rng).unwrap();
    let other = Mlp::new(&config(2, vec![5], 0, 0), &mut rng).unwrap();
    let mut wrong = fm_autograd::Grads::zeros(&other);
    assert!(matches!(
        mlp.bench_products_only(256, &mut wrong),
        Err(AutogradError::ShapeMismatch { .. })
    ));
    let mut right = fm_autograd::Grads::zeros(&mlp);
    mlp.bench_products_only(300, &mut right).unwrap();
    assert!(right.as_slice().iter().all(|g| g.is_finite()));
}
