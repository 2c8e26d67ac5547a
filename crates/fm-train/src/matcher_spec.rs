//! Matcher names and settings as the user gives them (and as model files store them).

use crate::TrainError;
use serde::{Deserialize, Serialize};

/// The matchers of TorchCFM, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatcherKind {
    /// `icfm`: independent coupling, linear path `x_t = t x_1 + (1 − t) x_0 + σ ε` (σ = 0 by default).
    Icfm,
    /// `otcfm`: as `icfm` but with the exact optimal-transport permutation of each minibatch.
    Otcfm,
    /// `fm`: Lipman et al.'s path `x_t = t x_1 + (1 − (1 − σ_min) t) x_0` (target-conditioned;
    /// σ_min = 1e-4 by default, Lipman et al.'s choice for 2-D data).
    Fm,
    /// `sbcfm`: Schrödinger-bridge path `σ √(t(1 − t))` noise with an OT coupling (σ = 1 by default;
    /// coupling `exact` or `sinkhorn` with ε = 2σ²).
    Sbcfm,
    /// `vp`: the trigonometric (variance-preserving) interpolant `cos(πt/2) x_0 + sin(πt/2) x_1 + σ ε`.
    Vp,
    /// `affine`: `x_t = α_t x_1 + σ_t x_0` with a scheduler (`condot`, `cosine`, `polynomial:N`,
    /// `vp`, `linear-vp`) and the independent coupling.
    Affine,
}

impl MatcherKind {
    /// Every name [`MatcherSpec::parse`] accepts.
    pub const NAMES: &'static [&'static str] = &["icfm", "otcfm", "fm", "sbcfm", "vp", "affine"];

    /// The matcher's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Icfm => "icfm",
            Self::Otcfm => "otcfm",
            Self::Fm => "fm",
            Self::Sbcfm => "sbcfm",
            Self::Vp => "vp",
            Self::Affine => "affine",
        }
    }

    /// The default σ of this matcher: TorchCFM's (0, and 1 for `sbcfm`), except σ_min = 1e-4 for `fm`.
    pub fn default_sigma(&self) -> f64 {
        match self {
            Self::Sbcfm => 1.0,
            Self::Fm => 1e-4,
            _ => 0.0,
        }
    }
}

/// Which coupling pairs source and target points within a minibatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CouplingKind {
    /// Independent: row i of the source batch with row i of the target batch.
    Independent,
    /// The exact optimal-transport permutation for squared Euclidean costs.
    Exact,
    /// Entropic OT (Sinkhorn) with ε = 2σ², pairs drawn from the plan.
    Sinkhorn,
    /// The exact OT plan with pairs drawn from it with replacement, as TorchCFM's
    /// `OTPlanSampler(method="exact")` does (some source rows repeated, some dropped).
    #[serde(rename = "exact-with-replacement")]
    ExactWithReplacement,
}

impl CouplingKind {
    /// The coupling's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Independent => "independent",
            Self::Exact => "exact",
            Self::Sinkhorn => "sinkhorn",
            Self::ExactWithReplacement => "exact-with-replacement",
        }
    }
}

/// A matcher as named by the user: kind, σ, scheduler (affine only) and coupling.
///
/// ```
/// use fm_train::{MatcherSpec, CouplingKind};
/// let m = MatcherSpec::parse("sbcfm", None, None, Some("sinkhorn")).unwrap();
/// assert_eq!(m.sigma, 1.0);
/// assert_eq!(m.coupling, CouplingKind::Sinkhorn);
/// assert!(MatcherSpec::parse("otcfm", Some(-1.0), None, None).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatcherSpec {
    /// The matcher.
    pub kind: MatcherKind,
    /// σ (σ_min for `fm`).
    pub sigma: f64,
    /// The scheduler of `affine` (`condot`, `cosine`, `polynomial:N`, `vp`, `linear-vp`).
    pub scheduler: Option<String>,
    /// The coupling.
    pub coupling: CouplingKind,
}

/// The scheduler names `affine` accepts.
pub const SCHEDULER_NAMES: &str = "condot, cosine, polynomial:N, vp, linear-vp";

