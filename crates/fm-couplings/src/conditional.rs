//! Couplings that stay correct under conditioning: [`ConditionalCoupling`], exact OT within each
//! label ([`LabelOtCoupling`]) and conditional OT for continuous contexts
//! ([`ConditionalOtCoupling`]). The reasoning and the API's shape are in the docs of
//! [`ConditionalCoupling`].
use crate::cost::{check_pair, sq_euclidean_cost};
use crate::coupling::Coupling;
use crate::{AssignmentSolver, CouplingError, Pairing};
use ndarray::{Array2, ArrayView2, Axis};
use rand::RngCore;
use rand::seq::SliceRandom;
use std::collections::HashMap;

/// A rule that pairs a source batch `x_0` with a target batch `x_1` whose rows carry contexts
/// `c_1`, so that the source point paired with context `c` is still a draw of the source.
///
/// `x_0` and `x_1` have shape `(n, d)`, `c_1` has shape `(n, k)` (`k = 0` for an unconditional
/// batch). Pair `p` of the returned [`Pairing`] is trained as `x_0[i0[p]] → x_1[i1[p]]` with the
/// target's context `c_1[i1[p]]`.
///
/// # Why plain minibatch OT is wrong under conditioning
///
/// A conditional model learns `p(x | c)` from a batch of targets `(x_1, c_1)` and a batch of
/// source points `x_0 ~ p_0` drawn independently of everything (`N(0, I)`). The training pair
/// `(x_0, x_1)` is used with the *target's* context `c_1`, so the flow at context `c` carries the
/// source points paired with context `c` to `p(x | c)`; for that to be `p_0` the coupling must keep
/// `x_0` independent of `c_1`. Exact OT on `‖x_0 − x_1‖²` alone does not: a target in a mode far
/// to the right gets a source point from the right tail of `N(0, I)`, so at sampling time (where
/// `x_0 ~ N(0, I)` whatever the context) the learned conditionals are biased. The couplings here
/// give every source point a context first, independently of `x_0` (a uniformly random
/// rearrangement of the targets' contexts, as FMPE / conditional CFM do), and then transport only
/// (or mostly) between equal contexts.
///
/// # The shape of the API
///
/// Context is data: a batch carries `c_1` of shape `(n, k)` beside `x_0` and `x_1` (both
/// `(n, d)`), and [`ConditionalCoupling::pair_conditional`] returns an ordinary [`Pairing`]; pair
/// `p` trains on `x_0[i0[p]]`, `x_1[i1[p]]` with context `c_1[i1[p]]`. An unconditional batch is
/// `k = 0`, for which both couplings reduce to exact OT. A trait (rather than free functions) so
/// that a trainer holds one `Box<dyn ConditionalCoupling>` chosen by name, as it does for
/// [`Coupling`]; the integer-label form is the inherent method [`LabelOtCoupling::pair_labels`],
/// and the deterministic cores ([`LabelOtCoupling::pair_with_source_labels`],
/// [`ConditionalOtCoupling::pair_with_source_contexts`]) are public so their optimality can be
/// checked. One source point per target: `x_0` and `x_1` must have the same number of rows, and
/// every row of each is used exactly once.
///
/// # Example: a user's conditional coupling
/// ```
/// use fm_couplings::{ConditionalCoupling, CouplingError, Pairing};
/// use ndarray::ArrayView2;
/// use rand::RngCore;
///
/// /// Pairs row `i` with row `i`: independent, hence correct for any context.
/// struct Diagonal;
/// impl ConditionalCoupling for Diagonal {
///     fn pair_conditional(&self, x_0: ArrayView2<f64>, x_1: ArrayView2<f64>,
///         c_1: ArrayView2<f64>, _rng: &mut dyn RngCore) -> Result<Pairing, CouplingError> {
///         if x_0.nrows() != x_1.nrows() || c_1.nrows() != x_1.nrows() {
///             return Err(CouplingError::ShapeMismatch { what: "batch".into(),
///                 expected: format!("{} rows", x_1.nrows()),
///                 found: format!("{} and {}", x_0.nrows(), c_1.nrows()) });
///         }
///         let i: Vec<usize> = (0..x_0.nrows()).collect();
///         Ok(Pairing { i0: i.clone(), i1: i })
///     }
/// }
///
/// let x = ndarray::array![[0.0], [1.0]];
/// let c = ndarray::array![[5.0], [7.0]];
/// let p = Diagonal.pair_conditional(x.view(), x.view(), c.view(), &mut fm_core::rng::seeded(0));
/// assert_eq!(p.unwrap().i1, vec![0, 1]);
/// ```
pub trait ConditionalCoupling: Send + Sync {
    /// Pairs the rows of `x_0` with the rows of `x_1` (contexts `c_1`); `rng` drives any
    /// randomness.
    fn pair_conditional(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        c_1: ArrayView2<f64>,
        rng: &mut dyn RngCore,
    ) -> Result<Pairing, CouplingError>;
}

