//! Dense output: Dormand–Prince's continuous extension, and recording by interpolation so that
//! the steps, counters and end point of a run do not depend on the record times.

use fm_core::FnField;
use fm_ode::{ButcherTableau, Dopri5, ExplicitRk, Integrator, OdeSolver, StepContext};
use ndarray::{Array2, ArrayView2, ArrayViewMut2, array};
use proptest::prelude::*;

/// A nonlinear 2-D field with a time dependence (so no special structure helps the solver).
fn swirl() -> FnField<impl Fn(f64, ArrayView2<f64>, ArrayViewMut2<f64>) + Sync> {
    FnField::new(2, |t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
        for (mut o, r) in out.rows_mut().into_iter().zip(x.rows()) {
            o[0] = -r[1] + 0.3 * (2.0 * t).sin() * r[0];
            o[1] = r[0] - 0.2 * r[1] * r[1].abs().sqrt();
        }
    })
}

/// One step of `solver` from `(t, x)` by `h`, then its dense output at `theta`.
fn step_then_interpolate(
    solver: &mut dyn OdeSolver,
    field: &dyn fm_core::VectorField,
    t: f64,
    h: f64,
    x: ArrayView2<f64>,
    theta: f64,
) -> (Array2<f64>, Array2<f64>) {
    let ctx = StepContext {
        field,
        t,
        h,
        x,
        tolerances: None,
        parallelism: Default::default(),
    };
    let mut x_new = Array2::zeros(x.raw_dim());
    solver.reset();
    solver.step(&ctx, x_new.view_mut()).unwrap();
    let mut mid = Array2::zeros(x.raw_dim());
    assert!(solver.dense_output(theta, h, x, mid.view_mut()));
    (x_new, mid)
}

#[test]
fn dopri5_interpolant_is_exact_for_quartic_solutions_and_meets_both_ends() {
    // dx/dt = a t³ + b t² + c t + e: x(t) is a quartic, which an order-4 continuous extension
    // reproduces exactly (its weights b_i(θ) satisfy the quadrature conditions up to order 4).
    let field = FnField::new(1, |t, _x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
        out.fill(2.0 * t.powi(3) - 1.5 * t * t + 0.7 * t - 0.4)
    });
    let exact = |t: f64| 0.5 * t.powi(4) - 0.5 * t.powi(3) + 0.35 * t * t - 0.4 * t;
    let mut solver = Dopri5::default();
    assert!(solver.has_dense_output());
    let (t, h) = (0.3, 0.9);
    let x = array![[exact(t)]];
    for theta in [0.0, 0.1, 0.37, 0.5, 0.81, 1.0] {
        let (x_new, mid) = step_then_interpolate(&mut solver, &field, t, h, x.view(), theta);
        let want = exact(t + theta * h);
        assert!(
            (mid[[0, 0]] - want).abs() < 1e-14,
            "θ = {theta}: {} vs {want}",
            mid[[0, 0]]
        );
        if theta == 0.0 {
            assert_eq!(mid, x);
        }
        if theta == 1.0 {
            assert!((mid[[0, 0]] - x_new[[0, 0]]).abs() < 1e-15);
        }
    }
}

#[test]
fn dopri5_interpolation_error_shrinks_at_fifth_order_per_step() {
    // Local error of the interpolant at mid-step on dx/dt = −x + sin(3t): O(h⁵).
    let field = FnField::new(1, |t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
        out.assign(&x.mapv(|v| -v + (3.0 * t).sin()))
    });
    // Closed form from x(0) = 1: x = (1 + 0.3) e^{−t} + (sin 3t − 3 cos 3t)/10.
    let exact = |t: f64| 1.3 * (-t).exp() + ((3.0 * t).sin() - 3.0 * (3.0 * t).cos()) / 10.0;
    let mut solver = Dopri5::default();
    let mut errs = Vec::new();
    for h in [0.4, 0.2, 0.1] {
        let (_, mid) = step_then_interpolate(
            &mut solver,
            &field,
            0.0,
            h,
            array![[exact(0.0)]].view(),
            0.5,
        );
        errs.push((mid[[0, 0]] - exact(0.5 * h)).abs());
    }
    for w in errs.windows(2) {
        let ratio = w[0] / w[1];
        // h⁵ gives 32; an order-3 interpolant would give about 16, a cubic Hermite 16 too.
        assert!(ratio > 24.0, "error ratio {ratio} for errors {errs:?}");
    }
}

