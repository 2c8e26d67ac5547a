//! The residual flow: spectral normalisation, the fixed-point inverse against its bound, the
//! exact log-determinant against finite differences, the series estimators' means against the
//! exact value, normalisation on a 2-D grid, the estimator's gradient, training.
use fm_autograd::Activation;
use fm_core::LogDensity;
use fm_nf::{LogDetEstimator, MaxLikelihood, ResidualConfig, ResidualFlow, TrainConfig, train};
use ndarray::{Array2, Axis};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

fn config(dim: usize, blocks: usize, hidden: usize, c: f64) -> ResidualConfig {
    ResidualConfig {
        dim,
        blocks,
        hidden: vec![hidden, hidden],
        activation: Activation::Tanh,
        lipschitz: c,
        power_iterations: 200,
        ..Default::default()
    }
}

/// Every parameter random in ±`w` (large enough that normalisation is active).
fn random_flow(cfg: ResidualConfig, w: f64, seed: u64) -> ResidualFlow {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut flow = ResidualFlow::new(cfg, &mut rng).unwrap();
    for p in flow.params_mut() {
        *p = rng.random_range(-w..w);
    }
    flow
}

fn rand_x(rng: &mut impl Rng, n: usize, d: usize) -> Array2<f64> {
    Array2::from_shape_fn((n, d), |_| rng.random_range(-2.0..2.0))
}

fn log_abs_det(mut a: Array2<f64>) -> f64 {
    let n = a.nrows();
    let mut acc = 0.0;
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[[i, c]].abs().total_cmp(&a[[j, c]].abs()))
            .unwrap();
        for k in 0..n {
            a.swap([c, k], [p, k]);
        }
        let piv = a[[c, c]];
        acc += piv.abs().ln();
        for r in c + 1..n {
            let f = a[[r, c]] / piv;
            for k in c..n {
                a[[r, k]] -= f * a[[c, k]];
            }
        }
    }
    acc
}

/// The largest singular value by 2,000 power iterations (an independent oracle).
fn top_singular_value(w: ndarray::ArrayView2<f64>) -> f64 {
    let mut v = ndarray::Array1::from_elem(w.ncols(), 1.0);
    for _ in 0..2000 {
        let u = w.dot(&v);
        v = w.t().dot(&u);
        let n = v.dot(&v).sqrt();
        v /= n;
    }
    let u = w.dot(&v);
    u.dot(&u).sqrt()
}

