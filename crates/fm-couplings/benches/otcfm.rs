//! The OT-CFM training hot path: one exact assignment per training step between a batch of
//! N(0, I) and a batch of a 2-D toy set, on squared Euclidean costs, n ∈ {256, 512}.
//!
//! Instances: `moons` = N(0, I) against two moons (sklearn-style, noise 0.1) scaled ×2;
//! `8gaussians` = N(0, I) against 8 Gaussians of std 0.56 centred on a circle of radius 5.
//! Every solver variant runs on the same matrices, so the ratios are measured in one run.
//!
//! `cargo bench -p fm-couplings --bench otcfm -- --warm-up-time 1 --measurement-time 3`
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fm_core::StandardNormal;
use fm_couplings::{AssignmentSolver, sq_euclidean_cost};
use ndarray::Array2;
use rand::Rng;
use rand_distr::{Distribution, Normal};
use std::hint::black_box;

/// sklearn's `make_moons` (outer and inner half circles, Gaussian noise 0.1) scaled by 2.
fn moons(n: usize, rng: &mut impl Rng) -> Array2<f64> {
    let noise = Normal::new(0.0, 0.1).unwrap();
    let mut x = Array2::zeros((n, 2));
    for i in 0..n {
        let t = std::f64::consts::PI * rng.random::<f64>();
        let (a, b) = if i < n / 2 {
            (t.cos(), t.sin())
        } else {
            (1.0 - t.cos(), 0.5 - t.sin())
        };
        x[[i, 0]] = 2.0 * (a + noise.sample(rng));
        x[[i, 1]] = 2.0 * (b + noise.sample(rng));
    }
    x
}

/// 8 Gaussians of std 0.56 centred on the circle of radius 5.
fn eight_gaussians(n: usize, rng: &mut impl Rng) -> Array2<f64> {
    let noise = Normal::new(0.0, 0.56).unwrap();
    let mut x = Array2::zeros((n, 2));
    for i in 0..n {
        let k = rng.random_range(0..8) as f64;
        let a = k * std::f64::consts::FRAC_PI_4;
        x[[i, 0]] = 5.0 * a.cos() + noise.sample(rng);
        x[[i, 1]] = 5.0 * a.sin() + noise.sample(rng);
    }
    x
}

fn instance(name: &str, n: usize, seed: u64) -> Array2<f64> {
    let mut rng = fm_core::rng::seeded(seed);
    let x_0 = StandardNormal::new(2).unwrap().sample(n, &mut rng);
    let x_1 = match name {
        "moons" => moons(n, &mut rng),
        _ => eight_gaussians(n, &mut rng),
    };
    sq_euclidean_cost(x_0.view(), x_1.view()).unwrap()
}

fn bench_otcfm(c: &mut Criterion) {
    for name in ["moons", "8gaussians"] {
        let mut group = c.benchmark_group(format!("otcfm/{name}"));
        for n in [256usize, 512] {
            // Several batches per iteration, as in training: each is a fresh draw.
            let costs: Vec<Array2<f64>> = (0..8)
                .map(|s| instance(name, n, 1000 * n as u64 + s))
                .collect();
            for solver in AssignmentSolver::ALL {
                if *solver == AssignmentSolver::Hungarian {
                    continue;
                }
                group.bench_with_input(BenchmarkId::new(solver.name(), n), &costs, |b, costs| {
                    b.iter(|| {
                        for cost in costs {
                            black_box(solver.solve(black_box(cost.view())).unwrap());
                        }
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench_otcfm);
criterion_main!(benches);
