use crate::{CoreError, Result, shape};
use ndarray::{Array1, Array2, ArrayView2};
use rand::Rng;
use rand_distr::StandardNormal as StdNormalDistr;

/// A log-density `log p(x)` on `R^d`, evaluated on a batch `x` of shape `(n, d)`.
///
/// ```
/// use fm_core::{LogDensity, Result};
/// use ndarray::{Array1, ArrayView2};
///
/// /// The uniform density on the unit cube [0, 1]^d.
/// struct UnitCube(usize);
/// impl LogDensity for UnitCube {
///     fn dim(&self) -> usize { self.0 }
///     fn log_prob(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
///         fm_core::shape::check_batch("x", x, self.0)?;
///         Ok(x.rows().into_iter()
///             .map(|r| if r.iter().all(|v| (0.0..=1.0).contains(v)) { 0.0 } else { f64::NEG_INFINITY })
///             .collect())
///     }
/// }
/// let lp = UnitCube(2).log_prob(ndarray::array![[0.5, 0.5], [2.0, 0.0]].view()).unwrap();
/// assert_eq!(lp[0], 0.0);
/// assert_eq!(lp[1], f64::NEG_INFINITY);
/// ```
pub trait LogDensity {
    /// The dimension `d`.
    fn dim(&self) -> usize;
    /// `log p(x_i)` for each row `x_i` of `x`; a shape error if `x` has not `d` columns.
    fn log_prob(&self, x: ArrayView2<f64>) -> Result<Array1<f64>>;
}

/// The standard normal distribution `N(0, I_d)`, the usual source of a flow.
///
/// `log p(x) = -½ ‖x‖² - (d/2) log(2π)`.
///
/// ```
/// use fm_core::{LogDensity, StandardNormal};
/// use rand::SeedableRng;
/// let normal = StandardNormal::new(3).unwrap();
/// let mut rng = fm_core::rng::seeded(7);
/// let x = normal.sample(1000, &mut rng);
/// assert_eq!(x.dim(), (1000, 3));
/// let lp = normal.log_prob(ndarray::Array2::zeros((1, 3)).view()).unwrap();
/// assert!((lp[0] + 1.5 * (2.0 * std::f64::consts::PI).ln()).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandardNormal {
    dim: usize,
}

impl StandardNormal {
    /// `N(0, I_dim)`; `dim` must be at least 1.
    pub fn new(dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(CoreError::InvalidParameter {
                name: "dim",
                value: "0".into(),
                reason: "the dimension must be at least 1",
            });
        }
        Ok(Self { dim })
    }

    /// The dimension `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `n` independent samples, shape `(n, d)`.
    pub fn sample<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Array2<f64> {
        Array2::from_shape_simple_fn((n, self.dim), || rng.sample(StdNormalDistr))
    }

    /// `log p` of a single point given as a slice of length `d` (no shape check beyond debug).
    pub fn log_prob_row(&self, x: &[f64]) -> f64 {
        let sq: f64 = x.iter().map(|v| v * v).sum();
        -0.5 * sq - 0.5 * self.dim as f64 * (2.0 * std::f64::consts::PI).ln()
    }
}

impl LogDensity for StandardNormal {
    fn dim(&self) -> usize {
        self.dim
    }
    fn log_prob(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        shape::check_batch("x", x, self.dim)?;
        Ok(x.rows()
            .into_iter()
            .map(|r| {
                let sq: f64 = r.iter().map(|v| v * v).sum();
                -0.5 * sq - 0.5 * self.dim as f64 * (2.0 * std::f64::consts::PI).ln()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Axis;

    #[test]
    fn zero_dim_is_an_error() {
        assert!(matches!(
            StandardNormal::new(0),
            Err(CoreError::InvalidParameter { name: "dim", .. })
        ));
    }

    #[test]
    fn log_prob_matches_product_of_1d_densities() {
        let normal = StandardNormal::new(3).unwrap();
        let x = ndarray::array![[0.1, -2.0, 3.5], [0.0, 0.0, 1.0]];
        let lp = normal.log_prob(x.view()).unwrap();
        for (i, r) in x.rows().into_iter().enumerate() {
            let prod: f64 = r
                .iter()
                .map(|v| (-v * v / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt())
                .product();
            assert!((lp[i] - prod.ln()).abs() < 1e-12);
            assert!((lp[i] - normal.log_prob_row(r.as_slice().unwrap())).abs() < 1e-15);
        }
    }

    #[test]
    fn log_prob_rejects_wrong_width() {
        let normal = StandardNormal::new(2).unwrap();
        let err = normal.log_prob(Array2::zeros((4, 3)).view()).unwrap_err();
        assert!(err.to_string().contains("expected 2 columns"), "{err}");
    }

    #[test]
    fn samples_have_unit_moments() {
        let normal = StandardNormal::new(2).unwrap();
        let x = normal.sample(40_000, &mut crate::rng::seeded(1));
        let mean = x.mean_axis(Axis(0)).unwrap();
        let var = x.var_axis(Axis(0), 1.0);
        for j in 0..2 {
            // Standard errors: 1/200 for the mean, ~sqrt(2)/200 for the variance; 5 sigma margins.
            assert!(mean[j].abs() < 0.025, "mean {mean}");
            assert!((var[j] - 1.0).abs() < 0.036, "var {var}");
        }
    }
}
