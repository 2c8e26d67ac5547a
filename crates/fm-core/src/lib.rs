//! # fm-core
//!
//! The small set of traits and helpers that every crate of `flow-matching` shares.
//!
//! * [`VectorField`]: a batched, time-dependent vector field `v(t, x)` on `R^d`, evaluated on a
//!   batch `x` of shape `(n, d)` (one sample per row) into a caller-provided buffer. Its
//!   [`VectorField::divergence`] defaults to central finite differences; a model with an exact
//!   divergence (the MLP field of `fm-train`) overrides it.
//! * [`FnField`]: turn a closure into a [`VectorField`].
//! * [`LogDensity`] and [`StandardNormal`]: densities, in particular the usual source `N(0, I)`.
//! * [`shape`]: checks that return a typed [`CoreError`] instead of panicking.
//! * [`rng`]: the seeded RNG every crate uses and the per-chunk seed splitting that keeps
//!   parallel code bit-reproducible.
//!
//! ```
//! use fm_core::{FnField, VectorField};
//! use ndarray::{array, Array2};
//!
//! // v(t, x) = -x, whose divergence in d = 2 is -2 everywhere.
//! let field = FnField::new(2, |_t, x, mut out| out.assign(&x.mapv(|v| -v)));
//! let x = array![[1.0, 2.0], [3.0, -4.0]];
//! let mut v = Array2::zeros((2, 2));
//! field.velocity(0.5, x.view(), v.view_mut());
//! assert_eq!(v, array![[-1.0, -2.0], [-3.0, 4.0]]);
//! let div = field.divergence_vec(0.5, x.view());
//! assert!((div[0] + 2.0).abs() < 1e-6);
//! ```

mod density;
mod error;
mod field;
mod file;
pub mod rng;
pub mod shape;

pub use density::{LogDensity, StandardNormal};
pub use error::CoreError;
pub use field::{FnField, VectorField, finite_difference_divergence};
pub use file::{ReadFileError, read_regular_file};

/// Result alias of this crate.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
