//! Log-likelihoods against closed forms: linear fields (log-density change −t·trace(A)) and the
//! exact marginal field of the I-CFM path between N(0, I) and N(m, s² I).
#![allow(clippy::needless_range_loop)]

use fm_core::{FnField, VectorField};
use fm_metrics::{Divergence, LikelihoodOptions, MetricsError, ProbeKind, log_likelihood};
use ndarray::{Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2, array};
use std::f64::consts::PI;

fn opts(solver: &str, steps: Option<usize>, tol: f64) -> LikelihoodOptions {
    LikelihoodOptions {
        solver: solver.into(),
        steps,
        rtol: tol,
        atol: tol,
        divergence: Divergence::Exact,
    }
}

/// v = A x with A = [[a, −w], [w, a]]: the flow is e^{tA} = e^{at} R(wt), so
/// log p_1(x) = log N(e^{−A} x; 0, I) − trace(A) = −½ e^{−2a} ‖x‖² − log 2π − 2a.
#[test]
fn spiral_linear_field_matches_closed_form_for_every_solver() {
    let (a, w) = (0.3, 1.0);
    let field = FnField::new(
        2,
        move |_t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
            for (i, r) in x.rows().into_iter().enumerate() {
                out[[i, 0]] = a * r[0] - w * r[1];
                out[[i, 1]] = w * r[0] + a * r[1];
            }
        },
    );
    let x_1 = array![[0.0, 0.0], [1.0, -2.0], [3.0, 0.5], [-0.2, 4.0]];
    let exact: Vec<f64> = x_1
        .rows()
        .into_iter()
        .map(|r| -0.5 * (-2.0 * a).exp() * (r[0] * r[0] + r[1] * r[1]) - (2.0 * PI).ln() - 2.0 * a)
        .collect();
    for (o, tol) in [
        (opts("dopri5", None, 1e-9), 1e-6),
        (opts("rk4", Some(40), 0.0), 1e-6),
        (opts("midpoint", Some(400), 0.0), 1e-4),
        (opts("euler", Some(2000), 0.0), 1e-2),
    ] {
        let ll = log_likelihood(&field, x_1.view(), &o, &mut fm_core::rng::seeded(0)).unwrap();
        for i in 0..4 {
            assert!(
                (ll.log_p[i] - exact[i]).abs() < tol,
                "{}: {} vs {}",
                o.solver,
                ll.log_p[i],
                exact[i]
            );
            // The log-density changes by −trace(A) = −2a over [0, 1], for every point.
            assert!((ll.divergence_integral[i] - 2.0 * a).abs() < 1e-6);
        }
        // x_0 = e^{−A} x_1.
        let (c, s) = (w.cos(), w.sin());
        let e = (-a).exp();
        let want0 = e * (c * x_1[[1, 0]] + s * x_1[[1, 1]]);
        assert!((ll.x_0[[1, 0]] - want0).abs() < tol.max(1e-6) * 10.0);
    }
}

/// Diagonal A in 3-D with an exact divergence supplied.
#[test]
fn diagonal_linear_field_with_exact_divergence() {
    let diag = [0.5, -0.4, 0.1];
    let field = FnField::new(
        3,
        move |_t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
            for (i, r) in x.rows().into_iter().enumerate() {
                for j in 0..3 {
                    out[[i, j]] = diag[j] * r[j];
                }
            }
        },
    )
    .with_divergence(move |_t, _x, mut out: ArrayViewMut1<f64>| out.fill(diag.iter().sum()));
    let x_1 = array![[0.5, 1.0, -1.0], [2.0, 0.0, 0.3]];
    let ll = log_likelihood(
        &field,
        x_1.view(),
        &opts("dopri5", None, 1e-10),
        &mut fm_core::rng::seeded(0),
    )
    .unwrap();
    for (i, r) in x_1.rows().into_iter().enumerate() {
        let exact: f64 = (0..3)
            .map(|j| -0.5 * (r[j] * (-diag[j]).exp()).powi(2) - 0.5 * (2.0 * PI).ln() - diag[j])
            .sum();
        assert!(
            (ll.log_p[i] - exact).abs() < 1e-7,
            "{} vs {exact}",
            ll.log_p[i]
        );
    }
    assert!(ll.stats.nfe > 0);
    assert!((ll.mean() - ll.log_p.mean().unwrap()).abs() < 1e-15);
}

/// The marginal field of x_t = (1 − t) x_0 + t x_1, x_0 ~ N(0, I), x_1 ~ N(m, s² I) independent:
/// x_t ~ N(t m, σ_t² I), σ_t² = (1 − t)² + t² s², and
/// u(t, x) = E[x_1 − x_0 | x_t = x] = m + c(t) (x − t m), c(t) = (t s² − (1 − t)) / σ_t²
/// (Cov(x_1 − x_0, x_t) = t s² − (1 − t) per coordinate), div u = d c(t).
fn icfm_field(m: [f64; 2], s: f64) -> impl VectorField {
    let c = move |t: f64| (t * s * s - (1.0 - t)) / ((1.0 - t).powi(2) + t * t * s * s);
    FnField::new(
        2,
        move |t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
            for (i, r) in x.rows().into_iter().enumerate() {
                for j in 0..2 {
                    out[[i, j]] = m[j] + c(t) * (r[j] - t * m[j]);
                }
            }
        },
    )
}

