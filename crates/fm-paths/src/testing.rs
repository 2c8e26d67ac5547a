//! The continuity-equation kit: property tests every [`GaussianPath`] must pass
//! (feature `testing`).
//!
//! A conditional path `p_t(x | z)` with field `u_t(x | z)` is valid only if it satisfies the
//! continuity equation `∂_t p + div(p u) = 0`, i.e. (dividing by `p`)
//!
//! ```text
//! r(t, x) = ∂_t log p_t(x) + div u_t(x) + u_t(x) · ∇_x log p_t(x) = 0.
//! ```
//!
//! [`check_path`] runs proptest over random `t` in `[t_min, t_max] ⊂ (0, 1)`, random `x`, `z` and
//! dimensions `1..=max_dim`, and checks, each by an independent computation (central finite
//! differences of the path's own `log_density`, `mean`, `std` and samples):
//!
//! * [`check_boundary`]: `μ_t`, `σ_t` at (and near) `t = 0` and `t = 1` are the declared
//!   [`Boundary`](crate::Boundary);
//! * [`check_derivatives`]: `d_mean`, `d_std` against finite differences of `mean`, `std`;
//! * [`check_sample_velocity`]: `dx_t/dt` of the sampled `x_t` (fixed `x_0, x_1, eps`) against
//!   `u_t`, and `conditional_velocity(x_t)` against the sampled `u_t`;
//! * [`check_score`]: `score` against the finite-difference gradient of `log_density`;
//! * [`check_continuity`]: the residual `r` of the conditional path;
//! * [`check_marginal_continuity`]: the residual `r` of the exact marginal mixture
//!   ([`EmpiricalMarginal`]) over three random conditions per side.
//!
//! Density-based checks skip cases where `σ_t = 0` (a deterministic path has no density; its
//! continuity equation is `dx_t/dt = u_t`, which `check_sample_velocity` covers).
//!
//! ```
//! use fm_paths::testing::{check_path, CheckConfig};
//! let path = fm_paths::LipmanPath::new(0.01).unwrap();
//! check_path(&path, &CheckConfig { cases: 4, ..CheckConfig::default() }).unwrap();
//! ```

use crate::{Conditioning, EmpiricalMarginal, GaussianPath, PathError};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, concatenate};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};

/// Settings of the kit. `Default`: 32 cases per check, `t ∈ [0.05, 0.95]`, `d ∈ 1..=8`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckConfig {
    /// Proptest cases per check.
    pub cases: u32,
    /// The smallest time tested (> 0).
    pub t_min: f64,
    /// The largest time tested (< 1).
    pub t_max: f64,
    /// The largest dimension tested (dimensions are drawn from `1..=max_dim`).
    pub max_dim: usize,
    /// The seed of the proptest RNG (the kit is deterministic for a given seed).
    pub seed: u64,
}

impl Default for CheckConfig {
    fn default() -> Self {
        Self {
            cases: 32,
            t_min: 0.05,
            t_max: 0.95,
            max_dim: 8,
            seed: 0x5eed_f10e,
        }
    }
}

/// Runs every check of the kit on `path`; the first failure is returned as
/// [`PathError::CheckFailed`] naming the check and the (shrunk) failing input.
pub fn check_path<P: GaussianPath + ?Sized>(
    path: &P,
    config: &CheckConfig,
) -> Result<(), PathError> {
    check_boundary(path, config)?;
    check_derivatives(path, config)?;
    check_sample_velocity(path, config)?;
    check_score(path, config)?;
    check_continuity(path, config)?;
    check_marginal_continuity(path, config)
}

/// One random case: a dimension, a time, three conditions per side, a direction `xi`,
/// mixture weights and a component index.
#[derive(Debug, Clone)]
struct Case {
    d: usize,
    t: f64,
    x_0: Array2<f64>,
    x_1: Array2<f64>,
    xi: Array2<f64>,
    w_0: Array1<f64>,
    w_1: Array1<f64>,
    k: usize,
}

const ROWS: usize = 3;

