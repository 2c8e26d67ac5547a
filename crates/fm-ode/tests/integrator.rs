//! The integrator: recording, observer, counters, threads, likelihoods.

use fm_core::{FnField, LogDensity, StandardNormal, VectorField};
use fm_ode::testing::{KitOptions, check_solver};
use fm_ode::{
    AugmentedField, ButcherTableau, Dopri5, Euler, ExplicitRk, Integrator, Parallelism, Rk4,
    augmented_state, split_augmented,
};
use ndarray::{Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2, array};
use proptest::prelude::*;

fn forced_decay() -> FnField<impl Fn(f64, ArrayView2<f64>, ArrayViewMut2<f64>) + Sync> {
    FnField::new(1, |t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
        out.assign(&x.mapv(|v| -v + t))
    })
}

fn exact_decay(t: f64, x0: f64) -> f64 {
    t - 1.0 + (x0 + 1.0) * (-t).exp()
}

#[test]
fn fixed_steps_hit_record_times_exactly_and_count_evaluations() {
    let mut seen = Vec::new();
    let sol = Integrator::new(Rk4::default())
        .steps(4)
        .record_at(vec![1.0, 0.0, 0.3, 0.5])
        .observer(|info| seen.push((info.t, info.stats.accepted)))
        .run(&forced_decay(), array![[2.0]].view())
        .unwrap();
    let times: Vec<f64> = sol.trajectory.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, vec![0.0, 0.3, 0.5, 1.0]);
    assert_eq!(sol.trajectory[0].1, array![[2.0]]);
    for (t, x) in &sol.trajectory {
        assert!((x[[0, 0]] - exact_decay(*t, 2.0)).abs() < 1e-4, "t = {t}");
    }
    // 0.3 splits the step [0.25, 0.5]: 5 steps of 4 evaluations.
    assert_eq!(sol.stats.accepted, 5);
    assert_eq!(sol.stats.nfe, 20);
    assert_eq!(sol.stats.rejected, 0);
    let observed: Vec<f64> = seen.iter().map(|s| s.0).collect();
    assert_eq!(observed, vec![0.25, 0.3, 0.5, 0.75, 1.0]);
    assert_eq!(seen.last().unwrap().1, 5);
}

#[test]
fn euler_steps_are_the_textbook_recursion() {
    // Independent oracle: the scalar recursion x_{k+1} = x_k + h (−x_k + t_k), backwards.
    let (t0, t1, n) = (1.0, -0.5, 7);
    let h = (t1 - t0) / n as f64;
    let mut x = 0.3;
    for k in 0..n {
        let t = t0 + k as f64 * h;
        x += h * (-x + t);
    }
    let sol = Integrator::new(Euler::default())
        .span(t0, t1)
        .steps(n)
        .run(&forced_decay(), array![[0.3]].view())
        .unwrap();
    assert!((sol.x[[0, 0]] - x).abs() < 1e-14);
    assert_eq!(sol.t, t1);
    assert_eq!(sol.stats.nfe, n);
}

#[test]
fn dopri5_reuses_the_last_stage() {
    let sol = Integrator::new(Dopri5::default())
        .tolerances(1e-6, 1e-6)
        .run(&forced_decay(), array![[2.0], [-1.0]].view())
        .unwrap();
    // 2 evaluations for the initial step (the first reused as k1), 6 per attempted step.
    let attempted = sol.stats.accepted + sol.stats.rejected;
    assert_eq!(sol.stats.nfe, 2 + 6 * attempted, "{:?}", sol.stats);
    assert!((sol.x[[0, 0]] - exact_decay(1.0, 2.0)).abs() < 1e-5);
    // With fixed steps: 7 evaluations for the first, 6 for the others.
    let fixed = Integrator::new(Dopri5::default())
        .steps(10)
        .run(&forced_decay(), array![[2.0]].view())
        .unwrap();
    assert_eq!(fixed.stats.nfe, 7 + 6 * 9);
}

