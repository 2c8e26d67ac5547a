//! The exact marginal path and field of an empirical target (or of empirical pairs).

use crate::{Conditioning, GaussianPath, PathError};
use fm_core::{VectorField, shape};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis, Zip};

/// The exact marginal of a [`GaussianPath`] over a weighted finite set of conditions `z_k`:
///
/// ```text
/// p_t(x) = Σ_k w_k p_t(x | z_k),
/// u_t(x) = Σ_k w_k p_t(x | z_k) u_t(x | z_k) / p_t(x),
/// ∇ log p_t(x) = Σ_k w_k p_t(x | z_k) ∇ log p_t(x | z_k) / p_t(x)
/// ```
///
/// (Lipman et al. 2022, eqs. 6 and 8; Tong et al. 2023, Theorem 3.1): `u_t` is the minimiser
/// of the flow-matching loss for this target, so the flow of `u_t` carries `p_0` to `p_1`
/// exactly. Everything is computed in log space (an online log-sum-exp over the components),
/// so points far from every component still get finite fields.
///
/// * [`target`](Self::target): source `N(0, I)` (or whatever the path is at `t = 0`) and an
///   empirical target `Σ_i w_i δ_{x_1^i}`, for paths with [`Conditioning::Target`].
/// * [`independent_pairs`](Self::independent_pairs): every pair `(x_0^i, x_1^j)` with weight
///   `w_i v_j`, for any path (the empirical source and target, independently coupled).
///
/// It implements [`fm_core::VectorField`] (the marginal velocity), so an ODE solver can
/// integrate it; there a bad time writes NaN instead of returning an error.
///
/// ```
/// use fm_paths::{EmpiricalMarginal, LipmanPath};
/// let path = LipmanPath::new(0.0).unwrap();
/// let data = ndarray::array![[1.0, 1.0], [-1.0, 2.0]];
/// let marginal = EmpiricalMarginal::target(&path, data.view(), None).unwrap();
/// // At t = 0 the marginal is the source N(0, I).
/// let lp = marginal.log_prob(0.0, ndarray::array![[0.0, 0.0]].view()).unwrap();
/// assert!((lp[0] + (2.0 * std::f64::consts::PI).ln()).abs() < 1e-12);
/// let u = marginal.velocity(0.5, ndarray::array![[0.3, 0.1]].view()).unwrap();
/// assert!(u.iter().all(|v| v.is_finite()));
/// ```
#[derive(Debug, Clone)]
pub struct EmpiricalMarginal<'a, P: ?Sized> {
    path: &'a P,
    x_0: Array2<f64>,
    x_1: Array2<f64>,
    log_w: Array1<f64>,
}

/// Normalised log-weights of `m` points (uniform when `None`).
fn log_weights(
    what: &'static str,
    w: Option<ArrayView1<f64>>,
    m: usize,
) -> Result<Array1<f64>, PathError> {
    let Some(w) = w else {
        return Ok(Array1::from_elem(m, -(m as f64).ln()));
    };
    if w.len() != m {
        return Err(PathError::InvalidWeights {
            what,
            reason: format!("{} weights for {m} points", w.len()),
        });
    }
    if let Some(v) = w.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
        return Err(PathError::InvalidWeights {
            what,
            reason: format!("weight {v} is negative or not finite"),
        });
    }
    let total: f64 = w.sum();
    if total <= 0.0 || !total.is_finite() {
        return Err(PathError::InvalidWeights {
            what,
            reason: format!("the weights sum to {total}"),
        });
    }
    Ok(w.mapv(|v| (v / total).ln()))
}

impl<'a, P: GaussianPath + ?Sized> EmpiricalMarginal<'a, P> {
    /// The marginal of a target-conditioned path over the points `x_1` (rows) with weights
    /// `weights` (normalised; uniform when `None`).
    /// [`PathError::Unsupported`] for a [`Conditioning::Pair`] path (use
    /// [`independent_pairs`](Self::independent_pairs)).
    pub fn target(
        path: &'a P,
        x_1: ArrayView2<f64>,
        weights: Option<ArrayView1<f64>>,
    ) -> Result<Self, PathError> {
        if path.conditioning() != Conditioning::Target {
            return Err(PathError::Unsupported {
                reason: "a target-only marginal needs a path conditioned on x_1 only; use independent_pairs",
            });
        }
        shape::check_data("x_1", x_1, x_1.ncols())?;
        let log_w = log_weights("x_1", weights, x_1.nrows())?;
        Ok(Self {
            path,
            x_0: Array2::zeros(x_1.dim()),
            x_1: x_1.to_owned(),
            log_w,
        })
    }

