//! Entropic optimal transport by log-domain Sinkhorn iterations.
use crate::CouplingError;
use crate::cost::check_cost;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use rayon::prelude::*;

/// Above this many matrix entries the log-sum-exp passes run in parallel with rayon.
const PARALLEL_ENTRIES: usize = 1 << 15;

/// Iterations per annealing stage of the ε-scaling, at most.
const ANNEAL_ITERS: usize = 10;
/// An annealing stage ends early when its L1 marginal error is below this.
const ANNEAL_TOL: f64 = 1e-3;

/// Parameters of [`sinkhorn`]. Check them with [`SinkhornParams::check`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SinkhornParams {
    /// The entropic regularisation `ε > 0`, in the units of the cost. SB-CFM (Tong et al. 2023,
    /// "Improving and generalizing flow-based generative models with minibatch optimal transport")
    /// uses `ε = 2σ²` on the raw squared Euclidean cost.
    pub epsilon: f64,
    /// The largest number of iterations at `epsilon` (one row and one column update each).
    /// Default 1000.
    pub max_iter: usize,
    /// Stop when the L1 marginal error `Σ_j |Σ_i π_ij − b_j|` is below this. Default `1e-9`.
    pub tol: f64,
    /// ε-scaling (default `true`): before iterating at `epsilon`, anneal from half the cost
    /// spread down to it, halving each stage, with at most 10 iterations per stage (Schmitzer
    /// 2019, "Stabilized sparse scaling algorithms for entropy regularized transport problems").
    /// The final stage starts from nearly optimal potentials, which matters for small `ε`,
    /// where plain Sinkhorn converges slowly. The stages count in `iterations` but not
    /// against `max_iter`.
    pub eps_scaling: bool,
}

impl Default for SinkhornParams {
    fn default() -> Self {
        Self {
            epsilon: 0.05,
            max_iter: 1000,
            tol: 1e-9,
            eps_scaling: true,
        }
    }
}

impl SinkhornParams {
    /// The default parameters with regularisation `epsilon`.
    pub fn with_epsilon(epsilon: f64) -> Self {
        Self {
            epsilon,
            ..Self::default()
        }
    }

    /// Checks `ε > 0` finite, `max_iter ≥ 1` and `tol ≥ 0` finite.
    pub fn check(&self) -> Result<(), CouplingError> {
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            return Err(CouplingError::InvalidParameter {
                name: "epsilon",
                value: self.epsilon.to_string(),
                reason: "the regularisation must be positive and finite",
            });
        }
        if self.max_iter == 0 {
            return Err(CouplingError::InvalidParameter {
                name: "max_iter",
                value: "0".into(),
                reason: "at least one iteration is needed",
            });
        }
        if !(self.tol >= 0.0 && self.tol.is_finite()) {
            return Err(CouplingError::InvalidParameter {
                name: "tol",
                value: self.tol.to_string(),
                reason: "the tolerance must be non-negative and finite",
            });
        }
        Ok(())
    }
}

/// The result of [`sinkhorn`]: the plan, its potentials and how far it is from the marginals.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkhornPlan {
    /// The plan `π_ij = exp((f_i + g_j − C_ij) / ε)`, shape `(n, m)`.
    pub plan: Array2<f64>,
    /// Row potentials `f`.
    pub f: Array1<f64>,
    /// Column potentials `g`.
    pub g: Array1<f64>,
    /// Iterations run.
    pub iterations: usize,
    /// The L1 marginal error of `plan`: its rows sum to `a` (up to rounding) and
    /// `error = Σ_j |Σ_i π_ij − b_j|`.
    pub error: f64,
    /// Whether `error ≤ tol` was reached within `max_iter` iterations.
    pub converged: bool,
}

/// Entropic OT with uniform marginals `a = 1/n`, `b = 1/m`; see [`sinkhorn`].
///
/// ```
/// use ndarray::array;
/// use fm_couplings::{sinkhorn_uniform, SinkhornParams};
/// let cost = array![[0.0, 1.0], [1.0, 0.0]];
/// let out = sinkhorn_uniform(cost.view(), &SinkhornParams::with_epsilon(0.01)).unwrap();
/// assert!(out.converged && out.error < 1e-9);
/// assert!((out.plan[[0, 0]] - 0.5).abs() < 1e-9 && out.plan[[0, 1]] < 1e-40);
/// ```
pub fn sinkhorn_uniform(
    cost: ArrayView2<f64>,
    params: &SinkhornParams,
) -> Result<SinkhornPlan, CouplingError> {
    let (n, m) = cost.dim();
    let a = Array1::from_elem(n, 1.0 / n.max(1) as f64);
    let b = Array1::from_elem(m, 1.0 / m.max(1) as f64);
    sinkhorn(cost, a.view(), b.view(), params)
}

