//! Butcher tableaus: an explicit Runge–Kutta method written as data.

use crate::OdeError;

/// The coefficients of an explicit Runge–Kutta method with `s` stages, optionally with an
/// embedded lower-order solution for error estimation.
///
/// For a step of size `h` from `(t, x)`:
///
/// ```text
/// k_i   = v(t + c_i h, x + h Σ_{j<i} a_ij k_j)      i = 1..s
/// x'    = x + h Σ_i b_i k_i                          (order p)
/// x̂'    = x + h Σ_i b̂_i k_i                          (embedded order p̂, optional)
/// err   = x' − x̂' = h Σ_i (b_i − b̂_i) k_i
/// ```
///
/// (Butcher, "Numerical Methods for Ordinary Differential Equations", 2016; Hairer, Nørsett,
/// Wanner, "Solving Ordinary Differential Equations I", 1993, II.1 and II.4.)
///
/// [`ButcherTableau::new`] checks the shape (strictly lower-triangular `a`), finiteness,
/// consistency `Σ b_i = 1` and the row-sum conditions `c_i = Σ_j a_ij` (to 1e-12). It cannot
/// check the claimed order: that is what [`crate::testing::check_solver`] measures. A tableau
/// is *first same as last* (FSAL) when its last row of `a` equals `b` and `c_s = 1`; the
/// solver then reuses the last stage of an accepted step as the first of the next.
///
/// # Example: Heun's method written by hand
/// ```
/// use fm_ode::{ButcherTableau, ExplicitRk, OdeSolver};
/// let heun = ButcherTableau::new(
///     "my-heun",
///     2,
///     vec![0.0, 1.0],
///     vec![vec![], vec![1.0]],
///     vec![0.5, 0.5],
/// )
/// .unwrap();
/// let solver = ExplicitRk::new(heun);
/// assert_eq!(solver.order(), 2);
/// assert!(!solver.is_adaptive());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ButcherTableau {
    name: String,
    order: u32,
    c: Vec<f64>,
    /// Row-major `s × s`, zero on and above the diagonal.
    a: Vec<f64>,
    b: Vec<f64>,
    embedded: Option<(Vec<f64>, u32)>,
    /// Dense-output polynomials: row `i` holds `p_i1, p_i2, …` of `b_i(θ) = Σ_m p_im θ^m`.
    dense: Option<Vec<Vec<f64>>>,
}

const CONSISTENCY_TOL: f64 = 1e-12;

impl ButcherTableau {
    /// A tableau with nodes `c` (length `s`), coefficients `a` (row `i` holds `a_i0..a_i(i-1)`;
    /// longer rows are accepted if the extra entries are zero) and weights `b` (length `s`),
    /// of classical order `order ≥ 1`.
    pub fn new(
        name: impl Into<String>,
        order: u32,
        c: Vec<f64>,
        a: Vec<Vec<f64>>,
        b: Vec<f64>,
    ) -> Result<Self, OdeError> {
        let name = name.into();
        let bad = |reason: String| OdeError::InvalidTableau {
            name: name.clone(),
            reason,
        };
        let s = c.len();
        if s == 0 {
            return Err(bad("a method needs at least one stage".into()));
        }
        if order == 0 {
            return Err(bad("the order must be at least 1".into()));
        }
        if a.len() != s || b.len() != s {
            return Err(bad(format!(
                "c has {s} entries but a has {} rows and b {} entries",
                a.len(),
                b.len()
            )));
        }
        let mut dense = vec![0.0; s * s];
        for (i, row) in a.iter().enumerate() {
            if row.len() > s {
                return Err(bad(format!("row {i} of a has more than {s} entries")));
            }
            for (j, &v) in row.iter().enumerate() {
                if j >= i && v != 0.0 {
                    return Err(bad(format!(
                        "a[{i}][{j}] = {v} is on or above the diagonal: only explicit methods are supported"
                    )));
                }
                if j < i {
                    dense[i * s + j] = v;
                }
            }
        }
        if c.iter()
            .chain(b.iter())
            .chain(dense.iter())
            .any(|v| !v.is_finite())
        {
            return Err(bad("a coefficient is not finite".into()));
        }
        let sum_b: f64 = b.iter().sum();
        if (sum_b - 1.0).abs() > CONSISTENCY_TOL {
            return Err(bad(format!("the weights b sum to {sum_b}, not 1")));
        }
        for i in 0..s {
            let row_sum: f64 = dense[i * s..i * s + i].iter().sum();
            if (row_sum - c[i]).abs() > CONSISTENCY_TOL {
                return Err(bad(format!(
                    "row-sum condition fails in row {i}: c = {} but Σ a = {row_sum}",
                    c[i]
                )));
            }
        }
        Ok(Self {
            name,
            order,
            c,
            a: dense,
            b,
            embedded: None,
            dense: None,
        })
    }

