//! The path traits, the sample type and the batch helpers shared by every path.

use crate::PathError;
use fm_core::shape;
use ndarray::{
    Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, Zip,
    parallel::prelude::*,
};
use rand::{Rng, RngCore};
use rand_distr::StandardNormal;

/// Batches with at least this many entries (`n · d`) are processed with rayon.
pub(crate) const PAR_MIN_ELEMS: usize = 1 << 15;
/// Rows of noise drawn from one derived seed (fixed, so the bits do not depend on the thread count).
const NOISE_CHUNK_ROWS: usize = 1024;

/// One draw from a probability path for a batch: `x_t`, the regression target `u_t(x_t | z)`
/// and the Gaussian noise `eps` with `x_t = μ_t + σ_t eps`.
#[derive(Debug, Clone, PartialEq)]
pub struct PathSample {
    /// The points `x_t`, shape `(n, d)`.
    pub x_t: Array2<f64>,
    /// The conditional vector field `u_t(x_t | z)` at those points, shape `(n, d)`.
    pub u_t: Array2<f64>,
    /// The noise with `x_t = μ_t + σ_t eps` (for an [`AffineProbPath`](crate::AffineProbPath)
    /// this is `x_0`), shape `(n, d)`.
    pub eps: Array2<f64>,
}

/// A conditional probability path `p_t(x | z)`, `z = (x_0, x_1)`, with its conditional vector
/// field `u_t(x | z)`: what a flow-matching trainer regresses on.
///
/// Batches have one sample per row: `x_0`, `x_1`, `eps`, `x_t` of shape `(n, d)` and `t` of
/// length `n` (one time per row, each in `[0, 1]`). Implementations check shapes and times and
/// return a [`PathError`] instead of panicking.
///
/// # Example: a user's path
/// ```
/// use fm_paths::{PathError, PathSample, ProbPath};
/// use ndarray::{Array2, ArrayView1, ArrayView2};
///
/// /// The straight line from x_0 to x_1 traversed with speed 2t: x_t = t² x_1 + (1 - t²) x_0.
/// struct Quadratic;
///
/// impl ProbPath for Quadratic {
///     fn sample_with_noise(&self, x_0: ArrayView2<f64>, x_1: ArrayView2<f64>,
///                          t: ArrayView1<f64>, eps: ArrayView2<f64>) -> Result<PathSample, PathError> {
///         fm_paths::check_inputs(x_0, x_1, t, Some(eps))?;
///         let tt = t.insert_axis(ndarray::Axis(1));
///         let x_t = &x_1 * &tt.mapv(|t| t * t) + &x_0 * &tt.mapv(|t| 1.0 - t * t);
///         let u_t = (&x_1 - &x_0) * &tt.mapv(|t| 2.0 * t);
///         Ok(PathSample { x_t, u_t, eps: eps.to_owned() })
///     }
///     fn conditional_velocity(&self, x_t: ArrayView2<f64>, x_0: ArrayView2<f64>,
///                             x_1: ArrayView2<f64>, t: ArrayView1<f64>) -> Result<Array2<f64>, PathError> {
///         fm_paths::check_inputs(x_0, x_1, t, Some(x_t))?;
///         Ok((&x_1 - &x_0) * &t.insert_axis(ndarray::Axis(1)).mapv(|t| 2.0 * t))
///     }
/// }
///
/// let x_0 = ndarray::array![[0.0, 0.0]];
/// let x_1 = ndarray::array![[1.0, 2.0]];
/// let s = Quadratic.sample(x_0.view(), x_1.view(), ndarray::array![0.5].view(),
///                          &mut fm_core::rng::seeded(0)).unwrap();
/// assert_eq!(s.x_t, ndarray::array![[0.25, 0.5]]);
/// assert_eq!(s.u_t, ndarray::array![[1.0, 2.0]]);
/// ```
pub trait ProbPath: Send + Sync {
    /// `x_t ~ p_t(· | x_0, x_1)` written with the given noise `eps` (shape `(n, d)`), and
    /// `u_t(x_t | x_0, x_1)`.
    fn sample_with_noise(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
        eps: ArrayView2<f64>,
    ) -> Result<PathSample, PathError>;

