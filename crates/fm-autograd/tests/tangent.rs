//! The ops that normalizing flows need (exp, log, division, masks, column selection, row sums,
//! column broadcasting, the activation derivative) against central finite differences in f64,
//! and a forward-mode tangent of a graph MLP written as graph ops: its exact divergence is a node,
//! and backpropagating through it gives the gradient of the divergence in the weights.
use fm_autograd::{Activation, Graph, Var};
use ndarray::Array2;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

/// Entries in ±[0.05, 1.5]: away from 0 so kinks are never straddled by the stencil.
fn rand_mat(rng: &mut impl Rng, r: usize, c: usize) -> Array2<f64> {
    Array2::from_shape_fn((r, c), |_| {
        let v: f64 = rng.random_range(0.05..1.5);
        if rng.random() { v } else { -v }
    })
}

/// Builds `f(inputs)` on a fresh tape, seeds backward with a random cotangent `r`, and compares
/// each input's gradient with the central difference of `Σ r ⊙ f` entry by entry.
fn check(inputs: Vec<Array2<f64>>, seed: u64, f: impl Fn(&mut Graph<f64>, &[Var]) -> Var) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let eval = |xs: &[Array2<f64>]| {
        let mut g = Graph::new();
        let vs: Vec<Var> = xs.iter().map(|x| g.leaf(x.clone())).collect();
        let out = f(&mut g, &vs);
        (g, vs, out)
    };
    let (g, vs, out) = eval(&inputs);
    let r = Array2::from_shape_fn(g.value(out).raw_dim(), |_| rng.random_range(-1.0..1.0));
    let grads = g.backward_with(out, r.clone()).unwrap();
    let objective = |xs: &[Array2<f64>]| {
        let (g, _, out) = eval(xs);
        (g.value(out) * &r).sum()
    };
    let h = 1e-5;
    for (k, v) in vs.iter().enumerate() {
        let analytic = grads
            .get(*v)
            .cloned()
            .unwrap_or_else(|| Array2::zeros(inputs[k].raw_dim()));
        assert_eq!(
            analytic.dim(),
            inputs[k].dim(),
            "gradient shape of input {k}"
        );
        for ((i, j), &a) in analytic.indexed_iter() {
            let mut xp = inputs.clone();
            xp[k][[i, j]] += h;
            let mut xm = inputs.clone();
            xm[k][[i, j]] -= h;
            let fd = (objective(&xp) - objective(&xm)) / (2.0 * h);
            assert!(
                (fd - a).abs() <= 1e-6 * (1.0 + fd.abs()),
                "input {k} entry ({i}, {j}): finite difference {fd} vs backward {a}"
            );
        }
    }
}

/// A graph MLP `v(x) = f(f(x W₀ + b₀) W₁ + b₁) W₂ + b₂`, with `params = [W₀, b₀, W₁, b₁, W₂, b₂]`.
/// Returns the output and the pre-activations of the hidden layers.
fn mlp(g: &mut Graph<f64>, x: Var, params: &[Var], act: Activation) -> (Var, Vec<Var>) {
    let mut h = x;
    let mut pre = Vec::new();
    let layers = params.len() / 2;
    for l in 0..layers {
        let z = g.matmul(h, params[2 * l]).unwrap();
        let z = g.add_bias(z, params[2 * l + 1]).unwrap();
        if l + 1 < layers {
            pre.push(z);
            h = g.activate(z, act).unwrap();
        } else {
            h = z;
        }
    }
    (h, pre)
}

