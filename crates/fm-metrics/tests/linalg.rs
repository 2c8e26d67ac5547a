//! Feature `linalg`: the Fréchet distance against closed forms and the full-covariance Gaussian
//! against direct formulas (2×2 inverse and determinant by hand, affine change of variables
//! with a 3×3 determinant by Sarrus' rule, sample moments).
//!
//! Run with `cargo test -p fm-metrics --features linalg` (needs `libopenblas-dev`).
#![cfg(feature = "linalg")]

use fm_core::{LogDensity, StandardNormal};
use fm_metrics::{
    LikelihoodOptions, MetricsError, MultivariateNormal, frechet_distance,
    frechet_distance_gaussians, gaussian_fit, log_likelihood_with_source,
};
use ndarray::{Array1, Array2, ArrayView2, array};
use proptest::prelude::*;
use std::f64::consts::PI;

fn sample(n: usize, d: usize, v: &[f64]) -> Array2<f64> {
    Array2::from_shape_fn((n, d), |(i, j)| v[(i * d + j) % v.len()] * (1.0 + j as f64))
}

/// A 3-D rotation: the product of Givens rotations in the (0,1), (1,2), (0,2) planes.
fn rotation(a: f64, b: f64, c: f64) -> Array2<f64> {
    let g = |p: usize, q: usize, th: f64| {
        let mut m = Array2::<f64>::eye(3);
        m[[p, p]] = th.cos();
        m[[q, q]] = th.cos();
        m[[p, q]] = -th.sin();
        m[[q, p]] = th.sin();
        m
    };
    g(0, 1, a).dot(&g(1, 2, b)).dot(&g(0, 2, c))
}

/// A 2×2 covariance from variances and a correlation.
fn cov2(va: f64, vc: f64, rho: f64) -> Array2<f64> {
    let b = rho * (va * vc).sqrt();
    array![[va, b], [b, vc]]
}

/// log N(x; μ, Σ) for 2×2 Σ with the inverse and determinant written out by hand.
fn log_normal_2x2(x: [f64; 2], mu: [f64; 2], s: &Array2<f64>) -> f64 {
    let (a, b, c) = (s[[0, 0]], s[[0, 1]], s[[1, 1]]);
    let det = a * c - b * b;
    let (dx, dy) = (x[0] - mu[0], x[1] - mu[1]);
    let q = (c * dx * dx - 2.0 * b * dx * dy + a * dy * dy) / det;
    -0.5 * q - (2.0 * PI).ln() - 0.5 * det.ln()
}

fn det3(a: &Array2<f64>) -> f64 {
    a[[0, 0]] * a[[1, 1]] * a[[2, 2]]
        + a[[0, 1]] * a[[1, 2]] * a[[2, 0]]
        + a[[0, 2]] * a[[1, 0]] * a[[2, 1]]
        - a[[0, 2]] * a[[1, 1]] * a[[2, 0]]
        - a[[0, 1]] * a[[1, 0]] * a[[2, 2]]
        - a[[0, 0]] * a[[1, 2]] * a[[2, 1]]
}

