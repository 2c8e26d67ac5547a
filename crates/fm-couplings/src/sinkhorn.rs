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
    let mut lse = vec![0.0; n.max(m)];
    let mut ker = Kernel::new(n, m, parallel);
    let mut stage_e = f64::NAN;
    // One Sinkhorn iteration at regularisation `e`, on the precomputed stabilised kernel
    // K_ij = exp((f_i + g_j − C_ij) / e) with scalings u, v (the plan is diag(u) K diag(v)):
    // returns the column error of the plan after the row update, then applies the column
    // update unless that error is at most `stop` or this is the `last` iteration (so the
    // returned plan has exactly that error). Exponentials are recomputed only when a scaling
    // leaves [1e-50, 1e50] (absorbed into f, g), when ε changes, or to rescue an underflow.
    let iterate = |e: f64, f: &mut [f64], g: &mut [f64], stop: f64, last: bool| -> f64 {
        if e != stage_e {
            if stage_e.is_finite() && e * 2.0 == stage_e {
                // Halving ε: exp((f' + g' − C) / (e/2)) = (u_i K_ij v_j)², no exponentials.
                ker.square(f, g, stage_e);
            } else {
                if stage_e.is_finite() {
                    ker.absorb(f, g, stage_e);
                }
                ker.rebuild(c, f, g, e);
            }
            stage_e = e;
        }
        if !ker.row_update(a) {
            // Some row of K·v underflowed: absorb, update f in the log domain, rebuild.
            ker.absorb(f, g, e);
            soft_min(c, m, g, e, f, parallel);
            for (fi, la) in f.iter_mut().zip(&ln_a) {
                *fi += e * la;
            }
            ker.rebuild(c, f, g, e);
        }
        let error = ker.column_sums(b);
        let update = !(last || error <= stop);
        if update && !ker.column_update(b) {
            ker.absorb(f, g, e);
            soft_min(ct, n, f, e, &mut lse[..m], parallel);
            for ((gj, sj), lb) in g.iter_mut().zip(&lse[..m]).zip(&ln_b) {
                *gj = e * lb + sj;
            }
            ker.rebuild(c, f, g, e);
        }
        if ker.needs_absorbing() {
            ker.absorb(f, g, e);
            ker.rebuild(c, f, g, e);
        }
        error
    };
    let (iterations, error) = run_schedule(params, eps, cost_hi - cost_lo, &mut f, &mut g, iterate);
    if stage_e.is_finite() {
        ker.absorb(&mut f, &mut g, stage_e);
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

/// [`sinkhorn`] by the plain log-domain iteration: two log-sum-exp passes over the whole
/// matrix per iteration (one exponential per entry and half-iteration), same parameters, same
/// stopping rule, same result up to rounding. Kept as a reference for tests and as the
/// baseline of the benches; [`sinkhorn`] is the faster one.
///
/// ```
/// use ndarray::array;
/// use fm_couplings::{sinkhorn_log_domain, SinkhornParams};
/// let cost = array![[0.0, 1.0], [1.0, 0.0]];
/// let (a, b) = (array![0.5, 0.5], array![0.5, 0.5]);
/// let out = sinkhorn_log_domain(cost.view(), a.view(), b.view(), &SinkhornParams::with_epsilon(0.1)).unwrap();
/// assert!(out.converged);
/// ```
pub fn sinkhorn_log_domain(
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
    let iterate = |e: f64, f: &mut [f64], g: &mut [f64], stop: f64, last: bool| -> f64 {
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
    let (iterations, error) = run_schedule(params, eps, cost_hi - cost_lo, &mut f, &mut g, iterate);
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

/// The stabilised Gibbs kernel `K_ij = exp((f_i + g_j − C_ij) / ε)` of one ε, with the
/// scalings `u`, `v` of the Sinkhorn iterations (Schmitzer 2019, "Stabilized sparse scaling
/// algorithms for entropy regularized transport problems"): the plan is `u_i K_ij v_j`.
struct Kernel {
    n: usize,
    m: usize,
    parallel: bool,
    k: Vec<f64>,
    u: Vec<f64>,
    v: Vec<f64>,
    kv: Vec<f64>,
    ktu: Vec<f64>,
}

/// Scalings outside `[1 / ABSORB, ABSORB]` are absorbed into the potentials.
const ABSORB: f64 = 1e50;
/// Column block of the parallel `Kᵀu` product.
const COL_BLOCK: usize = 256;

impl Kernel {
    fn new(n: usize, m: usize, parallel: bool) -> Self {
        Self {
            n,
            m,
            parallel,
            k: vec![0.0; n * m],
            u: vec![1.0; n],
            v: vec![1.0; m],
            kv: vec![0.0; n],
            ktu: vec![0.0; m],
        }
    }

    /// `K_ij = exp((f_i + g_j − C_ij) / e)`, `u = v = 1`.
    fn rebuild(&mut self, c: &[f64], f: &[f64], g: &[f64], e: f64) {
        let m = self.m;
        let inv = 1.0 / e;
        let fill = |i: usize, row: &mut [f64]| {
            let ci = &c[i * m..(i + 1) * m];
            for ((kij, &cij), &gj) in row.iter_mut().zip(ci).zip(g) {
                *kij = ((f[i] + gj - cij) * inv).exp();
            }
        };
        if self.parallel {
            self.k
                .par_chunks_mut(m)
                .enumerate()
                .for_each(|(i, r)| fill(i, r));
        } else {
            self.k
                .chunks_mut(m)
                .enumerate()
                .for_each(|(i, r)| fill(i, r));
        }
        self.u.fill(1.0);
        self.v.fill(1.0);
    }

    /// Moves from `e` to `e / 2`: absorbs the scalings into the potentials and replaces the
    /// kernel by `(u_i K_ij v_j)²`, which is the kernel of the new potentials at `e / 2`.
    fn square(&mut self, f: &mut [f64], g: &mut [f64], e: f64) {
        let m = self.m;
        let (u, v) = (&self.u, &self.v);
        let sq = |i: usize, row: &mut [f64]| {
            let ui = u[i];
            for (kij, &vj) in row.iter_mut().zip(v) {
                let p = ui * *kij * vj;
                *kij = p * p;
            }
        };
        if self.parallel {
            self.k
                .par_chunks_mut(m)
                .enumerate()
                .for_each(|(i, r)| sq(i, r));
        } else {
            self.k.chunks_mut(m).enumerate().for_each(|(i, r)| sq(i, r));
        }
        self.absorb(f, g, e);
    }

    /// `f += e log u`, `g += e log v`, `u = v = 1` (the kernel must be rebuilt after this).
    fn absorb(&mut self, f: &mut [f64], g: &mut [f64], e: f64) {
        for (fi, ui) in f.iter_mut().zip(&mut self.u) {
            *fi += e * ui.ln();
            *ui = 1.0;
        }
        for (gj, vj) in g.iter_mut().zip(&mut self.v) {
            *gj += e * vj.ln();
            *vj = 1.0;
        }
    }

    /// `u_i = a_i / (K v)_i`; false (nothing changed) when some `(K v)_i` underflows.
    fn row_update(&mut self, a: ArrayView1<f64>) -> bool {
        let m = self.m;
        let v = &self.v;
        let dot = |row: &[f64]| row.iter().zip(v).map(|(k, v)| k * v).sum::<f64>();
        if self.parallel {
            self.kv
                .par_iter_mut()
                .zip(self.k.par_chunks(m))
                .for_each(|(o, row)| *o = dot(row));
        } else {
            for (o, row) in self.kv.iter_mut().zip(self.k.chunks(m)) {
                *o = dot(row);
            }
        }
        if !self.kv.iter().all(|&x| x > 1e-290 && x.is_finite()) {
            return false;
        }
        for ((ui, &kv), &ai) in self.u.iter_mut().zip(&self.kv).zip(a.iter()) {
            *ui = ai / kv;
        }
        true
    }

    /// Computes `Kᵀ u` and returns the column error `Σ_j |v_j (Kᵀu)_j − b_j|`.
    fn column_sums(&mut self, b: ArrayView1<f64>) -> f64 {
        let (n, m) = (self.n, self.m);
        let (k, u) = (&self.k, &self.u);
        let block = |bi: usize, acc: &mut [f64]| {
            let j0 = bi * COL_BLOCK;
            acc.fill(0.0);
            for i in 0..n {
                let row = &k[i * m + j0..i * m + j0 + acc.len()];
                let ui = u[i];
                for (s, &kij) in acc.iter_mut().zip(row) {
                    *s += kij * ui;
                }
            }
        };
        if self.parallel {
            self.ktu
                .par_chunks_mut(COL_BLOCK)
                .enumerate()
                .for_each(|(bi, acc)| block(bi, acc));
        } else {
            self.ktu
                .chunks_mut(COL_BLOCK)
                .enumerate()
                .for_each(|(bi, acc)| block(bi, acc));
        }
        self.ktu
            .iter()
            .zip(&self.v)
            .zip(b.iter())
            .map(|((t, v), bj)| (v * t - bj).abs())
            .sum()
    }

    /// `v_j = b_j / (Kᵀ u)_j` from the last [`Self::column_sums`]; false (nothing changed)
    /// when some `(Kᵀ u)_j` underflows.
    fn column_update(&mut self, b: ArrayView1<f64>) -> bool {
        if !self.ktu.iter().all(|&x| x > 1e-290 && x.is_finite()) {
            return false;
        }
        for ((vj, &t), &bj) in self.v.iter_mut().zip(&self.ktu).zip(b.iter()) {
            *vj = bj / t;
        }
        true
    }

    /// Whether a scaling has left `[1 / ABSORB, ABSORB]`.
    fn needs_absorbing(&self) -> bool {
        self.u
            .iter()
            .chain(&self.v)
            .any(|&s| !(s < ABSORB && s > 1.0 / ABSORB))
    }
}

/// The iteration schedule both solvers share. With `eps_scaling`, ε is annealed from half the
/// cost spread down to `eps`, halving per stage, with at most `ANNEAL_ITERS` iterations per stage
/// (so the final stage starts from nearly optimal potentials); then up to `max_iter` iterations
/// at `eps` until the error is at most `tol`. `iterate(e, f, g, stop, last)` runs one iteration
/// and returns its marginal error. Returns the iteration count (stages included) and the last
/// error.
fn run_schedule(
    params: &SinkhornParams,
    eps: f64,
    spread: f64,
    f: &mut [f64],
    g: &mut [f64],
    mut iterate: impl FnMut(f64, &mut [f64], &mut [f64], f64, bool) -> f64,
) -> (usize, f64) {
    let mut iterations = 0;
    if params.eps_scaling {
        let mut e = spread / 2.0;
        while e > eps {
            for _ in 0..ANNEAL_ITERS {
                iterations += 1;
                if iterate(e, f, g, -1.0, false) <= ANNEAL_TOL {
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
        error = iterate(eps, f, g, params.tol, last);
        if error <= params.tol || last {
            break;
        }
    }
    (iterations, error)
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