    /// The marginal over all pairs `(x_0^i, x_1^j)` with weight `w_0[i] · w_1[j]` (each
    /// normalised; uniform when `None`): the exact marginal of independent coupling of two
    /// empirical distributions. `m_0 · m_1` components.
    pub fn independent_pairs(
        path: &'a P,
        x_0: ArrayView2<f64>,
        w_0: Option<ArrayView1<f64>>,
        x_1: ArrayView2<f64>,
        w_1: Option<ArrayView1<f64>>,
    ) -> Result<Self, PathError> {
        shape::check_data("x_0", x_0, x_0.ncols())?;
        shape::check_data("x_1", x_1, x_0.ncols())?;
        let lw0 = log_weights("x_0", w_0, x_0.nrows())?;
        let lw1 = log_weights("x_1", w_1, x_1.nrows())?;
        let (m0, m1, d) = (x_0.nrows(), x_1.nrows(), x_0.ncols());
        let mut a = Array2::zeros((m0 * m1, d));
        let mut b = Array2::zeros((m0 * m1, d));
        let mut log_w = Array1::zeros(m0 * m1);
        for i in 0..m0 {
            for j in 0..m1 {
                let k = i * m1 + j;
                a.row_mut(k).assign(&x_0.row(i));
                b.row_mut(k).assign(&x_1.row(j));
                log_w[k] = lw0[i] + lw1[j];
            }
        }
        Ok(Self {
            path,
            x_0: a,
            x_1: b,
            log_w,
        })
    }

    /// The dimension `d`.
    pub fn dim(&self) -> usize {
        self.x_1.ncols()
    }

    /// The number of mixture components.
    pub fn components(&self) -> usize {
        self.log_w.len()
    }

    /// `log p_t(x)` for each row of `x`.
    pub fn log_prob(&self, t: f64, x: ArrayView2<f64>) -> Result<Array1<f64>, PathError> {
        Ok(self.accumulate(t, x, Want::Nothing)?.0)
    }

    /// The marginal velocity `u_t(x)` for each row of `x`.
    pub fn velocity(&self, t: f64, x: ArrayView2<f64>) -> Result<Array2<f64>, PathError> {
        Ok(self.accumulate(t, x, Want::Velocity)?.1)
    }

    /// The marginal score `∇_x log p_t(x)` for each row of `x`.
    pub fn score(&self, t: f64, x: ArrayView2<f64>) -> Result<Array2<f64>, PathError> {
        Ok(self.accumulate(t, x, Want::Score)?.1)
    }

    /// One pass over the components: an online log-sum-exp of `log w_k + log p_t(x | z_k)`
    /// and, if wanted, the posterior-weighted mean of the conditional velocity or score.
    fn accumulate(
        &self,
        t: f64,
        x: ArrayView2<f64>,
        want: Want,
    ) -> Result<(Array1<f64>, Array2<f64>), PathError> {
        shape::check_batch("x", x, self.dim())?;
        let n = x.nrows();
        let tv = Array1::from_elem(n, t);
        crate::path::check_times(tv.view())?;
        let mut max = Array1::from_elem(n, f64::NEG_INFINITY);
        let mut sum = Array1::<f64>::zeros(n);
        let mut acc = Array2::<f64>::zeros(if want == Want::Nothing {
            (0, 0)
        } else {
            x.dim()
        });
        for k in 0..self.components() {
            let a = self.x_0.row(k).insert_axis(Axis(0));
            let b = self.x_1.row(k).insert_axis(Axis(0));
            let a = a.broadcast(x.dim()).expect("row broadcasts to the batch");
            let b = b.broadcast(x.dim()).expect("row broadcasts to the batch");
            let lp = self.path.log_density(x, a, b, tv.view())?;
            let field = match want {
                Want::Nothing => None,
                Want::Velocity => Some(self.path.conditional_velocity(x, a, b, tv.view())?),
                Want::Score => Some(self.path.score(x, a, b, tv.view())?),
            };
            let lw = self.log_w[k];
            for i in 0..n {
                let l = lw + lp[i];
                if l == f64::NEG_INFINITY {
                    continue;
                }
                let (scale_old, weight_new) = if l > max[i] {
                    let s = (max[i] - l).exp();
                    max[i] = l;
                    (s, 1.0)
                } else {
                    (1.0, (l - max[i]).exp())
                };
                sum[i] = sum[i] * scale_old + weight_new;
                if let Some(f) = &field {
                    let mut row = acc.row_mut(i);
                    Zip::from(&mut row)
                        .and(f.row(i))
                        .for_each(|r, &v| *r = *r * scale_old + weight_new * v);
                }
            }
        }
        let log_p = Zip::from(&max).and(&sum).map_collect(|&m, &s| m + s.ln());
        if want != Want::Nothing {
            Zip::from(acc.rows_mut())
                .and(&sum)
                .for_each(|mut r, &s| r.mapv_inplace(|v| v / s));
        }
        Ok((log_p, acc))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Nothing,
    Velocity,
    Score,
}

impl<P: GaussianPath + ?Sized> VectorField for EmpiricalMarginal<'_, P> {
    fn dim(&self) -> usize {
        self.x_1.ncols()
    }

    /// The marginal velocity; NaN where it cannot be evaluated (bad `t`, singular path).
    fn velocity(&self, t: f64, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>) {
        match EmpiricalMarginal::velocity(self, t, x) {
            Ok(u) => out.assign(&u),
            Err(_) => out.fill(f64::NAN),
        }
    }
}
