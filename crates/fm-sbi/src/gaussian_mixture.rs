use crate::task::{LN_SQRT_2PI, UniformBox, rejection};
use crate::{Result, Task};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use rand::{Rng, RngCore};
use rand_distr::StandardNormal;

const PRIOR: UniformBox = UniformBox {
    low: -10.0,
    high: 10.0,
    dim: 2,
};
/// The standard deviations of the two components; each has weight ½.
const SCALES: [f64; 2] = [1.0, 0.1];

/// sbibm's `gaussian_mixture` (Sisson et al., 2007; Lueckmann et al., 2021): θ ∈ ℝ², x ∈ ℝ².
///
/// * Prior: `θ ~ U([−10, 10]²)`.
/// * Simulator: `x ~ ½ N(θ, I) + ½ N(θ, 0.01 I)`.
/// * Reference posterior (exact): the likelihood is symmetric in `x − θ`, so the posterior is
///   the same mixture centred at `x`, truncated to the prior box: draw from it and reject
///   draws outside the box.
///
/// ```
/// use fm_sbi::{GaussianMixture, Task};
/// let mut rng = fm_core::rng::seeded(0);
/// let post = GaussianMixture.reference_posterior(1, 500, &mut rng)?;
/// // Observation 1 lies near the edge θ₁ = −10: no draw crosses it.
/// assert!(post.column(0).iter().all(|&t| t >= -10.0));
/// # Ok::<(), fm_sbi::SbiError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GaussianMixture;

fn log_mixture(x: ArrayView1<f64>, theta: ArrayView1<f64>) -> f64 {
    let sq: f64 = x.iter().zip(theta).map(|(a, b)| (a - b) * (a - b)).sum();
    let d = x.len() as f64;
    let terms = SCALES.map(|s| (0.5f64).ln() - 0.5 * sq / (s * s) - d * (LN_SQRT_2PI + s.ln()));
    let m = terms[0].max(terms[1]);
    m + ((terms[0] - m).exp() + (terms[1] - m).exp()).ln()
}

fn draw_component(rng: &mut dyn RngCore) -> f64 {
    SCALES[usize::from(rng.random_bool(0.5))]
}

impl Task for GaussianMixture {
    fn name(&self) -> &'static str {
        "gaussian_mixture"
    }
    fn theta_dim(&self) -> usize {
        2
    }
    fn x_dim(&self) -> usize {
        2
    }
    fn observations(&self) -> &'static [&'static [f64]] {
        // sbibm's files/num_observation_{1,2,3}/observation.csv.
        &[
            &[-9.472713, -1.4950509],
            &[-2.940192, -8.682056],
            &[7.1683364, -3.0470583],
        ]
    }
    fn draw_prior(&self, n: usize, rng: &mut dyn RngCore) -> Array2<f64> {
        PRIOR.draw(n, rng)
    }
    fn prior_log_prob_unchecked(&self, theta: ArrayView2<f64>) -> Array1<f64> {
        PRIOR.log_prob(theta)
    }
    fn simulate_unchecked(&self, theta: ArrayView2<f64>, rng: &mut dyn RngCore) -> Array2<f64> {
        let mut x = theta.to_owned();
        for mut row in x.rows_mut() {
            let s = draw_component(rng);
            row.mapv_inplace(|t| t + s * rng.sample::<f64, _>(StandardNormal));
        }
        x
    }
    fn log_likelihood_unchecked(&self, theta: ArrayView2<f64>, x: ArrayView1<f64>) -> Array1<f64> {
        theta
            .rows()
            .into_iter()
            .map(|t| log_mixture(x, t))
            .collect()
    }
    fn reference_posterior_unchecked(
        &self,
        x: ArrayView1<f64>,
        n: usize,
        rng: &mut dyn RngCore,
    ) -> Result<Array2<f64>> {
        rejection(self.name(), 2, n, rng, |rng, out| {
            let s = draw_component(rng);
            for (o, &xi) in out.iter_mut().zip(x) {
                *o = xi + s * rng.sample::<f64, _>(StandardNormal);
            }
            PRIOR.contains(ArrayView1::from(&*out))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn likelihood_matches_the_two_gaussians_written_out() {
        let theta = array![[0.5, -1.0]];
        let x = array![0.7, -1.1];
        let sq: f64 = 0.2 * 0.2 + 0.1 * 0.1;
        let two_pi = 2.0 * std::f64::consts::PI;
        let p = 0.5 * (-0.5 * sq).exp() / two_pi + 0.5 * (-0.5 * sq / 0.01).exp() / (two_pi * 0.01);
        let ll = GaussianMixture
            .log_likelihood(theta.view(), x.view())
            .unwrap()[0];
        assert!((ll - p.ln()).abs() < 1e-12, "{ll} vs {}", p.ln());
    }
}
