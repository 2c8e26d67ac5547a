//! Conditional networks `v_θ(t, x, c)`: the fused path against the tape and against a
//! hand-built affine map, derivatives against finite differences, and context validation.
use fm_autograd::{Activation, AutogradError, MlpConfig, MlpOf, Probe, TimeFeatures};
use ndarray::{Array1, Array2, Axis};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn cfg(d: usize, k: usize, hidden: Vec<usize>, fourier: usize) -> MlpConfig {
    MlpConfig {
        dim: d,
        hidden,
        activation: Activation::Tanh,
        time_features: if fourier == 0 {
            TimeFeatures::Raw
        } else {
            TimeFeatures::Fourier {
                frequencies: fourier,
            }
        },
        context: k,
    }
}

fn draw(n: usize, w: usize, rng: &mut impl Rng) -> Array2<f64> {
    Array2::from_shape_fn((n, w), |_| rng.random_range(-2.0..2.0))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Fused path (loss, gradient, forward) equals the tape with a context, across chunks.
    #[test]
    fn fused_path_equals_tape_with_context(d in 1usize..4, k in 1usize..4, h in 1usize..20,
                                           fourier in 0usize..2, n in prop_oneof![1usize..40, 250usize..600],
                                           seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mlp = MlpOf::<f64>::new(&cfg(d, k, vec![h, 5], fourier), &mut rng).unwrap();
        let t = Array1::from_shape_fn(n, |_| rng.random::<f64>());
        let (x, c, y) = (draw(n, d, &mut rng), draw(n, k, &mut rng), draw(n, d, &mut rng));
        let (l1, g1) = mlp.loss_and_grad_ctx(t.view(), x.view(), Some(c.view()), y.view()).unwrap();
        let (l2, g2) = mlp.loss_and_grad_tape_ctx(t.view(), x.view(), Some(c.view()), y.view()).unwrap();
        prop_assert!((l1 - l2).abs() <= 1e-12 * l2.abs().max(1.0));
        for (a, b) in g1.as_slice().iter().zip(g2.as_slice()) {
            prop_assert!((a - b).abs() <= 1e-11 * (1.0 + b.abs()), "{} vs {}", a, b);
        }
        let out = mlp.forward_ctx(t.view(), x.view(), Some(c.view())).unwrap();
        let mut g = fm_autograd::Graph::new();
        let tv = g.leaf(t.clone().insert_axis(Axis(1)));
        let xv = g.leaf(x.clone());
        let cv = g.leaf(c.clone());
        let (ov, _) = mlp.forward_graph_ctx(&mut g, tv, xv, Some(cv)).unwrap();
        prop_assert!(out.iter().zip(g.value(ov).iter()).all(|(a, b)| (a - b).abs() <= 1e-12));
    }
}

/// With no hidden layer the network is one affine map of `[x, t, c]`: compare with the weights
/// read out of the flat parameters by hand.
#[test]
fn forward_with_context_is_the_affine_map_of_x_t_c() {
    let (d, k, n) = (2, 3, 5);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mlp = MlpOf::<f64>::new(&cfg(d, k, vec![], 0), &mut rng).unwrap();
    let p = mlp.params();
    let inp = d + 1 + k;
    let t = Array1::from_shape_fn(n, |_| rng.random::<f64>());
    let (x, c) = (draw(n, d, &mut rng), draw(n, k, &mut rng));
    let out = mlp.forward_ctx(t.view(), x.view(), Some(c.view())).unwrap();
    for i in 0..n {
        let z: Vec<f64> = x
            .row(i)
            .iter()
            .copied()
            .chain([t[i]])
            .chain(c.row(i).iter().copied())
            .collect();
        for o in 0..d {
            let want = p[d * inp + o] + (0..inp).map(|j| p[o * inp + j] * z[j]).sum::<f64>();
            assert!(
                (out[[i, o]] - want).abs() < 1e-12,
                "{} vs {want}",
                out[[i, o]]
            );
        }
    }
    // The context matters: changing it changes the output by W_c Δc exactly.
    let c2 = c.mapv(|v| v + 1.0);
    let out2 = mlp
        .forward_ctx(t.view(), x.view(), Some(c2.view()))
        .unwrap();
    for o in 0..d {
        let shift: f64 = (0..k).map(|j| p[o * inp + d + 1 + j]).sum();
        assert!((out2[[0, o]] - out[[0, o]] - shift).abs() < 1e-12);
    }
}

