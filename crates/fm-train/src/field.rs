//! The bridge from a trained network to `fm_core::VectorField`.

use crate::{ArchConfig, NamedScheduler, TrainError};
use fm_autograd::{Activation, Mlp, MlpConfig, TimeFeatures};
use fm_core::VectorField;
use fm_paths::Scheduler;
use ndarray::{Array1, ArrayView2, ArrayViewMut1, ArrayViewMut2};

impl ArchConfig {
    /// The `fm-autograd` configuration of this architecture.
    pub fn mlp_config(&self) -> Result<MlpConfig, TrainError> {
        let activation = match self.activation.to_ascii_lowercase().as_str() {
            "selu" => Activation::Selu,
            "silu" | "swish" => Activation::Silu,
            "elu" => Activation::Elu,
            "relu" => Activation::Relu,
            "tanh" => Activation::Tanh,
            "softplus" => Activation::Softplus,
            "gelu" => Activation::Gelu,
            _ => {
                return Err(TrainError::UnknownName {
                    what: "activation",
                    name: self.activation.clone(),
                    expected: "selu, silu, elu, relu, tanh, softplus, gelu".into(),
                });
            }
        };
        let time_features = match crate::time_columns(&self.time_features) {
            Ok(1) => TimeFeatures::Raw,
            Ok(c) => TimeFeatures::Fourier { frequencies: c / 2 },
            Err(reason) => {
                return Err(TrainError::param(
                    "time-features",
                    &self.time_features,
                    reason,
                ));
            }
        };
        if self.hidden.len() > 64 || self.hidden.iter().any(|&w| w == 0 || w > 65_536) {
            return Err(TrainError::param(
                "hidden",
                format!("{:?}", self.hidden),
                "give at most 64 hidden layers, each of width 1 to 65536",
            ));
        }
        if self.dim == 0 {
            return Err(TrainError::param(
                "dim",
                0,
                "the data dimension must be at least 1",
            ));
        }
        let cfg = MlpConfig {
            dim: self.dim,
            hidden: self.hidden.clone(),
            activation,
            time_features,
            context: 0,
        };
        cfg.check()?;
        Ok(cfg)
    }
}

/// A trained [`Mlp`] as an `fm_core::VectorField`: `v(t, x) = v_θ(t, x)`, with the exact
/// divergence (forward-mode through the network) instead of finite differences.
///
/// The network computes in f32; the field converts at the boundary. If the network cannot be
/// evaluated (non-finite input) the output is filled with NaN, which the ODE integrator
/// reports as a non-finite state.
///
/// ```
/// use fm_core::VectorField;
/// let mlp = fm_autograd::Mlp::new(&fm_autograd::MlpConfig::default(), &mut fm_core::rng::seeded(0)).unwrap();
/// let field = fm_train::MlpField::new(mlp);
/// let v = field.velocity_vec(0.5, ndarray::array![[0.0, 1.0]].view());
/// assert_eq!(v.dim(), (1, 2));
/// ```
#[derive(Debug, Clone)]
pub struct MlpField {
    mlp: Mlp,
}

impl MlpField {
    /// The field of `mlp`.
    pub fn new(mlp: Mlp) -> Self {
        Self { mlp }
    }
    /// The network.
    pub fn mlp(&self) -> &Mlp {
        &self.mlp
    }
}

impl VectorField for MlpField {
    fn dim(&self) -> usize {
        self.mlp.config().dim
    }
    fn velocity(&self, t: f64, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>) {
        let tt = Array1::from_elem(x.nrows(), t);
        match self.mlp.forward(tt.view(), x) {
            Ok(v) => out.assign(&v),
            Err(_) => out.fill(f64::NAN),
        }
    }
    fn divergence(&self, t: f64, x: ArrayView2<f64>, mut out: ArrayViewMut1<f64>) {
        let tt = Array1::from_elem(x.nrows(), t);
        match self.mlp.divergence(tt.view(), x) {
            Ok(v) => out.assign(&v),
            Err(_) => out.fill(f64::NAN),
        }
    }
}

/// Smallest `α_t` used by [`ScoreField`]. The probability-flow velocity divides by `α_t`, which
/// vanishes at `t = 0` for the schedulers that start from pure noise (`condot`, `cosine`,
/// `polynomial:N`, `linear-vp`; `vp` starts at 0.0066), so any error of `ε̂` there is amplified
/// by `α'_t/α_t`. With a floor of 1e-3 the cosine scheduler's samples blew up (W2 ≈ 550 on
/// 8gaussians after 300 steps); with 0.05, N(0, I)→moons after 2,000 steps gives W2 0.62
/// (cosine), 0.49 (condot), 0.43 (vp).
pub const SCORE_ALPHA_FLOOR: f64 = 5e-2;

/// Largest time at which [`ScoreField`] evaluates the scheduler: at `t = 1` the noise scale
/// `σ_t` of a variance-preserving path vanishes and `σ'_t` is infinite, so the coefficients of
/// later times are those of `SCORE_T_MAX` (the usual "integrate to `1 − ε`" of diffusion models).
pub const SCORE_T_MAX: f64 = 1.0 - 1e-3;

