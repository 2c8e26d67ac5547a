use crate::task::{LN_SQRT_2PI, UniformBox, rejection};
use crate::{Result, Task};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use rand::{Rng, RngCore};
use rand_distr::StandardNormal;
use std::f64::consts::{FRAC_1_SQRT_2, FRAC_PI_2, PI};

const PRIOR: UniformBox = UniformBox {
    low: -1.0,
    high: 1.0,
    dim: 2,
};
const R_LOC: f64 = 0.1;
const R_SCALE: f64 = 0.01;
const OFFSET: f64 = 0.25;

/// sbibm's `two_moons` (Greenberg et al., 2019; Lueckmann et al., 2021): θ ∈ ℝ², x ∈ ℝ².
///
/// * Prior: `θ ~ U([−1, 1]²)`.
/// * Simulator: `a ~ U(−π/2, π/2)`, `r ~ N(0.1, 0.01²)`, `p = (r cos a + 0.25, r sin a)`,
///   `x = p + (−|θ₁ + θ₂| / √2, (θ₂ − θ₁) / √2)`.
/// * Likelihood: with `(u, v) = x − (−|θ₁ + θ₂|/√2, (θ₂ − θ₁)/√2) − (0.25, 0)` and
///   `ρ = √(u² + v²)`, the density of `p` is `N(±ρ; 0.1, 0.01²) / (π ρ)` (`+` for `u > 0`: the
///   polar change of variables; `−` covers the negligible `r < 0` draws).
/// * Reference posterior (exact): draw `p` from the simulator, set
///   `q = (p₁ − x₁, x₂ − p₂)`, keep it only if `q₁ ≥ 0` (otherwise no θ maps to `x`), flip the
///   sign of `q₁` with probability ½ (the two branches of `|·|`), rotate by π/4 to
///   `θ = ((q₁ − q₂)/√2, (q₁ + q₂)/√2)` and reject θ outside the prior. The map has unit
///   Jacobian on each branch, so the accepted θ have density ∝ prior × likelihood. sbibm's
///   sampler is the same without the `q₁ ≥ 0` check, which never fails for its observations.
///
/// ```
/// use fm_sbi::{Task, TwoMoons};
/// let mut rng = fm_core::rng::seeded(1);
/// let post = TwoMoons.reference_posterior(1, 1000, &mut rng)?;
/// let x = TwoMoons.observation(1)?;
/// // Every reference draw has a finite likelihood for the observation.
/// let ll = TwoMoons.log_likelihood(post.view(), x.view())?;
/// assert!(ll.iter().all(|l| l.is_finite()));
/// # Ok::<(), fm_sbi::SbiError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TwoMoons;

/// The shift `(−|θ₁ + θ₂|/√2, (θ₂ − θ₁)/√2)` the simulator adds to `p`.
fn shift(t0: f64, t1: f64) -> (f64, f64) {
    (
        -((t0 + t1) * FRAC_1_SQRT_2).abs(),
        (t1 - t0) * FRAC_1_SQRT_2,
    )
}

fn draw_p(rng: &mut dyn RngCore) -> (f64, f64) {
    let a = rng.random_range(-FRAC_PI_2..FRAC_PI_2);
    let z: f64 = rng.sample(StandardNormal);
    let r = R_LOC + R_SCALE * z;
    (r * a.cos() + OFFSET, r * a.sin())
}

impl Task for TwoMoons {
    fn name(&self) -> &'static str {
        "two_moons"
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
            &[-0.6396706, 0.16234657],
            &[-0.5676688, -0.33194834],
            &[0.0030109584, -0.6457662],
        ]
    }
    fn draw_prior(&self, n: usize, rng: &mut dyn RngCore) -> Array2<f64> {
        PRIOR.draw(n, rng)
    }
    fn prior_log_prob_unchecked(&self, theta: ArrayView2<f64>) -> Array1<f64> {
        PRIOR.log_prob(theta)
    }
    fn simulate_unchecked(&self, theta: ArrayView2<f64>, rng: &mut dyn RngCore) -> Array2<f64> {
        let mut x = Array2::zeros((theta.nrows(), 2));
        for (t, mut x) in theta.rows().into_iter().zip(x.rows_mut()) {
            let (p0, p1) = draw_p(rng);
            let (s0, s1) = shift(t[0], t[1]);
            x[0] = p0 + s0;
            x[1] = p1 + s1;
        }
        x
    }
    fn log_likelihood_unchecked(&self, theta: ArrayView2<f64>, x: ArrayView1<f64>) -> Array1<f64> {
        theta
            .rows()
            .into_iter()
            .map(|t| {
                let (s0, s1) = shift(t[0], t[1]);
                let (u, v) = (x[0] - s0 - OFFSET, x[1] - s1);
                let rho = u.hypot(v);
                let r = if u > 0.0 { rho } else { -rho };
                let z = (r - R_LOC) / R_SCALE;
                -0.5 * z * z - LN_SQRT_2PI - R_SCALE.ln() - PI.ln() - rho.ln()
            })
            .collect()
    }
    fn reference_posterior_unchecked(
        &self,
        x: ArrayView1<f64>,
        n: usize,
        rng: &mut dyn RngCore,
    ) -> Result<Array2<f64>> {
        let (x0, x1) = (x[0], x[1]);
        rejection(self.name(), 2, n, rng, |rng, out| {
            let (p0, p1) = draw_p(rng);
            let (mut q0, q1) = (p0 - x0, x1 - p1);
            if q0 < 0.0 {
                return false;
            }
            if rng.random_bool(0.5) {
                q0 = -q0;
            }
            out[0] = (q0 - q1) * FRAC_1_SQRT_2;
            out[1] = (q0 + q1) * FRAC_1_SQRT_2;
            PRIOR.contains(ArrayView1::from(&*out))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn simulating_a_reference_draw_can_reproduce_the_observation() {
        // The inverse map of the reference sampler is exact: x − shift(θ) is a point p of the
        // moon, at distance ≈ 0.1 from (0.25, 0) on its right half.
        let mut rng = fm_core::rng::seeded(5);
        let x = TwoMoons.observation(3).unwrap();
        let post = TwoMoons.reference_posterior(3, 500, &mut rng).unwrap();
        for t in post.rows() {
            let (s0, s1) = shift(t[0], t[1]);
            let (u, v) = (x[0] - s0 - OFFSET, x[1] - s1);
            assert!(u >= 0.0, "u = {u}");
            assert!((u.hypot(v) - R_LOC).abs() < 6.0 * R_SCALE);
        }
    }

    #[test]
    fn likelihood_is_a_density_in_x() {
        // Riemann sum of p(x | θ) over a grid covering the moon: integrates to 1.
        let theta = array![[0.3, -0.6]];
        let (h, lo0, lo1) = (0.0015, -0.3, -0.8);
        let mut total = 0.0;
        for i in 0..400 {
            for j in 0..400 {
                let x = array![lo0 + h * (i as f64 + 0.5), lo1 + h * (j as f64 + 0.5)];
                total += TwoMoons.log_likelihood(theta.view(), x.view()).unwrap()[0].exp();
            }
        }
        total *= h * h;
        assert!((total - 1.0).abs() < 0.01, "∫ p(x | θ) dx = {total}");
    }
}
