use crate::error::{AutogradError, Result, check_finite, shape_err};
use crate::graph::{GradStore, Graph, Var};
use crate::kernel::{
    LANES, Line, at, at_mut, mm, mul_lines, outer_acc, pack, pad, sum_lines, transpose,
};
use crate::{Activation, Float, MlpConfig, TimeFeatures};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::{Mutex, OnceLock};

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
/// derivatives run fused, preallocated kernels over chunks of [`CHUNK`] rows, in parallel with
/// rayon when there is more than one chunk: register-tiled matrix products on a feature-major
/// layout of 16-point lines, with the weights packed once per parameter change, activation
/// derivatives computed in the forward pass while its output is in L1. Products use fused
/// multiply-adds when the build targets a CPU with FMA (this workspace's default), so an
/// FMA build and a plain x86-64 build differ in the last bits; each is deterministic.
/// [`MlpOf::forward_graph`] builds the same network on a [`Graph`] tape; the tests check that
/// both give the same gradients.
pub struct MlpOf<F: Float> {
    config: MlpConfig,
    layers: Vec<Layer>,
    params: Vec<F>,
    pool: Mutex<Vec<Work<F>>>,
    /// The weights packed for the kernels, made on first use after a parameter change.
    packed: OnceLock<Packed<F>>,
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
            packed: OnceLock::new(),
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

/// Scratch buffers of one chunk, in the blocked layout of [`crate::kernel`], reused across calls.
struct Work<F> {
    /// Capacity in points (a multiple of [`LANES`]).
    cap: usize,
    /// The input of every layer (`h[0]`: the input features).
    h: Vec<Vec<Line<F>>>,
    /// The activation derivative at every hidden layer's output.
    d: Vec<Vec<Line<F>>>,
    out: Vec<Line<F>>,
    ga: Vec<Line<F>>,
    gb: Vec<Line<F>>,
    /// A transposed layer input (weight gradients).
    ht: Vec<Line<F>>,
}

/// Every layer's weight packed for the kernels: `fwd[l]` is `W_l`, `bwd[l]` is `W_lᵀ`.
struct Packed<F> {
    fwd: Vec<Vec<F>>,
    bwd: Vec<Vec<F>>,
}

/// The activation in place on a block of lines, `z ← f(z)`, with `f'(z)` into `d` if given.
#[inline(never)]
fn act_lines<F: Float>(act: Activation, z: &mut [Line<F>], d: Option<&mut [Line<F>]>) {
    match d {
        Some(d) => {
            for (z, d) in z.iter_mut().zip(d.iter_mut()) {
                act_line(act, &mut z.0, Some(&mut d.0));
            }
        }
        None => z.iter_mut().for_each(|z| act_line(act, &mut z.0, None)),
    }
}

/// The activation `f` of a line: `z ← f(z)`, and `f'(z)` into `d` if given. SELU (the
/// default) has its own branch-free form that the compiler vectorises.
#[inline(always)]
fn act_line<F: Float>(act: Activation, y: &mut [F; LANES], d: Option<&mut [F; LANES]>) {
    if act == Activation::Selu {
        let l = F::from_f64(crate::SELU_LAMBDA);
        let la = F::from_f64(crate::SELU_LAMBDA * crate::SELU_ALPHA);
        let zero = F::zero();
        match d {
            Some(d) => {
                for (y, d) in y.iter_mut().zip(d.iter_mut()) {
                    let z = *y;
                    let pos = z > zero;
                    let e = (if pos { zero } else { z }).exp();
                    *d = if pos { l } else { la * e };
                    *y = if pos { l * z } else { e.mul_add(la, -la) };
                }
            }
            None => {
                for y in y.iter_mut() {
                    let z = *y;
                    let pos = z > zero;
                    let e = (if pos { zero } else { z }).exp();
                    *y = if pos { l * z } else { e.mul_add(la, -la) };
                }
            }
        }
        return;
    }
    match d {
        Some(d) => {
            for (y, d) in y.iter_mut().zip(d.iter_mut()) {
                (*y, *d) = act.eval(*y);
            }
        }
        None => {
            for y in y.iter_mut() {
                *y = act.eval(*y).0;
            }
        }
    }
}

/// `gW[o, k] += Σ_i g_io h_ik` for one layer from its blocked output cotangent `gs` and
/// input `hs`, with the wider of the two operands along the lanes (`ht`: scratch).
fn weight_grad<F: Float>(
    ly: Layer,
    gs: &[Line<F>],
    hs: &[Line<F>],
    ht: &mut Vec<Line<F>>,
    gw: &mut [F],
) {
    let (kp, mp) = (pad(ly.inp), pad(ly.out));
    if ly.inp >= ly.out.min(LANES) {
        transpose(hs, kp, ly.inp, ht);
        outer_acc(gs, ly.out, ht, ly.inp, |o, k, v| gw[o * ly.inp + k] += v);
    } else {
        transpose(gs, mp, ly.out, ht);
        outer_acc(hs, ly.inp, ht, ly.out, |k, o, v| gw[o * ly.inp + k] += v);
    }
}

fn view<F>(v: &[F], rows: usize, cols: usize) -> ArrayView2<'_, F> {
    ArrayView2::from_shape((rows, cols), &v[..rows * cols]).expect("buffer sized")
}

