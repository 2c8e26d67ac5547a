//! The default exact solver: Jonker–Volgenant on dense row-major `f64` costs, without an auction.
//!
//! Column reduction and reduction transfer (square problems only), two passes of augmenting row
//! reduction, then one Dijkstra-like shortest augmenting path per remaining free row. The
//! Dijkstra keeps its labels in dense arrays indexed by column and scans each row with one
//! contiguous, branch-free pass (relax and arg-min fused), which the compiler unrolls into
//! independent lanes.
use crate::assignment::NONE;

/// Independent accumulators of the fused relax / arg-min pass.
const LANES: usize = 4;

/// Work arrays of the dense shortest-augmenting-path phase, allocated once.
pub(crate) struct Dijkstra {
    d: Vec<f64>,
    /// `0` for unscanned columns, `+∞` for scanned ones (added to keys, so no branch).
    mask: Vec<f64>,
    /// The scanned columns in scan order, and the offset `u1` of the row scanned through each.
    scanned: Vec<usize>,
    offsets: Vec<f64>,
    path: Vec<(usize, usize)>,
}

impl Dijkstra {
    pub(crate) fn new(m: usize) -> Self {
        Self {
            d: vec![0.0; m],
            mask: vec![0.0; m],
            scanned: Vec::with_capacity(m),
            offsets: Vec::with_capacity(m),
            path: Vec::new(),
        }
    }

    /// One shortest augmenting path from each row of `free` (each must be unassigned, and every
    /// assigned row must be tight: its column minimises `c_ij − v_j`).
    pub(crate) fn augment_all(
        &mut self,
        c: &[f64],
        x: &mut [usize],
        y: &mut [usize],
        v: &mut [f64],
        free: &[usize],
    ) {
        for &f in free {
            self.augment(c, x, y, v, f);
        }
    }

    /// Assigns the free row `f` along a shortest augmenting path and updates the potentials of
    /// the scanned columns, keeping every assigned row tight.
    ///
    /// Predecessors are not stored during the search (that would need a data-dependent store
    /// in the inner loop); the path is recovered afterwards: the label of a column was set by
    /// the first row, in scan order, whose relaxation value equals it bit for bit (the same
    /// floating-point expression is re-evaluated), among the rows scanned before the column.
    pub(crate) fn augment(
        &mut self,
        c: &[f64],
        x: &mut [usize],
        y: &mut [usize],
        v: &mut [f64],
        f: usize,
    ) {
        let m = v.len();
        let Self {
            d,
            mask,
            scanned,
            offsets,
            path,
        } = self;
        let row = &c[f * m..(f + 1) * m];
        for ((dj, &cj), &vj) in d.iter_mut().zip(row).zip(v.iter()) {
            *dj = cj - vj - 0.0 + 0.0;
        }
        mask.fill(0.0);
        scanned.clear();
        offsets.clear();
        let mut min = min_key(d, mask);
        let mut jmin = position_of(d, mask, min);
        let end = loop {
            if y[jmin] == NONE {
                break jmin;
            }
            mask[jmin] = f64::INFINITY;
            let i = y[jmin];
            let ri = &c[i * m..(i + 1) * m];
            let u1 = ri[jmin] - v[jmin] - min;
            scanned.push(jmin);
            offsets.push(u1);
            min = relax(ri, v, u1, d, mask);
            jmin = position_of(d, mask, min);
        };
        // Recover the path, from the end column back to row f.
        path.clear();
        let mut j = end;
        let mut limit = scanned.len();
        loop {
            let target = d[j];
            let mut from = f;
            let mut upto = 0;
            if !(row[j] - v[j] - 0.0 + 0.0 == target) {
                for (k, (&s, &u1)) in scanned[..limit].iter().zip(offsets.iter()).enumerate() {
                    let i = y[s];
                    if c[i * m + j] - v[j] - u1 + 0.0 == target {
                        from = i;
                        upto = k;
                        break;
                    }
                }
            }
            path.push((from, j));
            if from == f {
                break;
            }
            // Row `from` was reached through its column scanned[upto]; continue from there.
            j = scanned[upto];
            limit = upto;
        }
        for &j in scanned.iter() {
            v[j] += d[j] - min;
        }
        for &(i, j) in path.iter() {
            y[j] = i;
            x[i] = j;
        }
    }
}

/// `d_j ← min(d_j, c_ij − v_j − u1)` over the unscanned columns; returns the new smallest label
/// among them.
#[inline]
fn relax(ri: &[f64], v: &[f64], u1: f64, d: &mut [f64], mask: &[f64]) -> f64 {
    let m = d.len();
    let split = m - m % LANES;
    let mut best = [f64::INFINITY; LANES];
    for (((dc, rc), vc), mc) in d[..split]
        .chunks_exact_mut(LANES)
        .zip(ri[..split].chunks_exact(LANES))
        .zip(v[..split].chunks_exact(LANES))
        .zip(mask[..split].chunks_exact(LANES))
    {
        for k in 0..LANES {
            let h = rc[k] - vc[k] - u1 + mc[k];
            let nd = if h < dc[k] { h } else { dc[k] };
            dc[k] = nd;
            let key = nd + mc[k];
            best[k] = if key < best[k] { key } else { best[k] };
        }
    }
    let mut min = f64::INFINITY;
    for b in best {
        min = if b < min { b } else { min };
    }
    for j in split..m {
        let h = ri[j] - v[j] - u1 + mask[j];
        if h < d[j] {
            d[j] = h;
        }
        let key = d[j] + mask[j];
        if key < min {
            min = key;
        }
    }
    min
}

/// The smallest label among the unscanned columns.
#[inline]
fn min_key(d: &[f64], mask: &[f64]) -> f64 {
    let mut best = [f64::INFINITY; LANES];
    let split = d.len() - d.len() % LANES;
    for (dc, mc) in d[..split]
        .chunks_exact(LANES)
        .zip(mask[..split].chunks_exact(LANES))
    {
        for k in 0..LANES {
            let key = dc[k] + mc[k];
            best[k] = if key < best[k] { key } else { best[k] };
        }
    }
    let mut min = f64::INFINITY;
    for b in best {
        min = if b < min { b } else { min };
    }
    for (&dj, &mj) in d[split..].iter().zip(&mask[split..]) {
        let key = dj + mj;
        min = if key < min { key } else { min };
    }
    min
}

/// The first unscanned column whose label is `min`.
#[inline]
fn position_of(d: &[f64], mask: &[f64], min: f64) -> usize {
    d.iter()
        .zip(mask)
        .position(|(&dj, &mj)| dj + mj == min)
        .unwrap_or(0)
}
