//! Adding an ODE solver in a user's crate: Bogacki–Shampine 3(2) as a Butcher tableau.
//!
//! A new explicit Runge–Kutta method is data: its tableau, run by the generic `ExplicitRk`.
//! The embedded second-order weights make it adaptive (error estimate, PI step-size control,
//! automatic first step, first-same-as-last reuse — all provided by the integrator and
//! `ExplicitRk`). One call to the conformance kit then checks its order of convergence on
//! three non-autonomous problems, forward and backward round trips, batch independence,
//! thread reproducibility, and that it meets its tolerances.
//!
//! Run with `cargo run --example custom_solver`.

use flow_matching::core::FnField;
use flow_matching::ode::testing::{KitOptions, check_solver};
use flow_matching::ode::{ButcherTableau, ExplicitRk, Integrator, OdeSolver};
use ndarray::array;

/// Bogacki & Shampine (1989), "A 3(2) pair of Runge–Kutta formulas": 4 stages, FSAL,
/// order 3 with an embedded order-2 solution.
fn bogacki_shampine() -> anyhow::Result<ButcherTableau> {
    let tableau = ButcherTableau::new(
        "bs3",
        3,
        vec![0.0, 0.5, 0.75, 1.0],
        vec![
            vec![],
            vec![0.5],
            vec![0.0, 0.75],
            vec![2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0],
        ],
        vec![2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0, 0.0],
    )?
    .with_embedded(vec![7.0 / 24.0, 0.25, 1.0 / 3.0, 0.125], 2)?;
    Ok(tableau)
}

fn main() -> anyhow::Result<()> {
    let tableau = bogacki_shampine()?;
    assert!(tableau.is_fsal());
    let mut solver = ExplicitRk::new(tableau);

    // The whole conformance suite in one call.
    let report = check_solver(&mut solver, 3, &KitOptions::default())?;
    println!("{report}");

    // Use it: a rotation field, adaptive steps, recorded at t = 0.5.
    let field = FnField::new(2, |_t, x, mut out| {
        for (mut o, r) in out.rows_mut().into_iter().zip(x.rows()) {
            o[0] = -r[1];
            o[1] = r[0];
        }
    });
    let sol = Integrator::new(&mut solver)
        .span(0.0, 1.0)
        .tolerances(1e-6, 1e-6)
        .record_at(vec![0.5])
        .run(&field, array![[1.0, 0.0]].view())?;
    let err = ((sol.x[[0, 0]] - 1f64.cos()).powi(2) + (sol.x[[0, 1]] - 1f64.sin()).powi(2)).sqrt();
    println!(
        "{}: x(1) = {:?}, error {err:.2e}, {:?}",
        solver.name(),
        sol.x.row(0).to_vec(),
        sol.stats
    );
    anyhow::ensure!(err < 1e-4, "error {err} too large");
    Ok(())
}