/// An unconditional [`Coupling`] used on a conditional batch: the contexts are ignored.
///
/// With [`IndependentCoupling`](crate::IndependentCoupling) this is correct (the source stays
/// independent of the context: conditional I-CFM / FMPE). With
/// [`ExactOtCoupling`](crate::ExactOtCoupling) it is the *naive* minibatch OT coupling, which
/// biases the learned conditionals (see [`ConditionalCoupling`]); it is here as the baseline the
/// tests measure that bias on.
///
/// ```
/// use fm_couplings::{ConditionalCoupling, IgnoreContext, IndependentCoupling};
/// let x = ndarray::array![[0.0], [1.0], [2.0]];
/// let c = ndarray::array![[1.0], [1.0], [2.0]];
/// let coupling = IgnoreContext(IndependentCoupling::identity());
/// let p = coupling.pair_conditional(x.view(), x.view(), c.view(), &mut fm_core::rng::seeded(0));
/// assert_eq!(p.unwrap().i1, vec![0, 1, 2]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IgnoreContext<C>(pub C);

impl<C: Coupling> ConditionalCoupling for IgnoreContext<C> {
    fn pair_conditional(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        c_1: ArrayView2<f64>,
        rng: &mut dyn RngCore,
    ) -> Result<Pairing, CouplingError> {
        check_batches(x_0, x_1)?;
        check_contexts("c_1", c_1, x_1.nrows(), None)?;
        self.0.pair(x_0, x_1, rng)
    }
}

/// Exact OT within each label: source points are split among the labels with the targets'
/// label counts by a uniformly random split (the source is independent of the label), then each
/// label's source points are matched to its targets by the exact assignment on
/// `‖x_0 − x_1‖²`.
///
/// Given a label `l` with `n_l` targets, the source points paired with it are a uniformly random
/// subset of size `n_l` of an i.i.d. source batch, hence themselves i.i.d. draws of the source:
/// the coupling keeps `x_0` independent of the label exactly, while straightening the paths
/// within each label as OT-CFM does.
///
/// Labels are integers ([`pair_labels`](Self::pair_labels)); through [`ConditionalCoupling`],
/// each distinct row of `c_1` is one label (an integer label column or a one-hot encoding both
/// work; continuous contexts, all distinct, give one target per label, i.e. the independent
/// coupling — use [`ConditionalOtCoupling`] for those).
///
/// ```
/// use fm_couplings::LabelOtCoupling;
/// let x_0 = ndarray::array![[0.1], [-0.2], [0.3], [0.0]];
/// let x_1 = ndarray::array![[-5.0], [5.0], [-4.0], [6.0]];
/// let labels = [0, 1, 0, 1];
/// let mut rng = fm_core::rng::seeded(1);
/// let p = LabelOtCoupling::default().pair_labels(x_0.view(), x_1.view(), &labels, &mut rng).unwrap();
/// assert!(p.is_one_to_one(4));
/// // Each label received two source points, whichever their position.
/// let per_label = |l| p.i1.iter().filter(|&&j| labels[j] == l).count();
/// assert_eq!((per_label(0), per_label(1)), (2, 2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LabelOtCoupling {
    /// The assignment solver used within each label (the fast exact [`AssignmentSolver::Jv`] by
    /// default).
    pub solver: AssignmentSolver,
}

