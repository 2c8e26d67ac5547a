//! Exact linear assignment: the fast Jonker–Volgenant solver and the `pathfinding` reference.
use crate::CouplingError;
use crate::cost::check_cost;
use ndarray::ArrayView2;

pub(crate) const NONE: usize = usize::MAX;

/// An optimal assignment with the dual potentials that certify it.
///
/// Row `i` goes to column `row_to_col[i]`; the columns are distinct. The potentials satisfy
/// (up to float rounding) `u[i] + v[j] ≤ cost[i, j]` for every `(i, j)`, with equality on the
/// assignment, and for a rectangular matrix (`n < m`) also `v[j] ≤ 0`, with `v[j] = 0` on the
/// columns left unassigned. By linear-programming duality these conditions prove that `total` is
/// the minimum; [`certificate`] checks them.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignmentSolution {
    /// The column assigned to each row.
    pub row_to_col: Vec<usize>,
    /// `Σ_i cost[i, row_to_col[i]]`.
    pub total: f64,
    /// Row potentials `u`, length `n`.
    pub u: Vec<f64>,
    /// Column potentials `v`, length `m`.
    pub v: Vec<f64>,
}

/// The minimum-cost assignment of the rows of `cost` (shape `(n, m)`, `n ≤ m`) to distinct
/// columns, by the fast exact solver ([`AssignmentSolver::Jv`]).
///
/// Returns `row_to_col` with `row_to_col[i]` the column of row `i`. Errors: an empty matrix,
/// `n > m`, a NaN or infinite entry, or a spread `max − min` so large that potentials could
/// overflow (beyond `1e250 / max(n, m)`).
///
/// ```
/// use ndarray::array;
/// let cost = array![[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]];
/// assert_eq!(fm_couplings::assignment(cost.view()).unwrap(), vec![1, 0, 2]);
/// ```
pub fn assignment(cost: ArrayView2<f64>) -> Result<Vec<usize>, CouplingError> {
    Ok(assignment_with_duals(cost)?.row_to_col)
}

/// [`assignment`] with the total and the dual potentials (see [`AssignmentSolution`]).
pub fn assignment_with_duals(cost: ArrayView2<f64>) -> Result<AssignmentSolution, CouplingError> {
    solve_with(cost, AssignmentSolver::Jv)
}

/// Runs one of the dual-certified solvers ([`AssignmentSolver::Jv`] or
/// [`AssignmentSolver::JvAuction`]) after checking the input.
fn solve_with(
    cost: ArrayView2<f64>,
    solver: AssignmentSolver,
) -> Result<AssignmentSolution, CouplingError> {
    let (lo, hi) = check_cost(cost, true)?;
    let (n, m) = cost.dim();
    let owned = cost.as_standard_layout();
    let c = owned.as_slice().expect("standard layout is contiguous");
    if m == 1 {
        // n = m = 1.
        return Ok(AssignmentSolution {
            row_to_col: vec![0],
            total: c[0],
            u: vec![c[0]],
            v: vec![0.0],
        });
    }
    if solver == AssignmentSolver::JvAuction {
        return Ok(crate::legacy::lapjv(c, n, m));
    }
    let (x, v) = lapjv_auction(c, n, m, (lo, hi));
    Ok(finish(c, m, x, v))
}

/// Completes a solution from the assignment and the column potentials: `u_i = c_{i,x_i} − v_{x_i}`.
fn finish(c: &[f64], m: usize, x: Vec<usize>, v: Vec<f64>) -> AssignmentSolution {
    let n = x.len();
    let mut u = vec![0.0; n];
    let mut total = 0.0;
    for i in 0..n {
        let j = x[i];
        u[i] = c[i * m + j] - v[j];
        total += c[i * m + j];
    }
    AssignmentSolution {
        row_to_col: x,
        total,
        u,
        v,
    }
}

