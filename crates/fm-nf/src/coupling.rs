//! The affine coupling flow (RealNVP, Dinh, Sohl-Dickstein & Bengio, 2017).

use crate::error::{NfError, Result, invalid};
use crate::params::{GraphMlp, Layout, ParamSpec, give_pool, ones_col, take_pool};
use crate::train::MaxLikelihood;
use fm_autograd::{Activation, Graph, Var};
use fm_core::{LogDensity, StandardNormal};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis, Slice, Zip};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Rows evaluated per tape by the value-only entry points (bounds the tape's memory).
const CHUNK_ROWS: usize = 4096;

/// The settings of a [`CouplingFlow`]. `Default`: 2-D, 8 layers, conditioners with two hidden
/// layers of 64 (zuko's `RealNVP` defaults), SiLU, log-scale bound 2, ActNorm on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CouplingConfig {
    /// Data dimension `d ≥ 2`.
    pub dim: usize,
    /// The number `K ≥ 1` of coupling layers.
    pub layers: usize,
    /// Hidden widths of each layer's conditioner MLP (at least one, all positive).
    pub hidden: Vec<usize>,
    /// The conditioner's activation.
    pub activation: Activation,
    /// The bound `B > 0` of the log-scales: `s = B tanh(ŝ / B)`, so each layer scales by at most `e^B`.
    pub scale_bound: f64,
    /// Whether each layer starts with an ActNorm (per-dimension affine map, data-initialised).
    pub actnorm: bool,
}

impl Default for CouplingConfig {
    fn default() -> Self {
        Self {
            dim: 2,
            layers: 8,
            hidden: vec![64, 64],
            activation: Activation::Silu,
            scale_bound: 2.0,
            actnorm: true,
        }
    }
}

impl CouplingConfig {
    /// Checks every field: `dim ≥ 2`, `layers ≥ 1`, a non-empty `hidden` of positive widths,
    /// a positive finite `scale_bound`.
    pub fn check(&self) -> Result<()> {
        if self.dim < 2 {
            return Err(invalid(
                "dim",
                self.dim,
                "a coupling layer splits the dimensions in two, so it needs d ≥ 2",
            ));
        }
        if self.layers == 0 {
            return Err(invalid("layers", 0, "give at least one coupling layer"));
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(invalid(
                "hidden",
                format!("{:?}", self.hidden),
                "give at least one hidden layer, every width at least 1",
            ));
        }
        if !(self.scale_bound > 0.0 && self.scale_bound.is_finite()) {
            return Err(invalid(
                "scale_bound",
                self.scale_bound,
                "the log-scale bound must be positive and finite (e.g. 2)",
            ));
        }
        Ok(())
    }
}

/// One coupling layer: an optional ActNorm, then `z_B = x_B ⊙ e^{s(x_A)} + t(x_A)`, `z_A = x_A`.
#[derive(Debug, Clone, PartialEq)]
struct Block {
    /// (log_scale, shift) tensor indices, each `(1, d)`.
    actnorm: Option<(usize, usize)>,
    kept: Vec<usize>,
    moved: Vec<usize>,
    /// For each original column, its position in `[kept, moved]`.
    unsplit: Vec<usize>,
    net: GraphMlp,
}

/// The columns kept (conditioning) and moved (transformed) by layer `k` of `d`: alternately the
/// first and second half, then the even and odd indices, so for `d > 2` every pair of
/// coordinates conditions on each other within four layers. For `d = 2` this alternates `{0}`, `{1}`.
///
/// ```
/// assert_eq!(fm_nf::coupling_mask(4, 0), (vec![0, 1], vec![2, 3]));
/// assert_eq!(fm_nf::coupling_mask(4, 1), (vec![2, 3], vec![0, 1]));
/// assert_eq!(fm_nf::coupling_mask(4, 2), (vec![0, 2], vec![1, 3]));
/// assert_eq!(fm_nf::coupling_mask(2, 3), (vec![1], vec![0]));
/// ```
pub fn coupling_mask(d: usize, k: usize) -> (Vec<usize>, Vec<usize>) {
    let half = d / 2;
    let (a, b): (Vec<usize>, Vec<usize>) = if k % 4 < 2 {
        ((0..half).collect(), (half..d).collect())
    } else {
        (
            (0..d).filter(|i| i % 2 == 0).collect(),
            (0..d).filter(|i| i % 2 == 1).collect(),
        )
    };
    if k % 2 == 0 { (a, b) } else { (b, a) }
}