/// Parameter gradient, VJP in x and both divergences against central differences in f64.
#[test]
fn derivatives_with_context_match_finite_differences() {
    let (d, k, n) = (3, 2, 7);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mlp = MlpOf::<f64>::new(&cfg(d, k, vec![6, 5], 1), &mut rng).unwrap();
    let t = Array1::from_shape_fn(n, |_| rng.random::<f64>());
    let (x, c, y) = (
        draw(n, d, &mut rng),
        draw(n, k, &mut rng),
        draw(n, d, &mut rng),
    );
    let cv = Some(c.view());
    let h = 1e-6;
    // Parameters.
    let (_, g) = mlp
        .loss_and_grad_ctx(t.view(), x.view(), cv, y.view())
        .unwrap();
    let loss = |m: &MlpOf<f64>| {
        m.loss_and_grad_ctx(t.view(), x.view(), cv, y.view())
            .unwrap()
            .0
    };
    for i in (0..mlp.num_params()).step_by(3) {
        let (mut a, mut b) = (mlp.clone(), mlp.clone());
        a.params_mut()[i] += h;
        b.params_mut()[i] -= h;
        let fd = (loss(&a) - loss(&b)) / (2.0 * h);
        assert!(
            (fd - g.as_slice()[i]).abs() < 1e-7,
            "param {i}: {fd} vs {}",
            g.as_slice()[i]
        );
    }
    // VJP and divergence in x, the context held fixed.
    let cot = draw(n, d, &mut rng);
    let vjp = mlp.vjp_ctx(t.view(), x.view(), cv, cot.view()).unwrap();
    let div = mlp.divergence_ctx(t.view(), x.view(), cv).unwrap();
    let mut fd_div = Array1::<f64>::zeros(n);
    for j in 0..d {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp.column_mut(j).mapv_inplace(|v| v + h);
        xm.column_mut(j).mapv_inplace(|v| v - h);
        let vp = mlp.forward_ctx(t.view(), xp.view(), cv).unwrap();
        let vm = mlp.forward_ctx(t.view(), xm.view(), cv).unwrap();
        let jac_col = (&vp - &vm) / (2.0 * h); // ∂v/∂x_j, one row per point
        for i in 0..n {
            let want: f64 = (0..d).map(|o| cot[[i, o]] * jac_col[[i, o]]).sum();
            assert!((vjp[[i, j]] - want).abs() < 1e-7, "vjp ({i}, {j})");
            fd_div[i] += jac_col[[i, j]];
        }
    }
    for i in 0..n {
        assert!(
            (div[i] - fd_div[i]).abs() < 1e-7,
            "div {i}: {} vs {}",
            div[i],
            fd_div[i]
        );
    }
    // Hutchinson with many probes is close to the exact divergence.
    let est = mlp
        .divergence_hutchinson_ctx(t.view(), x.view(), cv, 4000, Probe::Rademacher, &mut rng)
        .unwrap();
    let spread = div.iter().map(|v| v.abs()).fold(0.0, f64::max).max(1.0);
    for i in 0..n {
        assert!(
            (est[i] - div[i]).abs() < 0.1 * spread,
            "{} vs {}",
            est[i],
            div[i]
        );
    }
}

/// Missing, misshapen and non-finite contexts, and a context for an unconditional network,
/// are errors naming the context.
#[test]
fn bad_contexts_are_refused() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let cond = MlpOf::<f32>::new(&cfg(2, 2, vec![4], 0), &mut rng).unwrap();
    let plain = MlpOf::<f32>::new(&cfg(2, 0, vec![4], 0), &mut rng).unwrap();
    let t = Array1::from_elem(3, 0.5);
    let x = Array2::zeros((3, 2));
    let is_ctx_err = |e: AutogradError| e.to_string().contains("context c");
    assert!(is_ctx_err(cond.forward(t.view(), x.view()).unwrap_err()));
    let wrong = Array2::zeros((3, 1));
    assert!(is_ctx_err(
        cond.forward_ctx(t.view(), x.view(), Some(wrong.view()))
            .unwrap_err()
    ));
    let short = Array2::zeros((2, 2));
    assert!(is_ctx_err(
        cond.divergence_ctx(t.view(), x.view(), Some(short.view()))
            .unwrap_err()
    ));
    let mut nan = Array2::zeros((3, 2));
    nan[[1, 1]] = f64::NAN;
    let e = cond
        .loss_and_grad_ctx(t.view(), x.view(), Some(nan.view()), x.view())
        .unwrap_err();
    assert!(
        matches!(e, AutogradError::NonFinite { index: 3, .. }),
        "{e}"
    );
    let c = Array2::zeros((3, 2));
    assert!(is_ctx_err(
        plain
            .vjp_ctx(t.view(), x.view(), Some(c.view()), x.view())
            .unwrap_err()
    ));
    // An unconditional network takes a zero-width context as no context.
    let none = Array2::zeros((3, 0));
    assert_eq!(
        plain
            .forward_ctx(t.view(), x.view(), Some(none.view()))
            .unwrap(),
        plain.forward(t.view(), x.view()).unwrap()
    );
}

/// Configs written before contexts existed read as unconditional, and an unconditional config
/// is written exactly as before (no `context` key); a conditional one round-trips.
#[test]
fn config_serde_is_backward_compatible() {
    let old = r#"{"dim":2,"hidden":[8],"activation":"Selu","time_features":"Raw"}"#;
    let c: MlpConfig = serde_json::from_str(old).unwrap();
    assert_eq!(c.context, 0);
    assert_eq!(serde_json::to_string(&c).unwrap(), old);
    let k = MlpConfig {
        context: 4,
        ..c.clone()
    };
    let back: MlpConfig = serde_json::from_str(&serde_json::to_string(&k).unwrap()).unwrap();
    assert_eq!(back, k);
    assert_eq!(k.input_width(), c.input_width() + 4);
}
