//! The maximum-likelihood CNF: the discretised log-det against the finite-difference Jacobian
//! of the solve, the discretised objective's gradient against finite differences,
//! normalisation on a 2-D grid, training, the model file.
use fm_autograd::Activation;
use fm_core::LogDensity;
use fm_nf::{
    CnfConfig, CnfEval, CnfMle, MaxLikelihood, ProbeNoise, TraceEstimator, TrainConfig, train,
};
use ndarray::{Array2, Axis};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

fn config(dim: usize, hidden: usize, solver: &str, steps: usize) -> CnfConfig {
    CnfConfig {
        dim,
        hidden: vec![hidden],
        activation: Activation::Tanh,
        solver: solver.into(),
        train_steps: steps,
        eval_steps: steps,
        eval: CnfEval::Fixed,
        trace: TraceEstimator::Exact,
    }
}

fn random_cnf(cfg: CnfConfig, w: f64, seed: u64) -> CnfMle {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut cnf = CnfMle::new(cfg, &mut rng).unwrap();
    for p in cnf.params_mut() {
        *p = rng.random_range(-w..w);
    }
    cnf
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// With RK4 and 24 steps, the integrated divergence is log|det| of the solve's own map to
    /// the discretisation error (1e-5 here; the two differ by O(h⁴)).
    #[test]
    fn integrated_divergence_matches_the_solve_jacobian(d in 1usize..4, h in 1usize..5, seed in any::<u64>()) {
        let cnf = random_cnf(config(d, h, "rk4", 24), 0.7, seed);
        let x = rand_x(&mut rand_chacha::ChaCha8Rng::seed_from_u64(!seed), 2, d);
        let (_, ld) = cnf.encode(x.view(), 24).unwrap();
        let step = 1e-6;
        for i in 0..x.nrows() {
            let row = x.row(i).to_owned().insert_axis(Axis(0));
            let mut jac = Array2::zeros((d, d));
            for j in 0..d {
                let (mut xp, mut xm) = (row.clone(), row.clone());
                xp[[0, j]] += step;
                xm[[0, j]] -= step;
                let zp = cnf.encode(xp.view(), 24).unwrap().0;
                let zm = cnf.encode(xm.view(), 24).unwrap().0;
                for r in 0..d {
                    jac[[r, j]] = (zp[[0, r]] - zm[[0, r]]) / (2.0 * step);
                }
            }
            let fd = log_abs_det(jac);
            prop_assert!((fd - ld[i]).abs() < 1e-5 * (1.0 + fd.abs()), "row {i}: {fd} vs {}", ld[i]);
        }
    }

    #[test]
    fn discretised_objective_gradient_matches_finite_differences(
        d in 1usize..3, seed in any::<u64>(), which in 0usize..3,
    ) {
        let solver = ["euler", "midpoint", "rk4"][which];
        let mut cnf = random_cnf(config(d, 3, solver, 3), 0.7, seed);
        let x = rand_x(&mut rand_chacha::ChaCha8Rng::seed_from_u64(!seed), 3, d);
        let mut rng = fm_core::rng::seeded(0);
        let (loss, grad) = cnf.nll_and_grad(x.view(), &mut rng).unwrap();
        prop_assert!((loss + cnf.log_prob(x.view()).unwrap().mean().unwrap()).abs() < 1e-12);
        let h = 1e-6;
        for (i, &gi) in grad.iter().enumerate() {
            let p0 = cnf.params()[i];
            cnf.params_mut()[i] = p0 + h;
            let up = cnf.nll_and_grad(x.view(), &mut rng).unwrap().0;
            cnf.params_mut()[i] = p0 - h;
            let down = cnf.nll_and_grad(x.view(), &mut rng).unwrap().0;
            cnf.params_mut()[i] = p0;
            let fd = (up - down) / (2.0 * h);
            prop_assert!((fd - gi).abs() < 1e-6 * (1.0 + fd.abs()), "param {i}: {fd} vs {gi}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// With the exact divergence, the fused training pass (`nll_and_grad`) and the tape
    /// (`nll_and_grad_tape`) give the same loss and gradient: one to three hidden layers,
    /// smooth activations, every fixed-step solver.
    #[test]
    fn fused_exact_step_matches_the_tape(
        d in 1usize..4, depth in 1usize..4, h in 1usize..7, n in 1usize..20, steps in 1usize..4,
        act in prop::sample::select(vec![Activation::Tanh, Activation::Silu, Activation::Selu, Activation::Gelu]),
        which in 0usize..6, seed in any::<u64>(),
    ) {
        let solver = ["euler", "midpoint", "heun", "ralston", "ssprk3", "rk4"][which];
        let cfg = CnfConfig { hidden: vec![h; depth], activation: act, ..config(d, h, solver, steps) };
        let cnf = random_cnf(cfg, 0.7, seed);
        let x = rand_x(&mut rand_chacha::ChaCha8Rng::seed_from_u64(!seed), n, d);
        let mut rng = fm_core::rng::seeded(0);
        let (l1, g1) = cnf.nll_and_grad(x.view(), &mut rng).unwrap();
        let (l2, g2) = cnf.nll_and_grad_tape(x.view(), &mut rng).unwrap();
        prop_assert!((l1 - l2).abs() <= 1e-12 * (1.0 + l2.abs()), "{l1} vs {l2}");
        prop_assert_eq!(g1.len(), g2.len());
        for (i, (a, b)) in g1.iter().zip(&g2).enumerate() {
            prop_assert!((a - b).abs() <= 1e-11 * (1.0 + b.abs()), "param {i}: {a} vs {b}");
        }
    }
}

/// A random 2-D CNF's density (RK4, 16 steps), by the midpoint rule on a 161 × 161 grid over
/// [−10, 10]², is 1 within 1e-6 (the discretised divergence is not exactly the solve's
/// log-determinant; measured: 9e-10 off).
#[test]
fn density_integrates_to_one_on_a_2d_grid() {
    let cnf = random_cnf(config(2, 8, "rk4", 16), 0.6, 4);
    let (m, lim) = (161usize, 10.0);
    let hstep = 2.0 * lim / m as f64;
    let grid = Array2::from_shape_fn((m * m, 2), |(i, j)| {
        let idx = if j == 0 { i / m } else { i % m };
        -lim + (idx as f64 + 0.5) * hstep
    });
    let lp = cnf.log_prob(grid.view()).unwrap();
    let mass: f64 = lp.iter().map(|l| l.exp()).sum::<f64>() * hstep * hstep;
    assert!((mass - 1.0).abs() < 1e-6, "mass {mass}");
}

#[test]
fn samples_invert_the_encoding() {
    // Solving 0 → 1 then 1 → 0 with many RK4 steps returns to the start.
    let cnf = random_cnf(config(2, 8, "rk4", 64), 0.6, 9);
    let mut rng = fm_core::rng::seeded(1);
    let x = cnf.sample(20, &mut rng).unwrap();
    // The latents `sample` drew: the same seed through `StandardNormal`.
    let z = fm_core::StandardNormal::new(2)
        .unwrap()
        .sample(20, &mut fm_core::rng::seeded(1));
    let (back, _) = cnf.encode(x.view(), 64).unwrap();
    for (a, b) in z.iter().zip(&back) {
        assert!((a - b).abs() < 1e-7, "{a} vs {b}");
    }
}

#[test]
fn training_raises_held_out_likelihood() {
    let draw = |n: usize, rng: &mut fm_core::rng::FmRng| {
        Array2::from_shape_fn((n, 2), |_| rng.random_range(-1.0..1.0))
            .dot(&ndarray::array![[1.0, 0.8], [0.0, 0.3]])
            + 1.5
    };
    let mut rng = fm_core::rng::seeded(2);
    let (tr, te) = (draw(1000, &mut rng), draw(500, &mut rng));
    let cfg = CnfConfig {
        hidden: vec![32],
        solver: "midpoint".into(),
        train_steps: 4,
        eval_steps: 16,
        ..Default::default()
    };
    let mut cnf = CnfMle::new(cfg, &mut rng).unwrap();
    let before = cnf.log_prob(te.view()).unwrap().mean().unwrap();
    let tc = TrainConfig {
        steps: 150,
        batch_size: 64,
        lr: 1e-2,
        ..Default::default()
    };
    train(&mut cnf, tr.view(), &tc, &mut rng).unwrap();
    let after = cnf.log_prob(te.view()).unwrap().mean().unwrap();
    eprintln!("held-out mean log p: before {before:.3}, after {after:.3}");
    assert!(after > before + 1.0, "before {before}, after {after}");
}

#[test]
fn save_load_and_bad_settings() {
    let cnf = random_cnf(config(2, 4, "heun", 5), 0.5, 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cnf.safetensors");
    cnf.save(&path).unwrap();
    assert_eq!(CnfMle::load(&path).unwrap(), cnf);
    assert_eq!(
        fm_nf::model_kind(&path).unwrap().as_deref(),
        Some("cnf-mle")
    );
    let err = fm_nf::ResidualFlow::load(&path).unwrap_err().to_string();
    assert!(err.contains("`cnf-mle`, not `residual`"), "{err}");
    let mut rng = fm_core::rng::seeded(0);
    for (cfg, name) in [
        (
            CnfConfig {
                solver: "dopri".into(),
                ..Default::default()
            },
            "solver",
        ),
        (
            CnfConfig {
                train_steps: 0,
                ..Default::default()
            },
            "train_steps",
        ),
        (
            CnfConfig {
                dim: 0,
                ..Default::default()
            },
            "dim",
        ),
        (
            CnfConfig {
                hidden: vec![],
                ..Default::default()
            },
            "hidden",
        ),
    ] {
        let err = CnfMle::new(cfg, &mut rng).unwrap_err();
        assert!(
            matches!(&err, fm_nf::NfError::InvalidParameter { name: n, .. } if *n == name),
            "{err}"
        );
    }
    assert!(cnf.log_prob(Array2::zeros((1, 3)).view()).is_err());
    assert!(cnf.encode(Array2::zeros((1, 2)).view(), 0).is_err());
    assert!(cnf.sample(0, &mut rng).is_err());
}

/// The adaptive evaluation (Dormand–Prince on `[x, ℓ]`, tolerances 1e-10) agrees with a fine
/// fixed-step solve of the tape's own discretisation (RK4, 2,000 steps, error O(h⁴) ≈ 1e-13):
/// log-densities within 1e-7, samples within 1e-7.
#[test]
fn dopri5_evaluation_agrees_with_a_fine_fixed_step_solve() {
    for (d, seed) in [(1usize, 3u64), (2, 5), (3, 8)] {
        let mut cfg = config(d, 8, "rk4", 2000);
        cfg.eval = CnfEval::Dopri5 {
            rtol: 1e-10,
            atol: 1e-10,
        };
        let cnf = random_cnf(cfg.clone(), 0.8, seed);
        let x = rand_x(
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed + 100),
            16,
            d,
        );
        let adaptive = cnf.log_density(x.view()).unwrap();
        let fixed = cnf.log_density_fixed(x.view(), 2000).unwrap();
        let gap = (&adaptive - &fixed)
            .mapv(f64::abs)
            .fold(0.0f64, |a, &b| a.max(b));
        assert!(gap < 1e-7, "d = {d}: log-density gap {gap}");
        // A coarse fixed solve is visibly off, so the comparison can fail.
        let coarse = cnf.log_density_fixed(x.view(), 2).unwrap();
        let coarse_gap = (&adaptive - &coarse)
            .mapv(f64::abs)
            .fold(0.0f64, |a, &b| a.max(b));
        assert!(
            coarse_gap > 1e3 * gap.max(1e-12),
            "d = {d}: {coarse_gap} vs {gap}"
        );
        let s_adaptive = cnf.sample(16, &mut fm_core::rng::seeded(seed)).unwrap();
        let mut fixed_cfg = cfg;
        fixed_cfg.eval = CnfEval::Fixed;
        let mut fixed_cnf = CnfMle::new(fixed_cfg, &mut fm_core::rng::seeded(0)).unwrap();
        fixed_cnf.params_mut().copy_from_slice(cnf.params());
        let s_fixed = fixed_cnf
            .sample(16, &mut fm_core::rng::seeded(seed))
            .unwrap();
        let sgap = (&s_adaptive - &s_fixed)
            .mapv(f64::abs)
            .fold(0.0f64, |a, &b| a.max(b));
        assert!(sgap < 1e-7, "d = {d}: sample gap {sgap}");
    }
}

/// The plain-array field that Dormand–Prince integrates has the divergence of its own
/// velocity: central differences of `velocity` (step 1e-5) within 1e-7.
#[test]
fn the_evaluation_field_divergence_matches_finite_differences() {
    use fm_core::VectorField;
    let cnf = random_cnf(config(3, 6, "rk4", 4), 0.9, 21);
    let field = cnf.field_at_params();
    let x = rand_x(&mut rand_chacha::ChaCha8Rng::seed_from_u64(22), 5, 3);
    let div = field.divergence_vec(0.3, x.view());
    let h = 1e-5;
    for i in 0..5 {
        let mut fd = 0.0;
        for j in 0..3 {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[[i, j]] += h;
            xm[[i, j]] -= h;
            let vp = field.velocity_vec(0.3, xp.view());
            let vm = field.velocity_vec(0.3, xm.view());
            fd += (vp[[i, j]] - vm[[i, j]]) / (2.0 * h);
        }
        assert!((fd - div[i]).abs() < 1e-7, "row {i}: {fd} vs {}", div[i]);
    }
}

/// Hutchinson's estimate of the discretised objective is unbiased for the loss and for every
/// component of its gradient: over M = 3,000 independent probe draws (one probe per row), the
/// mean is within 4.5 standard errors (σ̂/√M) of the exact-divergence value, for Gaussian and
/// Rademacher probes. (67 parameters + the loss: 4.5 SE keeps the chance of a false alarm
/// below 1e-3 for an unbiased estimator, while the SE is small next to the values: the loss'
/// SE is checked to be below 1 % of its magnitude, so a bias of a few % would fail.)
#[test]
fn hutchinson_loss_and_gradient_are_unbiased() {
    let mut cfg = config(3, 8, "rk4", 3);
    let cnf_exact = random_cnf(cfg.clone(), 0.8, 31);
    let x = rand_x(&mut rand_chacha::ChaCha8Rng::seed_from_u64(32), 4, 3);
    let (loss0, grad0) = cnf_exact
        .nll_and_grad(x.view(), &mut fm_core::rng::seeded(0))
        .unwrap();
    for noise in [ProbeNoise::Gaussian, ProbeNoise::Rademacher] {
        cfg.trace = TraceEstimator::Hutchinson { probes: 1, noise };
        let mut cnf = CnfMle::new(cfg.clone(), &mut fm_core::rng::seeded(0)).unwrap();
        cnf.params_mut().copy_from_slice(cnf_exact.params());
        let m = 3000usize;
        let k = grad0.len() + 1;
        let (mut sum, mut sum2) = (vec![0.0; k], vec![0.0; k]);
        let mut rng = fm_core::rng::seeded(33);
        for _ in 0..m {
            let (l, g) = cnf.nll_and_grad(x.view(), &mut rng).unwrap();
            for (i, v) in std::iter::once(l).chain(g).enumerate() {
                sum[i] += v;
                sum2[i] += v * v;
            }
        }
        let exact: Vec<f64> = std::iter::once(loss0)
            .chain(grad0.iter().copied())
            .collect();
        let mut worst: (f64, usize) = (0.0, 0);
        for i in 0..k {
            let mean = sum[i] / m as f64;
            let var = (sum2[i] / m as f64 - mean * mean).max(0.0) * m as f64 / (m - 1) as f64;
            let se = (var / m as f64).sqrt();
            if i == 0 {
                assert!(var > 0.0, "{noise:?}: the estimate does not vary");
                assert!(
                    se < 0.01 * loss0.abs(),
                    "{noise:?}: loss SE {se} vs {loss0}"
                );
            }
            let z = (mean - exact[i]).abs() / se.max(1e-300);
            if se == 0.0 {
                assert!((mean - exact[i]).abs() < 1e-12, "{noise:?}: component {i}");
            } else if z > worst.0 {
                worst = (z, i);
            }
            assert!(
                z <= 4.5 || se == 0.0,
                "{noise:?}: component {i}: mean {mean} vs exact {}, SE {se} (z = {z:.2})",
                exact[i]
            );
        }
        eprintln!(
            "{noise:?}: largest |z| = {:.2} at component {}",
            worst.0, worst.1
        );
    }
}

/// Training with Hutchinson probes (2 Rademacher probes per row) raises the held-out
/// likelihood as the exact divergence does.
#[test]
fn training_with_hutchinson_probes_raises_held_out_likelihood() {
    let draw = |n: usize, rng: &mut fm_core::rng::FmRng| {
        Array2::from_shape_fn((n, 2), |_| rng.random_range(-1.0..1.0))
            .dot(&ndarray::array![[1.0, 0.8], [0.0, 0.3]])
            + 1.5
    };
    let mut rng = fm_core::rng::seeded(2);
    let (tr, te) = (draw(1000, &mut rng), draw(500, &mut rng));
    let cfg = CnfConfig {
        hidden: vec![32],
        solver: "midpoint".into(),
        train_steps: 4,
        trace: TraceEstimator::Hutchinson {
            probes: 2,
            noise: ProbeNoise::Rademacher,
        },
        ..Default::default()
    };
    let mut cnf = CnfMle::new(cfg, &mut rng).unwrap();
    let before = cnf.log_prob(te.view()).unwrap().mean().unwrap();
    let tc = TrainConfig {
        steps: 150,
        batch_size: 64,
        lr: 1e-2,
        ..Default::default()
    };
    train(&mut cnf, tr.view(), &tc, &mut rng).unwrap();
    let after = cnf.log_prob(te.view()).unwrap().mean().unwrap();
    eprintln!("held-out mean log p (Hutchinson training): before {before:.3}, after {after:.3}");
    assert!(after > before + 1.0, "before {before}, after {after}");
}

/// A config written before `eval` and `trace` existed reads their defaults; bad tolerances
/// and probe counts are refused by name.
#[test]
fn old_configs_read_defaults_and_bad_eval_settings_are_refused() {
    let old = r#"{"dim":2,"hidden":[4],"activation":"Tanh","solver":"rk4","train_steps":3,"eval_steps":5}"#;
    let cfg: CnfConfig = serde_json::from_str(old).unwrap();
    assert_eq!(cfg.eval, CnfEval::default());
    assert_eq!(cfg.trace, TraceEstimator::Exact);
    let mut rng = fm_core::rng::seeded(0);
    for (cfg, name) in [
        (
            CnfConfig {
                eval: CnfEval::Dopri5 {
                    rtol: 0.0,
                    atol: 1e-5,
                },
                ..Default::default()
            },
            "rtol",
        ),
        (
            CnfConfig {
                eval: CnfEval::Dopri5 {
                    rtol: 1e-5,
                    atol: f64::NAN,
                },
                ..Default::default()
            },
            "atol",
        ),
        (
            CnfConfig {
                trace: TraceEstimator::Hutchinson {
                    probes: 0,
                    noise: ProbeNoise::Gaussian,
                },
                ..Default::default()
            },
            "probes",
        ),
    ] {
        let err = CnfMle::new(cfg, &mut rng).unwrap_err();
        assert!(
            matches!(&err, fm_nf::NfError::InvalidParameter { name: n, .. } if *n == name),
            "{err}"
        );
    }
}

/// The default (adaptive) evaluation's density also integrates to 1 on a 2-D grid.
#[test]
fn dopri5_density_integrates_to_one_on_a_2d_grid() {
    let mut cfg = config(2, 8, "rk4", 16);
    cfg.eval = CnfEval::default();
    let cnf = random_cnf(cfg, 0.6, 4);
    let (m, lim) = (161usize, 10.0);
    let hstep = 2.0 * lim / m as f64;
    let grid = Array2::from_shape_fn((m * m, 2), |(i, j)| {
        let idx = if j == 0 { i / m } else { i % m };
        -lim + (idx as f64 + 0.5) * hstep
    });
    let lp = cnf.log_prob(grid.view()).unwrap();
    let mass: f64 = lp.iter().map(|l| l.exp()).sum::<f64>() * hstep * hstep;
    eprintln!("dopri5 mass {mass}");
    assert!((mass - 1.0).abs() < 1e-5, "mass {mass}");
}

/// For a fixed probe draw (the same RNG seed each call), the Hutchinson objective is a
/// deterministic function of the parameters, and the tape's gradient is its gradient: central
/// differences (step 1e-6) within 1e-6 relative, for both noises and three solvers.
#[test]
fn hutchinson_objective_gradient_matches_finite_differences() {
    for (seed, noise, solver) in [
        (1u64, ProbeNoise::Gaussian, "euler"),
        (2, ProbeNoise::Rademacher, "midpoint"),
        (3, ProbeNoise::Gaussian, "rk4"),
    ] {
        let mut cfg = config(2, 3, solver, 3);
        cfg.trace = TraceEstimator::Hutchinson { probes: 2, noise };
        let mut cnf = random_cnf(cfg, 0.7, seed);
        let x = rand_x(&mut rand_chacha::ChaCha8Rng::seed_from_u64(!seed), 3, 2);
        let loss = |c: &CnfMle| {
            c.nll_and_grad(x.view(), &mut fm_core::rng::seeded(seed))
                .unwrap()
        };
        let (l0, grad) = loss(&cnf);
        // The probes matter: another draw gives another value.
        let other = cnf
            .nll_and_grad(x.view(), &mut fm_core::rng::seeded(seed + 1000))
            .unwrap()
            .0;
        assert!((other - l0).abs() > 1e-9, "{other} vs {l0}");
        let h = 1e-6;
        for (i, &gi) in grad.iter().enumerate() {
            let p0 = cnf.params()[i];
            cnf.params_mut()[i] = p0 + h;
            let up = loss(&cnf).0;
            cnf.params_mut()[i] = p0 - h;
            let down = loss(&cnf).0;
            cnf.params_mut()[i] = p0;
            let fd = (up - down) / (2.0 * h);
            assert!(
                (fd - gi).abs() < 1e-6 * (1.0 + fd.abs()),
                "{solver} param {i}: {fd} vs {gi}"
            );
        }
    }
}