/// An affine coupling flow `f = f_K ∘ … ∘ f_1` from data `x` to latent `z ~ N(0, I)`
/// (RealNVP, Dinh et al., 2017). Layer `k` keeps the columns `A` ([`coupling_mask`]) and maps
///
/// `z_A = x_A`, `z_B = x_B ⊙ exp(s) + t`, `s = B tanh(ŝ / B)`, `(ŝ, t) = MLP_k(x_A)`,
///
/// preceded, with ActNorm, by `x ← x ⊙ e^a + b` (per dimension, initialised from the first
/// batch so its output has zero mean and unit variance; Kingma & Dhariwal, 2018). The inverse is
/// exact (`x_B = (z_B − t) ⊙ e^{−s}`) and `log|det ∂f/∂x| = Σ_k (Σ s_k + Σ a_k)`, so
///
/// `log p(x) = log N(f(x); 0, I) + log|det ∂f/∂x|`.
///
/// Evaluation runs on an f64 [`Graph`]; training ([`MaxLikelihood::nll_and_grad`]) runs a
/// hand-written forward and backward pass on plain f64 arrays (the same function as the tape's,
/// [`CouplingFlow::nll_and_grad_tape`]), reusing a per-thread pool of buffers across steps.
///
/// ```
/// use fm_core::LogDensity;
/// use fm_nf::{CouplingConfig, CouplingFlow};
/// let mut rng = fm_core::rng::seeded(0);
/// let flow = CouplingFlow::new(CouplingConfig { layers: 4, hidden: vec![16], ..Default::default() }, &mut rng).unwrap();
/// // A fresh flow is the identity (zero last layers), so its density is N(0, I).
/// let x = ndarray::array![[0.3, -1.2]];
/// let lp = flow.log_prob(x.view()).unwrap()[0];
/// let normal = fm_core::StandardNormal::new(2).unwrap().log_prob(x.view()).unwrap()[0];
/// assert!((lp - normal).abs() < 1e-12);
/// let samples = flow.sample(5, &mut rng).unwrap();
/// let back = flow.inverse(flow.forward(samples.view()).unwrap().0.view()).unwrap();
/// assert!((&back - &samples).iter().all(|e| e.abs() < 1e-12));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CouplingFlow {
    config: CouplingConfig,
    layout: Layout,
    blocks: Vec<Block>,
    params: Vec<f64>,
    actnorm_ready: bool,
}

impl CouplingFlow {
    /// A flow with the conditioners' hidden layers drawn from `rng` and their last layers zero
    /// (the identity map), ActNorm as the identity until [`CouplingFlow::init_actnorm`].
    pub fn new<R: Rng + ?Sized>(config: CouplingConfig, rng: &mut R) -> Result<Self> {
        let mut flow = Self::zeroed(config)?;
        for b in &flow.blocks {
            b.net.init(&flow.layout, &mut flow.params, rng);
        }
        Ok(flow)
    }

    /// The architecture with every parameter zero (what [`CouplingFlow::load`] fills in).
    pub(crate) fn zeroed(config: CouplingConfig) -> Result<Self> {
        config.check()?;
        let d = config.dim;
        let mut layout = Layout::default();
        let mut blocks = Vec::with_capacity(config.layers);
        for k in 0..config.layers {
            let actnorm = config.actnorm.then(|| {
                (
                    layout.push(format!("actnorm.{k}.log_scale"), 1, d),
                    layout.push(format!("actnorm.{k}.shift"), 1, d),
                )
            });
            let (kept, moved) = coupling_mask(d, k);
            let mut widths = vec![kept.len()];
            widths.extend(&config.hidden);
            widths.push(2 * moved.len());
            let net = GraphMlp::new(
                &mut layout,
                &format!("coupling.{k}"),
                &widths,
                config.activation,
            );
            let order: Vec<usize> = kept.iter().chain(&moved).copied().collect();
            let mut unsplit = vec![0; d];
            for (pos, &c) in order.iter().enumerate() {
                unsplit[c] = pos;
            }
            blocks.push(Block {
                actnorm,
                kept,
                moved,
                unsplit,
                net,
            });
        }
        let params = vec![0.0; layout.total];
        Ok(Self {
            config,
            layout,
            blocks,
            params,
            actnorm_ready: false,
        })
    }