#[test]
fn adaptive_steps_reject_and_recover_on_a_sharp_feature() {
    // dx/dt = -50 (x - cos t): a fast transient then a slow manifold.
    let field = FnField::new(1, |t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
        out.assign(&x.mapv(|v| -50.0 * (v - t.cos())))
    });
    let sol = Integrator::new(Dopri5::default())
        .span(0.0, 2.0)
        .tolerances(1e-8, 1e-8)
        .run(&field, array![[3.0]].view())
        .unwrap();
    // Exact: x = c(t) + (x0 − c(0)) e^{−50t} with c the particular solution
    // c(t) = (2500 cos t + 50 sin t) / 2501.
    let c = |t: f64| (2500.0 * t.cos() + 50.0 * t.sin()) / 2501.0;
    let exact = c(2.0) + (3.0 - c(0.0)) * (-100.0f64).exp();
    assert!(
        (sol.x[[0, 0]] - exact).abs() < 1e-6,
        "{} vs {exact}",
        sol.x[[0, 0]]
    );
    assert!(sol.stats.accepted > 10);
}

#[test]
fn threads_give_the_same_bits_on_a_large_batch() {
    let field = FnField::new(2, |t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
        for (mut o, r) in out.rows_mut().into_iter().zip(x.rows()) {
            o[0] = (r[1] * t).sin() - 0.1 * r[0];
            o[1] = r[0].tanh() + t;
        }
    });
    let x0 = Array2::from_shape_fn((3000, 2), |(i, j)| {
        ((i * 31 + j * 17) % 101) as f64 / 25.0 - 2.0
    });
    for adaptive in [false, true] {
        let run = |par: Parallelism| {
            let integ = Integrator::new(Dopri5::default()).parallelism(par);
            let integ = if adaptive {
                integ.tolerances(1e-5, 1e-5)
            } else {
                integ.steps(20)
            };
            let mut integ = integ;
            integ.run(&field, x0.view()).unwrap()
        };
        let a = run(Parallelism {
            chunk_rows: 100,
            threads: true,
        });
        let b = run(Parallelism {
            chunk_rows: 100,
            threads: false,
        });
        assert_eq!(a.x, b.x);
        assert_eq!(a.stats, b.stats);
        // A different chunking changes only the order of the norm's sum.
        let c = run(Parallelism::default());
        let diff =
            a.x.iter()
                .zip(c.x.iter())
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f64::max);
        assert!(diff < 1e-9, "{diff}");
    }
}

#[test]
fn a_users_bogacki_shampine_tableau_passes_the_kit() {
    let bs3 = ButcherTableau::new(
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
    )
    .unwrap()
    .with_embedded(vec![7.0 / 24.0, 0.25, 1.0 / 3.0, 0.125], 2)
    .unwrap();
    let report = check_solver(&mut ExplicitRk::new(bs3), 3, &KitOptions::default()).unwrap();
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.name.starts_with("tolerance"))
    );
}