fn view_mut<F>(v: &mut [F], rows: usize, cols: usize) -> ArrayViewMut2<'_, F> {
    ArrayViewMut2::from_shape((rows, cols), &mut v[..rows * cols]).expect("buffer sized")
}

/// Features `0..w` of the first `rows` points of the blocked buffer `buf` (`wp` lines per block)
/// as row-major `f64` values, `w` per point.
fn unblock<F: Float>(buf: &[Line<F>], rows: usize, wp: usize, w: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows * w);
    for i in 0..rows {
        out.extend((0..w).map(|f| at(buf, wp, i, f).to_f64()));
    }
    out
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

/// Checks the context `c` of a batch of `n` rows against a network with `k` context columns:
/// `k = 0` takes no context (or an `(n, 0)` one), `k > 0` needs a finite `(n, k)` array.
fn check_context<'a>(
    c: Option<ArrayView2<'a, f64>>,
    n: usize,
    k: usize,
) -> Result<Option<ArrayView2<'a, f64>>> {
    match (c, k) {
        (None, 0) => Ok(None),
        (Some(c), 0) if c.ncols() == 0 && c.nrows() == n => Ok(None),
        (Some(c), 0) => Err(shape_err(
            "context c",
            "no context (this network is unconditional)",
            format!("{:?}", c.dim()),
        )),
        (None, k) => Err(shape_err(
            "context c",
            format!("({n}, {k}): this network is conditional, give one context row per point"),
            "no context",
        )),
        (Some(c), k) => {
            if c.dim() != (n, k) {
                return Err(shape_err(
                    "context c",
                    format!("({n}, {k})"),
                    format!("{:?}", c.dim()),
                ));
            }
            check_finite("context c", c.iter())?;
            Ok(Some(c))
        }
    }
}

