//! Agreement with an independent implementation: the `ode_solvers` crate's Dopri5 (sparse
//! output, so the final state is a computed step, not an extrapolation).

use fm_core::FnField;
use fm_ode::{Integrator, SOLVER_NAMES, solver_by_name};
use ndarray::{Array2, ArrayView2, ArrayViewMut2, array};
use ode_solvers::{OutputType, System, Vector2};

/// A nonlinear, non-autonomous 2-D field without a closed-form solution.
fn v(t: f64, x1: f64, x2: f64) -> (f64, f64) {
    (
        -x2 + 0.3 * (3.0 * t).sin() * x1,
        x1 - 0.2 * x2 * x2 * x2 + t.cos(),
    )
}

struct Oracle;
impl System<f64, Vector2<f64>> for Oracle {
    fn system(&self, t: f64, y: &Vector2<f64>, dy: &mut Vector2<f64>) {
        let (a, b) = v(t, y[0], y[1]);
        dy[0] = a;
        dy[1] = b;
    }
}

fn oracle(t0: f64, t1: f64, x: [f64; 2]) -> [f64; 2] {
    let mut s =
        ode_solvers::Dopri5::new(Oracle, t0, t1, 0.1, Vector2::new(x[0], x[1]), 1e-13, 1e-13);
    s.set_output(OutputType::Sparse);
    s.integrate().expect("oracle integrates");
    let t_last = *s.x_out().last().unwrap();
    assert!((t_last - t1).abs() < 1e-12, "oracle ended at {t_last}");
    let y = s.y_out().last().unwrap();
    [y[0], y[1]]
}

fn field() -> FnField<impl Fn(f64, ArrayView2<f64>, ArrayViewMut2<f64>) + Sync> {
    FnField::new(2, |t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
        for (mut o, r) in out.rows_mut().into_iter().zip(x.rows()) {
            let (a, b) = v(t, r[0], r[1]);
            o[0] = a;
            o[1] = b;
        }
    })
}

fn max_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn every_solver_agrees_with_the_oracle_forward_and_backward() {
    let x0 = array![[1.0, 0.0], [-0.5, 1.5], [2.0, -1.0], [0.0, 0.0]];
    let (t0, t1) = (0.2, 2.0);
    let mut x_end = Array2::zeros(x0.raw_dim());
    for (i, r) in x0.rows().into_iter().enumerate() {
        let y = oracle(t0, t1, [r[0], r[1]]);
        x_end[[i, 0]] = y[0];
        x_end[[i, 1]] = y[1];
    }
    let field = field();
    for name in SOLVER_NAMES {
        let mut solver = solver_by_name(name).unwrap();
        let p = solver.order() as i32;
        // Enough fixed steps for an error near 1e-6 (Euler: 1e-3).
        let (n, bound) = match p {
            1 => (2000, 5e-3),
            2 => (1000, 1e-5),
            3 => (200, 1e-5),
            _ => (100, 1e-6),
        };
        for (from, to, start, target) in [(t0, t1, &x0, &x_end), (t1, t0, &x_end, &x0)] {
            let sol = Integrator::new(&mut solver)
                .span(from, to)
                .steps(n)
                .run(&field, start.view())
                .unwrap();
            let err = max_diff(&sol.x, target);
            assert!(
                err < bound,
                "{name} {from}->{to}: error {err:e} vs oracle (bound {bound:e})"
            );
        }
        if solver.is_adaptive() {
            for (from, to, start, target) in [(t0, t1, &x0, &x_end), (t1, t0, &x_end, &x0)] {
                let sol = Integrator::new(&mut solver)
                    .span(from, to)
                    .tolerances(1e-10, 1e-10)
                    .run(&field, start.view())
                    .unwrap();
                let err = max_diff(&sol.x, target);
                assert!(err < 1e-8, "{name} adaptive {from}->{to}: error {err:e}");
            }
        }
    }
}

/// Same tolerances, same algorithm family: our adaptive Dopri5 and the oracle's take a
/// comparable number of steps on one trajectory (different error norms and controllers, so
/// only the order of magnitude is compared).
#[test]
fn adaptive_step_counts_are_comparable_to_the_oracle() {
    let mut s = ode_solvers::Dopri5::new(Oracle, 0.0, 2.0, 0.1, Vector2::new(1.0, 0.0), 1e-6, 1e-6);
    s.set_output(OutputType::Sparse);
    let stats = s.integrate().unwrap();
    let ours = Integrator::new(solver_by_name("dopri5").unwrap())
        .span(0.0, 2.0)
        .tolerances(1e-6, 1e-6)
        .run(&field(), array![[1.0, 0.0]].view())
        .unwrap();
    let (a, b) = (ours.stats.accepted as f64, stats.accepted_steps as f64);
    assert!(
        a / b < 2.0 && b / a < 2.0,
        "ours {:?}, oracle {stats:?}",
        ours.stats
    );
    let y = s.y_out().last().unwrap();
    assert!((ours.x[[0, 0]] - y[0]).abs() < 1e-4 && (ours.x[[0, 1]] - y[1]).abs() < 1e-4);
}
