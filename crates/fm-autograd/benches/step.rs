//! Training step, bare matrix products of that step, forward of 10k points, big-batch scaling.
//!
//! * `train_step_b256_threads1`: forward, backward and Adam update of the default 3×64 SELU MLP
//!   on 256 points (PyTorch 2.15, one thread, same step: 0.92 ms median).
//! * `bare_kernels_b256`: only the matrix products of that step with this crate's kernels
//!   (including the transposes the weight gradients use): the floor the step is compared with.
//! * `bare_matmuls_b256`: the same 11 products with ndarray's `general_mat_mul`
//!   (matrixmultiply), which the fused path used before it had its own kernels. With
//!   `--features openblas-reference` ndarray hands all 11 to the system OpenBLAS
//!   (`cblas_sgemm`) instead; run it with `OPENBLAS_NUM_THREADS=1`.
//! * `forward_10k_*`, `divergence_10k_*`: the field and its exact divergence on 10,000 points.
//!
//! `cargo bench -p fm-autograd --bench step -- --warm-up-time 1 --measurement-time 3`
#[cfg(feature = "openblas-reference")]
extern crate blas_src;

use criterion::{Criterion, criterion_group, criterion_main};
use fm_autograd::{Adam, AdamConfig, Grads, Mlp, MlpConfig};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use std::hint::black_box;

fn batch(n: usize, seed: u64) -> (Array1<f64>, Array2<f64>, Array2<f64>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let t = Array1::from_shape_fn(n, |_| rng.random::<f64>());
    let x = Array2::from_shape_fn((n, 2), |_| rng.random::<f64>() * 4.0 - 2.0);
    let y = Array2::from_shape_fn((n, 2), |_| rng.random::<f64>() * 4.0 - 2.0);
    (t, x, y)
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn train_step(c: &mut Criterion, n: usize, threads: usize) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut mlp = Mlp::new(&MlpConfig::default(), &mut rng).unwrap();
    let mut adam = Adam::new(AdamConfig::default()).unwrap();
    let mut grads = Grads::zeros(&mlp);
    let (t, x, y) = batch(n, 1);
    let pool = pool(threads);
    let mut step = || {
        let loss = mlp
            .loss_and_grad_into(t.view(), x.view(), y.view(), &mut grads)
            .unwrap();
        adam.update(mlp.params_mut(), grads.as_slice()).unwrap();
        loss
    };
    c.bench_function(&format!("train_step_b{n}_threads{threads}"), |b| {
        // A batch of at most one chunk never touches rayon: it runs on the calling thread.
        if n <= fm_autograd::CHUNK {
            b.iter(|| black_box(step()))
        } else {
            b.iter(|| black_box(pool.install(&mut step)))
        }
    });
}

/// The matrix products of one b = 256 step with this crate's kernels, nothing else.
fn bare_kernels(c: &mut Criterion) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mlp = Mlp::new(&MlpConfig::default(), &mut rng).unwrap();
    let mut grads = Grads::zeros(&mlp);
    let (t, x, y) = batch(256, 1);
    // Fill the scratch buffers with the values of a real step.
    mlp.loss_and_grad_into(t.view(), x.view(), y.view(), &mut grads)
        .unwrap();
    c.bench_function("bare_kernels_b256", |b| {
        b.iter(|| {
            mlp.bench_products_only(256, &mut grads).unwrap();
            black_box(grads.as_slice()[0])
        })
    });
}

/// The 11 matrix products of one b = 256 step (4 forward, 4 weight gradients, 3 input
/// gradients), with the shapes and memory layouts the fused path uses.
fn bare_matmuls(c: &mut Criterion) {
    let n = 256;
    let shapes = MlpConfig::default().layer_shapes(); // (out, in)
    let w: Vec<Array2<f32>> = shapes
        .iter()
        .map(|&(o, i)| Array2::from_elem((o, i), 0.01))
        .collect();
    let h: Vec<Array2<f32>> = shapes
        .iter()
        .map(|&(_, i)| Array2::from_elem((n, i), 0.5))
        .collect();
    let mut z: Vec<Array2<f32>> = shapes.iter().map(|&(o, _)| Array2::zeros((n, o))).collect();
    let mut gw: Vec<Array2<f32>> = shapes.iter().map(|&(o, i)| Array2::zeros((o, i))).collect();
    let mut gh: Vec<Array2<f32>> = shapes.iter().map(|&(_, i)| Array2::zeros((n, i))).collect();
    {
        c.bench_function("bare_matmuls_b256", |b| {
            b.iter(|| {
                for l in 0..shapes.len() {
                    general_mat_mul(1.0, &h[l], &w[l].t(), 1.0, &mut z[l]);
                }
                for l in (0..shapes.len()).rev() {
                    general_mat_mul(1.0, &z[l].t(), &h[l], 1.0, &mut gw[l]);
                    if l > 0 {
                        general_mat_mul(1.0, &z[l], &w[l], 0.0, &mut gh[l]);
                    }
                }
                black_box(&gh);
            })
        });
    }
}

fn forward_10k(c: &mut Criterion, threads: usize) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mlp = Mlp::new(&MlpConfig::default(), &mut rng).unwrap();
    let (t, x, _) = batch(10_000, 2);
    let pool = pool(threads);
    c.bench_function(&format!("forward_10k_threads{threads}"), |b| {
        b.iter(|| black_box(pool.install(|| mlp.forward(t.view(), x.view()).unwrap())))
    });
    c.bench_function(&format!("divergence_10k_threads{threads}"), |b| {
        b.iter(|| black_box(pool.install(|| mlp.divergence(t.view(), x.view()).unwrap())))
    });
}

fn benches(c: &mut Criterion) {
    train_step(c, 256, 1);
    bare_kernels(c);
    bare_matmuls(c);
    forward_10k(c, 1);
    forward_10k(c, 2);
    train_step(c, 4096, 1);
    train_step(c, 4096, 2);
}

criterion_group!(group, benches);
criterion_main!(group);