    /// Draws `eps ~ N(0, I)` from `rng` (in chunks of rows with seeds derived by
    /// [`fm_core::rng::chunk_seeds`], so the bits depend on the seed only), then
    /// [`sample_with_noise`](ProbPath::sample_with_noise).
    fn sample(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
        rng: &mut dyn RngCore,
    ) -> Result<PathSample, PathError> {
        check_inputs(x_0, x_1, t, None)?;
        let eps = standard_normal(x_0.nrows(), x_0.ncols(), rng);
        self.sample_with_noise(x_0, x_1, t, eps.view())
    }

    /// The conditional vector field `u_t(x_t | x_0, x_1)` at arbitrary points `x_t`.
    fn conditional_velocity(
        &self,
        x_t: ArrayView2<f64>,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
    ) -> Result<Array2<f64>, PathError>;
}

/// What a [`GaussianPath`] conditions on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conditioning {
    /// `p_t(x | x_1)`: mean and std do not depend on `x_0`; the source is the path's own
    /// distribution at `t = 0` (for the Lipman and affine paths `N(0, I)`). Marginals are
    /// mixtures over target points only ([`EmpiricalMarginal::target`](crate::EmpiricalMarginal::target)).
    Target,
    /// `p_t(x | x_0, x_1)`: the mean depends on both ends. Marginals are mixtures over pairs
    /// ([`EmpiricalMarginal::independent_pairs`](crate::EmpiricalMarginal::independent_pairs)).
    Pair,
}

/// What the path's mean and standard deviation tend to at one end:
/// `μ → x_0 · x_0 + x_1 · x_1` (coefficients) and `σ → std`, each within `tol`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndPoint {
    /// The coefficient of `x_0` in the limit of the mean.
    pub x_0: f64,
    /// The coefficient of `x_1` in the limit of the mean.
    pub x_1: f64,
    /// The limit of the standard deviation.
    pub std: f64,
    /// The absolute tolerance on the coefficients and the std (0 for paths that hit their ends exactly).
    pub tol: f64,
}

/// The declared limits of a [`GaussianPath`] at `t = 0` and `t = 1`, checked by the kit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Boundary {
    /// The limit at `t = 0`.
    pub start: EndPoint,
    /// The limit at `t = 1`.
    pub end: EndPoint,
}

impl Boundary {
    /// An interpolant between the pair: `μ_0 = x_0` with std `std_0`, `μ_1 = x_1` with std `std_1`.
    pub fn interpolant(std_0: f64, std_1: f64) -> Self {
        Self {
            start: EndPoint {
                x_0: 1.0,
                x_1: 0.0,
                std: std_0,
                tol: 0.0,
            },
            end: EndPoint {
                x_0: 0.0,
                x_1: 1.0,
                std: std_1,
                tol: 0.0,
            },
        }
    }

    /// Noise to data: `N(0, I)` at `t = 0`, `N(x_1, std_1² I)` at `t = 1`.
    pub fn noise_to_data(std_1: f64) -> Self {
        Self {
            start: EndPoint {
                x_0: 0.0,
                x_1: 0.0,
                std: 1.0,
                tol: 0.0,
            },
            end: EndPoint {
                x_0: 0.0,
                x_1: 1.0,
                std: std_1,
                tol: 0.0,
            },
        }
    }

    /// The same limits with the tolerances `start_tol` at `t = 0` and `end_tol` at `t = 1`.
    pub fn with_tolerance(mut self, start_tol: f64, end_tol: f64) -> Self {
        self.start.tol = start_tol;
        self.end.tol = end_tol;
        self
    }
}

