//! Sampling cost of the ODE layer.
//!
//! * `euler_100_steps_mlp_10k`: Euler, 100 steps, 10,000 2-D points through a stand-in field
//!   with the cost of TorchCFM's default model (an MLP 3 → 64 → 64 → 64 → 2 with SELU, f32
//!   inside, random weights), with rayon chunks and on one thread. TorchCFM + PyTorch on the
//!   same machine: 0.59–0.65 s.
//!   Variants: `rayon_selu_fast_exp` (a vectorised exp), `rayon_relu_instead_of_selu` (no
//!   exp), `autograd_mlp_*` (the real `fm_autograd::Mlp`, which parallelises internally; with
//!   one chunk the integrator leaves the threading to it), `field_only_one_thread` (100 bare
//!   evaluations: the integrator's overhead is the difference).
//! * `dopri5_1e-4_smooth_2k`: adaptive Dopri5 at rtol = atol = 1e-4 on 2,000 points of a
//!   smooth nonlinear field; the number of evaluations is printed.
//!
//! `cargo bench -p fm-ode --bench ode -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, criterion_group, criterion_main};
use fm_core::{FnField, VectorField};
use fm_ode::{Dopri5, Euler, Integrator, Parallelism};
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis, Zip};
use rand::Rng;
use std::hint::black_box;

/// An f32 MLP with SELU activations, TorchCFM's `MLP(dim=2, w=64, time_varying=True)` shape:
/// input `[x, t]` (3), three hidden layers of 64, output 2. Weights are stored `(in, out)`.
struct MlpStandIn {
    weights: Vec<Array2<f32>>,
    biases: Vec<Array1<f32>>,
    /// The hidden activation.
    act: Act,
}

#[derive(Clone, Copy)]
enum Act {
    /// SELU with the standard library's scalar `exp` (as the real model computes it).
    Selu,
    /// SELU with a branch-free polynomial `exp` the compiler vectorises.
    SeluFastExp,
    /// ReLU: no exponentials at all, to show the share of `exp` in the cost.
    Relu,
}

impl MlpStandIn {
    fn new(seed: u64) -> Self {
        let mut rng = fm_core::rng::seeded(seed);
        let sizes = [3, 64, 64, 64, 2];
        let mut weights = Vec::new();
        let mut biases = Vec::new();
        for w in sizes.windows(2) {
            let bound = 1.0 / (w[0] as f32).sqrt();
            weights.push(Array2::from_shape_simple_fn((w[0], w[1]), || {
                rng.random_range(-bound..bound)
            }));
            biases.push(Array1::from_shape_simple_fn(w[1], || {
                rng.random_range(-bound..bound)
            }));
        }
        Self {
            weights,
            biases,
            act: Act::Selu,
        }
    }
}

fn selu(v: f32) -> f32 {
    const LAMBDA: f32 = 1.050_701;
    const ALPHA: f32 = 1.673_263_2;
    if v > 0.0 {
        LAMBDA * v
    } else {
        LAMBDA * ALPHA * (v.exp() - 1.0)
    }
}

/// `exp(x)` for f32 without branches or libm calls: `x = n ln 2 + r`, `|r| ≤ ln 2 / 2`,
/// degree-6 Taylor polynomial of `exp(r)` (a few ulps with rounding), times `2^n` built from
/// the exponent bits. Rounding to nearest uses the 1.5·2^23 trick (SSE2 only).
fn exp_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + MAGIC;
    let n = shifted - MAGIC;
    // The low mantissa bits of `shifted` hold n as an integer: no float-to-int conversion.
    let n_bits = shifted.to_bits().wrapping_sub(MAGIC.to_bits());
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

fn selu_fast(v: f32) -> f32 {
    const LAMBDA: f32 = 1.050_701;
    const ALPHA: f32 = 1.673_263_2;
    let neg = LAMBDA * ALPHA * (exp_fast(v.min(0.0)) - 1.0);
    if v > 0.0 { LAMBDA * v } else { neg }
}

impl VectorField for MlpStandIn {
    fn dim(&self) -> usize {
        2
    }
    fn velocity(&self, t: f64, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>) {
        let n = x.nrows();
        let mut h = Array2::<f32>::zeros((n, 3));
        Zip::from(h.rows_mut())
            .and(x.rows())
            .for_each(|mut hr, xr| {
                hr[0] = xr[0] as f32;
                hr[1] = xr[1] as f32;
                hr[2] = t as f32;
            });
        let last = self.weights.len() - 1;
        for (l, (w, b)) in self.weights.iter().zip(&self.biases).enumerate() {
            let mut z = h.dot(w);
            z += &b.view().insert_axis(Axis(0));
            if l < last {
                match self.act {
                    Act::Selu => z.mapv_inplace(selu),
                    Act::SeluFastExp => z.mapv_inplace(selu_fast),
                    Act::Relu => z.mapv_inplace(|v| v.max(0.0)),
                }
            }
            h = z;
        }
        Zip::from(&mut out).and(&h).for_each(|o, &v| *o = v as f64);
    }
}