fn cases(config: &CheckConfig) -> impl Strategy<Value = Case> + use<> {
    let (t_min, t_max) = (config.t_min, config.t_max);
    (1..=config.max_dim.max(1))
        .prop_flat_map(move |d| {
            (
                Just(d),
                t_min..=t_max,
                vec(-2.0f64..2.0, ROWS * d),
                vec(-2.0f64..2.0, ROWS * d),
                vec(-2.0f64..2.0, ROWS * d),
                vec(0.1f64..1.0, 2 * ROWS),
                0usize..ROWS * ROWS,
            )
        })
        .prop_map(|(d, t, a, b, xi, w, k)| Case {
            d,
            t,
            x_0: Array2::from_shape_vec((ROWS, d), a).expect("length is ROWS·d"),
            x_1: Array2::from_shape_vec((ROWS, d), b).expect("length is ROWS·d"),
            xi: Array2::from_shape_vec((ROWS, d), xi).expect("length is ROWS·d"),
            w_0: Array1::from(w[..ROWS].to_vec()),
            w_1: Array1::from(w[ROWS..].to_vec()),
            k,
        })
}

/// Runs `body` on `config.cases` random cases; failures become [`PathError::CheckFailed`].
fn run(
    check: &'static str,
    config: &CheckConfig,
    body: impl Fn(&Case) -> Result<(), String>,
) -> Result<(), PathError> {
    if !(config.t_min > 0.0 && config.t_min <= config.t_max && config.t_max < 1.0) {
        return Err(PathError::param(
            "t_min/t_max",
            config.t_min,
            "the kit needs 0 < t_min <= t_max < 1",
        ));
    }
    let proptest_config = Config {
        cases: config.cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    };
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&config.seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed);
    let mut runner = TestRunner::new_with_rng(proptest_config, rng);
    runner
        .run(&cases(config), |case| {
            body(&case).map_err(TestCaseError::fail)
        })
        .map_err(|e| {
            let details = match e {
                TestError::Fail(reason, case) => format!("{reason}; failing input: {case:?}"),
                TestError::Abort(reason) => format!("aborted: {reason}"),
            };
            PathError::CheckFailed { check, details }
        })
}

fn err(e: PathError) -> String {
    format!("the path returned an error: {e}")
}

fn norm(v: impl IntoIterator<Item = f64>) -> f64 {
    v.into_iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// 100 times the rounding error of a central difference quotient of a function of size `f`
/// with step `h` (`ε |f| / h`, ε the f64 machine epsilon).
fn rounding(f: f64, h: f64) -> f64 {
    100.0 * f64::EPSILON * (1.0 + f.abs()) / h
}

/// Row `i` of `a` as a one-row matrix.
fn row(a: &Array2<f64>, i: usize) -> ArrayView2<'_, f64> {
    a.row(i).insert_axis(Axis(0))
}

fn filled(n: usize, t: f64) -> Array1<f64> {
    Array1::from_elem(n, t)
}

/// `a` stacked `k` times along the rows.
fn tile(a: ArrayView2<f64>, k: usize) -> Array2<f64> {
    let views: Vec<_> = (0..k).map(|_| a).collect();
    concatenate(Axis(0), &views).expect("same widths")
}

/// `x` with `± h_i e_j` added to row `i`, stacked as blocks `(j, sign)`: row `(2j + s) n + i`.
fn perturbations(x: ArrayView2<f64>, h: ArrayView1<f64>) -> Array2<f64> {
    let (n, d) = x.dim();
    let mut out = tile(x, 2 * d);
    for j in 0..d {
        for (s, sign) in [(0, 1.0), (1, -1.0)] {
            for i in 0..n {
                out[[(2 * j + s) * n + i, j]] += sign * h[i];
            }
        }
    }
    out
}

/// Central differences `Σ_j` or per-`j` from values `f` at [`perturbations`]: returns the
/// `(n, d)` matrix of `(f_+[.., c(j)] - f_-[.., c(j)]) / (2 h_i)` where `c(j)` selects column `j`
/// of a vector-valued `f` or the scalar.
fn central(
    f_plus_minus: &Array2<f64>,
    n: usize,
    d: usize,
    h: ArrayView1<f64>,
    column: bool,
) -> Array2<f64> {
    Array2::from_shape_fn((n, d), |(i, j)| {
        let c = if column { j } else { 0 };
        let p = f_plus_minus[[(2 * j) * n + i, c]];
        let m = f_plus_minus[[(2 * j + 1) * n + i, c]];
        (p - m) / (2.0 * h[i])
    })
}

