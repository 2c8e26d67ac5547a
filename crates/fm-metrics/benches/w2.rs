//! W2 by exact assignment at n = 1000, 2000 and 10 000 (2-D standard normal against 8 Gaussians-like shifted normals).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn bench_w2(c: &mut Criterion) {
    let mut group = c.benchmark_group("w2");
    group.sample_size(10);
    let normal = fm_core::StandardNormal::new(2).unwrap();
    for n in [1000usize, 2000, 10_000] {
        let mut rng = fm_core::rng::seeded(n as u64);
        let a = normal.sample(n, &mut rng);
        let b = normal.sample(n, &mut rng) * 2.0 + 1.0;
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            bench.iter(|| fm_metrics::w2(black_box(a.view()), black_box(b.view())).unwrap())
        });
    }
    group.finish();
}

fn bench_cost_only(c: &mut Criterion) {
    // The cost matrix alone, to split the W2 time into cost and assignment.
    let normal = fm_core::StandardNormal::new(2).unwrap();
    let mut rng = fm_core::rng::seeded(10_000);
    let a = normal.sample(10_000, &mut rng);
    let b = normal.sample(10_000, &mut rng) * 2.0 + 1.0;
    let mut group = c.benchmark_group("sq_euclidean_cost");
    group.sample_size(10);
    group.bench_function("10000", |bench| {
        bench.iter(|| {
            fm_couplings::sq_euclidean_cost(black_box(a.view()), black_box(b.view())).unwrap()
        })
    });
    group.finish();
}

fn bench_mmd(c: &mut Criterion) {
    let normal = fm_core::StandardNormal::new(2).unwrap();
    let mut rng = fm_core::rng::seeded(1);
    let a = normal.sample(2000, &mut rng);
    let b = normal.sample(2000, &mut rng) + 0.5;
    let mut group = c.benchmark_group("mmd_rbf");
    group.sample_size(10);
    group.bench_function("2000x2000, 3 bandwidths", |bench| {
        bench.iter(|| {
            fm_metrics::mmd_rbf(black_box(a.view()), black_box(b.view()), &[0.5, 1.0, 2.0]).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_w2, bench_cost_only, bench_mmd);
criterion_main!(benches);
