//! Every path of the crate passes the continuity kit; a path with a 1% wrong field fails it.

use fm_paths::testing::{
    CheckConfig, check_continuity, check_marginal_continuity, check_path, check_sample_velocity,
};
use fm_paths::{
    AffineProbPath, Boundary, CondOtScheduler, Conditioning, CosineScheduler, GaussianPath,
    LinearPath, LinearVpScheduler, LipmanPath, PathError, PathSample, PolynomialScheduler,
    ProbPath, SchrodingerBridgePath, TrigonometricPath, VarianceExplodingPath, VpScheduler,
};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

fn config() -> CheckConfig {
    CheckConfig {
        cases: 24,
        ..CheckConfig::default()
    }
}

fn passes<P: GaussianPath + ?Sized>(name: &str, path: &P) {
    if let Err(e) = check_path(path, &config()) {
        panic!("{name} fails the kit: {e}");
    }
}

#[test]
fn linear_paths_pass() {
    passes("I-CFM sigma 0", &LinearPath::new(0.0).unwrap());
    passes("I-CFM sigma 0.1", &LinearPath::new(0.1).unwrap());
    passes("I-CFM sigma 1", &LinearPath::new(1.0).unwrap());
}

#[test]
fn lipman_paths_pass() {
    passes("Lipman sigma_min 0", &LipmanPath::new(0.0).unwrap());
    passes("Lipman sigma_min 1e-2", &LipmanPath::new(1e-2).unwrap());
    passes("Lipman sigma_min 0.5", &LipmanPath::new(0.5).unwrap());
}

#[test]
fn schrodinger_bridge_paths_pass() {
    passes("SB sigma 1", &SchrodingerBridgePath::new(1.0).unwrap());
    passes("SB sigma 0.3", &SchrodingerBridgePath::new(0.3).unwrap());
    passes("SB sigma 0", &SchrodingerBridgePath::new(0.0).unwrap());
}

#[test]
fn trigonometric_paths_pass() {
    passes("trig sigma 0", &TrigonometricPath::new(0.0).unwrap());
    passes("trig sigma 0.2", &TrigonometricPath::new(0.2).unwrap());
}

#[test]
fn affine_paths_pass() {
    passes("CondOT", &AffineProbPath::new(CondOtScheduler));
    passes(
        "poly 1",
        &AffineProbPath::new(PolynomialScheduler::new(1.0).unwrap()),
    );
    passes(
        "poly 2",
        &AffineProbPath::new(PolynomialScheduler::new(2.0).unwrap()),
    );
    passes(
        "poly 0.5",
        &AffineProbPath::new(PolynomialScheduler::new(0.5).unwrap()),
    );
    passes("cosine", &AffineProbPath::new(CosineScheduler));
    passes("linear VP", &AffineProbPath::new(LinearVpScheduler));
    passes("VP diffusion", &AffineProbPath::new(VpScheduler::default()));
}

#[test]
fn variance_exploding_paths_pass() {
    passes(
        "VE 0.01..50",
        &VarianceExplodingPath::new(0.01, 50.0).unwrap(),
    );
    passes("VE 0.1..2", &VarianceExplodingPath::new(0.1, 2.0).unwrap());
}

#[test]
fn kit_accepts_trait_objects() {
    let paths: Vec<Box<dyn GaussianPath>> = vec![
        Box::new(LinearPath::new(0.5).unwrap()),
        Box::new(AffineProbPath::new(CosineScheduler)),
    ];
    for p in &paths {
        check_path(
            p.as_ref(),
            &CheckConfig {
                cases: 4,
                ..config()
            },
        )
        .unwrap();
    }
}

/// A path whose field (sampled and evaluated) is 1% too fast; everything else is `inner`'s.
struct Broken<P>(P);

impl<P: GaussianPath> ProbPath for Broken<P> {
    fn sample_with_noise(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
        eps: ArrayView2<f64>,
    ) -> Result<PathSample, PathError> {
        let mut s = self.0.sample_with_noise(x_0, x_1, t, eps)?;
        s.u_t *= 1.01;
        Ok(s)
    }
    fn conditional_velocity(
        &self,
        x_t: ArrayView2<f64>,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
    ) -> Result<Array2<f64>, PathError> {
        Ok(self.0.conditional_velocity(x_t, x_0, x_1, t)? * 1.01)
    }
}