/// The choice of exact assignment solver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AssignmentSolver {
    /// The default: a Jonker–Volgenant shortest augmenting path solver on dense `f64` costs,
    /// warm-started (square problems) by a single-precision ε-scaling auction whose result is
    /// re-checked in `f64`; then augmenting row reduction and Dijkstra-like augmentation with
    /// vectorised label updates. Exact up to float rounding, certified by dual potentials.
    #[default]
    Jv,
    /// The previous default, kept as a baseline: the same Jonker–Volgenant phases warm-started
    /// by an ε-scaling auction (square problems). Exact, certified by dual potentials; usually
    /// slower than [`Self::Jv`] on overlapping 2-D distributions.
    JvAuction,
    /// The reference: `pathfinding::kuhn_munkres::kuhn_munkres_min` (Hungarian algorithm).
    ///
    /// `pathfinding` needs `Ord` weights, so each cost is rounded to an integer multiple of
    /// `max|cost| · 1e-12` (an `i64` of magnitude at most `1e12`). The assignment it returns is
    /// optimal for the rounded matrix, hence its true total is within
    /// `n · max|cost| · 1e-12` of the true minimum. About `O(n³)` and much slower than `Jv`.
    Hungarian,
}

impl AssignmentSolver {
    /// The accepted names, for messages.
    pub const NAMES: &'static str =
        "jv, lapjv, fast, default, jv-auction, auction, hungarian, pathfinding, kuhn-munkres";

    /// Every solver, the default first.
    pub const ALL: &'static [Self] = &[Self::Jv, Self::JvAuction, Self::Hungarian];

    /// Looks a solver up by name: `"jv"`, `"lapjv"`, `"fast"` or `"default"` for [`Self::Jv`];
    /// `"jv-auction"` or `"auction"` for [`Self::JvAuction`];
    /// `"hungarian"`, `"pathfinding"` or `"kuhn-munkres"` for [`Self::Hungarian`]
    /// (case-insensitive).
    ///
    /// ```
    /// use fm_couplings::AssignmentSolver;
    /// assert_eq!(AssignmentSolver::from_name("Hungarian").unwrap(), AssignmentSolver::Hungarian);
    /// assert!(AssignmentSolver::from_name("simplex").is_err());
    /// ```
    pub fn from_name(name: &str) -> Result<Self, CouplingError> {
        match name.to_ascii_lowercase().as_str() {
            "jv" | "lapjv" | "fast" | "default" => Ok(Self::Jv),
            "jv-auction" | "jv_auction" | "auction" => Ok(Self::JvAuction),
            "hungarian" | "pathfinding" | "kuhn-munkres" | "kuhn_munkres" => Ok(Self::Hungarian),
            _ => Err(CouplingError::UnknownSolver {
                name: name.into(),
                known: Self::NAMES,
            }),
        }
    }

    /// The canonical name: `"jv"`, `"jv-auction"` or `"hungarian"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Jv => "jv",
            Self::JvAuction => "jv-auction",
            Self::Hungarian => "hungarian",
        }
    }

    /// Solves the assignment problem on `cost` (`n ≤ m`) with this solver; see [`assignment`].
    pub fn solve(&self, cost: ArrayView2<f64>) -> Result<Vec<usize>, CouplingError> {
        match self {
            Self::Jv | Self::JvAuction => Ok(self.solve_with_duals(cost)?.row_to_col),
            Self::Hungarian => hungarian(cost),
        }
    }
}

impl AssignmentSolver {
    /// Solves with dual potentials; [`Self::Hungarian`] has none and is refused with
    /// [`CouplingError::InvalidParameter`].
    pub fn solve_with_duals(
        &self,
        cost: ArrayView2<f64>,
    ) -> Result<AssignmentSolution, CouplingError> {
        match self {
            Self::Hungarian => Err(CouplingError::InvalidParameter {
                name: "solver",
                value: self.name().into(),
                reason: "the pathfinding reference computes no dual potentials",
            }),
            _ => solve_with(cost, *self),
        }
    }
}

