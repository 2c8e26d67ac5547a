//! Matchers: a probability path plus a coupling, and one training batch from them.

use crate::matcher_spec::{SchedulerName, parse_scheduler_name};
use crate::{CouplingKind, MatcherKind, MatcherSpec, Objective, TrainError};
use fm_couplings::{Coupling, ExactOtCoupling, IndependentCoupling, SinkhornCoupling};
use fm_paths::{
    AffineProbPath, CondOtScheduler, CosineScheduler, LinearPath, LinearVpScheduler, LipmanPath,
    PolynomialScheduler, ProbPath, Scheduler, SchedulerOutput, SchrodingerBridgePath,
    TrigonometricPath, VpScheduler,
};
use ndarray::{Array1, Array2, ArrayView2};
use rand::{Rng, RngCore};

/// A scheduler chosen by name (`condot`, `cosine`, `polynomial:N`, `vp`, `linear-vp`).
#[derive(Debug, Clone, Copy)]
pub enum NamedScheduler {
    /// `α_t = t, σ_t = 1 − t`.
    CondOt(CondOtScheduler),
    /// `α_t = sin(πt/2), σ_t = cos(πt/2)`.
    Cosine(CosineScheduler),
    /// `α_t = t^n, σ_t = 1 − t^n`.
    Polynomial(PolynomialScheduler),
    /// The variance-preserving diffusion scheduler (β_min 0.1, β_max 20).
    Vp(VpScheduler),
    /// `α_t = t, σ_t = √(1 − t²)`.
    LinearVp(LinearVpScheduler),
}

impl NamedScheduler {
    /// The scheduler of a name (see [`crate::SCHEDULER_NAMES`]).
    pub fn parse(name: &str) -> Result<Self, TrainError> {
        Ok(match parse_scheduler_name(name)? {
            SchedulerName::CondOt => Self::CondOt(CondOtScheduler),
            SchedulerName::Cosine => Self::Cosine(CosineScheduler),
            SchedulerName::Polynomial(n) => Self::Polynomial(PolynomialScheduler::new(n)?),
            SchedulerName::Vp => Self::Vp(VpScheduler::default()),
            SchedulerName::LinearVp => Self::LinearVp(LinearVpScheduler),
        })
    }
}

impl Scheduler for NamedScheduler {
    fn at(&self, t: f64) -> SchedulerOutput {
        match self {
            Self::CondOt(s) => s.at(t),
            Self::Cosine(s) => s.at(t),
            Self::Polynomial(s) => s.at(t),
            Self::Vp(s) => s.at(t),
            Self::LinearVp(s) => s.at(t),
        }
    }
    fn boundary(&self) -> fm_paths::Boundary {
        match self {
            Self::CondOt(s) => s.boundary(),
            Self::Cosine(s) => s.boundary(),
            Self::Polynomial(s) => s.boundary(),
            Self::Vp(s) => s.boundary(),
            Self::LinearVp(s) => s.boundary(),
        }
    }
}

/// One training batch: times, the inputs `x_t` and the regression targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `t ~ U[0, 1]`, one per row.
    pub t: Array1<f64>,
    /// The network's inputs `x_t`, shape `(batch, d)`.
    pub x_t: Array2<f64>,
    /// The regression targets: `u_t(x_t | z)` for flow matching, the noise `x_0` for score
    /// matching.
    pub target: Array2<f64>,
    /// The network-input context of every row (conditional training), shape `(batch, k)`;
    /// `None` for an unconditional batch.
    pub c: Option<Array2<f64>>,
}

/// A matcher: the probability path and the coupling of a [`MatcherSpec`].
///
/// `icfm`: [`LinearPath`] σ with the independent coupling; `otcfm`: the same path with the
/// exact OT permutation of each minibatch; `fm`: [`LipmanPath`] σ_min; `sbcfm`:
/// [`SchrodingerBridgePath`] σ with exact OT or Sinkhorn ε = 2σ²; `vp`: [`TrigonometricPath`] σ;
/// `affine`: [`AffineProbPath`] with a named scheduler.
///
/// ```
/// use fm_train::{Matcher, MatcherSpec, Objective};
/// let m = Matcher::new(&MatcherSpec::parse("otcfm", Some(0.1), None, None).unwrap(), Objective::Flow).unwrap();
/// let mut rng = fm_core::rng::seeded(0);
/// let x_0 = fm_core::StandardNormal::new(2).unwrap().sample(64, &mut rng);
/// let x_1 = x_0.mapv(|v| v + 3.0);
/// let b = m.batch(x_0.view(), x_1.view(), &mut rng).unwrap();
/// assert_eq!(b.x_t.dim(), (64, 2));
/// ```
pub struct Matcher {
    spec: MatcherSpec,
    objective: Objective,
    path: Box<dyn ProbPath>,
    coupling: Box<dyn Coupling>,
    scheduler: Option<NamedScheduler>,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher")
            .field("spec", &self.spec)
            .field("objective", &self.objective)
            .finish()
    }
}