impl LabelOtCoupling {
    /// The coupling with a given solver.
    ///
    /// ```
    /// use fm_couplings::{AssignmentSolver, LabelOtCoupling};
    /// let c = LabelOtCoupling::with_solver(AssignmentSolver::Hungarian);
    /// assert_eq!(c.solver, AssignmentSolver::Hungarian);
    /// ```
    pub fn with_solver(solver: AssignmentSolver) -> Self {
        Self { solver }
    }

    /// Pairs `x_0` with `x_1` whose row `j` has label `labels[j]`: the source points get a
    /// uniformly random rearrangement of `labels`, then exact OT within each label.
    ///
    /// Returns `i0 = 0..n`, `i1` a permutation of `0..n`. Errors: empty or non-finite batches,
    /// different numbers of rows or columns, `labels.len() != n`.
    ///
    /// ```
    /// use fm_couplings::LabelOtCoupling;
    /// let x_0 = ndarray::array![[1.0], [0.0], [2.0]];
    /// let x_1 = ndarray::array![[10.0], [11.0], [12.0]];
    /// let mut rng = fm_core::rng::seeded(3);
    /// // One label: plain exact OT (sorted order in 1-D).
    /// let p = LabelOtCoupling::default().pair_labels(x_0.view(), x_1.view(), &[7, 7, 7], &mut rng).unwrap();
    /// assert_eq!(p.i1, vec![1, 0, 2]);
    /// ```
    pub fn pair_labels(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        labels: &[usize],
        rng: &mut dyn RngCore,
    ) -> Result<Pairing, CouplingError> {
        check_batches(x_0, x_1)?;
        check_labels("labels", labels, x_1.nrows())?;
        let perm = random_permutation(labels.len(), rng);
        let labels_0: Vec<usize> = perm.iter().map(|&j| labels[j]).collect();
        self.pair_with_source_labels(x_0, &labels_0, x_1, labels)
    }

    /// The deterministic core of [`pair_labels`](Self::pair_labels): source row `i` has label
    /// `labels_0[i]`, target row `j` has label `labels_1[j]`, and each label's sources are
    /// matched to its targets by the exact assignment on `‖x_0 − x_1‖²`.
    ///
    /// `labels_0` must be a rearrangement of `labels_1` (every label as many times in each);
    /// otherwise [`CouplingError::LabelCountMismatch`] names the first label that differs.
    /// Returns `i0 = 0..n` and `i1` with `labels_1[i1[i]] = labels_0[i]`: no pair crosses labels.
    ///
    /// ```
    /// use fm_couplings::LabelOtCoupling;
    /// let x_0 = ndarray::array![[0.0], [1.0], [2.0]];
    /// let x_1 = ndarray::array![[2.0], [0.0], [1.0]];
    /// let ot = LabelOtCoupling::default();
    /// let p = ot.pair_with_source_labels(x_0.view(), &[0, 1, 1], x_1.view(), &[0, 1, 1]).unwrap();
    /// // Source 0 must take the only target of label 0, however far.
    /// assert_eq!(p.i1, vec![0, 1, 2]);
    /// assert!(ot.pair_with_source_labels(x_0.view(), &[0, 0, 1], x_1.view(), &[0, 1, 1]).is_err());
    /// ```
    pub fn pair_with_source_labels(
        &self,
        x_0: ArrayView2<f64>,
        labels_0: &[usize],
        x_1: ArrayView2<f64>,
        labels_1: &[usize],
    ) -> Result<Pairing, CouplingError> {
        check_batches(x_0, x_1)?;
        check_labels("labels_0", labels_0, x_0.nrows())?;
        check_labels("labels_1", labels_1, x_1.nrows())?;
        let sources = groups(labels_0);
        let targets = groups(labels_1);
        check_label_counts(&sources, &targets)?;
        let n = x_0.nrows();
        let mut i1 = vec![0; n];
        for (label, src) in &sources {
            let tgt = &targets[label];
            let sigma = if src.len() == 1 {
                vec![0]
            } else {
                let cost = sq_euclidean_cost(
                    x_0.select(Axis(0), src).view(),
                    x_1.select(Axis(0), tgt).view(),
                )?;
                self.solver.solve(cost.view())?
            };
            for (a, &i) in src.iter().enumerate() {
                i1[i] = tgt[sigma[a]];
            }
        }
        Ok(Pairing {
            i0: (0..n).collect(),
            i1,
        })
    }
}

