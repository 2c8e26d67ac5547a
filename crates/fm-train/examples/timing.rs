//! Rough split of one training step's time (`cargo run --release -p fm-train --example timing`).
use fm_autograd::{Adam, AdamConfig, Grads, Mlp, MlpConfig, Optimizer};
use fm_data::Dataset;
use fm_train::{ArchConfig, MatcherSpec, Objective, TrainParams, Trainer, batch_rng};
use std::time::Instant;

fn main() {
    let n = 500;
    let target = Dataset::parse("moons", None).unwrap();
    let source = Dataset::parse("gaussian", Some(2)).unwrap();
    let t0 = Instant::now();
    for k in 0..n {
        let mut rng = batch_rng(0, k);
        let _ = source.sample(256, &mut rng).unwrap();
        let _ = target.sample(256, &mut rng).unwrap();
    }
    println!(
        "data: {:.3} ms/step",
        t0.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    let mut rng = batch_rng(0, 0);
    let x0 = source.sample(256, &mut rng).unwrap();
    let x1 = target.sample(256, &mut rng).unwrap();
    let t0 = Instant::now();
    for _ in 0..n {
        let c = fm_couplings::sq_euclidean_cost(x0.view(), x1.view()).unwrap();
        let _ = fm_couplings::assignment(c.view()).unwrap();
    }
    println!(
        "ot (same batch): {:.3} ms/step",
        t0.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    let t0 = Instant::now();
    for k in 0..n {
        let mut rng = batch_rng(0, k);
        let x0 = source.sample(256, &mut rng).unwrap();
        let x1 = target.sample(256, &mut rng).unwrap();
        let c = fm_couplings::sq_euclidean_cost(x0.view(), x1.view()).unwrap();
        let _ = fm_couplings::assignment(c.view()).unwrap();
    }
    println!(
        "data+ot (fresh batches): {:.3} ms/step",
        t0.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    for m in ["otcfm", "icfm"] {
        let spec = MatcherSpec::parse(m, Some(0.1), None, None).unwrap();
        let tr = Trainer::new(
            source.clone(),
            target.clone(),
            spec,
            Objective::Flow,
            ArchConfig::default(),
            TrainParams::default().check().unwrap(),
        )
        .unwrap();
        let t0 = Instant::now();
        for k in 0..n {
            let _ = tr.batch(k).unwrap();
        }
        println!(
            "{m} batch: {:.3} ms/step",
            t0.elapsed().as_secs_f64() * 1e3 / n as f64
        );
    }
    let spec = MatcherSpec::parse("icfm", Some(0.1), None, None).unwrap();
    let tr = Trainer::new(
        source.clone(),
        target.clone(),
        spec,
        Objective::Flow,
        ArchConfig::default(),
        TrainParams::default().check().unwrap(),
    )
    .unwrap();
    let b = tr.batch(0).unwrap();
    let mut mlp = Mlp::new(&MlpConfig::default(), &mut fm_core::rng::seeded(0)).unwrap();
    let mut adam = Adam::new(AdamConfig::default()).unwrap();
    let mut g = Grads::zeros(&mlp);
    let t0 = Instant::now();
    for _ in 0..n {
        mlp.loss_and_grad_into(b.t.view(), b.x_t.view(), b.target.view(), &mut g)
            .unwrap();
        adam.step(&mut mlp, &g).unwrap();
    }
    println!(
        "grad+adam: {:.3} ms/step",
        t0.elapsed().as_secs_f64() * 1e3 / n as f64
    );
}
