//! Exactness of the fast assignment solver against independent oracles: brute force over all
//! injections, `pathfinding`'s Kuhn–Munkres, the sorted matching in 1-D, and the LP certificate.
use fm_core::StandardNormal;
use fm_couplings::{
    AssignmentSolver, CouplingError, assignment, assignment_with_duals, certificate, hungarian,
    sq_euclidean_cost,
};
use ndarray::{Array2, ArrayView2};
use proptest::prelude::*;

fn total(cost: ArrayView2<f64>, p: &[usize]) -> f64 {
    p.iter().enumerate().map(|(i, &j)| cost[[i, j]]).sum()
}

fn scale(cost: ArrayView2<f64>) -> f64 {
    cost.iter().fold(1.0f64, |a, &c| a.max(c.abs()))
}

/// The minimum over all injections rows -> columns, by enumeration.
fn brute_force(cost: ArrayView2<f64>) -> f64 {
    fn rec(cost: ArrayView2<f64>, i: usize, used: &mut Vec<bool>, acc: f64, best: &mut f64) {
        if i == cost.nrows() {
            *best = best.min(acc);
            return;
        }
        for j in 0..cost.ncols() {
            if !used[j] {
                used[j] = true;
                rec(cost, i + 1, used, acc + cost[[i, j]], best);
                used[j] = false;
            }
        }
    }
    let mut best = f64::INFINITY;
    rec(cost, 0, &mut vec![false; cost.ncols()], 0.0, &mut best);
    best
}

/// Asserts that `p` is an injection and that the solver's duals certify optimality.
fn assert_certified(cost: ArrayView2<f64>) -> f64 {
    let sol = assignment_with_duals(cost).unwrap();
    let cert = certificate(cost, &sol).unwrap();
    let tol = 1e-9 * scale(cost);
    assert!(cert.max_violation <= tol, "certificate violated: {cert:?}");
    assert!(
        (cert.primal - cert.dual).abs() <= tol * cost.nrows() as f64,
        "{cert:?}"
    );
    assert!((cert.primal - sol.total).abs() <= tol * cost.nrows() as f64);
    assert_eq!(assignment(cost).unwrap(), sol.row_to_col);
    sol.total
}

fn gaussian_cost(n: usize, m: usize, d: usize, shift: f64, seed: u64) -> Array2<f64> {
    let mut rng = fm_core::rng::seeded(seed);
    let normal = StandardNormal::new(d).unwrap();
    let x_0 = normal.sample(n, &mut rng);
    let mut x_1 = normal.sample(m, &mut rng);
    x_1.column_mut(0).mapv_inplace(|v| v + shift);
    sq_euclidean_cost(x_0.view(), x_1.view()).unwrap()
}

/// Allowed difference between our total and pathfinding's: pathfinding solves the costs rounded
/// to multiples of `max|c| · 1e-12`, so its true total is within `n · max|c| · 1e-12` of the
/// minimum; plus float summation error.
fn pathfinding_tolerance(cost: ArrayView2<f64>) -> f64 {
    let n = cost.nrows() as f64;
    n * scale(cost) * (fm_couplings::HUNGARIAN_RESOLUTION + 1e-13)
}

