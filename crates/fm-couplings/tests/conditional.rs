//! Conditional couplings: the naive minibatch OT coupling biases a known conditional, the label
//! and conditional OT couplings do not; pairs never cross labels; within a label the plan is
//! optimal (brute force); a huge β never pairs across contexts; determinism; bad input.
use fm_core::StandardNormal;
use fm_couplings::{
    AssignmentSolver, ConditionalCoupling, ConditionalOtCoupling, CouplingError, ExactOtCoupling,
    IgnoreContext, IndependentCoupling, LabelOtCoupling, Pairing, conditional_ot_cost,
    labels_from_contexts,
};
use ndarray::{Array2, ArrayView2, Axis, array};
use proptest::prelude::*;
use rand::Rng;
use rand::seq::SliceRandom;

// ---------------------------------------------------------------------------------------------
// Oracles and statistics.

/// Every permutation of `0..n` (each permutation of `0..n−1` with `n−1` inserted at every
/// position), for brute-force optima on tiny batches.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for pos in 0..=p.len() {
            let mut q = p.clone();
            q.insert(pos, n - 1);
            out.push(q);
        }
    }
    out
}

fn sq_dist(a: ArrayView2<f64>, i: usize, b: ArrayView2<f64>, j: usize) -> f64 {
    a.row(i)
        .iter()
        .zip(b.row(j).iter())
        .map(|(p, q)| (p - q) * (p - q))
        .sum()
}

