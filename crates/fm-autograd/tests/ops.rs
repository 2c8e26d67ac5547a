//! Every op's backward rule against central finite differences in f64, on random shapes.
use fm_autograd::{Activation, Graph, Var};
use ndarray::Array2;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

fn rand_mat(rng: &mut impl Rng, r: usize, c: usize) -> Array2<f64> {
    // Values kept away from 0 by at least 0.05 so ReLU's kink is never straddled by the stencil.
    Array2::from_shape_fn((r, c), |_| {
        let v: f64 = rng.random_range(0.05..1.5);
        if rng.random() { v } else { -v }
    })
}

/// Builds `f(inputs)` on a fresh tape, seeds backward with a random cotangent `r`, and compares
/// each input's gradient with the central difference of `Σ r ⊙ f` entry by entry.
fn check(inputs: Vec<Array2<f64>>, seed: u64, f: impl Fn(&mut Graph<f64>, &[Var]) -> Var) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let eval = |xs: &[Array2<f64>]| {
        let mut g = Graph::new();
        let vs: Vec<Var> = xs.iter().map(|x| g.leaf(x.clone())).collect();
        let out = f(&mut g, &vs);
        (g, vs, out)
    };
    let (g, vs, out) = eval(&inputs);
    let shape = g.value(out).raw_dim();
    let r = Array2::from_shape_fn(shape, |_| rng.random_range(-1.0..1.0));
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
        for idx in 0..inputs[k].len() {
            let (i, j) = (idx / inputs[k].ncols(), idx % inputs[k].ncols());
            let mut xp = inputs.clone();
            xp[k][[i, j]] += h;
            let mut xm = inputs.clone();
            xm[k][[i, j]] -= h;
            let fd = (objective(&xp) - objective(&xm)) / (2.0 * h);
            let a = analytic[[i, j]];
            assert!(
                (fd - a).abs() <= 1e-6 * (1.0 + fd.abs()),
                "input {k} entry ({i}, {j}): finite difference {fd} vs backward {a}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn matmul_and_bias(n in 1usize..5, k in 1usize..5, m in 1usize..5, seed in any::<u64>()) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let ins = vec![rand_mat(&mut rng, n, k), rand_mat(&mut rng, k, m), rand_mat(&mut rng, 1, m)];
        check(ins, seed, |g, v| {
            let z = g.matmul(v[0], v[1]).unwrap();
            g.add_bias(z, v[2]).unwrap()
        });
    }

    #[test]
    fn elementwise_arithmetic(n in 1usize..5, m in 1usize..5, seed in any::<u64>(), c in -2.0f64..2.0) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let ins = vec![rand_mat(&mut rng, n, m), rand_mat(&mut rng, n, m)];
        check(ins.clone(), seed, |g, v| g.add(v[0], v[1]).unwrap());
        check(ins.clone(), seed, |g, v| g.sub(v[0], v[1]).unwrap());
        check(ins.clone(), seed, |g, v| g.mul(v[0], v[1]).unwrap());
        check(ins.clone(), seed, |g, v| g.scale(v[0], c).unwrap());
        check(ins.clone(), seed, |g, v| g.add_scalar(v[1], c).unwrap());
        // A variable used twice accumulates both contributions: d(a ⊙ a) = 2a.
        check(ins, seed, |g, v| g.mul(v[0], v[0]).unwrap());
    }

    #[test]
    fn concat_and_reductions(n in 1usize..5, a in 1usize..4, b in 1usize..4, seed in any::<u64>()) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let ins = vec![rand_mat(&mut rng, n, a), rand_mat(&mut rng, n, b), rand_mat(&mut rng, n, 1)];
        check(ins.clone(), seed, |g, v| g.concat_cols(&[v[0], v[2], v[1]]).unwrap());
        check(ins.clone(), seed, |g, v| g.sum(v[0]).unwrap());
        check(ins.clone(), seed, |g, v| g.mean(v[1]).unwrap());
        let ins2 = vec![ins[0].clone(), rand_mat(&mut rng, n, a)];
        check(ins2, seed, |g, v| g.mse(v[0], v[1]).unwrap());
    }

    #[test]
    fn activations_and_trig(n in 1usize..5, m in 1usize..5, seed in any::<u64>()) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let ins = vec![rand_mat(&mut rng, n, m)];
        for act in Activation::ALL {
            check(ins.clone(), seed, |g, v| g.activate(v[0], act).unwrap());
        }
        check(ins.clone(), seed, |g, v| g.sin(v[0]).unwrap());
        check(ins, seed, |g, v| g.cos(v[0]).unwrap());
    }

    #[test]
    fn composite_time_features_network(n in 1usize..4, d in 1usize..3, h in 1usize..4, seed in any::<u64>()) {
        // [x, sin(tω), cos(tω)] → linear → SiLU → linear, then MSE to a target: broadcasting,
        // concat, reuse of `a` by sin and cos, and a scalar output all at once.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let ins = vec![
            rand_mat(&mut rng, n, d), rand_mat(&mut rng, n, 1), rand_mat(&mut rng, 1, 2),
            rand_mat(&mut rng, d + 4, h), rand_mat(&mut rng, 1, h), rand_mat(&mut rng, h, d),
            rand_mat(&mut rng, n, d),
        ];
        check(ins, seed, |g, v| {
            let a = g.matmul(v[1], v[2]).unwrap();
            let (s, c) = (g.sin(a).unwrap(), g.cos(a).unwrap());
            let inp = g.concat_cols(&[v[0], s, c]).unwrap();
            let z = g.matmul(inp, v[3]).unwrap();
            let z = g.add_bias(z, v[4]).unwrap();
            let hdn = g.activate(z, Activation::Silu).unwrap();
            let out = g.matmul(hdn, v[5]).unwrap();
            g.mse(out, v[6]).unwrap()
        });
    }
}

#[test]
fn shape_errors_are_errors_not_panics() {
    let mut g = Graph::<f64>::new();
    let a = g.leaf(Array2::zeros((2, 3)));
    let b = g.leaf(Array2::zeros((2, 3)));
    let c = g.leaf(Array2::zeros((3, 1)));
    assert!(g.matmul(a, b).unwrap_err().to_string().contains("matmul"));
    assert!(g.add_bias(a, b).unwrap_err().to_string().contains("bias"));
    assert!(g.add(a, c).is_err());
    assert!(g.concat_cols(&[a, c]).is_err());
    assert!(g.backward(a).unwrap_err().to_string().contains("(1, 1)"));
    assert!(g.sum(Var(99)).is_err());
    let e = g.leaf(Array2::zeros((0, 2)));
    assert!(g.mean(e).is_err());
}