/// The probability-flow ODE of a score model on an affine Gaussian path
/// `x_t = α_t x_1 + σ_t x_0`, `x_0 ~ N(0, I)`.
///
/// The network predicts the noise, `ε̂(t, x) ≈ E[x_0 | x_t = x] = −σ_t ∇_x log p_t(x)`
/// (denoising score matching with weight λ(t) = σ_t², Vincent 2011; Song et al. 2021). By
/// Tweedie, `E[x_1 | x] = (x − σ_t ε̂)/α_t`, and the marginal velocity of the path is
/// `v(t, x) = α'_t E[x_1 | x] + σ'_t E[x_0 | x] = (α'_t/α_t)(x − σ_t ε̂) + σ'_t ε̂`, the
/// probability-flow ODE of Song et al. 2021 written for the flow-matching time convention
/// (Lipman et al. 2024, "Flow Matching Guide and Code", §4.8). `α_t` is floored at
/// [`SCORE_ALPHA_FLOOR`] and the time capped at [`SCORE_T_MAX`]. The divergence uses the
/// default finite differences.
///
/// The noise predictor `ε̂` is any [`VectorField`] (its "velocity" is the prediction): the
/// trained network's [`MlpField`], or a closed form in tests.
#[derive(Debug, Clone)]
pub struct ScoreField<E = MlpField> {
    eps: E,
    scheduler: NamedScheduler,
}

impl<E: VectorField> ScoreField<E> {
    /// The probability-flow field of the noise predictor `eps` on `scheduler`'s path.
    pub fn new(eps: E, scheduler: NamedScheduler) -> Self {
        Self { eps, scheduler }
    }
}

impl<E: VectorField> VectorField for ScoreField<E> {
    fn dim(&self) -> usize {
        self.eps.dim()
    }
    fn velocity(&self, t: f64, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>) {
        let eps = self.eps.velocity_vec(t, x);
        let c = self.scheduler.at(t.clamp(0.0, SCORE_T_MAX));
        let alpha = c.alpha_t.max(SCORE_ALPHA_FLOOR);
        let k = c.d_alpha_t / alpha;
        ndarray::Zip::from(&mut out)
            .and(&x)
            .and(&eps)
            .for_each(|o, &x, &e| {
                *o = k * (x - c.sigma_t * e) + c.d_sigma_t * e;
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fm_core::FnField;
    use ndarray::{Array2, array};

    /// For x_1 ~ N(m, s² I) and x_0 ~ N(0, I), feed the exact noise predictor
    /// E[x_0 | x_t = x] = σ (x − α m) / (α² s² + σ²) and compare with the marginal velocity
    /// computed independently from the posterior mean of x_1:
    /// E[x_1 | x] = m + α s² (x − α m) / (α² s² + σ²), u = α' E[x_1 | x] + σ' E[x_0 | x].
    #[test]
    fn probability_flow_matches_the_gaussian_marginal_velocity() {
        let (m, s) = (array![1.5, -0.5], 0.7);
        for name in ["condot", "cosine", "vp", "linear-vp", "polynomial:2"] {
            let sch = NamedScheduler::parse(name).unwrap();
            let mc = m.clone();
            let eps = FnField::new(
                2,
                move |t: f64, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
                    let c = sch.at(t);
                    let var = c.alpha_t * c.alpha_t * s * s + c.sigma_t * c.sigma_t;
                    for (i, r) in x.rows().into_iter().enumerate() {
                        for j in 0..2 {
                            out[[i, j]] = c.sigma_t * (r[j] - c.alpha_t * mc[j]) / var;
                        }
                    }
                },
            );
            let field = ScoreField::new(eps, sch);
            let x = array![[0.3, -1.2], [2.0, 0.5], [-1.0, 1.0]];
            // Times where α_t is above SCORE_ALPHA_FLOOR for every scheduler.
            for &t in &[0.3, 0.5, 0.8, 0.95] {
                let v = field.velocity_vec(t, x.view());
                let c = sch.at(t);
                let var = c.alpha_t * c.alpha_t * s * s + c.sigma_t * c.sigma_t;
                let mut u = Array2::zeros((3, 2));
                for i in 0..3 {
                    for j in 0..2 {
                        let dev = x[[i, j]] - c.alpha_t * m[j];
                        let e1 = m[j] + c.alpha_t * s * s * dev / var;
                        let e0 = c.sigma_t * dev / var;
                        u[[i, j]] = c.d_alpha_t * e1 + c.d_sigma_t * e0;
                    }
                }
                for (a, b) in v.iter().zip(u.iter()) {
                    assert!(
                        (a - b).abs() < 1e-9 * (1.0 + b.abs()),
                        "{name} t={t}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn mlp_field_divergence_is_exact_against_finite_differences() {
        let cfg = fm_autograd::MlpConfig {
            hidden: vec![8, 8],
            ..Default::default()
        };
        let mlp = Mlp::new(&cfg, &mut fm_core::rng::seeded(2)).unwrap();
        // The oracle: central differences of the same weights computed in f64.
        let wide = mlp.cast::<f64>();
        let field = MlpField::new(mlp);
        let x = array![[0.3, -1.2], [2.0, 0.5], [-3.0, 0.1]];
        let exact = field.divergence_vec(0.4, x.view());
        let t = Array1::from_elem(1, 0.4);
        let h = 1e-5;
        for (i, r) in x.rows().into_iter().enumerate() {
            let mut fd = 0.0;
            for j in 0..2 {
                let mut xp = r.to_owned().insert_axis(ndarray::Axis(0));
                let mut xm = xp.clone();
                xp[[0, j]] += h;
                xm[[0, j]] -= h;
                let vp = wide.forward(t.view(), xp.view()).unwrap();
                let vm = wide.forward(t.view(), xm.view()).unwrap();
                fd += (vp[[0, j]] - vm[[0, j]]) / (2.0 * h);
            }
            assert!(
                (exact[i] - fd).abs() < 1e-4 * (1.0 + fd.abs()),
                "{} vs {fd}",
                exact[i]
            );
        }
    }
}
