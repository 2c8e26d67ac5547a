//! Self-tests of the continuity kit: for each check, a path that is wrong in exactly the way
//! that check looks for (and right in every other way) is rejected by that check, by
//! `check_path` under that check's name, and accepted by the checks that do not read the
//! faulty quantity; the same wrapper without a fault passes everything.

use fm_paths::testing::{
    CheckConfig, check_boundary, check_continuity, check_derivatives, check_marginal_continuity,
    check_path, check_sample_velocity, check_score,
};
use fm_paths::{
    AffineProbPath, Boundary, Conditioning, GaussianPath, LinearPath, LipmanPath, PathError,
    PathSample, ProbPath, SchrodingerBridgePath, VpScheduler,
};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

/// One deliberate mistake.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// No mistake: the wrapper forwards everything.
    None,
    /// `d_mean` is off by `0.01` in every coordinate.
    DMean,
    /// `d_std` is off by `0.01`.
    DStd,
    /// The sampled `u_t` is 1% too fast; `conditional_velocity` is right.
    SampledField,
    /// `conditional_velocity` is 1% too fast; the sampled `u_t` is right.
    EvaluatedField,
    /// `score` is 1% too large; `log_density` is right.
    Score,
    /// `log_density` forgets its `−d log σ_t` normalisation (a wrong `∂_t log p`).
    LogDensity,
}

struct Wrong<P> {
    inner: P,
    fault: Fault,
}

impl<P: GaussianPath> ProbPath for Wrong<P> {
    fn sample_with_noise(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
        eps: ArrayView2<f64>,
    ) -> Result<PathSample, PathError> {
        let mut s = self.inner.sample_with_noise(x_0, x_1, t, eps)?;
        if self.fault == Fault::SampledField {
            s.u_t *= 1.01;
        }
        Ok(s)
    }
    fn conditional_velocity(
        &self,
        x_t: ArrayView2<f64>,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
    ) -> Result<Array2<f64>, PathError> {
        let u = self.inner.conditional_velocity(x_t, x_0, x_1, t)?;
        Ok(if self.fault == Fault::EvaluatedField {
            u * 1.01
        } else {
            u
        })
    }
}

impl<P: GaussianPath> GaussianPath for Wrong<P> {
    fn conditioning(&self) -> Conditioning {
        self.inner.conditioning()
    }
    fn boundary(&self) -> Boundary {
        self.inner.boundary()
    }
    fn mean(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
    ) -> Result<Array2<f64>, PathError> {
        self.inner.mean(x_0, x_1, t)
    }
    fn std(&self, t: ArrayView1<f64>) -> Result<Array1<f64>, PathError> {
        self.inner.std(t)
    }
    fn d_mean(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
    ) -> Result<Array2<f64>, PathError> {
        let dm = self.inner.d_mean(x_0, x_1, t)?;
        Ok(if self.fault == Fault::DMean {
            dm + 0.01
        } else {
            dm
        })
    }
    fn d_std(&self, t: ArrayView1<f64>) -> Result<Array1<f64>, PathError> {
        let ds = self.inner.d_std(t)?;
        Ok(if self.fault == Fault::DStd {
            ds + 0.01
        } else {
            ds
        })
    }
    fn log_density(
        &self,
        x: ArrayView2<f64>,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
    ) -> Result<Array1<f64>, PathError> {
        let lp = self.inner.log_density(x, x_0, x_1, t)?;
        Ok(if self.fault == Fault::LogDensity {
            let d = x.ncols() as f64;
            lp + self.inner.std(t)?.mapv(|s| d * s.ln())
        } else {
            lp
        })
    }
    fn score(
        &self,
        x_t: ArrayView2<f64>,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
    ) -> Result<Array2<f64>, PathError> {
        let s = self.inner.score(x_t, x_0, x_1, t)?;
        Ok(if self.fault == Fault::Score {
            s * 1.01
        } else {
            s
        })
    }
}

fn config() -> CheckConfig {
    CheckConfig {
        cases: 16,
        ..CheckConfig::default()
    }
}

/// Paths with noise (so the density checks run) and a time-varying `σ_t` (so a dropped
/// `log σ_t` term changes `∂_t log p`), plus a constant-σ one for the faults it can show.
fn paths(fault: Fault) -> Vec<(&'static str, Box<dyn GaussianPath>)> {
    let mut v: Vec<(&'static str, Box<dyn GaussianPath>)> = vec![
        (
            "lipman",
            Box::new(Wrong {
                inner: LipmanPath::new(0.01).unwrap(),
                fault,
            }),
        ),
        (
            "bridge",
            Box::new(Wrong {
                inner: SchrodingerBridgePath::new(1.0).unwrap(),
                fault,
            }),
        ),
        (
            "vp",
            Box::new(Wrong {
                inner: AffineProbPath::new(VpScheduler::default()),
                fault,
            }),
        ),
    ];
    if fault != Fault::LogDensity {
        // With a constant σ a dropped `log σ` is a constant, invisible to every check (and
        // harmless to the continuity equation), so this path is not used for that fault.
        v.push((
            "linear",
            Box::new(Wrong {
                inner: LinearPath::new(0.3).unwrap(),
                fault,
            }),
        ));
    }
    v
}

type Check = fn(&dyn GaussianPath, &CheckConfig) -> Result<(), PathError>;