impl ConditionalCoupling for LabelOtCoupling {
    /// Each distinct row of `c_1` is one label (see [`labels_from_contexts`]); then
    /// [`pair_labels`](LabelOtCoupling::pair_labels).
    fn pair_conditional(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        c_1: ArrayView2<f64>,
        rng: &mut dyn RngCore,
    ) -> Result<Pairing, CouplingError> {
        check_batches(x_0, x_1)?;
        check_contexts("c_1", c_1, x_1.nrows(), None)?;
        let labels = labels_from_contexts(c_1)?;
        self.pair_labels(x_0, x_1, &labels, rng)
    }
}

/// Conditional OT for continuous contexts (Kerrigan et al. 2024, "Dynamic conditional optimal
/// transport through simulation-free flows"; Chemseddine et al. 2024, "Conditional Wasserstein
/// distances with applications in Bayesian OT flow matching"): the source points take the
/// targets' contexts in a uniformly random order, `c_0 = c_1[π]` (so `c_0` is independent of
/// `x_0`), then the exact assignment on
///
/// `C[i, j] = ‖x_0[i] − x_1[j]‖² + β ‖c_0[i] − c_1[j]‖²`.
///
/// The limits of the weight `β` (finite, > 0):
/// * `β → ∞` forbids pairs between different contexts. For discrete contexts that is exact OT
///   within each label ([`LabelOtCoupling`], which computes that limit exactly); for continuous
///   contexts, all distinct within a batch, the only context-preserving pairing is `i ↦ π(i)`, the
///   independent coupling (unbiased, no straightening).
/// * `β → 0` ignores the contexts: the naive minibatch OT coupling
///   ([`IgnoreContext`]`(`[`ExactOtCoupling`](crate::ExactOtCoupling)`)`), which biases the
///   conditionals.
///
/// In between, sources are re-paired by OT only among targets whose contexts lie within about
/// `sqrt(Δ / β)` of their own, `Δ` a typical gain in `‖x_0 − x_1‖²`; the dependence of `x_0` on
/// the context it trains with is of that order, so choose `β` large on the scale of the (z-scored)
/// contexts. Measured on `c ~ U(−2, 2)`, `x | c = c + 0.5 ε` in 1-D, batches of 64, source
/// `N(0, 1)` (the ignored test `trade_off_of_beta_on_a_continuous_context` in
/// `tests/conditional.rs`, 192,000 pairs): the largest z-score of the source given a context bin
/// against `N(0, 1)` was 142 at `β = 1`, 16 at `β = 10`, 3.6 at `β = 30`, 2.3 at `β = 100` (no
/// detectable bias; the independent coupling gave 2.2), with mean paired squared distances 0.69,
/// 1.68, 1.88 and 2.05 against 2.60 for the independent and 0.17 for the naive coupling (z 251).
/// The papers motivate the cost by its `β → ∞` limit, the conditional (triangular) OT problem.
///
/// ```
/// use fm_couplings::{ConditionalCoupling, ConditionalOtCoupling};
/// let x_0 = ndarray::array![[0.5], [-0.5], [0.0], [1.0]];
/// let x_1 = ndarray::array![[-3.0], [3.0], [-2.0], [2.0]];
/// let c_1 = ndarray::array![[-3.0], [3.0], [-2.0], [2.0]];
/// let ot = ConditionalOtCoupling::new(100.0).unwrap();
/// let p = ot.pair_conditional(x_0.view(), x_1.view(), c_1.view(), &mut fm_core::rng::seeded(0)).unwrap();
/// assert!(p.is_one_to_one(4));
/// assert!(ConditionalOtCoupling::new(0.0).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConditionalOtCoupling {
    beta: f64,
    solver: AssignmentSolver,
}

impl ConditionalOtCoupling {
    /// The coupling with context weight `beta` (finite, > 0) and the default solver.
    ///
    /// ```
    /// use fm_couplings::ConditionalOtCoupling;
    /// assert_eq!(ConditionalOtCoupling::new(10.0).unwrap().beta(), 10.0);
    /// for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
    ///     assert!(ConditionalOtCoupling::new(bad).is_err());
    /// }
    /// ```
    pub fn new(beta: f64) -> Result<Self, CouplingError> {
        check_beta(beta)?;
        Ok(Self {
            beta,
            solver: AssignmentSolver::default(),
        })
    }