/// A Gaussian conditional path `p_t(x | z) = N(x; μ_t(z), σ_t² I)`: the quantities the
/// continuity kit, the exact marginals and denoising score matching need.
///
/// `log_density` and `score` are provided from `mean` and `std`.
///
/// # Example: a user's Gaussian path
/// ```
/// use fm_paths::{Boundary, Conditioning, GaussianPath, PathError, PathSample, ProbPath};
/// use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
///
/// /// Brownian motion started at x_0: μ_t = x_0, σ_t = √t (the field is u = (x - x_0) / (2t)).
/// struct Heat;
///
/// impl ProbPath for Heat {
///     fn sample_with_noise(&self, x_0: ArrayView2<f64>, x_1: ArrayView2<f64>,
///                          t: ArrayView1<f64>, eps: ArrayView2<f64>) -> Result<PathSample, PathError> {
///         fm_paths::check_inputs(x_0, x_1, t, Some(eps))?;
///         let s = t.mapv(f64::sqrt).insert_axis(Axis(1));
///         let x_t = &x_0 + &(&eps * &s);
///         let u_t = &eps * &s.mapv(|s| 0.5 / s);
///         Ok(PathSample { x_t, u_t, eps: eps.to_owned() })
///     }
///     fn conditional_velocity(&self, x_t: ArrayView2<f64>, x_0: ArrayView2<f64>,
///                             x_1: ArrayView2<f64>, t: ArrayView1<f64>) -> Result<Array2<f64>, PathError> {
///         fm_paths::check_inputs(x_0, x_1, t, Some(x_t))?;
///         Ok((&x_t - &x_0) * &t.mapv(|t| 0.5 / t).insert_axis(Axis(1)))
///     }
/// }
///
/// impl GaussianPath for Heat {
///     fn conditioning(&self) -> Conditioning { Conditioning::Pair }
///     fn boundary(&self) -> Boundary {
///         let mut b = Boundary::interpolant(0.0, 1.0);
///         b.end.x_0 = 1.0; // μ_1 = x_0
///         b.end.x_1 = 0.0;
///         b
///     }
///     fn mean(&self, x_0: ArrayView2<f64>, _x_1: ArrayView2<f64>, _t: ArrayView1<f64>)
///         -> Result<Array2<f64>, PathError> { Ok(x_0.to_owned()) }
///     fn std(&self, t: ArrayView1<f64>) -> Result<Array1<f64>, PathError> { Ok(t.mapv(f64::sqrt)) }
///     fn d_mean(&self, x_0: ArrayView2<f64>, _x_1: ArrayView2<f64>, _t: ArrayView1<f64>)
///         -> Result<Array2<f64>, PathError> { Ok(Array2::zeros(x_0.dim())) }
///     fn d_std(&self, t: ArrayView1<f64>) -> Result<Array1<f64>, PathError> {
///         Ok(t.mapv(|t| 0.5 / t.sqrt()))
///     }
/// }
///
/// let x = ndarray::array![[1.0]];
/// let lp = Heat.log_density(x.view(), ndarray::array![[0.0]].view(),
///                           ndarray::array![[0.0]].view(), ndarray::array![1.0].view()).unwrap();
/// assert!((lp[0] - (-0.5 - 0.5 * (2.0 * std::f64::consts::PI).ln())).abs() < 1e-12);
/// ```
pub trait GaussianPath: ProbPath {
    /// Whether the path conditions on `x_1` only or on the pair.
    fn conditioning(&self) -> Conditioning;

    /// The declared limits of mean and std at `t = 0` and `t = 1`.
    fn boundary(&self) -> Boundary;

    /// The means `μ_t(x_0, x_1)`, shape `(n, d)`.
    fn mean(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
    ) -> Result<Array2<f64>, PathError>;

    /// The standard deviations `σ_t`, one per row of `t`.
    fn std(&self, t: ArrayView1<f64>) -> Result<Array1<f64>, PathError>;

    /// The time derivatives `dμ_t/dt`, shape `(n, d)`.
    fn d_mean(
        &self,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
    ) -> Result<Array2<f64>, PathError>;

    /// The time derivatives `dσ_t/dt`, one per row of `t`.
    fn d_std(&self, t: ArrayView1<f64>) -> Result<Array1<f64>, PathError>;

    /// `log p_t(x | z) = -d log σ_t - (d/2) log 2π - ‖x - μ_t‖² / (2 σ_t²)` per row;
    /// [`PathError::Singular`] where `σ_t = 0` (a point mass has no density).
    fn log_density(
        &self,
        x: ArrayView2<f64>,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
    ) -> Result<Array1<f64>, PathError> {
        check_inputs(x_0, x_1, t, Some(x))?;
        let mu = self.mean(x_0, x_1, t)?;
        let sigma = positive_std(self.std(t)?, t, "the conditional density")?;
        let d = x.ncols() as f64;
        let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        let mut out = Array1::zeros(x.nrows());
        Zip::from(&mut out)
            .and(x.rows())
            .and(mu.rows())
            .and(&sigma)
            .for_each(|o, x, mu, &s| {
                let sq: f64 = x.iter().zip(mu).map(|(a, b)| (a - b) * (a - b)).sum();
                *o = -d * (s.ln() + half_log_2pi) - 0.5 * sq / (s * s);
            });
        Ok(out)
    }