    /// The settings.
    pub fn config(&self) -> &CouplingConfig {
        &self.config
    }

    /// The named tensors of the flat parameter vector, in order.
    pub fn param_specs(&self) -> &[ParamSpec] {
        &self.layout.specs
    }

    /// Whether ActNorm was data-initialised (always true without ActNorm).
    pub fn actnorm_ready(&self) -> bool {
        self.actnorm_ready || !self.config.actnorm
    }

    pub(crate) fn set_actnorm_ready(&mut self, ready: bool) {
        self.actnorm_ready = ready;
    }

    fn check_x(&self, what: &str, x: ArrayView2<f64>) -> Result<()> {
        fm_core::shape::check_data(what, x, self.config.dim)?;
        Ok(())
    }

    /// Records `x → (z, log|det ∂z/∂x|)` on `g`; also returns each block's input.
    fn forward_graph(&self, g: &mut Graph<f64>, x: Var, p: &[Var]) -> Result<(Var, Var, Vec<Var>)> {
        let n = g.value(x).nrows();
        let ones = ones_col(g, n);
        let mut h = x;
        let mut logdet: Option<Var> = None;
        let mut inputs = Vec::with_capacity(self.blocks.len());
        let mut add_ld = |g: &mut Graph<f64>, term: Var| -> Result<()> {
            logdet = Some(match logdet {
                Some(acc) => g.add(acc, term)?,
                None => term,
            });
            Ok(())
        };
        for b in &self.blocks {
            inputs.push(h);
            if let Some((ai, bi)) = b.actnorm {
                let ea = g.exp(p[ai])?;
                let rows = g.matmul(ones, ea)?;
                let scaled = g.mul(h, rows)?;
                h = g.add_bias(scaled, p[bi])?;
                let sa = g.row_sum(p[ai])?;
                let term = g.matmul(ones, sa)?;
                add_ld(g, term)?;
            }
            let xa = g.select_cols(h, &b.kept)?;
            let xb = g.select_cols(h, &b.moved)?;
            let (s, t) = self.scale_shift(g, b, xa, p)?;
            let es = g.exp(s)?;
            let zb = g.mul(xb, es)?;
            let zb = g.add(zb, t)?;
            let joined = g.concat_cols(&[xa, zb])?;
            h = g.select_cols(joined, &b.unsplit)?;
            let term = g.row_sum(s)?;
            add_ld(g, term)?;
        }
        Ok((h, logdet.expect("at least one layer"), inputs))
    }

    /// The bounded log-scale `s = B tanh(ŝ/B)` and the shift `t` of block `b` from `x_A`.
    fn scale_shift(&self, g: &mut Graph<f64>, b: &Block, xa: Var, p: &[Var]) -> Result<(Var, Var)> {
        let m = b.moved.len();
        let out = b.net.forward(g, xa, p)?;
        let raw = g.select_cols(out, &(0..m).collect::<Vec<_>>())?;
        let t = g.select_cols(out, &(m..2 * m).collect::<Vec<_>>())?;
        let bound = self.config.scale_bound;
        let u = g.scale(raw, 1.0 / bound)?;
        let u = g.activate(u, Activation::Tanh)?;
        let s = g.scale(u, bound)?;
        Ok((s, t))
    }

    /// `log p(x)` per row as an `(n, 1)` node.
    fn log_prob_graph(&self, g: &mut Graph<f64>, x: Var, p: &[Var]) -> Result<Var> {
        let (z, logdet, _) = self.forward_graph(g, x, p)?;
        let sq = g.mul(z, z)?;
        let sq = g.row_sum(sq)?;
        let base = g.scale(sq, -0.5)?;
        let d = self.config.dim as f64;
        let base = g.add_scalar(base, -0.5 * d * (2.0 * std::f64::consts::PI).ln())?;
        Ok(g.add(base, logdet)?)
    }

