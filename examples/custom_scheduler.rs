//! A custom scheduler in a few lines, checked by the continuity kit.
//!
//! The scheduler `α_t = sin²(πt/2)`, `σ_t = cos(πt/2)` (a smooth, slow start) becomes a full
//! flow-matching path through `AffineProbPath`: sampling, conditional field, density, score,
//! exact marginals, and `fm_paths::testing::check_path` proves it satisfies the continuity
//! equation. A deliberately wrong derivative is caught by the same kit.
//!
//! Run with `cargo run --example custom_scheduler`.

use flow_matching::paths::testing::{CheckConfig, check_path};
use flow_matching::paths::{
    AffineProbPath, EmpiricalMarginal, ProbPath, Scheduler, SchedulerOutput,
};
use std::f64::consts::FRAC_PI_2;

/// `α_t = sin²(πt/2)`, `σ_t = cos(πt/2)`.
struct SineSquared {
    /// Scale of α' (1.0 is correct; anything else is a bug the kit should catch).
    derivative_scale: f64,
}

impl Scheduler for SineSquared {
    fn at(&self, t: f64) -> SchedulerOutput {
        let (s, c) = (FRAC_PI_2 * t).sin_cos();
        SchedulerOutput {
            alpha_t: s * s,
            sigma_t: c,
            d_alpha_t: self.derivative_scale * 2.0 * s * c * FRAC_PI_2,
            d_sigma_t: -FRAC_PI_2 * s,
        }
    }

    fn boundary(&self) -> flow_matching::paths::Boundary {
        // cos(π/2) rounds to 6e-17 rather than 0.
        flow_matching::paths::Boundary::noise_to_data(0.0).with_tolerance(0.0, 1e-15)
    }
}

fn main() -> anyhow::Result<()> {
    let path = AffineProbPath::new(SineSquared {
        derivative_scale: 1.0,
    });

    // A training batch: x_0 ~ N(0, I) source, x_1 data, one t per row.
    let mut rng = flow_matching::core::rng::seeded(0);
    let x_0 = flow_matching::core::StandardNormal::new(2)?.sample(4, &mut rng);
    let x_1 = ndarray::array![[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]];
    let t = ndarray::array![0.1, 0.4, 0.7, 0.95];
    let batch = path.sample(x_0.view(), x_1.view(), t.view(), &mut rng)?;
    println!("x_t =\n{}\nu_t =\n{}", batch.x_t, batch.u_t);

    // The exact marginal field of this 4-point target, at t = 0.5.
    let marginal = EmpiricalMarginal::target(&path, x_1.view(), None)?;
    println!(
        "u_0.5(0.5, 0.2) = {}",
        marginal.velocity(0.5, ndarray::array![[0.5, 0.2]].view())?
    );

    // The continuity kit: property tests over t, x, z and dimensions 1..=8.
    check_path(&path, &CheckConfig::default())?;
    println!("SineSquared passes the continuity kit");

    let broken = AffineProbPath::new(SineSquared {
        derivative_scale: 1.01,
    });
    match check_path(&broken, &CheckConfig::default()) {
        Err(e) => {
            let msg: String = e.to_string().chars().take(120).collect();
            println!("a 1% wrong α' is caught: {msg}…");
        }
        Ok(()) => anyhow::bail!("the kit missed a wrong derivative"),
    }
    Ok(())
}
