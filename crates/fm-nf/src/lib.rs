//! # fm-nf
//!
//! Normalizing flows trained by maximum likelihood, the chapter of the story before flow
//! matching: a bijection `f` from data to `N(0, I)` gives
//! `log p(x) = log N(f(x); 0, I) + log|det ∂f/∂x|`, maximised directly.
//!
//! * [`CouplingFlow`] ([`CouplingConfig`]): the affine coupling flow (RealNVP, Dinh et al.,
//!   2017) with bounded log-scales and optional ActNorm; exact inverse and log-determinant.
//! * [`ResidualFlow`] ([`ResidualConfig`]): the residual flow (i-ResNet, Behrmann et al., 2019)
//!   with spectrally normalised blocks, a fixed-point inverse with its error bound, the exact
//!   log-determinant for evaluation and the series estimators ([`LogDetEstimator`]:
//!   truncated, Russian roulette) for training.
//! * [`CnfMle`] ([`CnfConfig`]): a continuous flow trained by maximum likelihood (FFJORD,
//!   Grathwohl et al., 2019) through a fixed-step Runge–Kutta solve (`fm-ode`'s tableaus)
//!   recorded on the tape, with the exact divergence or Hutchinson's estimate
//!   ([`TraceEstimator`], [`ProbeNoise`]); evaluated by adaptive Dormand–Prince on `[x, log-det]`
//!   or a fixed-step solve ([`CnfEval`], [`CnfField`]).
//! * [`MaxLikelihood`] and [`train`] ([`TrainConfig`]): Adam on the mean negative
//!   log-likelihood of batches drawn from an `(n, d)` array with a seeded RNG;
//!   [`train_with`] ([`TrainControl`], [`Resumable`]) adds a stop flag and atomic
//!   checkpoints ([`NfCheckpoint`]) from which a resumed run is bit-identical to an
//!   uninterrupted one.
//! * Every model implements [`fm_core::LogDensity`], samples with `sample(n, rng)` and is one
//!   `.safetensors` file whose JSON config names its `kind` ([`model_kind`]).
//!
//! The models compute in `f64`. The residual flow and the Hutchinson CNF are written with the
//! graph ops of `fm-autograd` (the gradient is the tape's backward pass); the coupling flow and
//! the exact-divergence CNF train by hand-written forward and backward passes on plain arrays,
//! with the tape kept as their reference (`nll_and_grad_tape`, checked against it in the
//! tests) and the baseline of the `step` bench.
//!
//! ```
//! use fm_core::LogDensity;
//! use fm_nf::{CouplingConfig, CouplingFlow, TrainConfig, train};
//! let mut rng = fm_core::rng::seeded(1);
//! // A correlated Gaussian: x₂ = x₁ + noise.
//! let data = ndarray::Array2::from_shape_fn((256, 2), |(i, j)| {
//!     let a = ((i * 7919) % 256) as f64 / 64.0 - 2.0;
//!     if j == 0 { a } else { a + 0.1 * ((i * 104729) % 17) as f64 / 17.0 }
//! });
//! let cfg = CouplingConfig { layers: 4, hidden: vec![16], ..Default::default() };
//! let mut flow = CouplingFlow::new(cfg, &mut rng).unwrap();
//! let before = flow.log_prob(data.view()).unwrap().mean().unwrap();
//! let tc = TrainConfig { steps: 100, batch_size: 64, lr: 5e-3, ..Default::default() };
//! train(&mut flow, data.view(), &tc, &mut rng).unwrap();
//! let after = flow.log_prob(data.view()).unwrap().mean().unwrap();
//! assert!(after > before + 1.0);
//! ```

mod checkpoint;
mod cnf;
mod coupling;
mod error;
mod file;
mod params;
mod residual;
mod train;

pub use checkpoint::{
    CHECKPOINT_KEY, NF_CHECKPOINT_VERSION, NfCheckpoint, Resumable, TrainControl, train_with,
};
pub use cnf::{CnfConfig, CnfEval, CnfField, CnfMle, ProbeNoise, TraceEstimator};
pub use coupling::{CouplingConfig, CouplingFlow, coupling_mask};
pub use error::{NfError, Result};
pub use file::{CNF_KIND, CONFIG_KEY, COUPLING_KIND, NF_FORMAT_VERSION, RESIDUAL_KIND, model_kind};
pub use params::ParamSpec;
pub use residual::{LogDetEstimator, ResidualConfig, ResidualFlow};
pub use train::{MaxLikelihood, TrainConfig, TrainReport, train};