fn gaussian_log_pdf(x: ArrayView2<f64>, m: [f64; 2], s: f64) -> Vec<f64> {
    x.rows()
        .into_iter()
        .map(|r| {
            (0..2)
                .map(|j| -0.5 * ((r[j] - m[j]) / s).powi(2) - (s * (2.0 * PI).sqrt()).ln())
                .sum()
        })
        .collect()
}

#[test]
fn icfm_marginal_field_gives_the_target_density() {
    let (m, s) = ([1.0, -2.0], 0.5);
    let field = icfm_field(m, s);
    let mut rng = fm_core::rng::seeded(4);
    let mut x_1 = fm_core::StandardNormal::new(2)
        .unwrap()
        .sample(50, &mut rng)
        * s;
    x_1.column_mut(0).mapv_inplace(|v| v + m[0]);
    x_1.column_mut(1).mapv_inplace(|v| v + m[1]);
    x_1.row_mut(0).assign(&array![4.0, 1.0]); // a far point too
    let want = gaussian_log_pdf(x_1.view(), m, s);
    // Exact divergence by the trait's finite differences (the field gives none).
    let ll = log_likelihood(&field, x_1.view(), &opts("dopri5", None, 1e-9), &mut rng).unwrap();
    for i in 0..x_1.nrows() {
        assert!(
            (ll.log_p[i] - want[i]).abs() < 1e-5,
            "row {i}: {} vs {}",
            ll.log_p[i],
            want[i]
        );
    }
    // Hutchinson with Rademacher probes is exact for the Jacobian c(t) I: ε^T (cI) ε = c d.
    let mut o = opts("rk4", Some(200), 0.0);
    o.divergence = Divergence::Hutchinson {
        probes: 1,
        kind: ProbeKind::Rademacher,
    };
    let ll = log_likelihood(&field, x_1.view(), &o, &mut rng).unwrap();
    for i in 0..x_1.nrows() {
        assert!(
            (ll.log_p[i] - want[i]).abs() < 1e-5,
            "row {i}: {} vs {}",
            ll.log_p[i],
            want[i]
        );
    }
}

/// v = A x with symmetric A: the per-sample Hutchinson estimate of ∫ div = mean_k ε_kᵀ A ε_k
/// (probes fixed, A constant) has mean tr(A) and variance 2‖A‖_F² / K (Gaussian) or
/// 2 Σ_{i≠j} A_ij² / K (Rademacher).
#[test]
fn hutchinson_is_unbiased_with_the_predicted_variance() {
    let a = array![[0.2, 0.5], [0.5, -0.1]];
    let a2 = a.clone();
    let field = FnField::new(
        2,
        move |_t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| out.assign(&x.dot(&a2.t())),
    );
    let n = 2000;
    let k = 4;
    let x_1 = Array2::from_shape_fn((n, 2), |(i, j)| ((i * 7 + j * 3) % 11) as f64 / 5.0 - 1.0);
    let fro2: f64 = a.iter().map(|v| v * v).sum();
    let off2 = 2.0 * a[[0, 1]] * a[[0, 1]];
    for (kind, var) in [
        (ProbeKind::Gaussian, 2.0 * fro2 / k as f64),
        (ProbeKind::Rademacher, 2.0 * off2 / k as f64),
    ] {
        let mut o = opts("rk4", Some(4), 0.0);
        o.divergence = Divergence::Hutchinson { probes: k, kind };
        let ll = log_likelihood(&field, x_1.view(), &o, &mut fm_core::rng::seeded(9)).unwrap();
        let est = &ll.divergence_integral;
        let mean = est.mean().unwrap();
        let sample_var = est.var(1.0);
        // sd of the mean: sqrt(var / n) ≈ 0.012; 5 sd.
        assert!(
            (mean - 0.1).abs() < 5.0 * (var / n as f64).sqrt(),
            "{kind:?}: mean {mean}"
        );
        assert!(
            (sample_var / var - 1.0).abs() < 0.2,
            "{kind:?}: var {sample_var} vs {var}"
        );
        // Same seed, same bits (the batch is split into chunks on several threads).
        let again = log_likelihood(&field, x_1.view(), &o, &mut fm_core::rng::seeded(9)).unwrap();
        assert_eq!(again, ll);
    }
}

#[test]
fn bad_options_are_errors() {
    let field = FnField::new(2, |_t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
        out.assign(&x)
    });
    let x = array![[0.0, 1.0]];
    let mut rng = fm_core::rng::seeded(0);
    let e = log_likelihood(&field, x.view(), &opts("rk4", None, 1e-5), &mut rng).unwrap_err();
    assert!(
        matches!(e, MetricsError::InvalidParameter { name: "steps", .. }),
        "{e}"
    );
    let e =
        log_likelihood(&field, x.view(), &opts("leapfrog", Some(3), 0.0), &mut rng).unwrap_err();
    assert!(matches!(e, MetricsError::Ode(_)), "{e}");
    let mut o = opts("rk4", Some(3), 0.0);
    o.divergence = Divergence::Hutchinson {
        probes: 0,
        kind: ProbeKind::Gaussian,
    };
    assert!(log_likelihood(&field, x.view(), &o, &mut rng).is_err());
    let e = log_likelihood(
        &field,
        array![[0.0, 1.0, 2.0]].view(),
        &LikelihoodOptions::default(),
        &mut rng,
    )
    .unwrap_err();
    assert!(matches!(e, MetricsError::Core(_)), "{e}");
    assert!(
        log_likelihood(
            &field,
            array![[f64::NAN, 1.0]].view(),
            &LikelihoodOptions::default(),
            &mut rng
        )
        .is_err()
    );
}
