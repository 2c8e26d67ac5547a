//! Log-likelihood of data under a flow by the instantaneous change of variables.

use crate::MetricsError;
use fm_core::{LogDensity, StandardNormal, VectorField};
use fm_ode::{AugmentedField, Integrator, Stats, augmented_state, solver_by_name};
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis, Slice};
use rand::Rng;
use rand_distr::StandardNormal as Normal;

/// The distribution of the Hutchinson probe vectors `ε` (`E[ε εᵀ] = I` for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProbeKind {
    /// Entries ±1 with probability ½ (lower variance; exact for diagonal Jacobians).
    #[default]
    Rademacher,
    /// Entries `N(0, 1)`.
    Gaussian,
}

/// How the divergence `div v = tr(∂v/∂x)` is computed along the trajectories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Divergence {
    /// [`VectorField::divergence`]: exact when the field overrides it (the trained MLP field
    /// does), central finite differences per coordinate otherwise (`2d` evaluations).
    #[default]
    Exact,
    /// Hutchinson's estimator `tr(J) ≈ (1/K) Σ_k ε_kᵀ J ε_k` with `K = probes` vectors drawn once
    /// per sample and kept fixed over the integration (as in FFJORD, Grathwohl et al. 2019).
    /// `J ε` is the finite-difference directional derivative
    /// `(v(x + h ε) − v(x − h ε)) / (2h)`, `h = ε_mach^{1/3} · max(1, ‖x‖_∞)`, since a
    /// [`VectorField`] only exposes velocities: `2K` evaluations per divergence, batched.
    Hutchinson {
        /// The number `K ≥ 1` of probe vectors per sample.
        probes: usize,
        /// Their distribution.
        kind: ProbeKind,
    },
}

/// Options of [`log_likelihood`]. `Default`: `dopri5`, adaptive with `rtol = atol = 1e-5`,
/// exact divergence.
#[derive(Debug, Clone, PartialEq)]
pub struct LikelihoodOptions {
    /// Any name of `fm_ode::solver_by_name` (`"euler"`, `"rk4"`, `"dopri5"`, ...).
    pub solver: String,
    /// `Some(n)`: `n` fixed steps. `None`: adaptive steps with `rtol`/`atol` (adaptive solvers only).
    pub steps: Option<usize>,
    /// Relative tolerance of adaptive runs.
    pub rtol: f64,
    /// Absolute tolerance of adaptive runs.
    pub atol: f64,
    /// How the divergence is computed.
    pub divergence: Divergence,
}

impl Default for LikelihoodOptions {
    fn default() -> Self {
        Self {
            solver: "dopri5".into(),
            steps: None,
            rtol: 1e-5,
            atol: 1e-5,
            divergence: Divergence::Exact,
        }
    }
}

/// The result of [`log_likelihood`].
#[derive(Debug, Clone, PartialEq)]
pub struct Likelihood {
    /// `log p_1(x_1)` per sample (natural log).
    pub log_p: Array1<f64>,
    /// The preimages `x_0` of the samples at `t = 0`.
    pub x_0: Array2<f64>,
    /// `∫_0^1 div v(t, x_t) dt = log p_0(x_0) − log p_1(x_1)` per sample.
    pub divergence_integral: Array1<f64>,
    /// Counters of the integration.
    pub stats: Stats,
}

impl Likelihood {
    /// The mean log-likelihood (nats per sample).
    pub fn mean(&self) -> f64 {
        self.log_p.mean().unwrap_or(f64::NAN)
    }

    /// The negative mean log-likelihood in bits per dimension, `−mean / (d ln 2)`.
    pub fn bits_per_dim(&self) -> f64 {
        -self.mean() / (self.x_0.ncols() as f64 * std::f64::consts::LN_2)
    }
}

