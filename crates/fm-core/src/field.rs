use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};

/// A batched, time-dependent vector field `v(t, x)` on `R^d`.
///
/// `x` holds one sample per row, shape `(n, d)` with `d = self.dim()`; `velocity` writes
/// `v(t, x_i)` into row `i` of `out`, which has the same shape. Callers (the ODE solvers, the
/// metrics) check shapes once before a loop, so implementations may assume them.
///
/// [`divergence`](VectorField::divergence) defaults to central finite differences, which costs
/// `2 d` evaluations of the field; a field that knows its exact divergence overrides it.
///
/// # Example: a user's field
/// ```
/// use fm_core::VectorField;
/// use ndarray::{ArrayView2, ArrayViewMut1, ArrayViewMut2, Zip};
///
/// /// Rotation by angular speed `w`: v(t, x) = w (-x_2, x_1), divergence 0.
/// struct Rotation { w: f64 }
///
/// impl VectorField for Rotation {
///     fn dim(&self) -> usize { 2 }
///     fn velocity(&self, _t: f64, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>) {
///         Zip::from(out.rows_mut()).and(x.rows()).for_each(|mut o, x| {
///             o[0] = -self.w * x[1];
///             o[1] = self.w * x[0];
///         });
///     }
///     fn divergence(&self, _t: f64, _x: ArrayView2<f64>, mut out: ArrayViewMut1<f64>) {
///         out.fill(0.0);
///     }
/// }
///
/// let field = Rotation { w: 2.0 };
/// let x = ndarray::array![[1.0, 0.0]];
/// let mut v = ndarray::Array2::zeros((1, 2));
/// field.velocity(0.0, x.view(), v.view_mut());
/// assert_eq!(v, ndarray::array![[0.0, 2.0]]);
/// ```
pub trait VectorField: Sync {
    /// The dimension `d` of the space the field lives in.
    fn dim(&self) -> usize;

    /// Writes `v(t, x_i)` into row `i` of `out`; `x` and `out` have shape `(n, d)`.
    fn velocity(&self, t: f64, x: ArrayView2<f64>, out: ArrayViewMut2<f64>);

    /// Writes the divergence `Σ_j ∂v_j/∂x_j (t, x_i)` into `out[i]`; `out` has length `n`.
    ///
    /// The default uses central finite differences per coordinate with step
    /// `h_j = ε^{1/3} · max(1, |x_ij|)` (ε the f64 machine epsilon), whose error is
    /// `O(h²)` ≈ 1e-10 relative for smooth fields. Override it when the exact divergence is
    /// available.
    fn divergence(&self, t: f64, x: ArrayView2<f64>, mut out: ArrayViewMut1<f64>) {
        let (n, d) = x.dim();
        let base = f64::EPSILON.cbrt();
        let mut xp = x.to_owned();
        let mut vp = Array2::zeros((n, d));
        let mut vm = Array2::zeros((n, d));
        out.fill(0.0);
        for j in 0..d {
            let h: Array1<f64> = x.column(j).mapv(|v| base * v.abs().max(1.0));
            xp.column_mut(j).assign(&(&x.column(j) + &h));
            self.velocity(t, xp.view(), vp.view_mut());
            xp.column_mut(j).assign(&(&x.column(j) - &h));
            self.velocity(t, xp.view(), vm.view_mut());
            xp.column_mut(j).assign(&x.column(j));
            let dj = (&vp.column(j) - &vm.column(j)) / (2.0 * &h);
            out += &dj;
        }
    }

    /// Convenience: the velocity as a new array.
    fn velocity_vec(&self, t: f64, x: ArrayView2<f64>) -> Array2<f64> {
        let mut out = Array2::zeros(x.raw_dim());
        self.velocity(t, x, out.view_mut());
        out
    }

    /// Convenience: the divergence as a new array.
    fn divergence_vec(&self, t: f64, x: ArrayView2<f64>) -> Array1<f64> {
        let mut out = Array1::zeros(x.len_of(Axis(0)));
        self.divergence(t, x, out.view_mut());
        out
    }
}

impl<F: VectorField + ?Sized> VectorField for &F {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn velocity(&self, t: f64, x: ArrayView2<f64>, out: ArrayViewMut2<f64>) {
        (**self).velocity(t, x, out)
    }
    fn divergence(&self, t: f64, x: ArrayView2<f64>, out: ArrayViewMut1<f64>) {
        (**self).divergence(t, x, out)
    }
}

impl<F: VectorField + ?Sized + Send> VectorField for Box<F> {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn velocity(&self, t: f64, x: ArrayView2<f64>, out: ArrayViewMut2<f64>) {
        (**self).velocity(t, x, out)
    }
    fn divergence(&self, t: f64, x: ArrayView2<f64>, out: ArrayViewMut1<f64>) {
        (**self).divergence(t, x, out)
    }
}

/// A [`VectorField`] made from a closure `f(t, x, out)` that fills `out` with `v(t, x)`.
///
/// The divergence is the finite-difference default unless one is given with
/// [`FnField::with_divergence`].
///
/// ```
/// use fm_core::{FnField, VectorField};
/// use ndarray::array;
/// // v = A x with A = [[1, 2], [3, 4]]: divergence trace(A) = 5.
/// let a = array![[1.0, 2.0], [3.0, 4.0]];
/// let field = FnField::new(2, move |_t, x, mut out| out.assign(&x.dot(&a.t())));
/// let div = field.divergence_vec(0.0, array![[0.3, -0.7]].view());
/// assert!((div[0] - 5.0).abs() < 1e-7);
/// ```
pub struct FnField<F, G = fn(f64, ArrayView2<f64>, ArrayViewMut1<f64>)> {
    dim: usize,
    f: F,
    div: Option<G>,
}