/// The reference solver: `pathfinding`'s Kuhn–Munkres on costs rounded to `i64` (see
/// [`AssignmentSolver::Hungarian`] for the resolution).
pub fn hungarian(cost: ArrayView2<f64>) -> Result<Vec<usize>, CouplingError> {
    let (lo, hi) = check_cost(cost, true)?;
    let (n, m) = cost.dim();
    let scale = lo.abs().max(hi.abs());
    if scale == 0.0 {
        return Ok((0..n).collect());
    }
    let unit = scale * HUNGARIAN_RESOLUTION;
    let weights: Vec<i64> = cost.iter().map(|&c| (c / unit).round() as i64).collect();
    let matrix = pathfinding::matrix::Matrix::from_vec(n, m, weights).map_err(|e| {
        CouplingError::InvalidParameter {
            name: "cost",
            value: format!("{n}x{m}"),
            reason: if matches!(e, pathfinding::matrix::MatrixFormatError::EmptyRow) {
                "empty rows"
            } else {
                "wrong length"
            },
        }
    })?;
    let (_, row_to_col) = pathfinding::kuhn_munkres::kuhn_munkres_min(&matrix);
    Ok(row_to_col)
}

/// The relative resolution of the costs given to `pathfinding` by [`hungarian`].
pub const HUNGARIAN_RESOLUTION: f64 = 1e-12;

/// What [`certificate`] found: the primal and dual objectives and the worst violation of the
/// optimality conditions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DualCertificate {
    /// `Σ_i cost[i, row_to_col[i]]`.
    pub primal: f64,
    /// `Σ_i u[i] + Σ_j v[j]`, a lower bound on every assignment's total when the potentials are
    /// feasible.
    pub dual: f64,
    /// The largest of: `u[i] + v[j] − cost[i, j]` over all pairs, `|cost[i, j] − u[i] − v[j]|`
    /// on the assignment, and (when `n < m`) `v[j]` over all columns and `|v[j]|` over the
    /// unassigned columns. Zero (up to rounding) proves optimality.
    pub max_violation: f64,
}

/// Checks the linear-programming optimality conditions of `solution` against `cost`
/// (dual feasibility and complementary slackness, see [`AssignmentSolution`]).
///
/// Errors when the shapes disagree or `row_to_col` is not an injective map into the columns.
///
/// ```
/// use ndarray::array;
/// let cost = array![[1.0, 5.0], [4.0, 2.0]];
/// let sol = fm_couplings::assignment_with_duals(cost.view()).unwrap();
/// let cert = fm_couplings::certificate(cost.view(), &sol).unwrap();
/// assert!(cert.max_violation <= 1e-12 && (cert.primal - 3.0).abs() < 1e-12);
/// ```
pub fn certificate(
    cost: ArrayView2<f64>,
    solution: &AssignmentSolution,
) -> Result<DualCertificate, CouplingError> {
    let (n, m) = cost.dim();
    let AssignmentSolution {
        row_to_col, u, v, ..
    } = solution;
    if row_to_col.len() != n || u.len() != n || v.len() != m {
        return Err(CouplingError::ShapeMismatch {
            what: "assignment solution".into(),
            expected: format!("{n} rows and {m} columns"),
            found: format!(
                "{} assigned rows, {} row and {} column potentials",
                row_to_col.len(),
                u.len(),
                v.len()
            ),
        });
    }
    let mut used = vec![false; m];
    for &j in row_to_col {
        if j >= m || used[j] {
            return Err(CouplingError::InvalidParameter {
                name: "row_to_col",
                value: j.to_string(),
                reason: "columns must be distinct and in range",
            });
        }
        used[j] = true;
    }
    let mut worst = 0.0f64;
    for i in 0..n {
        for j in 0..m {
            worst = worst.max(u[i] + v[j] - cost[[i, j]]);
        }
        let j = row_to_col[i];
        worst = worst.max((cost[[i, j]] - u[i] - v[j]).abs());
    }
    if n < m {
        for j in 0..m {
            worst = worst.max(if used[j] { v[j] } else { v[j].abs() });
        }
    }
    let primal = (0..n).map(|i| cost[[i, row_to_col[i]]]).sum();
    let dual = u.iter().sum::<f64>() + v.iter().sum::<f64>();
    Ok(DualCertificate {
        primal,
        dual,
        max_violation: worst,
    })
}