    /// Adds embedded weights `b̂` (length `s`, summing to 1) of order `embedded_order`, which
    /// makes the method adaptive.
    pub fn with_embedded(mut self, b_hat: Vec<f64>, embedded_order: u32) -> Result<Self, OdeError> {
        let bad = |reason: String| OdeError::InvalidTableau {
            name: self.name.clone(),
            reason,
        };
        if b_hat.len() != self.b.len() {
            return Err(bad(format!(
                "the embedded weights have {} entries, expected {}",
                b_hat.len(),
                self.b.len()
            )));
        }
        if b_hat.iter().any(|v| !v.is_finite()) {
            return Err(bad("an embedded weight is not finite".into()));
        }
        let sum: f64 = b_hat.iter().sum();
        if (sum - 1.0).abs() > CONSISTENCY_TOL {
            return Err(bad(format!("the embedded weights sum to {sum}, not 1")));
        }
        if embedded_order == 0 {
            return Err(bad("the embedded order must be at least 1".into()));
        }
        if b_hat == self.b {
            return Err(bad("the embedded weights equal b: no error estimate".into()));
        }
        self.embedded = Some((b_hat, embedded_order));
        Ok(self)
    }

    /// Adds a continuous extension (dense output): `x(t + θh) ≈ x + h Σ_i b_i(θ) k_i` with
    /// `b_i(θ) = Σ_{m≥1} p[i][m−1] θ^m`, one row of coefficients per stage. Checked: `s` rows of
    /// finite coefficients with `b_i(1) = b_i` (to 1e-12), so the interpolant ends on the step's
    /// solution (and starts on its initial state, as `b_i(0) = 0`).
    pub fn with_dense_output(mut self, p: Vec<Vec<f64>>) -> Result<Self, OdeError> {
        let bad = |reason: String| OdeError::InvalidTableau {
            name: self.name.clone(),
            reason,
        };
        if p.len() != self.b.len() {
            return Err(bad(format!(
                "the dense output has {} rows, expected one per stage ({})",
                p.len(),
                self.b.len()
            )));
        }
        for (i, row) in p.iter().enumerate() {
            if row.iter().any(|v| !v.is_finite()) {
                return Err(bad(format!(
                    "dense-output row {i} has a non-finite coefficient"
                )));
            }
            let at_one: f64 = row.iter().sum();
            if (at_one - self.b[i]).abs() > CONSISTENCY_TOL {
                return Err(bad(format!(
                    "dense-output row {i} gives b_{i}(1) = {at_one}, not b_{i} = {}",
                    self.b[i]
                )));
            }
        }
        self.dense = Some(p);
        Ok(self)
    }

    /// The dense-output polynomials, if any (see [`ButcherTableau::with_dense_output`]).
    pub fn dense(&self) -> Option<&[Vec<f64>]> {
        self.dense.as_deref()
    }

