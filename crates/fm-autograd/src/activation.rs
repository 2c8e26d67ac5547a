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
/// * `Gelu`: the exact GELU `z Φ(z) = ½ z (1 + erf(z / √2))` (Hendrycks & Gimpel, 2016), PyTorch's
///   `nn.GELU()`; `erf` from the `libm` crate.
/// * `GeluTanh`: its tanh approximation `½ z (1 + tanh(√(2/π) (z + 0.044715 z³)))`, PyTorch's
///   `nn.GELU(approximate="tanh")`. The two differ by up to 4.7e-4 (at |z| ≈ 2.7).
///
/// Names ([`Activation::name`], [`Activation::parse`]) follow PyTorch: `gelu` is the exact one,
/// `gelu-tanh` the approximation. (Model files of format version 1 wrote `gelu` for the tanh
/// form; `fm-train` reads them as `gelu-tanh`.) The serde names are the variant names, except
/// that `GeluTanh` keeps the name `Gelu` it had before the exact GELU existed (files that store
/// an `Activation` with serde, such as `fm-nf`'s, keep their meaning) and `Gelu` is `GeluErf`.
///
/// ```
/// use fm_autograd::Activation;
/// assert_eq!(Activation::parse("GELU")?, Activation::Gelu);
/// assert_eq!(Activation::parse("gelu-tanh")?.name(), "gelu-tanh");
/// // GELU(1) = Φ(1) = 0.8413447460685429.
/// assert!((Activation::Gelu.eval(1.0_f64).0 - 0.841_344_746_068_542_9).abs() < 1e-15);
/// # Ok::<(), fm_autograd::AutogradError>(())
/// ```
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
    /// Gaussian error linear unit, exact (erf) form: PyTorch's `nn.GELU()`.
    #[serde(rename = "GeluErf")]
    Gelu,
    /// Gaussian error linear unit, tanh approximation: PyTorch's `nn.GELU(approximate="tanh")`.
    #[serde(rename = "Gelu")]
    GeluTanh,
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
                let cdf = normal_cdf(z);
                (z * cdf, cdf + z * normal_pdf(z))
            }
            Activation::GeluTanh => {
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
    /// `−2y(1 − y²)`; softplus `σ(1 − σ)`; GELU `φ(z)(2 − z²)` (`φ` the standard normal density);
    /// GELU-tanh (`u = c(z + a z³)`, `τ = tanh u`)
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
            Activation::Gelu => normal_pdf(z) * (F::from_f64(2.0) - z * z),
            Activation::GeluTanh => {
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
    pub const ALL: [Activation; 8] = [
        Activation::Selu,
        Activation::Silu,
        Activation::Elu,
        Activation::Relu,
        Activation::Tanh,
        Activation::Softplus,
        Activation::Gelu,
        Activation::GeluTanh,
    ];

    /// The name [`Activation::parse`] reads, PyTorch's module name in lowercase (`gelu` for
    /// `nn.GELU()`, `gelu-tanh` for `nn.GELU(approximate="tanh")`).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Selu => "selu",
            Activation::Silu => "silu",
            Activation::Elu => "elu",
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Softplus => "softplus",
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu-tanh",
        }
    }

    /// The activation of a name, case-insensitive: one of [`Activation::name`]'s, or the aliases
    /// `swish` (SiLU) and `gelu_tanh` (GELU-tanh). An unknown name is an error listing every
    /// accepted name.
    pub fn parse(name: &str) -> Result<Self, crate::AutogradError> {
        let lower = name.trim().to_ascii_lowercase();
        let alias = match lower.as_str() {
            "swish" => Some(Activation::Silu),
            "gelu_tanh" => Some(Activation::GeluTanh),
            _ => None,
        };
        alias
            .or_else(|| Self::ALL.into_iter().find(|a| a.name() == lower))
            .ok_or_else(|| crate::AutogradError::UnknownActivation {
                name: name.into(),
                known: format!(
                    "{} (aliases: swish, gelu_tanh)",
                    Self::ALL.map(Activation::name).join(", ")
                ),
            })
    }
}

/// `Φ(z) = ½ (1 + erf(z / √2))`, the standard normal distribution function.
#[inline(always)]
fn normal_cdf<F: Float>(z: F) -> F {
    let half = F::from_f64(0.5);
    half * (F::one() + (z * F::from_f64(std::f64::consts::FRAC_1_SQRT_2)).erf())
}

/// `φ(z) = e^(−z²/2) / √(2π)`, the standard normal density.
#[inline(always)]
fn normal_pdf<F: Float>(z: F) -> F {
    F::from_f64(1.0 / (2.0 * std::f64::consts::PI).sqrt()) * (F::from_f64(-0.5) * z * z).exp()
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
    fn exact_gelu_matches_closed_forms_and_pytorch_reference_values() {
        // GELU(z) = z Φ(z): Φ(0) = 1/2, and Φ(±1), Φ(2) from tables of the normal distribution.
        let phi = [
            (1.0, 0.841_344_746_068_542_9),
            (-1.0, 0.158_655_253_931_457_05),
            (2.0, 0.977_249_868_051_820_8),
        ];
        for (z, cdf) in phi {
            let (y, _) = Activation::Gelu.eval(z);
            assert!((y - z * cdf).abs() < 1e-15, "{z}: {y}");
        }
        assert_eq!(Activation::Gelu.eval(0.0_f64), (0.0, 0.5));
        // The exact and tanh forms differ by at most ~4.7e-4 (PyTorch's docs of approximate="tanh").
        let worst = (-600..=600)
            .map(|i| i as f64 * 0.01)
            .map(|z| (Activation::Gelu.eval(z).0 - Activation::GeluTanh.eval(z).0).abs())
            .fold(0.0, f64::max);
        assert!(worst > 1e-4 && worst < 5e-4, "{worst}");
        // Far tails: GELU(z) → z for z → ∞ and → 0 for z → −∞, without NaN, in f32 too.
        assert!((Activation::Gelu.eval(30.0_f64).0 - 30.0).abs() < 1e-12);
        assert!(Activation::Gelu.eval(-30.0_f64).0.abs() < 1e-100);
        let (y, dy) = Activation::Gelu.eval(-30.0_f32);
        assert!(
            y.is_finite()
                && dy.is_finite()
                && Activation::Gelu.second_derivative(-30.0_f32).is_finite()
        );
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_every_name() {
        for act in Activation::ALL {
            assert_eq!(Activation::parse(act.name()).unwrap(), act);
            assert_eq!(
                Activation::parse(&act.name().to_ascii_uppercase()).unwrap(),
                act
            );
        }
        assert_eq!(Activation::parse("gelu").unwrap(), Activation::Gelu);
        assert_eq!(
            Activation::parse("gelu_tanh").unwrap(),
            Activation::GeluTanh
        );
        assert_eq!(Activation::parse("Swish").unwrap(), Activation::Silu);
        let msg = Activation::parse("sine").unwrap_err().to_string();
        for act in Activation::ALL {
            assert!(msg.contains(act.name()), "{msg}");
        }
    }

    #[test]
    fn serde_names_keep_the_meaning_of_files_written_before_the_exact_gelu() {
        // Before the exact GELU existed, serde wrote the tanh form as "Gelu".
        let old: Activation = serde_json::from_str("\"Gelu\"").unwrap();
        assert_eq!(old, Activation::GeluTanh);
        let exact = serde_json::to_string(&Activation::Gelu).unwrap();
        assert_eq!(
            serde_json::from_str::<Activation>(&exact).unwrap(),
            Activation::Gelu
        );
        assert_ne!(exact, "\"Gelu\"");
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
