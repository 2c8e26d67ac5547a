//! Sinkhorn: marginals, the closed-form 2×2 plan, the ε → 0 limit and tiny-ε stability.
use fm_couplings::{
    SinkhornParams, SinkhornPlan, assignment, sinkhorn, sinkhorn_uniform, sq_euclidean_cost,
    sq_euclidean_cost_normalized,
};
use ndarray::{Array1, Array2, Axis, array};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

fn points(n: usize, shift: f64, seed: u64) -> (ndarray::Array2<f64>, ndarray::Array2<f64>) {
    let mut rng = fm_core::rng::seeded(seed);
    let normal = fm_core::StandardNormal::new(2).unwrap();
    let x_0 = normal.sample(n, &mut rng);
    let x_1 = normal.sample(n, &mut rng) + shift;
    (x_0, x_1)
}

/// The test input of the marginal tests: a normalised squared-Euclidean cost between `n` and
/// `m` standard normal points in 3-D (drawn with `seed`) and non-uniform marginals of equal mass.
fn marginal_case(n: usize, m: usize, seed: u64) -> (Array2<f64>, Array1<f64>, Array1<f64>) {
    let mut rng = fm_core::rng::seeded(seed);
    let normal = fm_core::StandardNormal::new(3).unwrap();
    let cost = sq_euclidean_cost_normalized(
        normal.sample(n, &mut rng).view(),
        normal.sample(m, &mut rng).view(),
    )
    .unwrap();
    let a = Array1::from_shape_fn(n, |i| 1.0 + (i % 3) as f64);
    let b = Array1::from_shape_fn(m, |j| 1.0 + (j % 2) as f64);
    let (sa, sb) = (a.sum(), b.sum());
    (cost, a / sa, b / sb)
}

/// What `sinkhorn` promises for every input, converged or not: a finite non-negative plan whose
/// rows sum to `a` (the last update is a row update), whose measured L1 column error is the
/// reported `error`, and `converged` exactly when that error is within `tol` (so a converged
/// plan meets both marginals). Returns the measured column error.
fn check_report(
    out: &SinkhornPlan,
    a: &Array1<f64>,
    b: &Array1<f64>,
    tol: f64,
) -> Result<f64, TestCaseError> {
    prop_assert!(out.plan.iter().all(|p| p.is_finite() && *p >= 0.0));
    let rows = out.plan.sum_axis(Axis(1));
    let cols = out.plan.sum_axis(Axis(0));
    let row_err: f64 = (&rows - a).mapv(f64::abs).sum();
    let col_err: f64 = (&cols - b).mapv(f64::abs).sum();
    prop_assert!(row_err <= 1e-12, "rows {row_err}");
    prop_assert!(
        (col_err - out.error).abs() <= 1e-12,
        "reported {} measured {col_err}",
        out.error
    );
    prop_assert_eq!(out.converged, out.error <= tol, "error {}", out.error);
    if out.converged {
        prop_assert!(col_err <= tol + 1e-12, "cols {col_err}");
    }
    Ok(col_err)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// The report is truthful for every input, including ε = 0.01 on a cost in [0, 1], where
    /// plain Sinkhorn's linear rate can be too slow to reach 1e-10 in 20,000 iterations (see
    /// `slow_case_is_reported_truthfully`).
    #[test]
    fn marginals_within_tolerance_when_converged(
        n in 2usize..40,
        m in 2usize..40,
        eps in prop_oneof![Just(0.01), Just(0.1), Just(1.0)],
        seed in any::<u64>(),
    ) {
        let (cost, a, b) = marginal_case(n, m, seed);
        let params = SinkhornParams { epsilon: eps, max_iter: 20_000, tol: 1e-10, ..Default::default() };
        let out = sinkhorn(cost.view(), a.view(), b.view(), &params).unwrap();
        check_report(&out, &a, &b, params.tol)?;
    }

    /// The well-conditioned range where convergence is claimed: ε ≥ 0.1 relative to a cost in
    /// [0, 1], n, m < 40, tol 1e-10 within 20,000 iterations (checked over 20,000 fixed seeds and
    /// with PROPTEST_CASES=10000; at ε = 0.01 about one input in five of size 7 × 9 does not).
    #[test]
    fn converges_when_well_conditioned(
        n in 2usize..40,
        m in 2usize..40,
        eps in prop_oneof![Just(0.1), Just(0.3), Just(1.0)],
        seed in any::<u64>(),
    ) {
        let (cost, a, b) = marginal_case(n, m, seed);
        let params = SinkhornParams { epsilon: eps, max_iter: 20_000, tol: 1e-10, ..Default::default() };
        let out = sinkhorn(cost.view(), a.view(), b.view(), &params).unwrap();
        prop_assert!(out.converged, "error {} after {} iterations", out.error, out.iterations);
        check_report(&out, &a, &b, params.tol)?;
    }
}

