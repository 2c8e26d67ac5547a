//! The dense kernels of the fused MLP path.
//!
//! Layout: the values of one layer for one chunk of points are stored *blocked feature-major*:
//! points are grouped in blocks of [`LANES`], and a block holds one [`Line`] (the `LANES`
//! values of one feature) per feature, so line `blk · wp + f` is feature `f` of block `blk`.
//! Widths are padded to a multiple of [`R`] (`wp = pad(w)`); padded features are zero.
//!
//! A matrix product `C = A · B` then runs as register tiles of `R` output features × one line
//! of points: every step of the `k` loop broadcasts `R` entries of `A` and multiplies them into
//! one line of `B`. `A` is a weight matrix, packed into panels of `R` rows once per parameter
//! change ([`pack`]), so both operands stream contiguously and no per-product packing is
//! needed. Each block's output lines then go through `post` (activation and its derivative, or
//! a product with one) while they are still in L1. Weight gradients `Σ_i g_oi h_ki` use the
//! same kind of tile on a transposed copy of one operand ([`outer_acc`]).
//!
//! Everything here is safe Rust that the compiler vectorises: fixed-size arrays of one tile's
//! accumulators, [`Float::mul_add`] (an FMA on CPUs that have one).

use crate::Float;

/// Points per line.
pub(crate) const LANES: usize = 16;
/// Output features per register tile.
pub(crate) const R: usize = 4;

/// The values of one feature for [`LANES`] consecutive points, aligned to a cache line.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Line<F>(pub(crate) [F; LANES]);

impl<F: Float> Line<F> {
    pub(crate) fn zero() -> Self {
        Line([F::zero(); LANES])
    }
}

/// Feature `f` of point `i` in a blocked buffer with `wp` lines per block.
pub(crate) fn at<F>(buf: &[Line<F>], wp: usize, i: usize, f: usize) -> &F {
    &buf[(i / LANES) * wp + f].0[i % LANES]
}

/// Mutable [`at`].
pub(crate) fn at_mut<F>(buf: &mut [Line<F>], wp: usize, i: usize, f: usize) -> &mut F {
    &mut buf[(i / LANES) * wp + f].0[i % LANES]
}

/// `w` rounded up to a multiple of [`R`].
pub(crate) fn pad(w: usize) -> usize {
    w.div_ceil(R) * R
}

/// Packs a `rows × k` matrix `A` into panels of [`R`] rows: entry `(row, col)` goes to
/// `(row / R · kp + col) · R + row % R`. Rows past `rows` (up to [`pad`]`(rows)`) and columns
/// `k..kp` are zero. `A` is `src` read row-major (`rows × k`), or, if `transposed`, the
/// transpose of `src` read row-major (`k × rows`).
pub(crate) fn pack<F: Float>(
    src: &[F],
    rows: usize,
    k: usize,
    kp: usize,
    transposed: bool,
    out: &mut Vec<F>,
) {
    out.clear();
    out.resize(pad(rows) * kp, F::zero());
    for (ob, panel) in out.chunks_exact_mut(R * kp).enumerate() {
        let r0 = ob * R;
        let nr = R.min(rows - r0);
        if transposed {
            // Row `col` of `src` holds A[·][col]: R consecutive values per panel step.
            for (dst, srow) in panel.chunks_exact_mut(R).zip(src.chunks_exact(rows)) {
                for (d, &v) in dst.iter_mut().zip(&srow[r0..r0 + nr]) {
                    *d = v;
                }
            }
        } else {
            for (r, srow) in src.chunks_exact(k).skip(r0).take(nr).enumerate() {
                for (dst, &v) in panel.chunks_exact_mut(R).zip(srow) {
                    dst[r] = v;
                }
            }
        }
    }
}

/// `out[f] += Σ over all blocks and lanes of line f` for `f < out.len()` (`wp` lines per
/// block): a bias gradient.
pub(crate) fn sum_lines<F: Float>(lines: &[Line<F>], wp: usize, out: &mut [F]) {
    let mut acc = vec![Line::zero(); out.len()];
    for blk in lines.chunks_exact(wp) {
        for (a, l) in acc.iter_mut().zip(blk) {
            for (x, &y) in a.0.iter_mut().zip(&l.0) {
                *x += y;
            }
        }
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        *o += a.0.iter().copied().sum::<F>();
    }
}

