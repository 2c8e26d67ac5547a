use crate::Float;
use serde::{Deserialize, Serialize};

/// SELU's scale λ (Klambauer et al., 2017, "Self-Normalizing Neural Networks").
pub const SELU_LAMBDA: f64 = 1.050_700_987_355_480_5;
/// SELU's α (Klambauer et al., 2017).
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;

/// The elementwise nonlinearities of the hidden layers.
///
/// Formulas (`σ(z) = 1 / (1 + e^-z)`):
/// * `Selu`: `λ z` for `z > 0`, else `λ α (e^z − 1)` (Klambauer et al., 2017).
/// * `Silu` (Swish): `z σ(z)`.
/// * `Elu`: `z` for `z > 0`, else `e^z − 1` (α = 1).
/// * `Relu`: `max(z, 0)` (derivative 0 at 0).
/// * `Tanh`: `tanh z`.
/// * `Softplus`: `ln(1 + e^z)`, computed as `max(z, 0) + ln(1 + e^-|z|)`.
/// * `Gelu`: the tanh form `½ z (1 + tanh(√(2/π) (z + 0.044715 z³)))` (Hendrycks & Gimpel, 2016),
///   PyTorch's `GELU(approximate="tanh")`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Activation {
    /// Scaled exponential linear unit (TorchCFM's default).
    #[default]
    Selu,
    /// Sigmoid-weighted linear unit, also called Swish.
    Silu,
    /// Exponential linear unit with α = 1.
    Elu,
    /// Rectified linear unit.
    Relu,
    /// Hyperbolic tangent.
    Tanh,
    /// `ln(1 + e^z)`.
    Softplus,
    /// Gaussian error linear unit, tanh approximation.
    Gelu,
}

impl Activation {
    /// The value `f(z)` and the derivative `f'(z)` at `z`.
    ///
    /// ```
    /// use fm_autograd::Activation;
    /// let (y, dy) = Activation::Elu.eval(-1.0_f64);
    /// assert!((y - ((-1.0_f64).exp() - 1.0)).abs() < 1e-15 && (dy - (-1.0_f64).exp()).abs() < 1e-15);
    /// ```
    #[inline(always)]
    pub fn eval<F: Float>(self, z: F) -> (F, F) {
        let zero = F::zero();
        let one = F::one();
        let pos = z > zero;
        match self {
            Activation::Selu => {
                let l = F::from_f64(SELU_LAMBDA);
                let la = F::from_f64(SELU_LAMBDA * SELU_ALPHA);
                let e = (if pos { zero } else { z }).exp();
                if pos {
                    (l * z, l)
                } else {
                    (la * (e - one), la * e)
                }
            }
            Activation::Elu => {
                let e = (if pos { zero } else { z }).exp();
                if pos { (z, one) } else { (e - one, e) }
            }
            Activation::Relu => {
                if pos {
                    (z, one)
                } else {
                    (zero, zero)
                }
            }
            Activation::Silu => {
                let s = sigmoid(z);
                (z * s, s * (one + z * (one - s)))
            }
            Activation::Tanh => {
                let y = z.tanh();
                (y, one - y * y)
            }
            Activation::Softplus => {
                let m = if pos { z } else { zero };
                let y = m + (-z.abs()).exp().ln_1p();
                (y, sigmoid(z))
            }
            Activation::Gelu => {
                let c = F::from_f64((2.0 / std::f64::consts::PI).sqrt());
                let a = F::from_f64(0.044_715);
                let half = F::from_f64(0.5);
                let u = c * (z + a * z * z * z);
                let th = u.tanh();
                let du = c * (one + F::from_f64(3.0) * a * z * z);
                let y = half * z * (one + th);
                (y, half * (one + th) + half * z * (one - th * th) * du)
            }
        }
    }