    /// The score `∇_x log p_t(x | z) = -(x - μ_t) / σ_t²`; [`PathError::Singular`] where `σ_t = 0`.
    /// For a sample `x_t = μ_t + σ_t eps` this is `-eps / σ_t` (denoising score matching).
    fn score(
        &self,
        x_t: ArrayView2<f64>,
        x_0: ArrayView2<f64>,
        x_1: ArrayView2<f64>,
        t: ArrayView1<f64>,
    ) -> Result<Array2<f64>, PathError> {
        check_inputs(x_0, x_1, t, Some(x_t))?;
        let mut out = self.mean(x_0, x_1, t)?;
        let sigma = positive_std(self.std(t)?, t, "the conditional score")?;
        Zip::from(out.rows_mut())
            .and(x_t.rows())
            .and(&sigma)
            .for_each(|mut o, x, &s| {
                let inv = 1.0 / (s * s);
                o.zip_mut_with(&x, |m, &x| *m = -(x - *m) * inv);
            });
        Ok(out)
    }
}

/// Checks a batch: `x_0` non-empty, `x_1` (and `other`, if given: `eps` or `x_t`) of the same
/// shape and finite, `t` with one finite time in `[0, 1]` per row. The check every path runs
/// first (a NaN in the data would otherwise come back as a NaN target, silently). `x_0` is
/// checked for finiteness by the paths that read it; paths conditioned on `x_1`
/// alone (Lipman, variance exploding) ignore it.
///
/// ```
/// let x = ndarray::Array2::<f64>::zeros((2, 3));
/// assert!(fm_paths::check_inputs(x.view(), x.view(), ndarray::array![0.0, 1.0].view(), None).is_ok());
/// let bad = fm_paths::check_inputs(x.view(), x.view(), ndarray::array![0.0, 1.5].view(), None);
/// assert!(matches!(bad, Err(fm_paths::PathError::TimeOutOfRange { index: 1, .. })));
/// ```
pub fn check_inputs(
    x_0: ArrayView2<f64>,
    x_1: ArrayView2<f64>,
    t: ArrayView1<f64>,
    other: Option<ArrayView2<f64>>,
) -> Result<(), PathError> {
    shape::check_nonempty("x_0", x_0)?;
    shape::check_same_shape("x_1", x_0, x_1)?;
    if let Some(o) = other {
        shape::check_same_shape("x_t/eps", x_0, o)?;
    }
    shape::check_len("t", t, x_0.nrows())?;
    check_times(t)?;
    shape::check_finite("x_1", x_1)?;
    if let Some(o) = other {
        shape::check_finite("x_t/eps", o)?;
    }
    Ok(())
}

/// Checks that every entry of `x_0` is finite: for the paths whose samples or fields read it.
pub(crate) fn check_x_0(x_0: ArrayView2<f64>) -> Result<(), PathError> {
    Ok(shape::check_finite("x_0", x_0)?)
}

/// Checks that every time is finite and in `[0, 1]`.
pub(crate) fn check_times(t: ArrayView1<f64>) -> Result<(), PathError> {
    for (index, &ti) in t.iter().enumerate() {
        if !(0.0..=1.0).contains(&ti) {
            return Err(PathError::TimeOutOfRange { index, t: ti });
        }
    }
    Ok(())
}

/// Returns `sigma` if every entry is positive and finite, else [`PathError::Singular`].
pub(crate) fn positive_std(
    sigma: Array1<f64>,
    t: ArrayView1<f64>,
    what: &'static str,
) -> Result<Array1<f64>, PathError> {
    for (i, &s) in sigma.iter().enumerate() {
        if !(s > 0.0 && s.is_finite()) {
            return Err(PathError::Singular { what, t: t[i] });
        }
    }
    Ok(sigma)
}