/// The time step of the central differences in `t`.
fn time_step(t: f64) -> f64 {
    1e-5f64.min(0.5 * t).min(0.5 * (1.0 - t))
}

/// `μ_t` and `σ_t` at `t = 0` and `t = 1` equal the declared [`Boundary`](crate::Boundary)
/// (within its tolerance plus `1e-9` relative rounding), and at `t = 1e-12`, `1 - 1e-12` they
/// are within `1e-3` of it (this catches a jump at the ends, not a slow approach such as `t^0.1`).
pub fn check_boundary<P: GaussianPath + ?Sized>(
    path: &P,
    config: &CheckConfig,
) -> Result<(), PathError> {
    let b = path.boundary();
    run("boundary", config, |c| {
        for (t, end, slack) in [
            (0.0, b.start, 1e-9),
            (1.0, b.end, 1e-9),
            (1e-12, b.start, 1e-3),
            (1.0 - 1e-12, b.end, 1e-3),
        ] {
            let tv = filled(ROWS, t);
            let mu = path
                .mean(c.x_0.view(), c.x_1.view(), tv.view())
                .map_err(err)?;
            let sigma = path.std(tv.view()).map_err(err)?;
            for i in 0..ROWS {
                for j in 0..c.d {
                    let (a, z) = (c.x_0[[i, j]], c.x_1[[i, j]]);
                    let want = end.x_0 * a + end.x_1 * z;
                    let tol = end.tol * (a.abs() + z.abs()) + slack * (1.0 + a.abs() + z.abs());
                    if (mu[[i, j]] - want).abs() > tol {
                        return Err(format!(
                            "mean at t = {t}: {} but the boundary says {want}",
                            mu[[i, j]]
                        ));
                    }
                }
                if (sigma[i] - end.std).abs() > end.tol + slack * (1.0 + end.std) {
                    return Err(format!(
                        "std at t = {t}: {} but the boundary says {}",
                        sigma[i], end.std
                    ));
                }
            }
        }
        Ok(())
    })
}

/// `d_mean` and `d_std` against central differences of `mean` and `std` in `t`.
///
/// Tolerance `1e-6 (|f'| + |f|)` plus rounding: the truncation error `h² |f'''| / 6` with
/// `h = 1e-5` is below `1e-8 |f'|` for every path here at `t ≥ 0.05` (the worst is the bridge's
/// `√(t(1-t))`, `|f'''| / |f'| ≈ t⁻²/... ≈ 300` at `t = 0.05`).
pub fn check_derivatives<P: GaussianPath + ?Sized>(
    path: &P,
    config: &CheckConfig,
) -> Result<(), PathError> {
    run("mean and std derivatives", config, |c| {
        let h = time_step(c.t);
        let at = |t: f64| {
            let tv = filled(ROWS, t);
            Ok::<_, String>((
                path.mean(c.x_0.view(), c.x_1.view(), tv.view())
                    .map_err(err)?,
                path.std(tv.view()).map_err(err)?,
            ))
        };
        let (mp, sp) = at(c.t + h)?;
        let (mm, sm) = at(c.t - h)?;
        let (m0, s0) = at(c.t)?;
        let tv = filled(ROWS, c.t);
        let dm = path
            .d_mean(c.x_0.view(), c.x_1.view(), tv.view())
            .map_err(err)?;
        let ds = path.d_std(tv.view()).map_err(err)?;
        for i in 0..ROWS {
            for j in 0..c.d {
                let fd = (mp[[i, j]] - mm[[i, j]]) / (2.0 * h);
                let tol = 1e-6 * (dm[[i, j]].abs() + m0[[i, j]].abs()) + rounding(m0[[i, j]], h);
                if (fd - dm[[i, j]]).abs() > tol {
                    return Err(format!(
                        "d_mean {} vs finite difference {fd} at t = {}",
                        dm[[i, j]],
                        c.t
                    ));
                }
            }
            let fd = (sp[i] - sm[i]) / (2.0 * h);
            let tol = 1e-6 * (ds[i].abs() + s0[i].abs()) + rounding(s0[i], h);
            if (fd - ds[i]).abs() > tol {
                return Err(format!(
                    "d_std {} vs finite difference {fd} at t = {}",
                    ds[i], c.t
                ));
            }
        }
        Ok(())
    })
}