impl<P: GaussianPath> GaussianPath for Broken<P> {
    fn conditioning(&self) -> Conditioning {
        self.0.conditioning()
    }
    fn boundary(&self) -> Boundary {
        self.0.boundary()
    }
    fn mean(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
    ) -> Result<Array2<f64>, PathError> {
        self.0.mean(x_0, x_1, t)
    }
    fn std(&self, t: ArrayView1<f64>) -> Result<Array1<f64>, PathError> {
        self.0.std(t)
    }
    fn d_mean(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
    ) -> Result<Array2<f64>, PathError> {
        self.0.d_mean(x_0, x_1, t)
    }
    fn d_std(&self, t: ArrayView1<f64>) -> Result<Array1<f64>, PathError> {
        self.0.d_std(t)
    }
}

fn failed_check(r: Result<(), PathError>) -> &'static str {
    match r {
        Err(PathError::CheckFailed { check, .. }) => check,
        other => panic!("the broken path was not caught: {other:?}"),
    }
}

#[test]
fn a_field_off_by_one_percent_fails_every_field_check() {
    let cfg = CheckConfig {
        cases: 16,
        ..config()
    };
    for (name, path) in [
        (
            "linear",
            Box::new(Broken(LinearPath::new(0.3).unwrap())) as Box<dyn GaussianPath>,
        ),
        ("lipman", Box::new(Broken(LipmanPath::new(0.01).unwrap()))),
        (
            "bridge",
            Box::new(Broken(SchrodingerBridgePath::new(1.0).unwrap())),
        ),
        (
            "vp",
            Box::new(Broken(AffineProbPath::new(VpScheduler::default()))),
        ),
    ] {
        let p = path.as_ref();
        assert_eq!(failed_check(check_path(p, &cfg)), "dx_t/dt = u_t", "{name}");
        // Each field check bites on its own, not only the first one in check_path.
        assert_eq!(
            failed_check(check_sample_velocity(p, &cfg)),
            "dx_t/dt = u_t",
            "{name}"
        );
        assert_eq!(
            failed_check(check_continuity(p, &cfg)),
            "conditional continuity equation",
            "{name}"
        );
        assert_eq!(
            failed_check(check_marginal_continuity(p, &cfg)),
            "marginal continuity equation",
            "{name}"
        );
    }
}

#[test]
fn a_wrong_boundary_declaration_fails() {
    /// CondOT that claims to end at N(x_1, 0.1²).
    struct Liar(AffineProbPath<CondOtScheduler>);
    impl ProbPath for Liar {
        fn sample_with_noise(
            &self,
            a: ArrayView2<f64>,
            b: ArrayView2<f64>,
            t: ArrayView1<f64>,
            e: ArrayView2<f64>,
        ) -> Result<PathSample, PathError> {
            self.0.sample_with_noise(a, b, t, e)
        }
        fn conditional_velocity(
            &self,
            x: ArrayView2<f64>,
            a: ArrayView2<f64>,
            b: ArrayView2<f64>,
            t: ArrayView1<f64>,
        ) -> Result<Array2<f64>, PathError> {
            self.0.conditional_velocity(x, a, b, t)
        }
    }
    impl GaussianPath for Liar {
        fn conditioning(&self) -> Conditioning {
            Conditioning::Target
        }
        fn boundary(&self) -> Boundary {
            Boundary::noise_to_data(0.1)
        }
        fn mean(
            &self,
            a: ArrayView2<f64>,
            b: ArrayView2<f64>,
            t: ArrayView1<f64>,
        ) -> Result<Array2<f64>, PathError> {
            self.0.mean(a, b, t)
        }
        fn std(&self, t: ArrayView1<f64>) -> Result<Array1<f64>, PathError> {
            self.0.std(t)
        }
        fn d_mean(
            &self,
            a: ArrayView2<f64>,
            b: ArrayView2<f64>,
            t: ArrayView1<f64>,
        ) -> Result<Array2<f64>, PathError> {
            self.0.d_mean(a, b, t)
        }
        fn d_std(&self, t: ArrayView1<f64>) -> Result<Array1<f64>, PathError> {
            self.0.d_std(t)
        }
    }
    let r = check_path(&Liar(AffineProbPath::new(CondOtScheduler)), &config());
    assert_eq!(failed_check(r), "boundary");
}

#[test]
fn vp_with_too_little_noise_fails_the_boundary() {
    // β_max = 2: α_0 = e^{-0.55} ≈ 0.58, far from pure noise.
    let path = AffineProbPath::new(VpScheduler::new(0.1, 2.0).unwrap());
    assert_eq!(failed_check(check_path(&path, &config())), "boundary");
}

#[test]
fn bad_config_is_an_error() {
    let cfg = CheckConfig {
        t_min: 0.0,
        ..config()
    };
    assert!(matches!(
        check_path(&LinearPath::default(), &cfg),
        Err(PathError::InvalidParameter { .. })
    ));
}