    /// The method's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The classical order `p` of the main solution.
    pub fn order(&self) -> u32 {
        self.order
    }
    /// The order `p̂` of the embedded solution, if any.
    pub fn embedded_order(&self) -> Option<u32> {
        self.embedded.as_ref().map(|e| e.1)
    }
    /// The number of stages `s`.
    pub fn stages(&self) -> usize {
        self.c.len()
    }
    /// The nodes `c`.
    pub fn c(&self) -> &[f64] {
        &self.c
    }
    /// `a_ij` (zero for `j ≥ i`).
    pub fn a(&self, i: usize, j: usize) -> f64 {
        self.a[i * self.stages() + j]
    }
    /// The weights `b`.
    pub fn b(&self) -> &[f64] {
        &self.b
    }
    /// The embedded weights `b̂`, if any.
    pub fn b_embedded(&self) -> Option<&[f64]> {
        self.embedded.as_ref().map(|e| e.0.as_slice())
    }
    /// Whether the last stage is evaluated at the new state (`a_s· = b`, `c_s = 1`), so it can
    /// be reused as the first stage of the next step.
    pub fn is_fsal(&self) -> bool {
        let s = self.stages();
        s > 1 && self.c[s - 1] == 1.0 && (0..s).all(|j| self.a(s - 1, j) == self.b[j])
    }