#[test]
fn dense_output_rows_are_checked() {
    let heun = ButcherTableau::heun();
    let e = heun.clone().with_dense_output(vec![vec![0.5]]).unwrap_err();
    assert!(e.to_string().contains("one per stage"), "{e}");
    let e = heun
        .clone()
        .with_dense_output(vec![vec![1.0, -0.4], vec![0.0, 0.5]])
        .unwrap_err();
    assert!(e.to_string().contains("b_0(1)"), "{e}");
    let e = heun
        .clone()
        .with_dense_output(vec![vec![f64::NAN], vec![0.5]])
        .unwrap_err();
    assert!(e.to_string().contains("non-finite"), "{e}");
    // Heun with the linear interpolant x + θ h (k_1 + k_2)/2 is accepted and is used.
    let lin = heun.with_dense_output(vec![vec![0.5], vec![0.5]]).unwrap();
    let solver = ExplicitRk::new(lin);
    assert!(solver.has_dense_output());
    assert!(!ExplicitRk::new(ButcherTableau::rk4()).has_dense_output());
}

fn run_dopri5(
    a: f64,
    b: f64,
    x0: &Array2<f64>,
    steps: Option<usize>,
    record: Option<Vec<f64>>,
) -> fm_ode::Solution {
    let mut integ = Integrator::new(Dopri5::default()).span(a, b);
    integ = match steps {
        Some(n) => integ.steps(n),
        None => integ.tolerances(1e-6, 1e-6),
    };
    if let Some(r) = record {
        integ = integ.record_at(r);
    }
    integ.run(&swirl(), x0.view()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// With Dopri5 (adaptive or fixed steps), asking for a trajectory changes neither the end
    /// point (bit for bit) nor the counters, and the recorded states are within the run's
    /// accuracy of a tightly integrated reference.
    #[test]
    fn recording_leaves_the_run_unchanged(
        a in -1.0f64..1.0,
        len in 0.2f64..3.0,
        backward in any::<bool>(),
        fracs in proptest::collection::vec(0.0f64..1.0, 1..12),
        p in proptest::collection::vec(-2.0f64..2.0, 6),
        fixed in proptest::option::of(10usize..40),
    ) {
        let (a, b) = if backward { (a + len, a) } else { (a, a + len) };
        let x0 = Array2::from_shape_vec((3, 2), p).unwrap();
        let times: Vec<f64> = fracs.iter().map(|f| a + f * (b - a)).collect();
        let plain = run_dopri5(a, b, &x0, fixed, None);
        let rec = run_dopri5(a, b, &x0, fixed, Some(times.clone()));
        prop_assert_eq!(&plain.x, &rec.x);
        prop_assert_eq!(plain.stats, rec.stats);
        let mut expected = times.clone();
        expected.sort_by(|p, q| if backward { q.total_cmp(p) } else { p.total_cmp(q) });
        expected.dedup();
        let got: Vec<f64> = rec.trajectory.iter().map(|(t, _)| *t).collect();
        prop_assert_eq!(got, expected);
        // Reference: each record time integrated on its own, tightly.
        let tol = 1e-3;
        for (t, x) in &rec.trajectory {
            if (t - a).abs() < 1e-12 {
                prop_assert_eq!(x, &x0);
                continue;
            }
            let r = Integrator::new(Dopri5::default())
                .span(a, *t)
                .tolerances(1e-11, 1e-11)
                .run(&swirl(), x0.view())
                .unwrap();
            let dev = (x - &r.x).mapv(f64::abs).fold(0.0f64, |m, &v| m.max(v));
            prop_assert!(dev < tol, "t = {}: deviation {}", t, dev);
        }
    }
}