/// `log p_1(x_1)` of data `x_1` (shape `(n, d)`) under the flow of `field`, with source
/// `N(0, I)` at `t = 0` (fm-core's [`StandardNormal`]).
///
/// Instantaneous change of variables (Chen et al., "Neural Ordinary Differential Equations",
/// 2018, Thm. 1): along `dx/dt = v(t, x)`, `d/dt log p_t(x_t) = −div v(t, x_t)`. The state
/// `(x, ℓ)` starts at `(x_1, 0)` and is integrated from `t = 1` back to `t = 0` with
/// `dℓ/dt = −div v`; then `log p_1(x_1) = log p_0(x_0) − ℓ(0)`, `ℓ(0) = ∫_0^1 div v dt`.
///
/// `rng` draws the Hutchinson probes (unused with [`Divergence::Exact`]).
///
/// ```
/// use fm_core::FnField;
/// use fm_metrics::{log_likelihood, LikelihoodOptions};
/// // v = x carries N(0, 1) to N(0, e²): log p_1(0) = −½ log(2π e²).
/// let field = FnField::new(1, |_t, x, mut out| out.assign(&x));
/// let x_1 = ndarray::array![[0.0]];
/// let ll = log_likelihood(&field, x_1.view(), &LikelihoodOptions::default(), &mut fm_core::rng::seeded(0)).unwrap();
/// let exact = -0.5 * (2.0 * std::f64::consts::PI).ln() - 1.0;
/// assert!((ll.log_p[0] - exact).abs() < 1e-5);
/// ```
pub fn log_likelihood<R: Rng + ?Sized>(
    field: &dyn VectorField,
    x_1: ArrayView2<f64>,
    opts: &LikelihoodOptions,
    rng: &mut R,
) -> Result<Likelihood, MetricsError> {
    let source = StandardNormal::new(field.dim())?;
    log_likelihood_with_source(field, x_1, &source, opts, rng)
}

/// [`log_likelihood`] with another source density `p_0` (of the field's dimension).
pub fn log_likelihood_with_source<R: Rng + ?Sized>(
    field: &dyn VectorField,
    x_1: ArrayView2<f64>,
    source: &dyn LogDensity,
    opts: &LikelihoodOptions,
    rng: &mut R,
) -> Result<Likelihood, MetricsError> {
    let d = field.dim();
    fm_core::shape::check_data("x_1", x_1, d)?;
    if source.dim() != d {
        return Err(fm_core::CoreError::ShapeMismatch {
            what: "source density".into(),
            expected: format!("dimension {d}"),
            found: format!("dimension {}", source.dim()),
        }
        .into());
    }
    let solver = solver_by_name(&opts.solver)?;
    let adaptive = solver.is_adaptive();
    let (state, aug): (Array2<f64>, Box<dyn VectorField + '_>) = match opts.divergence {
        Divergence::Exact => (augmented_state(x_1), Box::new(AugmentedField::new(field))),
        Divergence::Hutchinson { probes, kind } => {
            if probes == 0 {
                return Err(MetricsError::InvalidParameter {
                    name: "probes",
                    value: "0".into(),
                    reason: "Hutchinson's estimator needs at least one probe",
                });
            }
            (
                hutchinson_state(x_1, probes, kind, rng),
                Box::new(HutchinsonField { field, probes }),
            )
        }
    };
    // Probe columns have zero derivative and add zero error; the RMS error norm of fm-ode
    // averages over all columns, so scale the tolerances to keep the acceptance test of the
    // (x, ℓ) columns unchanged.
    let tol_scale = ((d + 1) as f64 / state.ncols() as f64).sqrt();
    let mut integrator = Integrator::new(solver).span(1.0, 0.0);
    integrator = match opts.steps {
        Some(n) => integrator.steps(n),
        None if adaptive => integrator.tolerances(opts.rtol * tol_scale, opts.atol * tol_scale),
        None => {
            return Err(MetricsError::InvalidParameter {
                name: "steps",
                value: "None".into(),
                reason: "a fixed-step solver needs a number of steps",
            });
        }
    };
    let sol = integrator.run(aug.as_ref(), state.view())?;
    let x_0 = sol.x.slice_axis(Axis(1), Slice::from(..d)).to_owned();
    let divergence_integral = sol.x.column(d).to_owned();
    let log_p0 = source.log_prob(x_0.view())?;
    Ok(Likelihood {
        log_p: &log_p0 - &divergence_integral,
        x_0,
        divergence_integral,
        stats: sol.stats,
    })
}

