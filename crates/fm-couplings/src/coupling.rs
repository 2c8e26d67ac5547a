//! The [`Coupling`] trait and the built-in couplings.
use crate::cost::{check_pair, normalize_by_max, sq_euclidean_cost};
use crate::sinkhorn::{SinkhornParams, sinkhorn_uniform};
use crate::{AssignmentSolver, CouplingError};
use ndarray::{Array2, ArrayView2, Axis};
use rand::{Rng, RngCore};

/// Which rows of two batches are paired: pair `k` is row `i0[k]` of `x_0` with row `i1[k]` of
/// `x_1`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pairing {
    /// Row indices into `x_0`.
    pub i0: Vec<usize>,
    /// Row indices into `x_1`, same length as `i0`.
    pub i1: Vec<usize>,
}

impl Pairing {
    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.i0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.i0.is_empty()
    }

    /// The paired batches `(x_0[i0], x_1[i1])`, each with one row per pair.
    ///
    /// Errors when `i0` and `i1` differ in length or an index is out of range.
    pub fn gather(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
    ) -> Result<(Array2<f64>, Array2<f64>), CouplingError> {
        if self.i0.len() != self.i1.len() {
            return Err(CouplingError::ShapeMismatch {
                what: "pairing".into(),
                expected: format!("{} indices into x_1", self.i0.len()),
                found: format!("{}", self.i1.len()),
            });
        }
        for (what, idx, rows) in [("i0", &self.i0, x_0.nrows()), ("i1", &self.i1, x_1.nrows())] {
            if let Some(&bad) = idx.iter().find(|&&i| i >= rows) {
                return Err(CouplingError::InvalidParameter {
                    name: what,
                    value: bad.to_string(),
                    reason: "a pairing index is out of range",
                });
            }
        }
        Ok((x_0.select(Axis(0), &self.i0), x_1.select(Axis(0), &self.i1)))
    }

    /// Whether every row `0..n` of `x_0` appears exactly once in `i0` and the `i1` are distinct.
    pub fn is_one_to_one(&self, n: usize) -> bool {
        let mut seen0 = vec![false; n];
        let mut seen1 = std::collections::HashSet::new();
        self.i0.len() == n
            && self
                .i0
                .iter()
                .all(|&i| i < n && !std::mem::replace(&mut seen0[i], true))
            && self.i1.iter().all(|&j| seen1.insert(j))
    }
}

/// A rule that pairs a batch `x_0` of shape `(n, d)` with a batch `x_1` of shape `(m, d)`.
///
/// The couplings of OT-CFM / SB-CFM (Tong et al. 2023, "Improving and generalizing flow-based
/// generative models with minibatch optimal transport"): draw `x_0 ~ p_0` and `x_1 ~ p_1`
/// independently, then re-pair the rows by an (entropic) optimal-transport plan.
///
/// # Example: a user's coupling
/// ```
/// use fm_couplings::{Coupling, CouplingError, Pairing};
/// use ndarray::ArrayView2;
/// use rand::RngCore;
///
/// /// Pairs the rows sorted by their first coordinate (optimal in 1-D).
/// struct SortedCoupling;
/// impl Coupling for SortedCoupling {
///     fn pair(&self, x_0: ArrayView2<f64>, x_1: ArrayView2<f64>, _rng: &mut dyn RngCore)
///         -> Result<Pairing, CouplingError> {
///         if x_0.nrows() != x_1.nrows() {
///             return Err(CouplingError::ShapeMismatch {
///                 what: "x_1".into(), expected: format!("{} rows", x_0.nrows()),
///                 found: format!("{} rows", x_1.nrows()) });
///         }
///         let order = |x: ArrayView2<f64>| {
///             let mut idx: Vec<usize> = (0..x.nrows()).collect();
///             idx.sort_by(|&a, &b| x[[a, 0]].total_cmp(&x[[b, 0]]));
///             idx
///         };
///         Ok(Pairing { i0: order(x_0), i1: order(x_1) })
///     }
/// }
///
/// let x_0 = ndarray::array![[2.0], [0.0]];
/// let x_1 = ndarray::array![[10.0], [-5.0]];
/// let p = SortedCoupling.pair(x_0.view(), x_1.view(), &mut fm_core::rng::seeded(0)).unwrap();
/// assert_eq!((p.i0, p.i1), (vec![1, 0], vec![1, 0]));
/// ```
pub trait Coupling: Send + Sync {
    /// Pairs the rows of `x_0` with rows of `x_1`; `rng` drives any randomness.
    fn pair(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        rng: &mut dyn RngCore,
    ) -> Result<Pairing, CouplingError>;
}

fn check_rows_le(x_0: ArrayView2<f64>, x_1: ArrayView2<f64>) -> Result<(), CouplingError> {
    if x_0.nrows() > x_1.nrows() {
        return Err(CouplingError::TooManyRows {
            what: "x_0 against x_1".into(),
            rows: x_0.nrows(),
            cols: x_1.nrows(),
        });
    }
    Ok(())
}

