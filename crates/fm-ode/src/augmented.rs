//! The augmented system for likelihoods by the instantaneous change of variables.

use fm_core::VectorField;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis, Slice};

/// The system `(dx/dt, dℓ/dt) = (v(t, x), −div v(t, x))` on states of shape `(n, d + 1)`:
/// columns `0..d` hold `x`, column `d` holds `ℓ`.
///
/// Along a trajectory of the flow, `d/dt log p_t(x_t) = −div v(t, x_t)` (the instantaneous
/// change of variables, Chen et al., "Neural Ordinary Differential Equations", 2018, Thm. 1).
/// To evaluate the model density of data `x_1` at `t = 1`, start from `(x_1, ℓ = 0)` and
/// integrate backwards from `t = 1` to `t = 0`; then
///
/// ```text
/// ℓ(0) = ∫_0^1 div v(t, x_t) dt   and   log p_1(x_1) = log p_0(x_0) − ℓ(0)
/// ```
///
/// with `x_0` the first `d` columns of the final state. The divergence comes from
/// [`VectorField::divergence`] (exact for fields that override it, finite differences
/// otherwise). Any solver integrates it, with the same chunking and threads as any field.
///
/// ```
/// use fm_core::{FnField, LogDensity, StandardNormal, VectorField};
/// use fm_ode::{augmented_state, split_augmented, AugmentedField, Dopri5, Integrator};
/// // v = x: the flow scales N(0, 1) at t = 0 to N(0, e²) at t = 1, div v = 1.
/// let field = FnField::new(1, |_t, x, mut out| out.assign(&x))
///     .with_divergence(|_t, _x, mut out| out.fill(1.0));
/// let aug = AugmentedField::new(&field);
/// let x_1 = ndarray::array![[0.7], [-2.0]];
/// let sol = Integrator::new(Dopri5::default())
///     .span(1.0, 0.0)
///     .tolerances(1e-9, 1e-9)
///     .run(&aug, augmented_state(x_1.view()).view())
///     .unwrap();
/// let (x_0, ell) = split_augmented(sol.x.view());
/// let log_p0 = StandardNormal::new(1).unwrap().log_prob(x_0.view()).unwrap();
/// for i in 0..2 {
///     let log_p1 = log_p0[i] - ell[i];
///     let e2: f64 = (2.0f64).exp();
///     let exact = -0.5 * x_1[[i, 0]].powi(2) / e2 - 0.5 * (2.0 * std::f64::consts::PI * e2).ln();
///     assert!((log_p1 - exact).abs() < 1e-6);
/// }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AugmentedField<F> {
    field: F,
}

impl<F: VectorField> AugmentedField<F> {
    /// The augmented system of `field` (pass a reference to keep ownership).
    pub fn new(field: F) -> Self {
        Self { field }
    }

    /// The wrapped field.
    pub fn inner(&self) -> &F {
        &self.field
    }
}

/// `(x, 0)`: the state `(n, d + 1)` that starts a likelihood integration at `x` (see
/// [`AugmentedField`]).
pub fn augmented_state(x: ArrayView2<f64>) -> Array2<f64> {
    let (n, d) = x.dim();
    let mut state = Array2::zeros((n, d + 1));
    state.slice_axis_mut(Axis(1), Slice::from(..d)).assign(&x);
    state
}

/// Splits an augmented state `(n, d + 1)` into `x` (`(n, d)`) and `ℓ` (`n`); a state with no
/// column gives empty arrays.
pub fn split_augmented(state: ArrayView2<f64>) -> (Array2<f64>, Array1<f64>) {
    let (n, w) = state.dim();
    if w == 0 {
        return (Array2::zeros((n, 0)), Array1::zeros(n));
    }
    let d = w - 1;
    (
        state.slice_axis(Axis(1), Slice::from(..d)).to_owned(),
        state.column(d).to_owned(),
    )
}

impl<F: VectorField> VectorField for AugmentedField<F> {
    fn dim(&self) -> usize {
        self.field.dim() + 1
    }

    fn velocity(&self, t: f64, state: ArrayView2<f64>, mut out: ArrayViewMut2<f64>) {
        let d = self.field.dim();
        let x = state.slice_axis(Axis(1), Slice::from(..d));
        let (v, mut ell) = out.view_mut().split_at(Axis(1), d);
        self.field.velocity(t, x, v);
        let mut div = ell.index_axis_mut(Axis(1), 0);
        self.field.divergence(t, x, div.view_mut());
        div.mapv_inplace(|v| -v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fm_core::FnField;
    use ndarray::array;

    #[test]
    fn velocity_stacks_field_and_negative_divergence() {
        // v = A x with trace(A) = 5.
        let a = array![[1.0, 2.0], [3.0, 4.0]];
        let field = FnField::new(
            2,
            move |_t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| out.assign(&x.dot(&a.t())),
        );
        let aug = AugmentedField::new(&field);
        assert_eq!(aug.dim(), 3);
        let state = array![[1.0, 1.0, 123.0], [0.0, -1.0, 0.0]];
        let v = aug.velocity_vec(0.0, state.view());
        assert_eq!(v.column(0), array![3.0, -2.0]);
        assert_eq!(v.column(1), array![7.0, -4.0]);
        for i in 0..2 {
            assert!((v[[i, 2]] + 5.0).abs() < 1e-6, "{}", v[[i, 2]]);
        }
        let (x, l) = split_augmented(state.view());
        assert_eq!(x, array![[1.0, 1.0], [0.0, -1.0]]);
        assert_eq!(l, array![123.0, 0.0]);
        let s0 = augmented_state(x.view());
        assert_eq!(s0.column(2), array![0.0, 0.0]);
    }
}