/// `(x, 0, ε_1, …, ε_K)`: shape `(n, d + 1 + K d)`. The probes ride along in the state (with zero
/// derivative) so that they stay attached to their rows however the integrator chunks the batch.
fn hutchinson_state<R: Rng + ?Sized>(
    x: ArrayView2<f64>,
    probes: usize,
    kind: ProbeKind,
    rng: &mut R,
) -> Array2<f64> {
    let (n, d) = x.dim();
    let mut state = Array2::zeros((n, d + 1 + probes * d));
    state.slice_axis_mut(Axis(1), Slice::from(..d)).assign(&x);
    for v in state
        .slice_axis_mut(Axis(1), Slice::from(d + 1..))
        .iter_mut()
    {
        *v = match kind {
            ProbeKind::Rademacher => {
                if rng.random::<bool>() {
                    1.0
                } else {
                    -1.0
                }
            }
            ProbeKind::Gaussian => rng.sample(Normal),
        };
    }
    state
}

/// The augmented system with Hutchinson's divergence estimate (see [`Divergence::Hutchinson`]).
struct HutchinsonField<'a> {
    field: &'a dyn VectorField,
    probes: usize,
}

impl VectorField for HutchinsonField<'_> {
    fn dim(&self) -> usize {
        let d = self.field.dim();
        d + 1 + self.probes * d
    }

    fn velocity(&self, t: f64, state: ArrayView2<f64>, mut out: ArrayViewMut2<f64>) {
        let d = self.field.dim();
        let k = self.probes;
        let n = state.nrows();
        let x = state.slice_axis(Axis(1), Slice::from(..d));
        self.field
            .velocity(t, x, out.slice_axis_mut(Axis(1), Slice::from(..d)));
        out.slice_axis_mut(Axis(1), Slice::from(d + 1..)).fill(0.0);
        let base = f64::EPSILON.cbrt();
        let h: Array1<f64> = x
            .rows()
            .into_iter()
            .map(|r| base * r.iter().fold(1.0f64, |m, v| m.max(v.abs())))
            .collect();
        // All 2K shifted copies in one batch: block 2q holds x + h ε_q, block 2q + 1 x − h ε_q.
        let mut shifted = Array2::zeros((2 * k * n, d));
        for q in 0..k {
            let eps = state.slice_axis(Axis(1), Slice::from(d + 1 + q * d..d + 1 + (q + 1) * d));
            for (sign, block) in [(1.0, 2 * q), (-1.0, 2 * q + 1)] {
                let mut dst =
                    shifted.slice_axis_mut(Axis(0), Slice::from(block * n..(block + 1) * n));
                for (i, mut row) in dst.axis_iter_mut(Axis(0)).enumerate() {
                    for j in 0..d {
                        row[j] = x[[i, j]] + sign * h[i] * eps[[i, j]];
                    }
                }
            }
        }
        let mut v = Array2::zeros((2 * k * n, d));
        self.field.velocity(t, shifted.view(), v.view_mut());
        for i in 0..n {
            let mut acc = 0.0;
            for q in 0..k {
                let (p, m) = (2 * q * n + i, (2 * q + 1) * n + i);
                for j in 0..d {
                    acc += state[[i, d + 1 + q * d + j]] * (v[[p, j]] - v[[m, j]]);
                }
            }
            out[[i, d]] = -acc / (2.0 * h[i] * k as f64);
        }
    }
}