impl<F> FnField<F>
where
    F: Fn(f64, ArrayView2<f64>, ArrayViewMut2<f64>) + Sync,
{
    /// A field of dimension `dim` evaluated by `f(t, x, out)`.
    pub fn new(dim: usize, f: F) -> Self {
        Self { dim, f, div: None }
    }
}

impl<F, G> FnField<F, G>
where
    F: Fn(f64, ArrayView2<f64>, ArrayViewMut2<f64>) + Sync,
    G: Fn(f64, ArrayView2<f64>, ArrayViewMut1<f64>) + Sync,
{
    /// Supplies the exact divergence `g(t, x, out)`.
    pub fn with_divergence<H>(self, g: H) -> FnField<F, H>
    where
        H: Fn(f64, ArrayView2<f64>, ArrayViewMut1<f64>) + Sync,
    {
        FnField {
            dim: self.dim,
            f: self.f,
            div: Some(g),
        }
    }
}

impl<F, G> VectorField for FnField<F, G>
where
    F: Fn(f64, ArrayView2<f64>, ArrayViewMut2<f64>) + Sync,
    G: Fn(f64, ArrayView2<f64>, ArrayViewMut1<f64>) + Sync,
{
    fn dim(&self) -> usize {
        self.dim
    }
    fn velocity(&self, t: f64, x: ArrayView2<f64>, out: ArrayViewMut2<f64>) {
        (self.f)(t, x, out)
    }
    fn divergence(&self, t: f64, x: ArrayView2<f64>, out: ArrayViewMut1<f64>) {
        match &self.div {
            Some(g) => g(t, x, out),
            None => finite_difference_divergence(self, t, x, out),
        }
    }
}

/// The finite-difference divergence of the trait's default, callable by implementors that
/// override [`VectorField::divergence`] but want to fall back to it.
pub fn finite_difference_divergence<V: VectorField + ?Sized>(
    field: &V,
    t: f64,
    x: ArrayView2<f64>,
    out: ArrayViewMut1<f64>,
) {
    struct Fd<'a, V: ?Sized>(&'a V);
    impl<V: VectorField + ?Sized> VectorField for Fd<'_, V> {
        fn dim(&self) -> usize {
            self.0.dim()
        }
        fn velocity(&self, t: f64, x: ArrayView2<f64>, out: ArrayViewMut2<f64>) {
            self.0.velocity(t, x, out)
        }
    }
    Fd(field).divergence(t, x, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};
    use proptest::prelude::*;

    fn linear(a: Array2<f64>) -> impl VectorField {
        let d = a.nrows();
        FnField::new(d, move |t, x, mut out| {
            out.assign(&(x.dot(&a.t()) * (1.0 + t)))
        })
    }

    proptest! {
        /// The finite-difference divergence of v = (1 + t) A x is (1 + t) trace(A), for random A and x.
        #[test]
        fn finite_difference_divergence_of_linear_field_is_trace(
            d in 1usize..6,
            seed in proptest::collection::vec(-3.0f64..3.0, 36),
            xs in proptest::collection::vec(-10.0f64..10.0, 18),
            t in 0.0f64..1.0,
        ) {
            let a = Array2::from_shape_fn((d, d), |(i, j)| seed[i * 6 + j]);
            let trace: f64 = (0..d).map(|i| a[[i, i]]).sum();
            let x = Array2::from_shape_fn((3, d), |(i, j)| xs[i * 6 + j]);
            let div = linear(a).divergence_vec(t, x.view());
            for v in div.iter() {
                prop_assert!((v - (1.0 + t) * trace).abs() <= 1e-7 * (1.0 + trace.abs()), "{v} vs {}", (1.0 + t) * trace);
            }
        }
    }

    #[test]
    fn finite_difference_divergence_of_nonlinear_field_matches_closed_form() {
        // v(x) = (sin x1 * x2, x1 * x2^2): div = cos(x1) x2 + 2 x1 x2.
        let field = FnField::new(2, |_t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
            for (i, r) in x.rows().into_iter().enumerate() {
                out[[i, 0]] = r[0].sin() * r[1];
                out[[i, 1]] = r[0] * r[1] * r[1];
            }
        });
        let x = array![[0.3, -1.2], [2.0, 5.0], [-7.0, 0.1]];
        let div = field.divergence_vec(0.0, x.view());
        for (i, r) in x.rows().into_iter().enumerate() {
            let exact = r[0].cos() * r[1] + 2.0 * r[0] * r[1];
            assert!(
                (div[i] - exact).abs() < 1e-7 * (1.0 + exact.abs()),
                "{} vs {exact}",
                div[i]
            );
        }
    }

    #[test]
    fn explicit_divergence_overrides_default() {
        let field = FnField::new(1, |_t, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>| {
            out.assign(&x)
        })
        .with_divergence(|_t, _x, mut out: ArrayViewMut1<f64>| out.fill(42.0));
        assert_eq!(field.divergence_vec(0.0, array![[1.0]].view())[0], 42.0);
        // Through a reference and a box the override still applies.
        let r = &field;
        assert_eq!(r.divergence_vec(0.0, array![[1.0]].view())[0], 42.0);
        let mut out = Array1::zeros(1);
        finite_difference_divergence(&field, 0.0, array![[1.0]].view(), out.view_mut());
        assert!((out[0] - 1.0).abs() < 1e-8);
    }
}
