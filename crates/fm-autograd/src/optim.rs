use crate::error::{AutogradError, Result, shape_err};
use crate::{Grads, Mlp};
use serde::{Deserialize, Serialize};

/// Updates an [`Mlp`]'s parameters from a gradient.
///
/// ```
/// use fm_autograd::{AutogradError, Grads, Mlp, Optimizer};
/// /// Plain gradient descent θ ← θ − lr·g.
/// struct Sgd { lr: f32 }
/// impl Optimizer for Sgd {
///     fn step(&mut self, mlp: &mut Mlp, grads: &Grads) -> Result<(), AutogradError> {
///         for (p, g) in mlp.params_mut().iter_mut().zip(grads.as_slice()) {
///             *p -= self.lr * g;
///         }
///         Ok(())
///     }
/// }
/// let mut rng = rand::rng();
/// let mut mlp = Mlp::new(&Default::default(), &mut rng).unwrap();
/// let mut grads = Grads::zeros(&mlp);
/// grads.as_mut_slice()[0] = 1.0;
/// let before = mlp.params()[0];
/// Sgd { lr: 0.5 }.step(&mut mlp, &grads).unwrap();
/// assert_eq!(mlp.params()[0], before - 0.5);
/// ```
pub trait Optimizer {
    /// One update of `mlp` with the gradient `grads` of the loss.
    fn step(&mut self, mlp: &mut Mlp, grads: &Grads) -> Result<(), AutogradError>;
}

/// The settings of [`Adam`]. `Default` is PyTorch's `torch.optim.Adam`; [`AdamConfig::adamw`]
/// is PyTorch's `torch.optim.AdamW`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// Learning rate (1e-3).
    pub lr: f64,
    /// Decay of the first-moment average (0.9).
    pub beta1: f64,
    /// Decay of the second-moment average (0.999).
    pub beta2: f64,
    /// Added to the denominator (1e-8).
    pub eps: f64,
    /// Weight decay λ (0; 1e-2 for AdamW).
    pub weight_decay: f64,
    /// `true`: decoupled decay θ ← θ(1 − lr·λ) (AdamW, Loshchilov & Hutter, 2019);
    /// `false`: L2 decay g ← g + λθ (Adam).
    pub decoupled: bool,
    /// If set, the gradient is rescaled by `max / (‖g‖ + 1e-6)` when its norm exceeds `max`
    /// (PyTorch's `clip_grad_norm_`).
    pub max_grad_norm: Option<f64>,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            max_grad_norm: None,
        }
    }
}

impl AdamConfig {
    /// PyTorch's AdamW defaults: as [`Default`] with decoupled weight decay 1e-2.
    pub fn adamw() -> Self {
        Self {
            weight_decay: 1e-2,
            decoupled: true,
            ..Self::default()
        }
    }

    /// Checks every field: `lr > 0`, betas in `[0, 1)`, `eps ≥ 0`, `weight_decay ≥ 0`, `max_grad_norm > 0`.
    pub fn check(&self) -> Result<()> {
        let bad = |name, value: f64, reason| {
            Err(AutogradError::InvalidParameter {
                name,
                value: value.to_string(),
                reason,
            })
        };
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(
                "lr",
                self.lr,
                "the learning rate must be positive and finite",
            );
        }
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(name, b, "a moment decay must lie in [0, 1)");
            }
        }
        if !(self.eps >= 0.0 && self.eps.is_finite()) {
            return bad("eps", self.eps, "eps must be non-negative and finite");
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(
                "weight_decay",
                self.weight_decay,
                "weight decay must be non-negative and finite",
            );
        }
        if let Some(m) = self.max_grad_norm {
            if !(m > 0.0 && m.is_finite()) {
                return bad(
                    "max_grad_norm",
                    m,
                    "the clipping norm must be positive and finite",
                );
            }
        }
        Ok(())
    }
}

/// Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019), as PyTorch implements them.
///
/// With `g` the gradient (plus `λθ` for L2 decay), step `k = 1, 2, …`:
/// `m ← β1 m + (1 − β1) g`, `v ← β2 v + (1 − β2) g²`,
/// `θ ← θ − lr · (m / (1 − β1^k)) / (√(v / (1 − β2^k)) + eps)`,
/// preceded by `θ ← θ (1 − lr λ)` for decoupled decay. The state serialises with serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    config: AdamConfig,
    m: Vec<f32>,
    v: Vec<f32>,
    steps: u64,
}