/// The exact divergence `Σ_j ∂v_j/∂x_j` of [`mlp`] as an `(n, 1)` node, by `d` forward-mode
/// tangents written as graph ops: tangent `ẋ = e_j`, `ż_l = ḣ_{l-1} W_l`, `ḣ_l = f'(z_l) ⊙ ż_l`,
/// and the `j`-th column of the output's tangent is `∂v_j/∂x_j`.
fn divergence(g: &mut Graph<f64>, x: Var, params: &[Var], act: Activation) -> Var {
    let (n, d) = g.value(x).dim();
    let (_, pre) = mlp(g, x, params, act);
    let derivs: Vec<Var> = pre.iter().map(|&z| g.act_deriv(z, act).unwrap()).collect();
    let layers = params.len() / 2;
    let mut terms = Vec::new();
    for j in 0..d {
        let e_j = g.leaf(Array2::from_shape_fn((n, d), |(_, c)| f64::from(c == j)));
        let mut tangent = e_j;
        for l in 0..layers {
            let dz = g.matmul(tangent, params[2 * l]).unwrap();
            tangent = if l + 1 < layers {
                g.mul(derivs[l], dz).unwrap()
            } else {
                dz
            };
        }
        terms.push(g.select_cols(tangent, &[j]).unwrap());
    }
    let cols = g.concat_cols(&terms).unwrap();
    g.row_sum(cols).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn exp_log_div(n in 1usize..5, m in 1usize..5, seed in any::<u64>()) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let ins = vec![rand_mat(&mut rng, n, m), rand_mat(&mut rng, n, m)];
        check(ins.clone(), seed, |g, v| g.exp(v[0]).unwrap());
        // log of positive values only: log(exp(a)) and log(a ⊙ a).
        check(ins.clone(), seed, |g, v| {
            let sq = g.mul(v[0], v[0]).unwrap();
            g.log(sq).unwrap()
        });
        check(ins.clone(), seed, |g, v| g.div(v[0], v[1]).unwrap());
        // 1 / b as a division of a constant, and a / a (both operands the same node).
        check(ins.clone(), seed, |g, v| {
            let one = g.leaf(Array2::ones(g.value(v[1]).raw_dim()));
            g.div(one, v[1]).unwrap()
        });
        check(ins, seed, |g, v| g.div(v[0], v[0]).unwrap());
    }

    #[test]
    fn masks_selection_row_sums_and_column_broadcast(
        n in 1usize..5, m in 1usize..6, seed in any::<u64>(),
        picks in proptest::collection::vec(0usize..64, 1..8),
    ) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let ins = vec![rand_mat(&mut rng, n, m), rand_mat(&mut rng, n, 1)];
        let mask = Array2::from_shape_fn((n, m), |_| f64::from(rng.random::<bool>()));
        check(ins.clone(), seed, |g, v| g.mul_const(v[0], mask.clone()).unwrap());
        // Any index list, repeats included (their gradients add up).
        let cols: Vec<usize> = picks.iter().map(|p| p % m).collect();
        check(ins.clone(), seed, |g, v| g.select_cols(v[0], &cols).unwrap());
        check(ins.clone(), seed, |g, v| g.row_sum(v[0]).unwrap());
        check(ins.clone(), seed, |g, v| g.mul_col(v[0], v[1]).unwrap());
        // A permutation and its inverse through concat: the scatter used by coupling layers.
        check(ins, seed, |g, v| {
            let a = g.select_cols(v[0], &cols).unwrap();
            let b = g.concat_cols(&[a, v[1]]).unwrap();
            let s = g.exp(b).unwrap();
            g.row_sum(s).unwrap()
        });
    }

    #[test]
    fn activation_derivative_op(n in 1usize..5, m in 1usize..5, seed in any::<u64>()) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let ins = vec![rand_mat(&mut rng, n, m)];
        for act in Activation::ALL {
            check(ins.clone(), seed, |g, v| g.act_deriv(v[0], act).unwrap());
        }
    }

    #[test]
    fn gradient_of_exact_divergence_through_tangents(
        n in 1usize..4, d in 2usize..5, h in 1usize..5, seed in any::<u64>(), which in 0usize..4,
    ) {
        let act = [Activation::Tanh, Activation::Silu, Activation::Softplus, Activation::Gelu][which];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let ins = vec![
            rand_mat(&mut rng, n, d),
            rand_mat(&mut rng, d, h), rand_mat(&mut rng, 1, h),
            rand_mat(&mut rng, h, h), rand_mat(&mut rng, 1, h),
            rand_mat(&mut rng, h, d), rand_mat(&mut rng, 1, d),
        ];
        // 1. The divergence node equals the trace of a finite-difference Jacobian of v.
        let mut g = Graph::new();
        let vs: Vec<Var> = ins.iter().map(|a| g.leaf(a.clone())).collect();
        let div = divergence(&mut g, vs[0], &vs[1..], act);
        let forward = |x: &Array2<f64>| {
            let mut g = Graph::new();
            let x = g.leaf(x.clone());
            let ps: Vec<Var> = ins[1..].iter().map(|a| g.leaf(a.clone())).collect();
            let (out, _) = mlp(&mut g, x, &ps, act);
            g.value(out).clone()
        };
        let step = 1e-5;
        for i in 0..n {
            let mut trace = 0.0;
            for j in 0..d {
                let (mut xp, mut xm) = (ins[0].clone(), ins[0].clone());
                xp[[i, j]] += step;
                xm[[i, j]] -= step;
                trace += (forward(&xp)[[i, j]] - forward(&xm)[[i, j]]) / (2.0 * step);
            }
            let exact = g.value(div)[[i, 0]];
            prop_assert!((trace - exact).abs() < 1e-6 * (1.0 + exact.abs()), "row {i}: {trace} vs {exact}");
        }
        // 2. Backpropagating through the divergence: gradients in x and in every weight.
        check(ins, seed, |g, v| divergence(g, v[0], &v[1..], act));
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let mut g = Graph::<f64>::new();
    let a = g.leaf(ndarray::array![[1.0, 0.0], [-1.0, 2.0]]);
    let c = g.leaf(Array2::zeros((3, 1)));
    let err = g.log(a).unwrap_err().to_string();
    assert!(err.contains("log"), "{err}");
    let err = g.div(c, c).unwrap_err().to_string();
    assert!(err.contains("zero"), "{err}");
    assert!(g.div(a, c).is_err());
    assert!(
        g.select_cols(a, &[0, 2])
            .unwrap_err()
            .to_string()
            .contains("column index")
    );
    assert!(
        g.mul_col(a, c)
            .unwrap_err()
            .to_string()
            .contains("column factor")
    );
    assert!(g.mul_const(a, Array2::zeros((2, 3))).is_err());
    // Nothing was recorded by the failed calls.
    assert_eq!(g.len(), 2);
}

#[test]
fn new_op_values() {
    let mut g = Graph::<f64>::new();
    let a = g.leaf(ndarray::array![[1.0, 2.0, 4.0], [0.5, 0.25, 8.0]]);
    let c = g.leaf(ndarray::array![[2.0], [-1.0]]);
    let s = g.select_cols(a, &[2, 0, 2]).unwrap();
    assert_eq!(
        g.value(s),
        &ndarray::array![[4.0, 1.0, 4.0], [8.0, 0.5, 8.0]]
    );
    let r = g.row_sum(a).unwrap();
    assert_eq!(g.value(r), &ndarray::array![[7.0], [8.75]]);
    let m = g.mul_col(a, c).unwrap();
    assert_eq!(
        g.value(m),
        &ndarray::array![[2.0, 4.0, 8.0], [-0.5, -0.25, -8.0]]
    );
    let l = g.log(a).unwrap();
    assert!((g.value(l)[[0, 2]] - 4.0_f64.ln()).abs() < 1e-15);
}