/// Likelihood of a linear flow in closed form: v = A(t) x with A(t) = (1 + t) B pushes
/// N(0, I) at t = 0 to N(0, M Mᵀ) at t = 1, M = exp(1.5 B); with B diagonal,
/// log p_1(x) is a product of 1-D normal densities with σ_i = exp(1.5 b_i).
#[test]
fn augmented_field_gives_the_exact_log_likelihood() {
    let b = [0.4, -0.7];
    let field = FnField::new(
        2,
        move |t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
            for (mut o, r) in out.rows_mut().into_iter().zip(x.rows()) {
                o[0] = (1.0 + t) * b[0] * r[0];
                o[1] = (1.0 + t) * b[1] * r[1];
            }
        },
    );
    let x_1 = array![[0.3, -1.0], [2.0, 0.5], [0.0, 0.0]];
    let aug = AugmentedField::new(&field);
    assert_eq!(aug.dim(), 3);
    for exact_div in [false, true] {
        let sol = if exact_div {
            let f2 = FnField::new(
                2,
                move |t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
                    for (mut o, r) in out.rows_mut().into_iter().zip(x.rows()) {
                        o[0] = (1.0 + t) * b[0] * r[0];
                        o[1] = (1.0 + t) * b[1] * r[1];
                    }
                },
            )
            .with_divergence(move |t, _x, mut out: ArrayViewMut1<f64>| {
                out.fill((1.0 + t) * (b[0] + b[1]))
            });
            Integrator::new(Dopri5::default())
                .span(1.0, 0.0)
                .tolerances(1e-10, 1e-10)
                .run(
                    &AugmentedField::new(&f2),
                    augmented_state(x_1.view()).view(),
                )
                .unwrap()
        } else {
            Integrator::new(Dopri5::default())
                .span(1.0, 0.0)
                .tolerances(1e-10, 1e-10)
                .run(&aug, augmented_state(x_1.view()).view())
                .unwrap()
        };
        let (x_0, ell) = split_augmented(sol.x.view());
        let lp0 = StandardNormal::new(2)
            .unwrap()
            .log_prob(x_0.view())
            .unwrap();
        for i in 0..3 {
            let mut exact = 0.0;
            for j in 0..2 {
                let sigma = (1.5 * b[j]).exp();
                let z = x_1[[i, j]] / sigma;
                exact += -0.5 * z * z - sigma.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln();
            }
            let got = lp0[i] - ell[i];
            assert!(
                (got - exact).abs() < 1e-6,
                "row {i}: {got} vs {exact} (exact div {exact_div})"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// For any span direction and any record grid, adaptive Dopri5 records at exactly the
    /// requested times with values close to the closed form.
    #[test]
    fn records_match_closed_form(
        t0 in -1.0f64..1.0,
        len in 0.1f64..2.0,
        backward in any::<bool>(),
        fracs in proptest::collection::vec(0.0f64..1.0, 0..5),
        x0 in -3.0f64..3.0,
    ) {
        let (a, b) = if backward { (t0 + len, t0) } else { (t0, t0 + len) };
        let times: Vec<f64> = fracs.iter().map(|f| a + f * (b - a)).collect();
        // Exact solution from (a, x0): x(t) = t − 1 + (x0 − a + 1) e^{−(t − a)}.
        let exact = |t: f64| t - 1.0 + (x0 - a + 1.0) * (-(t - a)).exp();
        let sol = Integrator::new(Dopri5::default())
            .span(a, b)
            .tolerances(1e-9, 1e-9)
            .record_at(times.clone())
            .run(&forced_decay(), array![[x0]].view())
            .unwrap();
        let mut expected = times.clone();
        expected.sort_by(|p, q| if backward { q.total_cmp(p) } else { p.total_cmp(q) });
        expected.dedup();
        let got: Vec<f64> = sol.trajectory.iter().map(|(t, _)| *t).collect();
        prop_assert_eq!(got, expected);
        for (t, x) in &sol.trajectory {
            prop_assert!((x[[0, 0]] - exact(*t)).abs() < 1e-7, "t = {}: {} vs {}", t, x[[0, 0]], exact(*t));
        }
        prop_assert!((sol.x[[0, 0]] - exact(b)).abs() < 1e-7);
    }
}

#[test]
fn backward_fixed_steps_record_in_integration_order_and_observer_sees_errors() {
    let sol = Integrator::new(Rk4::default())
        .span(1.0, 0.0)
        .steps(3)
        .record_at(vec![0.25, 0.75, 0.0])
        .run(&forced_decay(), array![[exact_decay(1.0, 2.0)]].view())
        .unwrap();
    let times: Vec<f64> = sol.trajectory.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, vec![0.75, 0.25, 0.0]);
    for (t, x) in &sol.trajectory {
        assert!((x[[0, 0]] - exact_decay(*t, 2.0)).abs() < 1e-3, "t = {t}");
    }
    // Grid 1, 2/3, 1/3, 0 split at 0.75 and 0.25: 5 steps.
    assert_eq!(sol.stats.accepted, 5);

    let mut errors = Vec::new();
    let mut steps = Vec::new();
    let sol = Integrator::new(Dopri5::default())
        .span(1.0, -1.0)
        .tolerances(1e-7, 1e-7)
        .observer(|info| {
            errors.push(info.error);
            steps.push(info.h);
        })
        .run(&forced_decay(), array![[0.5]].view())
        .unwrap();
    assert_eq!(steps.len(), sol.stats.accepted);
    assert!(steps.iter().all(|h| *h < 0.0));
    assert!((steps.iter().sum::<f64>() + 2.0).abs() < 1e-12);
    assert!(errors.iter().all(|e| matches!(e, Some(v) if *v <= 1.0)));
}
