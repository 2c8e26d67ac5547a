//! Bad input gives typed errors: no panic, no endless loop.

use fm_core::FnField;
use fm_ode::{Dopri5, Euler, Integrator, OdeError, Rk4, StepControl};
use ndarray::{Array2, ArrayView2, ArrayViewMut2, array};

fn decay() -> FnField<impl Fn(f64, ArrayView2<f64>, ArrayViewMut2<f64>) + Sync> {
    FnField::new(2, |_t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
        out.assign(&x.mapv(|v| -v))
    })
}

fn invalid(e: OdeError, name: &str) {
    match e {
        OdeError::InvalidParameter { name: n, .. } => assert_eq!(n, name),
        other => panic!("expected invalid {name}, got {other}"),
    }
}

#[test]
fn nan_initial_state_names_t_and_position() {
    let x = array![[1.0, 2.0], [3.0, f64::NAN]];
    let e = Integrator::new(Euler::default())
        .span(0.25, 1.0)
        .steps(4)
        .run(&decay(), x.view())
        .unwrap_err();
    assert!(
        matches!(e, OdeError::NonFiniteState { t, row: 1, col: 1, .. } if t == 0.25),
        "{e}"
    );
}

#[test]
fn zero_steps_and_missing_or_conflicting_step_settings() {
    let x = array![[1.0, 2.0]];
    invalid(
        Integrator::new(Euler::default())
            .steps(0)
            .run(&decay(), x.view())
            .unwrap_err(),
        "steps",
    );
    // A fixed-step solver without steps.
    invalid(
        Integrator::new(Rk4::default())
            .run(&decay(), x.view())
            .unwrap_err(),
        "steps",
    );
    // Tolerances for a solver without an error estimate.
    invalid(
        Integrator::new(Rk4::default())
            .tolerances(1e-3, 1e-3)
            .run(&decay(), x.view())
            .unwrap_err(),
        "steps",
    );
    // Both.
    invalid(
        Integrator::new(Dopri5::default())
            .steps(3)
            .tolerances(1e-3, 1e-3)
            .run(&decay(), x.view())
            .unwrap_err(),
        "steps",
    );
    invalid(
        Integrator::new(Euler::default())
            .steps(3)
            .max_steps(0)
            .run(&decay(), x.view())
            .unwrap_err(),
        "max_steps",
    );
}

#[test]
fn bad_tolerances_are_rejected() {
    let x = array![[1.0, 2.0]];
    for (r, a, name) in [
        (0.0, 1e-6, "rtol"),
        (-1e-3, 1e-6, "rtol"),
        (f64::NAN, 1e-6, "rtol"),
        (1e-3, -1.0, "atol"),
    ] {
        invalid(
            Integrator::new(Dopri5::default())
                .tolerances(r, a)
                .run(&decay(), x.view())
                .unwrap_err(),
            name,
        );
    }
    let ctl = StepControl {
        safety: 0.0,
        ..Default::default()
    };
    invalid(
        Integrator::new(Dopri5::default())
            .control(ctl)
            .run(&decay(), x.view())
            .unwrap_err(),
        "safety",
    );
}

#[test]
fn field_dimension_must_match_state_width() {
    let e = Integrator::new(Euler::default())
        .steps(2)
        .run(&decay(), Array2::zeros((3, 5)).view())
        .unwrap_err();
    assert!(matches!(e, OdeError::ShapeMismatch { .. }), "{e}");
    assert!(e.to_string().contains("2 columns"), "{e}");
    let e = Integrator::new(Euler::default())
        .steps(2)
        .run(&decay(), Array2::zeros((0, 2)).view())
        .unwrap_err();
    assert!(matches!(e, OdeError::Core(_)), "{e}");
}

#[test]
fn zero_length_or_non_finite_span_is_rejected() {
    let x = array![[1.0, 2.0]];
    for (t0, t1) in [(0.5, 0.5), (0.0, f64::INFINITY), (f64::NAN, 1.0)] {
        for adaptive in [false, true] {
            let e = if adaptive {
                Integrator::new(Dopri5::default())
                    .span(t0, t1)
                    .run(&decay(), x.view())
            } else {
                Integrator::new(Euler::default())
                    .span(t0, t1)
                    .steps(5)
                    .run(&decay(), x.view())
            }
            .unwrap_err();
            invalid(e, "span");
        }
    }
}

