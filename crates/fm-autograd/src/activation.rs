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