impl Adam {
    /// A fresh optimizer (moments allocated on the first step).
    pub fn new(config: AdamConfig) -> Result<Self> {
        config.check()?;
        Ok(Self {
            config,
            m: Vec::new(),
            v: Vec::new(),
            steps: 0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    /// Changes the learning rate (for schedules).
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        AdamConfig { lr, ..self.config }.check()?;
        self.config.lr = lr;
        Ok(())
    }

    /// The number of steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The first and second moment estimates `(m, v)`, one value per parameter (both empty
    /// before the first step). A trainer checks them for non-finite values before it saves them.
    pub fn moments(&self) -> (&[f32], &[f32]) {
        (&self.m, &self.v)
    }

    /// One update of the flat `params` with the flat gradient `grads` (same length).
    pub fn update(&mut self, params: &mut [f32], grads: &[f32]) -> Result<()> {
        if grads.len() != params.len() {
            return Err(shape_err("grads", params.len(), grads.len()));
        }
        if self.m.is_empty() && self.steps == 0 {
            self.m = vec![0.0; params.len()];
            self.v = vec![0.0; params.len()];
        }
        if self.m.len() != params.len() {
            return Err(shape_err(
                "params (optimizer state)",
                self.m.len(),
                params.len(),
            ));
        }
        if self.v.len() != params.len() {
            return Err(shape_err(
                "params (optimizer second moments)",
                self.v.len(),
                params.len(),
            ));
        }
        let c = &self.config;
        let mut clip = 1.0_f64;
        if let Some(max) = c.max_grad_norm {
            let norm = grads
                .iter()
                .map(|&g| (g as f64) * (g as f64))
                .sum::<f64>()
                .sqrt();
            if !norm.is_finite() {
                return Err(AutogradError::NonFinite {
                    what: "gradient norm".into(),
                    index: 0,
                    value: norm,
                });
            }
            clip = (max / (norm + 1e-6)).min(1.0);
        }
        self.steps += 1;
        let k = self.steps as i32;
        let bc1 = 1.0 - c.beta1.powi(k);
        let bc2 = 1.0 - c.beta2.powi(k);
        let step_size = (c.lr / bc1) as f32;
        let inv_sqrt_bc2 = (1.0 / bc2.sqrt()) as f32;
        let (b1, b2, eps) = (c.beta1 as f32, c.beta2 as f32, c.eps as f32);
        let (clip, wd) = (clip as f32, c.weight_decay as f32);
        let l2 = if c.decoupled { 0.0 } else { wd };
        let shrink = if c.decoupled {
            1.0 - (c.lr * c.weight_decay) as f32
        } else {
            1.0
        };
        for (((p, &g), m), v) in params
            .iter_mut()
            .zip(grads)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            let g = g * clip + l2 * *p;
            *p *= shrink;
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= step_size * *m / ((*v).sqrt() * inv_sqrt_bc2 + eps);
        }
        Ok(())
    }
}

impl Optimizer for Adam {
    fn step(&mut self, mlp: &mut Mlp, grads: &Grads) -> Result<(), AutogradError> {
        self.update(mlp.params_mut(), grads.as_slice())
    }
}

/// An exponential moving average of the weights, `θ̄ ← decay · θ̄ + (1 − decay) · θ`, the
/// network usually sampled from in flow-matching practice. Serialises with serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ema {
    decay: f64,
    weights: Mlp,
    updates: u64,
}

impl Ema {
    /// Starts the average at `mlp`'s weights; `decay` in `[0, 1)`.
    pub fn new(decay: f64, mlp: &Mlp) -> Result<Self> {
        if !(0.0..1.0).contains(&decay) {
            return Err(AutogradError::InvalidParameter {
                name: "decay",
                value: decay.to_string(),
                reason: "the EMA decay must lie in [0, 1)",
            });
        }
        Ok(Self {
            decay,
            weights: mlp.clone(),
            updates: 0,
        })
    }

    /// An average resumed from its state (as [`Ema::decay`], [`Ema::weights`] and
    /// [`Ema::updates`] report it, e.g. stored in a checkpoint); `decay` in `[0, 1)`.
    ///
    /// ```
    /// use fm_autograd::{Ema, Mlp};
    /// let mlp = Mlp::new(&Default::default(), &mut rand::rng()).unwrap();
    /// let mut ema = Ema::new(0.9, &mlp).unwrap();
    /// ema.update(&mlp).unwrap();
    /// let back = Ema::from_parts(ema.decay(), ema.weights().clone(), ema.updates()).unwrap();
    /// assert_eq!(back, ema);
    /// ```
    pub fn from_parts(decay: f64, weights: Mlp, updates: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&decay) {
            return Err(AutogradError::InvalidParameter {
                name: "decay",
                value: decay.to_string(),
                reason: "the EMA decay must lie in [0, 1)",
            });
        }
        Ok(Self {
            decay,
            weights,
            updates,
        })
    }

    /// Folds the current weights of `mlp` (same architecture) into the average.
    pub fn update(&mut self, mlp: &Mlp) -> Result<()> {
        if mlp.config() != self.weights.config() {
            return Err(shape_err(
                "ema network",
                format!("{:?}", self.weights.config()),
                format!("{:?}", mlp.config()),
            ));
        }
        let a = self.decay as f32;
        let b = (1.0 - self.decay) as f32;
        for (e, &p) in self.weights.params_mut().iter_mut().zip(mlp.params()) {
            *e = a * *e + b * p;
        }
        self.updates += 1;
        Ok(())
    }

    /// The averaged network.
    pub fn weights(&self) -> &Mlp {
        &self.weights
    }

    /// The decay.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// The number of updates so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }
}