#[test]
fn record_times_outside_the_span_are_rejected() {
    let x = array![[1.0, 2.0]];
    for bad in [1.5, -0.1, f64::NAN] {
        let e = Integrator::new(Euler::default())
            .steps(2)
            .record_at(vec![0.5, bad])
            .run(&decay(), x.view())
            .unwrap_err();
        invalid(e, "record_at");
    }
    // Backwards: the span is [0, 1] read from 1 to 0.
    assert!(
        Integrator::new(Euler::default())
            .span(1.0, 0.0)
            .steps(2)
            .record_at(vec![0.25, 0.75])
            .run(&decay(), x.view())
            .is_ok()
    );
}

#[test]
fn blow_up_is_a_non_finite_state_error_naming_t() {
    // dx/dt = x²: x = 1/(1 − t) from 1 blows up at t = 1; Euler with big steps overflows.
    let field = FnField::new(1, |_t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
        out.assign(&x.mapv(|v| v * v))
    });
    let e = Integrator::new(Euler::default())
        .span(0.0, 100.0)
        .steps(20)
        .run(&field, array![[1.0]].view())
        .unwrap_err();
    match e {
        OdeError::NonFiniteState { t, .. } => assert!(t > 0.0 && t <= 100.0, "{t}"),
        other => panic!("{other}"),
    }
    // Adaptive: the step size collapses near the singularity, or a guard stops it.
    let e = Integrator::new(Dopri5::default())
        .span(0.0, 2.0)
        .tolerances(1e-6, 1e-6)
        .max_steps(10_000)
        .run(&field, array![[1.0]].view())
        .unwrap_err();
    assert!(
        matches!(
            e,
            OdeError::StepSizeUnderflow { .. }
                | OdeError::MaxStepsExceeded { .. }
                | OdeError::NonFiniteState { .. }
        ),
        "{e}"
    );
}

#[test]
fn field_returning_nan_is_an_error_not_a_loop() {
    let field = FnField::new(1, |t, _x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
        out.fill(if t > 0.5 { f64::NAN } else { 1.0 })
    });
    let e = Integrator::new(Rk4::default())
        .steps(10)
        .run(&field, array![[0.0]].view())
        .unwrap_err();
    assert!(
        matches!(e, OdeError::NonFiniteState { t, .. } if t > 0.5 && t <= 0.6 + 1e-12),
        "{e}"
    );
    let e = Integrator::new(Dopri5::default())
        .run(&field, array![[0.0]].view())
        .unwrap_err();
    assert!(
        matches!(e, OdeError::StepSizeUnderflow { t, .. } if t < 0.5 + 1e-9),
        "{e}"
    );
    let always_nan = FnField::new(1, |_t, _x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
        out.fill(f64::NAN)
    });
    let e = Integrator::new(Dopri5::default())
        .run(&always_nan, array![[0.0]].view())
        .unwrap_err();
    assert!(
        matches!(e, OdeError::NonFiniteVelocity { t, .. } if t == 0.0),
        "{e}"
    );
}

#[test]
fn max_steps_stops_a_run() {
    let e = Integrator::new(Euler::default())
        .steps(100)
        .max_steps(10)
        .run(&decay(), array![[1.0, 1.0]].view())
        .unwrap_err();
    assert!(
        matches!(e, OdeError::MaxStepsExceeded { max_steps: 10, .. }),
        "{e}"
    );
    let e = Integrator::new(Dopri5::default())
        .tolerances(1e-12, 1e-12)
        .max_steps(5)
        .run(&decay(), array![[1.0, 1.0]].view())
        .unwrap_err();
    assert!(
        matches!(e, OdeError::MaxStepsExceeded { max_steps: 5, .. }),
        "{e}"
    );
}
