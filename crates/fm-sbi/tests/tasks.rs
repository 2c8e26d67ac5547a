//! Every task against independent oracles: prior support and finite likelihoods at simulated
//! data (property test), reference posteriors against self-normalised importance sampling from
//! the prior with the task's likelihood, the SLCP sampler's diagnostics and mirror symmetry,
//! and the SLCP simulator's covariance against its definition.

use fm_sbi::{McmcOptions, Slcp, TASK_NAMES, Task, task};
use ndarray::{Array1, Array2, Axis};
use proptest::prelude::*;

proptest! {
    #[test]
    fn simulations_have_finite_likelihood_under_their_parameters(seed in any::<u64>(), k in 0usize..4) {
        let t = task(TASK_NAMES[k]).unwrap();
        let mut rng = fm_core::rng::seeded(seed);
        let (theta, x) = t.simulate_pairs(3, &mut rng).unwrap();
        prop_assert_eq!(theta.dim(), (3, t.theta_dim()));
        prop_assert_eq!(x.dim(), (3, t.x_dim()));
        let prior = t.prior_log_prob(theta.view()).unwrap();
        prop_assert!(prior.iter().all(|p| p.is_finite()));
        for (i, xi) in x.rows().into_iter().enumerate() {
            let ll = t.log_likelihood(theta.row(i).insert_axis(Axis(0)), xi).unwrap();
            prop_assert!(ll[0].is_finite(), "{}: θ {:?} x {:?}", t.name(), theta.row(i), xi);
        }
    }
}

/// The posterior mean and its standard error by self-normalised importance sampling with the
/// prior as proposal: weights ∝ likelihood.
fn importance_mean(
    t: &dyn Task,
    x: &Array1<f64>,
    n: usize,
    seed: u64,
) -> (Array1<f64>, Array1<f64>) {
    let mut rng = fm_core::rng::seeded(seed);
    let theta = t.sample_prior(n, &mut rng).unwrap();
    let ll = t.log_likelihood(theta.view(), x.view()).unwrap();
    let max = ll.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let w = ll.mapv(|l| (l - max).exp());
    let (sw, sw2) = (w.sum(), w.mapv(|v| v * v).sum());
    let ess = sw * sw / sw2;
    let mean = theta.t().dot(&w) / sw;
    let var = (&theta - &mean).mapv(|v| v * v).t().dot(&w) / sw;
    (mean, var.mapv(|v| (v / ess).sqrt()))
}

#[test]
fn exact_reference_posteriors_agree_with_importance_sampling() {
    // The 2-D tasks; gaussian_linear is checked against its closed form in its unit tests.
    for name in ["two_moons", "gaussian_mixture"] {
        let t = task(name).unwrap();
        for i in 1..=3 {
            let x = t.observation(i).unwrap();
            let (is_mean, is_se) = importance_mean(t.as_ref(), &x, 400_000, 7 + i as u64);
            let mut rng = fm_core::rng::seeded(i as u64);
            let post = t.reference_posterior(i, 20_000, &mut rng).unwrap();
            let mean = post.mean_axis(Axis(0)).unwrap();
            let sd = post.std_axis(Axis(0), 1.0);
            for j in 0..t.theta_dim() {
                let se = (is_se[j].powi(2) + sd[j].powi(2) / 20_000.0).sqrt();
                assert!(
                    (mean[j] - is_mean[j]).abs() < 5.0 * se,
                    "{name} observation {i} θ{j}: sampler {} vs importance {} (se {se})",
                    mean[j],
                    is_mean[j]
                );
            }
        }
    }
}

#[test]
fn slcp_reference_chains_agree_and_cover_the_four_mirror_modes() {
    let slcp = Slcp::default();
    for i in 1..=3 {
        let x = slcp.observation(i).unwrap();
        let mut rng = fm_core::rng::seeded(i as u64);
        let (post, report) = slcp
            .mcmc(x.view(), 10_000, &McmcOptions::default(), &mut rng)
            .unwrap();
        assert!(
            report.r_hat.iter().all(|&r| r < 1.05),
            "observation {i}: {report:?}"
        );
        assert!((0.05..0.6).contains(&report.acceptance), "{report:?}");
        // Every draw explains the data: its log posterior is within the bulk of the chain's.
        let lp = slcp
            .log_posterior_unnormalized(post.view(), x.view())
            .unwrap();
        assert!(lp.iter().all(|l| l.is_finite()));
        for j in [2, 3] {
            let neg = post.column(j).iter().filter(|&&v| v < 0.0).count() as f64 / 10_000.0;
            // Binomial(10 000, ½): 5σ = 0.025.
            assert!((neg - 0.5).abs() < 0.025, "θ{j}: {neg} negative");
        }
    }
}

#[test]
fn slcp_simulator_has_the_defined_covariance() {
    let theta = Array2::from_shape_fn((20_000, 5), |(_, j)| [0.5, -1.0, 1.2, 0.8, 0.6][j]);
    let mut rng = fm_core::rng::seeded(9);
    let x = Slcp::default().simulate(theta.view(), &mut rng).unwrap();
    // All four draws of a row share (m, S): pool them.
    let pts = x.into_shape_with_order((80_000, 2)).unwrap();
    let mean = pts.mean_axis(Axis(0)).unwrap();
    let c = &pts - &mean;
    let cov = c.t().dot(&c) / 79_999.0;
    let (s1, s2, rho) = (1.2f64 * 1.2, 0.8f64 * 0.8, 0.6f64.tanh());
    let want = [[s1 * s1, rho * s1 * s2], [rho * s1 * s2, s2 * s2]];
    assert!(
        (mean[0] - 0.5).abs() < 0.03 && (mean[1] + 1.0).abs() < 0.02,
        "{mean}"
    );
    for a in 0..2 {
        for b in 0..2 {
            assert!(
                (cov[[a, b]] - want[a][b]).abs() < 0.04 * want[0][0],
                "{cov} vs {want:?}"
            );
        }
    }
}

#[test]
fn bad_inputs_are_named_errors() {
    let t = task("two_moons").unwrap();
    let mut rng = fm_core::rng::seeded(0);
    assert!(t.observation(0).unwrap_err().to_string().contains("1..=3"));
    assert!(t.sample_prior(0, &mut rng).is_err());
    let wrong = Array2::<f64>::zeros((3, 5));
    assert!(
        t.simulate(wrong.view(), &mut rng)
            .unwrap_err()
            .to_string()
            .contains("2 columns")
    );
    let x = Array1::from(vec![0.0, f64::NAN]);
    let e = t
        .reference_posterior_at(x.view(), 10, &mut rng)
        .unwrap_err();
    assert!(e.to_string().contains("non-finite"), "{e}");
    // An observation the simulator cannot produce: the rejection sampler gives up, with an error.
    let far = Array1::from(vec![50.0, 50.0]);
    let e = t
        .reference_posterior_at(far.view(), 10, &mut rng)
        .unwrap_err();
    assert!(e.to_string().contains("gave up"), "{e}");
}