/// With `x_0`, `x_1` and `eps` fixed, the central difference of the sampled `x_t` in `t`
/// equals the sampled `u_t` (the conditional flow really is generated by `u_t`), and
/// `conditional_velocity(x_t)` equals the sampled `u_t`.
///
/// Tolerance `1e-6 (|u| + |x_t|)` plus rounding (truncation `h²|x'''|/6 ≤ 1e-8 |x'|` at
/// `t ≥ 0.05`, as for [`check_derivatives`]); a field off by 1% misses it by four orders.
pub fn check_sample_velocity<P: GaussianPath + ?Sized>(
    path: &P,
    config: &CheckConfig,
) -> Result<(), PathError> {
    run("dx_t/dt = u_t", config, |c| {
        let h = time_step(c.t);
        let sample = |t: f64| {
            path.sample_with_noise(
                c.x_0.view(),
                c.x_1.view(),
                filled(ROWS, t).view(),
                c.xi.view(),
            )
            .map_err(err)
        };
        let (p, m, s) = (sample(c.t + h)?, sample(c.t - h)?, sample(c.t)?);
        let u = path
            .conditional_velocity(
                s.x_t.view(),
                c.x_0.view(),
                c.x_1.view(),
                filled(ROWS, c.t).view(),
            )
            .map_err(err)?;
        for i in 0..ROWS {
            let fd: Vec<f64> = (0..c.d)
                .map(|j| (p.x_t[[i, j]] - m.x_t[[i, j]]) / (2.0 * h))
                .collect();
            let ut = s.u_t.row(i);
            let scale = norm(ut.iter().copied()) + norm(s.x_t.row(i).iter().copied());
            let diff = norm(fd.iter().zip(ut).map(|(a, b)| a - b));
            if diff > 1e-6 * scale + rounding(scale, h) {
                return Err(format!(
                    "dx_t/dt = {fd:?} but u_t = {ut} at t = {} (|diff| = {diff:e})",
                    c.t
                ));
            }
            let diff = norm(u.row(i).iter().zip(ut).map(|(a, b)| a - b));
            if diff > 1e-9 * (1.0 + scale) {
                return Err(format!(
                    "conditional_velocity(x_t) = {} but the sampled u_t = {ut} at t = {}",
                    u.row(i),
                    c.t
                ));
            }
        }
        Ok(())
    })
}

/// Query points and their `σ_t`.
type Points = (Array2<f64>, Array1<f64>);
/// `log p(t, x)` of a batch.
type LogPFn<'a> = dyn Fn(f64, ArrayView2<f64>) -> Result<Array1<f64>, String> + 'a;
/// `u(t, x)` of a batch.
type FieldFn<'a> = dyn Fn(f64, ArrayView2<f64>) -> Result<Array2<f64>, String> + 'a;

/// Points `x = μ_t + σ_t xi` for the case's conditions, with `σ_t`; `None` if `σ_t = 0`.
fn points<P: GaussianPath + ?Sized>(path: &P, c: &Case) -> Result<Option<Points>, String> {
    let tv = filled(ROWS, c.t);
    let sigma = path.std(tv.view()).map_err(err)?;
    if sigma.iter().any(|&s| s <= 0.0) {
        return Ok(None);
    }
    let mu = path
        .mean(c.x_0.view(), c.x_1.view(), tv.view())
        .map_err(err)?;
    Ok(Some((
        &mu + &(&c.xi * &sigma.view().insert_axis(Axis(1))),
        sigma,
    )))
}

