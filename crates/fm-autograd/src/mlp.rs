use crate::error::{AutogradError, Result, check_finite, shape_err};
use crate::graph::{GradStore, Graph, Var};
use crate::{Activation, Float, MlpConfig, TimeFeatures};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::Mutex;

/// Rows per chunk of the fused paths. Chunk boundaries, and the order in which chunk results
/// are summed, do not depend on the number of threads, so results are bit-identical for any
/// rayon pool size.
pub const CHUNK: usize = 256;

/// A named tensor as stored in a safetensors file: name, shape, row-major `f32` data.
pub type Tensor = (String, Vec<usize>, Vec<f32>);

/// The probe distribution of the Hutchinson trace estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Probe {
    /// Entries ±1 with probability ½ each (the lower-variance choice).
    #[default]
    Rademacher,
    /// Entries from `N(0, 1)`.
    Gaussian,
}

#[derive(Debug, Clone, Copy)]
struct Layer {
    out: usize,
    inp: usize,
    w: usize,
    b: usize,
}

/// A multilayer perceptron `v_θ(t, x)` for flow matching, computing in `F` (see [`Mlp`]).
///
/// Parameters live in one flat vector: for each linear layer its weight `(out, in)` row-major
/// (PyTorch's layout), then its bias. [`MlpOf::loss_and_grad`], [`MlpOf::forward`] and the
/// derivatives run fused, preallocated kernels (matrix products into reused buffers,
/// activation derivatives computed in the forward pass) over chunks of [`CHUNK`] rows, in
/// parallel with rayon when there is more than one chunk. [`MlpOf::forward_graph`] builds the
/// same network on a [`Graph`] tape; the tests check that both give the same gradients.
pub struct MlpOf<F: Float> {
    config: MlpConfig,
    layers: Vec<Layer>,
    params: Vec<F>,
    pool: Mutex<Vec<Work<F>>>,
}

/// The MLP used by the rest of the workspace: `f32` inside, `f64` at the boundary.
pub type Mlp = MlpOf<f32>;
/// The parameter gradient of an [`Mlp`].
pub type Grads = GradsOf<f32>;

/// A gradient with respect to all parameters of an [`MlpOf`], in the same flat layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradsOf<F> {
    flat: Vec<F>,
}

impl<F: Float> GradsOf<F> {
    /// Zeros for `mlp`'s parameters.
    pub fn zeros(mlp: &MlpOf<F>) -> Self {
        Self {
            flat: vec![F::zero(); mlp.num_params()],
        }
    }
    /// The flat gradient, in the layout of [`MlpOf::params`].
    pub fn as_slice(&self) -> &[F] {
        &self.flat
    }
    /// Mutable access, e.g. for clipping by hand.
    pub fn as_mut_slice(&mut self) -> &mut [F] {
        &mut self.flat
    }
    /// The Euclidean norm of the whole gradient, accumulated in `f64`.
    pub fn norm(&self) -> f64 {
        self.flat
            .iter()
            .map(|g| g.to_f64() * g.to_f64())
            .sum::<f64>()
            .sqrt()
    }
}

impl<F: Float> Clone for MlpOf<F> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            layers: self.layers.clone(),
            params: self.params.clone(),
            pool: Mutex::new(Vec::new()),
        }
    }
}

impl<F: Float> std::fmt::Debug for MlpOf<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlpOf")
            .field("config", &self.config)
            .field("num_params", &self.params.len())
            .finish()
    }
}

impl<F: Float> PartialEq for MlpOf<F> {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config && self.params == other.params
    }
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct MlpState<F: Float> {
    config: MlpConfig,
    params: Vec<F>,
}

impl<F: Float> Serialize for MlpOf<F> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        MlpState {
            config: self.config.clone(),
            params: self.params.clone(),
        }
        .serialize(s)
    }
}

impl<'de, F: Float> Deserialize<'de> for MlpOf<F> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let st = MlpState::<F>::deserialize(d)?;
        Self::from_params(&st.config, st.params).map_err(serde::de::Error::custom)
    }
}

/// Scratch buffers of one chunk (flat, reused across calls).
struct Work<F> {
    cap: usize,
    h: Vec<Vec<F>>,
    d: Vec<Vec<F>>,
    out: Vec<F>,
    ga: Vec<F>,
    gb: Vec<F>,
    wt: Vec<F>,
}

