use ndarray::{LinalgScalar, ScalarOperand};
use std::fmt::{Debug, Display};
use std::ops::{AddAssign, MulAssign, Neg, SubAssign};

/// The scalar types the tape and the MLP compute in: `f32` (training) and `f64` (gradient checks).
///
/// For `f32`, [`Float::exp`] is a branch-free polynomial (Cephes `expf`, relative error about
/// 2e-7) that the compiler vectorises; every `f32` computation of this crate uses it, so the tape
/// and the fused MLP path agree. For `f64` it is the standard library's `exp`.
///
/// The trait is sealed in spirit: it is implemented for `f32` and `f64` only.
///
/// ```
/// use fm_autograd::Float;
/// fn softplus<F: Float>(x: F) -> F { (F::one() + x.exp()).ln() }
/// assert!((softplus(0.0_f64) - 2.0_f64.ln()).abs() < 1e-15);
/// assert!((softplus(0.0_f32) - 2.0_f32.ln()).abs() < 1e-6);
/// ```
pub trait Float:
    LinalgScalar
    + ScalarOperand
    + PartialOrd
    + Debug
    + Display
    + Send
    + Sync
    + AddAssign
    + SubAssign
    + MulAssign
    + Neg<Output = Self>
    + std::iter::Sum
    + serde::Serialize
    + serde::de::DeserializeOwned
{
    /// Converts from `f64` (rounding for `f32`).
    fn from_f64(v: f64) -> Self;
    /// Converts to `f64` (exact).
    fn to_f64(self) -> f64;
    /// `e^self` (a fast polynomial for `f32`, see the trait docs).
    fn exp(self) -> Self;
    /// The natural logarithm.
    fn ln(self) -> Self;
    /// `ln(1 + self)`.
    fn ln_1p(self) -> Self;
    /// The hyperbolic tangent.
    fn tanh(self) -> Self;
    /// The sine.
    fn sin(self) -> Self;
    /// The cosine.
    fn cos(self) -> Self;
    /// The error function `erf(x) = 2/√π ∫_0^x e^(−s²) ds` (the `libm` crate's `erf`/`erff`).
    fn erf(self) -> Self;
    /// The square root.
    fn sqrt(self) -> Self;
    /// The absolute value.
    fn abs(self) -> Self;
    /// Neither NaN nor infinite.
    fn is_finite(self) -> bool;
    /// `self * a + b`: one fused multiply-add (a single rounding) when the build targets a CPU
    /// with FMA (this workspace's default, see `.cargo/config.toml`), else a multiply and an add.
    fn mul_add(self, a: Self, b: Self) -> Self;
}

impl Float for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
    fn ln_1p(self) -> Self {
        f64::ln_1p(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn sin(self) -> Self {
        f64::sin(self)
    }
    fn cos(self) -> Self {
        f64::cos(self)
    }
    fn erf(self) -> Self {
        libm::erf(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn abs(self) -> Self {
        f64::abs(self)
    }
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        #[cfg(target_feature = "fma")]
        {
            f64::mul_add(self, a, b)
        }
        #[cfg(not(target_feature = "fma"))]
        {
            self * a + b
        }
    }
}

impl Float for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp(self) -> Self {
        exp_f32(self)
    }
    fn ln(self) -> Self {
        f32::ln(self)
    }
    fn ln_1p(self) -> Self {
        f32::ln_1p(self)
    }
    fn tanh(self) -> Self {
        f32::tanh(self)
    }
    fn sin(self) -> Self {
        f32::sin(self)
    }
    fn cos(self) -> Self {
        f32::cos(self)
    }
    fn erf(self) -> Self {
        libm::erff(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn abs(self) -> Self {
        f32::abs(self)
    }
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        #[cfg(target_feature = "fma")]
        {
            f32::mul_add(self, a, b)
        }
        #[cfg(not(target_feature = "fma"))]
        {
            self * a + b
        }
    }
}

/// `e^x` in `f32` without branches: `x = n ln 2 + r`, `|r| ≤ ln 2 / 2`, a degree-6 polynomial
/// for `e^r` (the Cephes `expf` coefficients) and `2^n` built from the exponent bits.
/// Inputs are clamped to `[-87.3, 88.3]`. NaN stays NaN without a test: it propagates
/// through `r` into the polynomial.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let fma = Float::mul_add;
    let xc = if x < -87.3 { -87.3 } else { x };
    let xc = if xc > 88.3 { 88.3 } else { xc };
    let k = fma(xc, std::f32::consts::LOG2_E, MAGIC);
    let n = k - MAGIC;
    let ni = (k.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = fma(n, 2.121_944_4e-4, fma(n, -0.693_359_4, xc));
    // P(r) = 0.5 + c1 r + … + c5 r^5 by Estrin's scheme (short dependency chains).
    let r2 = r * r;
    let r4 = r2 * r2;
    let p01 = fma(r, 1.666_666_5e-1, 0.5);
    let p23 = fma(r, 8.333_452e-3, 4.166_579_6e-2);
    let p45 = fma(r, 1.987_569_1e-4, 1.398_2e-3);
    let p = fma(r4, p45, fma(r2, p23, p01));
    let er = fma(p, r2, r + 1.0);
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    er * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_f32_is_accurate_over_its_range() {
        let mut worst = 0.0_f64;
        let mut x = -87.0_f64;
        while x < 88.0 {
            let got = exp_f32(x as f32) as f64;
            let want = (x as f32 as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NAN).is_nan() && exp_f32(-f32::NAN).is_nan());
        assert_eq!(exp_f32(1000.0), exp_f32(88.3));
        assert!(exp_f32(-1000.0) < 1e-37);
    }
}
