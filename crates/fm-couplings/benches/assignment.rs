//! Exact assignment solvers on squared Euclidean costs between two Gaussian batches in 2-D.
//!
//! Instances: `shifted` = n samples of N(0, I) against n samples of N((2, 0), I);
//! `same` = N(0, I) against N(0, I). Sizes n ∈ {64, 256, 1024, 2048}.
//! Solvers: `jv` (default), `jv-auction` (the previous default, baseline), `hungarian`.
//! The `pathfinding` reference (Kuhn–Munkres, O(n³)) is skipped at n = 2048 (O(n³): about 20 s a call here, 2.3 s at n = 1024).
//!
//! `cargo bench -p fm-couplings --bench assignment -- --warm-up-time 1 --measurement-time 3`
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fm_core::StandardNormal;
use fm_couplings::{AssignmentSolver, sq_euclidean_cost};
use ndarray::Array2;
use std::hint::black_box;

fn instance(n: usize, shift: f64, seed: u64) -> Array2<f64> {
    let mut rng = fm_core::rng::seeded(seed);
    let normal = StandardNormal::new(2).unwrap();
    let x_0 = normal.sample(n, &mut rng);
    let mut x_1 = normal.sample(n, &mut rng);
    x_1.column_mut(0).mapv_inplace(|v| v + shift);
    sq_euclidean_cost(x_0.view(), x_1.view()).unwrap()
}

fn bench_assignment(c: &mut Criterion) {
    for (name, shift) in [("shifted", 2.0), ("same", 0.0)] {
        let mut group = c.benchmark_group(format!("assignment/{name}"));
        for n in [64usize, 256, 1024, 2048] {
            let cost = instance(n, shift, 17 + n as u64);
            if n >= 1024 {
                group.sample_size(10);
            }
            for &solver in AssignmentSolver::ALL {
                if solver == AssignmentSolver::Hungarian && n > 1024 {
                    continue;
                }
                group.bench_with_input(BenchmarkId::new(solver.name(), n), &cost, |b, cost| {
                    b.iter(|| solver.solve(black_box(cost.view())).unwrap())
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench_assignment);
criterion_main!(benches);
