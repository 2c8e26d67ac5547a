//! The paths against independent computations: TorchCFM's formulas written out element by
//! element, closed forms at chosen times, Lipman et al.'s VP field, Monte Carlo moments.

use fm_paths::{
    AffineProbPath, CondOtScheduler, CosineScheduler, GaussianPath, LinearPath, LinearVpScheduler,
    LipmanPath, PolynomialScheduler, ProbPath, Scheduler, SchrodingerBridgePath, TrigonometricPath,
    VarianceExplodingPath, VpScheduler,
};
use ndarray::{Array1, Array2, Axis};
use proptest::prelude::*;
use std::f64::consts::PI;

fn batch(n: usize, d: usize, seed: u64) -> (Array2<f64>, Array2<f64>, Array2<f64>, Array1<f64>) {
    use rand::Rng;
    let mut r = fm_core::rng::seeded(seed);
    let mut m = || Array2::from_shape_simple_fn((n, d), || r.random_range(-3.0..3.0));
    let (a, b, e) = (m(), m(), m());
    let t = Array1::from_shape_fn(n, |i| (i as f64 + 0.5) / n as f64);
    (a, b, e, t)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

/// TorchCFM's `sample_xt` and `compute_conditional_flow`, element by element.
#[allow(clippy::type_complexity)]
fn torchcfm(kind: &str, sigma: f64, x0: f64, x1: f64, t: f64, eps: f64) -> (f64, f64) {
    match kind {
        "icfm" => {
            let mu = t * x1 + (1.0 - t) * x0;
            (mu + sigma * eps, x1 - x0)
        }
        "target" => {
            let mu = t * x1;
            let s = 1.0 - (1.0 - sigma) * t;
            let xt = mu + s * eps;
            (xt, (x1 - (1.0 - sigma) * xt) / (1.0 - (1.0 - sigma) * t))
        }
        "sb" => {
            let mu = t * x1 + (1.0 - t) * x0;
            let xt = mu + sigma * (t * (1.0 - t)).sqrt() * eps;
            // TorchCFM regularises the denominator with + 1e-8.
            let k = (1.0 - 2.0 * t) / (2.0 * t * (1.0 - t) + 1e-8);
            (xt, k * (xt - mu) + x1 - x0)
        }
        "vp" => {
            let mu = (PI / 2.0 * t).cos() * x0 + (PI / 2.0 * t).sin() * x1;
            (
                mu + sigma * eps,
                PI / 2.0 * ((PI / 2.0 * t).cos() * x1 - (PI / 2.0 * t).sin() * x0),
            )
        }
        _ => unreachable!(),
    }
}

#[test]
fn paths_reproduce_torchcfm() {
    let (x0, x1, eps, t) = batch(64, 3, 1);
    let cases: Vec<(&str, f64, Box<dyn ProbPath>, f64)> = vec![
        ("icfm", 0.0, Box::new(LinearPath::new(0.0).unwrap()), 0.0),
        ("icfm", 0.3, Box::new(LinearPath::new(0.3).unwrap()), 0.0),
        (
            "target",
            0.0,
            Box::new(LipmanPath::new(0.0).unwrap()),
            1e-15,
        ),
        (
            "target",
            0.1,
            Box::new(LipmanPath::new(0.1).unwrap()),
            1e-15,
        ),
        // The only difference: TorchCFM's + 1e-8 in the bridge denominator (relative ≤ 1e-8 / (2t(1-t))).
        (
            "sb",
            1.0,
            Box::new(SchrodingerBridgePath::new(1.0).unwrap()),
            1e-5,
        ),
        (
            "sb",
            0.5,
            Box::new(SchrodingerBridgePath::new(0.5).unwrap()),
            1e-5,
        ),
        (
            "vp",
            0.0,
            Box::new(TrigonometricPath::new(0.0).unwrap()),
            1e-15,
        ),
        (
            "vp",
            0.2,
            Box::new(TrigonometricPath::new(0.2).unwrap()),
            1e-15,
        ),
    ];
    for (kind, sigma, path, tol) in cases {
        let s = path
            .sample_with_noise(x0.view(), x1.view(), t.view(), eps.view())
            .unwrap();
        assert_eq!(s.eps, eps);
        for ((i, j), &xt) in s.x_t.indexed_iter() {
            let (rx, ru) = torchcfm(kind, sigma, x0[[i, j]], x1[[i, j]], t[i], eps[[i, j]]);
            assert!(close(xt, rx, 1e-15), "{kind} {sigma}: x_t {xt} vs {rx}");
            assert!(
                close(s.u_t[[i, j]], ru, tol),
                "{kind} {sigma}: u_t {} vs {ru}",
                s.u_t[[i, j]]
            );
        }
    }
}

#[test]
fn closed_forms_at_chosen_times() {
    let x0 = ndarray::array![[1.0, -2.0]];
    let x1 = ndarray::array![[3.0, 4.0]];
    let eps = ndarray::array![[0.5, -1.0]];
    let t = ndarray::array![0.5];
    // Lipman, σ_min = 0.1, t = 1/2: σ_t = 0.55, x_t = (1.5, 2) + 0.55 (0.5, -1).
    let s = LipmanPath::new(0.1)
        .unwrap()
        .sample_with_noise(x0.view(), x1.view(), t.view(), eps.view())
        .unwrap();
    assert!(close(s.x_t[[0, 0]], 1.775, 1e-15) && close(s.x_t[[0, 1]], 1.45, 1e-15));
    // u = x_1 - (1 - σ_min) eps along the sample.
    assert!(close(s.u_t[[0, 0]], 3.0 - 0.45, 1e-14) && close(s.u_t[[0, 1]], 4.0 + 0.9, 1e-14));
    // Bridge σ = 2, t = 1/2: σ_t = 1, the bridge term vanishes.
    let s = SchrodingerBridgePath::new(2.0)
        .unwrap()
        .sample_with_noise(x0.view(), x1.view(), t.view(), eps.view())
        .unwrap();
    assert_eq!(s.x_t, ndarray::array![[2.5, 0.0]]);
    assert_eq!(s.u_t, ndarray::array![[2.0, 6.0]]);
    // Bridge at t = 1/4, σ = 1: σ_t = √3/4, u = (1/2)/(3/8) (x - μ) + x_1 - x_0.
    let t = ndarray::array![0.25];
    let s = SchrodingerBridgePath::new(1.0)
        .unwrap()
        .sample_with_noise(x0.view(), x1.view(), t.view(), eps.view())
        .unwrap();
    let st = 3f64.sqrt() / 4.0;
    assert!(close(s.x_t[[0, 0]], 1.5 + st * 0.5, 1e-15));
    assert!(close(s.u_t[[0, 0]], 4.0 / 3.0 * st * 0.5 + 2.0, 1e-14));
    // Trigonometric at t = 1/2: cos = sin = √2/2.
    let s = TrigonometricPath::new(0.0)
        .unwrap()
        .sample_with_noise(
            x0.view(),
            x1.view(),
            ndarray::array![0.5].view(),
            eps.view(),
        )
        .unwrap();
    let h = 0.5f64.sqrt();
    assert!(close(s.x_t[[0, 0]], 4.0 * h, 1e-15) && close(s.x_t[[0, 1]], 2.0 * h, 1e-15));
    assert!(close(s.u_t[[0, 0]], PI / 2.0 * 2.0 * h, 1e-15));
}

#[test]
fn lipman_and_ve_ignore_x_0() {
    let (x0, x1, eps, t) = batch(8, 2, 2);
    let nan = Array2::from_elem(x0.dim(), f64::NAN);
    for path in [
        Box::new(LipmanPath::new(0.01).unwrap()) as Box<dyn GaussianPath>,
        Box::new(VarianceExplodingPath::new(0.01, 10.0).unwrap()),
    ] {
        let a = path
            .sample_with_noise(x0.view(), x1.view(), t.view(), eps.view())
            .unwrap();
        let b = path
            .sample_with_noise(nan.view(), x1.view(), t.view(), eps.view())
            .unwrap();
        assert_eq!(a, b);
        let u = path
            .conditional_velocity(a.x_t.view(), nan.view(), x1.view(), t.view())
            .unwrap();
        assert!(u.iter().all(|v| v.is_finite()));
        assert_eq!(
            path.mean(nan.view(), x1.view(), t.view()).unwrap(),
            path.mean(x0.view(), x1.view(), t.view()).unwrap()
        );
    }
}

#[test]
fn bridge_ends_are_point_masses_with_field_x1_minus_x0() {
    let (x0, x1, eps, _) = batch(4, 3, 3);
    let path = SchrodingerBridgePath::new(1.0).unwrap();
    for (tv, end) in [(0.0, &x0), (1.0, &x1)] {
        let t = Array1::from_elem(4, tv);
        let s = path
            .sample_with_noise(x0.view(), x1.view(), t.view(), eps.view())
            .unwrap();
        assert_eq!(&s.x_t, end);
        assert_eq!(s.u_t, &x1 - &x0);
        let u = path
            .conditional_velocity(eps.view(), x0.view(), x1.view(), t.view())
            .unwrap();
        assert_eq!(u, &x1 - &x0);
        assert!(
            path.log_density(s.x_t.view(), x0.view(), x1.view(), t.view())
                .is_err()
        );
    }
}

#[test]
fn lipman_at_t1_with_sigma_min_0_uses_the_limit() {
    let (x0, x1, eps, _) = batch(4, 2, 4);
    let path = LipmanPath::new(0.0).unwrap();
    let t = Array1::from_elem(4, 1.0);
    let s = path
        .sample_with_noise(x0.view(), x1.view(), t.view(), eps.view())
        .unwrap();
    assert_eq!(s.x_t, x1);
    assert_eq!(s.u_t, &x1 - &eps);
    assert!(matches!(
        path.conditional_velocity(s.x_t.view(), x0.view(), x1.view(), t.view()),
        Err(fm_paths::PathError::Singular { .. })
    ));
}

/// Lipman et al. 2022, eq. 19 (VP field) with T(s) = s β_min + s²/2 (β_max - β_min), T' = β.
#[test]
fn vp_affine_path_is_lipmans_vp_diffusion_path() {
    let (bmin, bmax) = (0.1, 20.0);
    let big_t = |s: f64| s * bmin + 0.5 * s * s * (bmax - bmin);
    let beta = |s: f64| bmin + s * (bmax - bmin);
    let path = AffineProbPath::variance_preserving(bmin, bmax).unwrap();
    let (x0, x1, _, t) = batch(32, 2, 5);
    let x = &x0 * 0.7 + &x1 * 0.2;
    let u = path
        .conditional_velocity(x.view(), x0.view(), x1.view(), t.view())
        .unwrap();
    let mean = path.mean(x0.view(), x1.view(), t.view()).unwrap();
    let std = path.std(t.view()).unwrap();
    for i in 0..32 {
        let s = 1.0 - t[i];
        let (e, a) = ((-big_t(s)).exp(), (-0.5 * big_t(s)).exp());
        assert!(close(std[i], (1.0 - a * a).sqrt(), 1e-12));
        for j in 0..2 {
            let want = -0.5 * beta(s) * (e * x[[i, j]] - a * x1[[i, j]]) / (1.0 - e);
            assert!(
                close(u[[i, j]], want, 1e-10),
                "t {} u {} vs {want}",
                t[i],
                u[[i, j]]
            );
            assert!(close(mean[[i, j]], a * x1[[i, j]], 1e-14));
        }
    }
}

/// Lipman et al. 2022, eq. 17: u_t = -σ'_{1-t} / σ_{1-t} (x - x_1), σ'_s by finite differences.
#[test]
fn ve_field_is_lipmans_closed_form() {
    let (smin, smax) = (0.02f64, 30.0f64);
    let sig = |s: f64| smin * (smax / smin).powf(s);
    let path = VarianceExplodingPath::new(smin, smax).unwrap();
    let (x0, x1, _, t) = batch(16, 3, 6);
    let x = &x0 * 2.0;
    let u = path
        .conditional_velocity(x.view(), x0.view(), x1.view(), t.view())
        .unwrap();
    let std = path.std(t.view()).unwrap();
    for i in 0..16 {
        let s = 1.0 - t[i];
        let h = 1e-6;
        let ds = (sig(s + h) - sig(s - h)) / (2.0 * h);
        assert!(close(std[i], sig(s), 1e-12));
        for j in 0..3 {
            let want = -ds / sig(s) * (x[[i, j]] - x1[[i, j]]);
            assert!(close(u[[i, j]], want, 1e-7), "{} vs {want}", u[[i, j]]);
        }
    }
}

#[test]
fn scheduler_values_at_chosen_times() {
    let c = CondOtScheduler.at(0.3);
    assert_eq!(
        (c.alpha_t, c.sigma_t, c.d_alpha_t, c.d_sigma_t),
        (0.3, 0.7, 1.0, -1.0)
    );
    let c = PolynomialScheduler::new(2.0).unwrap().at(0.5);
    assert_eq!(
        (c.alpha_t, c.sigma_t, c.d_alpha_t, c.d_sigma_t),
        (0.25, 0.75, 1.0, -1.0)
    );
    let c = CosineScheduler.at(0.5);
    assert!(close(c.alpha_t, 0.5f64.sqrt(), 1e-15) && close(c.sigma_t, 0.5f64.sqrt(), 1e-15));
    let c = LinearVpScheduler.at(0.6);
    assert!(close(c.sigma_t, 0.8, 1e-15) && close(c.d_sigma_t, -0.75, 1e-15));
    let vp = VpScheduler::default();
    let c = vp.at(1.0);
    assert_eq!((c.alpha_t, c.sigma_t), (1.0, 0.0));
    let c = vp.at(0.0);
    // T(0) = ½ · 19.9 + 0.1 = 10.05.
    assert!(close(c.alpha_t, (-5.025f64).exp(), 1e-14));
    assert!(close(c.sigma_t, (1.0 - (-10.05f64).exp()).sqrt(), 1e-15));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Scheduler derivatives against central differences, every scheduler, t in [0.02, 0.98].
    #[test]
    fn scheduler_derivatives_match_finite_differences(t in 0.02f64..0.98, n in 0.3f64..4.0) {
        let schedulers: Vec<Box<dyn Scheduler>> = vec![
            Box::new(CondOtScheduler),
            Box::new(PolynomialScheduler::new(n).unwrap()),
            Box::new(CosineScheduler),
            Box::new(LinearVpScheduler),
            Box::new(VpScheduler::default()),
            Box::new(VpScheduler::new(0.5, 5.0).unwrap()),
        ];
        let h = 1e-6;
        for s in &schedulers {
            let (p, m, c) = (s.at(t + h), s.at(t - h), s.at(t));
            let fa = (p.alpha_t - m.alpha_t) / (2.0 * h);
            let fs = (p.sigma_t - m.sigma_t) / (2.0 * h);
            // Truncation h²|f'''|/6 and rounding ε/h ≈ 2e-10: 1e-6 relative + 1e-8 absolute.
            prop_assert!((fa - c.d_alpha_t).abs() <= 1e-6 * c.d_alpha_t.abs() + 1e-8, "α' {} vs {fa}", c.d_alpha_t);
            prop_assert!((fs - c.d_sigma_t).abs() <= 1e-6 * c.d_sigma_t.abs() + 1e-8, "σ' {} vs {fs}", c.d_sigma_t);
        }
    }
}

/// The empirical mean and std of `x_t` drawn with an RNG match μ_t and σ_t (5-sigma bounds).
#[test]
fn monte_carlo_moments_of_sampled_x_t() {
    let n = 20_000;
    let x0 = Array2::from_shape_fn((n, 2), |(_, j)| if j == 0 { -1.0 } else { 2.0 });
    let x1 = Array2::from_shape_fn((n, 2), |(_, j)| if j == 0 { 3.0 } else { 0.5 });
    let t = Array1::from_elem(n, 0.3);
    // (path, μ_t of the first row, σ_t) written out by hand at t = 0.3.
    let c = (0.15 * PI).cos();
    let s = (0.15 * PI).sin();
    let cases: Vec<(Box<dyn ProbPath>, [f64; 2], f64)> = vec![
        (Box::new(LinearPath::new(0.5).unwrap()), [0.2, 1.55], 0.5),
        (Box::new(LipmanPath::new(0.1).unwrap()), [0.9, 0.15], 0.73),
        (
            Box::new(SchrodingerBridgePath::new(2.0).unwrap()),
            [0.2, 1.55],
            2.0 * 0.21f64.sqrt(),
        ),
        (
            Box::new(TrigonometricPath::new(0.4).unwrap()),
            [-c + 3.0 * s, 2.0 * c + 0.5 * s],
            0.4,
        ),
        (
            Box::new(VarianceExplodingPath::new(0.1, 10.0).unwrap()),
            [3.0, 0.5],
            0.1 * 100f64.powf(0.7),
        ),
    ];
    let mut rng = fm_core::rng::seeded(11);
    for (k, (path, mu, sigma)) in cases.into_iter().enumerate() {
        let smp = path
            .sample(x0.view(), x1.view(), t.view(), &mut rng)
            .unwrap();
        let mean = smp.x_t.mean_axis(Axis(0)).unwrap();
        let std = smp.x_t.std_axis(Axis(0), 1.0);
        let se = sigma / (n as f64).sqrt();
        for j in 0..2 {
            assert!(
                (mean[j] - mu[j]).abs() < 5.0 * se,
                "case {k}: mean {} vs {}",
                mean[j],
                mu[j]
            );
            // The std of the sample std is σ/√(2n).
            assert!(
                (std[j] - sigma).abs() < 5.0 * sigma / (2.0 * n as f64).sqrt(),
                "case {k}: std {} vs {sigma}",
                std[j]
            );
        }
    }
}

#[test]
fn same_seed_same_bits_and_large_batches_match_small_ones() {
    let path = SchrodingerBridgePath::new(1.0).unwrap();
    let (x0, x1, _, t) = batch(9000, 4, 7); // 36 000 entries: the rayon branch
    let a = path
        .sample(x0.view(), x1.view(), t.view(), &mut fm_core::rng::seeded(3))
        .unwrap();
    let b = path
        .sample(x0.view(), x1.view(), t.view(), &mut fm_core::rng::seeded(3))
        .unwrap();
    assert_eq!(a, b);
    let c = path
        .sample(x0.view(), x1.view(), t.view(), &mut fm_core::rng::seeded(4))
        .unwrap();
    assert_ne!(a.eps, c.eps);
    // Row blocks computed separately (serial branch) give the same bits.
    for start in (0..9000).step_by(1500) {
        let r = start..start + 1500;
        let s = path
            .sample_with_noise(
                x0.slice_axis(Axis(0), r.clone().into()),
                x1.slice_axis(Axis(0), r.clone().into()),
                t.slice_axis(Axis(0), r.clone().into()),
                a.eps.slice_axis(Axis(0), r.clone().into()),
            )
            .unwrap();
        assert_eq!(s.x_t, a.x_t.slice_axis(Axis(0), r.clone().into()));
        assert_eq!(s.u_t, a.u_t.slice_axis(Axis(0), r.into()));
    }
    // The drawn noise is standard normal.
    let m = a.eps.mean().unwrap();
    let v = a.eps.var(1.0);
    assert!(
        m.abs() < 5.0 / 6000f64.sqrt() * 1.0 && (v - 1.0).abs() < 0.05,
        "{m} {v}"
    );
}

#[test]
fn affine_sample_uses_x_0_as_noise() {
    let (x0, x1, eps, t) = batch(16, 2, 8);
    let path = AffineProbPath::new(CosineScheduler);
    let s = path
        .sample_with_noise(x0.view(), x1.view(), t.view(), eps.view())
        .unwrap();
    assert_eq!(s.eps, x0);
    for ((i, j), &xt) in s.x_t.indexed_iter() {
        let (a, sg) = ((PI / 2.0 * t[i]).sin(), (PI / 2.0 * t[i]).cos());
        assert!(close(xt, a * x1[[i, j]] + sg * x0[[i, j]], 1e-15));
        let u = PI / 2.0
            * ((PI / 2.0 * t[i]).cos() * x1[[i, j]] - (PI / 2.0 * t[i]).sin() * x0[[i, j]]);
        assert!(close(s.u_t[[i, j]], u, 1e-14));
    }
    // The cosine affine path and the σ = 0 trigonometric interpolant are the same path.
    let trig = TrigonometricPath::new(0.0)
        .unwrap()
        .sample_with_noise(x0.view(), x1.view(), t.view(), eps.view())
        .unwrap();
    for (a, b) in s.x_t.iter().zip(&trig.x_t) {
        assert!(close(*a, *b, 1e-14));
    }
}

#[test]
fn score_is_minus_eps_over_sigma() {
    let (x0, x1, eps, t) = batch(16, 3, 9);
    let path = LipmanPath::new(0.05).unwrap();
    let s = path
        .sample_with_noise(x0.view(), x1.view(), t.view(), eps.view())
        .unwrap();
    let score = path
        .score(s.x_t.view(), x0.view(), x1.view(), t.view())
        .unwrap();
    let sigma = path.std(t.view()).unwrap();
    for ((i, j), v) in score.indexed_iter() {
        assert!(close(*v, -eps[[i, j]] / sigma[i], 1e-10));
    }
}