    /// The same coupling with another assignment solver.
    ///
    /// ```
    /// use fm_couplings::{AssignmentSolver, ConditionalOtCoupling};
    /// let c = ConditionalOtCoupling::new(1.0).unwrap().with_solver(AssignmentSolver::Hungarian);
    /// assert_eq!(c.solver(), AssignmentSolver::Hungarian);
    /// ```
    pub fn with_solver(self, solver: AssignmentSolver) -> Self {
        Self { solver, ..self }
    }

    /// The context weight `β`.
    ///
    /// ```
    /// assert_eq!(fm_couplings::ConditionalOtCoupling::new(2.5).unwrap().beta(), 2.5);
    /// ```
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// The assignment solver.
    ///
    /// ```
    /// use fm_couplings::{AssignmentSolver, ConditionalOtCoupling};
    /// assert_eq!(ConditionalOtCoupling::new(1.0).unwrap().solver(), AssignmentSolver::Jv);
    /// ```
    pub fn solver(&self) -> AssignmentSolver {
        self.solver
    }

    /// The deterministic core: the exact assignment on [`conditional_ot_cost`] with the given
    /// source contexts `c_0` (shape `(n, k)`, the same `k` as `c_1`).
    ///
    /// Returns `i0 = 0..n` and `i1` a permutation. [`pair_conditional`](ConditionalCoupling::pair_conditional)
    /// calls it with `c_0` a random rearrangement of `c_1`.
    ///
    /// ```
    /// use fm_couplings::ConditionalOtCoupling;
    /// let x_0 = ndarray::array![[0.0], [1.0]];
    /// let x_1 = ndarray::array![[0.0], [1.0]];
    /// let c_0 = ndarray::array![[1.0], [0.0]];
    /// let c_1 = ndarray::array![[0.0], [1.0]];
    /// // Weak β: the points are matched, whatever the contexts.
    /// let weak = ConditionalOtCoupling::new(0.1).unwrap();
    /// let p = weak.pair_with_source_contexts(x_0.view(), c_0.view(), x_1.view(), c_1.view()).unwrap();
    /// assert_eq!(p.i1, vec![0, 1]);
    /// // Strong β: the contexts are matched.
    /// let strong = ConditionalOtCoupling::new(10.0).unwrap();
    /// let p = strong.pair_with_source_contexts(x_0.view(), c_0.view(), x_1.view(), c_1.view()).unwrap();
    /// assert_eq!(p.i1, vec![1, 0]);
    /// ```
    pub fn pair_with_source_contexts(
        &self,
        x_0: ArrayView2<f64>,
        c_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        c_1: ArrayView2<f64>,
    ) -> Result<Pairing, CouplingError> {
        let cost = conditional_ot_cost(x_0, c_0, x_1, c_1, self.beta)?;
        let i1 = self.solver.solve(cost.view())?;
        Ok(Pairing {
            i0: (0..x_0.nrows()).collect(),
            i1,
        })
    }
}

impl ConditionalCoupling for ConditionalOtCoupling {
    /// `c_0 = c_1[π]` for a uniformly random permutation `π`, then
    /// [`pair_with_source_contexts`](ConditionalOtCoupling::pair_with_source_contexts).
    fn pair_conditional(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        c_1: ArrayView2<f64>,
        rng: &mut dyn RngCore,
    ) -> Result<Pairing, CouplingError> {
        check_batches(x_0, x_1)?;
        check_contexts("c_1", c_1, x_1.nrows(), None)?;
        let perm = random_permutation(c_1.nrows(), rng);
        let c_0 = c_1.select(Axis(0), &perm);
        self.pair_with_source_contexts(x_0, c_0.view(), x_1, c_1)
    }
}

