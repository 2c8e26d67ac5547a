//! The exact marginals against brute force, the probability-flow conversion and an ODE run.

use fm_core::{LogDensity, StandardNormal};
use fm_paths::{
    AffineProbPath, CondOtScheduler, EmpiricalMarginal, GaussianPath, LinearPath, LipmanPath,
    PathError, SchrodingerBridgePath, VpScheduler,
};
use ndarray::{Array1, Array2, array};

/// Σ_k w_k p(x|z_k) and friends by direct exponentials (fine at moderate distances).
fn brute_force<P: GaussianPath>(
    path: &P,
    comps: &[(Array2<f64>, Array2<f64>, f64)],
    t: f64,
    x: &Array2<f64>,
) -> (Array1<f64>, Array2<f64>) {
    let n = x.nrows();
    let tv = Array1::from_elem(n, t);
    let mut p = Array1::<f64>::zeros(n);
    let mut pu = Array2::<f64>::zeros(x.dim());
    for (a, b, w) in comps {
        let (a, b) = (a.broadcast(x.dim()).unwrap(), b.broadcast(x.dim()).unwrap());
        let lp = path.log_density(x.view(), a, b, tv.view()).unwrap();
        let u = path
            .conditional_velocity(x.view(), a, b, tv.view())
            .unwrap();
        for i in 0..n {
            let pi = w * lp[i].exp();
            p[i] += pi;
            for j in 0..x.ncols() {
                pu[[i, j]] += pi * u[[i, j]];
            }
        }
    }
    let u = &pu / &p.view().insert_axis(ndarray::Axis(1));
    (p.mapv(f64::ln), u)
}

#[test]
fn target_marginal_matches_brute_force() {
    let path = LipmanPath::new(0.05).unwrap();
    let data = array![[1.0, 0.0], [-1.0, 1.0], [0.5, -2.0]];
    let w = array![1.0, 2.0, 1.0];
    let m = EmpiricalMarginal::target(&path, data.view(), Some(w.view())).unwrap();
    let comps: Vec<_> = (0..3)
        .map(|k| {
            (
                Array2::zeros((1, 2)),
                data.row(k).to_owned().insert_axis(ndarray::Axis(0)),
                w[k] / 4.0,
            )
        })
        .collect();
    let x = array![[0.1, 0.2], [-0.7, 0.9], [1.5, -1.0], [0.0, 0.0]];
    for t in [0.1, 0.5, 0.9] {
        let (lp, u) = brute_force(&path, &comps, t, &x);
        let got_lp = m.log_prob(t, x.view()).unwrap();
        let got_u = m.velocity(t, x.view()).unwrap();
        for i in 0..4 {
            assert!(
                (got_lp[i] - lp[i]).abs() < 1e-12 * (1.0 + lp[i].abs()),
                "{} vs {}",
                got_lp[i],
                lp[i]
            );
            for j in 0..2 {
                assert!((got_u[[i, j]] - u[[i, j]]).abs() < 1e-10 * (1.0 + u[[i, j]].abs()));
            }
        }
    }
}

#[test]
fn pair_marginal_matches_brute_force() {
    let path = SchrodingerBridgePath::new(0.7).unwrap();
    let x0 = array![[0.0, 1.0], [1.0, -1.0]];
    let x1 = array![[2.0, 2.0], [-2.0, 0.5], [0.0, 3.0]];
    let w0 = array![0.3, 0.7];
    let m =
        EmpiricalMarginal::independent_pairs(&path, x0.view(), Some(w0.view()), x1.view(), None)
            .unwrap();
    assert_eq!(m.components(), 6);
    let mut comps = vec![];
    for i in 0..2 {
        for j in 0..3 {
            comps.push((
                x0.row(i).to_owned().insert_axis(ndarray::Axis(0)),
                x1.row(j).to_owned().insert_axis(ndarray::Axis(0)),
                w0[i] / 3.0,
            ));
        }
    }
    let x = array![[0.5, 0.5], [1.0, 2.0], [-1.0, 0.0]];
    for t in [0.2, 0.6] {
        let (lp, u) = brute_force(&path, &comps, t, &x);
        let got_lp = m.log_prob(t, x.view()).unwrap();
        let got_u = m.velocity(t, x.view()).unwrap();
        for i in 0..3 {
            assert!((got_lp[i] - lp[i]).abs() < 1e-12 * (1.0 + lp[i].abs()));
            for j in 0..2 {
                assert!((got_u[[i, j]] - u[[i, j]]).abs() < 1e-10 * (1.0 + u[[i, j]].abs()));
            }
        }
    }
}