/// The default solver ([`AssignmentSolver::Jv`]) on a row-major `n × m` matrix, `1 ≤ n ≤ m`,
/// `m ≥ 2`, finite entries; returns `(row_to_col, v)`.
///
/// Square problems start from an `f32` ε-scaling auction ([`auction_warm_start`]) whose pairs
/// are made exactly tight in `f64`; rectangular ones from zero potentials and no pairs (so that
/// unassigned columns keep `v = 0`). Then two passes of augmenting row reduction, and finally
/// one Dijkstra-like shortest augmenting path per remaining free row ([`crate::dense`]), which
/// is what makes the result exact.
/// `bounds` are the smallest and largest entry of `c`.
fn lapjv_auction(c: &[f64], n: usize, m: usize, bounds: (f64, f64)) -> (Vec<usize>, Vec<f64>) {
    let mut x = vec![NONE; n]; // row -> column
    let mut y = vec![NONE; m]; // column -> row
    let mut v = vec![0.0f64; m];
    let mut free: Vec<usize> = Vec::with_capacity(n);
    if n == m {
        auction_warm_start(c, n, bounds, &mut x, &mut y, &mut v, &mut free);
    } else {
        free.extend(0..n);
    }
    for _ in 0..2 {
        if free.is_empty() {
            break;
        }
        augmenting_row_reduction(c, n, m, &mut x, &mut y, &mut v, &mut free);
    }
    crate::dense::Dijkstra::new(m).augment_all(c, &mut x, &mut y, &mut v, &free);
    (x, v)
}

/// The smallest and second-smallest reduced cost `row[j] - v[j]` and the column of the smallest.
#[inline]
pub(crate) fn two_best(row: &[f64], v: &[f64]) -> (f64, usize, f64) {
    crate::reduce::two_best::<f64, 8>(row, v)
}

/// Warm start for the square case: an ε-scaling forward auction (Bertsekas 1988, in `f32`, see
/// [`crate::auction`]) from the column minima finds near-optimal column potentials `v` and an
/// ε-complementary-slack assignment. Each assigned column's potential is then raised by its
/// row's slack (at most ε), which makes the pair exactly tight in `f64`. Then only the rows whose
/// column is exactly their best reduced cost over *all* columns keep it (every kept pair is
/// tight and `v` is dual feasible); the others are pushed onto `free` for the exact phases.
fn auction_warm_start(
    c: &[f64],
    n: usize,
    (lo, hi): (f64, f64),
    x: &mut [usize],
    y: &mut [usize],
    v: &mut [f64],
    free: &mut Vec<usize>,
) {
    let m = n;
    let range = hi - lo;
    if range > 0.0 {
        // Single precision relative to the minimum; prices come back as f64.
        let c32: Vec<f32> = c.iter().map(|&z| (z - lo) as f32).collect();
        let mut v32 = vec![0.0f32; m];
        crate::auction::run(&c32, n, x, y, &mut v32, range as f32);
        for (vj, &w) in v.iter_mut().zip(&v32) {
            *vj = f64::from(w) + lo;
        }
    }
    {
        // Make the ε-complementary-slack pairs exactly tight: raise each assigned column's
        // potential by its row's slack (at most ε). Other rows see that column cheaper by as
        // much, which breaks their tightness only on near-ties; those are freed below.
        let mut slack = vec![0.0f64; n];
        for i in 0..n {
            let j = x[i];
            if j != NONE {
                let row = &c[i * m..(i + 1) * m];
                let w1 = crate::reduce::min_reduced::<f64, 8>(row, v);
                slack[i] = (row[j] - v[j]) - w1;
            }
        }
        for i in 0..n {
            let j = x[i];
            if j != NONE {
                v[j] += slack[i];
            }
        }
    }
    // Keep only the pairs that are tight over all columns.
    for i in 0..n {
        let row = &c[i * m..(i + 1) * m];
        let w1 = crate::reduce::min_reduced::<f64, 8>(row, v);
        let j = x[i];
        if j != NONE && row[j] - v[j] <= w1 {
            continue;
        }
        if j != NONE {
            y[j] = NONE;
            x[i] = NONE;
        }
        free.push(i);
    }
}

