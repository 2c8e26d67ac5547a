//! Flow-matching posterior estimation (FMPE, Wildberger et al. 2023) on sbibm's two moons:
//! simulate `(θ, x)` pairs, train a conditional flow `p(θ | x)` from N(0, I) with the
//! independent coupling and z-scoring, sample the posterior at observation 1 and compare it with
//! the reference posterior by a classifier two-sample test (C2ST: 0.5 means indistinguishable).
//!
//! `cargo run --example sbi_two_moons`

use flow_matching::data::{Dataset, Points};
use flow_matching::metrics::{C2stOptions, c2st};
use flow_matching::train::{
    ArchConfig, ConditionOptions, Context, MatcherSpec, Objective, SampleOptions, TrainParams,
    Trainer, sample_conditional,
};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let task = flow_matching::sbi::task("two_moons")?;
    let mut rng = flow_matching::core::rng::seeded(1);
    let (theta, x) = task.simulate_pairs(10_000, &mut rng)?;
    let x_obs = task.observation(1)?;
    let reference = task.reference_posterior(1, 1000, &mut rng)?;
    println!(
        "two_moons: {} simulations, observation 1 = {x_obs}",
        theta.nrows()
    );

    let target = Dataset::Points(Points::new("theta", theta)?);
    let source = Dataset::parse("gaussian", Some(2))?;
    let matcher = MatcherSpec::parse("icfm", Some(0.0), None, None)?;
    let params = TrainParams::default()
        .steps(2000)
        .batch(256)
        .lr(1e-3)
        .seed(0)
        .check()?;
    let arch = ArchConfig {
        hidden: vec![64, 64, 64],
        ..ArchConfig::default()
    };
    let out = Trainer::new(source, target, matcher, Objective::Flow, arch, params)?
        .context(Context::Values(x), ConditionOptions::default())?
        .run(&mut |_| {})?;
    println!(
        "FMPE trained: {} steps in {:.1} s, final loss {:.4}",
        out.steps_run, out.wall_seconds, out.final_loss
    );

    let opts = SampleOptions {
        n: 1000,
        solver: flow_matching::ode::SolverKind::Midpoint,
        steps: Some(50),
        seed: 2,
        ..SampleOptions::default()
    };
    let ctx = Context::Values(x_obs.clone().insert_axis(ndarray::Axis(0)));
    let (_, sol) = sample_conditional(&out.model, &opts, &ctx, None)?;
    let start = Instant::now();
    let result = c2st(sol.x.view(), reference.view(), &C2stOptions::default())?;
    println!(
        "C2ST(posterior samples, reference posterior) = {:.3} over {} + {} points (folds {:?}; {:.1} s)",
        result.accuracy,
        sol.x.nrows(),
        reference.nrows(),
        result
            .fold_accuracies
            .iter()
            .map(|a| (a * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
