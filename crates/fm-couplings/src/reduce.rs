//! The row scan shared by the exact solver (`f64`) and the auction warm start (`f32`): the two
//! smallest reduced costs `row[j] - v[j]` of a row and the column of the smallest.

use std::ops::Sub;

/// A cost type the row scan works on.
pub(crate) trait Cost: Copy + PartialOrd + Sub<Output = Self> {
    /// Positive infinity.
    const INFINITY: Self;
}

impl Cost for f32 {
    const INFINITY: f32 = f32::INFINITY;
}

impl Cost for f64 {
    const INFINITY: f64 = f64::INFINITY;
}

/// The smallest and second-smallest reduced cost `row[j] - v[j]` and the column of the smallest.
///
/// Plain minimum reductions over `LANES` independent lanes (which vectorise, with no selects
/// chained between the two running minima): the minimum, the first column attaining it, then
/// the minimum over every other column (so a tie gives `w2 == w1`).
#[inline]
pub(crate) fn two_best<T: Cost, const LANES: usize>(row: &[T], v: &[T]) -> (T, usize, T) {
    let w1 = min_reduced::<T, LANES>(row, v);
    // Every reduced cost is finite for finite inputs, so the minimum is attained.
    let j1 = position_of_value(row, v, w1);
    let before = min_reduced::<T, LANES>(&row[..j1], &v[..j1]);
    let after = match row.get(j1 + 1..) {
        Some(r) => min_reduced::<T, LANES>(r, &v[j1 + 1..]),
        None => T::INFINITY,
    };
    (w1, j1, if before < after { before } else { after })
}

/// `min_j row[j] - v[j]` (infinity for an empty row).
#[inline]
pub(crate) fn min_reduced<T: Cost, const LANES: usize>(row: &[T], v: &[T]) -> T {
    let mut m = [T::INFINITY; LANES];
    let split = row.len() - row.len() % LANES;
    for (r, w) in row[..split]
        .chunks_exact(LANES)
        .zip(v[..split].chunks_exact(LANES))
    {
        for k in 0..LANES {
            let h = r[k] - w[k];
            m[k] = if h < m[k] { h } else { m[k] };
        }
    }
    let mut best = T::INFINITY;
    for (&r, &w) in row[split..].iter().zip(&v[split..]) {
        let h = r - w;
        best = if h < best { h } else { best };
    }
    for x in m {
        best = if x < best { x } else { best };
    }
    best
}

/// The first `j` with `row[j] - v[j] == target` (0 if none), searched in branch-free chunks.
#[inline]
fn position_of_value<T: Cost>(row: &[T], v: &[T], target: T) -> usize {
    const CHUNK: usize = 16;
    let split = row.len() - row.len() % CHUNK;
    for (c, (r, w)) in row[..split]
        .chunks_exact(CHUNK)
        .zip(v[..split].chunks_exact(CHUNK))
        .enumerate()
    {
        let mut hit = false;
        for k in 0..CHUNK {
            hit |= r[k] - w[k] == target;
        }
        if hit {
            let k = (0..CHUNK).find(|&k| r[k] - w[k] == target).unwrap_or(0);
            return c * CHUNK + k;
        }
    }
    (split..row.len())
        .find(|&j| row[j] - v[j] == target)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Against a plain sort of the reduced costs, for both widths and any row length
        /// (covering the lane remainder and the chunked search).
        #[test]
        fn two_best_matches_a_sort(row in proptest::collection::vec(-100i32..100, 1..70),
                                   shift in proptest::collection::vec(-50i32..50, 70)) {
            let r: Vec<f64> = row.iter().map(|&x| x as f64).collect();
            let v: Vec<f64> = shift[..r.len()].iter().map(|&x| x as f64).collect();
            let mut h: Vec<f64> = r.iter().zip(&v).map(|(a, b)| a - b).collect();
            let first = h.iter().position(|&x| x == h.iter().copied().fold(f64::INFINITY, f64::min)).unwrap();
            h.sort_by(f64::total_cmp);
            let second = h.get(1).copied().unwrap_or(f64::INFINITY);
            prop_assert_eq!(two_best::<f64, 8>(&r, &v), (h[0], first, second));
            let r32: Vec<f32> = r.iter().map(|&x| x as f32).collect();
            let v32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            prop_assert_eq!(two_best::<f32, 16>(&r32, &v32), (h[0] as f32, first, second as f32));
        }
    }
}
