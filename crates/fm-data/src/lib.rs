//! # fm-data
//!
//! Data for flow matching: the standard toy distributions of the flow-matching papers
//! (TorchCFM's `moons` and `8gaussians`, and the sets of its paper runner and of FFJORD) and
//! user data files (CSV and `.npy`, any dimension), behind one [`Dataset`] value that the
//! trainer and the CLI take.
//!
//! * [`Toy`]: the built-in distributions with documented default parameters and named variants;
//!   the spec syntax is `name` or `name:key=value,...`, e.g. `"8gaussians:radius=4,std=0.5"`.
//!   The table on [`Toy`] says which name reproduces which generator of TorchCFM.
//! * [`read_points`] / [`write_points`]: CSV (optional header) and `.npy` (`f32`/`f64`, 2-D),
//!   typed errors naming the file (and line and column for CSV), atomic writes.
//! * [`Dataset`]: a toy or a set of [`Points`] sampled with replacement, optional train/test split.
//!
//! Every sampler takes the RNG: the same seed gives the same points.
//!
//! ```
//! use fm_data::{Dataset, write_points};
//! let mut rng = fm_core::rng::seeded(42);
//! let moons = Dataset::parse("moons", None)?;
//! let x = moons.sample(512, &mut rng)?;
//! assert_eq!(x.dim(), (512, 2));
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("moons.csv");
//! write_points(&path, x.view())?;
//! let file = Dataset::parse(path.to_str().unwrap(), Some(2))?;
//! assert_eq!(file.sample(8, &mut rng)?.dim(), (8, 2));
//! # Ok::<(), fm_data::DataError>(())
//! ```

mod dataset;
mod error;
mod io;
mod stream;
mod toy;

pub use dataset::{Dataset, Points};
pub use error::DataError;
pub use io::{Format, MAX_FILE_BYTES, read_points, write_points};
pub use stream::PointsWriter;
pub use toy::{Affine, MoonsStyle, Toy, builtin_names};