/// `n × d` independent standard normals drawn in fixed chunks of rows, each from its own
/// seed derived from `rng` on the calling thread: same `rng` state → same bits, any thread count.
pub(crate) fn standard_normal(n: usize, d: usize, rng: &mut dyn RngCore) -> Array2<f64> {
    let chunks = n.div_ceil(NOISE_CHUNK_ROWS).max(1);
    let seeds = fm_core::rng::chunk_seeds(rng, chunks);
    let mut eps = Array2::zeros((n, d));
    let fill = |(mut block, seed): (ArrayViewMut2<f64>, &u64)| {
        let mut r = fm_core::rng::seeded(*seed);
        block.iter_mut().for_each(|v| *v = r.sample(StandardNormal));
    };
    if n * d >= PAR_MIN_ELEMS {
        eps.axis_chunks_iter_mut(Axis(0), NOISE_CHUNK_ROWS)
            .into_par_iter()
            .zip(seeds.par_iter())
            .for_each(fill);
    } else {
        eps.axis_chunks_iter_mut(Axis(0), NOISE_CHUNK_ROWS)
            .zip(seeds.iter())
            .for_each(fill);
    }
    eps
}

/// Which ends of the pair a path reads: decides whether `x_0` is checked for finiteness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reads {
    /// The path reads `x_0` and `x_1`: `x_0` must be finite too.
    Pair,
    /// The path reads `x_1` only (Lipman, variance exploding): `x_0` is shape-checked only.
    Target,
}

/// [`check_inputs`], then [`check_x_0`] for the paths that read `x_0`.
pub(crate) fn check_batch(
    x_0: ArrayView2<f64>,
    x_1: ArrayView2<f64>,
    t: ArrayView1<f64>,
    other: Option<ArrayView2<f64>>,
    reads: Reads,
) -> Result<(), PathError> {
    check_inputs(x_0, x_1, t, other)?;
    if reads == Reads::Pair {
        check_x_0(x_0)?;
    }
    Ok(())
}

/// Checks the batch ([`check_batch`] with `eps`), then writes `x_t` and `u_t` row by row with
/// `f(x_t_row, u_t_row, x_0_row, x_1_row, eps_row, t)`; the sample carries `eps` as given.
pub(crate) fn sample_checked<F>(
    x_0: ArrayView2<f64>,
    x_1: ArrayView2<f64>,
    t: ArrayView1<f64>,
    eps: ArrayView2<f64>,
    reads: Reads,
    f: F,
) -> Result<PathSample, PathError>
where
    F: Fn(
            ArrayViewMut1<f64>,
            ArrayViewMut1<f64>,
            ArrayView1<f64>,
            ArrayView1<f64>,
            ArrayView1<f64>,
            f64,
        ) + Sync
        + Send,
{
    check_batch(x_0, x_1, t, Some(eps), reads)?;
    let (x_t, u_t) = sample_rows(x_0, x_1, eps, t, f);
    Ok(PathSample {
        x_t,
        u_t,
        eps: eps.to_owned(),
    })
}

/// Checks the batch ([`check_batch`] with `x_t`), then computes the conditional field row by
/// row with `f(out_row, x_0_row, x_1_row, x_t_row, t)`.
pub(crate) fn velocity_checked<F>(
    x_t: ArrayView2<f64>,
    x_0: ArrayView2<f64>,
    x_1: ArrayView2<f64>,
    t: ArrayView1<f64>,
    reads: Reads,
    f: F,
) -> Result<Array2<f64>, PathError>
where
    F: Fn(ArrayViewMut1<f64>, ArrayView1<f64>, ArrayView1<f64>, ArrayView1<f64>, f64) + Sync + Send,
{
    check_batch(x_0, x_1, t, Some(x_t), reads)?;
    Ok(map_rows(x_0, x_1, x_t, t, f))
}

/// A new array of `a`'s shape with `f(out_row, a_row, b_row, c_row, t)` applied to every row,
/// in parallel for large batches.
pub(crate) fn map_rows<F>(
    a: ArrayView2<f64>,
    b: ArrayView2<f64>,
    c: ArrayView2<f64>,
    t: ArrayView1<f64>,
    f: F,
) -> Array2<f64>
where
    F: Fn(ArrayViewMut1<f64>, ArrayView1<f64>, ArrayView1<f64>, ArrayView1<f64>, f64) + Sync + Send,
{
    let mut out = Array2::zeros(a.dim());
    let big = out.len() >= PAR_MIN_ELEMS;
    let zip = Zip::from(out.rows_mut())
        .and(a.rows())
        .and(b.rows())
        .and(c.rows())
        .and(t);
    if big {
        zip.par_for_each(|o, a, b, c, &t| f(o, a, b, c, t));
    } else {
        zip.for_each(|o, a, b, c, &t| f(o, a, b, c, t));
    }
    out
}

