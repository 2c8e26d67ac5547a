use crate::task::LN_SQRT_2PI;
use crate::{Result, Task};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use rand::{Rng, RngCore};
use rand_distr::StandardNormal;

/// The prior variance (sbibm's `prior_scale`, used there as a covariance).
const PRIOR_VAR: f64 = 0.1;
/// The simulator's noise variance (sbibm's `simulator_scale`, likewise a covariance).
const NOISE_VAR: f64 = 0.1;
const DIM: usize = 10;

/// sbibm's `gaussian_linear`: θ ∈ ℝ¹⁰, x ∈ ℝ¹⁰.
///
/// * Prior: `θ ~ N(0, 0.1 I)` (sbibm passes `prior_scale = 0.1` as the covariance).
/// * Simulator: `x ~ N(θ, 0.1 I)`.
/// * Reference posterior (closed form, Gaussian prior × Gaussian likelihood):
///   `Σ = (Σ₀⁻¹ + Σₓ⁻¹)⁻¹ = 0.05 I`, `μ = Σ Σₓ⁻¹ x = x / 2`; see [`GaussianLinear::posterior`].
///
/// ```
/// use fm_sbi::{GaussianLinear, Task};
/// let x = GaussianLinear.observation(1)?;
/// let (mean, var) = GaussianLinear::posterior(x.view());
/// assert!((mean[0] - x[0] / 2.0).abs() < 1e-15 && (var - 0.05).abs() < 1e-15);
/// # Ok::<(), fm_sbi::SbiError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GaussianLinear;

impl GaussianLinear {
    /// The exact posterior `N(μ, v I)` given `x`: returns `(μ, v)`.
    pub fn posterior(x: ArrayView1<f64>) -> (Array1<f64>, f64) {
        let var = 1.0 / (1.0 / PRIOR_VAR + 1.0 / NOISE_VAR);
        (x.mapv(|xi| var * xi / NOISE_VAR), var)
    }
}

fn log_normal_iso(x: ArrayView1<f64>, mean: ArrayView1<f64>, var: f64) -> f64 {
    let sq: f64 = x.iter().zip(mean).map(|(a, b)| (a - b) * (a - b)).sum();
    let d = x.len() as f64;
    -0.5 * sq / var - d * (LN_SQRT_2PI + 0.5 * var.ln())
}

impl Task for GaussianLinear {
    fn name(&self) -> &'static str {
        "gaussian_linear"
    }
    fn theta_dim(&self) -> usize {
        DIM
    }
    fn x_dim(&self) -> usize {
        DIM
    }
    fn observations(&self) -> &'static [&'static [f64]] {
        // sbibm's files/num_observation_{1,2,3}/observation.csv.
        &[
            &[
                1.0471346,
                0.5566712,
                -0.23618454,
                0.027879834,
                -1.0051446,
                -0.007930746,
                0.06117077,
                -0.29286885,
                -0.38539964,
                0.2449614,
            ],
            &[
                -0.106687605,
                -0.8015651,
                -0.07332335,
                0.4009537,
                0.62297356,
                -0.18687348,
                0.7087778,
                0.1921165,
                0.6718195,
                0.097826496,
            ],
            &[
                0.46684834,
                -1.0391812,
                -0.4221986,
                -0.043471217,
                0.06795333,
                0.44685173,
                0.034785576,
                -0.48691356,
                -0.14388148,
                -0.60066223,
            ],
        ]
    }
    fn draw_prior(&self, n: usize, rng: &mut dyn RngCore) -> Array2<f64> {
        let sd = PRIOR_VAR.sqrt();
        Array2::from_shape_simple_fn((n, DIM), || sd * rng.sample::<f64, _>(StandardNormal))
    }
    fn prior_log_prob_unchecked(&self, theta: ArrayView2<f64>) -> Array1<f64> {
        let zero = Array1::zeros(DIM);
        theta
            .rows()
            .into_iter()
            .map(|t| log_normal_iso(t, zero.view(), PRIOR_VAR))
            .collect()
    }
    fn simulate_unchecked(&self, theta: ArrayView2<f64>, rng: &mut dyn RngCore) -> Array2<f64> {
        let sd = NOISE_VAR.sqrt();
        theta.mapv(|t| t + sd * rng.sample::<f64, _>(StandardNormal))
    }
    fn log_likelihood_unchecked(&self, theta: ArrayView2<f64>, x: ArrayView1<f64>) -> Array1<f64> {
        theta
            .rows()
            .into_iter()
            .map(|t| log_normal_iso(x, t, NOISE_VAR))
            .collect()
    }
    fn reference_posterior_unchecked(
        &self,
        x: ArrayView1<f64>,
        n: usize,
        rng: &mut dyn RngCore,
    ) -> Result<Array2<f64>> {
        let (mean, var) = Self::posterior(x);
        let sd = var.sqrt();
        Ok(Array2::from_shape_fn((n, DIM), |(_, j)| {
            mean[j] + sd * rng.sample::<f64, _>(StandardNormal)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn posterior_is_prior_times_likelihood_normalised() {
        // log p(θ) + log p(x | θ) − log N(θ; μ, v I) is the log evidence: the same for every θ.
        let x = GaussianLinear.observation(2).unwrap();
        let (mean, var) = GaussianLinear::posterior(x.view());
        let thetas = array![[0.0; DIM], [0.3; DIM], [-0.7; DIM]];
        let joint = GaussianLinear
            .log_posterior_unnormalized(thetas.view(), x.view())
            .unwrap();
        let evidence: Vec<f64> = thetas
            .rows()
            .into_iter()
            .zip(&joint)
            .map(|(t, j)| j - log_normal_iso(t, mean.view(), var))
            .collect();
        // The evidence in closed form: x ~ N(0, (0.1 + 0.1) I).
        let closed = log_normal_iso(x.view(), Array1::zeros(DIM).view(), PRIOR_VAR + NOISE_VAR);
        for e in evidence {
            assert!((e - closed).abs() < 1e-9, "{e} vs {closed}");
        }
    }
}