/// The independent coupling of I-CFM: `x_0` and `x_1` are already independent draws, so row `i`
/// of `x_0` is paired with row `i` ([`identity`](Self::identity)) or with a uniformly random
/// distinct row ([`random`](Self::random)). Needs `n ≤ m`; every `x_0` row is used once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndependentCoupling {
    /// Shuffle the `x_1` rows (draw `n` distinct rows of `x_1` uniformly) instead of `i ↦ i`.
    pub shuffle: bool,
}

impl IndependentCoupling {
    /// Pairs row `i` with a uniformly random distinct row of `x_1`.
    pub fn random() -> Self {
        Self { shuffle: true }
    }

    /// Pairs row `i` with row `i`.
    pub fn identity() -> Self {
        Self { shuffle: false }
    }
}

impl Coupling for IndependentCoupling {
    fn pair(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        rng: &mut dyn RngCore,
    ) -> Result<Pairing, CouplingError> {
        check_pair(x_0, x_1)?;
        check_rows_le(x_0, x_1)?;
        let (n, m) = (x_0.nrows(), x_1.nrows());
        let i1 = if self.shuffle {
            rand::seq::index::sample(rng, m, n).into_vec()
        } else {
            (0..n).collect()
        };
        Ok(Pairing {
            i0: (0..n).collect(),
            i1,
        })
    }
}

/// The exact OT coupling of OT-CFM: the assignment minimising `Σ_i ‖x_0[i] − x_1[σ(i)]‖²`.
///
/// By default a true permutation (`n = m`) or injection (`n < m`): every `x_0` row is used once,
/// paired with distinct `x_1` rows, `i0 = 0..n`. With `with_replacement = true` it instead draws
/// `n` pairs with replacement from the plan `π = P_σ / n`, as TorchCFM's
/// `OTPlanSampler(method="exact")` does (some `x_0` rows repeated, some dropped); that is an
/// opt-in for parity only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExactOtCoupling {
    /// The assignment solver (the fast exact [`AssignmentSolver::Jv`] by default).
    pub solver: AssignmentSolver,
    /// Draw pairs with replacement from the plan (TorchCFM parity) instead of returning the
    /// permutation.
    pub with_replacement: bool,
}

impl ExactOtCoupling {
    /// The coupling with a given solver.
    pub fn with_solver(solver: AssignmentSolver) -> Self {
        Self {
            solver,
            ..Self::default()
        }
    }
}

impl Coupling for ExactOtCoupling {
    fn pair(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        rng: &mut dyn RngCore,
    ) -> Result<Pairing, CouplingError> {
        check_pair(x_0, x_1)?;
        check_rows_le(x_0, x_1)?;
        let cost = sq_euclidean_cost(x_0, x_1)?;
        let sigma = self.solver.solve(cost.view())?;
        let n = sigma.len();
        if self.with_replacement {
            let i0: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            let i1 = i0.iter().map(|&i| sigma[i]).collect();
            return Ok(Pairing { i0, i1 });
        }
        Ok(Pairing {
            i0: (0..n).collect(),
            i1: sigma,
        })
    }
}

/// How pairs are drawn from a dense transport plan `π` (shape `(n, m)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlanSampling {
    /// The default: every row `i` of `x_0` once, its partner drawn from the conditional
    /// `π(i, ·) / Σ_j π(i, j)`. `i0 = 0..n`.
    #[default]
    RowConditional,
    /// `n` independent draws of `(i, j)` with probability `π_ij / Σ π`, as TorchCFM's
    /// `OTPlanSampler.sample_plan(replace=True)`: some rows of `x_0` repeated, some dropped.
    WithReplacement,
}

/// Draws `count` pairs from a non-negative plan (any total mass > 0).
///
/// [`PlanSampling::RowConditional`] needs `count = n` and every row of positive mass;
/// [`PlanSampling::WithReplacement`] accepts any `count`.
pub fn sample_plan<R: Rng + ?Sized>(
    plan: ArrayView2<f64>,
    count: usize,
    mode: PlanSampling,
    rng: &mut R,
) -> Result<Pairing, CouplingError> {
    let (n, m) = plan.dim();
    if n == 0 || m == 0 {
        return Err(CouplingError::InvalidPlan {
            reason: "the plan is empty".into(),
        });
    }
    if let Some(bad) = plan.iter().find(|p| !(**p >= 0.0 && p.is_finite())) {
        return Err(CouplingError::InvalidPlan {
            reason: format!("entry {bad} is negative or not finite"),
        });
    }
    match mode {
        PlanSampling::RowConditional => {
            if count != n {
                return Err(CouplingError::InvalidParameter {
                    name: "count",
                    value: count.to_string(),
                    reason: "row-conditional sampling draws exactly one partner per row",
                });
            }
            let mut i1 = Vec::with_capacity(n);
            for (i, row) in plan.axis_iter(Axis(0)).enumerate() {
                let cdf = cumulative(row.iter().copied());
                i1.push(draw(&cdf, rng).ok_or_else(|| CouplingError::InvalidPlan {
                    reason: format!("row {i} has zero mass"),
                })?);
            }
            Ok(Pairing {
                i0: (0..n).collect(),
                i1,
            })
        }
        PlanSampling::WithReplacement => {
            let cdf = cumulative(plan.iter().copied());
            let mut pairing = Pairing {
                i0: Vec::with_capacity(count),
                i1: Vec::with_capacity(count),
            };
            for _ in 0..count {
                let k = draw(&cdf, rng).ok_or_else(|| CouplingError::InvalidPlan {
                    reason: "the plan has zero mass".into(),
                })?;
                pairing.i0.push(k / m);
                pairing.i1.push(k % m);
            }
            Ok(pairing)
        }
    }
}