/// Layers with at most this many inputs or outputs skip the general matrix product for
/// direct row loops (packing costs more than the product for such thin shapes).
const THIN: usize = 8;

/// `y += a x`.
#[inline(always)]
fn axpy<F: Float>(y: &mut [F], a: F, x: &[F]) {
    y.iter_mut().zip(x).for_each(|(y, &x)| *y += a * x);
}

/// `Σ a_i b_i` with eight partial sums (vectorisable).
#[inline(always)]
fn dot<F: Float>(a: &[F], b: &[F]) -> F {
    let mut acc = [F::zero(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let rest: F = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    acc.iter().copied().sum::<F>() + rest
}

fn view<F>(v: &[F], rows: usize, cols: usize) -> ArrayView2<'_, F> {
    ArrayView2::from_shape((rows, cols), &v[..rows * cols]).expect("buffer sized")
}

fn view_mut<F>(v: &mut [F], rows: usize, cols: usize) -> ArrayViewMut2<'_, F> {
    ArrayViewMut2::from_shape((rows, cols), &mut v[..rows * cols]).expect("buffer sized")
}

/// SELU in two simple passes per block of 64 (the exponentials first), which the compiler
/// vectorises; same values as [`Activation::eval`].
fn selu_inplace<F: Float>(h: &mut [F], mut d: Option<&mut [F]>) {
    let l = F::from_f64(crate::SELU_LAMBDA);
    let la = F::from_f64(crate::SELU_LAMBDA * crate::SELU_ALPHA);
    let zero = F::zero();
    let mut e = [zero; 64];
    for (b, hb) in h.chunks_mut(64).enumerate() {
        let e = &mut e[..hb.len()];
        for (e, &z) in e.iter_mut().zip(hb.iter()) {
            *e = (if z > zero { zero } else { z }).exp();
        }
        if let Some(d) = d.as_deref_mut() {
            for ((db, &e), &z) in d[b * 64..b * 64 + hb.len()]
                .iter_mut()
                .zip(e.iter())
                .zip(hb.iter())
            {
                *db = if z > zero { l } else { la * e };
            }
        }
        for (z, &e) in hb.iter_mut().zip(e.iter()) {
            *z = if *z > zero {
                l * *z
            } else {
                la * (e - F::one())
            };
        }
    }
}

fn act_inplace<F: Float>(act: Activation, h: &mut [F], d: Option<&mut [F]>) {
    macro_rules! go {
        ($a:expr) => {
            match d {
                Some(d) => h.iter_mut().zip(d.iter_mut()).for_each(|(h, d)| {
                    let (y, dy) = $a.eval(*h);
                    *h = y;
                    *d = dy;
                }),
                None => h.iter_mut().for_each(|h| *h = $a.eval(*h).0),
            }
        };
    }
    match act {
        Activation::Selu => selu_inplace(h, d),
        Activation::Silu => go!(Activation::Silu),
        Activation::Elu => go!(Activation::Elu),
        Activation::Relu => go!(Activation::Relu),
        Activation::Tanh => go!(Activation::Tanh),
        Activation::Softplus => go!(Activation::Softplus),
        Activation::Gelu => go!(Activation::Gelu),
    }
}

fn check_batch(t: &ArrayView1<f64>, x: &ArrayView2<f64>, dim: usize) -> Result<()> {
    if x.ncols() != dim {
        return Err(shape_err(
            "x",
            format!("(n, {dim})"),
            format!("{:?}", x.dim()),
        ));
    }
    if t.len() != x.nrows() {
        return Err(shape_err(
            "t",
            format!("({},)", x.nrows()),
            format!("({},)", t.len()),
        ));
    }
    check_finite("x", x.iter())?;
    check_finite("t", t.iter())
}

fn ranges(n: usize) -> Vec<(usize, usize)> {
    (0..n)
        .step_by(CHUNK)
        .map(|a| (a, (a + CHUNK).min(n)))
        .collect()
}

impl<F: Float> MlpOf<F> {
    /// A new network with PyTorch's `nn.Linear` initialisation: every weight and bias of a
    /// layer with `fan_in` inputs uniform in `±1/√fan_in`, drawn from `rng` layer by layer
    /// (weight row-major, then bias).
    pub fn new<R: Rng + ?Sized>(config: &MlpConfig, rng: &mut R) -> Result<Self> {
        config.check()?;
        let mut params = Vec::with_capacity(config.num_params());
        for (out, inp) in config.layer_shapes() {
            let bound = 1.0 / (inp as f64).sqrt();
            for _ in 0..out * inp + out {
                params.push(F::from_f64(rng.random_range(-bound..bound)));
            }
        }
        Self::from_params(config, params)
    }