/// One register tile: `acc[r] = init[r] + Σ_k panel[k][r] · b[k]`.
#[inline(always)]
fn tile<F: Float>(panel: &[F], b: &[Line<F>], init: [F; R]) -> [[F; LANES]; R] {
    let mut acc = [[F::zero(); LANES]; R];
    for (a, i) in acc.iter_mut().zip(init) {
        *a = [i; LANES];
    }
    for (av, bl) in panel.chunks_exact(R).zip(b) {
        for (a, &s) in acc.iter_mut().zip(av) {
            for (x, &y) in a.iter_mut().zip(&bl.0) {
                *x = s.mul_add(y, *x);
            }
        }
    }
    acc
}

/// `C = A · B (+ bias)` block by block, then `post(blk, lines)` on each block's `m` output
/// lines while they are in L1 (padded output features are set to zero). `panel` is `A` packed
/// by [`pack`] with `kp` columns; `b` has `kp` lines per block, `c` has `pad(m)`.
///
/// `post` should call a function that is not inlined (an activation pass, say): this function
/// must stay small for the compiler to keep the tile's accumulators in vector registers.
#[inline(never)]
pub(crate) fn mm<F: Float>(
    panel: &[F],
    bias: Option<&[F]>,
    kp: usize,
    m: usize,
    b: &[Line<F>],
    c: &mut [Line<F>],
    mut post: impl FnMut(usize, &mut [Line<F>]),
) {
    let mp = pad(m);
    for (blk, (bb, cb)) in b.chunks_exact(kp).zip(c.chunks_exact_mut(mp)).enumerate() {
        for (ob, (pp, cc)) in panel
            .chunks_exact(R * kp)
            .zip(cb.chunks_exact_mut(R))
            .enumerate()
        {
            let o0 = ob * R;
            let mut init = [F::zero(); R];
            if let Some(bias) = bias {
                for (r, v) in init.iter_mut().enumerate() {
                    if let Some(&bv) = bias.get(o0 + r) {
                        *v = bv;
                    }
                }
            }
            let acc = tile(pp, bb, init);
            for (r, (a, dst)) in acc.iter().zip(cc.iter_mut()).enumerate() {
                dst.0 = if o0 + r < m { *a } else { [F::zero(); LANES] };
            }
        }
        post(blk, &mut cb[..m]);
    }
}

/// `lines[i] ⊙= d[i]` (a cotangent times an activation derivative).
#[inline(never)]
pub(crate) fn mul_lines<F: Float>(lines: &mut [Line<F>], d: &[Line<F>]) {
    for (l, d) in lines.iter_mut().zip(d) {
        for (x, &y) in l.0.iter_mut().zip(&d.0) {
            *x *= y;
        }
    }
}

/// Transposes the blocked values `h` (`hp` lines per block, features `0..k` used) into `ht`:
/// `ceil(k / LANES)` column groups, each one line per point, so feature `f` of point `i` is
/// lane `f % LANES` of line `(f / LANES) · np + i` (`np` = points incl. padding).
pub(crate) fn transpose<F: Float>(h: &[Line<F>], hp: usize, k: usize, ht: &mut Vec<Line<F>>) {
    let nb = h.len() / hp;
    let np = nb * LANES;
    let groups = k.div_ceil(LANES);
    ht.clear();
    ht.resize(groups * np, Line::zero());
    for (grp, dst) in ht.chunks_exact_mut(np).enumerate() {
        for (hb, db) in h.chunks_exact(hp).zip(dst.chunks_exact_mut(LANES)) {
            let f0 = grp * LANES;
            for (j, src) in hb[f0..k.min(f0 + LANES)].iter().enumerate() {
                for (d, &v) in db.iter_mut().zip(&src.0) {
                    d.0[j] = v;
                }
            }
        }
    }
}

