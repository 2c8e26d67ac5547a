//! Exact linear assignment: the fast Jonker–Volgenant solver and the `pathfinding` reference.
use crate::CouplingError;
use crate::cost::check_cost;
use ndarray::ArrayView2;

const NONE: usize = usize::MAX;

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
    check_cost(cost, true)?;
    let (n, m) = cost.dim();
    let owned = cost.as_standard_layout();
    let c = owned.as_slice().expect("standard layout is contiguous");
    Ok(lapjv(c, n, m))
}

/// The choice of exact assignment solver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AssignmentSolver {
    /// The default: a Jonker–Volgenant shortest augmenting path solver on dense `f64` costs
    /// (column reduction, reduction transfer, augmenting row reduction, then Dijkstra-like
    /// augmentation). Exact up to float rounding, certified by dual potentials.
    #[default]
    Jv,
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
        "jv, lapjv, fast, default, hungarian, pathfinding, kuhn-munkres";

    /// Looks a solver up by name: `"jv"`, `"lapjv"`, `"fast"` or `"default"` for [`Self::Jv`];
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
            "hungarian" | "pathfinding" | "kuhn-munkres" | "kuhn_munkres" => Ok(Self::Hungarian),
            _ => Err(CouplingError::UnknownSolver {
                name: name.into(),
                known: Self::NAMES,
            }),
        }
    }

    /// The canonical name: `"jv"` or `"hungarian"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Jv => "jv",
            Self::Hungarian => "hungarian",
        }
    }

    /// Solves the assignment problem on `cost` (`n ≤ m`) with this solver; see [`assignment`].
    pub fn solve(&self, cost: ArrayView2<f64>) -> Result<Vec<usize>, CouplingError> {
        match self {
            Self::Jv => assignment(cost),
            Self::Hungarian => hungarian(cost),
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

/// The Jonker–Volgenant solver on a row-major `n × m` matrix, `1 ≤ n ≤ m`, finite entries.
///
/// Square problems start with column reduction and reduction transfer; every problem then runs
/// two passes of augmenting row reduction (from zero column potentials when rectangular, so
/// that unassigned columns keep `v = 0`), and finally one Dijkstra-like shortest augmenting path
/// per remaining free row. All work arrays are allocated once.
fn lapjv(c: &[f64], n: usize, m: usize) -> AssignmentSolution {
    let mut x = vec![NONE; n]; // row -> column
    let mut y = vec![NONE; m]; // column -> row
    let mut v = vec![0.0f64; m];
    let mut free: Vec<usize> = Vec::with_capacity(n);

    if m == 1 {
        // n = m = 1.
        return AssignmentSolution {
            row_to_col: vec![0],
            total: c[0],
            u: vec![c[0]],
            v: vec![0.0],
        };
    }

    if n == m {
        column_reduction(c, n, &mut x, &mut y, &mut v, &mut free);
    } else {
        free.extend(0..n);
    }
    for _ in 0..2 {
        if free.is_empty() {
            break;
        }
        augmenting_row_reduction(c, n, m, &mut x, &mut y, &mut v, &mut free);
    }
    augment(c, m, &mut x, &mut y, &mut v, &free);

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

/// Column reduction and reduction transfer (square case): `v[j] = min_i c[i, j]`, assign each
/// column's minimising row if still free, then move slack from each singly-matched row to its
/// column. Pushes the rows left free onto `free`.
fn column_reduction(
    c: &[f64],
    n: usize,
    x: &mut [usize],
    y: &mut [usize],
    v: &mut [f64],
    free: &mut Vec<usize>,
) {
    let m = n;
    let mut argmin = vec![0usize; m];
    v.copy_from_slice(&c[..m]);
    for i in 1..n {
        let row = &c[i * m..(i + 1) * m];
        for j in 0..m {
            if row[j] < v[j] {
                v[j] = row[j];
                argmin[j] = i;
            }
        }
    }
    let mut matches = vec![0u32; n];
    for j in (0..m).rev() {
        let i = argmin[j];
        matches[i] += 1;
        if x[i] == NONE {
            x[i] = j;
            y[j] = i;
        }
    }
    for i in 0..n {
        match matches[i] {
            0 => free.push(i),
            1 => {
                // Reduction transfer: row i's potential becomes its second-best reduced cost.
                let j1 = x[i];
                let row = &c[i * m..(i + 1) * m];
                let mut min = f64::INFINITY;
                for j in 0..m {
                    if j != j1 {
                        let h = row[j] - v[j];
                        if h < min {
                            min = h;
                        }
                    }
                }
                // u_i = row[j1] - v[j1] = 0 before; afterwards u_i = min ≥ 0.
                v[j1] -= min;
            }
            _ => {}
        }
    }
}

/// One pass of augmenting row reduction over the free rows (an auction-like step with zero
/// increment). Each free row takes its best column, lowering that column's potential by the gap
/// to its second best, and evicts the previous owner. Bounded work: after a cap the remaining
/// free rows are left for the augmentation phase, which is exact on its own.
fn augmenting_row_reduction(
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
        let mut u1 = row[0] - v[0];
        let mut j1 = 0usize;
        let mut u2 = f64::INFINITY;
        let mut j2 = NONE;
        for j in 1..m {
            let h = row[j] - v[j];
            if h < u2 {
                if h >= u1 {
                    u2 = h;
                    j2 = j;
                } else {
                    u2 = u1;
                    j2 = j1;
                    u1 = h;
                    j1 = j;
                }
            }
        }
        let mut i0 = y[j1];
        let new_v = v[j1] - (u2 - u1);
        let lowered = new_v < v[j1];
        if lowered {
            v[j1] = new_v;
        } else if i0 != NONE {
            // A tie: try the second-best column instead of stealing.
            j1 = j2;
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

/// Shortest augmenting paths (Dijkstra on reduced costs) from each free row, with the JV dual
/// update of the scanned columns.
fn augment(c: &[f64], m: usize, x: &mut [usize], y: &mut [usize], v: &mut [f64], free: &[usize]) {
    let mut d = vec![0.0f64; m];
    let mut pred = vec![0usize; m];
    let mut cols: Vec<usize> = (0..m).collect();
    for &f in free {
        let row = &c[f * m..(f + 1) * m];
        for j in 0..m {
            d[j] = row[j] - v[j];
            pred[j] = f;
            cols[j] = j;
        }
        // cols[..low] scanned, cols[low..up] at distance `min` to scan, cols[up..] unreached.
        let mut low = 0usize;
        let mut up = 0usize;
        let mut min = 0.0f64;
        let mut last = 0usize;
        let end: usize;
        'search: loop {
            if up == low {
                // Collect the columns of minimum distance among the unreached.
                last = low;
                min = d[cols[up]];
                up += 1;
                for k in up..m {
                    let j = cols[k];
                    let h = d[j];
                    if h <= min {
                        if h < min {
                            up = low;
                            min = h;
                        }
                        cols[k] = cols[up];
                        cols[up] = j;
                        up += 1;
                    }
                }
                for &j in &cols[low..up] {
                    if y[j] == NONE {
                        end = j;
                        break 'search;
                    }
                }
            }
            // Scan one column at distance `min`.
            let j1 = cols[low];
            low += 1;
            let i = y[j1];
            let row_i = &c[i * m..(i + 1) * m];
            let u1 = row_i[j1] - v[j1] - min;
            for k in up..m {
                let j = cols[k];
                let h = row_i[j] - v[j] - u1;
                if h < d[j] {
                    d[j] = h;
                    pred[j] = i;
                    if h == min {
                        if y[j] == NONE {
                            end = j;
                            break 'search;
                        }
                        cols[k] = cols[up];
                        cols[up] = j;
                        up += 1;
                    }
                }
            }
        }
        // Dual update of the scanned columns.
        for &j in &cols[..last] {
            v[j] += d[j] - min;
        }
        // Flip the path.
        let mut j = end;
        loop {
            let i = pred[j];
            y[j] = i;
            let next = x[i];
            x[i] = j;
            if i == f {
                break;
            }
            j = next;
        }
    }
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
        for s in [AssignmentSolver::Jv, AssignmentSolver::Hungarian] {
            assert_eq!(AssignmentSolver::from_name(s.name()).unwrap(), s);
        }
        assert_eq!(AssignmentSolver::default(), AssignmentSolver::Jv);
        let e = AssignmentSolver::from_name("auction").unwrap_err();
        assert!(e.to_string().contains("hungarian"), "{e}");
    }
}
