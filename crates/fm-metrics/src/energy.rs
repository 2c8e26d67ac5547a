//! Path energy of a flow and the normalised path energy of \[SF\]²M.

use crate::MetricsError;
use fm_core::VectorField;
use fm_ode::{Integrator, Rk4};
use ndarray::{ArrayView2, ArrayViewMut2, Axis, Slice};

/// The path energy `PE = E_{x_0} ∫_0^1 ‖v(t, x_t)‖² dt` of the flow of `field` from the samples
/// `x_0` (shape `(n, d)`), averaged over the samples.
///
/// The state `(x, e)` with `de/dt = ‖v(t, x)‖²` is integrated from `t = 0` to `1` with `steps`
/// fixed RK4 steps, so the energy is integrated along the same trajectories to fourth order.
/// For the optimal-transport (straight, constant-speed) flow `PE = W2²(q_0, q_1)`; any other
/// flow between the same marginals has a larger energy (Benamou–Brenier).
///
/// ```
/// use fm_core::FnField;
/// // A constant velocity m = (3, 4): every path has energy ‖m‖² = 25.
/// let field = FnField::new(2, |_t, _x, mut out| { out.column_mut(0).fill(3.0); out.column_mut(1).fill(4.0); });
/// let pe = fm_metrics::path_energy(&field, ndarray::array![[0.0, 1.0], [2.0, -1.0]].view(), 10).unwrap();
/// assert!((pe - 25.0).abs() < 1e-12);
/// ```
pub fn path_energy(
    field: &dyn VectorField,
    x_0: ArrayView2<f64>,
    steps: usize,
) -> Result<f64, MetricsError> {
    let d = field.dim();
    fm_core::shape::check_data("x_0", x_0, d)?;
    if steps == 0 {
        return Err(MetricsError::InvalidParameter {
            name: "steps",
            value: "0".into(),
            reason: "at least one step",
        });
    }
    let state = fm_ode::augmented_state(x_0);
    let energy = EnergyField { field };
    let sol = Integrator::new(Rk4::default())
        .span(0.0, 1.0)
        .steps(steps)
        .run(&energy, state.view())?;
    Ok(sol.x.column(d).mean().unwrap_or(0.0))
}

/// The normalised path energy of the \[SF\]²M paper (Tong et al., "Simulation-free Schrödinger
/// bridges via score and flow matching", 2024): `NPE = |PE − W2²(q_0, q_1)| / W2²(q_0, q_1)`.
///
/// `0` means the flow is as short as optimal transport. Returns `0` when both are `0`, and
/// `+∞` when only `w2_sq` is `0`.
///
/// ```
/// assert_eq!(fm_metrics::normalized_path_energy(12.0, 10.0), 0.2);
/// ```
pub fn normalized_path_energy(pe: f64, w2_sq: f64) -> f64 {
    let diff = (pe - w2_sq).abs();
    if w2_sq == 0.0 {
        return if diff == 0.0 { 0.0 } else { f64::INFINITY };
    }
    diff / w2_sq
}

/// `(x, e) ↦ (v(t, x), ‖v(t, x)‖²)`.
struct EnergyField<'a> {
    field: &'a dyn VectorField,
}

impl VectorField for EnergyField<'_> {
    fn dim(&self) -> usize {
        self.field.dim() + 1
    }

    fn velocity(&self, t: f64, state: ArrayView2<f64>, mut out: ArrayViewMut2<f64>) {
        let d = self.field.dim();
        self.field.velocity(
            t,
            state.slice_axis(Axis(1), Slice::from(..d)),
            out.slice_axis_mut(Axis(1), Slice::from(..d)),
        );
        for mut row in out.rows_mut() {
            let e: f64 = row.iter().take(d).map(|v| v * v).sum();
            row[d] = e;
        }
    }
}