    /// A network with the given flat parameters (layout of [`MlpOf::params`]).
    pub fn from_params(config: &MlpConfig, params: Vec<F>) -> Result<Self> {
        config.check()?;
        if params.len() != config.num_params() {
            return Err(shape_err("params", config.num_params(), params.len()));
        }
        check_finite(
            "params",
            params.iter().map(|p| p.to_f64()).collect::<Vec<_>>().iter(),
        )?;
        let mut layers = Vec::new();
        let mut off = 0;
        for (out, inp) in config.layer_shapes() {
            layers.push(Layer {
                out,
                inp,
                w: off,
                b: off + out * inp,
            });
            off += out * inp + out;
        }
        Ok(Self {
            config: config.clone(),
            layers,
            params,
            pool: Mutex::new(Vec::new()),
        })
    }

    /// The architecture.
    pub fn config(&self) -> &MlpConfig {
        &self.config
    }

    /// The number of parameters.
    pub fn num_params(&self) -> usize {
        self.params.len()
    }

    /// All parameters as one flat vector: per layer the weight `(out, in)` row-major, then the bias.
    pub fn params(&self) -> &[F] {
        &self.params
    }

    /// Mutable flat parameters (what optimizers update).
    pub fn params_mut(&mut self) -> &mut [F] {
        &mut self.params
    }

    /// Replaces all parameters; the length must be [`MlpOf::num_params`].
    pub fn set_params(&mut self, params: &[F]) -> Result<()> {
        if params.len() != self.params.len() {
            return Err(shape_err("params", self.params.len(), params.len()));
        }
        self.params.copy_from_slice(params);
        Ok(())
    }

    /// The same network computing in another float type.
    pub fn cast<G: Float>(&self) -> MlpOf<G> {
        let p = self
            .params
            .iter()
            .map(|v| G::from_f64(v.to_f64()))
            .collect();
        MlpOf::from_params(&self.config, p).expect("same config")
    }