/// Entropic optimal transport (Cuturi 2013, "Sinkhorn distances"), stabilised in the log domain:
/// the plan minimising `⟨π, C⟩ − ε H(π)` with row sums `a` and column sums `b`.
///
/// Iterates on potentials, never on `exp(−C/ε)`, so no entry under- or overflows for tiny `ε`:
///
/// ```text
/// f_i = ε log a_i − ε log Σ_j exp((g_j − C_ij) / ε)
/// g_j = ε log b_j − ε log Σ_i exp((f_i − C_ij) / ε)
/// π_ij = exp((f_i + g_j − C_ij) / ε)
/// ```
///
/// each log-sum-exp shifted by its maximum. After every row update the column marginal error is
/// measured (at no extra cost: it falls out of the next column update); the loop stops when it is
/// at most `tol`, or after `max_iter` iterations with `converged = false` (not an error: the plan
/// and its `error` are returned). `a` and `b` must be positive, finite, of lengths `n` and `m`,
/// with equal sums (relative `1e-9`).
pub fn sinkhorn(
    cost: ArrayView2<f64>,
    a: ArrayView1<f64>,
    b: ArrayView1<f64>,
    params: &SinkhornParams,
) -> Result<SinkhornPlan, CouplingError> {
    params.check()?;
    let (cost_lo, cost_hi) = check_cost(cost, false)?;
    let (n, m) = cost.dim();
    check_marginal("a", a, n)?;
    check_marginal("b", b, m)?;
    let (sa, sb) = (a.sum(), b.sum());
    if (sa - sb).abs() > 1e-9 * sa.max(sb) {
        return Err(CouplingError::InvalidParameter {
            name: "b",
            value: format!("sum {sb}"),
            reason: "the marginals must have equal mass",
        });
    }
    let eps = params.epsilon;
    let c = cost.as_standard_layout().into_owned();
    let ct = cost.t().as_standard_layout().into_owned();
    let c = c.as_slice().expect("contiguous");
    let ct = ct.as_slice().expect("contiguous");
    let ln_a: Vec<f64> = a.iter().map(|x| x.ln()).collect();
    let ln_b: Vec<f64> = b.iter().map(|x| x.ln()).collect();
    let parallel = n * m >= PARALLEL_ENTRIES;
    let mut f = vec![0.0; n];
    let mut g = vec![0.0; m];
    let mut lse_cols = vec![0.0; m];
    // One Sinkhorn iteration at regularisation `e`: returns the column error of the plan after
    // the row update, then applies the column update unless that error is at most `stop` or
    // this is the `last` iteration (so the returned plan has exactly that error).
    let mut iterate = |e: f64, f: &mut [f64], g: &mut [f64], stop: f64, last: bool| -> f64 {
        soft_min(c, m, g, e, f, parallel);
        for (fi, la) in f.iter_mut().zip(&ln_a) {
            *fi += e * la;
        }
        // Column sums of the current plan: exp((g_j - S_j) / e) with
        // S_j = -e log Σ_i exp((f_i - C_ij)/e).
        soft_min(ct, n, f, e, &mut lse_cols, parallel);
        let error = g
            .iter()
            .zip(&lse_cols)
            .zip(b.iter())
            .map(|((gj, sj), bj)| (((gj - sj) / e).exp() - bj).abs())
            .sum();
        if !(last || error <= stop) {
            for ((gj, sj), lb) in g.iter_mut().zip(&lse_cols).zip(&ln_b) {
                *gj = e * lb + sj;
            }
        }
        error
    };
    let mut iterations = 0;
    // ε-scaling: anneal from the cost spread down to ε, a few iterations per stage, so the
    // final stage starts from nearly optimal potentials.
    if params.eps_scaling {
        let spread = cost_hi - cost_lo;
        let mut e = spread / 2.0;
        while e > eps {
            for _ in 0..ANNEAL_ITERS {
                iterations += 1;
                if iterate(e, &mut f, &mut g, -1.0, false) <= ANNEAL_TOL {
                    break;
                }
            }
            e /= 2.0;
        }
    }
    let mut error = f64::INFINITY;
    for it in 1..=params.max_iter {
        iterations += 1;
        let last = it == params.max_iter;
        error = iterate(eps, &mut f, &mut g, params.tol, last);
        if error <= params.tol || last {
            break;
        }
    }
    let mut plan = Array2::zeros((n, m));
    {
        let p = plan.as_slice_mut().expect("contiguous");
        let fill = |i: usize, row: &mut [f64]| {
            let ci = &c[i * m..(i + 1) * m];
            for j in 0..m {
                row[j] = ((f[i] + g[j] - ci[j]) / eps).exp();
            }
        };
        if parallel {
            p.par_chunks_mut(m)
                .enumerate()
                .for_each(|(i, r)| fill(i, r));
        } else {
            p.chunks_mut(m).enumerate().for_each(|(i, r)| fill(i, r));
        }
    }
    Ok(SinkhornPlan {
        plan,
        f: Array1::from(f),
        g: Array1::from(g),
        iterations,
        converged: error <= params.tol,
        error,
    })
}