/// Mean and unbiased covariance by explicit loops (oracle for `gaussian_fit`).
fn moments_by_loops(x: ArrayView2<f64>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let (n, d) = x.dim();
    let mean: Vec<f64> = (0..d)
        .map(|j| (0..n).map(|i| x[[i, j]]).sum::<f64>() / n as f64)
        .collect();
    let cov = (0..d)
        .map(|p| {
            (0..d)
                .map(|q| {
                    (0..n)
                        .map(|i| (x[[i, p]] - mean[p]) * (x[[i, q]] - mean[q]))
                        .sum::<f64>()
                        / (n - 1) as f64
                })
                .collect()
        })
        .collect();
    (mean, cov)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The Gaussian fit equals mean and covariance summed by explicit loops.
    #[test]
    fn gaussian_fit_matches_loops(n in 2usize..20, d in 1usize..5, v in proptest::collection::vec(-5.0f64..5.0, 80)) {
        let x = sample(n, d, &v);
        let (mean, cov) = gaussian_fit(x.view()).unwrap();
        let (m2, c2) = moments_by_loops(x.view());
        for p in 0..d {
            prop_assert!((mean[p] - m2[p]).abs() < 1e-12);
            for q in 0..d {
                prop_assert!((cov[[p, q]] - c2[p][q]).abs() < 1e-10 * (1.0 + c2[p][q].abs()));
            }
        }
    }

    /// A sample against itself is 0; against a copy shifted by c it is ‖c‖² (the covariance
    /// terms cancel).
    #[test]
    fn self_is_zero_and_shift_is_its_square(
        n in 8usize..40, d in 1usize..5,
        v in proptest::collection::vec(-3.0f64..3.0, 97),
        c in proptest::collection::vec(-4.0f64..4.0, 4),
    ) {
        let x = sample(n, d, &v);
        let scale = 1.0 + gaussian_fit(x.view()).unwrap().1.diag().sum();
        let same = frechet_distance(x.view(), x.view()).unwrap();
        prop_assert!(same.abs() < 1e-9 * scale, "self: {same}");
        let shift = Array1::from_iter(c[..d].iter().copied());
        let y = &x + &shift;
        let shifted = frechet_distance(x.view(), y.view()).unwrap();
        let want: f64 = shift.iter().map(|s| s * s).sum();
        prop_assert!((shifted - want).abs() < 1e-8 * (scale + want), "{shifted} vs {want}");
    }

    /// In one dimension: (μ_a − μ_b)² + (σ_a − σ_b)², with means and sds summed by hand.
    #[test]
    fn one_dimensional_closed_form(
        m in 2usize..30, n in 2usize..30,
        v in proptest::collection::vec(-10.0f64..10.0, 60),
    ) {
        let a = Array2::from_shape_fn((m, 1), |(i, _)| v[i]);
        let b = Array2::from_shape_fn((n, 1), |(i, _)| 0.5 * v[30 + i] + 3.0);
        let stats = |x: &Array2<f64>| {
            let k = x.nrows() as f64;
            let mu = x.iter().sum::<f64>() / k;
            let var = x.iter().map(|t| (t - mu) * (t - mu)).sum::<f64>() / (k - 1.0);
            (mu, var.sqrt())
        };
        let ((ma, sa), (mb, sb)) = (stats(&a), stats(&b));
        let want = (ma - mb).powi(2) + (sa - sb).powi(2);
        let got = frechet_distance(a.view(), b.view()).unwrap();
        prop_assert!((got - want).abs() < 1e-9 * (1.0 + want + sa * sa + sb * sb), "{got} vs {want}");
    }

    /// Commuting covariances Σ = Q diag(λ) Qᵀ with a shared random rotation Q:
    /// ‖μ_a − μ_b‖² + Σ_i (√λ_ai − √λ_bi)².
    #[test]
    fn commuting_covariances_closed_form(
        angles in proptest::collection::vec(-3.0f64..3.0, 3),
        la in proptest::collection::vec(0.01f64..9.0, 3),
        lb in proptest::collection::vec(0.01f64..9.0, 3),
        mu in proptest::collection::vec(-2.0f64..2.0, 6),
    ) {
        let q = rotation(angles[0], angles[1], angles[2]);
        let cov = |l: &[f64]| q.dot(&Array2::from_diag(&Array1::from(l.to_vec()))).dot(&q.t());
        let (ma, mb) = (Array1::from(mu[..3].to_vec()), Array1::from(mu[3..].to_vec()));
        let got = frechet_distance_gaussians(ma.view(), cov(&la).view(), mb.view(), cov(&lb).view()).unwrap();
        let want: f64 = (0..3).map(|i| (mu[i] - mu[3 + i]).powi(2) + (la[i].sqrt() - lb[i].sqrt()).powi(2)).sum();
        prop_assert!((got - want).abs() < 1e-9 * (1.0 + want), "{got} vs {want}");
    }

    /// General (non-commuting) 2×2 covariances: tr (Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2} is the sum of
    /// the roots of the eigenvalues of Σ_a Σ_b, i.e. sqrt(tr(Σ_a Σ_b) + 2 sqrt(det Σ_a det Σ_b)).
    /// Also symmetric in (a, b), which the formula does not show.
    #[test]
    fn two_by_two_closed_form(
        p in proptest::collection::vec(0.05f64..5.0, 4),
        r in proptest::collection::vec(-0.95f64..0.95, 2),
        mu in proptest::collection::vec(-2.0f64..2.0, 4),
    ) {
        let (sa, sb) = (cov2(p[0], p[1], r[0]), cov2(p[2], p[3], r[1]));
        let (ma, mb) = (array![mu[0], mu[1]], array![mu[2], mu[3]]);
        let det = |s: &Array2<f64>| s[[0, 0]] * s[[1, 1]] - s[[0, 1]] * s[[1, 0]];
        let tr_ab = sa[[0, 0]] * sb[[0, 0]] + 2.0 * sa[[0, 1]] * sb[[1, 0]] + sa[[1, 1]] * sb[[1, 1]];
        let cross = (tr_ab + 2.0 * (det(&sa) * det(&sb)).sqrt()).sqrt();
        let want = (mu[0] - mu[2]).powi(2) + (mu[1] - mu[3]).powi(2)
            + sa[[0, 0]] + sa[[1, 1]] + sb[[0, 0]] + sb[[1, 1]] - 2.0 * cross;
        let got = frechet_distance_gaussians(ma.view(), sa.view(), mb.view(), sb.view()).unwrap();
        let back = frechet_distance_gaussians(mb.view(), sb.view(), ma.view(), sa.view()).unwrap();
        prop_assert!((got - want).abs() < 1e-9 * (1.0 + want), "{got} vs {want}");
        prop_assert!((back - want).abs() < 1e-9 * (1.0 + want), "{back} vs {want}");
    }

    /// log_prob for 2×2 covariances against the hand-written inverse and determinant.
    #[test]
    fn log_prob_matches_two_by_two_formula(
        p in proptest::collection::vec(0.05f64..5.0, 2),
        rho in -0.98f64..0.98,
        mu in proptest::collection::vec(-3.0f64..3.0, 2),
        xs in proptest::collection::vec(-6.0f64..6.0, 10),
    ) {
        let s = cov2(p[0], p[1], rho);
        let g = MultivariateNormal::new(array![mu[0], mu[1]], s.clone()).unwrap();
        let x = Array2::from_shape_fn((5, 2), |(i, j)| xs[2 * i + j]);
        let lp = g.log_prob(x.view()).unwrap();
        for i in 0..5 {
            let want = log_normal_2x2([x[[i, 0]], x[[i, 1]]], [mu[0], mu[1]], &s);
            prop_assert!((lp[i] - want).abs() < 1e-9 * (1.0 + want.abs()), "{} vs {want}", lp[i]);
        }
        let det = s[[0, 0]] * s[[1, 1]] - s[[0, 1]] * s[[0, 1]];
        prop_assert!((g.log_det() - det.ln()).abs() < 1e-10 * (1.0 + det.ln().abs()));
    }

    /// Change of variables: with Σ = A Aᵀ (A a general 3×3 matrix) and x = μ + A z,
    /// log p(x) = log N(z; 0, I) − ln |det A|, det A by Sarrus' rule.
    #[test]
    fn log_prob_matches_affine_change_of_variables(
        a in proptest::collection::vec(-2.0f64..2.0, 9),
        mu in proptest::collection::vec(-3.0f64..3.0, 3),
        z in proptest::collection::vec(-3.0f64..3.0, 12),
    ) {
        let a = Array2::from_shape_fn((3, 3), |(i, j)| a[3 * i + j] + if i == j { 2.5 } else { 0.0 });
        let det = det3(&a);
        prop_assume!(det.abs() > 0.1);
        let mu = Array1::from(mu);
        let g = MultivariateNormal::new(mu.clone(), a.dot(&a.t())).unwrap();
        let z = Array2::from_shape_fn((4, 3), |(i, j)| z[3 * i + j]);
        let x = z.dot(&a.t()) + &mu;
        let lp = g.log_prob(x.view()).unwrap();
        let lz = StandardNormal::new(3).unwrap().log_prob(z.view()).unwrap();
        for i in 0..4 {
            let want = lz[i] - det.abs().ln();
            prop_assert!((lp[i] - want).abs() < 1e-8 * (1.0 + want.abs()), "{} vs {want}", lp[i]);
        }
    }
}

