//! Matchers against independent oracles.

use fm_train::{Matcher, MatcherSpec, Objective};
use ndarray::{Array2, array};

fn perms(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in perms(n - 1) {
        for i in 0..n {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

fn cost(a: &Array2<f64>, b: &Array2<f64>, p: &[usize]) -> f64 {
    p.iter()
        .enumerate()
        .map(|(i, &j)| (&a.row(i) - &b.row(j)).mapv(|v| v * v).sum())
        .sum()
}

/// OT-CFM with σ = 0: from x_t and u_t = x_1 − x_0 the pairs are recovered exactly
/// (x_0 = x_t − t u_t, x_1 = x_t + (1 − t) u_t); their total cost must equal the brute-force
/// minimum over all 720 permutations, and every source and target row must be used once.
#[test]
fn otcfm_pairs_are_the_brute_force_optimal_permutation() {
    let x_0 = array![
        [0.0, 0.0],
        [1.0, 2.0],
        [-1.0, 0.5],
        [3.0, -1.0],
        [0.2, 0.9],
        [-2.0, -2.0]
    ];
    let x_1 = array![
        [2.5, -0.5],
        [-1.5, -1.8],
        [0.1, 1.0],
        [1.1, 2.2],
        [-0.9, 0.3],
        [0.3, 0.1]
    ];
    let best = perms(6)
        .iter()
        .map(|p| cost(&x_0, &x_1, p))
        .fold(f64::INFINITY, f64::min);
    let m = Matcher::new(
        &MatcherSpec::parse("otcfm", Some(0.0), None, None).unwrap(),
        Objective::Flow,
    )
    .unwrap();
    let b = m
        .batch(x_0.view(), x_1.view(), &mut fm_core::rng::seeded(1))
        .unwrap();
    let mut total = 0.0;
    let (mut used0, mut used1) = (vec![false; 6], vec![false; 6]);
    for i in 0..6 {
        let t = b.t[i];
        let u = b.target.row(i);
        let a = &b.x_t.row(i) - &(&u * t);
        let z = &b.x_t.row(i) + &(&u * (1.0 - t));
        let find = |set: &Array2<f64>, p: &ndarray::Array1<f64>| {
            (0..6)
                .find(|&k| (&set.row(k) - p).mapv(f64::abs).sum() < 1e-9)
                .expect("row recovered")
        };
        used0[find(&x_0, &a)] = true;
        used1[find(&x_1, &z)] = true;
        total += (&a - &z).mapv(|v| v * v).sum();
    }
    assert!(used0.iter().all(|&u| u) && used1.iter().all(|&u| u));
    assert!((total - best).abs() < 1e-9, "{total} vs brute force {best}");
    // The identity pairing is worse here, so the coupling did something.
    assert!(cost(&x_0, &x_1, &[0, 1, 2, 3, 4, 5]) > best + 1.0);
}

/// I-CFM with σ: the residual x_t − (t x_1 + (1 − t) x_0) of the identity pairing has the
/// standard deviation σ (checked on a large batch), and u_t = x_1 − x_0 exactly.
#[test]
fn icfm_noise_has_std_sigma_and_target_is_the_difference() {
    let n = 20_000;
    let mut rng = fm_core::rng::seeded(5);
    let x_0 = fm_core::StandardNormal::new(2).unwrap().sample(n, &mut rng);
    let x_1 = x_0.mapv(|v| 2.0 * v + 1.0);
    let m = Matcher::new(
        &MatcherSpec::parse("icfm", Some(0.3), None, None).unwrap(),
        Objective::Flow,
    )
    .unwrap();
    let b = m.batch(x_0.view(), x_1.view(), &mut rng).unwrap();
    let diff = &x_1 - &x_0;
    assert!((&b.target - &diff).mapv(f64::abs).sum() < 1e-9);
    let tt = b.t.clone().insert_axis(ndarray::Axis(1));
    let mean = &x_1 * &tt + &x_0 * &tt.mapv(|t| 1.0 - t);
    let r = &b.x_t - &mean;
    let var = r.mapv(|v| v * v).mean().unwrap();
    // Standard error of the variance estimate ~ 0.09·√(2/40000) ≈ 6e-4; 5 sigma.
    assert!((var - 0.09).abs() < 3e-3, "{var}");
    // t ~ U[0, 1]: mean 1/2 within 5 standard errors.
    assert!((b.t.mean().unwrap() - 0.5).abs() < 5.0 * (1.0f64 / 12.0 / n as f64).sqrt());
}

/// Score matching regresses the noise: for the affine path the target is x_0 itself.
#[test]
fn score_objective_targets_the_source_noise() {
    let mut rng = fm_core::rng::seeded(2);
    let x_0 = fm_core::StandardNormal::new(2)
        .unwrap()
        .sample(50, &mut rng);
    let x_1 = x_0.mapv(|v| v + 4.0);
    let spec = MatcherSpec::parse("affine", None, Some("vp"), None).unwrap();
    let b = Matcher::new(&spec, Objective::Score)
        .unwrap()
        .batch(x_0.view(), x_1.view(), &mut rng)
        .unwrap();
    assert_eq!(b.target, x_0);
    let err = Matcher::new(
        &MatcherSpec::parse("otcfm", None, None, None).unwrap(),
        Objective::Score,
    )
    .unwrap_err();
    assert!(err.to_string().contains("affine"), "{err}");
}
