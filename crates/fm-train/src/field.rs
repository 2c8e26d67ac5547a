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

/// Smallest `α_t` used by [`ScoreField`] (the probability-flow velocity divides by `α_t`,
/// which vanishes at `t = 0` for the conditional-OT scheduler).
pub const SCORE_ALPHA_FLOOR: f64 = 1e-3;

/// The probability-flow ODE of a score model on an affine Gaussian path
/// `x_t = α_t x_1 + σ_t x_0`, `x_0 ~ N(0, I)`.
///
/// The network predicts the noise, `ε̂(t, x) ≈ E[x_0 | x_t = x] = −σ_t ∇_x log p_t(x)`
/// (denoising score matching with weight λ(t) = σ_t², Vincent 2011; Song et al. 2021). By
/// Tweedie, `E[x_1 | x] = (x − σ_t ε̂)/α_t`, and the marginal velocity of the path is
/// `v(t, x) = α'_t E[x_1 | x] + σ'_t E[x_0 | x] = (α'_t/α_t)(x − σ_t ε̂) + σ'_t ε̂`, the
/// probability-flow ODE of Song et al. 2021 written for the flow-matching time convention
/// (Lipman et al. 2024, "Flow Matching Guide and Code", §4.8). `α_t` is floored at
/// [`SCORE_ALPHA_FLOOR`]. The divergence uses the default finite differences.
#[derive(Debug, Clone)]
pub struct ScoreField {
    mlp: Mlp,
    scheduler: NamedScheduler,
}

impl ScoreField {
    /// The probability-flow field of the noise-prediction network `mlp` on `scheduler`'s path.
    pub fn new(mlp: Mlp, scheduler: NamedScheduler) -> Self {
        Self { mlp, scheduler }
    }
}

impl VectorField for ScoreField {
    fn dim(&self) -> usize {
        self.mlp.config().dim
    }
    fn velocity(&self, t: f64, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>) {
        let tt = Array1::from_elem(x.nrows(), t);
        let eps = match self.mlp.forward(tt.view(), x) {
            Ok(v) => v,
            Err(_) => {
                out.fill(f64::NAN);
                return;
            }
        };
        let c = self.scheduler.at(t.clamp(0.0, 1.0));
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
