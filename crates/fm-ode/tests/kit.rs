//! Every built-in solver passes the conformance kit; wrong methods fail it.

use fm_ode::testing::{KitOptions, check_solver};
use fm_ode::{ButcherTableau, ExplicitRk, OdeError, OdeSolver, SOLVER_NAMES, solver_by_name};

#[test]
fn every_built_in_solver_passes_the_kit() {
    let orders = [
        ("euler", 1),
        ("midpoint", 2),
        ("heun", 2),
        ("ralston", 2),
        ("ssprk3", 3),
        ("rk4", 4),
        ("dopri5", 5),
    ];
    assert_eq!(orders.len(), SOLVER_NAMES.len());
    for (name, p) in orders {
        let mut solver = solver_by_name(name).unwrap();
        match check_solver(solver.as_mut(), p, &KitOptions::default()) {
            Ok(report) => {
                println!("{report}");
                assert!(report.passed());
                assert!(report.checks.len() >= 10, "{report}");
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// RK4 with equal weights 1/4: consistent (Σb = 1, row sums hold) and even second order,
/// but not fourth. The tableau is accepted; the kit must reject the claim.
#[test]
fn a_wrong_tableau_fails_the_kit() {
    let wrong = ButcherTableau::new(
        "rk4-wrong-weights",
        4,
        vec![0.0, 0.5, 0.5, 1.0],
        vec![vec![], vec![0.5], vec![0.0, 0.5], vec![0.0, 0.0, 1.0]],
        vec![0.25, 0.25, 0.25, 0.25],
    )
    .unwrap();
    let mut solver = ExplicitRk::new(wrong);
    let err = check_solver(&mut solver, 4, &KitOptions::default()).unwrap_err();
    match &err {
        OdeError::ConformanceFailed { solver, failures } => {
            assert_eq!(solver, "rk4-wrong-weights");
            assert!(failures.contains("order forward"), "{failures}");
        }
        other => panic!("unexpected error {other}"),
    }
}

/// Claiming the wrong order for a correct method fails too (both ways).
#[test]
fn a_wrong_order_claim_fails_the_kit() {
    let mut rk4 = solver_by_name("rk4").unwrap();
    assert!(check_solver(rk4.as_mut(), 3, &KitOptions::default()).is_err());
    let mut heun = solver_by_name("heun").unwrap();
    assert!(check_solver(heun.as_mut(), 3, &KitOptions::default()).is_err());
}

/// Dormand–Prince with a wrong embedded solution (the error estimate is then far too small:
/// b̂ differs from b only by a tiny perturbation) fails the tolerance checks.
#[test]
fn a_wrong_error_estimate_fails_the_kit() {
    let good = ButcherTableau::dopri5();
    let mut b_hat = good.b().to_vec();
    b_hat[0] += 1e-6;
    b_hat[6] -= 1e-6;
    let tab = ButcherTableau::new(
        "dopri5-bad-estimate",
        5,
        good.c().to_vec(),
        (0..7)
            .map(|i| (0..i).map(|j| good.a(i, j)).collect())
            .collect(),
        good.b().to_vec(),
    )
    .unwrap()
    .with_embedded(b_hat, 4)
    .unwrap();
    let mut solver = ExplicitRk::new(tab);
    assert!(solver.is_adaptive());
    let err = check_solver(&mut solver, 5, &KitOptions::default()).unwrap_err();
    assert!(err.to_string().contains("tolerance"), "{err}");
}
