//! W2/W1 against brute force over all permutations, sorted 1-D matching, and shifts.

use fm_metrics::{MetricsError, w1, w2, w2_sq};
use ndarray::{Array2, array};
use proptest::prelude::*;

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = vec![];
    for p in permutations(n - 1) {
        for i in 0..n {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

fn brute(a: &Array2<f64>, b: &Array2<f64>, power: i32) -> f64 {
    let n = a.nrows();
    permutations(n)
        .iter()
        .map(|p| {
            (0..n)
                .map(|i| {
                    let d2: f64 = a
                        .row(i)
                        .iter()
                        .zip(b.row(p[i]))
                        .map(|(x, y)| (x - y).powi(2))
                        .sum();
                    if power == 2 { d2 } else { d2.sqrt() }
                })
                .sum::<f64>()
                / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn agrees_with_brute_force(n in 1usize..7, d in 1usize..4, v in proptest::collection::vec(-5.0f64..5.0, 72)) {
        let a = Array2::from_shape_fn((n, d), |(i, j)| v[i * d + j]);
        let b = Array2::from_shape_fn((n, d), |(i, j)| v[36 + i * d + j]);
        let w2s = w2_sq(a.view(), b.view()).unwrap();
        prop_assert!((w2s - brute(&a, &b, 2)).abs() < 1e-9 * (1.0 + w2s));
        let w1v = w1(a.view(), b.view()).unwrap();
        prop_assert!((w1v - brute(&a, &b, 1)).abs() < 1e-9 * (1.0 + w1v));
        // Metric facts: symmetric, W1 ≤ W2.
        prop_assert!((w2_sq(b.view(), a.view()).unwrap() - w2s).abs() < 1e-9 * (1.0 + w2s));
        prop_assert!(w1v <= w2s.sqrt() + 1e-9);
    }

    #[test]
    fn one_dimensional_w2_is_the_sorted_matching(seed in any::<u64>()) {
        let mut rng = fm_core::rng::seeded(seed);
        let n = 300;
        let a = fm_core::StandardNormal::new(1).unwrap().sample(n, &mut rng);
        let b = fm_core::StandardNormal::new(1).unwrap().sample(n, &mut rng) * 2.0 + 1.0;
        let mut sa: Vec<f64> = a.iter().copied().collect();
        let mut sb: Vec<f64> = b.iter().copied().collect();
        sa.sort_by(f64::total_cmp);
        sb.sort_by(f64::total_cmp);
        let want: f64 = sa.iter().zip(&sb).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / n as f64;
        let got = w2_sq(a.view(), b.view()).unwrap();
        prop_assert!((got - want).abs() < 1e-9 * (1.0 + want), "{got} vs {want}");
    }
}

#[test]
fn self_distance_is_zero_and_shift_distance_is_the_shift() {
    let mut rng = fm_core::rng::seeded(3);
    let a = fm_core::StandardNormal::new(3)
        .unwrap()
        .sample(400, &mut rng);
    assert_eq!(w2(a.view(), a.view()).unwrap(), 0.0);
    assert_eq!(w1(a.view(), a.view()).unwrap(), 0.0);
    let shift = array![0.3, -1.2, 2.0];
    let b = &a + &shift;
    let norm = shift.mapv(|v| v * v).sum().sqrt();
    // For a translation the optimal map is the translation itself (Brenier): W2 = ‖shift‖.
    assert!((w2(a.view(), b.view()).unwrap() - norm).abs() < 1e-9);
    // A permuted copy is still at distance 0.
    let rev = Array2::from_shape_fn(a.dim(), |(i, j)| a[[a.nrows() - 1 - i, j]]);
    assert!(w2(a.view(), rev.view()).unwrap() < 1e-12);
}

#[test]
fn bad_inputs_are_errors() {
    let a = array![[0.0, 1.0], [2.0, 3.0]];
    let e = w2(a.view(), array![[0.0, 1.0]].view()).unwrap_err();
    assert!(
        matches!(
            e,
            MetricsError::SizeMismatch {
                first: 2,
                second: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(w1(a.view(), array![[0.0, 1.0]].view()).is_err());
    assert!(matches!(
        w2(a.view(), array![[0.0], [1.0]].view()).unwrap_err(),
        MetricsError::Core(_)
    ));
    assert!(w2(a.view(), array![[0.0, f64::NAN], [1.0, 1.0]].view()).is_err());
    assert!(
        w2(
            Array2::<f64>::zeros((0, 2)).view(),
            Array2::<f64>::zeros((0, 2)).view()
        )
        .is_err()
    );
}
