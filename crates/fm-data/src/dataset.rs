//! [`Dataset`]: a built-in toy or a file of points, behind one `sample` call.

use crate::{DataError, Toy, read_points};
use ndarray::{Array2, Axis};
use rand::Rng;
use rand::seq::SliceRandom;
use std::path::Path;
use std::sync::Arc;

/// A finite set of points (one per row) sampled with replacement, e.g. a user's data file.
///
/// Cloning is cheap: the points are shared.
#[derive(Debug, Clone, PartialEq)]
pub struct Points {
    label: String,
    data: Arc<Array2<f64>>,
}

impl Points {
    /// Points from an array; `label` names them in [`Dataset::name`] and errors. The array must
    /// be non-empty and finite.
    pub fn new(label: impl Into<String>, data: Array2<f64>) -> Result<Points, DataError> {
        let label = label.into();
        fm_core::shape::check_nonempty(&label, data.view())?;
        fm_core::shape::check_finite(&label, data.view())?;
        Ok(Points {
            label,
            data: Arc::new(data),
        })
    }

    /// Reads the points of a `.csv` or `.npy` file (see [`read_points`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Points, DataError> {
        let path = path.as_ref();
        let data = read_points(path)?;
        Points::new(path.display().to_string(), data)
    }

    /// The label (the file name for loaded points).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// All points, shape `(len, dim)`.
    pub fn data(&self) -> &Array2<f64> {
        &self.data
    }

    /// The number of points.
    pub fn len(&self) -> usize {
        self.data.nrows()
    }

    /// Always false: construction rejects empty point sets.
    pub fn is_empty(&self) -> bool {
        self.data.nrows() == 0
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.data.ncols()
    }

    /// `n` rows drawn uniformly with replacement.
    pub fn sample<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Result<Array2<f64>, DataError> {
        check_n(n)?;
        let len = self.len();
        let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..len)).collect();
        Ok(self.data.select(Axis(0), &idx))
    }

    /// A random split into `(train, test)`: a uniformly random permutation, the last
    /// `round(test_fraction · len)` points go to the test set. Both parts must be non-empty, so
    /// `test_fraction` must lie strictly between 0 and 1 and the set must have at least 2 points.
    pub fn split<R: Rng + ?Sized>(
        &self,
        test_fraction: f64,
        rng: &mut R,
    ) -> Result<(Points, Points), DataError> {
        let n_test = (test_fraction * self.len() as f64).round() as usize;
        if !(test_fraction > 0.0 && test_fraction < 1.0) || n_test == 0 || n_test >= self.len() {
            return Err(DataError::InvalidParameter {
                name: "test_fraction",
                value: test_fraction.to_string(),
                reason: "must lie in (0, 1) and leave at least one point in each part",
            });
        }
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.shuffle(rng);
        let (train, test) = idx.split_at(self.len() - n_test);
        Ok((
            Points::new(
                format!("{} (train)", self.label),
                self.data.select(Axis(0), train),
            )?,
            Points::new(
                format!("{} (test)", self.label),
                self.data.select(Axis(0), test),
            )?,
        ))
    }
}

/// Where training data comes from: a built-in toy distribution or a set of points (usually a
/// file), so the trainer and the CLI take either.
///
/// ```
/// use fm_data::Dataset;
/// let mut rng = fm_core::rng::seeded(0);
/// let moons = Dataset::parse("moons", None).unwrap();
/// assert_eq!((moons.dim(), moons.name()), (2, "moons".to_string()));
/// let source = Dataset::parse("gaussian", Some(5)).unwrap();
/// assert_eq!(source.sample(10, &mut rng).unwrap().dim(), (10, 5));
/// assert!(Dataset::parse("moon", None).is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Dataset {
    /// A built-in toy distribution; every `sample` call draws fresh points.
    Toy(Toy),
    /// A finite set of points, sampled with replacement.
    Points(Points),
}

impl Dataset {
    /// Parses a built-in spec (`"moons"`, `"8gaussians:radius=4,std=0.5"`, see [`Toy`]) or a
    /// path ending in `.csv` / `.npy` (any case), which is read at once.
    ///
    /// `dim_hint` gives `gaussian` its dimension; when given, a data set of another dimension is
    /// a [`DataError::DimMismatch`].
    pub fn parse(spec: &str, dim_hint: Option<usize>) -> Result<Dataset, DataError> {
        let lower = spec.trim().to_ascii_lowercase();
        let ds = if lower.ends_with(".csv") || lower.ends_with(".npy") {
            Dataset::Points(Points::load(spec.trim())?)
        } else {
            Dataset::Toy(Toy::parse(spec, dim_hint)?)
        };
        if let Some(h) = dim_hint
            && h != ds.dim()
        {
            return Err(DataError::DimMismatch {
                what: format!("data set {}", ds.name()),
                expected: h,
                found: ds.dim(),
            });
        }
        Ok(ds)
    }

    /// The dimension of the samples.
    pub fn dim(&self) -> usize {
        match self {
            Dataset::Toy(t) => t.dim(),
            Dataset::Points(p) => p.dim(),
        }
    }

    /// A name that [`Dataset::parse`] reads back: the toy's spec (see [`Toy::name`]) or the file's path.
    pub fn name(&self) -> String {
        match self {
            Dataset::Toy(t) => t.name(),
            Dataset::Points(p) => p.label().to_string(),
        }
    }

    /// `n ≥ 1` samples, shape `(n, dim)`: fresh draws from a toy, draws with replacement from
    /// points.
    pub fn sample<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Result<Array2<f64>, DataError> {
        match self {
            Dataset::Toy(t) => t.sample(n, rng),
            Dataset::Points(p) => p.sample(n, rng),
        }
    }

    /// Splits into `(train, test)`: points are split at random (see [`Points::split`]); a toy is
    /// returned twice, since its fresh draws are already independent of the training draws.
    pub fn split<R: Rng + ?Sized>(
        &self,
        test_fraction: f64,
        rng: &mut R,
    ) -> Result<(Dataset, Dataset), DataError> {
        match self {
            Dataset::Toy(t) => Ok((Dataset::Toy(t.clone()), Dataset::Toy(t.clone()))),
            Dataset::Points(p) => {
                let (a, b) = p.split(test_fraction, rng)?;
                Ok((Dataset::Points(a), Dataset::Points(b)))
            }
        }
    }
}

fn check_n(n: usize) -> Result<(), DataError> {
    if n == 0 {
        return Err(DataError::InvalidParameter {
            name: "n",
            value: "0".into(),
            reason: "draw at least one sample",
        });
    }
    Ok(())
}