fn random_matrix(max_n: usize, rectangular: bool) -> impl Strategy<Value = Array2<f64>> {
    (1..=max_n, 0..=if rectangular { 3usize } else { 0 })
        .prop_flat_map(move |(n, extra)| {
            let m = (n + extra).min(max_n).max(n);
            (
                Just((n, m)),
                prop_oneof![
                    // Continuous costs: no ties.
                    proptest::collection::vec(-10.0f64..10.0, n * m),
                    // Small integers: many ties.
                    proptest::collection::vec((0i32..3).prop_map(f64::from), n * m),
                ],
            )
        })
        .prop_map(|((n, m), data)| Array2::from_shape_vec((n, m), data).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matches_brute_force_up_to_8(cost in random_matrix(8, true)) {
        let ours = assert_certified(cost.view());
        let best = brute_force(cost.view());
        prop_assert!((ours - best).abs() <= 1e-9 * scale(cost.view()), "{ours} vs {best}");
        let p = assignment(cost.view()).unwrap();
        prop_assert!((total(cost.view(), &p) - best).abs() <= 1e-9 * scale(cost.view()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn matches_pathfinding_up_to_300(
        n in 1usize..=300,
        extra in prop_oneof![Just(0usize), 1usize..40],
        d in prop_oneof![Just(1usize), Just(2), Just(10)],
        shift in prop_oneof![Just(0.0), Just(2.0)],
        seed in any::<u64>(),
    ) {
        let cost = gaussian_cost(n, n + extra, d, shift, seed);
        let ours = assert_certified(cost.view());
        let reference = hungarian(cost.view()).unwrap();
        let theirs = total(cost.view(), &reference);
        prop_assert!(
            (ours - theirs).abs() <= pathfinding_tolerance(cost.view()),
            "n={n} m={} d={d}: ours {ours} pathfinding {theirs}", n + extra
        );
        // Never worse than the reference beyond rounding: ours is optimal.
        prop_assert!(ours <= theirs + 1e-12 * scale(cost.view()) * n as f64);
    }
}

#[test]
fn pathfinding_agrees_on_the_benchmark_instance() {
    for (n, shift) in [(256, 2.0), (300, 0.0)] {
        let cost = gaussian_cost(n, n, 2, shift, 99);
        let ours = assert_certified(cost.view());
        let theirs = total(cost.view(), &hungarian(cost.view()).unwrap());
        assert!(
            (ours - theirs).abs() <= pathfinding_tolerance(cost.view()),
            "{ours} {theirs}"
        );
    }
}

#[test]
fn one_dimensional_points_are_matched_in_sorted_order() {
    // In 1-D the sorted (monotone) matching is optimal for the squared distance: an oracle
    // independent of any assignment algorithm.
    for (n, seed) in [(50, 1), (200, 2)] {
        let mut rng = fm_core::rng::seeded(seed);
        let normal = StandardNormal::new(1).unwrap();
        let x_0 = normal.sample(n, &mut rng);
        let x_1 = normal.sample(n, &mut rng) * 3.0 + 1.0;
        let cost = sq_euclidean_cost(x_0.view(), x_1.view()).unwrap();
        let mut a: Vec<f64> = x_0.iter().copied().collect();
        let mut b: Vec<f64> = x_1.iter().copied().collect();
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        let sorted: f64 = a.iter().zip(&b).map(|(p, q)| (p - q) * (p - q)).sum();
        let ours = assert_certified(cost.view());
        assert!(
            (ours - sorted).abs() <= 1e-9 * sorted.max(1.0),
            "{ours} vs {sorted}"
        );
    }
}

#[test]
fn ten_dimensional_points_match_pathfinding() {
    let cost = gaussian_cost(120, 120, 10, 1.0, 5);
    let ours = assert_certified(cost.view());
    let theirs = total(cost.view(), &hungarian(cost.view()).unwrap());
    assert!((ours - theirs).abs() <= pathfinding_tolerance(cost.view()));
}

#[test]
fn degenerate_inputs() {
    // All points equal: every permutation is optimal, total 0.
    let x = Array2::from_elem((30, 2), 1.5);
    let cost = sq_euclidean_cost(x.view(), x.view()).unwrap();
    let p = assignment(cost.view()).unwrap();
    let mut sorted = p.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..30).collect::<Vec<_>>());
    assert_eq!(assert_certified(cost.view()), 0.0);

    // Duplicated points: x_1 is x_0 with each row repeated, shuffled.
    let mut rng = fm_core::rng::seeded(3);
    let base = StandardNormal::new(2).unwrap().sample(10, &mut rng);
    let dup = ndarray::concatenate![ndarray::Axis(0), base.view(), base.view()];
    let cost = sq_euclidean_cost(dup.view(), dup.view()).unwrap();
    assert!(assert_certified(cost.view()).abs() < 1e-12);

    // Ties everywhere: a cost that depends on the row only.
    let cost = Array2::from_shape_fn((12, 15), |(i, _)| i as f64);
    assert_eq!(assert_certified(cost.view()), (0..12).sum::<usize>() as f64);

    // n = 1, square and rectangular.
    assert_eq!(assignment(ndarray::array![[4.0]].view()).unwrap(), vec![0]);
    assert_eq!(
        assignment(ndarray::array![[4.0, -1.0, 3.0]].view()).unwrap(),
        vec![1]
    );

    // Negative and large-offset costs.
    let cost = gaussian_cost(40, 40, 2, 2.0, 8).mapv(|c| 1e6 - c);
    let ours = assert_certified(cost.view());
    assert!((ours - brute_force_free(&cost)).abs() <= pathfinding_tolerance(cost.view()));
}

fn brute_force_free(cost: &Array2<f64>) -> f64 {
    total(cost.view(), &hungarian(cost.view()).unwrap())
}

#[test]
fn bad_input_is_a_typed_error() {
    let empty = Array2::<f64>::zeros((0, 3));
    assert!(matches!(
        assignment(empty.view()),
        Err(CouplingError::Core(fm_core::CoreError::Empty { .. }))
    ));
    assert!(matches!(
        assignment(Array2::<f64>::zeros((2, 0)).view()),
        Err(CouplingError::Core(_))
    ));
    let mut c = Array2::<f64>::zeros((3, 3));
    c[[1, 2]] = f64::NAN;
    assert!(matches!(
        assignment(c.view()),
        Err(CouplingError::NonFiniteCost { row: 1, col: 2, .. })
    ));
    c[[1, 2]] = f64::NEG_INFINITY;
    assert!(matches!(
        assignment(c.view()),
        Err(CouplingError::NonFiniteCost { .. })
    ));
    assert!(matches!(
        hungarian(c.view()),
        Err(CouplingError::NonFiniteCost { .. })
    ));
    assert!(matches!(
        assignment(Array2::<f64>::zeros((4, 3)).view()),
        Err(CouplingError::TooManyRows {
            rows: 4,
            cols: 3,
            ..
        })
    ));
    assert!(matches!(
        hungarian(Array2::<f64>::zeros((4, 3)).view()),
        Err(CouplingError::TooManyRows { .. })
    ));
    let huge = ndarray::array![[1e300, -1e300], [0.0, 1.0]];
    assert!(matches!(
        assignment(huge.view()),
        Err(CouplingError::CostRange { .. })
    ));
    // Mismatched dimensions for the cost matrix.
    assert!(sq_euclidean_cost(Array2::zeros((2, 2)).view(), Array2::zeros((2, 3)).view()).is_err());
}

#[test]
fn solver_selection_by_name() {
    let cost = gaussian_cost(60, 64, 2, 2.0, 11);
    let fast = AssignmentSolver::from_name("jv").unwrap();
    let reference = AssignmentSolver::from_name("pathfinding").unwrap();
    assert_eq!(fast, AssignmentSolver::default());
    assert_eq!(reference, AssignmentSolver::Hungarian);
    assert_eq!(AssignmentSolver::from_name("HUNGARIAN").unwrap(), reference);
    let a = total(cost.view(), &fast.solve(cost.view()).unwrap());
    let b = total(cost.view(), &reference.solve(cost.view()).unwrap());
    assert!((a - b).abs() <= pathfinding_tolerance(cost.view()));
    assert!(matches!(
        AssignmentSolver::from_name("simplex"),
        Err(CouplingError::UnknownSolver { .. })
    ));
}

#[test]
fn certificate_detects_a_suboptimal_assignment() {
    // The oracle itself must be able to fail: swap two rows of an optimal assignment.
    let cost = gaussian_cost(20, 20, 2, 0.0, 4);
    let mut sol = assignment_with_duals(cost.view()).unwrap();
    sol.row_to_col.swap(0, 1);
    let cert = certificate(cost.view(), &sol).unwrap();
    assert!(cert.max_violation > 1e-6, "{cert:?}");
    sol.row_to_col[0] = sol.row_to_col[1];
    assert!(certificate(cost.view(), &sol).is_err());
}

#[test]
fn hard_shapes_match_pathfinding() {
    let mut rng = fm_core::rng::seeded(21);
    use rand::Rng;
    // Many ties: small integer costs.
    let ints = Array2::from_shape_fn((150, 150), |_| f64::from(rng.random_range(0..5)));
    // One outlier dwarfs every other difference (the auction's increments become coarse).
    let mut outlier = gaussian_cost(120, 120, 2, 2.0, 6);
    outlier[[3, 7]] = 1e7;
    // Very rectangular.
    let wide = gaussian_cost(5, 300, 2, 2.0, 7);
    // Clustered: two tight blobs far apart.
    let blobs = gaussian_cost(160, 160, 2, 0.0, 9).mapv(|c| (c * 1e-4).floor() * 1e4 + c * 1e-3);
    for cost in [ints, outlier, wide, blobs] {
        let ours = assert_certified(cost.view());
        let theirs = total(cost.view(), &hungarian(cost.view()).unwrap());
        assert!(
            (ours - theirs).abs() <= pathfinding_tolerance(cost.view()),
            "{:?}: {ours} vs {theirs}",
            cost.dim()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Every dual-certified solver (the default and the kept baseline) is optimal and
    /// certified, on square and rectangular inputs with and without ties.
    #[test]
    fn every_certified_solver_matches_brute_force(cost in random_matrix(7, true)) {
        let best = brute_force(cost.view());
        for solver in [AssignmentSolver::Jv, AssignmentSolver::JvAuction] {
            let sol = solver.solve_with_duals(cost.view()).unwrap();
            let cert = certificate(cost.view(), &sol).unwrap();
            prop_assert!(cert.max_violation <= 1e-9 * scale(cost.view()), "{solver:?} {cert:?}");
            prop_assert!((sol.total - best).abs() <= 1e-9 * scale(cost.view()), "{solver:?}");
            prop_assert_eq!(solver.solve(cost.view()).unwrap(), sol.row_to_col);
        }
    }
}

/// The OT-CFM hot path: N(0, I) against clustered 2-D targets (8 Gaussians on a circle), where
/// the auction warm start and the repair phases all do real work; both certified solvers agree
/// with pathfinding and carry a valid certificate.
#[test]
fn clustered_targets_match_pathfinding() {
    use rand::Rng;
    let mut rng = fm_core::rng::seeded(42);
    for n in [64usize, 200] {
        let x_0 = StandardNormal::new(2).unwrap().sample(n, &mut rng);
        let mut x_1 = StandardNormal::new(2).unwrap().sample(n, &mut rng) * 0.56;
        for i in 0..n {
            let a = f64::from(rng.random_range(0..8u8)) * std::f64::consts::FRAC_PI_4;
            x_1[[i, 0]] += 5.0 * a.cos();
            x_1[[i, 1]] += 5.0 * a.sin();
        }
        let cost = sq_euclidean_cost(x_0.view(), x_1.view()).unwrap();
        let ours = assert_certified(cost.view());
        let theirs = total(cost.view(), &hungarian(cost.view()).unwrap());
        assert!(
            (ours - theirs).abs() <= pathfinding_tolerance(cost.view()),
            "{ours} {theirs}"
        );
        let legacy = AssignmentSolver::JvAuction
            .solve_with_duals(cost.view())
            .unwrap();
        assert!((legacy.total - theirs).abs() <= pathfinding_tolerance(cost.view()));
    }
    // The pathfinding reference has no duals to return.
    assert!(
        AssignmentSolver::Hungarian
            .solve_with_duals(ndarray::array![[1.0]].view())
            .is_err()
    );
}