/// The conditional-OT cost matrix `C[i, j] = ‖x_0[i] − x_1[j]‖² + β ‖c_0[i] − c_1[j]‖²`, shape
/// `(n, n)`.
///
/// `x_0`, `x_1` are `(n, d)`, `c_0`, `c_1` are `(n, k)` (`k = 0` allowed: then the plain squared
/// Euclidean cost); all finite, `β` finite and > 0. Errors also when `β ‖c_0 − c_1‖²` overflows.
///
/// ```
/// use ndarray::array;
/// let (x_0, c_0) = (array![[0.0], [3.0]], array![[0.0], [1.0]]);
/// let (x_1, c_1) = (array![[0.0], [1.0]], array![[1.0], [1.0]]);
/// let c = fm_couplings::conditional_ot_cost(x_0.view(), c_0.view(), x_1.view(), c_1.view(), 10.0).unwrap();
/// // (x_0[i] − x_1[j])² + 10 (c_0[i] − c_1[j])²
/// assert_eq!(c, array![[10.0, 11.0], [9.0, 4.0]]);
/// ```
pub fn conditional_ot_cost(
    x_0: ArrayView2<f64>,
    c_0: ArrayView2<f64>,
    x_1: ArrayView2<f64>,
    c_1: ArrayView2<f64>,
    beta: f64,
) -> Result<Array2<f64>, CouplingError> {
    check_beta(beta)?;
    check_batches(x_0, x_1)?;
    check_contexts("c_1", c_1, x_1.nrows(), None)?;
    check_contexts("c_0", c_0, x_0.nrows(), Some(c_1.ncols()))?;
    let mut cost = sq_euclidean_cost(x_0, x_1)?;
    if c_1.ncols() > 0 {
        let context_cost = sq_euclidean_cost(c_0, c_1)?;
        cost.scaled_add(beta, &context_cost);
        if cost.iter().any(|c| !c.is_finite()) {
            return Err(CouplingError::InvalidParameter {
                name: "beta",
                value: beta.to_string(),
                reason: "beta times the squared context distance overflows: lower beta or rescale the contexts",
            });
        }
    }
    Ok(cost)
}

/// One integer label per distinct row of `c` (shape `(n, k)`), numbered `0, 1, …` in order of
/// first appearance. Rows are equal when every entry compares equal (`-0.0 = 0.0`); `k = 0` gives
/// one label. Errors on a non-finite entry.
///
/// ```
/// use ndarray::array;
/// let c = array![[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, -0.0]];
/// assert_eq!(fm_couplings::labels_from_contexts(c.view()).unwrap(), vec![0, 1, 0, 0]);
/// ```
pub fn labels_from_contexts(c: ArrayView2<f64>) -> Result<Vec<usize>, CouplingError> {
    fm_core::shape::check_finite("contexts", c)?;
    let mut ids: HashMap<Vec<u64>, usize> = HashMap::new();
    let mut labels = Vec::with_capacity(c.nrows());
    for row in c.axis_iter(Axis(0)) {
        // `+ 0.0` turns -0.0 into 0.0, so the bits identify the value.
        let key: Vec<u64> = row.iter().map(|&v| (v + 0.0).to_bits()).collect();
        let next = ids.len();
        labels.push(*ids.entry(key).or_insert(next));
    }
    Ok(labels)
}

/// `n` indices in a uniformly random order.
fn random_permutation(n: usize, rng: &mut dyn RngCore) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(rng);
    perm
}

/// Non-empty, finite batches with the same number of columns and of rows (one source per target).
fn check_batches(x_0: ArrayView2<f64>, x_1: ArrayView2<f64>) -> Result<(), CouplingError> {
    check_pair(x_0, x_1)?;
    if x_0.nrows() != x_1.nrows() {
        return Err(CouplingError::ShapeMismatch {
            what: "x_0 against x_1 (a conditional coupling pairs one source point per target)"
                .into(),
            expected: format!("{} rows", x_1.nrows()),
            found: format!("{} rows", x_0.nrows()),
        });
    }
    Ok(())
}

