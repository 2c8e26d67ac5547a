//! Train OT-CFM from N(0, I) to the moons, sample it and measure W2 — the library's main job in
//! about thirty lines (`fm demo` does the same from the command line, with plots).
//!
//! `cargo run --release --example train_moons`

use flow_matching::data::Dataset;
use flow_matching::metrics::w2;
use flow_matching::train::{
    ArchConfig, MatcherSpec, Objective, SampleOptions, TrainParams, Trainer, sample,
};

fn main() -> anyhow::Result<()> {
    let target = Dataset::parse("moons", None)?;
    let source = Dataset::parse("gaussian", Some(target.dim()))?;
    // TorchCFM's settings: σ = 0.1, batch 256, Adam lr 1e-3, 3×64 SELU MLP.
    let matcher = MatcherSpec::parse("otcfm", Some(0.1), None, None)?;
    let params = TrainParams::default()
        .steps(2000)
        .batch(256)
        .seed(0)
        .check()?;
    let trainer = Trainer::new(
        source,
        target.clone(),
        matcher,
        Objective::Flow,
        ArchConfig::default(),
        params,
    )?;
    let out = trainer.run(&mut |p| {
        if p.step % 500 == 0 {
            println!("step {:>5}  loss {:.4}", p.step, p.loss);
        }
    })?;
    println!(
        "trained {} steps in {:.2} s",
        out.steps_run, out.wall_seconds
    );

    // 2,000 samples with 100 Euler steps against 2,000 fresh target points.
    let opts = SampleOptions {
        n: 2000,
        steps: Some(100),
        seed: 1,
        ..Default::default()
    };
    let (_, solution) = sample(&out.model, &opts)?;
    let fresh = target.sample(2000, &mut flow_matching::core::rng::seeded(2))?;
    println!("W2 = {:.4}", w2(solution.x.view(), fresh.view())?);

    let path = std::env::temp_dir().join("train_moons.safetensors");
    out.model.save(&path)?;
    println!("model written to {}", path.display());
    Ok(())
}
