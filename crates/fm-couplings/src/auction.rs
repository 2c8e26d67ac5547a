//! The ε-scaling forward auction (Bertsekas 1988) that warm-starts the exact solver, in `f32`.
//!
//! Its output is only a starting point (column potentials and a partial assignment): the exact
//! `f64` phases in `assignment.rs` check every pair and repair what is not exactly optimal, so
//! single precision here costs no exactness, and halves the memory traffic of the dense bids.
use crate::assignment::NONE;

/// How many entries of `h` are below `t` (branch-free, vectorises).
#[inline]
fn count_below(h: &[f32], t: f32) -> usize {
    const LANES: usize = 16;
    let mut acc = [0u32; LANES];
    let split = h.len() - h.len() % LANES;
    for c in h[..split].chunks_exact(LANES) {
        for k in 0..LANES {
            acc[k] += u32::from(c[k] < t);
        }
    }
    let tail = h[split..].iter().filter(|&&x| x < t).count();
    acc.iter().map(|&a| a as usize).sum::<usize>() + tail
}

/// The smallest and second-smallest reduced cost `row[j] - v[j]` and the column of the smallest.
#[inline]
pub(crate) fn two_best(row: &[f32], v: &[f32]) -> (f32, usize, f32) {
    crate::reduce::two_best::<f32, 16>(row, v)
}

/// Auction schedule, as fractions of the cost spread `max − min`: the first increment, the
/// last increment of the dense phases, the final increment; the divisor between phases; the
/// candidate list length of the sparse phases.
const EPS_START: f32 = 0.05;
const EPS_DENSE: f32 = 2e-3;
const EPS_FINAL: f32 = 1e-6;
const EPS_DIVISOR: f32 = 6.0;
const CANDIDATES: usize = 32;

/// One forward-auction phase (Gauss–Seidel) with increment `eps` over the rows in `queue`.
/// `row_best(i, v)` returns the best and second-best reduced cost of row `i` and the best
/// column. Stops after `cap` bids.
fn auction_phase(
    queue: &mut Vec<usize>,
    x: &mut [usize],
    y: &mut [usize],
    v: &mut [f32],
    eps: f32,
    cap: usize,
    mut row_best: impl FnMut(usize, &[f32]) -> (f32, usize, f32),
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
    /// Target list length; lists hold between 2 and `cap = 2k` columns.
    k: usize,
    cap: usize,
    len: Vec<usize>,
    col: Vec<usize>,
    cost: Vec<f32>,
    /// Every column outside row i's list had reduced cost at least `bound[i]` when it was built.
    bound: Vec<f32>,
    /// The last threshold gap `τ − min` per row, and the last one of any row.
    gap: Vec<f32>,
    gap_hint: f32,
}

impl Candidates {
    fn new(n: usize, k: usize) -> Self {
        let cap = 2 * k;
        Self {
            k,
            cap,
            len: vec![0; n],
            col: vec![0; n * cap],
            cost: vec![0.0; n * cap],
            bound: vec![f32::NEG_INFINITY; n],
            gap: vec![0.0; n],
            gap_hint: 0.0,
        }
    }

    /// Rebuilds row `i`'s list from its full cost row (`scratch` has the row's length): the
    /// columns of reduced cost below `τ = min + gap`, with the gap adapted (from the row's
    /// previous one, or the last one used) until the list holds between `k/2` and `2k`
    /// columns; exact selection of the `k` best when that does not settle (heavy ties).
    fn rebuild(&mut self, i: usize, row: &[f32], v: &[f32], scratch: &mut [f32]) {
        let (k, cap) = (self.k, self.cap);
        let lo = (k / 2).max(2);
        let mut w1 = f32::INFINITY;
        for ((s, &cj), &vj) in scratch.iter_mut().zip(row).zip(v) {
            let h = cj - vj;
            *s = h;
            w1 = if h < w1 { h } else { w1 };
        }
        let mut gap = if self.gap[i] > 0.0 {
            self.gap[i]
        } else {
            self.gap_hint
        };
        let mut tau = f32::NAN;
        for _ in 0..12 {
            if !(gap > 0.0 && gap.is_finite()) {
                break;
            }
            let t = w1 + gap;
            let count = count_below(scratch, t);
            if count < lo {
                gap *= 2.0;
            } else if count > cap {
                gap *= 0.5;
            } else {
                tau = t;
                break;
            }
        }
        let selected = tau.is_nan();
        if selected {
            let (_, &mut t, _) = scratch.select_nth_unstable_by(k - 1, f32::total_cmp);
            // The selection permuted `scratch`; recompute it.
            for ((s, &cj), &vj) in scratch.iter_mut().zip(row).zip(v) {
                *s = cj - vj;
            }
            tau = t;
            gap = tau - w1;
        }
        if gap > 0.0 && gap.is_finite() {
            self.gap[i] = gap;
            self.gap_hint = gap;
        }
        let cols = &mut self.col[i * cap..(i + 1) * cap];
        let costs = &mut self.cost[i * cap..(i + 1) * cap];
        let mut t = 0;
        for (j, (&h, &cj)) in scratch.iter().zip(row).enumerate() {
            if h < tau && t < cap {
                cols[t] = j;
                costs[t] = cj;
                t += 1;
            }
        }
        // Ties at the threshold (only in the exact-selection branch), up to k entries.
        for (j, (&h, &cj)) in scratch.iter().zip(row).enumerate() {
            if !selected || t >= k.max(2) {
                break;
            }
            if h == tau {
                cols[t] = j;
                costs[t] = cj;
                t += 1;
            }
        }
        self.len[i] = t;
        self.bound[i] = tau;
    }

    /// The two best reduced costs among row `i`'s candidates and the best column.
    #[inline]
    fn two_best(&self, i: usize, v: &[f32]) -> (f32, usize, f32) {
        let cap = self.cap;
        let len = self.len[i];
        let cols = &self.col[i * cap..i * cap + len];
        let costs = &self.cost[i * cap..i * cap + len];
        let mut w1 = f32::INFINITY;
        let mut w2 = f32::INFINITY;
        let mut t1 = 0usize;
        for (t, (&cj, &j)) in costs.iter().zip(cols).enumerate() {
            let h = cj - v[j];
            let better = h < w1;
            let hi = if better { w1 } else { h };
            w2 = if hi < w2 { hi } else { w2 };
            t1 = if better { t } else { t1 };
            w1 = if better { h } else { w1 };
        }
        (w1, cols.get(t1).copied().unwrap_or(0), w2)
    }
}

/// The ε-scaling auction of [`auction_warm_start`] on a square matrix with spread `range > 0`.
/// Each phase is capped, so it ends on any input; its result is only a warm start.
pub(crate) fn run(
    c: &[f32],
    n: usize,
    x: &mut [usize],
    y: &mut [usize],
    v: &mut [f32],
    range: f32,
) {
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
    // Longer lists for wide rows: a list rebuild costs a full row, a bid only the list.
    let k_cand = CANDIDATES.max(2 * (m as f64).sqrt() as usize).min(m);
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
        let mut scratch = vec![0.0f32; m];
        for i in 0..n {
            cand.rebuild(i, &c[i * m..(i + 1) * m], v, &mut scratch);
        }
        let mut best = |i: usize, v: &[f32]| {
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