/// The fast exponential stays within 5e-7 relative (a few f32 ulps) of `f32::exp` on the SELU range.
fn check_exp_fast() {
    let mut worst = 0.0f32;
    for i in 0..=20_000 {
        let x = -20.0 + i as f32 * 1e-3;
        worst = worst.max((exp_fast(x) - x.exp()).abs() / x.exp());
    }
    assert!(worst < 5e-7, "exp_fast relative error {worst}");
}

/// The real model: `fm_autograd::Mlp` with TorchCFM's default configuration (3 × 64 SELU,
/// random initial weights), behind the `VectorField` trait.
struct AutogradMlp(fm_autograd::Mlp);

impl VectorField for AutogradMlp {
    fn dim(&self) -> usize {
        2
    }
    fn velocity(&self, t: f64, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>) {
        let tv = Array1::from_elem(x.nrows(), t);
        out.assign(
            &self
                .0
                .forward(tv.view(), x)
                .expect("shapes checked by the integrator"),
        );
    }
}

fn points(n: usize, seed: u64) -> Array2<f64> {
    let normal = fm_core::StandardNormal::new(2).expect("dim 2");
    normal.sample(n, &mut fm_core::rng::seeded(seed))
}

fn euler_mlp(c: &mut Criterion) {
    check_exp_fast();
    let field = MlpStandIn::new(0);
    let x0 = points(10_000, 1);
    let mut group = c.benchmark_group("euler_100_steps_mlp_10k");
    group.sample_size(10);
    for (name, par) in [
        ("rayon", Parallelism::default()),
        ("one_thread", Parallelism::sequential()),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let sol = Integrator::new(Euler::default())
                    .steps(100)
                    .parallelism(par)
                    .run(&field, x0.view())
                    .expect("runs");
                black_box(sol.x)
            })
        });
    }
    for (name, act) in [
        ("rayon_selu_fast_exp", Act::SeluFastExp),
        ("rayon_relu_instead_of_selu", Act::Relu),
    ] {
        let variant = MlpStandIn {
            act,
            ..MlpStandIn::new(0)
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let sol = Integrator::new(Euler::default())
                    .steps(100)
                    .run(&variant, x0.view())
                    .expect("runs");
                black_box(sol.x)
            })
        });
    }
    let real = AutogradMlp(
        fm_autograd::Mlp::new(
            &fm_autograd::MlpConfig::default(),
            &mut fm_core::rng::seeded(0),
        )
        .expect("default config"),
    );
    for (name, par) in [
        ("autograd_mlp_rayon", Parallelism::default()),
        (
            "autograd_mlp_one_chunk",
            Parallelism {
                chunk_rows: usize::MAX,
                threads: false,
            },
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let sol = Integrator::new(Euler::default())
                    .steps(100)
                    .parallelism(par)
                    .run(&real, x0.view())
                    .expect("runs");
                black_box(sol.x)
            })
        });
    }
    // Baseline: the same 100 field evaluations without the integrator (one thread), so the
    // integrator's own overhead is the difference.
    let mut out = Array2::zeros(x0.raw_dim());
    group.bench_function("field_only_one_thread", |b| {
        b.iter(|| {
            for k in 0..100 {
                field.velocity(k as f64 / 100.0, x0.view(), out.view_mut());
            }
            black_box(out.sum())
        })
    });
    group.finish();
}

fn dopri5_smooth(c: &mut Criterion) {
    // A smooth, nonlinear, time-dependent 2-D field of the kind a trained model produces:
    // it contracts the standard normal towards two lobes.
    let field = FnField::new(
        2,
        |t: f64, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
            Zip::from(out.rows_mut())
                .and(x.rows())
                .for_each(|mut o, r| {
                    let (a, b) = (r[0], r[1]);
                    o[0] = (1.5 * (a * 1.3).tanh() - a) * (1.0 + t) + 0.3 * (2.0 * b).sin();
                    o[1] = -0.5 * b + 0.2 * (a * b).cos() * t;
                })
        },
    );
    let x0 = points(2_000, 2);
    let probe = Integrator::new(Dopri5::default())
        .tolerances(1e-4, 1e-4)
        .run(&field, x0.view())
        .expect("runs");
    println!(
        "dopri5 rtol = atol = 1e-4 on 2,000 points: nfe = {}, accepted = {}, rejected = {}",
        probe.stats.nfe, probe.stats.accepted, probe.stats.rejected
    );
    let mlp = MlpStandIn::new(3);
    let probe_mlp = Integrator::new(Dopri5::default())
        .tolerances(1e-4, 1e-4)
        .run(&mlp, x0.view())
        .expect("runs");
    println!(
        "dopri5 rtol = atol = 1e-4 on 2,000 points through the random MLP: nfe = {}, accepted = {}, rejected = {}",
        probe_mlp.stats.nfe, probe_mlp.stats.accepted, probe_mlp.stats.rejected
    );
    c.bench_function("dopri5_1e-4_smooth_2k", |b| {
        b.iter(|| {
            let sol = Integrator::new(Dopri5::default())
                .tolerances(1e-4, 1e-4)
                .run(&field, x0.view())
                .expect("runs");
            black_box(sol.stats.nfe)
        })
    });
}

criterion_group!(benches, euler_mlp, dopri5_smooth);
criterion_main!(benches);