#[test]
fn log_space_keeps_far_points_finite() {
    // At x = 1000 every p(x|z) underflows to 0 in f64; the log-space marginal still answers.
    let path = LinearPath::new(0.1).unwrap();
    let m = EmpiricalMarginal::independent_pairs(
        &path,
        array![[0.0], [1.0]].view(),
        None,
        array![[5.0], [6.0]].view(),
        None,
    )
    .unwrap();
    let x = array![[1000.0]];
    let lp = m.log_prob(0.5, x.view()).unwrap();
    assert!(lp[0].is_finite() && lp[0] < -4e7);
    let u = m.velocity(0.5, x.view()).unwrap();
    // The nearest component, μ = 3.5 (pair (1, 6)), dominates completely: u = 6 - 1 = 5.
    assert!((u[[0, 0]] - 5.0).abs() < 1e-12, "{u}");
}

#[test]
fn target_marginal_starts_at_the_standard_normal() {
    let path = LipmanPath::new(0.0).unwrap();
    let data = array![[3.0, -1.0, 0.5], [0.0, 2.0, 2.0]];
    let m = EmpiricalMarginal::target(&path, data.view(), None).unwrap();
    let x = array![[0.1, 0.2, -0.3], [2.0, -1.0, 0.0]];
    let got = m.log_prob(0.0, x.view()).unwrap();
    let want = StandardNormal::new(3).unwrap().log_prob(x.view()).unwrap();
    for i in 0..2 {
        assert!((got[i] - want[i]).abs() < 1e-12);
    }
}

/// The marginal velocity equals the probability-flow conversion of the marginal score
/// (a second, independent route: only the score and the scheduler's numbers).
#[test]
fn velocity_from_score_is_the_marginal_velocity() {
    let data = array![[1.0, -1.0], [-0.5, 2.0], [2.0, 0.0]];
    let x = array![[0.3, 0.4], [-1.0, 1.0], [2.5, -0.5]];
    let cond = AffineProbPath::new(CondOtScheduler);
    let vp = AffineProbPath::new(VpScheduler::default());
    for t in [0.2, 0.5, 0.8] {
        let tv = Array1::from_elem(3, t);
        for (name, u, score, conv) in [
            {
                let m = EmpiricalMarginal::target(&cond, data.view(), None).unwrap();
                (
                    "condot",
                    m.velocity(t, x.view()).unwrap(),
                    m.score(t, x.view()).unwrap(),
                    cond.velocity_from_score(
                        tv.view(),
                        x.view(),
                        m.score(t, x.view()).unwrap().view(),
                    )
                    .unwrap(),
                )
            },
            {
                let m = EmpiricalMarginal::target(&vp, data.view(), None).unwrap();
                (
                    "vp",
                    m.velocity(t, x.view()).unwrap(),
                    m.score(t, x.view()).unwrap(),
                    vp.velocity_from_score(
                        tv.view(),
                        x.view(),
                        m.score(t, x.view()).unwrap().view(),
                    )
                    .unwrap(),
                )
            },
        ] {
            for (a, b) in u.iter().zip(&conv) {
                assert!(
                    (a - b).abs() < 1e-9 * (1.0 + a.abs()),
                    "{name} t {t}: {a} vs {b}"
                );
            }
            let back = if name == "vp" {
                vp.score_from_velocity(tv.view(), x.view(), u.view())
                    .unwrap()
            } else {
                cond.score_from_velocity(tv.view(), x.view(), u.view())
                    .unwrap()
            };
            for (a, b) in score.iter().zip(&back) {
                assert!(
                    (a - b).abs() < 1e-8 * (1.0 + a.abs()),
                    "{name} t {t}: score {a} vs {b}"
                );
            }
        }
    }
    // α_0 = 0 for CondOT: the conversion is singular there.
    assert!(matches!(
        cond.velocity_from_score(
            array![0.0].view(),
            array![[1.0, 1.0]].view(),
            array![[0.0, 0.0]].view()
        ),
        Err(PathError::Singular { .. })
    ));
}