#[test]
fn singular_covariances_are_fine_for_frechet() {
    // N(0, diag(1, 0)) vs N(0, diag(0, 1)): commuting, (1 − 0)² + (0 − 1)² = 2.
    let z = array![0.0, 0.0];
    let (sa, sb) = (
        array![[1.0, 0.0], [0.0, 0.0]],
        array![[0.0, 0.0], [0.0, 1.0]],
    );
    let d2 = frechet_distance_gaussians(z.view(), sa.view(), z.view(), sb.view()).unwrap();
    assert!((d2 - 2.0).abs() < 1e-12, "{d2}");
    // Rank-one [[1, 1], [1, 1]] against itself; a sample with n ≤ d against itself.
    let s = array![[1.0, 1.0], [1.0, 1.0]];
    let d2 = frechet_distance_gaussians(z.view(), s.view(), z.view(), s.view()).unwrap();
    assert!(d2.abs() < 1e-7, "{d2}");
    let x = array![[0.0, 1.0, 2.0], [3.0, -1.0, 0.5]];
    let d2 = frechet_distance(x.view(), x.view()).unwrap();
    assert!(d2.abs() < 1e-6, "{d2}");
}

#[test]
fn frechet_of_large_samples_approaches_the_parameter_value() {
    // 20 000 points each from two 2-D Gaussians; the plug-in estimate is within a few
    // standard errors (≈ 0.02 here) of the exact value.
    let (sa, sb) = (cov2(2.0, 0.5, 0.6), cov2(1.0, 3.0, -0.4));
    let (ma, mb) = (array![0.0, 1.0], array![1.0, -0.5]);
    let ga = MultivariateNormal::new(ma.clone(), sa.clone()).unwrap();
    let gb = MultivariateNormal::new(mb.clone(), sb.clone()).unwrap();
    let mut rng = fm_core::rng::seeded(5);
    let (xa, xb) = (ga.sample(20_000, &mut rng), gb.sample(20_000, &mut rng));
    let exact = frechet_distance_gaussians(ma.view(), sa.view(), mb.view(), sb.view()).unwrap();
    let est = frechet_distance(xa.view(), xb.view()).unwrap();
    assert!(exact > 3.0, "{exact}");
    assert!((est - exact).abs() < 0.1, "{est} vs {exact}");
}