impl Matcher {
    /// Builds the path and coupling of `spec` for `objective`. Score matching needs the
    /// `affine` matcher (a Gaussian path `α_t x_1 + σ_t x_0` whose noise is the source).
    pub fn new(spec: &MatcherSpec, objective: Objective) -> Result<Self, TrainError> {
        let s = spec.sigma;
        let mut scheduler = None;
        let path: Box<dyn ProbPath> = match spec.kind {
            MatcherKind::Icfm | MatcherKind::Otcfm => Box::new(LinearPath::new(s)?),
            MatcherKind::Fm => Box::new(LipmanPath::new(s)?),
            MatcherKind::Sbcfm => Box::new(SchrodingerBridgePath::new(s)?),
            MatcherKind::Vp => Box::new(TrigonometricPath::new(s)?),
            MatcherKind::Affine => {
                let name = spec.scheduler.as_deref().unwrap_or("condot");
                let sch = NamedScheduler::parse(name)?;
                scheduler = Some(sch);
                Box::new(AffineProbPath::new(sch))
            }
        };
        if objective == Objective::Score && spec.kind != MatcherKind::Affine {
            return Err(TrainError::param(
                "objective",
                "score",
                format!(
                    "score matching needs the `affine` matcher (e.g. --matcher affine --scheduler vp), not `{}`",
                    spec.kind.name()
                ),
            ));
        }
        let coupling: Box<dyn Coupling> = match spec.coupling {
            CouplingKind::Independent => Box::new(IndependentCoupling::identity()),
            CouplingKind::Exact => Box::new(ExactOtCoupling::default()),
            CouplingKind::ExactWithReplacement => Box::new(ExactOtCoupling {
                with_replacement: true,
                ..ExactOtCoupling::default()
            }),
            CouplingKind::Sinkhorn => Box::new(SinkhornCoupling::schrodinger_bridge(s)?),
        };
        Ok(Self {
            spec: spec.clone(),
            objective,
            path,
            coupling,
            scheduler,
        })
    }

    /// The spec it was built from.
    pub fn spec(&self) -> &MatcherSpec {
        &self.spec
    }

    /// The scheduler of an `affine` matcher.
    pub fn scheduler(&self) -> Option<&NamedScheduler> {
        self.scheduler.as_ref()
    }

    /// One batch from independent draws `x_0` (source) and `x_1` (target) of equal size:
    /// pairs them with the coupling, draws `t ~ U[0, 1]` per pair and the path's noise, and
    /// returns `x_t` with the regression target (`u_t` or, for score matching, `x_0`).
    pub fn batch(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        rng: &mut dyn RngCore,
    ) -> Result<Batch, TrainError> {
        let pairing = self.coupling.pair(x_0, x_1, rng)?;
        let (x_0, x_1) = pairing.gather(x_0, x_1)?;
        self.paired_batch(x_0, x_1, None, rng)
    }

    /// One conditional batch: `x_1` (targets) with their contexts `c_1` (one row each, any width)
    /// and an independent source draw `x_0`, paired by a conditional `coupling` that never
    /// pairs across contexts (see `fm_couplings::ConditionalCoupling`); each row of the batch
    /// keeps the context of its target.
    ///
    /// ```
    /// use fm_train::{Matcher, MatcherSpec, Objective};
    /// let m = Matcher::new(&MatcherSpec::parse("otcfm", Some(0.1), None, None).unwrap(), Objective::Flow).unwrap();
    /// let mut rng = fm_core::rng::seeded(0);
    /// let x_0 = fm_core::StandardNormal::new(1).unwrap().sample(4, &mut rng);
    /// let x_1 = ndarray::array![[-5.0], [5.0], [-4.0], [6.0]];
    /// let c_1 = ndarray::array![[0.0], [1.0], [0.0], [1.0]];
    /// let b = m.batch_conditional(x_0.view(), x_1.view(), c_1.view(), &fm_couplings::LabelOtCoupling::default(), &mut rng).unwrap();
    /// assert_eq!(b.c.unwrap().dim(), (4, 1));
    /// ```
    pub fn batch_conditional(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        c_1: ArrayView2<f64>,
        coupling: &dyn fm_couplings::ConditionalCoupling,
        rng: &mut dyn RngCore,
    ) -> Result<Batch, TrainError> {
        let pairing = coupling.pair_conditional(x_0, x_1, c_1, rng)?;
        let (x_0, x_1) = pairing.gather(x_0, x_1)?;
        let c = c_1.select(ndarray::Axis(0), &pairing.i1);
        self.paired_batch(x_0, x_1, Some(c), rng)
    }

    fn paired_batch(
        &self,
        x_0: Array2<f64>,
        x_1: Array2<f64>,
        c: Option<Array2<f64>>,
        rng: &mut dyn RngCore,
    ) -> Result<Batch, TrainError> {
        let n = x_0.nrows();
        let t: Array1<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
        let s = self.path.sample(x_0.view(), x_1.view(), t.view(), rng)?;
        let target = match self.objective {
            Objective::Flow => s.u_t,
            Objective::Score => s.eps,
        };
        Ok(Batch {
            t,
            x_t: s.x_t,
            target,
            c,
        })
    }
}