/// `score` against the central-difference gradient of `log_density` in `x` (step
/// `h = 1e-5 σ_t`). `log p` is quadratic in `x`, so the difference is exact up to rounding:
/// tolerance `1e-6 |score|` plus 100× the rounding error `ε |log p| / h`.
pub fn check_score<P: GaussianPath + ?Sized>(
    path: &P,
    config: &CheckConfig,
) -> Result<(), PathError> {
    run("score = ∇ log p", config, |c| {
        let Some((x, sigma)) = points(path, c)? else {
            return Ok(());
        };
        let h = sigma.mapv(|s| 1e-5 * s);
        let k = 2 * c.d;
        let (a, b) = (tile(c.x_0.view(), k), tile(c.x_1.view(), k));
        let tv = filled(ROWS * k, c.t);
        let xs = perturbations(x.view(), h.view());
        let lp = path
            .log_density(xs.view(), a.view(), b.view(), tv.view())
            .map_err(err)?;
        let grad = central(&lp.insert_axis(Axis(1)), ROWS, c.d, h.view(), false);
        let t3 = filled(ROWS, c.t);
        let score = path
            .score(x.view(), c.x_0.view(), c.x_1.view(), t3.view())
            .map_err(err)?;
        let lp0 = path
            .log_density(x.view(), c.x_0.view(), c.x_1.view(), t3.view())
            .map_err(err)?;
        for i in 0..ROWS {
            let diff = norm(score.row(i).iter().zip(grad.row(i)).map(|(a, b)| a - b));
            let tol =
                1e-6 * norm(score.row(i).iter().copied()) + c.d as f64 * rounding(lp0[i], h[i]);
            if diff > tol {
                return Err(format!(
                    "score {} vs finite-difference gradient {} at t = {}",
                    score.row(i),
                    grad.row(i),
                    c.t
                ));
            }
        }
        Ok(())
    })
}

/// The continuity residual `r = ∂_t log p + div u + u · ∇ log p` at given points, every term
/// by central differences of `log_p(t, x)` and `u(t, x)`; returns `(r, scale)` per row with
/// `scale = |∂_t log p| + |div u| + |u · ∇ log p|` and the rounding allowance.
fn residual(
    log_p: &LogPFn<'_>,
    u: &FieldFn<'_>,
    t: f64,
    x: ArrayView2<f64>,
    h_x: ArrayView1<f64>,
) -> Result<Vec<(f64, f64, f64)>, String> {
    let (n, d) = x.dim();
    let h_t = time_step(t);
    let dt = (&log_p(t + h_t, x)? - &log_p(t - h_t, x)?) / (2.0 * h_t);
    let xs = perturbations(x, h_x);
    let grad = central(&log_p(t, xs.view())?.insert_axis(Axis(1)), n, d, h_x, false);
    let jac_diag = central(&u(t, xs.view())?, n, d, h_x, true);
    let u0 = u(t, x)?;
    let lp0 = log_p(t, x)?;
    Ok((0..n)
        .map(|i| {
            let div: f64 = jac_diag.row(i).sum();
            let transport: f64 = u0.row(i).dot(&grad.row(i));
            let r = dt[i] + div + transport;
            let scale = dt[i].abs() + div.abs() + transport.abs();
            let u_size = norm(u0.row(i).iter().copied());
            let allowance = rounding(lp0[i], h_t)
                + d as f64 * (rounding(u_size, h_x[i]) + u_size * rounding(lp0[i], h_x[i]));
            (r, scale, allowance)
        })
        .collect())
}