    /// The second derivative `f''(z)`: the backward rule of [`Graph::act_deriv`](crate::Graph::act_deriv),
    /// so tangents written with graph ops can be differentiated again.
    ///
    /// Formulas (`σ` the logistic sigmoid, `y = tanh z`): SELU `λα e^z` for `z ≤ 0`, else 0;
    /// ELU `e^z` for `z ≤ 0`, else 0; ReLU 0; SiLU `σ(1 − σ)(2 + z(1 − 2σ))`; tanh
    /// `−2y(1 − y²)`; softplus `σ(1 − σ)`; GELU (tanh form, `u = c(z + a z³)`, `τ = tanh u`)
    /// `(1 − τ²) u' + ½ z (1 − τ²)(u'' − 2 τ u'²)`. At the kinks of SELU, ELU and ReLU
    /// (`z = 0`) the value of the left side is returned.
    ///
    /// ```
    /// use fm_autograd::Activation;
    /// let t = 0.5_f64.tanh();
    /// assert!((Activation::Tanh.second_derivative(0.5_f64) + 2.0 * t * (1.0 - t * t)).abs() < 1e-15);
    /// ```
    #[inline(always)]
    pub fn second_derivative<F: Float>(self, z: F) -> F {
        let zero = F::zero();
        let one = F::one();
        let pos = z > zero;
        match self {
            Activation::Selu => {
                if pos {
                    zero
                } else {
                    F::from_f64(SELU_LAMBDA * SELU_ALPHA) * z.exp()
                }
            }
            Activation::Elu => {
                if pos {
                    zero
                } else {
                    z.exp()
                }
            }
            Activation::Relu => zero,
            Activation::Silu => {
                let s = sigmoid(z);
                let two = F::from_f64(2.0);
                s * (one - s) * (two + z * (one - two * s))
            }
            Activation::Tanh => {
                let y = z.tanh();
                F::from_f64(-2.0) * y * (one - y * y)
            }
            Activation::Softplus => {
                let s = sigmoid(z);
                s * (one - s)
            }
            Activation::Gelu => {
                let c = F::from_f64((2.0 / std::f64::consts::PI).sqrt());
                let a = F::from_f64(0.044_715);
                let half = F::from_f64(0.5);
                let u = c * (z + a * z * z * z);
                let th = u.tanh();
                let sech2 = one - th * th;
                let du = c * (one + F::from_f64(3.0) * a * z * z);
                let ddu = F::from_f64(6.0) * c * a * z;
                sech2 * du + half * z * sech2 * (ddu - F::from_f64(2.0) * th * du * du)
            }
        }
    }

    /// All activations, for tests and command-line parsing.
    pub const ALL: [Activation; 7] = [
        Activation::Selu,
        Activation::Silu,
        Activation::Elu,
        Activation::Relu,
        Activation::Tanh,
        Activation::Softplus,
        Activation::Gelu,
    ];
}

/// `σ(z) = 1 / (1 + e^-z)`, evaluated without overflow.
#[inline(always)]
fn sigmoid<F: Float>(z: F) -> F {
    let e = (-z.abs()).exp(); // in (0, 1]
    let s = F::one() / (F::one() + e);
    if z >= F::zero() { s } else { e * s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_match_central_differences() {
        for act in Activation::ALL {
            for &z in &[-3.1, -0.7, -0.01, 0.013, 0.4, 2.5] {
                let h = 1e-6;
                let fd = (act.eval(z + h).0 - act.eval(z - h).0) / (2.0 * h);
                let (_, dy) = act.eval(z);
                assert!((fd - dy).abs() < 1e-8, "{act:?} at {z}: {fd} vs {dy}");
            }
        }
    }

    #[test]
    fn second_derivatives_match_central_differences_of_the_first() {
        for act in Activation::ALL {
            for &z in &[-3.1, -0.7, -0.01, 0.013, 0.4, 2.5, 6.0, -8.0] {
                let h = 1e-6;
                let fd = (act.eval(z + h).1 - act.eval(z - h).1) / (2.0 * h);
                let d2 = act.second_derivative(z);
                assert!((fd - d2).abs() < 1e-8, "{act:?} at {z}: {fd} vs {d2}");
            }
        }
    }

    #[test]
    fn second_derivatives_in_f32_agree_with_f64() {
        for act in Activation::ALL {
            for &z in &[-2.0_f64, -0.3, 0.2, 1.7] {
                let d64 = act.second_derivative(z);
                let d32 = act.second_derivative(z as f32) as f64;
                assert!((d64 - d32).abs() < 1e-5, "{act:?} at {z}: {d32} vs {d64}");
            }
        }
    }

    #[test]
    fn values_match_reference_points() {
        // SELU(1) = λ, SELU(-1) = λα(e^-1 - 1); softplus(0) = ln 2; SiLU(1) = σ(1).
        assert!((Activation::Selu.eval(1.0).0 - SELU_LAMBDA).abs() < 1e-15);
        let want = SELU_LAMBDA * SELU_ALPHA * ((-1.0_f64).exp() - 1.0);
        assert!((Activation::Selu.eval(-1.0).0 - want).abs() < 1e-15);
        assert!((Activation::Softplus.eval(0.0).0 - 2.0_f64.ln()).abs() < 1e-15);
        assert!((Activation::Softplus.eval(50.0).0 - 50.0).abs() < 1e-12);
        assert!((Activation::Silu.eval(1.0).0 - 1.0 / (1.0 + (-1.0_f64).exp())).abs() < 1e-15);
        assert_eq!(Activation::Relu.eval(-2.0), (0.0, 0.0));
    }
}
