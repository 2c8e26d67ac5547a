//! One full OT-CFM training iteration at TorchCFM's 2-D settings (batch 256, 3×64 SELU MLP,
//! Adam): draw source and target batches, exact OT permutation, path sample, forward, backward,
//! Adam update. Also each part alone, so the split of the time is visible.
//!
//! `cargo bench --bench otcfm_iteration -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, criterion_group, criterion_main};
use flow_matching::autograd::{Adam, AdamConfig, Grads, Mlp, MlpConfig, Optimizer};
use flow_matching::data::Dataset;
use flow_matching::train::{ArchConfig, MatcherSpec, Objective, TrainParams, Trainer};
use std::hint::black_box;

fn trainer(matcher: &str, batch: usize) -> Trainer {
    let target = Dataset::parse("moons", None).unwrap();
    let source = Dataset::parse("gaussian", Some(2)).unwrap();
    let spec = MatcherSpec::parse(matcher, Some(0.1), None, None).unwrap();
    let params = TrainParams::default().batch(batch).check().unwrap();
    Trainer::new(
        source,
        target,
        spec,
        Objective::Flow,
        ArchConfig::default(),
        params,
    )
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("otcfm_iteration");
    for matcher in ["otcfm", "icfm"] {
        let tr = trainer(matcher, 256);
        let mut mlp = Mlp::new(
            &MlpConfig::default(),
            &mut flow_matching::core::rng::seeded(0),
        )
        .unwrap();
        let mut adam = Adam::new(AdamConfig::default()).unwrap();
        let mut grads = Grads::zeros(&mlp);
        let mut k = 0;
        g.bench_function(format!("{matcher}_full_step_b256"), |b| {
            b.iter(|| {
                let batch = tr.batch(k).unwrap();
                k += 1;
                let loss = mlp
                    .loss_and_grad_into(
                        batch.t.view(),
                        batch.x_t.view(),
                        batch.target.view(),
                        &mut grads,
                    )
                    .unwrap();
                adam.step(&mut mlp, &grads).unwrap();
                black_box(loss)
            })
        });
        let mut k = 0;
        g.bench_function(format!("{matcher}_batch_only_b256"), |b| {
            b.iter(|| {
                k += 1;
                black_box(tr.batch(k).unwrap())
            })
        });
    }
    let tr = trainer("otcfm", 256);
    let batch = tr.batch(0).unwrap();
    let mut mlp = Mlp::new(
        &MlpConfig::default(),
        &mut flow_matching::core::rng::seeded(0),
    )
    .unwrap();
    let mut adam = Adam::new(AdamConfig::default()).unwrap();
    let mut grads = Grads::zeros(&mlp);
    g.bench_function("gradient_and_adam_only_b256", |b| {
        b.iter(|| {
            let loss = mlp
                .loss_and_grad_into(
                    batch.t.view(),
                    batch.x_t.view(),
                    batch.target.view(),
                    &mut grads,
                )
                .unwrap();
            adam.step(&mut mlp, &grads).unwrap();
            black_box(loss)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