    /// The latent `z = f(x)` and `log|det ∂f/∂x|` per row.
    pub fn forward(&self, x: ArrayView2<f64>) -> Result<(Array2<f64>, Array1<f64>)> {
        self.check_x("x", x)?;
        let mut z = Array2::zeros(x.raw_dim());
        let mut ld = Array1::zeros(x.nrows());
        for (start, chunk) in chunks(x) {
            let mut g = Graph::new();
            let p = self.layout.leaves(&mut g, &self.params);
            let xv = g.leaf(chunk.to_owned());
            let (zv, lv, _) = self.forward_graph(&mut g, xv, &p)?;
            let rows = Slice::from(start..start + chunk.nrows());
            z.slice_axis_mut(Axis(0), rows).assign(g.value(zv));
            ld.slice_axis_mut(Axis(0), rows)
                .assign(&g.value(lv).column(0));
        }
        Ok((z, ld))
    }

    /// The exact inverse `x = f⁻¹(z)`: the layers undone in reverse order.
    pub fn inverse(&self, z: ArrayView2<f64>) -> Result<Array2<f64>> {
        self.check_x("z", z)?;
        let mut x = Array2::zeros(z.raw_dim());
        for (start, chunk) in chunks(z) {
            let mut g = Graph::new();
            let p = self.layout.leaves(&mut g, &self.params);
            let n = chunk.nrows();
            let ones = ones_col(&mut g, n);
            let mut h = g.leaf(chunk.to_owned());
            for b in self.blocks.iter().rev() {
                let za = g.select_cols(h, &b.kept)?;
                let zb = g.select_cols(h, &b.moved)?;
                let (s, t) = self.scale_shift(&mut g, b, za, &p)?;
                let diff = g.sub(zb, t)?;
                let neg = g.scale(s, -1.0)?;
                let inv = g.exp(neg)?;
                let xb = g.mul(diff, inv)?;
                let joined = g.concat_cols(&[za, xb])?;
                h = g.select_cols(joined, &b.unsplit)?;
                if let Some((ai, bi)) = b.actnorm {
                    let nb = g.scale(p[bi], -1.0)?;
                    let shifted = g.add_bias(h, nb)?;
                    let na = g.scale(p[ai], -1.0)?;
                    let ea = g.exp(na)?;
                    let rows = g.matmul(ones, ea)?;
                    h = g.mul(shifted, rows)?;
                }
            }
            x.slice_axis_mut(Axis(0), Slice::from(start..start + n))
                .assign(g.value(h));
        }
        Ok(x)
    }

    /// `log p(x)` per row (the [`LogDensity`] impl with this crate's error type).
    pub fn log_density(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        self.check_x("x", x)?;
        let mut out = Array1::zeros(x.nrows());
        for (start, chunk) in chunks(x) {
            let mut g = Graph::new();
            let p = self.layout.leaves(&mut g, &self.params);
            let xv = g.leaf(chunk.to_owned());
            let lp = self.log_prob_graph(&mut g, xv, &p)?;
            out.slice_axis_mut(Axis(0), Slice::from(start..start + chunk.nrows()))
                .assign(&g.value(lp).column(0));
        }
        Ok(out)
    }

    /// `n` samples `x = f⁻¹(z)`, `z ~ N(0, I)` drawn from `rng`.
    pub fn sample<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Result<Array2<f64>> {
        if n == 0 {
            return Err(invalid("n", 0, "ask for at least one sample"));
        }
        let z = StandardNormal::new(self.config.dim)?.sample(n, rng);
        self.inverse(z.view())
    }