/// Contexts with one finite row per sample and, when given, `cols` columns.
fn check_contexts(
    what: &str,
    c: ArrayView2<f64>,
    rows: usize,
    cols: Option<usize>,
) -> Result<(), CouplingError> {
    if c.nrows() != rows || cols.is_some_and(|k| c.ncols() != k) {
        return Err(CouplingError::ShapeMismatch {
            what: format!("{what} (one context row per sample)"),
            expected: match cols {
                Some(k) => format!("({rows}, {k})"),
                None => format!("{rows} rows"),
            },
            found: format!("{:?}", c.dim()),
        });
    }
    fm_core::shape::check_finite(what, c)?;
    Ok(())
}

fn check_labels(what: &str, labels: &[usize], rows: usize) -> Result<(), CouplingError> {
    if labels.len() != rows {
        return Err(CouplingError::ShapeMismatch {
            what: format!("{what} (one label per sample)"),
            expected: format!("{rows} labels"),
            found: format!("{} labels", labels.len()),
        });
    }
    Ok(())
}

fn check_beta(beta: f64) -> Result<(), CouplingError> {
    if !(beta > 0.0 && beta.is_finite()) {
        return Err(CouplingError::InvalidParameter {
            name: "beta",
            value: beta.to_string(),
            reason: "the context weight must be positive and finite",
        });
    }
    Ok(())
}

/// The rows of each label, in increasing row order, keyed by label (sorted, so the processing
/// order is deterministic).
fn groups(labels: &[usize]) -> std::collections::BTreeMap<usize, Vec<usize>> {
    let mut out: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, &l) in labels.iter().enumerate() {
        out.entry(l).or_default().push(i);
    }
    out
}

fn check_label_counts(
    sources: &std::collections::BTreeMap<usize, Vec<usize>>,
    targets: &std::collections::BTreeMap<usize, Vec<usize>>,
) -> Result<(), CouplingError> {
    let count = |g: &std::collections::BTreeMap<usize, Vec<usize>>, l: &usize| {
        g.get(l).map_or(0, |rows| rows.len())
    };
    for label in sources.keys().chain(targets.keys()) {
        let (n_0, n_1) = (count(sources, label), count(targets, label));
        if n_0 != n_1 {
            return Err(CouplingError::LabelCountMismatch {
                label: *label,
                sources: n_0,
                targets: n_1,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn labels_from_contexts_numbers_distinct_rows_in_order() {
        let c = array![[2.0], [1.0], [2.0], [3.5], [1.0]];
        assert_eq!(labels_from_contexts(c.view()).unwrap(), vec![0, 1, 0, 2, 1]);
        let empty_k = Array2::<f64>::zeros((3, 0));
        assert_eq!(labels_from_contexts(empty_k.view()).unwrap(), vec![0, 0, 0]);
        assert!(labels_from_contexts(array![[f64::NAN]].view()).is_err());
    }

    #[test]
    fn label_counts_name_the_first_label_that_differs() {
        let e = check_label_counts(&groups(&[0, 2, 2]), &groups(&[0, 2, 5])).unwrap_err();
        assert_eq!(
            e,
            CouplingError::LabelCountMismatch {
                label: 2,
                sources: 2,
                targets: 1
            }
        );
        assert!(check_label_counts(&groups(&[1, 0, 1]), &groups(&[0, 1, 1])).is_ok());
    }

    #[test]
    fn cost_adds_the_weighted_context_distance_entry_by_entry() {
        let x_0 = array![[0.0, 1.0], [2.0, -1.0]];
        let x_1 = array![[1.0, 1.0], [0.0, 0.0]];
        let c_0 = array![[0.5], [-1.0]];
        let c_1 = array![[0.0], [2.0]];
        let beta = 3.0;
        let cost =
            conditional_ot_cost(x_0.view(), c_0.view(), x_1.view(), c_1.view(), beta).unwrap();
        for i in 0..2 {
            for j in 0..2 {
                let dx: f64 = (&x_0.row(i) - &x_1.row(j)).mapv(|v| v * v).sum();
                let dc = (c_0[[i, 0]] - c_1[[j, 0]]).powi(2);
                assert_eq!(cost[[i, j]], dx + beta * dc);
            }
        }
        let overflow = conditional_ot_cost(
            x_0.view(),
            (c_0 * 1e160).view(),
            x_1.view(),
            c_1.view(),
            1e10,
        );
        assert!(matches!(
            overflow,
            Err(CouplingError::InvalidParameter { name: "beta", .. })
        ));
    }
}