/// Central-difference Jacobian of the flow at row `x` (shape (1, d)).
fn fd_jacobian(flow: &ResidualFlow, x: &Array2<f64>) -> Array2<f64> {
    let d = x.ncols();
    let step = 1e-6;
    let mut jac = Array2::zeros((d, d));
    for j in 0..d {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp[[0, j]] += step;
        xm[[0, j]] -= step;
        let (zp, zm) = (
            flow.forward(xp.view()).unwrap(),
            flow.forward(xm.view()).unwrap(),
        );
        for r in 0..d {
            jac[[r, j]] = (zp[[0, r]] - zm[[0, r]]) / (2.0 * step);
        }
    }
    jac
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn fixed_point_inverse_meets_its_bound(
        d in 1usize..5, h in 1usize..6, c in 0.3f64..0.9, seed in any::<u64>(), k in 1usize..40,
    ) {
        let flow = random_flow(config(d, 1, h, c), 1.0, seed);
        let x = rand_x(&mut rand_chacha::ChaCha8Rng::seed_from_u64(!seed), 4, d);
        let y = flow.forward(x.view()).unwrap();
        let (xk, bound) = flow.invert_block(0, y.view(), k).unwrap();
        for i in 0..x.nrows() {
            let err = (&xk.row(i) - &x.row(i)).mapv(|e| e * e).sum().sqrt();
            // The bound holds up to rounding.
            prop_assert!(err <= bound[i] * (1.0 + 1e-9) + 1e-13, "row {i}, k {k}: error {err} > bound {}", bound[i]);
        }
        // The full inverse of a deeper flow is exact to its 1e-12-level tolerance.
        let deep = random_flow(config(d, 2, h, c), 1.0, seed);
        let z = deep.forward(x.view()).unwrap();
        let back = deep.inverse(z.view()).unwrap();
        for (a, b) in x.iter().zip(&back) {
            prop_assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }

    #[test]
    fn exact_log_det_matches_finite_differences(
        d in 1usize..5, blocks in 1usize..4, h in 1usize..5, seed in any::<u64>(),
    ) {
        let flow = random_flow(config(d, blocks, h, 0.9), 1.0, seed);
        let x = rand_x(&mut rand_chacha::ChaCha8Rng::seed_from_u64(!seed), 3, d);
        let ld = flow.exact_log_det(x.view()).unwrap();
        for i in 0..x.nrows() {
            let row = x.row(i).to_owned().insert_axis(Axis(0));
            let fd = log_abs_det(fd_jacobian(&flow, &row));
            prop_assert!((fd - ld[i]).abs() < 1e-6 * (1.0 + fd.abs()), "row {i}: {fd} vs {}", ld[i]);
        }
    }

    #[test]
    fn estimator_loss_gradient_matches_finite_differences(
        d in 1usize..4, seed in any::<u64>(), roulette in any::<bool>(),
    ) {
        let mut cfg = config(d, 2, 2, 0.8);
        cfg.probes = 2;
        cfg.estimator = if roulette {
            LogDetEstimator::RussianRoulette { min_terms: 1, p: 0.5 }
        } else {
            LogDetEstimator::Truncated { terms: 4 }
        };
        // Weights in ±0.25: every matrix (at most 3 × 2) has σ_max ≤ ‖W‖_F ≤ 0.25·√6 < c, so the
        // normalisation is inactive and the check is exact. (Through an active normalisation the
        // gradient treats the power-iteration vectors u, v as constants, as PyTorch's
        // spectral_norm does: exact only once the iteration has converged.)
        let mut flow = random_flow(cfg, 0.25, seed);
        let x = rand_x(&mut rand_chacha::ChaCha8Rng::seed_from_u64(!seed), 3, d);
        // The same probes and number of terms in every evaluation: a fixed seed.
        let eval = |f: &ResidualFlow| f.nll_and_grad(x.view(), &mut fm_core::rng::seeded(seed)).unwrap();
        let (_, grad) = eval(&flow);
        let h = 1e-6;
        for (i, &gi) in grad.iter().enumerate() {
            let p0 = flow.params()[i];
            flow.params_mut()[i] = p0 + h;
            let up = eval(&flow).0;
            flow.params_mut()[i] = p0 - h;
            let down = eval(&flow).0;
            flow.params_mut()[i] = p0;
            let fd = (up - down) / (2.0 * h);
            prop_assert!((fd - gi).abs() < 1e-5 * (1.0 + fd.abs()), "param {i}: {fd} vs {gi}");
        }
    }
}

#[test]
fn spectral_normalisation_bounds_the_lipschitz_constant() {
    // Lip(g) ≤ c: for random pairs, ‖g(a) − g(b)‖ ≤ c ‖a − b‖, where g(x) = F(x) − x.
    let mut rng = fm_core::rng::seeded(5);
    for seed in 0..4 {
        let flow = random_flow(config(3, 1, 8, 0.7), 2.0, seed);
        let a = rand_x(&mut rng, 200, 3);
        let b = &a + &rand_x(&mut rng, 200, 3).mapv(|v| 0.05 * v);
        let ga = flow.forward(a.view()).unwrap() - &a;
        let gb = flow.forward(b.view()).unwrap() - &b;
        let mut worst: f64 = 0.0;
        for i in 0..200 {
            let num = (&ga.row(i) - &gb.row(i)).mapv(|e| e * e).sum().sqrt();
            let den = (&a.row(i) - &b.row(i)).mapv(|e| e * e).sum().sqrt();
            worst = worst.max(num / den);
        }
        assert!(worst <= 0.7 * (1.0 + 1e-6), "seed {seed}: ratio {worst}");
        // And the normalisation is active, not vacuous: every raw weight has σ_max > c.
        for s in flow
            .param_specs()
            .iter()
            .filter(|s| s.name.ends_with("weight"))
        {
            let w = ndarray::ArrayView2::from_shape(
                (s.rows, s.cols),
                &flow.params()[s.offset..s.offset + s.len()],
            )
            .unwrap();
            let sigma = top_singular_value(w);
            assert!(
                sigma > 0.7,
                "seed {seed}, {}: σ {sigma} ≤ c, the test would be vacuous",
                s.name
            );
        }
    }
}

/// The mean of many draws of each estimator against the exact log-determinant of random
/// contractive blocks, within 5 standard errors (plus, for the truncated series, its bias
/// bound `d c^{K+1} / ((K + 1)(1 − c))`).
#[test]
fn estimator_means_match_the_exact_log_det() {
    for (seed, d) in [(1u64, 2usize), (2, 3)] {
        let c = 0.6;
        let base = random_flow(config(d, 1, 6, c), 1.5, seed);
        let x = rand_x(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed), 1, d);
        let exact = base.exact_log_det(x.view()).unwrap()[0];
        for (est, bias) in [
            (
                LogDetEstimator::Truncated { terms: 12 },
                d as f64 * c.powi(13) / (13.0 * (1.0 - c)),
            ),
            (
                LogDetEstimator::RussianRoulette {
                    min_terms: 1,
                    p: 0.4,
                },
                0.0,
            ),
        ] {
            let mut cfg = base.config().clone();
            cfg.estimator = est;
            let mut flow = ResidualFlow::new(cfg, &mut fm_core::rng::seeded(0)).unwrap();
            flow.params_mut().copy_from_slice(base.params());
            let mut rng = fm_core::rng::seeded(seed + 10);
            let draws: Vec<f64> = (0..800)
                .map(|_| flow.estimated_log_det(x.view(), &mut rng).unwrap()[0])
                .collect();
            let m = draws.iter().sum::<f64>() / draws.len() as f64;
            let var = draws.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (draws.len() - 1) as f64;
            let se = (var / draws.len() as f64).sqrt();
            assert!(
                (m - exact).abs() <= 5.0 * se + bias + 1e-12,
                "{est:?}, d {d}: mean {m} ± {se} vs exact {exact}"
            );
            assert!(
                exact.abs() > 10.0 * se,
                "the check must be sharp: exact {exact}, se {se}"
            );
        }
    }
}

