//! Property tests against independent closed forms.

use fm_core::FnField;
use fm_ode::{Integrator, Parallelism, solver_by_name};
use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// On a constant linear field v = A x, one step of an explicit s-stage method of order
    /// p = s ≤ 4 is exactly the degree-p Taylor polynomial of exp(hA) applied to x (the
    /// stability polynomial), for any A, x and signed h.
    #[test]
    fn one_step_on_a_linear_field_is_the_taylor_polynomial(
        entries in proptest::collection::vec(-2.0f64..2.0, 9),
        xs in proptest::collection::vec(-3.0f64..3.0, 6),
        h in -0.5f64..0.5,
    ) {
        prop_assume!(h.abs() > 1e-3);
        let a = Array2::from_shape_vec((3, 3), entries).unwrap();
        let x = Array2::from_shape_vec((2, 3), xs).unwrap();
        let at = a.t().to_owned();
        let field = FnField::new(3, move |_t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
            out.assign(&x.dot(&at))
        });
        for (name, p) in [("euler", 1), ("midpoint", 2), ("heun", 2), ("ralston", 2), ("ssprk3", 3), ("rk4", 4)] {
            // Σ_{k ≤ p} (hA)^k x / k!, with rows as samples: x (hA)ᵀ...
            let mut term = x.clone();
            let mut expected = x.clone();
            for k in 1..=p {
                term = term.dot(&a.t()) * (h / k as f64);
                expected += &term;
            }
            let sol = Integrator::new(solver_by_name(name).unwrap())
                .span(0.3, 0.3 + h)
                .steps(1)
                .run(&field, x.view())
                .unwrap();
            let scale = 1.0 + expected.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (g, e) in sol.x.iter().zip(expected.iter()) {
                prop_assert!((g - e).abs() <= 1e-12 * scale, "{}: {} vs {}", name, g, e);
            }
        }
    }

    /// Any chunk size, with or without threads, gives the same bits for fixed steps
    /// (the rows of a flow-matching ODE are independent).
    #[test]
    fn chunking_never_changes_fixed_step_results(
        chunk in 1usize..40,
        n in 1usize..60,
        threads in any::<bool>(),
    ) {
        let field = FnField::new(2, |t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
            for (mut o, r) in out.rows_mut().into_iter().zip(x.rows()) {
                o[0] = (r[1] + t).sin();
                o[1] = -r[0] * r[1];
            }
        });
        let x0 = Array2::from_shape_fn((n, 2), |(i, j)| (i as f64 * 0.37 + j as f64).cos());
        let run = |par| {
            Integrator::new(solver_by_name("rk4").unwrap())
                .steps(5)
                .parallelism(par)
                .run(&field, x0.view())
                .unwrap()
                .x
        };
        let a = run(Parallelism { chunk_rows: chunk, threads });
        let b = run(Parallelism::sequential());
        prop_assert_eq!(a, b);
    }
}
