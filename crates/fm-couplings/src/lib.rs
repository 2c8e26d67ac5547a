//! # fm-couplings
//!
//! Couplings for flow matching: which source sample `x_0` is paired with which target sample
//! `x_1` in a minibatch. I-CFM pairs them independently; OT-CFM re-pairs them by the exact
//! optimal-transport assignment on squared Euclidean costs; SB-CFM samples pairs from the
//! entropic (Sinkhorn) plan with `ε = 2σ²` (Tong et al. 2023, "Improving and generalizing
//! flow-based generative models with minibatch optimal transport").
//!
//! * [`Coupling`] and [`Pairing`]; [`IndependentCoupling`], [`ExactOtCoupling`], [`SinkhornCoupling`].
//! * [`assignment`]: a fast exact Jonker–Volgenant assignment solver (rows ≤ columns), with dual
//!   potentials ([`assignment_with_duals`]) checked by [`certificate`]; [`hungarian`] is the
//!   `pathfinding` reference, selectable by name through [`AssignmentSolver::from_name`].
//! * [`sinkhorn`]: stabilised entropic OT (scaling on a precomputed kernel, absorbed into
//!   log-domain potentials); [`sinkhorn_log_domain`] is the plain log-domain reference;
//!   [`sample_plan`] draws pairs from a dense plan.
//! * [`sq_euclidean_cost`]: cost matrices, filled in parallel for large batches.
//! * Conditioning: [`ConditionalCoupling`] pairs a batch whose targets carry contexts `c_1` so the
//!   source stays independent of the context: [`LabelOtCoupling`] (exact OT within each label) and
//!   [`ConditionalOtCoupling`] (cost `‖x_0 − x_1‖² + β‖c_0 − c_1‖²`); [`IgnoreContext`] is the
//!   naive baseline.
//!
//! ```
//! use fm_couplings::{Coupling, ExactOtCoupling};
//! use fm_core::StandardNormal;
//!
//! let mut rng = fm_core::rng::seeded(0);
//! let normal = StandardNormal::new(2).unwrap();
//! let x_0 = normal.sample(64, &mut rng);
//! let x_1 = normal.sample(64, &mut rng) + 3.0;
//! let pairs = ExactOtCoupling::default().pair(x_0.view(), x_1.view(), &mut rng).unwrap();
//! assert!(pairs.is_one_to_one(64)); // a true permutation: every x_0 used once
//! let (a, b) = pairs.gather(x_0.view(), x_1.view()).unwrap();
//! assert_eq!(a.dim(), b.dim());
//! ```

mod assignment;
mod auction;
mod conditional;
mod cost;
mod coupling;
mod dense;
mod error;
mod legacy;
mod reduce;
mod sinkhorn;

pub use assignment::{
    AssignmentSolution, AssignmentSolver, DualCertificate, HUNGARIAN_RESOLUTION, assignment,
    assignment_with_duals, certificate, hungarian,
};
pub use conditional::{
    ConditionalCoupling, ConditionalOtCoupling, IgnoreContext, LabelOtCoupling,
    conditional_ot_cost, labels_from_contexts,
};
pub use cost::{normalize_by_max, sq_euclidean_cost, sq_euclidean_cost_normalized};
pub use coupling::{
    Coupling, ExactOtCoupling, IndependentCoupling, Pairing, PlanSampling, SinkhornCoupling,
    sample_plan,
};
pub use error::CouplingError;
pub use sinkhorn::{SinkhornParams, SinkhornPlan, sinkhorn, sinkhorn_log_domain, sinkhorn_uniform};