    /// The mean negative log-likelihood of `x` and its gradient by the `fm-autograd` tape (the
    /// path training used before the fused pass of [`MaxLikelihood::nll_and_grad`]; kept as
    /// the reference the tests compare with and the baseline of the `step` bench).
    ///
    /// ```
    /// use fm_nf::{CouplingConfig, CouplingFlow, MaxLikelihood};
    /// let mut rng = fm_core::rng::seeded(0);
    /// let flow = CouplingFlow::new(CouplingConfig { layers: 2, hidden: vec![8], ..Default::default() }, &mut rng).unwrap();
    /// let x = ndarray::array![[0.3, -1.2], [1.0, 0.5]];
    /// let (a, ga) = flow.nll_and_grad_tape(x.view()).unwrap();
    /// let (b, gb) = flow.nll_and_grad(x.view(), &mut rng).unwrap();
    /// assert!((a - b).abs() < 1e-12);
    /// assert!(ga.iter().zip(&gb).all(|(u, v)| (u - v).abs() < 1e-12));
    /// ```
    pub fn nll_and_grad_tape(&self, x: ArrayView2<f64>) -> Result<(f64, Vec<f64>)> {
        self.check_x("training batch", x)?;
        let mut g = Graph::new();
        let p = self.layout.leaves(&mut g, &self.params);
        let xv = g.leaf(x.to_owned());
        let lp = self.log_prob_graph(&mut g, xv, &p)?;
        self.layout.mean_nll_and_grad(&mut g, lp, &p)
    }

    /// Data-initialises every ActNorm from the batch `x` (Kingma & Dhariwal, 2018): layer by
    /// layer, `a = −ln σ`, `b = −μ/σ` with the per-dimension mean `μ` and standard deviation
    /// `σ` (floored at 1e-6) of that layer's input, so its output has zero mean and unit
    /// variance on `x`. Needs at least two rows; without ActNorm it does nothing.
    pub fn init_actnorm(&mut self, x: ArrayView2<f64>) -> Result<()> {
        self.check_x("actnorm initialisation batch", x)?;
        if !self.config.actnorm {
            return Ok(());
        }
        if x.nrows() < 2 {
            return Err(NfError::ShapeMismatch {
                what: "actnorm initialisation batch".into(),
                expected: "at least 2 rows (a standard deviation)".into(),
                found: format!("{:?}", x.dim()),
            });
        }
        for k in 0..self.blocks.len() {
            let (ai, bi) = self.blocks[k].actnorm.expect("actnorm on");
            let input = {
                let mut g = Graph::new();
                let p = self.layout.leaves(&mut g, &self.params);
                let xv = g.leaf(x.to_owned());
                let (_, _, inputs) = self.forward_graph(&mut g, xv, &p)?;
                g.value(inputs[k]).clone()
            };
            let mean = input.mean_axis(Axis(0)).expect("rows checked");
            let std = input.std_axis(Axis(0), 0.0).mapv(|s| s.max(1e-6));
            let (sa, sb) = (self.layout.specs[ai].offset, self.layout.specs[bi].offset);
            for j in 0..self.config.dim {
                self.params[sa + j] = -std[j].ln();
                self.params[sb + j] = -mean[j] / std[j];
            }
        }
        self.actnorm_ready = true;
        Ok(())
    }
}

/// Row chunks of at most [`CHUNK_ROWS`] with their first row index.
fn chunks(x: ArrayView2<'_, f64>) -> impl Iterator<Item = (usize, ArrayView2<'_, f64>)> {
    let n = x.nrows();
    (0..n).step_by(CHUNK_ROWS).map(move |a| {
        let b = (a + CHUNK_ROWS).min(n);
        (a, x.slice_axis_move(Axis(0), Slice::from(a..b)))
    })
}

impl MaxLikelihood for CouplingFlow {
    fn params(&self) -> &[f64] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [f64] {
        &mut self.params
    }

    /// The exact mean negative log-likelihood (`rng` is not used).
    fn nll_and_grad(
        &self,
        x: ArrayView2<f64>,
        _rng: &mut dyn rand::RngCore,
    ) -> Result<(f64, Vec<f64>)> {
        self.check_x("training batch", x)?;
        Ok(self.nll_and_grad_fused(x))
    }

    fn prepare(&mut self, first_batch: ArrayView2<f64>) -> Result<()> {
        if self.actnorm_ready() {
            return Ok(());
        }
        self.init_actnorm(first_batch)
    }
}

impl LogDensity for CouplingFlow {
    fn dim(&self) -> usize {
        self.config.dim
    }

    fn log_prob(&self, x: ArrayView2<f64>) -> fm_core::Result<Array1<f64>> {
        self.log_density(x)
            .map_err(|e| e.into_core("coupling flow evaluation", x.dim()))
    }
}

