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
/// Square problems start from an ε-scaling auction ([`auction_warm_start`]) that leaves dual
/// feasible potentials and a partial assignment of tight pairs; rectangular ones from zero
/// potentials and no pairs (so that unassigned columns keep `v = 0`). Then two passes of
/// augmenting row reduction, and finally one Dijkstra-like shortest augmenting path per
/// remaining free row, which is what makes the result exact. All work arrays are allocated once.
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
        auction_warm_start(c, n, &mut x, &mut y, &mut v, &mut free);
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

/// The smallest and second-smallest reduced cost `row[j] - v[j]` and the column of the smallest.
#[inline]
fn two_best(row: &[f64], v: &[f64]) -> (f64, usize, f64) {
    // LANES independent (best, second best, arg best) accumulators, written branch-free so the
    // loop vectorises; merged at the end.
    const LANES: usize = 8;
    let mut b1 = [f64::INFINITY; LANES];
    let mut b2 = [f64::INFINITY; LANES];
    let mut a1 = [0usize; LANES];
    let split = row.len() - row.len() % LANES;
    for (chunk, (r, w)) in row[..split]
        .chunks_exact(LANES)
        .zip(v[..split].chunks_exact(LANES))
        .enumerate()
    {
        let base = chunk * LANES;
        for k in 0..LANES {
            let h = r[k] - w[k];
            let better = h < b1[k];
            let loser = if better { b1[k] } else { h };
            b2[k] = if loser < b2[k] { loser } else { b2[k] };
            a1[k] = if better { base + k } else { a1[k] };
            b1[k] = if better { h } else { b1[k] };
        }
    }
    let mut w1 = f64::INFINITY;
    let mut j1 = 0usize;
    let mut w2 = f64::INFINITY;
    let mut push = |h: f64, j: usize| {
        if h < w1 {
            w2 = w1;
            w1 = h;
            j1 = j;
        } else if h < w2 {
            w2 = h;
        }
    };
    for k in 0..LANES {
        push(b1[k], a1[k]);
        push(b2[k], usize::MAX);
    }
    for j in split..row.len() {
        push(row[j] - v[j], j);
    }
    if j1 == usize::MAX {
        // Only reachable when every reduced cost is +inf, which finite inputs exclude.
        j1 = 0;
    }
    (w1, j1, w2)
}

/// Auction schedule, as fractions of the cost spread `max − min`: the first increment, the
/// last increment of the dense phases, the final increment; the divisor between phases; the
/// candidate list length of the sparse phases.
const EPS_START: f64 = 0.05;
const EPS_DENSE: f64 = 2e-3;
const EPS_FINAL: f64 = 1e-7;
const EPS_DIVISOR: f64 = 6.0;
const CANDIDATES: usize = 32;

/// One forward-auction phase (Gauss–Seidel) with increment `eps` over the rows in `queue`.
/// `row_best(i, v)` returns the best and second-best reduced cost of row `i` and the best
/// column. Stops after `cap` bids.
fn auction_phase(
    queue: &mut Vec<usize>,
    x: &mut [usize],
    y: &mut [usize],
    v: &mut [f64],
    eps: f64,
    cap: usize,
    mut row_best: impl FnMut(usize, &[f64]) -> (f64, usize, f64),
) -> usize {
    let mut bids = 0usize;
    while let Some(i) = queue.pop() {
        bids += 1;
        if bids > cap {
            break;
        }
        let (w1, j1, w2) = row_best(i, v);
        let step = if w2.is_finite() { w2 - w1 } else { 0.0 };
        v[j1] -= step + eps;
        let prev = y[j1];
        y[j1] = i;
        x[i] = j1;
        if prev != NONE {
            x[prev] = NONE;
            queue.push(prev);
        }
    }
    bids
}

/// Per-row lists of the `k` columns of smallest reduced cost, with the cost copied for locality.
struct Candidates {
    k: usize,
    col: Vec<usize>,
    cost: Vec<f64>,
    /// Every column outside row i's list had reduced cost at least `bound[i]` when it was built.
    bound: Vec<f64>,
}

impl Candidates {
    fn new(n: usize, k: usize) -> Self {
        Self {
            k,
            col: vec![0; n * k],
            cost: vec![0.0; n * k],
            bound: vec![f64::NEG_INFINITY; n],
        }
    }

    /// Rebuilds row `i`'s list from its full cost row (`scratch` has the row's length).
    fn rebuild(&mut self, i: usize, row: &[f64], v: &[f64], scratch: &mut [f64]) {
        let k = self.k;
        for ((s, &cj), &vj) in scratch.iter_mut().zip(row).zip(v) {
            *s = cj - vj;
        }
        let (_, &mut tau, _) = scratch.select_nth_unstable_by(k - 1, f64::total_cmp);
        let cols = &mut self.col[i * k..(i + 1) * k];
        let costs = &mut self.cost[i * k..(i + 1) * k];
        let mut t = 0;
        for (j, (&cj, &vj)) in row.iter().zip(v).enumerate() {
            if cj - vj < tau {
                cols[t] = j;
                costs[t] = cj;
                t += 1;
            }
        }
        for (j, (&cj, &vj)) in row.iter().zip(v).enumerate() {
            if t == k {
                break;
            }
            if cj - vj == tau {
                cols[t] = j;
                costs[t] = cj;
                t += 1;
            }
        }
        self.bound[i] = tau;
    }

