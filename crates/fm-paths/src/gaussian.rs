//! Shared machinery of the paths whose mean is `a(t) x_0 + b(t) x_1` and std `s(t)`: every path
//! of this crate in its Gaussian view.

use crate::PathError;
use crate::path::{check_inputs, check_times, map_rows};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

/// `μ_t = a x_0 + b x_1`, `σ_t = s` and their time derivatives at one time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Coefs {
    pub a: f64,
    pub b: f64,
    pub s: f64,
    pub da: f64,
    pub db: f64,
    pub ds: f64,
}

/// A path described by [`Coefs`].
pub(crate) trait HasCoefs: Sync {
    fn coefs(&self, t: f64) -> Coefs;
}

/// `a x + b y`, skipping a term whose coefficient is exactly 0 (so an ignored `x_0` holding
/// NaN or infinities does not leak in).
#[inline]
pub(crate) fn lin(a: f64, x: f64, b: f64, y: f64) -> f64 {
    match (a == 0.0, b == 0.0) {
        (true, true) => 0.0,
        (true, false) => b * y,
        (false, true) => a * x,
        (false, false) => a * x + b * y,
    }
}

fn combine<P: HasCoefs + ?Sized>(
    p: &P,
    x_0: ArrayView2<f64>,
    x_1: ArrayView2<f64>,
    t: ArrayView1<f64>,
    derivative: bool,
) -> Result<Array2<f64>, PathError> {
    check_inputs(x_0, x_1, t, None)?;
    let out = map_rows(x_0, x_1, x_1, t, |mut o, a, b, _, t| {
        let c = p.coefs(t);
        let (ca, cb) = if derivative { (c.da, c.db) } else { (c.a, c.b) };
        for j in 0..o.len() {
            o[j] = lin(ca, a[j], cb, b[j]);
        }
    });
    // `x_1` is finite (checked above); a non-finite result comes from an `x_0` the path reads.
    if out.iter().any(|v| !v.is_finite()) {
        crate::path::check_x_0(x_0)?;
        fm_core::shape::check_finite("the mean", out.view())?;
    }
    Ok(out)
}

pub(crate) fn mean<P: HasCoefs + ?Sized>(
    p: &P,
    x_0: ArrayView2<f64>,
    x_1: ArrayView2<f64>,
    t: ArrayView1<f64>,
) -> Result<Array2<f64>, PathError> {
    combine(p, x_0, x_1, t, false)
}

pub(crate) fn d_mean<P: HasCoefs + ?Sized>(
    p: &P,
    x_0: ArrayView2<f64>,
    x_1: ArrayView2<f64>,
    t: ArrayView1<f64>,
) -> Result<Array2<f64>, PathError> {
    combine(p, x_0, x_1, t, true)
}

pub(crate) fn std<P: HasCoefs + ?Sized>(
    p: &P,
    t: ArrayView1<f64>,
) -> Result<Array1<f64>, PathError> {
    check_times(t)?;
    Ok(t.mapv(|t| p.coefs(t).s))
}

pub(crate) fn d_std<P: HasCoefs + ?Sized>(
    p: &P,
    t: ArrayView1<f64>,
) -> Result<Array1<f64>, PathError> {
    check_times(t)?;
    Ok(t.mapv(|t| p.coefs(t).ds))
}

/// The four `GaussianPath` methods `mean`, `std`, `d_mean`, `d_std` of a [`HasCoefs`] path.
macro_rules! gaussian_methods {
    () => {
        fn mean(
            &self,
            x_0: ndarray::ArrayView2<f64>,
            x_1: ndarray::ArrayView2<f64>,
            t: ndarray::ArrayView1<f64>,
        ) -> Result<ndarray::Array2<f64>, $crate::PathError> {
            $crate::gaussian::mean(self, x_0, x_1, t)
        }
        fn std(
            &self,
            t: ndarray::ArrayView1<f64>,
        ) -> Result<ndarray::Array1<f64>, $crate::PathError> {
            $crate::gaussian::std(self, t)
        }
        fn d_mean(
            &self,
            x_0: ndarray::ArrayView2<f64>,
            x_1: ndarray::ArrayView2<f64>,
            t: ndarray::ArrayView1<f64>,
        ) -> Result<ndarray::Array2<f64>, $crate::PathError> {
            $crate::gaussian::d_mean(self, x_0, x_1, t)
        }
        fn d_std(
            &self,
            t: ndarray::ArrayView1<f64>,
        ) -> Result<ndarray::Array1<f64>, $crate::PathError> {
            $crate::gaussian::d_std(self, t)
        }
    };
}
pub(crate) use gaussian_methods;

/// Checks that a finite, non-negative parameter is valid.
pub(crate) fn check_sigma(name: &'static str, sigma: f64) -> Result<f64, PathError> {
    if !(sigma.is_finite() && sigma >= 0.0) {
        return Err(PathError::param(
            name,
            sigma,
            "must be finite and non-negative",
        ));
    }
    Ok(sigma)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lin_skips_zero_coefficients() {
        assert_eq!(lin(0.0, f64::NAN, 2.0, 3.0), 6.0);
        assert_eq!(lin(2.0, 3.0, 0.0, f64::INFINITY), 6.0);
        assert_eq!(lin(0.0, f64::NAN, 0.0, f64::NAN), 0.0);
        assert_eq!(lin(1.0, 2.0, 3.0, 4.0), 14.0);
    }
}
