//! The couplings: permutations, reproducibility, plan sampling statistics, bad input.
use fm_core::StandardNormal;
use fm_couplings::{
    AssignmentSolver, Coupling, CouplingError, ExactOtCoupling, IndependentCoupling, Pairing,
    PlanSampling, SinkhornCoupling, sample_plan, sq_euclidean_cost,
};
use ndarray::{Array2, array};
use proptest::prelude::*;

fn batches(n: usize, m: usize, d: usize, seed: u64) -> (Array2<f64>, Array2<f64>) {
    let mut rng = fm_core::rng::seeded(seed);
    let normal = StandardNormal::new(d).unwrap();
    (normal.sample(n, &mut rng), normal.sample(m, &mut rng) + 2.0)
}

fn paired_cost(x_0: &Array2<f64>, x_1: &Array2<f64>, p: &Pairing) -> f64 {
    let (a, b) = p.gather(x_0.view(), x_1.view()).unwrap();
    (&a - &b).mapv(|v| v * v).sum()
}

fn all_couplings() -> Vec<(&'static str, Box<dyn Coupling>)> {
    vec![
        ("identity", Box::new(IndependentCoupling::identity())),
        ("random", Box::new(IndependentCoupling::random())),
        ("exact", Box::new(ExactOtCoupling::default())),
        (
            "exact-hungarian",
            Box::new(ExactOtCoupling::with_solver(AssignmentSolver::Hungarian)),
        ),
        (
            "exact-replace",
            Box::new(ExactOtCoupling {
                with_replacement: true,
                ..Default::default()
            }),
        ),
        ("sinkhorn", Box::new(SinkhornCoupling::new(0.5).unwrap())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn exact_ot_is_a_permutation_no_worse_than_any_other(
        n in 1usize..7, d in 1usize..4, seed in any::<u64>()
    ) {
        let (x_0, x_1) = batches(n, n, d, seed);
        let mut rng = fm_core::rng::seeded(seed);
        let p = ExactOtCoupling::default().pair(x_0.view(), x_1.view(), &mut rng).unwrap();
        prop_assert!(p.is_one_to_one(n));
        prop_assert_eq!(&p.i0, &(0..n).collect::<Vec<_>>());
        // Independent oracle: the exact pairing beats every random permutation.
        let ours = paired_cost(&x_0, &x_1, &p);
        for _ in 0..20 {
            let q = IndependentCoupling::random().pair(x_0.view(), x_1.view(), &mut rng).unwrap();
            prop_assert!(ours <= paired_cost(&x_0, &x_1, &q) + 1e-9);
        }
    }
}

#[test]
fn exact_ot_reduces_the_pairing_cost_and_agrees_with_hungarian() {
    let (x_0, x_1) = batches(128, 128, 2, 1);
    let mut rng = fm_core::rng::seeded(1);
    let exact = ExactOtCoupling::default()
        .pair(x_0.view(), x_1.view(), &mut rng)
        .unwrap();
    let hung = ExactOtCoupling::with_solver(AssignmentSolver::Hungarian)
        .pair(x_0.view(), x_1.view(), &mut rng)
        .unwrap();
    let ind = IndependentCoupling::identity()
        .pair(x_0.view(), x_1.view(), &mut rng)
        .unwrap();
    let (c_exact, c_hung, c_ind) = (
        paired_cost(&x_0, &x_1, &exact),
        paired_cost(&x_0, &x_1, &hung),
        paired_cost(&x_0, &x_1, &ind),
    );
    assert!(
        (c_exact - c_hung).abs() < 1e-8 * c_exact,
        "{c_exact} {c_hung}"
    );
    // E‖x_0 − x_1‖² = 2d + ‖μ‖² = 4 + 8 = 12 per pair independently; OT pairs cost ~‖μ‖² = 8.
    assert!(c_exact < 0.8 * c_ind, "{c_exact} vs {c_ind}");
}

#[test]
fn exact_ot_rectangular_uses_distinct_targets() {
    let (x_0, x_1) = batches(20, 35, 3, 2);
    let p = ExactOtCoupling::default()
        .pair(x_0.view(), x_1.view(), &mut fm_core::rng::seeded(0))
        .unwrap();
    assert!(p.is_one_to_one(20));
    assert!(p.i1.iter().all(|&j| j < 35));
}

#[test]
fn with_replacement_repeats_some_sources() {
    let (x_0, x_1) = batches(64, 64, 2, 3);
    let c = ExactOtCoupling {
        with_replacement: true,
        ..Default::default()
    };
    let p = c
        .pair(x_0.view(), x_1.view(), &mut fm_core::rng::seeded(4))
        .unwrap();
    let exact = ExactOtCoupling::default()
        .pair(x_0.view(), x_1.view(), &mut fm_core::rng::seeded(4))
        .unwrap();
    assert_eq!(p.len(), 64);
    // Every drawn pair is a pair of the exact plan.
    assert!(p.i0.iter().zip(&p.i1).all(|(&i, &j)| exact.i1[i] == j));
    // 64 draws with replacement from 64: P(no repeat) = 64!/64^64, vanishingly small.
    assert!(!p.is_one_to_one(64));
    let distinct: std::collections::HashSet<_> = p.i0.iter().collect();
    assert!(
        distinct.len() < 64 && distinct.len() > 30,
        "{}",
        distinct.len()
    );
}

#[test]
fn independent_couplings() {
    let (x_0, x_1) = batches(10, 12, 2, 5);
    let mut rng = fm_core::rng::seeded(0);
    let id = IndependentCoupling::identity()
        .pair(x_0.view(), x_1.view(), &mut rng)
        .unwrap();
    assert_eq!(id.i1, (0..10).collect::<Vec<_>>());
    let r1 = IndependentCoupling::random()
        .pair(x_0.view(), x_1.view(), &mut fm_core::rng::seeded(7))
        .unwrap();
    let r2 = IndependentCoupling::random()
        .pair(x_0.view(), x_1.view(), &mut fm_core::rng::seeded(7))
        .unwrap();
    assert_eq!(r1, r2, "same seed, same pairing");
    assert!(r1.is_one_to_one(10));
    assert!(r1.i1.iter().all(|&j| j < 12));
    assert_ne!(r1.i1, id.i1);
}

#[test]
fn sinkhorn_coupling_small_eps_recovers_the_exact_pairing() {
    // A 3×3 grid and the same grid translated, rows shuffled: the exact plan undoes the shuffle
    // (a translation is optimal for the squared distance) with a margin of 2 per swap of
    // neighbours, so dual slacks are about 1 and at ε = 0.05 the entropic plan puts all but
    // ~e^-20 of each row on the exact partner.
    let grid = Array2::from_shape_fn((9, 2), |(k, c)| {
        if c == 0 {
            (k % 3) as f64
        } else {
            (k / 3) as f64
        }
    });
    let perm = [4usize, 0, 7, 2, 8, 1, 6, 3, 5];
    let x_1 = Array2::from_shape_fn((9, 2), |(k, c)| {
        grid[[perm[k], c]] + if c == 0 { 1.0 } else { 0.5 }
    });
    let mut rng = fm_core::rng::seeded(2);
    let exact = ExactOtCoupling::default()
        .pair(grid.view(), x_1.view(), &mut rng)
        .unwrap();
    for (i, &k) in exact.i1.iter().enumerate() {
        assert_eq!(perm[k], i);
    }
    let mut c = SinkhornCoupling::new(0.05).unwrap();
    c.params.max_iter = 20_000;
    for _ in 0..10 {
        let p = c.pair(grid.view(), x_1.view(), &mut rng).unwrap();
        assert_eq!(p.i0, (0..9).collect::<Vec<_>>());
        assert_eq!(p.i1, exact.i1);
    }
}

#[test]
fn schrodinger_bridge_uses_two_sigma_squared() {
    let c = SinkhornCoupling::schrodinger_bridge(0.5).unwrap();
    assert_eq!(c.params.epsilon, 0.5);
    assert!(SinkhornCoupling::schrodinger_bridge(0.0).is_err());
    assert!(SinkhornCoupling::new(f64::NAN).is_err());
    assert!(SinkhornCoupling::new(-1.0).is_err());
}

#[test]
fn plan_sampling_frequencies_follow_the_plan() {
    let plan = array![[0.1, 0.0, 0.2], [0.3, 0.4, 0.0]];
    let mut rng = fm_core::rng::seeded(11);
    let draws = 20_000;
    let p = sample_plan(plan.view(), draws, PlanSampling::WithReplacement, &mut rng).unwrap();
    let mut counts = Array2::<f64>::zeros((2, 3));
    for (&i, &j) in p.i0.iter().zip(&p.i1) {
        counts[[i, j]] += 1.0;
    }
    for ((i, j), &w) in plan.indexed_iter() {
        let expected = w * draws as f64;
        let sd = (draws as f64 * w * (1.0 - w)).sqrt();
        assert!(
            (counts[[i, j]] - expected).abs() <= 5.0 * sd + 1e-9,
            "({i},{j})"
        );
    }
    // Row-conditional: row 1 picks column 0 with probability 3/7.
    let mut hits = 0;
    for _ in 0..7000 {
        let q = sample_plan(plan.view(), 2, PlanSampling::RowConditional, &mut rng).unwrap();
        assert_eq!(q.i0, vec![0, 1]);
        assert_ne!(q.i1[0], 1, "zero-mass entry drawn");
        hits += usize::from(q.i1[1] == 0);
    }
    assert!((hits as f64 - 3000.0).abs() < 5.0 * (7000.0f64 * 3.0 / 7.0 * 4.0 / 7.0).sqrt());
}

#[test]
fn plan_sampling_rejects_bad_plans() {
    let mut rng = fm_core::rng::seeded(0);
    let bad = [
        array![[0.5, -0.1]],
        array![[f64::NAN, 1.0]],
        array![[0.0, 0.0]],
    ];
    for plan in bad {
        assert!(matches!(
            sample_plan(plan.view(), 1, PlanSampling::WithReplacement, &mut rng),
            Err(CouplingError::InvalidPlan { .. })
        ));
    }
    assert!(
        sample_plan(
            array![[1.0], [0.0]].view(),
            2,
            PlanSampling::RowConditional,
            &mut rng
        )
        .is_err()
    );
    assert!(
        sample_plan(
            array![[1.0]].view(),
            3,
            PlanSampling::RowConditional,
            &mut rng
        )
        .is_err()
    );
}

#[test]
fn every_coupling_rejects_bad_batches() {
    let good = array![[0.0, 1.0], [2.0, 3.0]];
    let cases: Vec<(&str, Array2<f64>, Array2<f64>)> = vec![
        ("empty x_0", Array2::zeros((0, 2)), good.clone()),
        ("empty x_1", good.clone(), Array2::zeros((0, 2))),
        ("zero width", Array2::zeros((2, 0)), Array2::zeros((2, 0))),
        ("nan", array![[0.0, f64::NAN], [1.0, 1.0]], good.clone()),
        (
            "inf",
            good.clone(),
            array![[0.0, f64::INFINITY], [1.0, 1.0]],
        ),
        (
            "mismatched d",
            good.clone(),
            array![[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]],
        ),
    ];
    for (name, coupling) in all_couplings() {
        for (case, a, b) in &cases {
            let r = coupling.pair(a.view(), b.view(), &mut fm_core::rng::seeded(0));
            assert!(r.is_err(), "{name} accepted {case}");
        }
        // n > m: a typed error for the one-to-one couplings.
        let three = array![[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]];
        let r = coupling.pair(three.view(), good.view(), &mut fm_core::rng::seeded(0));
        if name == "sinkhorn" {
            assert_eq!(r.unwrap().len(), 3);
        } else {
            assert!(
                matches!(
                    r,
                    Err(CouplingError::TooManyRows {
                        rows: 3,
                        cols: 2,
                        ..
                    })
                ),
                "{name}"
            );
        }
    }
}

#[test]
fn couplings_are_reproducible_and_object_safe() {
    let (x_0, x_1) = batches(32, 32, 2, 9);
    for (name, coupling) in all_couplings() {
        let a = coupling
            .pair(x_0.view(), x_1.view(), &mut fm_core::rng::seeded(5))
            .unwrap();
        let b = coupling
            .pair(x_0.view(), x_1.view(), &mut fm_core::rng::seeded(5))
            .unwrap();
        assert_eq!(a, b, "{name}");
        assert_eq!(a.len(), 32, "{name}");
    }
    // The cost used by the exact coupling is the squared Euclidean one.
    let cost = sq_euclidean_cost(x_0.view(), x_1.view()).unwrap();
    let p = ExactOtCoupling::default()
        .pair(x_0.view(), x_1.view(), &mut fm_core::rng::seeded(0))
        .unwrap();
    let total: f64 = p.i0.iter().zip(&p.i1).map(|(&i, &j)| cost[[i, j]]).sum();
    assert!((total - paired_cost(&x_0, &x_1, &p)).abs() < 1e-9);
}