/// What the fused training pass keeps of one block for its backward pass.
struct Saved {
    /// The conditioning columns `x_A` after ActNorm (the conditioner's input), `(n, |A|)`.
    xa: Array2<f64>,
    /// The moved columns `x_B` after ActNorm, `(n, m)`.
    xb: Array2<f64>,
    /// Every hidden layer's output `f(z_l)`.
    hs: Vec<Array2<f64>>,
    /// Every hidden layer's activation derivative `f'(z_l)`.
    ds: Vec<Array2<f64>>,
    /// `u = tanh(ŝ / B)` (so `s = B u`), `(n, m)`.
    u: Array2<f64>,
    /// `e^s`, `(n, m)`.
    es: Array2<f64>,
}

/// A mutable `(rows, cols)` view of tensor `spec` in a flat vector.
fn spec_mut<'a>(spec: &ParamSpec, flat: &'a mut [f64]) -> ArrayViewMut2<'a, f64> {
    ArrayViewMut2::from_shape(
        (spec.rows, spec.cols),
        &mut flat[spec.offset..spec.offset + spec.len()],
    )
    .expect("layout sizes are consistent")
}

impl CouplingFlow {
    /// The mean negative log-likelihood and its gradient by a hand-written forward and
    /// backward pass on plain arrays (no tape): matrix products by `ndarray`'s `general_mat_mul`
    /// into preallocated outputs, every elementwise step of a block fused into one loop.
    /// The same function as [`CouplingFlow::nll_and_grad_tape`] (the tests compare them).
    fn nll_and_grad_fused(&self, x: ArrayView2<f64>) -> (f64, Vec<f64>) {
        let (n, d) = x.dim();
        let nf = n as f64;
        let bound = self.config.scale_bound;
        let act = self.config.activation;
        let specs = &self.layout.specs;
        let mut pool = take_pool();
        let mut h = x.to_owned();
        let mut ld_sum = 0.0;
        let mut saved = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            if let Some((ai, bi)) = b.actnorm {
                let a = self.layout.view(&self.params, ai);
                let sh = self.layout.view(&self.params, bi);
                let ea = a.row(0).mapv(f64::exp);
                for mut row in h.rows_mut() {
                    Zip::from(&mut row)
                        .and(&ea)
                        .and(sh.row(0))
                        .for_each(|v, &e, &s| *v = v.mul_add(e, s));
                }
                ld_sum += nf * a.sum();
            }
            let xa = h.select(Axis(1), &b.kept);
            let xb = h.select(Axis(1), &b.moved);
            let m = b.moved.len();
            let nl = b.net.layers.len();
            let mut hs = Vec::with_capacity(nl - 1);
            let mut ds = Vec::with_capacity(nl - 1);
            let mut out = Array2::zeros((0, 0));
            for (l, &(wi, bi)) in b.net.layers.iter().enumerate() {
                let w = self.layout.view(&self.params, wi);
                let bias = self.layout.view(&self.params, bi);
                let mut z = pool.take(n, w.ncols());
                z.assign(&bias.row(0));
                let input = if l == 0 { &xa } else { &hs[l - 1] };
                general_mat_mul(1.0, input, &w, 1.0, &mut z);
                if l + 1 < nl {
                    let mut dz = pool.take(n, w.ncols());
                    Zip::from(&mut z).and(&mut dz).for_each(|z, dz| {
                        (*z, *dz) = act.eval(*z);
                    });
                    hs.push(z);
                    ds.push(dz);
                } else {
                    out = z;
                }
            }
            let mut u = pool.take(n, m);
            let mut es = pool.take(n, m);
            for i in 0..n {
                for j in 0..m {
                    let uij = (out[[i, j]] / bound).tanh();
                    let s = bound * uij;
                    let e = s.exp();
                    u[[i, j]] = uij;
                    es[[i, j]] = e;
                    ld_sum += s;
                    h[[i, b.moved[j]]] = xb[[i, j]].mul_add(e, out[[i, m + j]]);
                }
            }
            pool.put(out);
            saved.push(Saved {
                xa,
                xb,
                hs,
                ds,
                u,
                es,
            });
        }
        let sq: f64 = h.iter().map(|v| v * v).sum();
        let loss = 0.5 * sq / nf - ld_sum / nf + 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln();