/// `out_i = −ε log Σ_k exp((p_k − M_ik) / ε)` for the row-major matrix `M` with `len` columns,
/// computed with the max-shift so it is finite for any `ε > 0`.
fn soft_min(mat: &[f64], len: usize, p: &[f64], eps: f64, out: &mut [f64], parallel: bool) {
    let inv = 1.0 / eps;
    let one = |i: usize, o: &mut f64| {
        let row = &mat[i * len..(i + 1) * len];
        let mut mx = f64::NEG_INFINITY;
        for k in 0..len {
            mx = mx.max(p[k] - row[k]);
        }
        let mut s = 0.0;
        for k in 0..len {
            s += ((p[k] - row[k] - mx) * inv).exp();
        }
        *o = -(mx + eps * s.ln());
    };
    if parallel {
        out.par_iter_mut().enumerate().for_each(|(i, o)| one(i, o));
    } else {
        out.iter_mut().enumerate().for_each(|(i, o)| one(i, o));
    }
}

fn check_marginal(what: &'static str, w: ArrayView1<f64>, len: usize) -> Result<(), CouplingError> {
    if w.len() != len {
        return Err(CouplingError::ShapeMismatch {
            what: what.into(),
            expected: format!("length {len}"),
            found: format!("length {}", w.len()),
        });
    }
    if let Some(bad) = w.iter().find(|x| !(**x > 0.0 && x.is_finite())) {
        return Err(CouplingError::InvalidParameter {
            name: what,
            value: bad.to_string(),
            reason: "marginal weights must be positive and finite",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn rejects_bad_parameters_and_marginals() {
        let c = array![[0.0, 1.0], [1.0, 0.0]];
        for eps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(sinkhorn_uniform(c.view(), &SinkhornParams::with_epsilon(eps)).is_err());
        }
        let p = SinkhornParams::default();
        assert!(
            sinkhorn(
                c.view(),
                array![0.5, 0.5].view(),
                array![0.2, 0.2].view(),
                &p
            )
            .is_err()
        );
        assert!(sinkhorn(c.view(), array![1.0].view(), array![0.5, 0.5].view(), &p).is_err());
        assert!(
            sinkhorn(
                c.view(),
                array![1.0, 0.0].view(),
                array![0.5, 0.5].view(),
                &p
            )
            .is_err()
        );
        let zero_iter = SinkhornParams { max_iter: 0, ..p };
        assert!(sinkhorn_uniform(c.view(), &zero_iter).is_err());
    }

    #[test]
    fn huge_epsilon_gives_the_product_plan() {
        let c = array![[0.0, 1.0, 4.0], [1.0, 0.0, 9.0]];
        let out = sinkhorn_uniform(c.view(), &SinkhornParams::with_epsilon(1e9)).unwrap();
        for v in out.plan.iter() {
            assert!((v - 1.0 / 6.0).abs() < 1e-8);
        }
    }
}
