//! Bad parameters, times and shapes are errors, never panics.

use fm_paths::{
    AffineProbPath, CondOtScheduler, GaussianPath, LinearPath, LinearVpScheduler, LipmanPath,
    PathError, PolynomialScheduler, ProbPath, SchrodingerBridgePath, TrigonometricPath,
    VarianceExplodingPath, VpScheduler,
};
use ndarray::{Array1, Array2, array};

fn invalid<T: std::fmt::Debug>(r: Result<T, PathError>, param: &str) {
    match r {
        Err(PathError::InvalidParameter { name, .. }) => assert_eq!(name, param),
        other => panic!("expected an invalid {param}, got {other:?}"),
    }
}

#[test]
fn bad_parameters() {
    invalid(LinearPath::new(-0.1), "sigma");
    invalid(LinearPath::new(f64::NAN), "sigma");
    invalid(SchrodingerBridgePath::new(-1.0), "sigma");
    invalid(TrigonometricPath::new(f64::INFINITY), "sigma");
    invalid(LipmanPath::new(1.0), "sigma_min");
    invalid(LipmanPath::new(-0.01), "sigma_min");
    invalid(PolynomialScheduler::new(0.0), "n");
    invalid(PolynomialScheduler::new(-2.0), "n");
    invalid(VpScheduler::new(1.0, 1.0), "beta_max");
    invalid(VpScheduler::new(2.0, 1.0), "beta_max");
    invalid(VpScheduler::new(-0.1, 1.0), "beta_min");
    invalid(VarianceExplodingPath::new(0.0, 1.0), "sigma_min");
    invalid(VarianceExplodingPath::new(1.0, 0.5), "sigma_max");
    let e = LipmanPath::new(1.5).unwrap_err().to_string();
    assert_eq!(e, "invalid sigma_min = 1.5: must lie in [0, 1)");
    assert_eq!(VpScheduler::default(), VpScheduler::new(0.1, 20.0).unwrap());
}

#[test]
fn bad_times_and_shapes() {
    let paths: Vec<Box<dyn GaussianPath>> = vec![
        Box::new(LinearPath::new(0.1).unwrap()),
        Box::new(LipmanPath::new(0.1).unwrap()),
        Box::new(SchrodingerBridgePath::new(1.0).unwrap()),
        Box::new(TrigonometricPath::new(0.1).unwrap()),
        Box::new(AffineProbPath::new(CondOtScheduler)),
        Box::new(VarianceExplodingPath::new(0.1, 2.0).unwrap()),
    ];
    let x = Array2::<f64>::zeros((2, 3));
    let mut rng = fm_core::rng::seeded(0);
    for p in &paths {
        for t in [array![0.5, 1.5], array![-0.1, 0.5], array![0.5, f64::NAN]] {
            assert!(matches!(
                p.sample_with_noise(x.view(), x.view(), t.view(), x.view()),
                Err(PathError::TimeOutOfRange { .. })
            ));
            assert!(matches!(
                p.std(t.view()),
                Err(PathError::TimeOutOfRange { .. })
            ));
            assert!(matches!(
                p.conditional_velocity(x.view(), x.view(), x.view(), t.view()),
                Err(PathError::TimeOutOfRange { .. })
            ));
        }
        let t = array![0.5, 0.5];
        let y = Array2::<f64>::zeros((2, 2));
        let z = Array2::<f64>::zeros((0, 3));
        assert!(matches!(
            p.sample(x.view(), y.view(), t.view(), &mut rng),
            Err(PathError::Core(_))
        ));
        assert!(matches!(
            p.sample_with_noise(x.view(), x.view(), t.view(), y.view()),
            Err(PathError::Core(_))
        ));
        assert!(matches!(
            p.sample(x.view(), x.view(), array![0.5].view(), &mut rng),
            Err(PathError::Core(_))
        ));
        assert!(matches!(
            p.sample(z.view(), z.view(), Array1::zeros(0).view(), &mut rng),
            Err(PathError::Core(_))
        ));
        assert!(matches!(
            p.log_density(y.view(), x.view(), x.view(), t.view()),
            Err(PathError::Core(_))
        ));
        assert!(matches!(
            p.score(y.view(), x.view(), x.view(), t.view()),
            Err(PathError::Core(_))
        ));
        assert!(matches!(
            p.mean(x.view(), y.view(), t.view()),
            Err(PathError::Core(_))
        ));
    }
}

#[test]
fn singular_points_are_errors() {
    let x = Array2::<f64>::ones((1, 2));
    let one = array![1.0];
    // VP and linear-VP: σ'_1 = -∞.
    for p in [
        Box::new(AffineProbPath::new(VpScheduler::default())) as Box<dyn GaussianPath>,
        Box::new(AffineProbPath::new(LinearVpScheduler)),
    ] {
        assert!(matches!(
            p.sample_with_noise(x.view(), x.view(), one.view(), x.view()),
            Err(PathError::Singular { .. })
        ));
        assert!(matches!(
            p.log_density(x.view(), x.view(), x.view(), one.view()),
            Err(PathError::Singular { .. })
        ));
    }
    // Polynomial with n < 1: α'_0 = ∞.
    let p = AffineProbPath::new(PolynomialScheduler::new(0.5).unwrap());
    assert!(matches!(
        p.conditional_velocity(x.view(), x.view(), x.view(), array![0.0].view()),
        Err(PathError::Singular { .. })
    ));
    // CondOT at t = 1: σ = 0 but σ' = -1 is finite: u = x_1 - x_0.
    let p = AffineProbPath::new(CondOtScheduler);
    let u = p
        .conditional_velocity(x.view(), (&x * 0.0).view(), (&x * 3.0).view(), one.view())
        .unwrap();
    assert_eq!(u, &x * 3.0);
    // A deterministic path has no density or score.
    let p = LinearPath::new(0.0).unwrap();
    assert!(matches!(
        p.score(x.view(), x.view(), x.view(), array![0.5].view()),
        Err(PathError::Singular { .. })
    ));
}
