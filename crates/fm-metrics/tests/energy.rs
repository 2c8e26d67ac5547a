//! Path energy against closed forms, and the normalised path energy.

use fm_core::FnField;
use fm_metrics::{normalized_path_energy, path_energy};
use ndarray::{ArrayView2, ArrayViewMut2, array};

#[test]
fn diagonal_linear_flow_energy_matches_closed_form() {
    // x_t = e^{t a_j} x_0j per coordinate: ∫_0^1 ‖v‖² dt = Σ_j a_j² x_0j² (e^{2 a_j} − 1) / (2 a_j).
    let diag = [0.5, -0.3];
    let field = FnField::new(
        2,
        move |_t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
            for (i, r) in x.rows().into_iter().enumerate() {
                for j in 0..2 {
                    out[[i, j]] = diag[j] * r[j];
                }
            }
        },
    );
    let x_0 = array![[1.0, 2.0], [-0.5, 0.0], [3.0, -1.0]];
    let want: f64 = x_0
        .rows()
        .into_iter()
        .map(|r| {
            (0..2)
                .map(|j| {
                    diag[j] * diag[j] * r[j] * r[j] * ((2.0 * diag[j]).exp() - 1.0)
                        / (2.0 * diag[j])
                })
                .sum::<f64>()
        })
        .sum::<f64>()
        / 3.0;
    let pe = path_energy(&field, x_0.view(), 50).unwrap();
    assert!((pe - want).abs() < 1e-8, "{pe} vs {want}");
    // Coarse steps are less accurate (the test can tell).
    let coarse = path_energy(&field, x_0.view(), 1).unwrap();
    assert!((coarse - want).abs() > 1e-6);
}

#[test]
fn time_dependent_speed_is_integrated_in_time() {
    // v = (2t, 0): ∫ 4t² dt = 4/3.
    let field = FnField::new(2, |t, _x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
        out.column_mut(0).fill(2.0 * t);
        out.column_mut(1).fill(0.0);
    });
    let pe = path_energy(&field, array![[0.0, 0.0]].view(), 10).unwrap();
    assert!((pe - 4.0 / 3.0).abs() < 1e-12, "{pe}");
}

#[test]
fn normalised_path_energy_cases() {
    assert_eq!(normalized_path_energy(12.0, 10.0), 0.2);
    assert_eq!(normalized_path_energy(8.0, 10.0), 0.2);
    assert_eq!(normalized_path_energy(0.0, 0.0), 0.0);
    assert_eq!(normalized_path_energy(1.0, 0.0), f64::INFINITY);
}

#[test]
fn bad_inputs_are_errors() {
    let field = FnField::new(2, |_t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
        out.assign(&x)
    });
    assert!(path_energy(&field, array![[0.0, 1.0]].view(), 0).is_err());
    assert!(path_energy(&field, array![[0.0]].view(), 3).is_err());
    assert!(path_energy(&field, array![[f64::INFINITY, 0.0]].view(), 3).is_err());
}
