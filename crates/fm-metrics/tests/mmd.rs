//! MMD against a direct double loop, and its zero / positive cases.

use fm_metrics::mmd_rbf;
use ndarray::{Array2, array};
use proptest::prelude::*;

fn reference(a: &Array2<f64>, b: &Array2<f64>, sig: &[f64]) -> f64 {
    let k = |x: ndarray::ArrayView1<f64>, y: ndarray::ArrayView1<f64>| {
        let d2: f64 = (&x - &y).mapv(|v| v * v).sum();
        sig.iter().map(|s| (-d2 / (2.0 * s * s)).exp()).sum::<f64>() / sig.len() as f64
    };
    let (m, n) = (a.nrows(), b.nrows());
    let mut xx = 0.0;
    for i in 0..m {
        for j in 0..m {
            if i != j {
                xx += k(a.row(i), a.row(j));
            }
        }
    }
    let mut yy = 0.0;
    for i in 0..n {
        for j in 0..n {
            if i != j {
                yy += k(b.row(i), b.row(j));
            }
        }
    }
    let mut xy = 0.0;
    for i in 0..m {
        for j in 0..n {
            xy += k(a.row(i), b.row(j));
        }
    }
    xx / (m * (m - 1)) as f64 + yy / (n * (n - 1)) as f64 - 2.0 * xy / (m * n) as f64
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn matches_the_definition(m in 2usize..8, n in 2usize..8, v in proptest::collection::vec(-3.0f64..3.0, 32), s in 0.1f64..3.0) {
        let a = Array2::from_shape_fn((m, 2), |(i, j)| v[i * 2 + j]);
        let b = Array2::from_shape_fn((n, 2), |(i, j)| v[16 + i * 2 + j]);
        let sig = [s, 2.0 * s];
        let got = mmd_rbf(a.view(), b.view(), &sig).unwrap();
        let want = reference(&a, &b, &sig);
        prop_assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
}

#[test]
fn same_distribution_is_near_zero_other_distribution_is_positive() {
    let mut rng = fm_core::rng::seeded(11);
    let normal = fm_core::StandardNormal::new(2).unwrap();
    let a = normal.sample(500, &mut rng);
    let b = normal.sample(500, &mut rng);
    let c = normal.sample(500, &mut rng) + 1.0;
    let bw = [0.5, 1.0, 2.0];
    let same = mmd_rbf(a.view(), b.view(), &bw).unwrap();
    let diff = mmd_rbf(a.view(), c.view(), &bw).unwrap();
    // The unbiased estimate fluctuates around 0 with sd O(1/n) ≈ 0.002 here.
    assert!(same.abs() < 0.01, "{same}");
    assert!(diff > 0.1, "{diff}");
    assert!(diff > 20.0 * same.abs());
}

#[test]
fn bad_inputs_are_errors() {
    let a = array![[0.0], [1.0]];
    assert!(mmd_rbf(a.view(), a.view(), &[]).is_err());
    assert!(mmd_rbf(a.view(), a.view(), &[0.0]).is_err());
    assert!(mmd_rbf(a.view(), a.view(), &[f64::NAN]).is_err());
    assert!(mmd_rbf(a.view(), array![[1.0]].view(), &[1.0]).is_err());
    assert!(mmd_rbf(a.view(), array![[1.0, 2.0], [0.0, 0.0]].view(), &[1.0]).is_err());
}
