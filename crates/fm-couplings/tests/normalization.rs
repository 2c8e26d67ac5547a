//! `SinkhornCoupling::normalize_cost`: the plan is computed on the cost divided by its maximum,
//! so it is invariant under scaling the data, and it differs from the plan on the raw cost.
use fm_couplings::{
    Coupling, Pairing, PlanSampling, SinkhornCoupling, SinkhornParams, sample_plan,
    sinkhorn_uniform,
};
use ndarray::Array2;

/// `n` points in 2-D spread over `[-3, 3]²` (so the largest squared distance is far from 1).
fn points(n: usize, seed: u64) -> (Array2<f64>, Array2<f64>) {
    let mut rng = fm_core::rng::seeded(seed);
    let normal = fm_core::StandardNormal::new(2).unwrap();
    (
        normal.sample(n, &mut rng) * 1.5,
        normal.sample(n, &mut rng) * 1.5 + 0.5,
    )
}

/// The squared Euclidean cost by a double loop, and its largest entry: an oracle that shares no
/// code with the crate.
fn brute_cost(x_0: &Array2<f64>, x_1: &Array2<f64>) -> (Array2<f64>, f64) {
    let c = Array2::from_shape_fn((x_0.nrows(), x_1.nrows()), |(i, j)| {
        x_0.row(i)
            .iter()
            .zip(x_1.row(j))
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
    });
    let max = c.iter().copied().fold(0.0, f64::max);
    (c, max)
}

fn coupling(normalize_cost: bool) -> SinkhornCoupling {
    SinkhornCoupling {
        params: SinkhornParams {
            tol: 1e-12,
            max_iter: 100_000,
            ..SinkhornParams::with_epsilon(0.05)
        },
        normalize_cost,
        sampling: PlanSampling::RowConditional,
    }
}

fn pair(c: &SinkhornCoupling, x_0: &Array2<f64>, x_1: &Array2<f64>, seed: u64) -> Pairing {
    c.pair(x_0.view(), x_1.view(), &mut fm_core::rng::seeded(seed))
        .unwrap()
}

/// The pairing drawn (same seed) from the Sinkhorn plan of an independently computed cost.
/// Also returns whether that plan converged.
fn oracle_pair(
    cost: &Array2<f64>,
    params: &SinkhornParams,
    seed: u64,
) -> (Pairing, Array2<f64>, bool) {
    let plan = sinkhorn_uniform(cost.view(), params).unwrap();
    let p = sample_plan(
        plan.plan.view(),
        cost.nrows(),
        PlanSampling::RowConditional,
        &mut fm_core::rng::seeded(seed),
    )
    .unwrap();
    (p, plan.plan, plan.converged)
}

#[test]
fn normalized_pairing_is_sinkhorn_on_cost_over_its_maximum() {
    let (x_0, x_1) = points(24, 3);
    let (cost, max) = brute_cost(&x_0, &x_1);
    assert!(
        max > 10.0,
        "the test needs a cost far from [0, 1]: max {max}"
    );
    let c = coupling(true);
    let (want, plan_normalized, converged) = oracle_pair(&(&cost / max), &c.params, 11);
    assert!(converged);
    assert_eq!(pair(&c, &x_0, &x_1, 11), want);
    // And the raw-cost coupling is sinkhorn on the raw cost (ε = 0.05 on a cost up to ~40 is
    // slow to converge; the comparison holds either way, as both run the same iterations).
    let raw = coupling(false);
    let (want_raw, plan_raw, _) = oracle_pair(&cost, &raw.params, 11);
    assert_eq!(pair(&raw, &x_0, &x_1, 11), want_raw);
    // On this input normalising matters: ε = 0.05 on the raw cost is nearly a permutation,
    // on cost / max (ε relative to max ≈ 0.05 / max) it is a blurred plan.
    let l1: f64 = (&plan_normalized - &plan_raw).mapv(f64::abs).sum();
    assert!(l1 > 0.5, "plans differ by only {l1}");
    assert_ne!(want, want_raw);
}

#[test]
fn scaling_the_data_leaves_the_normalized_pairing_unchanged() {
    let (x_0, x_1) = points(24, 5);
    let normalized = coupling(true);
    let raw = coupling(false);
    let base = pair(&normalized, &x_0, &x_1, 7);
    // Scaling by a power of two scales every cost entry and the maximum exactly (by 4^k), so
    // the normalised cost, its plan and the pairing drawn with the same seed are bit-identical.
    let mut raw_pairings = vec![pair(&raw, &x_0, &x_1, 7)];
    for s in [0.25, 2.0, 8.0] {
        let (y_0, y_1) = (&x_0 * s, &x_1 * s);
        assert_eq!(pair(&normalized, &y_0, &y_1, 7), base, "scale {s}");
        raw_pairings.push(pair(&raw, &y_0, &y_1, 7));
    }
    // Without normalising, the scale changes the plan (ε acts on the raw cost): the pairings
    // drawn with the same seed are not all the same.
    assert!(
        raw_pairings.iter().any(|p| p != &raw_pairings[0]),
        "{raw_pairings:?}"
    );
}
