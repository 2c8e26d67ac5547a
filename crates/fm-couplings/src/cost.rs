//! Cost matrices between two batches of points.
use crate::CouplingError;
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// Above this many `n · m · d` multiply-adds the cost matrix is filled in parallel with rayon.
const PARALLEL_WORK: usize = 1 << 16;

/// Checks two batches for a coupling: both non-empty, finite, with the same number of columns.
pub(crate) fn check_pair(x_0: ArrayView2<f64>, x_1: ArrayView2<f64>) -> Result<(), CouplingError> {
    fm_core::shape::check_nonempty("x_0", x_0)?;
    fm_core::shape::check_batch("x_1", x_1, x_0.ncols())?;
    fm_core::shape::check_finite("x_0", x_0)?;
    fm_core::shape::check_finite("x_1", x_1)?;
    Ok(())
}

/// The squared Euclidean cost matrix `C[i, j] = ‖x_0[i] − x_1[j]‖²`, shape `(n, m)`.
///
/// `x_0` is `(n, d)` and `x_1` is `(m, d)`; both must be non-empty and finite with the same `d`
/// (any `d ≥ 1`). Each entry is summed coordinate by coordinate (not by the `‖a‖² + ‖b‖² − 2a·b`
/// expansion), so it is never negative and exactly zero for equal points. Rows are filled in
/// parallel with rayon when the matrix is large; the result does not depend on the thread count.
///
/// ```
/// use ndarray::array;
/// let c = fm_couplings::sq_euclidean_cost(array![[0.0, 0.0]].view(), array![[3.0, 4.0], [0.0, 1.0]].view()).unwrap();
/// assert_eq!(c, array![[25.0, 1.0]]);
/// ```
pub fn sq_euclidean_cost(
    x_0: ArrayView2<f64>,
    x_1: ArrayView2<f64>,
) -> Result<Array2<f64>, CouplingError> {
    check_pair(x_0, x_1)?;
    let (n, d) = x_0.dim();
    let m = x_1.nrows();
    let mut cost = Array2::<f64>::zeros((n, m));
    // Contiguous copies so the inner loop runs over slices.
    let a = x_0.as_standard_layout();
    let b = x_1.as_standard_layout();
    let a = a.as_slice().expect("standard layout");
    let b = b.as_slice().expect("standard layout");
    let fill_row = |i: usize, row: &mut [f64]| {
        let xi = &a[i * d..(i + 1) * d];
        if d == 2 {
            // The common 2-D case, without the inner loop.
            let (p, q) = (xi[0], xi[1]);
            for (out, yj) in row.iter_mut().zip(b.chunks_exact(2)) {
                let (dx, dy) = (p - yj[0], q - yj[1]);
                *out = dx * dx + dy * dy;
            }
            return;
        }
        for (j, out) in row.iter_mut().enumerate() {
            let yj = &b[j * d..(j + 1) * d];
            let mut s = 0.0;
            for k in 0..d {
                let diff = xi[k] - yj[k];
                s += diff * diff;
            }
            *out = s;
        }
    };
    let rows = cost.as_slice_mut().expect("fresh array is contiguous");
    if n * m * d >= PARALLEL_WORK {
        rows.par_chunks_mut(m)
            .enumerate()
            .for_each(|(i, row)| fill_row(i, row));
    } else {
        rows.chunks_mut(m)
            .enumerate()
            .for_each(|(i, row)| fill_row(i, row));
    }
    Ok(cost)
}

/// [`sq_euclidean_cost`] divided by its largest entry (TorchCFM's `normalize_cost=True`), so the
/// entries lie in `[0, 1]`. A matrix of zeros (all points equal) is returned unchanged.
///
/// Normalising does not change the optimal assignment, only the scale on which an entropic
/// regularisation `ε` acts.
///
/// ```
/// use ndarray::array;
/// let c = fm_couplings::sq_euclidean_cost_normalized(array![[0.0], [1.0]].view(), array![[2.0]].view()).unwrap();
/// assert_eq!(c, array![[1.0], [0.25]]);
/// ```
pub fn sq_euclidean_cost_normalized(
    x_0: ArrayView2<f64>,
    x_1: ArrayView2<f64>,
) -> Result<Array2<f64>, CouplingError> {
    let mut cost = sq_euclidean_cost(x_0, x_1)?;
    normalize_by_max(&mut cost);
    Ok(cost)
}

/// Divides `cost` in place by its largest entry when that entry is positive (and finite).
pub fn normalize_by_max(cost: &mut Array2<f64>) {
    let max = cost.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max.is_finite() && max > 0.0 {
        cost.mapv_inplace(|c| c / max);
    }
}

/// The minimum and maximum of `xs` and whether every entry is finite, in one branch-free pass
/// over independent lanes (it vectorises): `x · 0` is 0 for finite `x` and NaN otherwise.
fn min_max_finite(xs: &[f64]) -> (f64, f64, bool) {
    const LANES: usize = 8;
    let mut lo = [f64::INFINITY; LANES];
    let mut hi = [f64::NEG_INFINITY; LANES];
    let mut zero = [0.0f64; LANES];
    let split = xs.len() - xs.len() % LANES;
    for c in xs[..split].chunks_exact(LANES) {
        for k in 0..LANES {
            lo[k] = lo[k].min(c[k]);
            hi[k] = hi[k].max(c[k]);
            zero[k] += c[k] * 0.0;
        }
    }
    let mut l = lo.iter().copied().fold(f64::INFINITY, f64::min);
    let mut h = hi.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut z = zero.iter().sum::<f64>();
    for &x in &xs[split..] {
        l = l.min(x);
        h = h.max(x);
        z += x * 0.0;
    }
    (l, h, z == 0.0)
}

