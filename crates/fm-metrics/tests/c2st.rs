//! C2ST against closed forms: two samples of one distribution give 0.5 within the binomial
//! spread of a guessing classifier; separated ones give 1; a mean shift δ between two unit
//! Gaussians gives the Bayes accuracy Φ(δ/2) from below.

use fm_metrics::{C2st, C2stOptions, MetricsError, c2st};
use ndarray::Array2;
use rand_distr::{Distribution, StandardNormal};

fn gaussian(n: usize, d: usize, shift: f64, seed: u64) -> Array2<f64> {
    let mut rng = fm_core::rng::seeded(seed);
    Array2::from_shape_simple_fn((n, d), || {
        shift + <StandardNormal as Distribution<f64>>::sample(&StandardNormal, &mut rng)
    })
}

/// Few epochs keep the debug-profile runtime small; the stopping rule still applies.
fn quick(seed: u64) -> C2stOptions {
    C2stOptions {
        max_epochs: 60,
        seed,
        ..Default::default()
    }
}

#[test]
fn one_distribution_gives_one_half_within_the_binomial_spread() {
    let n = 400;
    let sd = C2st::null_std(2 * n);
    let mut accs = Vec::new();
    for seed in 0..8 {
        let a = gaussian(n, 2, 0.0, 100 + seed);
        let b = gaussian(n, 2, 0.0, 200 + seed);
        let acc = c2st(a.view(), b.view(), &quick(seed)).unwrap().accuracy;
        // 4σ per run: a false failure has probability < 1e-4 per seed.
        assert!(
            (acc - 0.5).abs() < 4.0 * sd,
            "seed {seed}: {acc} (σ = {sd})"
        );
        accs.push(acc);
    }
    let mean = accs.iter().sum::<f64>() / accs.len() as f64;
    eprintln!("null accuracies {accs:?}, mean {mean}, σ {sd}");
    // The mean of 8 independent runs has spread σ/√8.
    assert!(
        (mean - 0.5).abs() < 4.0 * sd / 8f64.sqrt(),
        "mean {mean} over {accs:?}"
    );
}

#[test]
fn separated_samples_give_one() {
    let a = gaussian(300, 3, 0.0, 1);
    let b = gaussian(300, 3, 8.0, 2);
    let r = c2st(a.view(), b.view(), &quick(0)).unwrap();
    assert!(r.accuracy > 0.995, "{r:?}");
    assert_eq!(r.fold_accuracies.len(), 5);
}

#[test]
fn a_mean_shift_gives_the_bayes_accuracy() {
    // N(0, 1) against N(δ, 1): the best classifier thresholds at δ/2 and is right with
    // probability Φ(δ/2); for δ = 1 that is 0.691 462.
    let (n, delta) = (1500, 1.0);
    let bayes = 0.691_462_461_274_013;
    let a = gaussian(n, 1, 0.0, 11);
    let b = gaussian(n, 1, delta, 12);
    let acc = c2st(a.view(), b.view(), &quick(3)).unwrap().accuracy;
    let sd = (bayes * (1.0 - bayes) / (2 * n) as f64).sqrt();
    eprintln!("shift 1: accuracy {acc}, bayes {bayes}");
    assert!(
        (acc - bayes).abs() < 4.0 * sd + 0.01,
        "{acc} vs {bayes} (σ = {sd})"
    );
}

#[test]
fn the_same_seed_gives_the_same_bits_and_another_seed_other_folds() {
    let a = gaussian(100, 2, 0.0, 5);
    let b = gaussian(100, 2, 0.5, 6);
    let r1 = c2st(a.view(), b.view(), &quick(7)).unwrap();
    let r2 = c2st(a.view(), b.view(), &quick(7)).unwrap();
    let r3 = c2st(a.view(), b.view(), &quick(8)).unwrap();
    assert_eq!(r1, r2);
    assert_ne!(r1.fold_accuracies, r3.fold_accuracies);
}

#[test]
fn bad_inputs_are_named_errors() {
    let a = gaussian(50, 2, 0.0, 1);
    let opts = quick(0);
    let e = c2st(a.view(), gaussian(50, 3, 0.0, 2).view(), &opts).unwrap_err();
    assert!(matches!(e, MetricsError::Core(_)), "{e}");
    assert!(e.to_string().contains("second c2st sample") && e.to_string().contains("2 columns"));
    let e = c2st(a.view(), gaussian(4, 2, 0.0, 2).view(), &opts).unwrap_err();
    assert!(e.to_string().contains("second c2st sample size = 4"), "{e}");
    let mut nan = gaussian(50, 2, 0.0, 3);
    nan[[7, 1]] = f64::NAN;
    let e = c2st(nan.view(), a.view(), &opts).unwrap_err();
    assert!(
        e.to_string().contains("first c2st sample") && e.to_string().contains("row 7"),
        "{e}"
    );
    let mut flat = gaussian(50, 2, 0.0, 4);
    flat.column_mut(1).fill(3.0);
    let e = c2st(flat.view(), a.view(), &opts).unwrap_err();
    assert!(e.to_string().contains("column 1"), "{e}");
    let e = c2st(
        a.view(),
        a.view(),
        &C2stOptions {
            folds: 1,
            ..opts.clone()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("folds"), "{e}");
    let empty = Array2::<f64>::zeros((0, 2));
    assert!(c2st(empty.view(), a.view(), &opts).is_err());
}