/// A random 2-D residual flow's density (exact log-det), by the midpoint rule on a 241 × 241
/// grid over [−12, 12]², is 1 within 1e-6 (measured: 2e-14 off).
#[test]
fn density_integrates_to_one_on_a_2d_grid() {
    let flow = random_flow(config(2, 3, 8, 0.8), 1.0, 3);
    let (m, lim) = (241usize, 12.0);
    let hstep = 2.0 * lim / m as f64;
    let grid = Array2::from_shape_fn((m * m, 2), |(i, j)| {
        let idx = if j == 0 { i / m } else { i % m };
        -lim + (idx as f64 + 0.5) * hstep
    });
    let lp = flow.log_prob(grid.view()).unwrap();
    let mass: f64 = lp.iter().map(|l| l.exp()).sum::<f64>() * hstep * hstep;
    assert!((mass - 1.0).abs() < 1e-6, "mass {mass}");
}

#[test]
fn training_raises_held_out_likelihood() {
    // A correlated, shifted Gaussian: far from N(0, I), easy for a few blocks.
    let draw = |n: usize, rng: &mut fm_core::rng::FmRng| {
        Array2::from_shape_fn((n, 2), |_| rng.random_range(-1.0..1.0))
            .dot(&ndarray::array![[1.0, 0.8], [0.0, 0.3]])
            + 1.5
    };
    let mut rng = fm_core::rng::seeded(2);
    let (tr, te) = (draw(1000, &mut rng), draw(500, &mut rng));
    let cfg = ResidualConfig {
        blocks: 3,
        hidden: vec![32],
        ..Default::default()
    };
    let mut flow = ResidualFlow::new(cfg, &mut rng).unwrap();
    let before = flow.log_prob(te.view()).unwrap().mean().unwrap();
    let tc = TrainConfig {
        steps: 300,
        batch_size: 64,
        lr: 5e-3,
        ..Default::default()
    };
    train(&mut flow, tr.view(), &tc, &mut rng).unwrap();
    let after = flow.log_prob(te.view()).unwrap().mean().unwrap();
    eprintln!("held-out mean log p: before {before:.3}, after {after:.3}");
    assert!(after > before + 1.0, "before {before}, after {after}");
}

