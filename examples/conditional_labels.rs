//! A label-conditional flow on 8 Gaussians (one class label per mode): train one network for
//! `p(x | label)` with label dropout, sample every label, and show what the classifier-free
//! guidance scale `w` does (`v = v(x, ∅) + w (v(x, c) − v(x, ∅))`). Writes a PNG of the samples
//! per label to the system's temp directory.
//!
//! `cargo run --example conditional_labels`

use flow_matching::data::{Dataset, Points};
use flow_matching::train::{
    ArchConfig, ConditionOptions, Context, MatcherSpec, Objective, SampleOptions, TrainParams,
    Trainer, sample_conditional,
};
use ndarray::Array2;
use plotters::prelude::*;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

const RADIUS: f64 = 4.0;

fn mode(k: usize) -> [f64; 2] {
    let a = std::f64::consts::TAU * k as f64 / 8.0;
    [RADIUS * a.cos(), RADIUS * a.sin()]
}

/// Index of the mode nearest to `(x, y)`.
fn nearest(x: f64, y: f64) -> usize {
    (0..8)
        .min_by(|&a, &b| {
            let d = |k: usize| (x - mode(k)[0]).powi(2) + (y - mode(k)[1]).powi(2);
            d(a).total_cmp(&d(b))
        })
        .unwrap()
}

fn main() -> anyhow::Result<()> {
    // 8,000 points, std 0.3 around the 8 modes, with their mode as the class label.
    let mut rng = flow_matching::core::rng::seeded(0);
    let n = 8000;
    let labels: Vec<i64> = (0..n).map(|_| rng.random_range(0..8)).collect();
    let x = Array2::from_shape_fn((n, 2), |(i, j)| {
        let e: f64 = StandardNormal.sample(&mut rng);
        mode(labels[i] as usize)[j] + 0.3 * e
    });
    let target = Dataset::Points(Points::new("8 labelled gaussians", x)?);
    let source = Dataset::parse("gaussian", Some(2))?;
    // OT-CFM with exact OT within each label; label dropout 0.1 trains v(x, ∅) as well.
    let matcher = MatcherSpec::parse("otcfm", Some(0.0), None, None)?;
    let params = TrainParams::default()
        .steps(1000)
        .batch(256)
        .lr(2e-3)
        .seed(0)
        .check()?;
    let arch = ArchConfig {
        hidden: vec![64, 64],
        ..ArchConfig::default()
    };
    let out = Trainer::new(source, target, matcher, Objective::Flow, arch, params)?
        .context(Context::Labels(labels), ConditionOptions::default())?
        .run(&mut |_| {})?;
    println!(
        "trained {} steps in {:.1} s, final loss {:.4}",
        out.steps_run, out.wall_seconds, out.final_loss
    );
    let model = out.model;
    let opts = |seed| SampleOptions {
        n: 500,
        solver: flow_matching::ode::SolverKind::Midpoint,
        steps: Some(50),
        seed,
        ..SampleOptions::default()
    };

    // For the data, N(mode, 0.3² I): all in their mode, mean distance 0.3 √(π/2) = 0.376.
    println!("\nlabel  in its mode  mean distance to its mode centre (data: 0.376)");
    let mut per_label = Vec::new();
    for k in 0..8 {
        let (_, sol) = sample_conditional(
            &model,
            &opts(k as u64),
            &Context::Labels(vec![k as i64]),
            None,
        )?;
        let hits = sol
            .x
            .rows()
            .into_iter()
            .filter(|r| nearest(r[0], r[1]) == k)
            .count();
        let dist: f64 = sol
            .x
            .rows()
            .into_iter()
            .map(|r| ((r[0] - mode(k)[0]).powi(2) + (r[1] - mode(k)[1]).powi(2)).sqrt())
            .sum::<f64>()
            / 500.0;
        println!("{k:>5}  {:>10.1} %  {dist:.3}", 100.0 * hits as f64 / 500.0);
        per_label.push(sol.x);
    }

    println!(
        "\nguidance w (label 0)  in mode 0  mean radius  spread (std of the distance to the centre)"
    );
    for w in [0.0, 1.0, 2.0, 4.0] {
        let (_, sol) = sample_conditional(&model, &opts(99), &Context::Labels(vec![0]), Some(w))?;
        let hits = sol
            .x
            .rows()
            .into_iter()
            .filter(|r| nearest(r[0], r[1]) == 0)
            .count();
        let radius: Vec<f64> = sol.x.rows().into_iter().map(|r| r[0].hypot(r[1])).collect();
        let dist: Vec<f64> = sol
            .x
            .rows()
            .into_iter()
            .map(|r| ((r[0] - mode(0)[0]).powi(2) + (r[1] - mode(0)[1]).powi(2)).sqrt())
            .collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let md = mean(&dist);
        let sd = (dist.iter().map(|d| (d - md).powi(2)).sum::<f64>() / dist.len() as f64).sqrt();
        println!(
            "{w:>20.1}  {:>7.1} %  {:>11.3}  {sd:.3}",
            100.0 * hits as f64 / 500.0,
            mean(&radius)
        );
    }

    // A plot of the samples per label (no text, so no font is needed).
    let dir = std::env::temp_dir().join("flow-matching-examples");
    std::fs::create_dir_all(&dir)?;
    let png = dir.join("conditional_labels.png");
    {
        let root = BitMapBackend::new(&png, (600, 600)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .build_cartesian_2d(-6.0f64..6.0, -6.0f64..6.0)?;
        for (k, x) in per_label.iter().enumerate() {
            let colour = Palette99::pick(k).to_rgba();
            chart.draw_series(
                x.rows()
                    .into_iter()
                    .map(|r| Circle::new((r[0], r[1]), 2, colour.filled())),
            )?;
        }
        root.present()?;
    }
    println!("\nsamples per label plotted to {}", png.display());
    Ok(())
}
