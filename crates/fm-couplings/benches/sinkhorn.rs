//! Log-domain Sinkhorn on squared Euclidean costs between N(0, I) and N((2, 0), I) in 2-D,
//! normalised by the max (so ε is relative to the largest cost), default tolerance 1e-9 and
//! at most 1000 iterations; the default kernel-scaling iteration against the plain log-domain one.
//!
//! `cargo bench -p fm-couplings --bench sinkhorn -- --warm-up-time 1 --measurement-time 3`
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fm_core::StandardNormal;
use fm_couplings::{
    SinkhornParams, sinkhorn_log_domain, sinkhorn_uniform, sq_euclidean_cost_normalized,
};
use ndarray::Array1;
use std::hint::black_box;

fn bench_sinkhorn(c: &mut Criterion) {
    let mut group = c.benchmark_group("sinkhorn");
    group.sample_size(10);
    for n in [256usize, 1024] {
        let mut rng = fm_core::rng::seeded(5 + n as u64);
        let normal = StandardNormal::new(2).unwrap();
        let x_0 = normal.sample(n, &mut rng);
        let mut x_1 = normal.sample(n, &mut rng);
        x_1.column_mut(0).mapv_inplace(|v| v + 2.0);
        let cost = sq_euclidean_cost_normalized(x_0.view(), x_1.view()).unwrap();
        for eps in [0.05, 0.5] {
            let params = SinkhornParams::with_epsilon(eps);
            let probe = sinkhorn_uniform(cost.view(), &params).unwrap();
            eprintln!(
                "sinkhorn n={n} eps={eps}: {} iterations, error {:.2e}, converged {}",
                probe.iterations, probe.error, probe.converged
            );
            group.bench_with_input(
                BenchmarkId::new(format!("eps={eps}"), n),
                &cost,
                |b, cost| b.iter(|| sinkhorn_uniform(black_box(cost.view()), &params).unwrap()),
            );
            // The plain log-domain iteration, as the in-run baseline.
            let (wa, wb) = (
                Array1::from_elem(n, 1.0 / n as f64),
                Array1::from_elem(n, 1.0 / n as f64),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("log-domain/eps={eps}"), n),
                &cost,
                |b, cost| {
                    b.iter(|| {
                        sinkhorn_log_domain(black_box(cost.view()), wa.view(), wb.view(), &params)
                            .unwrap()
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench_sinkhorn);
criterion_main!(benches);