/// The input class that made `marginals_within_tolerance` fail in CI (issue 18: n = 7, m = 9,
/// ε = 0.01): with this seed 20,000 iterations end at an L1 error of about 2.6e-7, not 1e-10.
/// The old test demanded convergence; what the solver guarantees (and this pins) is a truthful
/// report: `converged = false`, the true error, exact rows, a usable plan.
#[test]
fn slow_case_is_reported_truthfully() {
    let (cost, a, b) = marginal_case(7, 9, 5);
    let params = SinkhornParams {
        epsilon: 0.01,
        max_iter: 20_000,
        tol: 1e-10,
        ..Default::default()
    };
    let out = sinkhorn(cost.view(), a.view(), b.view(), &params).unwrap();
    let col_err = check_report(&out, &a, &b, params.tol).unwrap();
    assert!(!out.converged && col_err > params.tol, "error {col_err}");
    // The error still shrinks with more iterations: not stuck, only slow.
    let longer = SinkhornParams {
        max_iter: 200_000,
        ..params
    };
    let more = sinkhorn(cost.view(), a.view(), b.view(), &longer).unwrap();
    let more_err = check_report(&more, &a, &b, longer.tol).unwrap();
    assert!(more_err < col_err / 10.0, "{more_err} vs {col_err}");
}

#[test]
fn two_by_two_matches_closed_form() {
    // Uniform marginals: π = [[p, 1/2 − p], [1/2 − p, p]] and the first-order condition of
    // ⟨π, C⟩ − ε H(π) gives p / (1/2 − p) = exp(Δ / (2ε)), Δ = C01 + C10 − C00 − C11.
    let cost = array![[0.3, 1.1], [0.9, 0.2]];
    for eps in [0.2, 0.5, 2.0] {
        let params = SinkhornParams {
            epsilon: eps,
            max_iter: 100_000,
            tol: 1e-13,
            ..Default::default()
        };
        let out = sinkhorn_uniform(cost.view(), &params).unwrap();
        assert!(out.converged, "eps {eps}: error {}", out.error);
        let r = ((1.1 + 0.9 - 0.3 - 0.2) / (2.0 * eps)).exp();
        let p = 0.5 * r / (1.0 + r);
        assert!(
            (out.plan[[0, 0]] - p).abs() < 1e-9,
            "eps {eps}: {} vs {p}",
            out.plan[[0, 0]]
        );
        assert!((out.plan[[1, 1]] - p).abs() < 1e-9);
        assert!((out.plan[[0, 1]] - (0.5 - p)).abs() < 1e-9);
    }
}

#[test]
fn plan_tends_to_the_exact_assignment_as_eps_shrinks() {
    // 1-D points: the sorted matching is the exact plan (an oracle independent of the solver).
    let x_0 = array![[0.0], [1.0], [2.0], [3.0], [4.0]];
    let x_1 = array![[1.9], [0.1], [4.0], [1.05], [3.1]];
    let cost = sq_euclidean_cost_normalized(x_0.view(), x_1.view()).unwrap();
    let sorted_partner = [1usize, 3, 0, 4, 2];
    assert_eq!(assignment(cost.view()).unwrap(), sorted_partner);
    let exact =
        ndarray::Array2::from_shape_fn(
            (5, 5),
            |(i, j)| {
                if sorted_partner[i] == j { 0.2 } else { 0.0 }
            },
        );
    let mut last = f64::INFINITY;
    for eps in [0.1, 0.03, 0.01] {
        let params = SinkhornParams {
            epsilon: eps,
            max_iter: 200_000,
            tol: 1e-12,
            ..Default::default()
        };
        let out = sinkhorn_uniform(cost.view(), &params).unwrap();
        assert!(out.converged, "eps {eps}: error {}", out.error);
        let dist: f64 = (&out.plan - &exact).mapv(f64::abs).sum();
        assert!(dist < last, "eps {eps}: {dist} >= {last}");
        last = dist;
        if eps == 0.01 {
            for (i, &j) in sorted_partner.iter().enumerate() {
                assert!(out.plan[[i, j]] > 0.198, "row {i}: {}", out.plan.row(i));
            }
        }
    }
    // L1 distance to the exact plan (total mass 1): 0.95 at ε = 0.1, below 0.01 at ε = 0.01.
    assert!(last < 0.01, "distance to the exact plan {last}");
}