/// The continuity residual of the conditional path at `x = μ_t + σ_t xi`.
///
/// Tolerance `1e-5 · (|∂_t log p| + |div u| + |u·∇ log p|)` plus 100× the rounding of each
/// difference quotient. Steps: `h_t = 1e-5`, `h_x = 1e-5 σ_t`. In `x` the quotients are exact
/// up to rounding (`log p` is quadratic, `u` affine); in `t` the truncation `h_t² |∂_t³ log p| / 6`
/// is below `1e-7` of the scale for `t ∈ [0.05, 0.95]` (the derivatives of `log σ_t` grow like
/// `t⁻³`, `(1 - t)⁻³`). A field scaled by `1 + δ` leaves `r = δ (div u + u·∇ log p)
/// = -δ ∂_t log p`, i.e. about `δ / 2` of the scale: `δ = 1%` misses by ~500×.
pub fn check_continuity<P: GaussianPath + ?Sized>(
    path: &P,
    config: &CheckConfig,
) -> Result<(), PathError> {
    run("conditional continuity equation", config, |c| {
        let Some((x, sigma)) = points(path, c)? else {
            return Ok(());
        };
        let sigma_near = path
            .std(ndarray::array![c.t - time_step(c.t), c.t + time_step(c.t)].view())
            .map_err(err)?;
        if sigma_near.iter().any(|&s| s <= 0.0) {
            return Ok(());
        }
        for i in 0..ROWS {
            let (a, b) = (row(&c.x_0, i), row(&c.x_1, i));
            let log_p = |t: f64, x: ArrayView2<f64>| {
                let n = x.nrows();
                path.log_density(x, tile(a, n).view(), tile(b, n).view(), filled(n, t).view())
                    .map_err(err)
            };
            let u = |t: f64, x: ArrayView2<f64>| {
                let n = x.nrows();
                path.conditional_velocity(
                    x,
                    tile(a, n).view(),
                    tile(b, n).view(),
                    filled(n, t).view(),
                )
                .map_err(err)
            };
            let xi = row(&x, i);
            let h = filled(1, 1e-5 * sigma[i]);
            let (r, scale, allowance) = residual(&log_p, &u, c.t, xi, h.view())?[0];
            if r.abs() > 1e-5 * scale + allowance {
                return Err(format!(
                    "residual {r:e} (scale {scale:e}) at t = {}, x = {}",
                    c.t,
                    xi.row(0)
                ));
            }
        }
        Ok(())
    })
}

/// The continuity residual of the exact marginal mixture ([`EmpiricalMarginal`]) of three
/// weighted conditions per side (a target mixture for [`Conditioning::Target`] paths, all nine
/// independent pairs otherwise), at `x = μ_t(z_k) + σ_t xi` near a random component.
///
/// The marginal field is nonlinear in `x` and `t` (posterior weights), so the truncation error
/// is larger than in [`check_continuity`]; tolerance `1e-4` of the scale (a 1% error in the
/// field still leaves a residual of about `0.5%` of the scale, 50× the tolerance) plus rounding.
pub fn check_marginal_continuity<P: GaussianPath + ?Sized>(
    path: &P,
    config: &CheckConfig,
) -> Result<(), PathError> {
    run("marginal continuity equation", config, |c| {
        let Some((_, sigma)) = points(path, c)? else {
            return Ok(());
        };
        let sigma_near = path
            .std(ndarray::array![c.t - time_step(c.t), c.t + time_step(c.t)].view())
            .map_err(err)?;
        if sigma_near.iter().any(|&s| s <= 0.0) {
            return Ok(());
        }
        let marginal = match path.conditioning() {
            Conditioning::Target => {
                EmpiricalMarginal::target(path, c.x_1.view(), Some(c.w_1.view()))
            }
            Conditioning::Pair => EmpiricalMarginal::independent_pairs(
                path,
                c.x_0.view(),
                Some(c.w_0.view()),
                c.x_1.view(),
                Some(c.w_1.view()),
            ),
        }
        .map_err(err)?;
        // The query point: near the component (x_0^{k / 3}, x_1^{k % 3}).
        let (i0, i1) = (c.k / ROWS, c.k % ROWS);
        let mu = path
            .mean(row(&c.x_0, i0), row(&c.x_1, i1), filled(1, c.t).view())
            .map_err(err)?;
        let x = &mu + &(&row(&c.xi, 0) * sigma[0]);
        let log_p = |t: f64, x: ArrayView2<f64>| marginal.log_prob(t, x).map_err(err);
        let u = |t: f64, x: ArrayView2<f64>| marginal.velocity(t, x).map_err(err);
        let h = filled(1, 1e-5 * sigma[0]);
        let (r, scale, allowance) = residual(&log_p, &u, c.t, x.view(), h.view())?[0];
        if r.abs() > 1e-4 * scale + allowance {
            return Err(format!(
                "marginal residual {r:e} (scale {scale:e}) at t = {}, x = {}",
                c.t,
                x.row(0)
            ));
        }
        Ok(())
    })
}
