//! Sampling throughput of the paths (batch of 4096 × 2 like a training step, and a large batch
//! that takes the rayon branch).

use criterion::{Criterion, criterion_group, criterion_main};
use fm_paths::{AffineProbPath, LinearPath, ProbPath, SchrodingerBridgePath, VpScheduler};
use ndarray::{Array1, Array2};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    for (n, d) in [(4096usize, 2usize), (65_536, 8)] {
        let mut rng = fm_core::rng::seeded(0);
        let x_0 = Array2::from_shape_fn((n, d), |(i, j)| ((i * 7 + j) % 13) as f64 * 0.1);
        let x_1 = Array2::from_shape_fn((n, d), |(i, j)| ((i * 3 + j) % 11) as f64 * 0.2);
        let t = Array1::from_shape_fn(n, |i| (i as f64 + 0.5) / n as f64);
        let linear = LinearPath::new(0.1).unwrap();
        let bridge = SchrodingerBridgePath::new(1.0).unwrap();
        let vp = AffineProbPath::new(VpScheduler::default());
        c.bench_function(&format!("linear sample {n}x{d}"), |b| {
            b.iter(|| {
                black_box(
                    linear
                        .sample(x_0.view(), x_1.view(), t.view(), &mut rng)
                        .unwrap(),
                )
            })
        });
        c.bench_function(&format!("bridge sample {n}x{d}"), |b| {
            b.iter(|| {
                black_box(
                    bridge
                        .sample(x_0.view(), x_1.view(), t.view(), &mut rng)
                        .unwrap(),
                )
            })
        });
        c.bench_function(&format!("vp sample {n}x{d}"), |b| {
            b.iter(|| {
                black_box(
                    vp.sample(x_0.view(), x_1.view(), t.view(), &mut rng)
                        .unwrap(),
                )
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