#[test]
fn bad_settings_are_errors() {
    let mut rng = fm_core::rng::seeded(0);
    let base = config(2, 1, 4, 0.9);
    for (cfg, name) in [
        (
            ResidualConfig {
                lipschitz: 1.0,
                ..base.clone()
            },
            "lipschitz",
        ),
        (
            ResidualConfig {
                activation: Activation::Silu,
                ..base.clone()
            },
            "activation",
        ),
        (
            ResidualConfig {
                blocks: 0,
                ..base.clone()
            },
            "blocks",
        ),
        (
            ResidualConfig {
                probes: 0,
                ..base.clone()
            },
            "probes",
        ),
        (
            ResidualConfig {
                estimator: LogDetEstimator::RussianRoulette {
                    min_terms: 1,
                    p: 1.0,
                },
                ..base.clone()
            },
            "p",
        ),
        (
            ResidualConfig {
                estimator: LogDetEstimator::Truncated { terms: 0 },
                ..base.clone()
            },
            "terms",
        ),
    ] {
        let err = ResidualFlow::new(cfg, &mut rng).unwrap_err();
        assert!(
            matches!(&err, fm_nf::NfError::InvalidParameter { name: n, .. } if *n == name),
            "{err}"
        );
    }
    let flow = ResidualFlow::new(base, &mut rng).unwrap();
    assert!(flow.log_prob(Array2::zeros((2, 3)).view()).is_err());
    assert!(
        flow.invert_block(3, Array2::zeros((1, 2)).view(), 5)
            .is_err()
    );
    assert!(flow.sample(0, &mut rng).is_err());
}

#[test]
fn save_load_round_trip_and_kind_checks() {
    let flow = random_flow(config(2, 2, 4, 0.9), 1.0, 8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("res.safetensors");
    flow.save(&path).unwrap();
    let back = ResidualFlow::load(&path).unwrap();
    assert_eq!(back, flow);
    assert_eq!(
        fm_nf::model_kind(&path).unwrap().as_deref(),
        Some("residual")
    );
    let x = rand_x(&mut fm_core::rng::seeded(1), 5, 2);
    assert_eq!(
        back.log_prob(x.view()).unwrap(),
        flow.log_prob(x.view()).unwrap()
    );
    // A residual file is not a coupling flow, and the other way round.
    let err = fm_nf::CouplingFlow::load(&path).unwrap_err().to_string();
    assert!(err.contains("`residual`, not `coupling`"), "{err}");
    let cpath = dir.path().join("coupling.safetensors");
    fm_nf::CouplingFlow::new(Default::default(), &mut fm_core::rng::seeded(0))
        .unwrap()
        .save(&cpath)
        .unwrap();
    let err = ResidualFlow::load(&cpath).unwrap_err().to_string();
    assert!(err.contains("`coupling`, not `residual`"), "{err}");
}
