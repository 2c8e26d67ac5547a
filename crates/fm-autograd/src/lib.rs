//! # fm-autograd
//!
//! A small reverse-mode automatic differentiation on ndarray, the MLP vector field `v_θ(t, x)`
//! of flow matching, and the Adam/AdamW optimizers with a weight EMA.
//!
//! * [`Graph`]: an append-only tape of batched 2-D values; [`Var`] handles; one `match` over
//!   the ops gives the backward rules (matmul, bias add, elementwise arithmetic, column concat,
//!   sum/mean, MSE, the [`Activation`]s, sin/cos). Generic over [`Float`] (`f32`, `f64`).
//! * [`Mlp`] (= [`MlpOf<f32>`]): input `[x, time features]`, hidden layers, output `d`;
//!   a fused, preallocated training path [`MlpOf::loss_and_grad`], the exact divergence by
//!   forward mode, Hutchinson's estimator, safetensors-style named tensors. `f64` at the boundary.
//! * [`Optimizer`], [`Adam`] ([`AdamConfig`]), [`Ema`].
//!
//! ```
//! use fm_autograd::{Adam, AdamConfig, Mlp, MlpConfig, Optimizer};
//! use ndarray::{Array1, Array2};
//! use rand::SeedableRng;
//!
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let mut mlp = Mlp::new(&MlpConfig::default(), &mut rng).unwrap();
//! let mut adam = Adam::new(AdamConfig { lr: 1e-2, ..Default::default() }).unwrap();
//! let t = Array1::linspace(0.0, 1.0, 32);
//! let x = Array2::from_shape_fn((32, 2), |(i, j)| (i as f64 * 0.1 + j as f64).sin());
//! let target = x.mapv(|v| -v); // regress v(t, x) = −x
//! let (first, _) = mlp.loss_and_grad(t.view(), x.view(), target.view()).unwrap();
//! for _ in 0..200 {
//!     let (_, grads) = mlp.loss_and_grad(t.view(), x.view(), target.view()).unwrap();
//!     adam.step(&mut mlp, &grads).unwrap();
//! }
//! let (last, _) = mlp.loss_and_grad(t.view(), x.view(), target.view()).unwrap();
//! assert!(last < first / 10.0);
//! ```

mod activation;
mod config;
mod error;
mod float;
mod graph;
mod kernel;
mod mlp;
mod optim;

pub use activation::{Activation, SELU_ALPHA, SELU_LAMBDA};
pub use config::{MlpConfig, TimeFeatures};
pub use error::{AutogradError, Result};
pub use float::Float;
pub use graph::{GradStore, Graph, Var};
pub use mlp::{CHUNK, Grads, GradsOf, Mlp, MlpOf, Probe, Tensor};
pub use optim::{Adam, AdamConfig, Ema, Optimizer};
