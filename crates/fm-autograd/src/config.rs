use crate::Activation;
use crate::error::{AutogradError, Result};
use serde::{Deserialize, Serialize};

/// How the time `t` enters the network, next to the `d` data columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum TimeFeatures {
    /// One column holding `t` itself (TorchCFM's `MLP`: input `[x, t]`).
    #[default]
    Raw,
    /// `2k` columns `[sin(ω_1 t) … sin(ω_k t), cos(ω_1 t) … cos(ω_k t)]` with `ω_j = 2π j`
    /// (random-Fourier-style time embedding with integer frequencies).
    Fourier {
        /// The number `k ≥ 1` of frequencies.
        frequencies: usize,
    },
}

impl TimeFeatures {
    /// The number of input columns the time takes.
    pub fn width(&self) -> usize {
        match self {
            TimeFeatures::Raw => 1,
            TimeFeatures::Fourier { frequencies } => 2 * frequencies,
        }
    }
}

/// The architecture of an [`MlpOf`](crate::MlpOf): `d` data columns, the time features and
/// `k = context` context columns in (input layout `[x, time features, c]`), the hidden widths
/// with one activation, `d` columns out.
///
/// `Default` is TorchCFM's 2-D model: `dim = 2`, `hidden = [64, 64, 64]`, SELU, raw `t`, no
/// context.
///
/// ```
/// use fm_autograd::{MlpConfig, TimeFeatures};
/// let cfg = MlpConfig { dim: 2, context: 3, time_features: TimeFeatures::Fourier { frequencies: 2 }, ..Default::default() };
/// assert_eq!(cfg.input_width(), 2 + 4 + 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MlpConfig {
    /// The data dimension `d` (input and output width).
    pub dim: usize,
    /// The widths of the hidden layers (may be empty: a single affine map).
    pub hidden: Vec<usize>,
    /// The activation after every hidden layer.
    pub activation: Activation,
    /// How `t` is fed in.
    pub time_features: TimeFeatures,
    /// The number `k` of context columns `c` (conditional fields `v_θ(t, x, c)`); 0 for an
    /// unconditional network. Files written before contexts existed read as 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub context: usize,
}

fn is_zero(k: &usize) -> bool {
    *k == 0
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            dim: 2,
            hidden: vec![64, 64, 64],
            activation: Activation::Selu,
            time_features: TimeFeatures::Raw,
            context: 0,
        }
    }
}

impl MlpConfig {
    /// Checks the sizes: `dim ≥ 1`, every hidden width `≥ 1`, at least one Fourier frequency.
    pub fn check(&self) -> Result<()> {
        if self.dim == 0 {
            return Err(AutogradError::InvalidParameter {
                name: "dim",
                value: "0".into(),
                reason: "the data dimension must be at least 1",
            });
        }
        if self.hidden.contains(&0) {
            return Err(AutogradError::InvalidParameter {
                name: "hidden",
                value: format!("{:?}", self.hidden),
                reason: "every hidden width must be at least 1",
            });
        }
        if self.time_features == (TimeFeatures::Fourier { frequencies: 0 }) {
            return Err(AutogradError::InvalidParameter {
                name: "frequencies",
                value: "0".into(),
                reason: "fourier time features need at least one frequency",
            });
        }
        Ok(())
    }

    /// The input width `d + width of the time features + k`.
    pub fn input_width(&self) -> usize {
        self.dim + self.time_features.width() + self.context
    }

    /// The `(out, in)` shape of every linear layer, first to last.
    pub fn layer_shapes(&self) -> Vec<(usize, usize)> {
        let mut widths = vec![self.input_width()];
        widths.extend(&self.hidden);
        widths.push(self.dim);
        widths.windows(2).map(|w| (w[1], w[0])).collect()
    }

    /// The number of parameters, `Σ out·in + out` over the layers.
    pub fn num_params(&self) -> usize {
        self.layer_shapes().iter().map(|(o, i)| o * i + o).sum()
    }
}