#[test]
fn tiny_eps_has_no_nan() {
    let (x_0, x_1) = points(30, 4.0, 8);
    let cost = sq_euclidean_cost(x_0.view(), x_1.view()).unwrap();
    for (eps, eps_scaling) in [(1e-4, true), (1e-8, true), (1e-8, false)] {
        let params = SinkhornParams {
            epsilon: eps,
            max_iter: 200,
            tol: 1e-9,
            eps_scaling,
        };
        let out = sinkhorn_uniform(cost.view(), &params).unwrap();
        assert!(out.plan.iter().all(|p| p.is_finite()));
        assert!(out.f.iter().chain(out.g.iter()).all(|p| p.is_finite()));
        assert!(out.error.is_finite());
        // Rows are exact after the last row update, up to rounding amplified by 1/ε.
        let rows = out.plan.sum_axis(Axis(1));
        assert!(rows.iter().all(|r| (r * 30.0 - 1.0).abs() < 1e-3), "{rows}");
        assert_eq!(out.converged, out.error <= 1e-9);
        // 200 at ε plus at most 10 per annealing stage (spread / 2^k > ε: fewer than 40 stages).
        assert!(out.iterations <= 200 + if eps_scaling { 400 } else { 0 });
    }
}

#[test]
fn not_converging_is_reported_not_an_error() {
    let (x_0, x_1) = points(20, 0.0, 2);
    let cost = sq_euclidean_cost(x_0.view(), x_1.view()).unwrap();
    let params = SinkhornParams {
        epsilon: 0.01,
        max_iter: 2,
        tol: 0.0,
        eps_scaling: false,
    };
    let out = sinkhorn_uniform(cost.view(), &params).unwrap();
    assert!(!out.converged);
    assert_eq!(out.iterations, 2);
    assert!(out.error > 0.0);
}

#[test]
fn bad_costs_are_errors() {
    let p = SinkhornParams::default();
    assert!(sinkhorn_uniform(ndarray::Array2::<f64>::zeros((0, 2)).view(), &p).is_err());
    assert!(sinkhorn_uniform(array![[0.0, f64::NAN]].view(), &p).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// The kernel-scaling iteration and the plain log-domain one compute the same plan.
    #[test]
    fn kernel_scaling_matches_the_log_domain_reference(
        n in 2usize..40,
        eps in prop_oneof![Just(0.01), Just(0.1), Just(1.0)],
        seed in any::<u64>(),
    ) {
        let (x_0, x_1) = points(n, 1.0, seed);
        let cost = fm_couplings::sq_euclidean_cost_normalized(x_0.view(), x_1.view()).unwrap();
        let (r, c) = cost.dim();
        let a = ndarray::Array1::from_elem(r, 1.0 / r as f64);
        let b = ndarray::Array1::from_elem(c, 1.0 / c as f64);
        let params = SinkhornParams { tol: 1e-10, ..SinkhornParams::with_epsilon(eps) };
        let fast = fm_couplings::sinkhorn(cost.view(), a.view(), b.view(), &params).unwrap();
        let slow = fm_couplings::sinkhorn_log_domain(cost.view(), a.view(), b.view(), &params).unwrap();
        prop_assert!(
            fast.converged == slow.converged && fast.iterations == slow.iterations,
            "fast {} ({} it, err {:e}), slow {} ({} it, err {:e})",
            fast.converged, fast.iterations, fast.error, slow.converged, slow.iterations, slow.error
        );
        let diff = (&fast.plan - &slow.plan).mapv(f64::abs).sum();
        prop_assert!(diff < 1e-7, "L1 difference {diff}");
        prop_assert!((fast.error - slow.error).abs() < 1e-9);
    }
}