fn cumulative(w: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    w.map(|x| {
        acc += x;
        acc
    })
    .collect()
}

/// An index `k` with probability `(cdf[k] − cdf[k−1]) / cdf[last]`; `None` for zero mass.
fn draw<R: Rng + ?Sized>(cdf: &[f64], rng: &mut R) -> Option<usize> {
    let total = *cdf.last()?;
    if total.is_nan() || total <= 0.0 {
        return None;
    }
    let u = rng.random::<f64>() * total;
    // First k with cdf[k] > u; skips zero-mass entries.
    let k = cdf.partition_point(|&c| c <= u);
    Some(k.min(cdf.len() - 1))
}

/// The entropic OT coupling of SB-CFM: a Sinkhorn plan with uniform marginals on the squared
/// Euclidean cost, then pairs drawn from it (see [`PlanSampling`]).
///
/// SB-CFM with bridge noise `σ` uses `ε = 2σ²` on the raw cost
/// ([`schrodinger_bridge`](Self::schrodinger_bridge)), as in TorchCFM's
/// `SchrodingerBridgeConditionalFlowMatcher`. Any `n` and `m` are allowed. A plan that did not
/// reach the tolerance is still used (its error is in [`SinkhornPlan`](crate::SinkhornPlan) when
/// calling [`sinkhorn`](crate::sinkhorn) directly).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SinkhornCoupling {
    /// Regularisation, iteration limit and tolerance.
    pub params: SinkhornParams,
    /// Divide the cost by its maximum before Sinkhorn (then `ε` is relative to it).
    pub normalize_cost: bool,
    /// How pairs are drawn from the plan.
    pub sampling: PlanSampling,
}

impl SinkhornCoupling {
    /// Sinkhorn with regularisation `epsilon` (> 0, finite) on the raw cost, default iteration
    /// limit and tolerance, row-conditional sampling.
    pub fn new(epsilon: f64) -> Result<Self, CouplingError> {
        let params = SinkhornParams::with_epsilon(epsilon);
        params.check()?;
        Ok(Self {
            params,
            normalize_cost: false,
            sampling: PlanSampling::RowConditional,
        })
    }

    /// The SB-CFM coupling for bridge noise `sigma`: `ε = 2σ²`.
    pub fn schrodinger_bridge(sigma: f64) -> Result<Self, CouplingError> {
        if !(sigma > 0.0 && sigma.is_finite()) {
            return Err(CouplingError::InvalidParameter {
                name: "sigma",
                value: sigma.to_string(),
                reason: "the bridge noise must be positive and finite",
            });
        }
        Self::new(2.0 * sigma * sigma)
    }
}

impl Coupling for SinkhornCoupling {
    fn pair(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        rng: &mut dyn RngCore,
    ) -> Result<Pairing, CouplingError> {
        self.params.check()?;
        check_pair(x_0, x_1)?;
        let mut cost = sq_euclidean_cost(x_0, x_1)?;
        if self.normalize_cost {
            normalize_by_max(&mut cost);
        }
        let out = sinkhorn_uniform(cost.view(), &self.params)?;
        sample_plan(out.plan.view(), x_0.nrows(), self.sampling, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn draw_skips_zero_mass_entries() {
        let cdf = cumulative([0.0, 1.0, 0.0, 0.0, 2.0, 0.0].into_iter());
        let mut rng = fm_core::rng::seeded(9);
        let mut counts = [0usize; 6];
        for _ in 0..3000 {
            counts[draw(&cdf, &mut rng).unwrap()] += 1;
        }
        assert_eq!(counts[0] + counts[2] + counts[3] + counts[5], 0);
        // Binomial(3000, 1/3): mean 1000, sd ~26.
        assert!((counts[1] as i64 - 1000).abs() < 130, "{counts:?}");
        assert_eq!(draw(&[0.0, 0.0], &mut rng), None);
    }

    #[test]
    fn gather_checks_indices() {
        let x = array![[1.0], [2.0]];
        let p = Pairing {
            i0: vec![1, 0],
            i1: vec![0, 0],
        };
        let (a, b) = p.gather(x.view(), x.view()).unwrap();
        assert_eq!(a, array![[2.0], [1.0]]);
        assert_eq!(b, array![[1.0], [1.0]]);
        assert!(!p.is_one_to_one(2));
        let bad = Pairing {
            i0: vec![2],
            i1: vec![0],
        };
        assert!(bad.gather(x.view(), x.view()).is_err());
    }
}