    /// The two best reduced costs among row `i`'s candidates and the best column.
    #[inline]
    fn two_best(&self, i: usize, v: &[f64]) -> (f64, usize, f64) {
        let k = self.k;
        let cols = &self.col[i * k..(i + 1) * k];
        let costs = &self.cost[i * k..(i + 1) * k];
        let mut w1 = f64::INFINITY;
        let mut j1 = cols[0];
        let mut w2 = f64::INFINITY;
        for t in 0..k {
            let h = costs[t] - v[cols[t]];
            if h < w2 {
                if h < w1 {
                    w2 = w1;
                    w1 = h;
                    j1 = cols[t];
                } else {
                    w2 = h;
                }
            }
        }
        (w1, j1, w2)
    }
}

/// Warm start for the square case: an ε-scaling forward auction (Bertsekas 1988) from the
/// column minima finds near-optimal column potentials `v`. The coarse phases scan whole rows;
/// the fine ones scan only each row's [`CANDIDATES`] best columns by reduced cost, falling back
/// to a full scan whenever the list cannot certify the two best (so every bid is the one a
/// dense auction would make). Then only the rows whose auction column is exactly their best
/// reduced cost over *all* columns keep it (every kept pair is tight and `v` is dual feasible);
/// the others are pushed onto `free` for the exact phases.
fn auction_warm_start(
    c: &[f64],
    n: usize,
    x: &mut [usize],
    y: &mut [usize],
    v: &mut [f64],
    free: &mut Vec<usize>,
) {
    let m = n;
    let (lo, hi) = c
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &z| {
            (a.min(z), b.max(z))
        });
    let range = hi - lo;
    if range > 0.0 {
        auction(c, n, x, y, v, range);
    }
    // Keep only the pairs that are tight over all columns.
    for i in 0..n {
        let row = &c[i * m..(i + 1) * m];
        let (w1, _, _) = two_best(row, v);
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

/// The ε-scaling auction of [`auction_warm_start`] on a square matrix with spread `range > 0`.
/// Each phase is capped, so it ends on any input; its result is only a warm start.
fn auction(c: &[f64], n: usize, x: &mut [usize], y: &mut [usize], v: &mut [f64], range: f64) {
    let m = n;
    // Start from the column minima v_j = min_i c_ij.
    v.copy_from_slice(&c[..m]);
    for i in 1..n {
        for (vj, &cij) in v.iter_mut().zip(&c[i * m..(i + 1) * m]) {
            if cij < *vj {
                *vj = cij;
            }
        }
    }
    let mut eps = range * EPS_START;
    let eps_dense = range * EPS_DENSE;
    let eps_final = range * EPS_FINAL;
    let k_cand = CANDIDATES.min(m);
    let mut queue: Vec<usize> = Vec::with_capacity(n);
    let cap = 100 * n + 1000;
    let restart = |queue: &mut Vec<usize>, x: &mut [usize], y: &mut [usize]| {
        x.fill(NONE);
        y.fill(NONE);
        queue.clear();
        queue.extend((0..n).rev());
    };
    // Dense phases.
    loop {
        restart(&mut queue, x, y);
        auction_phase(&mut queue, x, y, v, eps, cap, |i, v| {
            two_best(&c[i * m..(i + 1) * m], v)
        });
        if eps <= eps_dense {
            break;
        }
        eps = (eps / EPS_DIVISOR).max(eps_dense);
    }
    if k_cand < m {
        // Sparse phases on candidate lists; prices only fall, so each list's bound stays valid.
        let mut cand = Candidates::new(n, k_cand);
        let mut scratch = vec![0.0f64; m];
        for i in 0..n {
            cand.rebuild(i, &c[i * m..(i + 1) * m], v, &mut scratch);
        }
        let mut best = |i: usize, v: &[f64]| {
            let (w1, j1, w2) = cand.two_best(i, v);
            if w2 <= cand.bound[i] {
                return (w1, j1, w2);
            }
            // The list no longer certifies the two best: rescan the whole row.
            let row = &c[i * m..(i + 1) * m];
            cand.rebuild(i, row, v, &mut scratch);
            two_best(row, v)
        };
        while eps > eps_final {
            eps = (eps / EPS_DIVISOR).max(eps_final);
            restart(&mut queue, x, y);
            auction_phase(&mut queue, x, y, v, eps, cap, &mut best);
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
                let first = up;
                for k in first..m {
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
            let first = up;
            for k in first..m {
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