/// New `(x_t, u_t)` of `x_0`'s shape with `f(x_t_row, u_t_row, x_0_row, x_1_row, eps_row, t)`
/// applied to every row, in parallel for large batches.
pub(crate) fn sample_rows<F>(
    x_0: ArrayView2<f64>,
    x_1: ArrayView2<f64>,
    eps: ArrayView2<f64>,
    t: ArrayView1<f64>,
    f: F,
) -> (Array2<f64>, Array2<f64>)
where
    F: Fn(
            ArrayViewMut1<f64>,
            ArrayViewMut1<f64>,
            ArrayView1<f64>,
            ArrayView1<f64>,
            ArrayView1<f64>,
            f64,
        ) + Sync
        + Send,
{
    let (mut x_t, mut u_t) = (Array2::zeros(x_0.dim()), Array2::zeros(x_0.dim()));
    let big = x_t.len() >= PAR_MIN_ELEMS;
    let zip = Zip::from(x_t.rows_mut())
        .and(u_t.rows_mut())
        .and(x_0.rows())
        .and(x_1.rows())
        .and(eps.rows())
        .and(t);
    if big {
        zip.par_for_each(|xt, ut, a, b, e, &t| f(xt, ut, a, b, e, t));
    } else {
        zip.for_each(|xt, ut, a, b, e, &t| f(xt, ut, a, b, e, t));
    }
    (x_t, u_t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_bits_depend_on_the_seed_only() {
        // Above and below the parallel threshold, the same seed gives the same bits, and the
        // first chunk of a large draw is not the same as a small draw (different seeds per chunk
        // are derived, so the streams differ but are fixed).
        let a = standard_normal(5000, 8, &mut fm_core::rng::seeded(1));
        let b = standard_normal(5000, 8, &mut fm_core::rng::seeded(1));
        assert_eq!(a, b);
        let c = standard_normal(3, 2, &mut fm_core::rng::seeded(1));
        let d = standard_normal(3, 2, &mut fm_core::rng::seeded(1));
        assert_eq!(c, d);
        // The first chunk's seed is the same in both, so the first rows agree.
        assert_eq!(a.row(0).to_vec()[..2], c.row(0).to_vec()[..2]);
    }

    #[test]
    fn check_inputs_names_the_problem() {
        let x = Array2::<f64>::zeros((2, 3));
        let e = check_inputs(x.view(), x.view(), ndarray::array![0.5].view(), None).unwrap_err();
        assert!(e.to_string().contains("length 2"), "{e}");
        let e = check_inputs(
            x.view(),
            x.view(),
            ndarray::array![0.5, -0.0001].view(),
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "time t = -0.0001 at index 1 is outside [0, 1]"
        );
        // Non-finite data is an error, not a NaN target (found by tests/robustness.rs).
        let t = ndarray::array![0.5, 0.5];
        let mut bad = x.clone();
        bad[[1, 2]] = f64::NAN;
        let e = check_inputs(x.view(), bad.view(), t.view(), None).unwrap_err();
        assert!(e.to_string().contains("x_1"), "{e}");
        bad[[1, 2]] = f64::NEG_INFINITY;
        let e = check_inputs(x.view(), x.view(), t.view(), Some(bad.view())).unwrap_err();
        assert!(e.to_string().contains("x_t/eps"), "{e}");
        assert!(check_inputs(bad.view(), x.view(), t.view(), None).is_ok());
        assert!(check_x_0(bad.view()).is_err() && check_x_0(x.view()).is_ok());
    }

    #[test]
    fn boundary_builders() {
        let b = Boundary::noise_to_data(0.1).with_tolerance(0.2, 0.3);
        assert_eq!(
            (b.start.std, b.start.tol, b.end.x_1, b.end.std, b.end.tol),
            (1.0, 0.2, 1.0, 0.1, 0.3)
        );
        let b = Boundary::interpolant(0.5, 0.0);
        assert_eq!(
            (b.start.x_0, b.start.std, b.end.x_0, b.end.x_1),
            (1.0, 0.5, 0.0, 1.0)
        );
    }
}
