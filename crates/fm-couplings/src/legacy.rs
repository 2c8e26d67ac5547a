//! The previous default solver, kept verbatim as the in-run baseline
//! ([`crate::AssignmentSolver::JvAuction`]): Jonker–Volgenant warm-started by an ε-scaling
//! auction with dense coarse phases and candidate-list fine phases.
use crate::AssignmentSolution;

const NONE: usize = usize::MAX;

/// The Jonker–Volgenant solver on a row-major `n × m` matrix, `1 ≤ n ≤ m`, finite entries.
///
/// Square problems start from an ε-scaling auction ([`auction_warm_start`]) that leaves dual
/// feasible potentials and a partial assignment of tight pairs; rectangular ones from zero
/// potentials and no pairs (so that unassigned columns keep `v = 0`). Then two passes of
/// augmenting row reduction, and finally one Dijkstra-like shortest augmenting path per
/// remaining free row, which is what makes the result exact. All work arrays are allocated once.
pub(crate) fn lapjv(c: &[f64], n: usize, m: usize) -> AssignmentSolution {
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
