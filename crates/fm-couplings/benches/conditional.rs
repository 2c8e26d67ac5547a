//! Conditional couplings on one training batch: 8 Gaussians (std 0.56 on the circle of radius 5),
//! one label per mode, against N(0, I) in 2-D, n ∈ {256, 1024}.
//!
//! `naive-ot` = exact OT ignoring the labels (biased; the baseline cost of OT-CFM),
//! `label-ot` = [`LabelOtCoupling`] (8 assignments of about n / 8),
//! `conditional-ot` = [`ConditionalOtCoupling`] with β = 100 on the label as a 1-D context
//! (one n × n assignment on the joint cost).
//!
//! `cargo bench -p fm-couplings --bench conditional -- --warm-up-time 1 --measurement-time 3`
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fm_core::StandardNormal;
use fm_couplings::{
    ConditionalCoupling, ConditionalOtCoupling, ExactOtCoupling, IgnoreContext, LabelOtCoupling,
};
use ndarray::Array2;
use rand::Rng;
use std::hint::black_box;

fn batch(n: usize, seed: u64) -> (Array2<f64>, Array2<f64>, Array2<f64>) {
    let mut rng = fm_core::rng::seeded(seed);
    let normal = StandardNormal::new(2).unwrap();
    let x_0 = normal.sample(n, &mut rng);
    let noise = normal.sample(n, &mut rng);
    let mut x_1 = Array2::zeros((n, 2));
    let mut c_1 = Array2::zeros((n, 1));
    for i in 0..n {
        let k = rng.random_range(0..8);
        let a = k as f64 * std::f64::consts::FRAC_PI_4;
        x_1[[i, 0]] = 5.0 * a.cos() + 0.56 * noise[[i, 0]];
        x_1[[i, 1]] = 5.0 * a.sin() + 0.56 * noise[[i, 1]];
        c_1[[i, 0]] = k as f64;
    }
    (x_0, x_1, c_1)
}

fn bench_conditional(c: &mut Criterion) {
    let couplings: Vec<(&str, Box<dyn ConditionalCoupling>)> = vec![
        (
            "naive-ot",
            Box::new(IgnoreContext(ExactOtCoupling::default())),
        ),
        ("label-ot", Box::new(LabelOtCoupling::default())),
        (
            "conditional-ot",
            Box::new(ConditionalOtCoupling::new(100.0).unwrap()),
        ),
    ];
    let mut group = c.benchmark_group("conditional/8gaussians");
    for n in [256usize, 1024] {
        let (x_0, x_1, c_1) = batch(n, 3 + n as u64);
        if n >= 1024 {
            group.sample_size(10);
        }
        for (name, coupling) in &couplings {
            let mut rng = fm_core::rng::seeded(1);
            group.bench_with_input(BenchmarkId::new(*name, n), &n, |b, _| {
                b.iter(|| {
                    coupling
                        .pair_conditional(black_box(x_0.view()), x_1.view(), c_1.view(), &mut rng)
                        .unwrap()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_conditional);
criterion_main!(benches);