/// The smallest `Σ ‖x_0[src[a]] − x_1[tgt[σ(a)]]‖²` over all permutations `σ`.
fn brute_force_min(
    x_0: ArrayView2<f64>,
    src: &[usize],
    x_1: ArrayView2<f64>,
    tgt: &[usize],
) -> f64 {
    permutations(src.len())
        .iter()
        .map(|s| {
            (0..src.len())
                .map(|a| sq_dist(x_0, src[a], x_1, tgt[s[a]]))
                .sum::<f64>()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Mean and (unbiased) variance of each column of the rows `x[idx]`.
fn column_moments(x: &Array2<f64>) -> Vec<(f64, f64)> {
    let n = x.nrows() as f64;
    x.axis_iter(Axis(1))
        .map(|col| {
            let mean = col.sum() / n;
            let var = col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
            (mean, var)
        })
        .collect()
}

/// The largest z-score of a group of `N` draws against `N(0, I)`: `|mean| · sqrt(N)` per
/// coordinate, and `|var − 1| / sqrt(2 / (N − 1))` (the standard error of a normal sample's
/// variance).
fn z_against_standard_normal(x: &Array2<f64>) -> f64 {
    let n = x.nrows() as f64;
    column_moments(x)
        .into_iter()
        .map(|(mean, var)| {
            (mean.abs() * n.sqrt()).max((var - 1.0).abs() / (2.0 / (n - 1.0)).sqrt())
        })
        .fold(0.0, f64::max)
}

/// The critical z for the tests of "x_0 given the context is N(0, I)": with up to 24 z-scores
/// per check, the chance that one exceeds 4.5 under the null is below 24 · 6.8e-6 ≈ 2e-4.
const Z_CRITICAL: f64 = 4.5;

// ---------------------------------------------------------------------------------------------
// A known conditional: three labels with unequal frequencies, p(x | l) = N(μ_l, 0.5² I) in 2-D,
// the source N(0, I), independent of the label.

const MEANS: [[f64; 2]; 3] = [[-4.0, 0.0], [0.0, 4.0], [4.0, -2.0]];
const FREQUENCIES: [f64; 3] = [0.5, 0.3, 0.2];

fn label_batch(n: usize, rng: &mut impl Rng) -> (Array2<f64>, Array2<f64>, Vec<usize>) {
    let normal = StandardNormal::new(2).unwrap();
    let x_0 = normal.sample(n, rng);
    let noise = normal.sample(n, rng);
    let mut x_1 = Array2::zeros((n, 2));
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let u: f64 = rng.random();
        let l = if u < FREQUENCIES[0] {
            0
        } else if u < FREQUENCIES[0] + FREQUENCIES[1] {
            1
        } else {
            2
        };
        labels.push(l);
        for k in 0..2 {
            x_1[[i, k]] = MEANS[l][k] + 0.5 * noise[[i, k]];
        }
    }
    (x_0, x_1, labels)
}

/// Over `batches` batches of 64, the source points each coupling pairs with each label, and the
/// largest z-score of those groups against N(0, I); also the mean paired squared distance.
fn label_bias(coupling: &dyn ConditionalCoupling, batches: usize, seed: u64) -> (f64, f64) {
    let mut rng = fm_core::rng::seeded(seed);
    let mut per_label: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let (mut cost, mut pairs) = (0.0, 0usize);
    for _ in 0..batches {
        let (x_0, x_1, labels) = label_batch(64, &mut rng);
        let c_1 = Array2::from_shape_fn((64, 1), |(i, _)| labels[i] as f64);
        let p = coupling
            .pair_conditional(x_0.view(), x_1.view(), c_1.view(), &mut rng)
            .unwrap();
        assert!(p.is_one_to_one(64));
        for (&i, &j) in p.i0.iter().zip(&p.i1) {
            per_label[labels[j]].extend(x_0.row(i).iter());
            cost += sq_dist(x_0.view(), i, x_1.view(), j);
            pairs += 1;
        }
    }
    let z = per_label
        .into_iter()
        .map(|v| z_against_standard_normal(&Array2::from_shape_vec((v.len() / 2, 2), v).unwrap()))
        .fold(0.0, f64::max);
    (z, cost / pairs as f64)
}

#[test]
fn naive_ot_biases_the_source_given_a_label_and_label_ot_does_not() {
    // 150 batches of 64: about 4,800 / 2,900 / 1,900 source points per label.
    let batches = 150;
    let (z_naive, cost_naive) = label_bias(&IgnoreContext(ExactOtCoupling::default()), batches, 7);
    let (z_label, cost_label) = label_bias(&LabelOtCoupling::default(), batches, 7);
    let (z_ind, cost_ind) = label_bias(&IgnoreContext(IndependentCoupling::identity()), batches, 7);
    // β far above the largest squared point distance over the unit squared label gap: the
    // conditional OT coupling computes the label OT coupling.
    let (z_cond, cost_cond) = label_bias(&ConditionalOtCoupling::new(1e4).unwrap(), batches, 7);
    // The naive coupling: the source given a label is far from N(0, I) (a mean shift of about
    // the label's direction), so the test below can fail.
    assert!(z_naive > 10.0 * Z_CRITICAL, "naive z = {z_naive}");
    for (name, z) in [
        ("label", z_label),
        ("independent", z_ind),
        ("conditional", z_cond),
    ] {
        assert!(
            z < Z_CRITICAL,
            "{name}: z = {z} against N(0, I) given the label"
        );
    }
    // And OT within labels still straightens. Per label the independent pairs cost
    // ‖μ_l‖² + 2 + 0.5 on average and the OT limit is W2² = ‖μ_l‖² + 2·(1 − 0.5)², a saving of 2
    // that a batch of 64 realises in good part; the naive OT is cheaper still (it also moves
    // sources between labels, which is the bias).
    assert!(cost_label < cost_ind - 1.0, "{cost_label} vs {cost_ind}");
    assert!(cost_naive < cost_label, "{cost_naive} vs {cost_label}");
    // The same random split and the same plan within labels (β forbids every cross pair).
    assert!(
        (cost_cond - cost_label).abs() <= 1e-6 * cost_label,
        "{cost_cond} vs {cost_label}"
    );
}

// ---------------------------------------------------------------------------------------------
// A known conditional with a continuous context: c ~ U(−2, 2), x | c = c + 0.5 ε in 1-D.

fn continuous_batch(n: usize, rng: &mut impl Rng) -> (Array2<f64>, Array2<f64>, Array2<f64>) {
    let normal = StandardNormal::new(1).unwrap();
    let x_0 = normal.sample(n, rng);
    let c = Array2::from_shape_fn((n, 1), |_| rng.random_range(-2.0..2.0));
    let x_1 = &c + &(normal.sample(n, rng) * 0.5);
    (x_0, x_1, c)
}

/// The source points paired with contexts in each of 4 bins of `[−2, 2]`: the largest z-score
/// against N(0, 1), and the mean paired squared distance.
fn continuous_bias(coupling: &dyn ConditionalCoupling, batches: usize, seed: u64) -> (f64, f64) {
    let mut rng = fm_core::rng::seeded(seed);
    let mut bins: Vec<Vec<f64>> = vec![Vec::new(); 4];
    let (mut cost, mut pairs) = (0.0, 0usize);
    for _ in 0..batches {
        let (x_0, x_1, c) = continuous_batch(64, &mut rng);
        let p = coupling
            .pair_conditional(x_0.view(), x_1.view(), c.view(), &mut rng)
            .unwrap();
        assert!(p.is_one_to_one(64));
        for (&i, &j) in p.i0.iter().zip(&p.i1) {
            let bin = ((c[[j, 0]] + 2.0).floor() as usize).min(3);
            bins[bin].push(x_0[[i, 0]]);
            cost += sq_dist(x_0.view(), i, x_1.view(), j);
            pairs += 1;
        }
    }
    let z = bins
        .into_iter()
        .map(|v| z_against_standard_normal(&Array2::from_shape_vec((v.len(), 1), v).unwrap()))
        .fold(0.0, f64::max);
    (z, cost / pairs as f64)
}

#[test]
fn naive_ot_biases_the_source_given_a_continuous_context_and_conditional_ot_does_not() {
    // 150 batches of 64: about 2,400 source points per context bin.
    let batches = 150;
    let (z_naive, cost_naive) =
        continuous_bias(&IgnoreContext(ExactOtCoupling::default()), batches, 11);
    let (z_ind, cost_ind) =
        continuous_bias(&IgnoreContext(IndependentCoupling::identity()), batches, 11);
    let (z_cond, cost_cond) =
        continuous_bias(&ConditionalOtCoupling::new(100.0).unwrap(), batches, 11);
    // Naive OT: the source paired with a context near 2 comes from the right tail of N(0, 1).
    assert!(z_naive > 10.0 * Z_CRITICAL, "naive z = {z_naive}");
    assert!(z_ind < Z_CRITICAL, "independent z = {z_ind}");
    assert!(z_cond < Z_CRITICAL, "conditional OT z = {z_cond}");
    // Conditional OT at β = 100 still straightens (independent pairs cost 1 + 4/3 + 0.25 on
    // average): it re-pairs among nearby contexts.
    assert!(cost_cond < 0.9 * cost_ind, "{cost_cond} vs {cost_ind}");
    assert!(cost_naive < cost_cond, "{cost_naive} vs {cost_cond}");
}

/// The bias–straightening trade-off of β on the continuous example (a measurement, not a check):
/// `cargo test -p fm-couplings --test conditional -- --ignored --nocapture trade_off`.
#[test]
#[ignore]
fn trade_off_of_beta_on_a_continuous_context() {
    let batches = 3000;
    println!("{:>14} {:>8} {:>12}", "coupling", "max z", "mean cost");
    for beta in [1.0, 10.0, 30.0, 100.0, 300.0, 1000.0] {
        let (z, cost) = continuous_bias(&ConditionalOtCoupling::new(beta).unwrap(), batches, 12);
        println!("{:>14} {z:>8.2} {cost:>12.3}", format!("beta {beta}"));
    }
    let (z, cost) = continuous_bias(&IgnoreContext(ExactOtCoupling::default()), batches, 12);
    println!("{:>14} {z:>8.2} {cost:>12.3}", "naive OT");
    let (z, cost) = continuous_bias(&IgnoreContext(IndependentCoupling::identity()), batches, 12);
    println!("{:>14} {z:>8.2} {cost:>12.3}", "independent");
}

// ---------------------------------------------------------------------------------------------
// Properties on tiny batches, against brute force.

/// Coordinates in [−5, 5], with repeated values (ties) now and then.
fn batch(n: usize, d: usize) -> impl Strategy<Value = Array2<f64>> {
    proptest::collection::vec(
        prop_oneof![3 => -5.0f64..5.0, 1 => Just(0.0), 1 => Just(1.0)],
        n * d,
    )
    .prop_map(move |v| Array2::from_shape_vec((n, d), v).unwrap())
}

/// `(x_0, x_1, labels, seed)` with `n ≤ 7` points in `d ≤ 3` dimensions and up to 3 labels.
fn label_case() -> impl Strategy<Value = (Array2<f64>, Array2<f64>, Vec<usize>, u64)> {
    (1usize..=7, 1usize..=3).prop_flat_map(|(n, d)| {
        (
            batch(n, d),
            batch(n, d),
            proptest::collection::vec(0usize..3, n),
            any::<u64>(),
        )
    })
}

/// The rows of each label, by label.
fn rows_of(labels: &[usize]) -> std::collections::BTreeMap<usize, Vec<usize>> {
    let mut out: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, &l) in labels.iter().enumerate() {
        out.entry(l).or_default().push(i);
    }
    out
}

/// Checks that `p` is a permutation with `i0 = 0..n`, that source `i` (label `labels_0[i]`) is
/// paired within its label, and that each label's pairs are an optimal assignment (brute force).
fn check_label_plan(
    x_0: &Array2<f64>,
    labels_0: &[usize],
    x_1: &Array2<f64>,
    labels_1: &[usize],
    p: &Pairing,
) -> Result<(), TestCaseError> {
    let n = x_0.nrows();
    prop_assert!(p.is_one_to_one(n));
    prop_assert_eq!(&p.i0, &(0..n).collect::<Vec<_>>());
    for i in 0..n {
        prop_assert_eq!(
            labels_1[p.i1[i]],
            labels_0[i],
            "source {} crosses labels",
            i
        );
    }
    let targets = rows_of(labels_1);
    for (label, src) in rows_of(labels_0) {
        let ours: f64 = src
            .iter()
            .map(|&i| sq_dist(x_0.view(), i, x_1.view(), p.i1[i]))
            .sum();
        let best = brute_force_min(x_0.view(), &src, x_1.view(), &targets[&label]);
        prop_assert!(
            ours <= best + 1e-9 * (1.0 + best),
            "label {}: {} > {}",
            label,
            ours,
            best
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any source labels with the target's counts: no pair crosses labels, and each label's
    /// plan is optimal, for the fast solver and the Hungarian reference.
    #[test]
    fn label_ot_never_crosses_labels_and_is_optimal_within_each(
        (x_0, x_1, labels_1, seed) in label_case(),
        hungarian in any::<bool>(),
    ) {
        let mut labels_0 = labels_1.clone();
        labels_0.shuffle(&mut fm_core::rng::seeded(seed));
        let solver = if hungarian { AssignmentSolver::Hungarian } else { AssignmentSolver::Jv };
        let p = LabelOtCoupling::with_solver(solver)
            .pair_with_source_labels(x_0.view(), &labels_0, x_1.view(), &labels_1)
            .unwrap();
        check_label_plan(&x_0, &labels_0, &x_1, &labels_1, &p)?;
    }

    /// The random split: the labels the sources receive (`labels[i1[i]]`) have the target's
    /// counts, each label's plan is optimal, the same seed gives the same pairs, and the
    /// context form (one distinct context row per label, any values) gives the same pairs.
    #[test]
    fn pair_labels_is_label_ot_on_a_random_split_and_deterministic(
        (x_0, x_1, labels, seed) in label_case(),
    ) {
        let ot = LabelOtCoupling::default();
        let p = ot.pair_labels(x_0.view(), x_1.view(), &labels, &mut fm_core::rng::seeded(seed)).unwrap();
        let labels_0: Vec<usize> = p.i1.iter().map(|&j| labels[j]).collect();
        check_label_plan(&x_0, &labels_0, &x_1, &labels, &p)?;
        let again = ot.pair_labels(x_0.view(), x_1.view(), &labels, &mut fm_core::rng::seeded(seed)).unwrap();
        prop_assert_eq!(&p, &again);
        // Label l as the context row (10 − 3.5 l, l²): distinct rows, arbitrary values.
        let c_1 = Array2::from_shape_fn((labels.len(), 2), |(i, k)| {
            let l = labels[i] as f64;
            if k == 0 { 10.0 - 3.5 * l } else { l * l }
        });
        let q = ot.pair_conditional(x_0.view(), x_1.view(), c_1.view(), &mut fm_core::rng::seeded(seed)).unwrap();
        prop_assert_eq!(&p, &q);
    }

    /// With β above `n · max‖x_0 − x_1‖² / min‖c_0 − c_1‖²` (over distinct contexts) a pair
    /// across contexts costs more than any context-preserving plan, so the plan never has one;
    /// within each context it is then optimal. Contexts on the grid {0, 1, 2}^k, k ≤ 2.
    #[test]
    fn huge_beta_never_pairs_across_distinct_contexts(
        (x_0, x_1, c_1, seed) in (1usize..=8, 1usize..=2, 0usize..=2).prop_flat_map(|(n, d, k)| (
            batch(n, d),
            batch(n, d),
            proptest::collection::vec(0u8..3, n * k)
                .prop_map(move |v| Array2::from_shape_fn((n, k), |(i, j)| f64::from(v[i * k + j]))),
            any::<u64>(),
        )),
    ) {
        let (n, d) = x_0.dim();
        let mut perm: Vec<usize> = (0..n).collect();
        perm.shuffle(&mut fm_core::rng::seeded(seed));
        let c_0 = c_1.select(Axis(0), &perm);
        // Coordinates in [−5, 5]: ‖x_0 − x_1‖² ≤ 100 d; distinct grid contexts: gap² ≥ 1.
        let beta = 10.0 * n as f64 * 100.0 * d as f64;
        let p = ConditionalOtCoupling::new(beta).unwrap()
            .pair_with_source_contexts(x_0.view(), c_0.view(), x_1.view(), c_1.view())
            .unwrap();
        for i in 0..n {
            prop_assert_eq!(c_0.row(i), c_1.row(p.i1[i]), "source {} crosses contexts", i);
        }
        let labels_1 = labels_from_contexts(c_1.view()).unwrap();
        let labels_0: Vec<usize> = p.i1.iter().map(|&j| labels_1[j]).collect();
        // Rounding on the β-sized total is far below a unit of the x-cost.
        let targets = rows_of(&labels_1);
        for (label, src) in rows_of(&labels_0) {
            let ours: f64 = src.iter().map(|&i| sq_dist(x_0.view(), i, x_1.view(), p.i1[i])).sum();
            let best = brute_force_min(x_0.view(), &src, x_1.view(), &targets[&label]);
            prop_assert!(ours <= best + 1e-6 * (1.0 + best), "context {}: {} > {}", label, ours, best);
        }
    }

    /// Any β and any source contexts: the plan minimises `Σ ‖x_0 − x_1‖² + β ‖c_0 − c_1‖²`
    /// over all permutations (brute force, the cost evaluated independently); the same seed gives
    /// the same pairs through `pair_conditional`.
    #[test]
    fn conditional_ot_is_optimal_for_its_cost_and_deterministic(
        (x_0, x_1, c_0, c_1) in (1usize..=6, 1usize..=2, 0usize..=2).prop_flat_map(|(n, d, k)| (
            batch(n, d), batch(n, d), batch(n, k), batch(n, k),
        )),
        log_beta in -3.0f64..3.0,
        seed in any::<u64>(),
    ) {
        let n = x_0.nrows();
        let beta = 10f64.powf(log_beta);
        let ot = ConditionalOtCoupling::new(beta).unwrap();
        let p = ot.pair_with_source_contexts(x_0.view(), c_0.view(), x_1.view(), c_1.view()).unwrap();
        prop_assert!(p.is_one_to_one(n));
        let joint = |i: usize, j: usize| {
            sq_dist(x_0.view(), i, x_1.view(), j) + beta * sq_dist(c_0.view(), i, c_1.view(), j)
        };
        let ours: f64 = (0..n).map(|i| joint(i, p.i1[i])).sum();
        let best = permutations(n)
            .iter()
            .map(|s| (0..n).map(|i| joint(i, s[i])).sum::<f64>())
            .fold(f64::INFINITY, f64::min);
        prop_assert!(ours <= best + 1e-9 * (1.0 + best), "{} > {}", ours, best);
        let a = ot.pair_conditional(x_0.view(), x_1.view(), c_1.view(), &mut fm_core::rng::seeded(seed)).unwrap();
        let b = ot.pair_conditional(x_0.view(), x_1.view(), c_1.view(), &mut fm_core::rng::seeded(seed)).unwrap();
        prop_assert!(a.is_one_to_one(n));
        prop_assert_eq!(a, b);
    }

    /// The limits that need no context: `k = 0` is exact OT itself (same cost matrix), and a
    /// vanishing β gives the exact-OT total.
    #[test]
    fn without_contexts_or_with_vanishing_beta_it_is_exact_ot(
        (x_0, x_1, c_1, seed) in (1usize..=7, 1usize..=3, 1usize..=2).prop_flat_map(|(n, d, k)| (
            batch(n, d), batch(n, d), batch(n, k), any::<u64>(),
        )),
    ) {
        let n = x_0.nrows();
        let exact = ExactOtCoupling::default();
        let want = fm_couplings::Coupling::pair(&exact, x_0.view(), x_1.view(), &mut fm_core::rng::seeded(0)).unwrap();
        let none = Array2::<f64>::zeros((n, 0));
        for coupling in [
            Box::new(ConditionalOtCoupling::new(1.0).unwrap()) as Box<dyn ConditionalCoupling>,
            Box::new(LabelOtCoupling::default()),
        ] {
            let p = coupling.pair_conditional(x_0.view(), x_1.view(), none.view(), &mut fm_core::rng::seeded(seed)).unwrap();
            prop_assert_eq!(&p, &want);
        }
        let tiny = ConditionalOtCoupling::new(1e-300).unwrap();
        let p = tiny.pair_conditional(x_0.view(), x_1.view(), c_1.view(), &mut fm_core::rng::seeded(seed)).unwrap();
        let total = |p: &Pairing| (0..n).map(|i| sq_dist(x_0.view(), i, x_1.view(), p.i1[i])).sum::<f64>();
        prop_assert!((total(&p) - total(&want)).abs() <= 1e-9 * (1.0 + total(&want)));
    }
}

#[test]
fn the_random_split_gives_each_source_row_each_label_in_proportion() {
    // Counts 3, 2, 1 of 6: source row r gets label l with probability n_l / 6, for every r.
    let labels = [2, 0, 1, 0, 1, 0];
    let x = Array2::from_shape_fn((6, 1), |(i, _)| i as f64);
    let ot = LabelOtCoupling::default();
    let draws = 6000;
    let mut counts = [[0usize; 3]; 6];
    let mut rng = fm_core::rng::seeded(5);
    for _ in 0..draws {
        let p = ot
            .pair_labels(x.view(), x.view(), &labels, &mut rng)
            .unwrap();
        for r in 0..6 {
            counts[r][labels[p.i1[r]]] += 1;
        }
    }
    for (r, row) in counts.iter().enumerate() {
        for (l, &c) in row.iter().enumerate() {
            let q = [3.0, 2.0, 1.0][l] / 6.0;
            let se = (q * (1.0 - q) / draws as f64).sqrt();
            let z = (c as f64 / draws as f64 - q).abs() / se;
            assert!(
                z < Z_CRITICAL,
                "row {r} label {l}: {c} of {draws} (z = {z:.1})"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input: clear errors, never a panic.

#[test]
fn bad_batches_are_clear_errors_for_every_conditional_coupling() {
    let couplings: Vec<(&str, Box<dyn ConditionalCoupling>)> = vec![
        ("label", Box::new(LabelOtCoupling::default())),
        (
            "conditional",
            Box::new(ConditionalOtCoupling::new(1.0).unwrap()),
        ),
        ("naive", Box::new(IgnoreContext(ExactOtCoupling::default()))),
        (
            "independent",
            Box::new(IgnoreContext(IndependentCoupling::random())),
        ),
    ];
    let x3 = array![[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]];
    let x2 = array![[0.0, 1.0], [1.0, 0.0]];
    let c3 = array![[0.0], [1.0], [0.0]];
    let mut rng = fm_core::rng::seeded(0);
    for (name, c) in &couplings {
        let mut run = |a: ArrayView2<f64>, b: ArrayView2<f64>, ctx: ArrayView2<f64>| {
            c.pair_conditional(a, b, ctx, &mut rng)
                .expect_err(name)
                .to_string()
        };
        let e = run(x2.view(), x3.view(), c3.view());
        assert!(
            e.contains("x_0 against x_1") && e.contains("3 rows"),
            "{name}: {e}"
        );
        let e = run(x3.view(), x3.view(), c3.select(Axis(0), &[0, 1]).view());
        assert!(
            e.contains("c_1") && e.contains("one context row per sample"),
            "{name}: {e}"
        );
        let e = run(
            x3.view(),
            x3.view(),
            array![[0.0], [f64::NAN], [1.0]].view(),
        );
        assert!(e.contains("c_1") && e.contains("non-finite"), "{name}: {e}");
        let e = run(
            Array2::zeros((0, 2)).view(),
            Array2::zeros((0, 2)).view(),
            Array2::zeros((0, 1)).view(),
        );
        assert!(e.contains("x_0 is empty"), "{name}: {e}");
        let e = run(x3.view(), x3.select(Axis(1), &[0]).view(), c3.view());
        assert!(e.contains("x_1") && e.contains("2 columns"), "{name}: {e}");
        let mut bad = x3.clone();
        bad[[2, 1]] = f64::INFINITY;
        let e = run(x3.view(), bad.view(), c3.view());
        assert!(
            e.contains("x_1") && e.contains("row 2, column 1"),
            "{name}: {e}"
        );
    }
}

#[test]
fn bad_labels_and_parameters_are_clear_errors() {
    let x = array![[0.0], [1.0], [2.0]];
    let ot = LabelOtCoupling::default();
    let mut rng = fm_core::rng::seeded(0);
    let e = ot
        .pair_labels(x.view(), x.view(), &[0, 1], &mut rng)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "shape mismatch for labels (one label per sample): expected 3 labels, found 2 labels"
    );
    let e = ot
        .pair_with_source_labels(x.view(), &[0, 0, 1], x.view(), &[0, 1, 1])
        .unwrap_err();
    assert_eq!(
        e,
        CouplingError::LabelCountMismatch {
            label: 0,
            sources: 2,
            targets: 1
        }
    );
    assert!(
        e.to_string()
            .starts_with("label 0 has 2 source points but 1 target points")
    );
    let e = ot
        .pair_with_source_labels(x.view(), &[0, 1, 1, 1], x.view(), &[0, 1, 1])
        .unwrap_err();
    assert!(
        e.to_string().contains("labels_0 (one label per sample)"),
        "{e}"
    );
    // Labels never seen among the targets are a count mismatch too.
    let e = ot
        .pair_with_source_labels(x.view(), &[0, 1, 9], x.view(), &[0, 1, 1])
        .unwrap_err();
    assert!(
        matches!(
            e,
            CouplingError::LabelCountMismatch {
                label: 1,
                sources: 1,
                targets: 2
            }
        ),
        "{e}"
    );

    for beta in [0.0, -2.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let e = ConditionalOtCoupling::new(beta).unwrap_err();
        assert!(
            matches!(e, CouplingError::InvalidParameter { name: "beta", .. }),
            "{e}"
        );
        assert!(e.to_string().contains("positive and finite"), "{e}");
        let e = conditional_ot_cost(x.view(), x.view(), x.view(), x.view(), beta).unwrap_err();
        assert!(
            matches!(e, CouplingError::InvalidParameter { name: "beta", .. }),
            "{e}"
        );
    }
    let cot = ConditionalOtCoupling::new(1.0).unwrap();
    let e = cot
        .pair_with_source_contexts(x.view(), Array2::zeros((3, 2)).view(), x.view(), x.view())
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("c_0 (one context row per sample): expected (3, 1), found (3, 2)"),
        "{e}"
    );
    let huge = &x * 1e200;
    let e = cot
        .pair_with_source_contexts(x.view(), huge.view(), x.view(), x.view())
        .unwrap_err();
    assert!(e.to_string().contains("overflows"), "{e}");
}