impl MatcherSpec {
    /// Parses and checks a matcher name with its optional σ, scheduler and coupling.
    pub fn parse(
        name: &str,
        sigma: Option<f64>,
        scheduler: Option<&str>,
        coupling: Option<&str>,
    ) -> Result<Self, TrainError> {
        let kind = match name.to_ascii_lowercase().as_str() {
            "icfm" | "cfm" => MatcherKind::Icfm,
            "otcfm" => MatcherKind::Otcfm,
            "fm" | "lipman" => MatcherKind::Fm,
            "sbcfm" => MatcherKind::Sbcfm,
            "vp" | "vpcfm" => MatcherKind::Vp,
            "affine" => MatcherKind::Affine,
            _ => {
                return Err(TrainError::UnknownName {
                    what: "matcher",
                    name: name.into(),
                    expected: MatcherKind::NAMES.join(", "),
                });
            }
        };
        let sigma = sigma.unwrap_or(kind.default_sigma());
        if !(0.0..=1e3).contains(&sigma) {
            return Err(TrainError::param(
                "sigma",
                sigma,
                "σ must be finite, at least 0 and at most 1000",
            ));
        }
        if kind == MatcherKind::Fm && sigma >= 1.0 {
            return Err(TrainError::param(
                "sigma",
                sigma,
                "σ_min of `fm` must be below 1",
            ));
        }
        if kind == MatcherKind::Sbcfm && sigma == 0.0 {
            return Err(TrainError::param(
                "sigma",
                sigma,
                "`sbcfm` needs σ > 0 (its Sinkhorn ε is 2σ²)",
            ));
        }
        let scheduler = match (kind, scheduler) {
            (MatcherKind::Affine, s) => {
                let s = s.unwrap_or("condot").to_ascii_lowercase();
                parse_scheduler_name(&s)?;
                Some(s)
            }
            (_, None) => None,
            (_, Some(s)) => {
                return Err(TrainError::param(
                    "scheduler",
                    s,
                    format!(
                        "only the `affine` matcher takes a scheduler, not `{}`",
                        kind.name()
                    ),
                ));
            }
        };
        let default_coupling = match kind {
            MatcherKind::Otcfm | MatcherKind::Sbcfm => CouplingKind::Exact,
            _ => CouplingKind::Independent,
        };
        let coupling = match coupling {
            None => default_coupling,
            Some(c) => match c.to_ascii_lowercase().as_str() {
                "independent" => CouplingKind::Independent,
                "exact" | "ot" => CouplingKind::Exact,
                "sinkhorn" => CouplingKind::Sinkhorn,
                "exact-with-replacement" => CouplingKind::ExactWithReplacement,
                _ => {
                    return Err(TrainError::UnknownName {
                        what: "coupling",
                        name: c.into(),
                        expected: "independent, exact, sinkhorn, exact-with-replacement".into(),
                    });
                }
            },
        };
        if coupling == CouplingKind::Sinkhorn && sigma == 0.0 {
            return Err(TrainError::param(
                "sigma",
                sigma,
                "the sinkhorn coupling needs σ > 0 (ε = 2σ²)",
            ));
        }
        Ok(Self {
            kind,
            sigma,
            scheduler,
            coupling,
        })
    }

    /// A short human-readable description, e.g. `otcfm (σ = 0.1, exact coupling)`.
    pub fn describe(&self) -> String {
        let mut s = format!("{} (σ = {}", self.kind.name(), self.sigma);
        if let Some(sch) = &self.scheduler {
            s.push_str(&format!(", scheduler {sch}"));
        }
        s.push_str(&format!(", {} coupling)", self.coupling.name()));
        s
    }
}

/// A parsed scheduler name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum SchedulerName {
    CondOt,
    Cosine,
    Polynomial(f64),
    Vp,
    LinearVp,
}

pub(crate) fn parse_scheduler_name(s: &str) -> Result<SchedulerName, TrainError> {
    let unknown = || TrainError::UnknownName {
        what: "scheduler",
        name: s.into(),
        expected: SCHEDULER_NAMES.into(),
    };
    Ok(match s {
        "condot" => SchedulerName::CondOt,
        "cosine" => SchedulerName::Cosine,
        "vp" => SchedulerName::Vp,
        "linear-vp" | "linearvp" => SchedulerName::LinearVp,
        _ => {
            let n = s.strip_prefix("polynomial:").ok_or_else(unknown)?;
            let n: f64 = n.parse().map_err(|_| unknown())?;
            if !(n.is_finite() && n > 0.0 && n <= 100.0) {
                return Err(TrainError::param(
                    "scheduler",
                    s,
                    "polynomial:N needs 0 < N <= 100",
                ));
            }
            SchedulerName::Polynomial(n)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_torchcfm() {
        let p = |n| MatcherSpec::parse(n, None, None, None).unwrap();
        assert_eq!(p("icfm").sigma, 0.0);
        assert_eq!(p("otcfm").coupling, CouplingKind::Exact);
        assert_eq!(p("sbcfm").sigma, 1.0);
        assert_eq!(p("affine").scheduler.as_deref(), Some("condot"));
        assert_eq!(p("icfm").coupling, CouplingKind::Independent);
    }

    #[test]
    fn bad_names_and_values_are_rejected() {
        assert!(matches!(
            MatcherSpec::parse("ddpm", None, None, None),
            Err(TrainError::UnknownName {
                what: "matcher",
                ..
            })
        ));
        assert!(MatcherSpec::parse("affine", None, Some("polynomial:x"), None).is_err());
        assert!(MatcherSpec::parse("affine", None, Some("polynomial:0"), None).is_err());
        assert!(MatcherSpec::parse("affine", None, Some("polynomial:2"), None).is_ok());
        assert!(MatcherSpec::parse("icfm", None, Some("cosine"), None).is_err());
        assert!(MatcherSpec::parse("icfm", Some(f64::NAN), None, None).is_err());
        assert!(MatcherSpec::parse("icfm", None, None, Some("greedy")).is_err());
        assert!(MatcherSpec::parse("icfm", None, None, Some("sinkhorn")).is_err());
        let r =
            MatcherSpec::parse("otcfm", Some(0.1), None, Some("Exact-With-Replacement")).unwrap();
        assert_eq!(r.coupling, CouplingKind::ExactWithReplacement);
        assert_eq!(r.coupling.name(), "exact-with-replacement");
        let e = MatcherSpec::parse("otcfm", None, None, Some("exact-replace")).unwrap_err();
        assert!(e.to_string().contains("exact-with-replacement"), "{e}");
    }
}