    fn weight(&self, l: usize) -> ArrayView2<'_, F> {
        let ly = self.layers[l];
        view(&self.params[ly.w..], ly.out, ly.inp)
    }

    fn bias(&self, l: usize) -> &[F] {
        let ly = self.layers[l];
        &self.params[ly.b..ly.b + ly.out]
    }

    fn take_work(&self, rows: usize) -> Work<F> {
        let w = self.pool.lock().ok().and_then(|mut p| p.pop());
        match w {
            Some(w) if w.cap >= rows => w,
            _ => {
                let z = |c: usize| vec![F::zero(); rows * c];
                let maxw = self
                    .layers
                    .iter()
                    .map(|l| l.inp.max(l.out))
                    .max()
                    .unwrap_or(1);
                let hidden = &self.layers[1..];
                Work {
                    cap: rows,
                    h: self.layers.iter().map(|l| z(l.inp)).collect(),
                    d: hidden.iter().map(|l| z(l.inp)).collect(),
                    out: z(self.config.dim),
                    ga: z(maxw),
                    gb: z(maxw),
                    wt: vec![F::zero(); maxw * THIN],
                }
            }
        }
    }

    fn give_work(&self, w: Work<F>) {
        if let Ok(mut p) = self.pool.lock() {
            if p.len() < 8 {
                p.push(w);
            }
        }
    }

    /// Forward pass of one chunk: input features, hidden activations (and their derivatives
    /// if `deriv`), output into `w.out`.
    fn forward_chunk(&self, w: &mut Work<F>, t: &[f64], x: ArrayView2<f64>, deriv: bool) {
        let rows = x.nrows();
        let d = self.config.dim;
        let in0 = self.layers[0].inp;
        let h0 = &mut w.h[0][..rows * in0];
        for ((row, xr), &ti) in h0.chunks_exact_mut(in0).zip(x.rows()).zip(t) {
            for (r, &v) in row.iter_mut().zip(xr.iter()) {
                *r = F::from_f64(v);
            }
            let tf = F::from_f64(ti);
            match self.config.time_features {
                TimeFeatures::Raw => row[d] = tf,
                TimeFeatures::Fourier { frequencies: k } => {
                    for j in 0..k {
                        let a = tf * F::from_f64(2.0 * std::f64::consts::PI * (j + 1) as f64);
                        row[d + j] = a.sin();
                        row[d + k + j] = a.cos();
                    }
                }
            }
        }
        let last = self.layers.len() - 1;
        for l in 0..=last {
            let ly = self.layers[l];
            let (inputs, rest) = w.h.split_at_mut(l + 1);
            let dst: &mut [F] = if l == last { &mut w.out } else { &mut rest[0] };
            let dst = &mut dst[..rows * ly.out];
            for row in dst.chunks_exact_mut(ly.out) {
                row.copy_from_slice(self.bias(l));
            }
            let a = &inputs[l][..rows * ly.inp];
            let wl = &self.params[ly.w..ly.b];
            if ly.inp <= THIN {
                // z_i += Σ_k h_ik W[:, k]: axpy with the columns of W (copied to rows of `wt`).
                let wt = &mut w.wt[..ly.inp * ly.out];
                for k in 0..ly.inp {
                    for o in 0..ly.out {
                        wt[k * ly.out + o] = wl[o * ly.inp + k];
                    }
                }
                for (zr, hr) in dst.chunks_exact_mut(ly.out).zip(a.chunks_exact(ly.inp)) {
                    for (&hk, wk) in hr.iter().zip(wt.chunks_exact(ly.out)) {
                        axpy(zr, hk, wk);
                    }
                }
            } else if ly.out <= THIN {
                for (zr, hr) in dst.chunks_exact_mut(ly.out).zip(a.chunks_exact(ly.inp)) {
                    for (z, wo) in zr.iter_mut().zip(wl.chunks_exact(ly.inp)) {
                        *z += dot(hr, wo);
                    }
                }
            } else {
                let a = view(a, rows, ly.inp);
                general_mat_mul(
                    F::one(),
                    &a,
                    &self.weight(l).t(),
                    F::one(),
                    &mut view_mut(dst, rows, ly.out),
                );
            }
            if l < last {
                let dv = if deriv {
                    Some(&mut w.d[l][..rows * ly.out])
                } else {
                    None
                };
                act_inplace(self.config.activation, dst, dv);
            }
        }
    }

    /// Backward pass of one chunk from the output cotangent in `w.ga` (`rows × dim`).
    /// Accumulates the parameter gradient into `grads` (if given); leaves the cotangent of the
    /// input features in `w.ga` (`rows × in0`) if `input_grad`.
    fn backward_chunk(
        &self,
        w: &mut Work<F>,
        rows: usize,
        mut grads: Option<&mut [F]>,
        input_grad: bool,
    ) {
        for l in (0..self.layers.len()).rev() {
            let ly = self.layers[l];
            if let Some(gr) = grads.as_deref_mut() {
                let gw = &mut gr[ly.w..ly.w + ly.out * ly.inp];
                let hs = &w.h[l][..rows * ly.inp];
                let gs = &w.ga[..rows * ly.out];
                if ly.out <= THIN {
                    // gW[o, :] += Σ_i g_io h_i
                    for (gi, hi) in gs.chunks_exact(ly.out).zip(hs.chunks_exact(ly.inp)) {
                        for (&go, gwo) in gi.iter().zip(gw.chunks_exact_mut(ly.inp)) {
                            axpy(gwo, go, hi);
                        }
                    }
                } else if ly.inp <= THIN {
                    // gWᵀ[k, :] += Σ_i h_ik g_i, accumulated in `wt`, then added transposed.
                    let wt = &mut w.wt[..ly.inp * ly.out];
                    wt.iter_mut().for_each(|v| *v = F::zero());
                    for (gi, hi) in gs.chunks_exact(ly.out).zip(hs.chunks_exact(ly.inp)) {
                        for (&hk, wk) in hi.iter().zip(wt.chunks_exact_mut(ly.out)) {
                            axpy(wk, hk, gi);
                        }
                    }
                    for o in 0..ly.out {
                        for k in 0..ly.inp {
                            gw[o * ly.inp + k] += wt[k * ly.out + o];
                        }
                    }
                } else {
                    let g = view(gs, rows, ly.out);
                    let h = view(hs, rows, ly.inp);
                    general_mat_mul(
                        F::one(),
                        &g.t(),
                        &h,
                        F::one(),
                        &mut view_mut(gw, ly.out, ly.inp),
                    );
                }
                let gbias = &mut gr[ly.b..ly.b + ly.out];
                for row in w.ga[..rows * ly.out].chunks_exact(ly.out) {
                    gbias.iter_mut().zip(row).for_each(|(b, &v)| *b += v);
                }
            }
            if l == 0 && !input_grad {
                break;
            }
            if ly.out <= THIN {
                // gh_i = Σ_o g_io W[o, :]
                let wl = &self.params[ly.w..ly.b];
                let gs = &w.ga[..rows * ly.out];
                for (ghi, gi) in w.gb[..rows * ly.inp]
                    .chunks_exact_mut(ly.inp)
                    .zip(gs.chunks_exact(ly.out))
                {
                    ghi.iter_mut().for_each(|v| *v = F::zero());
                    for (&go, wo) in gi.iter().zip(wl.chunks_exact(ly.inp)) {
                        axpy(ghi, go, wo);
                    }
                }
            } else {
                let g = view(&w.ga, rows, ly.out);
                let mut gh = view_mut(&mut w.gb, rows, ly.inp);
                general_mat_mul(F::one(), &g, &self.weight(l), F::zero(), &mut gh);
            }
            if l > 0 {
                let dv = &w.d[l - 1][..rows * ly.inp];
                w.gb[..rows * ly.inp]
                    .iter_mut()
                    .zip(dv)
                    .for_each(|(g, &d)| *g *= d);
            }
            std::mem::swap(&mut w.ga, &mut w.gb);
        }
    }

    /// Runs `f` on every chunk of rows (in parallel when there is more than one) and returns
    /// the results in chunk order.
    fn chunked<T: Send>(
        &self,
        n: usize,
        f: impl Fn(&mut Work<F>, usize, usize) -> T + Sync,
    ) -> Vec<T> {
        let rs = ranges(n);
        let run = |&(a, b): &(usize, usize)| {
            let mut w = self.take_work(CHUNK.min(n));
            let r = f(&mut w, a, b);
            self.give_work(w);
            r
        };
        if rs.len() == 1 {
            rs.iter().map(run).collect()
        } else {
            rs.par_iter().map(run).collect()
        }
    }

    /// `v_θ(t_i, x_i)` for every row: `t` has length `n`, `x` shape `(n, d)`; the output is `(n, d)`.
    pub fn forward(&self, t: ArrayView1<f64>, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        check_batch(&t, &x, self.config.dim)?;
        let n = x.nrows();
        let d = self.config.dim;
        let mut out = Array2::zeros((n, d));
        if n == 0 {
            return Ok(out);
        }
        let t = t.to_vec();
        let parts = self.chunked(n, |w, a, b| {
            self.forward_chunk(w, &t[a..b], x.slice_axis(Axis(0), (a..b).into()), false);
            w.out[..(b - a) * d]
                .iter()
                .map(|v| v.to_f64())
                .collect::<Vec<_>>()
        });
        for (o, v) in out.iter_mut().zip(parts.iter().flatten()) {
            *o = *v;
        }
        Ok(out)
    }

    /// The flow-matching regression loss `mean over all entries of (v_θ(t, x) − target)²` and
    /// its gradient with respect to every parameter.
    pub fn loss_and_grad(
        &self,
        t: ArrayView1<f64>,
        x: ArrayView2<f64>,
        target: ArrayView2<f64>,
    ) -> Result<(f64, GradsOf<F>)> {
        let mut grads = GradsOf::zeros(self);
        let loss = self.loss_and_grad_into(t, x, target, &mut grads)?;
        Ok((loss, grads))
    }

    /// As [`MlpOf::loss_and_grad`], writing the gradient into `grads` (no allocation for a
    /// batch of at most [`CHUNK`] rows once the scratch buffers exist).
    pub fn loss_and_grad_into(
        &self,
        t: ArrayView1<f64>,
        x: ArrayView2<f64>,
        target: ArrayView2<f64>,
        grads: &mut GradsOf<F>,
    ) -> Result<f64> {
        check_batch(&t, &x, self.config.dim)?;
        if target.dim() != x.dim() {
            return Err(shape_err(
                "target",
                format!("{:?}", x.dim()),
                format!("{:?}", target.dim()),
            ));
        }
        check_finite("target", target.iter())?;
        if grads.flat.len() != self.params.len() {
            return Err(shape_err("grads", self.params.len(), grads.flat.len()));
        }
        let n = x.nrows();
        if n == 0 {
            return Err(AutogradError::Empty { what: "x".into() });
        }
        let d = self.config.dim;
        let scale = 2.0 / (n * d) as f64;
        let t = t.to_vec();
        let chunk = |w: &mut Work<F>, gr: &mut [F], a: usize, b: usize| -> f64 {
            let rows = b - a;
            self.forward_chunk(w, &t[a..b], x.slice_axis(Axis(0), (a..b).into()), true);
            let mut sq = 0.0;
            let tg = target.slice_axis(Axis(0), (a..b).into());
            for ((g, o), &y) in w.ga[..rows * d]
                .iter_mut()
                .zip(&w.out[..rows * d])
                .zip(tg.iter())
            {
                let diff = o.to_f64() - y;
                sq += diff * diff;
                *g = F::from_f64(diff * scale);
            }
            self.backward_chunk(w, rows, Some(gr), false);
            sq
        };
        grads.flat.iter_mut().for_each(|g| *g = F::zero());
        let sq = if n <= CHUNK {
            let mut w = self.take_work(n);
            let sq = chunk(&mut w, &mut grads.flat, 0, n);
            self.give_work(w);
            sq
        } else {
            let p = self.params.len();
            let parts = self.chunked(n, |w, a, b| {
                let mut gr = vec![F::zero(); p];
                let sq = chunk(w, &mut gr, a, b);
                (sq, gr)
            });
            let mut sq = 0.0;
            for (s, gr) in parts {
                sq += s;
                grads.flat.iter_mut().zip(&gr).for_each(|(g, &v)| *g += v);
            }
            sq
        };
        let loss = sq / (n * d) as f64;
        if !loss.is_finite() {
            return Err(AutogradError::NonFinite {
                what: "loss".into(),
                index: 0,
                value: loss,
            });
        }
        Ok(loss)
    }

    /// The vector-Jacobian product `cotᵢᵀ · ∂v_θ(t_i, x_i)/∂x_i` for every row: shape `(n, d)`.
    pub fn vjp(
        &self,
        t: ArrayView1<f64>,
        x: ArrayView2<f64>,
        cot: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        check_batch(&t, &x, self.config.dim)?;
        if cot.dim() != x.dim() {
            return Err(shape_err(
                "cotangent",
                format!("{:?}", x.dim()),
                format!("{:?}", cot.dim()),
            ));
        }
        check_finite("cotangent", cot.iter())?;
        let (n, d) = x.dim();
        let mut out = Array2::zeros((n, d));
        if n == 0 {
            return Ok(out);
        }
        let t = t.to_vec();
        let in0 = self.layers[0].inp;
        let parts = self.chunked(n, |w, a, b| {
            let rows = b - a;
            self.forward_chunk(w, &t[a..b], x.slice_axis(Axis(0), (a..b).into()), true);
            for (g, &c) in w.ga[..rows * d]
                .iter_mut()
                .zip(cot.slice_axis(Axis(0), (a..b).into()).iter())
            {
                *g = F::from_f64(c);
            }
            self.backward_chunk(w, rows, None, true);
            let mut r = Vec::with_capacity(rows * d);
            for row in w.ga[..rows * in0].chunks_exact(in0) {
                r.extend(row[..d].iter().map(|v| v.to_f64()));
            }
            r
        });
        for (o, v) in out.iter_mut().zip(parts.iter().flatten()) {
            *o = *v;
        }
        Ok(out)
    }

    /// The exact divergence `Σ_j ∂v_j/∂x_j` at every row, by forward-mode differentiation: the
    /// `d` tangent directions `e_j` are pushed through the layers next to the activations (one
    /// extra matrix product of `d·n` rows per layer).
    pub fn divergence(&self, t: ArrayView1<f64>, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        check_batch(&t, &x, self.config.dim)?;
        let (n, d) = x.dim();
        if n == 0 {
            return Ok(Array1::zeros(0));
        }
        let t = t.to_vec();
        let last = self.layers.len() - 1;
        let parts = self.chunked(n, |w, a, b| {
            let rows = b - a;
            self.forward_chunk(w, &t[a..b], x.slice_axis(Axis(0), (a..b).into()), true);
            // Tangents of layer 0's output: row i of block j is W_0[:, j].
            let w0 = self.weight(0);
            let mut tan = Array2::<F>::zeros((d * rows, self.layers[0].out));
            for j in 0..d {
                for mut r in tan
                    .slice_axis_mut(Axis(0), (j * rows..(j + 1) * rows).into())
                    .rows_mut()
                {
                    r.assign(&w0.column(j));
                }
            }
            for l in 0..=last {
                if l > 0 {
                    let mut next = Array2::<F>::zeros((d * rows, self.layers[l].out));
                    general_mat_mul(F::one(), &tan, &self.weight(l).t(), F::zero(), &mut next);
                    tan = next;
                }
                if l < last {
                    let width = self.layers[l].out;
                    let dv = view(&w.d[l], rows, width);
                    for j in 0..d {
                        let mut blk =
                            tan.slice_axis_mut(Axis(0), (j * rows..(j + 1) * rows).into());
                        blk *= &dv;
                    }
                }
            }
            (0..rows)
                .map(|i| (0..d).map(|j| tan[[j * rows + i, j]].to_f64()).sum::<f64>())
                .collect::<Vec<_>>()
        });
        Ok(parts.into_iter().flatten().collect())
    }

    /// Hutchinson's unbiased estimate of the divergence, `mean over probes of εᵀ (∂v/∂x) ε`,
    /// with `probes ≥ 1` probe vectors per row drawn from `rng` (Hutchinson, 1989; used for
    /// likelihoods by Grathwohl et al., 2019, FFJORD). Each probe costs one VJP.
    pub fn divergence_hutchinson<R: Rng + ?Sized>(
        &self,
        t: ArrayView1<f64>,
        x: ArrayView2<f64>,
        probes: usize,
        kind: Probe,
        rng: &mut R,
    ) -> Result<Array1<f64>> {
        if probes == 0 {
            return Err(AutogradError::InvalidParameter {
                name: "probes",
                value: "0".into(),
                reason: "at least one probe is needed",
            });
        }
        check_batch(&t, &x, self.config.dim)?;
        let mut est = Array1::zeros(x.nrows());
        for _ in 0..probes {
            let eps = Array2::from_shape_simple_fn(x.raw_dim(), || match kind {
                Probe::Rademacher => {
                    if rng.random::<bool>() {
                        1.0
                    } else {
                        -1.0
                    }
                }
                Probe::Gaussian => StandardNormal.sample(rng),
            });
            let vj = self.vjp(t, x, eps.view())?;
            est += &(&vj * &eps).sum_axis(Axis(1));
        }
        Ok(est / probes as f64)
    }

    /// Builds the network on the tape `g` from the inputs `t` (`n × 1`) and `x` (`n × d`).
    /// Returns the output `(n × d)` and one leaf per parameter tensor: for each layer the
    /// transposed weight `(in, out)` and the bias `(1, out)`.
    pub fn forward_graph(&self, g: &mut Graph<F>, t: Var, x: Var) -> Result<(Var, Vec<Var>)> {
        let tf = match self.config.time_features {
            TimeFeatures::Raw => t,
            TimeFeatures::Fourier { frequencies: k } => {
                let om = Array2::from_shape_fn((1, k), |(_, j)| {
                    F::from_f64(2.0 * std::f64::consts::PI * (j + 1) as f64)
                });
                let om = g.leaf(om);
                let a = g.matmul(t, om)?;
                let (s, c) = (g.sin(a)?, g.cos(a)?);
                g.concat_cols(&[s, c])?
            }
        };
        let mut h = g.concat_cols(&[x, tf])?;
        let mut leaves = Vec::new();
        for l in 0..self.layers.len() {
            let w = g.leaf(self.weight(l).t().to_owned());
            let b = g.leaf(
                Array2::from_shape_vec((1, self.layers[l].out), self.bias(l).to_vec())
                    .expect("len"),
            );
            leaves.extend([w, b]);
            let z = g.matmul(h, w)?;
            h = g.add_bias(z, b)?;
            if l + 1 < self.layers.len() {
                h = g.activate(h, self.config.activation)?;
            }
        }
        Ok((h, leaves))
    }

    /// Gathers the gradients of the leaves returned by [`MlpOf::forward_graph`] into the flat layout.
    pub fn collect_grads(&self, store: &GradStore<F>, leaves: &[Var]) -> Result<GradsOf<F>> {
        if leaves.len() != 2 * self.layers.len() {
            return Err(shape_err("leaves", 2 * self.layers.len(), leaves.len()));
        }
        let mut grads = GradsOf::zeros(self);
        for (l, ly) in self.layers.iter().enumerate() {
            if let Some(gw) = store.get(leaves[2 * l]) {
                let mut dst = view_mut(&mut grads.flat[ly.w..], ly.out, ly.inp);
                dst.assign(&gw.t());
            }
            if let Some(gb) = store.get(leaves[2 * l + 1]) {
                grads.flat[ly.b..ly.b + ly.out]
                    .iter_mut()
                    .zip(gb.iter())
                    .for_each(|(d, &s)| *d = s);
            }
        }
        Ok(grads)
    }

    /// [`MlpOf::loss_and_grad`] computed on the generic [`Graph`] tape (slower; the reference
    /// the fused path is tested against).
    pub fn loss_and_grad_tape(
        &self,
        t: ArrayView1<f64>,
        x: ArrayView2<f64>,
        target: ArrayView2<f64>,
    ) -> Result<(f64, GradsOf<F>)> {
        check_batch(&t, &x, self.config.dim)?;
        let mut g = Graph::new();
        let tv = g.leaf(t.mapv(F::from_f64).insert_axis(Axis(1)));
        let xv = g.leaf(x.mapv(F::from_f64));
        let yv = g.leaf(target.mapv(F::from_f64));
        let (out, leaves) = self.forward_graph(&mut g, tv, xv)?;
        let loss = g.mse(out, yv)?;
        let store = g.backward(loss)?;
        Ok((
            g.value(loss)[[0, 0]].to_f64(),
            self.collect_grads(&store, &leaves)?,
        ))
    }

    /// The parameters as named tensors in PyTorch's layout: `layers.{i}.weight` of shape
    /// `[out, in]` and `layers.{i}.bias` of shape `[out]`, as `f32`.
    pub fn to_tensors(&self) -> Vec<Tensor> {
        let mut v = Vec::new();
        for (i, ly) in self.layers.iter().enumerate() {
            let f = |s: &[F]| s.iter().map(|p| p.to_f64() as f32).collect::<Vec<f32>>();
            v.push((
                format!("layers.{i}.weight"),
                vec![ly.out, ly.inp],
                f(&self.params[ly.w..ly.b]),
            ));
            v.push((
                format!("layers.{i}.bias"),
                vec![ly.out],
                f(&self.params[ly.b..ly.b + ly.out]),
            ));
        }
        v
    }

    /// The network with architecture `config` and parameters from `tensors` (as written by
    /// [`MlpOf::to_tensors`]); every expected name must be present once with its exact shape, and
    /// no other name may appear.
    pub fn from_tensors(config: &MlpConfig, tensors: &[Tensor]) -> Result<Self> {
        config.check()?;
        let mut params = Vec::with_capacity(config.num_params());
        let mut expected = Vec::new();
        for (i, (out, inp)) in config.layer_shapes().into_iter().enumerate() {
            expected.push((format!("layers.{i}.weight"), vec![out, inp]));
            expected.push((format!("layers.{i}.bias"), vec![out]));
        }
        for (name, _, _) in tensors {
            if !expected.iter().any(|(e, _)| e == name) {
                return Err(AutogradError::Tensor {
                    name: name.clone(),
                    reason: format!("unexpected for a network of {} layers", expected.len() / 2),
                });
            }
        }
        for (name, shape) in &expected {
            let mut found = tensors.iter().filter(|(n, _, _)| n == name);
            let (_, s, data) = found.next().ok_or_else(|| AutogradError::Tensor {
                name: name.clone(),
                reason: "missing".into(),
            })?;
            if found.next().is_some() {
                return Err(AutogradError::Tensor {
                    name: name.clone(),
                    reason: "given twice".into(),
                });
            }
            if s != shape || data.len() != shape.iter().product::<usize>() {
                return Err(AutogradError::Tensor {
                    name: name.clone(),
                    reason: format!(
                        "expected shape {shape:?}, found {s:?} with {} values",
                        data.len()
                    ),
                });
            }
            params.extend(data.iter().map(|&v| F::from_f64(v as f64)));
        }
        Self::from_params(config, params)
    }
}