        // Backward: `gh` is the cotangent of the current block's output; every row's
        // log-determinant enters the loss with the weight −1/n.
        let mut grad = vec![0.0; self.layout.total];
        let c = -1.0 / nf;
        let mut gh = h.mapv(|v| v / nf);
        for (b, sv) in self.blocks.iter().zip(&saved).rev() {
            let m = b.moved.len();
            let nl = b.net.layers.len();
            // Through z_B = x_B e^s + t and s = B tanh(ŝ / B): the conditioner's output
            // cotangent [∂ŝ, ∂t] and the cotangent of x_B.
            let mut gout = pool.take(n, 2 * m);
            let mut gxb = pool.take(n, m);
            for i in 0..n {
                for j in 0..m {
                    let gz = gh[[i, b.moved[j]]];
                    let e = sv.es[[i, j]];
                    let u = sv.u[[i, j]];
                    let gs = (gz * sv.xb[[i, j]]).mul_add(e, c);
                    gout[[i, j]] = gs * (1.0 - u * u);
                    gout[[i, m + j]] = gz;
                    gxb[[i, j]] = gz * e;
                }
            }
            let mut g = gout;
            let mut gxa = pool.take(n, b.kept.len());
            for l in (0..nl).rev() {
                let (wi, bi) = b.net.layers[l];
                let input = if l == 0 { &sv.xa } else { &sv.hs[l - 1] };
                general_mat_mul(
                    1.0,
                    &input.t(),
                    &g,
                    1.0,
                    &mut spec_mut(&specs[wi], &mut grad),
                );
                spec_mut(&specs[bi], &mut grad)
                    .row_mut(0)
                    .zip_mut_with(&g.sum_axis(Axis(0)), |a, &v| *a += v);
                let w = self.layout.view(&self.params, wi);
                if l > 0 {
                    let mut gi = pool.take(n, w.nrows());
                    gi.fill(0.0);
                    general_mat_mul(1.0, &g, &w.t(), 0.0, &mut gi);
                    gi *= &sv.ds[l - 1];
                    pool.put(std::mem::replace(&mut g, gi));
                } else {
                    gxa.fill(0.0);
                    general_mat_mul(1.0, &g, &w.t(), 0.0, &mut gxa);
                }
            }
            pool.put(g);
            // The cotangent of the block's (post-ActNorm) input, in the original column order.
            for (k, &col) in b.kept.iter().enumerate() {
                let mut dst = gh.column_mut(col);
                dst += &gxa.column(k);
            }
            for (k, &col) in b.moved.iter().enumerate() {
                gh.column_mut(col).assign(&gxb.column(k));
            }
            if let Some((ai, bi)) = b.actnorm {
                // y = x e^a + b: ∂a_j = Σ_i ∂y_ij (y_ij − b_j) − 1 (the n rows' Σ_j a_j
                // log-determinant terms, each weighted −1/n), ∂b_j = Σ_i ∂y_ij, ∂x = ∂y e^a.
                let a = self.layout.view(&self.params, ai);
                let sh = self.layout.view(&self.params, bi);
                let (oa, ob) = (specs[ai].offset, specs[bi].offset);
                for j in 0..d {
                    let (pos, part) = match b.kept.iter().position(|&c| c == j) {
                        Some(p) => (p, &sv.xa),
                        None => (
                            b.moved.iter().position(|&c| c == j).expect("a split"),
                            &sv.xb,
                        ),
                    };
                    let gcol = gh.column(j);
                    let y = part.column(pos);
                    let bj = sh[[0, j]];
                    let mut sa = 0.0;
                    let mut sb = 0.0;
                    Zip::from(&gcol).and(&y).for_each(|&g, &y| {
                        sa += g * (y - bj);
                        sb += g;
                    });
                    grad[oa + j] += sa - 1.0;
                    grad[ob + j] += sb;
                    let ea = a[[0, j]].exp();
                    gh.column_mut(j).mapv_inplace(|v| v * ea);
                }
            }
            pool.extend([gxa, gxb]);
        }
        for sv in saved {
            pool.extend(sv.hs.into_iter().chain(sv.ds).chain([sv.u, sv.es]));
        }
        give_pool(pool);
        (loss, grad)
    }
}