#[test]
fn sample_moments_match_the_parameters() {
    let cov = array![[4.0, 1.2, -0.8], [1.2, 1.0, 0.3], [-0.8, 0.3, 2.0]];
    let mean = array![1.0, -2.0, 0.5];
    let g = MultivariateNormal::new(mean.clone(), cov.clone()).unwrap();
    let n = 40_000;
    let x = g.sample(n, &mut fm_core::rng::seeded(21));
    let (m, c) = moments_by_loops(x.view());
    let nf = n as f64;
    for p in 0..3 {
        // 5 standard errors: sd(mean) = sqrt(Σ_pp / n), sd(cov_pq) ≈ sqrt((Σ_pp Σ_qq + Σ_pq²) / n).
        let se = (cov[[p, p]] / nf).sqrt();
        assert!(
            (m[p] - mean[p]).abs() < 5.0 * se,
            "mean {p}: {} vs {}",
            m[p],
            mean[p]
        );
        for q in 0..3 {
            let se = ((cov[[p, p]] * cov[[q, q]] + cov[[p, q]].powi(2)) / nf).sqrt();
            assert!(
                (c[p][q] - cov[[p, q]]).abs() < 5.0 * se,
                "cov ({p}, {q}): {} vs {}",
                c[p][q],
                cov[[p, q]]
            );
        }
    }
    // The fit of the sample is a valid Gaussian close to the truth.
    let fit = MultivariateNormal::fit(x.view()).unwrap();
    assert!((fit.log_det() - g.log_det()).abs() < 0.05);
}

#[test]
fn sampling_is_seeded_and_identity_covariance_gives_standard_normal_bits() {
    let mean = array![0.5, -1.0];
    let g = MultivariateNormal::new(mean.clone(), Array2::eye(2)).unwrap();
    let x = g.sample(50, &mut fm_core::rng::seeded(3));
    let z = StandardNormal::new(2)
        .unwrap()
        .sample(50, &mut fm_core::rng::seeded(3));
    assert_eq!(x, z + &mean);
    let h = MultivariateNormal::new(mean, cov2(2.0, 1.0, 0.3)).unwrap();
    let a = h.sample(10, &mut fm_core::rng::seeded(9));
    assert_eq!(a, h.sample(10, &mut fm_core::rng::seeded(9)));
    assert_ne!(a, h.sample(10, &mut fm_core::rng::seeded(10)));
}