/// One pass of augmenting row reduction over the free rows (an auction-like step with zero
/// increment). Each free row takes its best column, lowering that column's potential by the gap
/// to its second best, and evicts the previous owner. Bounded work: after a cap the remaining
/// free rows are left for the augmentation phase, which is exact on its own.
pub(crate) fn augmenting_row_reduction(
    c: &[f64],
    n: usize,
    m: usize,
    x: &mut [usize],
    y: &mut [usize],
    v: &mut [f64],
    free: &mut Vec<usize>,
) {
    let prev = free.len();
    let mut k = 0usize;
    let mut num_free = 0usize;
    let mut steps = 0usize;
    let cap = 8 * n + 64;
    while k < prev {
        steps += 1;
        if steps > cap {
            // Keep the unprocessed rows free.
            while k < prev {
                free[num_free] = free[k];
                num_free += 1;
                k += 1;
            }
            break;
        }
        let i = free[k];
        k += 1;
        let row = &c[i * m..(i + 1) * m];
        // Best and second-best reduced cost of row i.
        let (u1, mut j1, u2) = two_best(row, v);
        let mut i0 = y[j1];
        let new_v = v[j1] - (u2 - u1);
        let lowered = new_v < v[j1];
        if lowered {
            v[j1] = new_v;
        } else if i0 != NONE {
            // A tie: try the second-best column instead of stealing.
            j1 = (0..m)
                .find(|&j| j != j1 && row[j] - v[j] == u2)
                .unwrap_or(j1);
            i0 = y[j1];
        }
        x[i] = j1;
        y[j1] = i;
        if i0 != NONE {
            x[i0] = NONE;
            if lowered {
                // Process the evicted row next (it reuses the slot just consumed).
                k -= 1;
                free[k] = i0;
            } else {
                free[num_free] = i0;
                num_free += 1;
            }
        }
    }
    free.truncate(num_free);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    fn check(cost: &Array2<f64>) {
        let sol = assignment_with_duals(cost.view()).unwrap();
        let cert = certificate(cost.view(), &sol).unwrap();
        let scale = cost.iter().fold(1.0f64, |a, &c| a.max(c.abs()));
        assert!(cert.max_violation <= 1e-9 * scale, "{cert:?}");
        assert!((cert.primal - sol.total).abs() <= 1e-9 * scale * cost.nrows() as f64);
    }

    #[test]
    fn small_known_instances() {
        let cost = array![[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]];
        let sol = assignment_with_duals(cost.view()).unwrap();
        assert_eq!(sol.row_to_col, vec![1, 0, 2]);
        assert_eq!(sol.total, 5.0);
        check(&cost);
        assert_eq!(assignment(array![[7.0]].view()).unwrap(), vec![0]);
        assert_eq!(assignment(array![[7.0, 3.0]].view()).unwrap(), vec![1]);
        check(&array![[7.0, 3.0, -2.0], [1.0, 1.0, 1.0]]);
    }

    #[test]
    fn all_ties_terminates_with_a_permutation() {
        for n in [1, 2, 5, 40] {
            let cost = Array2::from_elem((n, n), 3.5);
            let mut p = assignment(cost.view()).unwrap();
            p.sort_unstable();
            assert_eq!(p, (0..n).collect::<Vec<_>>());
            check(&cost);
        }
    }

    #[test]
    fn names_round_trip() {
        for &s in AssignmentSolver::ALL {
            assert_eq!(AssignmentSolver::from_name(s.name()).unwrap(), s);
        }
        assert_eq!(AssignmentSolver::ALL.len(), 3);
        assert_eq!(AssignmentSolver::default(), AssignmentSolver::Jv);
        let e = AssignmentSolver::from_name("simplex").unwrap_err();
        assert!(e.to_string().contains("hungarian"), "{e}");
    }
}
