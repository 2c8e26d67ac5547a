//! Large square assignments, as `fm-metrics` computes W2: n samples of N(0, I) against n
//! samples of N((1, 1), 4 I) in 2-D, squared Euclidean costs, n ∈ {2000, 10 000}; the default
//! solver against the previous one (`jv-auction`) on the same matrix. Ten samples each.
//!
//! `cargo bench -p fm-couplings --bench large -- --warm-up-time 1 --measurement-time 3`
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fm_core::StandardNormal;
use fm_couplings::{AssignmentSolver, sq_euclidean_cost};
use std::hint::black_box;

fn bench_large(c: &mut Criterion) {
    let mut group = c.benchmark_group("large");
    group.sample_size(10);
    let normal = StandardNormal::new(2).unwrap();
    for n in [2000usize, 10_000] {
        let mut rng = fm_core::rng::seeded(n as u64);
        let a = normal.sample(n, &mut rng);
        let b = normal.sample(n, &mut rng) * 2.0 + 1.0;
        let cost = sq_euclidean_cost(a.view(), b.view()).unwrap();
        for solver in [AssignmentSolver::Jv, AssignmentSolver::JvAuction] {
            group.bench_with_input(BenchmarkId::new(solver.name(), n), &cost, |bch, cost| {
                bch.iter(|| solver.solve(black_box(cost.view())).unwrap())
            });
        }
        if n == 10_000 {
            group.bench_function("sq_euclidean_cost/10000", |bch| {
                bch.iter(|| sq_euclidean_cost(black_box(a.view()), black_box(b.view())).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_large);
criterion_main!(benches);