/// Every check of the kit with the name it reports.
fn checks() -> [(&'static str, Check); 6] {
    [
        ("boundary", |p, c| check_boundary(p, c)),
        ("mean and std derivatives", |p, c| check_derivatives(p, c)),
        ("dx_t/dt = u_t", |p, c| check_sample_velocity(p, c)),
        ("score = ∇ log p", |p, c| check_score(p, c)),
        ("conditional continuity equation", |p, c| {
            check_continuity(p, c)
        }),
        ("marginal continuity equation", |p, c| {
            check_marginal_continuity(p, c)
        }),
    ]
}

/// Asserts that exactly the checks named in `rejected` reject the faulty paths (each run on its
/// own), that the first of them is what `check_path` reports, and returns the details of the
/// rejections so a test can look at which sub-check fired.
fn rejected_by(fault: Fault, rejected: &[&str]) -> Vec<String> {
    let cfg = config();
    let mut details = Vec::new();
    for (name, path) in paths(fault) {
        let p = path.as_ref();
        for (check, run) in checks() {
            match run(p, &cfg) {
                Ok(()) => assert!(
                    !rejected.contains(&check),
                    "{name} with {fault:?}: `{check}` accepted it"
                ),
                Err(PathError::CheckFailed {
                    check: c,
                    details: d,
                }) => {
                    assert_eq!(c, check, "{name}");
                    assert!(
                        rejected.contains(&check),
                        "{name} with {fault:?}: `{check}` rejected it: {d}"
                    );
                    details.push(d);
                }
                Err(e) => panic!("{name} with {fault:?}: `{check}` errored: {e}"),
            }
        }
        match check_path(p, &cfg) {
            Err(PathError::CheckFailed { check, .. }) if rejected.first() == Some(&check) => {}
            other => panic!(
                "{name} with {fault:?}: check_path gave {other:?}, want {:?}",
                rejected.first()
            ),
        }
    }
    details
}

#[test]
fn the_faultless_wrapper_passes_every_check() {
    for (name, path) in paths(Fault::None) {
        if let Err(e) = check_path(path.as_ref(), &config()) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn a_wrong_d_mean_fails_the_derivative_check_only() {
    let details = rejected_by(Fault::DMean, &["mean and std derivatives"]);
    assert!(details.iter().all(|d| d.contains("d_mean")), "{details:?}");
}

#[test]
fn a_wrong_d_std_fails_the_derivative_check_only() {
    let details = rejected_by(Fault::DStd, &["mean and std derivatives"]);
    assert!(details.iter().all(|d| d.contains("d_std")), "{details:?}");
}

#[test]
fn a_wrong_sampled_field_fails_the_sample_velocity_check_only() {
    let details = rejected_by(Fault::SampledField, &["dx_t/dt = u_t"]);
    assert!(
        details.iter().all(|d| d.starts_with("dx_t/dt = ")),
        "{details:?}"
    );
}

#[test]
fn a_wrong_evaluated_field_fails_the_field_checks() {
    // The sampled u_t is right, so dx_t/dt = u_t holds; the evaluated field disagrees with it
    // (the second half of the sample-velocity check) and breaks both continuity equations.
    let details = rejected_by(
        Fault::EvaluatedField,
        &[
            "dx_t/dt = u_t",
            "conditional continuity equation",
            "marginal continuity equation",
        ],
    );
    let sample_velocity: Vec<_> = details
        .iter()
        .filter(|d| d.starts_with("conditional_velocity(x_t)"))
        .collect();
    assert_eq!(sample_velocity.len(), 4, "{details:?}");
}

#[test]
fn a_wrong_score_fails_the_score_check_only() {
    let details = rejected_by(Fault::Score, &["score = ∇ log p"]);
    assert!(
        details.iter().all(|d| d.starts_with("score ")),
        "{details:?}"
    );
}

#[test]
fn a_wrong_log_density_normalisation_fails_the_continuity_checks() {
    // ∇_x log p is unchanged (the score check must accept it), ∂_t log p is not.
    rejected_by(
        Fault::LogDensity,
        &[
            "conditional continuity equation",
            "marginal continuity equation",
        ],
    );
}

#[test]
fn a_score_off_by_a_tenth_of_a_percent_still_fails() {
    // The score check's tolerance is 1e-6 relative: 1e-3 misses it by three orders.
    struct Slight(LipmanPath);
    impl ProbPath for Slight {
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
    impl GaussianPath for Slight {
        fn conditioning(&self) -> Conditioning {
            self.0.conditioning()
        }
        fn boundary(&self) -> Boundary {
            self.0.boundary()
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
        fn score(
            &self,
            x: ArrayView2<f64>,
            a: ArrayView2<f64>,
            b: ArrayView2<f64>,
            t: ArrayView1<f64>,
        ) -> Result<Array2<f64>, PathError> {
            // Off by 1e-3 / σ_t in every coordinate (about 1e-3 of a typical score).
            let mut s = self.0.score(x, a, b, t)?;
            let sigma = self.0.std(t)?;
            s += &(sigma.mapv(|v| 1e-3 / v).insert_axis(Axis(1)));
            Ok(s)
        }
    }
    let r = check_score(&Slight(LipmanPath::new(0.01).unwrap()), &config());
    assert!(
        matches!(
            r,
            Err(PathError::CheckFailed {
                check: "score = ∇ log p",
                ..
            })
        ),
        "{r:?}"
    );
}