#[test]
fn as_flow_source_the_likelihood_of_a_scaling_flow_is_the_scaled_gaussian() {
    // v = x carries N(0, Σ) at t = 0 to N(0, e² Σ) at t = 1 (x_1 = e x_0).
    let s = cov2(1.5, 0.7, 0.5);
    let source = MultivariateNormal::new(array![0.0, 0.0], s.clone()).unwrap();
    let field = fm_core::FnField::new(2, |_t, x, mut out| out.assign(&x));
    let x_1 = array![[0.3, -0.4], [1.0, 2.0]];
    let ll = log_likelihood_with_source(
        &field,
        x_1.view(),
        &source,
        &LikelihoodOptions::default(),
        &mut fm_core::rng::seeded(0),
    )
    .unwrap();
    let e2 = s.mapv(|v| v * std::f64::consts::E.powi(2));
    for i in 0..2 {
        let want = log_normal_2x2([x_1[[i, 0]], x_1[[i, 1]]], [0.0, 0.0], &e2);
        assert!(
            (ll.log_p[i] - want).abs() < 1e-4,
            "{} vs {want}",
            ll.log_p[i]
        );
    }
}

#[test]
fn bad_covariances_are_typed_errors() {
    let m = array![0.0, 0.0];
    let not_sym = array![[1.0, 0.5], [0.4, 1.0]];
    assert!(matches!(
        MultivariateNormal::new(m.clone(), not_sym.clone()),
        Err(MetricsError::NotSymmetric { row: 1, col: 0, .. })
    ));
    let indefinite = array![[1.0, 2.0], [2.0, 1.0]];
    let err = MultivariateNormal::new(m.clone(), indefinite.clone()).unwrap_err();
    assert!(
        matches!(
            err,
            MetricsError::NotPositiveDefinite {
                kind: "definite",
                ..
            }
        ),
        "{err}"
    );
    // Positive semidefinite but singular: no density.
    let singular = array![[1.0, 1.0], [1.0, 1.0]];
    assert!(matches!(
        MultivariateNormal::new(m.clone(), singular),
        Err(MetricsError::NotPositiveDefinite { .. })
    ));
    assert!(matches!(
        MultivariateNormal::new(m.clone(), array![[1.0, f64::NAN], [f64::NAN, 1.0]]),
        Err(MetricsError::Core(_))
    ));
    assert!(matches!(
        MultivariateNormal::new(m.clone(), Array2::eye(3)),
        Err(MetricsError::Core(_))
    ));
    assert!(matches!(
        MultivariateNormal::new(array![f64::INFINITY, 0.0], Array2::eye(2)),
        Err(MetricsError::Core(_))
    ));
    assert!(MultivariateNormal::new(Array1::zeros(0), Array2::zeros((0, 0))).is_err());
    // n ≤ d: the fit is singular.
    assert!(MultivariateNormal::fit(array![[0.0, 1.0], [1.0, 0.0]].view()).is_err());
    // log_prob checks the width.
    let g = MultivariateNormal::new(m.clone(), Array2::eye(2)).unwrap();
    assert!(g.log_prob(Array2::zeros((3, 3)).view()).is_err());

    // Fréchet: asymmetric or indefinite covariances, bad shapes and samples.
    let eye = Array2::eye(2);
    assert!(matches!(
        frechet_distance_gaussians(m.view(), not_sym.view(), m.view(), eye.view()),
        Err(MetricsError::NotSymmetric { .. })
    ));
    assert!(matches!(
        frechet_distance_gaussians(m.view(), eye.view(), m.view(), indefinite.view()),
        Err(MetricsError::NotPositiveDefinite {
            kind: "semidefinite",
            ..
        })
    ));
    assert!(
        frechet_distance_gaussians(m.view(), eye.view(), array![0.0].view(), eye.view()).is_err()
    );
    let a = array![[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]];
    assert!(frechet_distance(a.view(), array![[0.0], [1.0]].view()).is_err());
    assert!(matches!(
        frechet_distance(a.view(), array![[0.0, 1.0]].view()),
        Err(MetricsError::InvalidParameter { .. })
    ));
    assert!(matches!(
        frechet_distance(a.view(), array![[0.0, f64::NAN], [1.0, 1.0]].view()),
        Err(MetricsError::Core(_))
    ));
    assert!(frechet_distance(Array2::zeros((0, 2)).view(), a.view()).is_err());
}