/// Integrating the exact marginal field from N(0, I) samples (RK4) lands on the data points.
#[test]
fn marginal_flow_carries_noise_to_the_data() {
    use fm_core::VectorField;
    let path = LipmanPath::new(1e-3).unwrap();
    let data = array![[2.0, 2.0], [-2.0, 1.0], [0.0, -2.0]];
    let m = EmpiricalMarginal::target(&path, data.view(), None).unwrap();
    let mut x = StandardNormal::new(2)
        .unwrap()
        .sample(64, &mut fm_core::rng::seeded(5));
    let steps = 200;
    let h = 1.0 / steps as f64;
    let f = |t: f64, x: &Array2<f64>| {
        let mut out = Array2::zeros(x.dim());
        VectorField::velocity(&m, t, x.view(), out.view_mut());
        out
    };
    for k in 0..steps {
        let t = k as f64 * h;
        let k1 = f(t, &x);
        let k2 = f(t + h / 2.0, &(&x + &(&k1 * (h / 2.0))));
        let k3 = f(t + h / 2.0, &(&x + &(&k2 * (h / 2.0))));
        let k4 = f(t + h, &(&x + &(&k3 * h)));
        x = &x + &((&k1 + &(&k2 * 2.0) + &(&k3 * 2.0) + &k4) * (h / 6.0));
    }
    for r in x.rows() {
        let nearest = data
            .rows()
            .into_iter()
            .map(|d| ((r[0] - d[0]).powi(2) + (r[1] - d[1]).powi(2)).sqrt())
            .fold(f64::INFINITY, f64::min);
        // σ_min = 1e-3: the endpoint is within a few σ_min of a data point.
        assert!(nearest < 1e-2, "{r} is {nearest} from the data");
    }
}

#[test]
fn marginal_errors() {
    let lin = LinearPath::new(0.1).unwrap();
    assert!(matches!(
        EmpiricalMarginal::target(&lin, array![[1.0]].view(), None),
        Err(PathError::Unsupported { .. })
    ));
    let lip = LipmanPath::new(0.1).unwrap();
    for w in [
        array![1.0, -1.0],
        array![0.0, 0.0],
        array![1.0, f64::NAN],
        array![1.0, 1.0, 1.0],
    ] {
        assert!(matches!(
            EmpiricalMarginal::target(&lip, array![[1.0], [2.0]].view(), Some(w.view())),
            Err(PathError::InvalidWeights { .. })
        ));
    }
    let m = EmpiricalMarginal::target(&lip, array![[1.0], [2.0]].view(), None).unwrap();
    assert!(matches!(
        m.log_prob(1.5, array![[0.0]].view()),
        Err(PathError::TimeOutOfRange { .. })
    ));
    assert!(matches!(
        m.velocity(0.5, array![[0.0, 1.0]].view()),
        Err(PathError::Core(_))
    ));
    assert!(matches!(
        EmpiricalMarginal::target(&lip, array![[f64::NAN]].view(), None),
        Err(PathError::Core(_))
    ));
    // σ = 0: the conditional paths are point masses and the marginal has no density.
    let det = LinearPath::new(0.0).unwrap();
    let m = EmpiricalMarginal::independent_pairs(
        &det,
        array![[0.0]].view(),
        None,
        array![[1.0]].view(),
        None,
    )
    .unwrap();
    assert!(matches!(
        m.log_prob(0.5, array![[0.5]].view()),
        Err(PathError::Singular { .. })
    ));
}
