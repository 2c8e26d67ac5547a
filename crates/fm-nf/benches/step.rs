//! One maximum-likelihood training step (loss and gradient, no optimizer) of the flows at the
//! architecture of `xtask bench-nflows` and zuko's reference script: moons-like data, batch
//! 256, one thread (nothing here uses rayon).
//!
//! * `coupling_step_b256/fused`: [`CouplingFlow`]'s training pass (hand-written forward and
//!   backward on plain arrays); `coupling_step_b256/tape`: the same loss and gradient by the
//!   `fm-autograd` tape (the path before the fused one), in the same run as the baseline.
//!   8 layers, conditioners 64, 64, SiLU, ActNorm.
//! * `cnf_step_b256/fused`, `cnf_step_b256/tape`: [`CnfMle`] with hidden 64, 64, tanh, RK4
//!   with 8 steps, exact divergence; the hand-written pass through the solve and the tape.
//!
//! `RAYON_NUM_THREADS=1 cargo bench -p fm-nf --bench step -- --warm-up-time 1 --measurement-time 3`
use criterion::{Criterion, criterion_group, criterion_main};
use fm_autograd::Activation;
use fm_nf::{CnfConfig, CnfMle, CouplingConfig, CouplingFlow, MaxLikelihood};
use ndarray::Array2;
use rand::Rng;
use std::hint::black_box;

/// `n` points of two noisy half-circles.
fn moons(n: usize, rng: &mut impl Rng) -> Array2<f64> {
    let mut x = Array2::zeros((n, 2));
    for (i, mut row) in x.rows_mut().into_iter().enumerate() {
        let a = rng.random_range(0.0..std::f64::consts::PI);
        let (cx, cy, sy) = if i % 2 == 0 {
            (0.0, 0.0, 1.0)
        } else {
            (1.0, 0.5, -1.0)
        };
        row[0] = cx + a.cos() * sy + 0.1 * rng.random_range(-1.0..1.0);
        row[1] = cy + a.sin() * sy + 0.1 * rng.random_range(-1.0..1.0);
    }
    x
}

fn coupling(c: &mut Criterion) {
    let mut rng = fm_core::rng::seeded(0);
    let x = moons(256, &mut rng);
    let cfg = CouplingConfig {
        layers: 8,
        hidden: vec![64, 64],
        activation: Activation::Silu,
        ..Default::default()
    };
    let mut flow = CouplingFlow::new(cfg, &mut rng).unwrap();
    flow.prepare(x.view()).unwrap();
    // Away from the identity start (zero last layers): every parameter moved a little.
    for p in flow.params_mut() {
        *p += rng.random_range(-0.05..0.05);
    }
    let mut group = c.benchmark_group("coupling_step_b256");
    group.bench_function("fused", |b| {
        b.iter(|| black_box(flow.nll_and_grad(x.view(), &mut rng).unwrap()))
    });
    group.bench_function("tape", |b| {
        b.iter(|| black_box(flow.nll_and_grad_tape(x.view()).unwrap()))
    });
    group.finish();
}

fn cnf(c: &mut Criterion) {
    let mut rng = fm_core::rng::seeded(0);
    let x = moons(256, &mut rng);
    let cfg = CnfConfig {
        hidden: vec![64, 64],
        solver: "rk4".into(),
        train_steps: 8,
        ..Default::default()
    };
    let flow = CnfMle::new(cfg, &mut rng).unwrap();
    let mut group = c.benchmark_group("cnf_step_b256");
    group.bench_function("fused", |b| {
        b.iter(|| black_box(flow.nll_and_grad(x.view(), &mut rng).unwrap()))
    });
    group.bench_function("tape", |b| {
        b.iter(|| black_box(flow.nll_and_grad_tape(x.view(), &mut rng).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, coupling, cnf);
criterion_main!(benches);