    /// Forward Euler, order 1.
    pub fn euler() -> Self {
        Self::new("euler", 1, vec![0.0], vec![vec![]], vec![1.0]).expect("valid tableau")
    }
    /// The explicit midpoint rule, order 2.
    pub fn midpoint() -> Self {
        Self::new(
            "midpoint",
            2,
            vec![0.0, 0.5],
            vec![vec![], vec![0.5]],
            vec![0.0, 1.0],
        )
        .expect("valid tableau")
    }
    /// Heun's method (explicit trapezoidal rule), order 2.
    pub fn heun() -> Self {
        Self::new(
            "heun",
            2,
            vec![0.0, 1.0],
            vec![vec![], vec![1.0]],
            vec![0.5, 0.5],
        )
        .expect("valid tableau")
    }
    /// Ralston's second-order method (minimum local error bound among 2-stage order-2 methods;
    /// Ralston 1962).
    pub fn ralston() -> Self {
        Self::new(
            "ralston",
            2,
            vec![0.0, 2.0 / 3.0],
            vec![vec![], vec![2.0 / 3.0]],
            vec![0.25, 0.75],
        )
        .expect("valid tableau")
    }
    /// The strong-stability-preserving third-order method SSP-RK3 (Shu & Osher 1988).
    pub fn ssprk3() -> Self {
        Self::new(
            "ssprk3",
            3,
            vec![0.0, 1.0, 0.5],
            vec![vec![], vec![1.0], vec![0.25, 0.25]],
            vec![1.0 / 6.0, 1.0 / 6.0, 2.0 / 3.0],
        )
        .expect("valid tableau")
    }
    /// The classical fourth-order Runge–Kutta method.
    pub fn rk4() -> Self {
        Self::new(
            "rk4",
            4,
            vec![0.0, 0.5, 0.5, 1.0],
            vec![vec![], vec![0.5], vec![0.0, 0.5], vec![0.0, 0.0, 1.0]],
            vec![1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0],
        )
        .expect("valid tableau")
    }
    /// Dormand–Prince 5(4) (Dormand & Prince 1980): 7 stages, FSAL, order 5 with an embedded
    /// order-4 solution.
    pub fn dopri5() -> Self {
        let a = vec![
            vec![],
            vec![1.0 / 5.0],
            vec![3.0 / 40.0, 9.0 / 40.0],
            vec![44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
            vec![
                19372.0 / 6561.0,
                -25360.0 / 2187.0,
                64448.0 / 6561.0,
                -212.0 / 729.0,
            ],
            vec![
                9017.0 / 3168.0,
                -355.0 / 33.0,
                46732.0 / 5247.0,
                49.0 / 176.0,
                -5103.0 / 18656.0,
            ],
            vec![
                35.0 / 384.0,
                0.0,
                500.0 / 1113.0,
                125.0 / 192.0,
                -2187.0 / 6784.0,
                11.0 / 84.0,
            ],
        ];
        let b = vec![
            35.0 / 384.0,
            0.0,
            500.0 / 1113.0,
            125.0 / 192.0,
            -2187.0 / 6784.0,
            11.0 / 84.0,
            0.0,
        ];
        let b_hat = vec![
            5179.0 / 57600.0,
            0.0,
            7571.0 / 16695.0,
            393.0 / 640.0,
            -92097.0 / 339200.0,
            187.0 / 2100.0,
            1.0 / 40.0,
        ];
        Self::new(
            "dopri5",
            5,
            vec![0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0],
            a,
            b,
        )
        .and_then(|t| t.with_embedded(b_hat, 4))
        .and_then(|t| {
            let p = dopri5_dense(t.b());
            t.with_dense_output(p)
        })
        .expect("valid tableau")
    }
}

/// The fourth-order continuous extension of Dormand–Prince 5(4) as polynomials `b_i(θ)`.
///
/// Hairer's DOPRI5 code (Hairer, Nørsett, Wanner, "Solving ODEs I", II.6) writes it as
/// `x(t + θh) = x + θΔ + θ(1−θ)[B + θ(Δ − h k_7 − B + (1−θ) R)]` with `Δ = h Σ b_i k_i`,
/// `B = h k_1 − Δ` and `R = h Σ d_i k_i`; collecting the powers of θ per stage gives
/// `b_i(θ) = θ (b_i + H_i) + θ² (G_i − H_i + d_i) − θ³ (G_i + 2 d_i) + θ⁴ d_i` with
/// `H_i = [i = 1] − b_i` and `G_i = b_i − [i = 7] − H_i`.
fn dopri5_dense(b: &[f64]) -> Vec<Vec<f64>> {
    let d = [
        -12715105075.0 / 11282082432.0,
        0.0,
        87487479700.0 / 32700410799.0,
        -10690763975.0 / 1880347072.0,
        701980252875.0 / 199316789632.0,
        -1453857185.0 / 822651844.0,
        69997945.0 / 29380423.0,
    ];
    (0..7)
        .map(|i| {
            let h = f64::from(u8::from(i == 0)) - b[i];
            let g = b[i] - f64::from(u8::from(i == 6)) - h;
            vec![b[i] + h, g - h + d[i], -(g + 2.0 * d[i]), d[i]]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_tableaus_are_valid_and_dopri5_is_fsal() {
        for t in [
            ButcherTableau::euler(),
            ButcherTableau::midpoint(),
            ButcherTableau::heun(),
            ButcherTableau::ralston(),
            ButcherTableau::ssprk3(),
            ButcherTableau::rk4(),
        ] {
            assert!(!t.is_fsal(), "{}", t.name());
            assert!(t.b_embedded().is_none());
        }
        let d = ButcherTableau::dopri5();
        assert!(d.is_fsal());
        assert_eq!(d.stages(), 7);
        assert_eq!(d.embedded_order(), Some(4));
    }

    #[test]
    fn malformed_tableaus_are_rejected() {
        // Implicit entry.
        let e = ButcherTableau::new("x", 1, vec![0.0], vec![vec![1.0]], vec![1.0]).unwrap_err();
        assert!(e.to_string().contains("on or above the diagonal"), "{e}");
        // Weights not summing to one.
        let e = ButcherTableau::new("x", 1, vec![0.0], vec![vec![]], vec![0.9]).unwrap_err();
        assert!(e.to_string().contains("sum to 0.9"), "{e}");
        // Row-sum condition.
        let e = ButcherTableau::new(
            "x",
            2,
            vec![0.0, 0.4],
            vec![vec![], vec![0.5]],
            vec![0.5, 0.5],
        )
        .unwrap_err();
        assert!(e.to_string().contains("row-sum"), "{e}");
        // Length mismatch, no stages, NaN, zero order.
        assert!(ButcherTableau::new("x", 1, vec![0.0], vec![vec![], vec![]], vec![1.0]).is_err());
        assert!(ButcherTableau::new("x", 1, vec![], vec![], vec![]).is_err());
        assert!(ButcherTableau::new("x", 1, vec![f64::NAN], vec![vec![]], vec![1.0]).is_err());
        assert!(ButcherTableau::new("x", 0, vec![0.0], vec![vec![]], vec![1.0]).is_err());
        // Embedded weights equal to b, wrong length, or not summing to one.
        let h = ButcherTableau::heun();
        assert!(h.clone().with_embedded(vec![0.5, 0.5], 1).is_err());
        assert!(h.clone().with_embedded(vec![1.0], 1).is_err());
        assert!(h.clone().with_embedded(vec![1.0, 0.5], 1).is_err());
        assert!(h.with_embedded(vec![1.0, 0.0], 1).is_ok());
    }
}