/// Rows `a..b` of an optional context.
fn ctx_rows<'a>(c: Option<ArrayView2<'a, f64>>, a: usize, b: usize) -> Option<ArrayView2<'a, f64>> {
    c.map(|mut c| {
        c.slice_axis_inplace(Axis(0), (a..b).into());
        c
    })
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
            packed: OnceLock::new(),
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
        self.packed.take();
        &mut self.params
    }

    /// Replaces all parameters; the length must be [`MlpOf::num_params`].
    pub fn set_params(&mut self, params: &[F]) -> Result<()> {
        if params.len() != self.params.len() {
            return Err(shape_err("params", self.params.len(), params.len()));
        }
        self.packed.take();
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
                let nb = rows.div_ceil(LANES);
                let z = |c: usize| vec![Line::zero(); nb * pad(c)];
                let maxw = self
                    .layers
                    .iter()
                    .map(|l| l.inp.max(l.out))
                    .max()
                    .unwrap_or(1);
                Work {
                    cap: nb * LANES,
                    h: self.layers.iter().map(|l| z(l.inp)).collect(),
                    d: self.layers[1..].iter().map(|l| z(l.inp)).collect(),
                    out: z(self.config.dim),
                    ga: z(maxw),
                    gb: z(maxw),
                    ht: Vec::new(),
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

    /// The weights packed for the kernels (packed once per parameter change: `params_mut` and
    /// `set_params` drop the packed copy).
    fn packed(&self) -> &Packed<F> {
        self.packed.get_or_init(|| {
            let mut fwd = Vec::new();
            let mut bwd = Vec::new();
            for ly in &self.layers {
                let wl = &self.params[ly.w..ly.b];
                let mut p = Vec::new();
                pack(wl, ly.out, ly.inp, pad(ly.inp), false, &mut p);
                fwd.push(p);
                let mut p = Vec::new();
                pack(wl, ly.inp, ly.out, pad(ly.out), true, &mut p);
                bwd.push(p);
            }
            Packed { fwd, bwd }
        })
    }

    /// Forward pass of one chunk: input features, hidden activations (and their derivatives
    /// if `deriv`), output into `w.out`.
    fn forward_chunk(
        &self,
        w: &mut Work<F>,
        pk: &Packed<F>,
        t: &[f64],
        x: ArrayView2<f64>,
        c: Option<ArrayView2<f64>>,
        deriv: bool,
    ) {
        let rows = x.nrows();
        let nb = rows.div_ceil(LANES);
        let d = self.config.dim;
        let c0 = d + self.config.time_features.width();
        let in0p = pad(self.layers[0].inp);
        for (blk, hb) in w.h[0][..nb * in0p].chunks_exact_mut(in0p).enumerate() {
            hb.iter_mut().for_each(|l| *l = Line::zero());
            for lane in 0..LANES.min(rows - blk * LANES) {
                let i = blk * LANES + lane;
                for j in 0..d {
                    hb[j].0[lane] = F::from_f64(x[[i, j]]);
                }
                let tf = F::from_f64(t[i]);
                match self.config.time_features {
                    TimeFeatures::Raw => hb[d].0[lane] = tf,
                    TimeFeatures::Fourier { frequencies: k } => {
                        for j in 0..k {
                            let om = F::from_f64(2.0 * std::f64::consts::PI * (j + 1) as f64);
                            let a = tf * om;
                            hb[d + j].0[lane] = a.sin();
                            hb[d + k + j].0[lane] = a.cos();
                        }
                    }
                }
                if let Some(c) = &c {
                    for (j, &v) in c.row(i).iter().enumerate() {
                        hb[c0 + j].0[lane] = F::from_f64(v);
                    }
                }
            }
        }
        let last = self.layers.len() - 1;
        let act = self.config.activation;
        for (l, ly) in self.layers.iter().enumerate() {
            let (kp, mp) = (pad(ly.inp), pad(ly.out));
            let (inputs, rest) = w.h.split_at_mut(l + 1);
            let b = &inputs[l][..nb * kp];
            let bias = Some(self.bias(l));
            if l == last {
                let c = &mut w.out[..nb * mp];
                mm(&pk.fwd[l], bias, kp, ly.out, b, c, |_, _| {});
            } else if deriv {
                let dv = &mut w.d[l][..nb * mp];
                let c = &mut rest[0][..nb * mp];
                mm(&pk.fwd[l], bias, kp, ly.out, b, c, |blk, z| {
                    act_lines(act, z, Some(&mut dv[blk * mp..blk * mp + ly.out]))
                });
            } else {
                let c = &mut rest[0][..nb * mp];
                mm(&pk.fwd[l], bias, kp, ly.out, b, c, |_, z| {
                    act_lines(act, z, None)
                });
            }
        }
    }

    /// Backward pass of one chunk of `rows` points from the output cotangent in `w.ga`
    /// (padding lanes zero). Accumulates the parameter gradient into `grads` (if given); leaves
    /// the cotangent of the input features in `w.ga` if `input_grad`.
    fn backward_chunk(
        &self,
        w: &mut Work<F>,
        pk: &Packed<F>,
        rows: usize,
        mut grads: Option<&mut [F]>,
        input_grad: bool,
    ) {
        let nb = rows.div_ceil(LANES);
        for l in (0..self.layers.len()).rev() {
            let ly = self.layers[l];
            let (kp, mp) = (pad(ly.inp), pad(ly.out));
            if let Some(gr) = grads.as_deref_mut() {
                let gs = &w.ga[..nb * mp];
                let gw = &mut gr[ly.w..ly.b];
                weight_grad(ly, gs, &w.h[l][..nb * kp], &mut w.ht, gw);
                sum_lines(gs, mp, &mut gr[ly.b..ly.b + ly.out]);
            }
            if l == 0 && !input_grad {
                break;
            }
            let gs = &w.ga[..nb * mp];
            let gh = &mut w.gb[..nb * kp];
            if l > 0 {
                let dv = &w.d[l - 1][..nb * kp];
                mm(&pk.bwd[l], None, mp, ly.inp, gs, gh, |blk, g| {
                    mul_lines(g, &dv[blk * kp..])
                });
            } else {
                mm(&pk.bwd[l], None, mp, ly.inp, gs, gh, |_, _| {});
            }
            std::mem::swap(&mut w.ga, &mut w.gb);
        }
    }

    /// Benchmark support, not part of the API: only the matrix products of one training step
    /// on `rows ≤ CHUNK` points (every layer's forward product, the input-gradient products
    /// and the weight-gradient products with their transposes), without activations, loss,
    /// bias gradients or conversions, on whatever the scratch buffers hold. The floor that
    /// `loss_and_grad` is compared with in `benches/step.rs`. A `grads` of another network's
    /// size is an error.
    #[doc(hidden)]
    pub fn bench_products_only(&self, rows: usize, grads: &mut GradsOf<F>) -> Result<()> {
        if grads.flat.len() != self.params.len() {
            return Err(shape_err("grads", self.params.len(), grads.flat.len()));
        }
        let rows = rows.min(CHUNK);
        let nb = rows.div_ceil(LANES);
        let mut w = self.take_work(rows);
        let pk = self.packed();
        for (l, ly) in self.layers.iter().enumerate() {
            let (kp, mp) = (pad(ly.inp), pad(ly.out));
            let (inputs, rest) = w.h.split_at_mut(l + 1);
            let c = match rest.first_mut() {
                Some(c) => &mut c[..nb * mp],
                None => &mut w.out[..nb * mp],
            };
            mm(
                &pk.fwd[l],
                Some(self.bias(l)),
                kp,
                ly.out,
                &inputs[l][..nb * kp],
                c,
                |_, _| {},
            );
        }
        for (l, ly) in self.layers.iter().enumerate().rev() {
            let (kp, mp) = (pad(ly.inp), pad(ly.out));
            let gw = &mut grads.flat[ly.w..ly.b];
            weight_grad(*ly, &w.ga[..nb * mp], &w.h[l][..nb * kp], &mut w.ht, gw);
            if l > 0 {
                let gh = &mut w.gb[..nb * kp];
                mm(
                    &pk.bwd[l],
                    None,
                    mp,
                    ly.inp,
                    &w.ga[..nb * mp],
                    gh,
                    |_, _| {},
                );
            }
        }
        self.give_work(w);
        Ok(())
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
    /// A conditional network (`context > 0`) needs [`MlpOf::forward_ctx`].
    pub fn forward(&self, t: ArrayView1<f64>, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        self.forward_ctx(t, x, None)
    }

    /// `v_θ(t_i, x_i, c_i)` for every row, `c` of shape `(n, k)` with `k = config().context`
    /// (`None` for an unconditional network). A missing context, one of the wrong shape or a
    /// non-finite one is an error.
    ///
    /// ```
    /// use fm_autograd::{Mlp, MlpConfig};
    /// let cfg = MlpConfig { context: 1, hidden: vec![8], ..Default::default() };
    /// let mlp = Mlp::new(&cfg, &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0)).unwrap();
    /// let (t, x) = (ndarray::array![0.5, 0.5], ndarray::array![[0.0, 1.0], [0.0, 1.0]]);
    /// let c = ndarray::array![[-1.0], [1.0]];
    /// let v = mlp.forward_ctx(t.view(), x.view(), Some(c.view())).unwrap();
    /// assert_ne!(v.row(0), v.row(1)); // same (t, x), different contexts
    /// assert!(mlp.forward(t.view(), x.view()).is_err()); // the context is required
    /// ```
    pub fn forward_ctx(
        &self,
        t: ArrayView1<f64>,
        x: ArrayView2<f64>,
        c: Option<ArrayView2<f64>>,
    ) -> Result<Array2<f64>> {
        check_batch(&t, &x, self.config.dim)?;
        let c = check_context(c, x.nrows(), self.config.context)?;
        let n = x.nrows();
        let d = self.config.dim;
        let mut out = Array2::zeros((n, d));
        if n == 0 {
            return Ok(out);
        }
        let t = t.to_vec();
        let pk = self.packed();
        let parts = self.chunked(n, |w, a, b| {
            let x = x.slice_axis(Axis(0), (a..b).into());
            self.forward_chunk(w, pk, &t[a..b], x, ctx_rows(c, a, b), false);
            unblock(&w.out, b - a, pad(d), d)
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
        self.loss_and_grad_ctx(t, x, None, target)
    }

    /// [`MlpOf::loss_and_grad`] of a conditional network: the loss of `v_θ(t, x, c)` (`c` as in
    /// [`MlpOf::forward_ctx`]).
    ///
    /// ```
    /// use fm_autograd::{Mlp, MlpConfig};
    /// let mlp = Mlp::new(&MlpConfig { context: 2, ..Default::default() }, &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0)).unwrap();
    /// let (t, x) = (ndarray::array![0.5], ndarray::array![[0.0, 1.0]]);
    /// let c = ndarray::array![[3.0, -1.0]];
    /// let (loss, grads) = mlp.loss_and_grad_ctx(t.view(), x.view(), Some(c.view()), x.view()).unwrap();
    /// assert!(loss.is_finite() && grads.norm() > 0.0);
    /// ```
    pub fn loss_and_grad_ctx(
        &self,
        t: ArrayView1<f64>,
        x: ArrayView2<f64>,
        c: Option<ArrayView2<f64>>,
        target: ArrayView2<f64>,
    ) -> Result<(f64, GradsOf<F>)> {
        let mut grads = GradsOf::zeros(self);
        let loss = self.loss_and_grad_into_ctx(t, x, c, target, &mut grads)?;
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
        self.loss_and_grad_into_ctx(t, x, None, target, grads)
    }

    /// [`MlpOf::loss_and_grad_into`] of a conditional network (`c` as in [`MlpOf::forward_ctx`]).
    ///
    /// ```
    /// use fm_autograd::{Grads, Mlp, MlpConfig};
    /// let mlp = Mlp::new(&MlpConfig { context: 1, ..Default::default() }, &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0)).unwrap();
    /// let mut grads = Grads::zeros(&mlp);
    /// let (t, x, c) = (ndarray::array![0.5], ndarray::array![[0.0, 1.0]], ndarray::array![[2.0]]);
    /// let loss = mlp.loss_and_grad_into_ctx(t.view(), x.view(), Some(c.view()), x.view(), &mut grads).unwrap();
    /// assert!(loss.is_finite());
    /// ```
    pub fn loss_and_grad_into_ctx(
        &self,
        t: ArrayView1<f64>,
        x: ArrayView2<f64>,
        c: Option<ArrayView2<f64>>,
        target: ArrayView2<f64>,
        grads: &mut GradsOf<F>,
    ) -> Result<f64> {
        check_batch(&t, &x, self.config.dim)?;
        let c = check_context(c, x.nrows(), self.config.context)?;
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
        let pk = self.packed();
        let dp = pad(d);
        let chunk = |w: &mut Work<F>, gr: &mut [F], a: usize, b: usize| -> f64 {
            let rows = b - a;
            let xs = x.slice_axis(Axis(0), (a..b).into());
            self.forward_chunk(w, pk, &t[a..b], xs, ctx_rows(c, a, b), true);
            let mut sq = 0.0;
            let tg = target.slice_axis(Axis(0), (a..b).into());
            let nb = rows.div_ceil(LANES);
            w.ga[..nb * dp].iter_mut().for_each(|l| *l = Line::zero());
            for (i, tr) in tg.rows().into_iter().enumerate() {
                for (j, &y) in tr.iter().enumerate() {
                    let diff = at(&w.out, dp, i, j).to_f64() - y;
                    sq += diff * diff;
                    *at_mut(&mut w.ga, dp, i, j) = F::from_f64(diff * scale);
                }
            }
            self.backward_chunk(w, pk, rows, Some(gr), false);
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
        self.vjp_ctx(t, x, None, cot)
    }

    /// [`MlpOf::vjp`] of a conditional network: `cotᵢᵀ · ∂v_θ(t_i, x_i, c_i)/∂x_i` (the context
    /// is held fixed; `c` as in [`MlpOf::forward_ctx`]).
    ///
    /// ```
    /// use fm_autograd::{Mlp, MlpConfig};
    /// let mlp = Mlp::new(&MlpConfig { context: 1, ..Default::default() }, &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0)).unwrap();
    /// let (t, x, c) = (ndarray::array![0.5], ndarray::array![[0.0, 1.0]], ndarray::array![[2.0]]);
    /// let g = mlp.vjp_ctx(t.view(), x.view(), Some(c.view()), x.view()).unwrap();
    /// assert_eq!(g.dim(), (1, 2));
    /// ```
    pub fn vjp_ctx(
        &self,
        t: ArrayView1<f64>,
        x: ArrayView2<f64>,
        c: Option<ArrayView2<f64>>,
        cot: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        check_batch(&t, &x, self.config.dim)?;
        let c = check_context(c, x.nrows(), self.config.context)?;
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
        let pk = self.packed();
        let (dp, in0p) = (pad(d), pad(self.layers[0].inp));
        let parts = self.chunked(n, |w, a, b| {
            let rows = b - a;
            let xs = x.slice_axis(Axis(0), (a..b).into());
            self.forward_chunk(w, pk, &t[a..b], xs, ctx_rows(c, a, b), true);
            let nb = rows.div_ceil(LANES);
            w.ga[..nb * dp].iter_mut().for_each(|l| *l = Line::zero());
            let cot = cot.slice_axis(Axis(0), (a..b).into());
            for (i, cr) in cot.rows().into_iter().enumerate() {
                for (j, &c) in cr.iter().enumerate() {
                    *at_mut(&mut w.ga, dp, i, j) = F::from_f64(c);
                }
            }
            self.backward_chunk(w, pk, rows, None, true);
            unblock(&w.ga, rows, in0p, d)
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
        self.divergence_ctx(t, x, None)
    }

    /// [`MlpOf::divergence`] of a conditional network: `Σ_j ∂v_j(t, x, c)/∂x_j` with the context
    /// held fixed (`c` as in [`MlpOf::forward_ctx`]).
    ///
    /// ```
    /// use fm_autograd::{Mlp, MlpConfig};
    /// let mlp = Mlp::new(&MlpConfig { context: 1, ..Default::default() }, &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0)).unwrap();
    /// let (t, x, c) = (ndarray::array![0.5], ndarray::array![[0.0, 1.0]], ndarray::array![[2.0]]);
    /// let div = mlp.divergence_ctx(t.view(), x.view(), Some(c.view())).unwrap();
    /// assert!(div[0].is_finite());
    /// ```
    pub fn divergence_ctx(
        &self,
        t: ArrayView1<f64>,
        x: ArrayView2<f64>,
        c: Option<ArrayView2<f64>>,
    ) -> Result<Array1<f64>> {
        check_batch(&t, &x, self.config.dim)?;
        let c = check_context(c, x.nrows(), self.config.context)?;
        let (n, d) = x.dim();
        if n == 0 {
            return Ok(Array1::zeros(0));
        }
        let t = t.to_vec();
        let last = self.layers.len() - 1;
        let pk = self.packed();
        let w0 = &self.params[self.layers[0].w..self.layers[0].b];
        let in0 = self.layers[0].inp;
        let parts = self.chunked(n, |w, a, b| {
            let rows = b - a;
            let nb = rows.div_ceil(LANES);
            let xs = x.slice_axis(Axis(0), (a..b).into());
            self.forward_chunk(w, pk, &t[a..b], xs, ctx_rows(c, a, b), true);
            let mut div = vec![0.0; rows];
            if last == 0 {
                // A single affine map: the divergence is the trace of its square part.
                let tr: f64 = (0..d).map(|j| w0[j * in0 + j].to_f64()).sum();
                div.iter_mut().for_each(|v| *v = tr);
                return div;
            }
            let mut tan = Vec::new();
            let mut next = Vec::new();
            let (mp0, dp) = (pad(self.layers[0].out), pad(d));
            for j in 0..d {
                // Tangent of layer 0's activation along e_j: f'(z_0) ⊙ W_0[:, j].
                tan.clear();
                tan.extend_from_slice(&w.d[0][..nb * mp0]);
                for blk in tan.chunks_exact_mut(mp0) {
                    for (o, line) in blk.iter_mut().enumerate().take(self.layers[0].out) {
                        let c = w0[o * in0 + j];
                        line.0.iter_mut().for_each(|v| *v *= c);
                    }
                }
                for l in 1..=last {
                    let ly = self.layers[l];
                    let (kp, mp) = (pad(ly.inp), pad(ly.out));
                    next.clear();
                    next.resize(nb * mp, Line::zero());
                    if l < last {
                        let dv = &w.d[l][..nb * mp];
                        mm(&pk.fwd[l], None, kp, ly.out, &tan, &mut next, |blk, t| {
                            mul_lines(t, &dv[blk * mp..])
                        });
                    } else {
                        mm(&pk.fwd[l], None, kp, ly.out, &tan, &mut next, |_, _| {});
                    }
                    std::mem::swap(&mut tan, &mut next);
                }
                for (i, v) in div.iter_mut().enumerate() {
                    *v += at(&tan, dp, i, j).to_f64();
                }
            }
            div
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
        self.divergence_hutchinson_ctx(t, x, None, probes, kind, rng)
    }

    /// [`MlpOf::divergence_hutchinson`] of a conditional network (`c` as in
    /// [`MlpOf::forward_ctx`]).
    ///
    /// ```
    /// use fm_autograd::{Mlp, MlpConfig, Probe};
    /// let mlp = Mlp::new(&MlpConfig { context: 1, ..Default::default() }, &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0)).unwrap();
    /// let (t, x, c) = (ndarray::array![0.5], ndarray::array![[0.0, 1.0]], ndarray::array![[2.0]]);
    /// let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    /// let est = mlp.divergence_hutchinson_ctx(t.view(), x.view(), Some(c.view()), 4, Probe::Rademacher, &mut rng).unwrap();
    /// assert!(est[0].is_finite());
    /// ```
    pub fn divergence_hutchinson_ctx<R: Rng + ?Sized>(
        &self,
        t: ArrayView1<f64>,
        x: ArrayView2<f64>,
        c: Option<ArrayView2<f64>>,
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
        let c = check_context(c, x.nrows(), self.config.context)?;
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
            let vj = self.vjp_ctx(t, x, c, eps.view())?;
            est += &(&vj * &eps).sum_axis(Axis(1));
        }
        Ok(est / probes as f64)
    }

    /// Builds the network on the tape `g` from the inputs `t` (`n × 1`) and `x` (`n × d`).
    /// Returns the output `(n × d)` and one leaf per parameter tensor: for each layer the
    /// transposed weight `(in, out)` and the bias `(1, out)`.
    pub fn forward_graph(&self, g: &mut Graph<F>, t: Var, x: Var) -> Result<(Var, Vec<Var>)> {
        self.forward_graph_ctx(g, t, x, None)
    }

    /// [`MlpOf::forward_graph`] of a conditional network: the input is `[x, time features, c]`
    /// with `c` an `(n, k)` variable (`None` for an unconditional network).
    ///
    /// ```
    /// use fm_autograd::{Graph, MlpConfig, MlpOf};
    /// let mlp = MlpOf::<f64>::new(&MlpConfig { context: 1, ..Default::default() }, &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0)).unwrap();
    /// let (t, x, c) = (ndarray::array![[0.5]], ndarray::array![[0.0, 1.0]], ndarray::array![[2.0]]);
    /// let mut g = Graph::new();
    /// let (tv, xv, cv) = (g.leaf(t.clone()), g.leaf(x.clone()), g.leaf(c.clone()));
    /// let (out, _) = mlp.forward_graph_ctx(&mut g, tv, xv, Some(cv)).unwrap();
    /// let fused = mlp.forward_ctx(t.column(0), x.view(), Some(c.view())).unwrap();
    /// assert!((g.value(out) - &fused).iter().all(|v| v.abs() < 1e-12));
    /// ```
    pub fn forward_graph_ctx(
        &self,
        g: &mut Graph<F>,
        t: Var,
        x: Var,
        c: Option<Var>,
    ) -> Result<(Var, Vec<Var>)> {
        let k = self.config.context;
        match (c, k) {
            (None, 0) => {}
            (Some(cv), k) if k > 0 => {
                let cols = g.value(cv).ncols();
                if cols != k {
                    return Err(shape_err(
                        "context c",
                        format!("(n, {k})"),
                        format!("(n, {cols})"),
                    ));
                }
            }
            (None, k) => {
                return Err(shape_err("context c", format!("(n, {k})"), "no context"));
            }
            (Some(_), _) => {
                return Err(shape_err(
                    "context c",
                    "no context (this network is unconditional)",
                    "a context",
                ));
            }
        }
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
        let mut h = match c {
            Some(cv) => g.concat_cols(&[x, tf, cv])?,
            None => g.concat_cols(&[x, tf])?,
        };
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
        self.loss_and_grad_tape_ctx(t, x, None, target)
    }

    /// [`MlpOf::loss_and_grad_tape`] of a conditional network (`c` as in
    /// [`MlpOf::forward_ctx`]): the reference for [`MlpOf::loss_and_grad_ctx`].
    ///
    /// ```
    /// use fm_autograd::{MlpConfig, MlpOf};
    /// let mlp = MlpOf::<f64>::new(&MlpConfig { context: 1, ..Default::default() }, &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0)).unwrap();
    /// let (t, x, c) = (ndarray::array![0.5], ndarray::array![[0.0, 1.0]], ndarray::array![[2.0]]);
    /// let (a, _) = mlp.loss_and_grad_tape_ctx(t.view(), x.view(), Some(c.view()), x.view()).unwrap();
    /// let (b, _) = mlp.loss_and_grad_ctx(t.view(), x.view(), Some(c.view()), x.view()).unwrap();
    /// assert!((a - b).abs() < 1e-12);
    /// ```
    pub fn loss_and_grad_tape_ctx(
        &self,
        t: ArrayView1<f64>,
        x: ArrayView2<f64>,
        c: Option<ArrayView2<f64>>,
        target: ArrayView2<f64>,
    ) -> Result<(f64, GradsOf<F>)> {
        check_batch(&t, &x, self.config.dim)?;
        let c = check_context(c, x.nrows(), self.config.context)?;
        let mut g = Graph::new();
        let tv = g.leaf(t.mapv(F::from_f64).insert_axis(Axis(1)));
        let xv = g.leaf(x.mapv(F::from_f64));
        let cv = c.map(|c| g.leaf(c.mapv(F::from_f64)));
        let yv = g.leaf(target.mapv(F::from_f64));
        let (out, leaves) = self.forward_graph_ctx(&mut g, tv, xv, cv)?;
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