/// `put(a, b, Σ_i A_ai B_bi)` for `a < ma`, `b < mb`: the sums over all points of products of
/// two blocked operands, `A` given blocked (`pad(ma)` lines per block) and `B` transposed by
/// [`transpose`] (features `0..mb`). Used for weight gradients `Σ_i g_oi h_ki`.
#[inline(never)]
pub(crate) fn outer_acc<F: Float>(
    a: &[Line<F>],
    ma: usize,
    bt: &[Line<F>],
    mb: usize,
    mut put: impl FnMut(usize, usize, F),
) {
    let map = pad(ma);
    let np = a.len() / map * LANES;
    for (grp, bcol) in bt.chunks_exact(np).enumerate() {
        for o0 in (0..ma).step_by(R) {
            let mut acc = [[F::zero(); LANES]; R];
            for (ab, bb) in a.chunks_exact(map).zip(bcol.chunks_exact(LANES)) {
                let av: &[Line<F>; R] = ab[o0..o0 + R].try_into().expect("padded width");
                let bv: &[Line<F>; LANES] = bb.try_into().expect("one block");
                for (lane, bl) in bv.iter().enumerate() {
                    for (acc_r, ar) in acc.iter_mut().zip(av) {
                        let s = ar.0[lane];
                        for (x, &y) in acc_r.iter_mut().zip(&bl.0) {
                            *x = s.mul_add(y, *x);
                        }
                    }
                }
            }
            for (r, acc_r) in acc.iter().enumerate() {
                if o0 + r >= ma {
                    break;
                }
                for (j, &v) in acc_r.iter().enumerate() {
                    let b = grp * LANES + j;
                    if b < mb {
                        put(o0 + r, b, v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Row-major `rows × w` values into the blocked layout (padding zero).
    fn blocked(v: &[f64], rows: usize, w: usize) -> Vec<Line<f64>> {
        let nb = rows.div_ceil(LANES);
        let wp = pad(w);
        let mut out = vec![Line::zero(); nb * wp];
        for i in 0..rows {
            for f in 0..w {
                *at_mut(&mut out, wp, i, f) = v[i * w + f];
            }
        }
        out
    }

    fn vals(n: usize, seed: u64) -> Vec<f64> {
        (0..n)
            .map(|i| ((i as u64 * 2654435761 + seed * 97) % 1000) as f64 / 500.0 - 1.0)
            .collect()
    }

    proptest! {
        #[test]
        fn mm_matches_naive_product(rows in 1usize..40, k in 1usize..11, m in 1usize..11, seed in 0u64..100) {
            let a = vals(m * k, seed); // m × k
            let x = vals(rows * k, seed + 1); // rows × k
            let bias = vals(m, seed + 2);
            let kp = pad(k);
            let mut panel = Vec::new();
            pack(&a, m, k, kp, false, &mut panel);
            let b = blocked(&x, rows, k);
            let mut c = vec![Line::zero(); rows.div_ceil(LANES) * pad(m)];
            mm(&panel, Some(&bias), kp, m, &b, &mut c, |_, _| {});
            for i in 0..rows {
                for o in 0..m {
                    let want = bias[o] + (0..k).map(|j| a[o * k + j] * x[i * k + j]).sum::<f64>();
                    let got = *at(&c, pad(m), i, o);
                    prop_assert!((got - want).abs() < 1e-12, "({i}, {o}): {got} vs {want}");
                }
            }
            for blk in 0..rows.div_ceil(LANES) {
                for o in m..pad(m) {
                    prop_assert!(c[blk * pad(m) + o].0.iter().all(|&v| v == 0.0));
                }
            }
        }

        #[test]
        fn packing_a_transpose_equals_packing_the_transposed_matrix(rows in 1usize..11, k in 1usize..11, seed in 0u64..100) {
            let a = vals(rows * k, seed); // rows × k
            let at: Vec<f64> = (0..k * rows).map(|e| a[(e % rows) * k + e / rows]).collect(); // k × rows
            let (mut p1, mut p2) = (Vec::new(), Vec::new());
            pack(&a, rows, k, pad(k), false, &mut p1);
            pack(&at, rows, k, pad(k), true, &mut p2);
            prop_assert_eq!(p1, p2);
        }

        #[test]
        fn bias_sums_match_naive_sums(rows in 1usize..60, w in 1usize..11, seed in 0u64..100) {
            let v = vals(rows * w, seed);
            let mut got = vec![1.0; w];
            sum_lines(&blocked(&v, rows, w), pad(w), &mut got);
            for (f, g) in got.iter().enumerate() {
                let want = 1.0 + (0..rows).map(|i| v[i * w + f]).sum::<f64>();
                prop_assert!((g - want).abs() < 1e-12);
            }
        }

        #[test]
        fn outer_acc_matches_naive_sums(rows in 1usize..40, ma in 1usize..11, mb in 1usize..40, seed in 0u64..100) {
            let a = vals(rows * ma, seed);
            let bm = vals(rows * mb, seed + 5);
            let ab = blocked(&a, rows, ma);
            let bb = blocked(&bm, rows, mb);
            let mut bt = Vec::new();
            transpose(&bb, pad(mb), mb, &mut bt);
            let mut got = vec![f64::NAN; ma * mb];
            outer_acc(&ab, ma, &bt, mb, |i, j, v| got[i * mb + j] = v);
            for i in 0..ma {
                for j in 0..mb {
                    let want = (0..rows).map(|p| a[p * ma + i] * bm[p * mb + j]).sum::<f64>();
                    prop_assert!((got[i * mb + j] - want).abs() < 1e-12);
                }
            }
        }
    }
}