/// Checks a cost matrix for the solvers: non-empty, finite, rows ≤ columns (when `need_rows_le_cols`),
/// and a spread `max − min` small enough that dual potentials stay finite. Returns `(min, max)`.
pub(crate) fn check_cost(
    cost: ArrayView2<f64>,
    need_rows_le_cols: bool,
) -> Result<(f64, f64), CouplingError> {
    let (n, m) = cost.dim();
    if n == 0 || m == 0 {
        return Err(fm_core::CoreError::Empty {
            what: "cost matrix".into(),
        }
        .into());
    }
    if need_rows_le_cols && n > m {
        return Err(CouplingError::TooManyRows {
            what: "cost matrix".into(),
            rows: n,
            cols: m,
        });
    }
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for (i, row) in cost.axis_iter(Axis(0)).enumerate() {
        let (row_lo, row_hi, finite) = match row.as_slice() {
            Some(r) => min_max_finite(r),
            None => min_max_finite(&row.to_vec()),
        };
        if !finite {
            if let Some((j, &value)) = row.iter().enumerate().find(|(_, c)| !c.is_finite()) {
                return Err(CouplingError::NonFiniteCost {
                    row: i,
                    col: j,
                    value,
                });
            }
        }
        lo = lo.min(row_lo);
        hi = hi.max(row_hi);
    }
    let range = hi - lo;
    let limit = MAX_COST_RANGE / (n.max(m) as f64);
    if range.is_nan() || range > limit {
        return Err(CouplingError::CostRange { range, limit });
    }
    Ok((lo, hi))
}

/// The largest `n · (max − min)` of a cost matrix the solvers accept: dual potentials are bounded
/// by about `n` times the spread, and must stay far from overflow.
pub(crate) const MAX_COST_RANGE: f64 = 1e250;

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use proptest::prelude::*;

    proptest! {
        /// The lane-wise scan against a plain loop, for every length (lanes and remainder) and a
        /// NaN or infinity at any position; and `check_cost` on a transposed (strided) view
        /// reports the first non-finite entry of the row-major order.
        #[test]
        fn min_max_finite_matches_a_plain_loop(
            xs in proptest::collection::vec(-1e6f64..1e6, 1..40),
            bad in proptest::option::of((0usize..40, 0usize..3)),
        ) {
            let mut xs = xs;
            if let Some((at, kind)) = bad {
                let at = at % xs.len();
                xs[at] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][kind];
            }
            let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let finite = xs.iter().all(|x| x.is_finite());
            let (l, h, f) = min_max_finite(&xs);
            prop_assert_eq!(f, finite);
            if finite {
                prop_assert_eq!((l, h), (lo, hi));
            }
            let m = Array2::from_shape_vec((1, xs.len()), xs.clone()).unwrap();
            let t = m.t();
            match check_cost(t, false) {
                Ok(range) => prop_assert!(finite && range == (lo, hi)),
                Err(CouplingError::NonFiniteCost { row, col, .. }) => {
                    let first = xs.iter().position(|x| !x.is_finite()).unwrap();
                    prop_assert_eq!((row, col), (first, 0));
                }
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
    }

    #[test]
    fn matches_a_direct_loop_in_10d_and_in_parallel() {
        let mut rng = fm_core::rng::seeded(4);
        let normal = fm_core::StandardNormal::new(10).unwrap();
        let a = normal.sample(70, &mut rng);
        let b = normal.sample(120, &mut rng);
        let c = sq_euclidean_cost(a.view(), b.view()).unwrap();
        assert_eq!(c.dim(), (70, 120));
        for i in [0, 13, 69] {
            for j in [0, 77, 119] {
                let want: f64 = (&a.row(i) - &b.row(j)).mapv(|v| v * v).sum();
                assert!((c[[i, j]] - want).abs() <= 1e-12 * want.max(1.0));
            }
        }
    }

    #[test]
    fn two_dimensional_fast_path_matches_a_direct_loop() {
        let mut rng = fm_core::rng::seeded(5);
        let normal = fm_core::StandardNormal::new(2).unwrap();
        for (n, m) in [(3, 5), (300, 400)] {
            let a = normal.sample(n, &mut rng);
            let b = normal.sample(m, &mut rng) * 3.0;
            let c = sq_euclidean_cost(a.view(), b.view()).unwrap();
            for i in 0..n {
                for j in (0..m).step_by(7) {
                    let want = (a[[i, 0]] - b[[j, 0]]).powi(2) + (a[[i, 1]] - b[[j, 1]]).powi(2);
                    assert!((c[[i, j]] - want).abs() <= 1e-12 * want.max(1.0));
                }
            }
        }
    }

    #[test]
    fn rejects_bad_batches() {
        let ok = array![[0.0, 1.0]];
        assert!(sq_euclidean_cost(Array2::zeros((0, 2)).view(), ok.view()).is_err());
        assert!(sq_euclidean_cost(ok.view(), array![[1.0, 2.0, 3.0]].view()).is_err());
        assert!(sq_euclidean_cost(ok.view(), array![[f64::NAN, 2.0]].view()).is_err());
        assert!(sq_euclidean_cost(array![[f64::INFINITY, 2.0]].view(), ok.view()).is_err());
    }

    #[test]
    fn normalised_cost_has_max_one_and_zero_matrix_stays_zero() {
        let c =
            sq_euclidean_cost_normalized(array![[0.0], [3.0]].view(), array![[1.0], [5.0]].view())
                .unwrap();
        assert_eq!(c.iter().copied().fold(0.0, f64::max), 1.0);
        assert_eq!(c[[1, 1]], 4.0 / 25.0);
        let z = sq_euclidean_cost_normalized(array![[1.0]].view(), array![[1.0]].view()).unwrap();
        assert_eq!(z, array![[0.0]]);
    }
}
