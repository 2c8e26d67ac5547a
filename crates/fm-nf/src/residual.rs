//! The residual flow (i-ResNet, Behrmann et al., 2019; Residual Flows, Chen et al., 2019).

use crate::error::{Result, invalid};
use crate::params::{GraphMlp, Layout, ParamSpec, ones_col};
use crate::train::MaxLikelihood;
use fm_autograd::{Activation, Graph, Var};
use fm_core::{LogDensity, StandardNormal};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::{Rng, RngCore};
use rand_distr::StandardNormal as Gauss;
use serde::{Deserialize, Serialize};

/// How training estimates `log det(I + J_g) = Σ_{k≥1} (−1)^{k+1} tr(J_g^k) / k` (each trace by
/// Hutchinson's `vᵀ J^k v`, `v ~ N(0, I)`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "estimator", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LogDetEstimator {
    /// The first `terms` terms of the series (i-ResNet): biased by at most
    /// `d · c^{terms+1} / ((terms + 1)(1 − c))`.
    Truncated {
        /// Number of series terms.
        terms: usize,
    },
    /// The unbiased Russian-roulette estimator (Residual Flows): the first `min_terms` terms
    /// always, then `G ~ Geometric(p)` more (`P(G ≥ j) = (1 − p)^j`), term `k` reweighted by
    /// `1 / P(N ≥ k)`. `N` is capped at 200 terms (a bias below `c^200`).
    RussianRoulette {
        /// Terms always computed.
        min_terms: usize,
        /// The stopping probability `p` in `(0, 1)`.
        p: f64,
    },
}

impl LogDetEstimator {
    /// The number of terms `N` and the weight `1 / P(N ≥ k)` of each term `k = 1..=N`.
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<f64> {
        match *self {
            LogDetEstimator::Truncated { terms } => vec![1.0; terms],
            LogDetEstimator::RussianRoulette { min_terms, p } => {
                let mut extra = 0;
                while min_terms + extra < MAX_TERMS && rng.random::<f64>() >= p {
                    extra += 1;
                }
                (1..=min_terms + extra)
                    .map(|k| {
                        if k <= min_terms {
                            1.0
                        } else {
                            (1.0 - p).powi((k - min_terms) as i32).recip()
                        }
                    })
                    .collect()
            }
        }
    }

    fn check(&self) -> Result<()> {
        match *self {
            LogDetEstimator::Truncated { terms } if terms == 0 || terms > MAX_TERMS => {
                Err(invalid("terms", terms, "give 1 to 200 series terms"))
            }
            LogDetEstimator::RussianRoulette { min_terms, p } => {
                if !(p > 0.0 && p < 1.0) {
                    return Err(invalid(
                        "p",
                        p,
                        "the stopping probability must lie in (0, 1)",
                    ));
                }
                if min_terms > MAX_TERMS {
                    return Err(invalid("min_terms", min_terms, "at most 200 terms"));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

const MAX_TERMS: usize = 200;

/// The settings of a [`ResidualFlow`]. `Default`: 2-D, 4 blocks with two hidden layers of 64,
/// ELU, Lipschitz constant 0.9, 30 power iterations, one probe, Russian roulette after 2 terms
/// with `p = 0.5`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidualConfig {
    /// Data dimension `d ≥ 1`.
    pub dim: usize,
    /// Number of residual blocks.
    pub blocks: usize,
    /// Hidden widths of each block's MLP `g` (at least one, all positive).
    pub hidden: Vec<usize>,
    /// A 1-Lipschitz activation: `Tanh`, `Elu`, `Softplus` or `Relu`.
    pub activation: Activation,
    /// The bound `c ∈ (0, 1)` on each layer's spectral norm, so `Lip(g) ≤ c`.
    pub lipschitz: f64,
    /// Power iterations per spectral-norm estimate (from a fixed start, so no state).
    pub power_iterations: usize,
    /// Hutchinson probes per row for the training estimator.
    pub probes: usize,
    /// The training estimator of the log-determinant.
    pub estimator: LogDetEstimator,
}

impl Default for ResidualConfig {
    fn default() -> Self {
        Self {
            dim: 2,
            blocks: 4,
            hidden: vec![64, 64],
            activation: Activation::Elu,
            lipschitz: 0.9,
            power_iterations: 30,
            probes: 1,
            estimator: LogDetEstimator::RussianRoulette {
                min_terms: 2,
                p: 0.5,
            },
        }
    }
}

impl ResidualConfig {
    /// Checks every field (see the field docs).
    pub fn check(&self) -> Result<()> {
        if self.dim == 0 {
            return Err(invalid("dim", 0, "the dimension must be at least 1"));
        }
        if self.blocks == 0 {
            return Err(invalid("blocks", 0, "give at least one residual block"));
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(invalid(
                "hidden",
                format!("{:?}", self.hidden),
                "give at least one hidden layer, every width at least 1",
            ));
        }
        if !matches!(
            self.activation,
            Activation::Tanh | Activation::Elu | Activation::Softplus | Activation::Relu
        ) {
            return Err(invalid(
                "activation",
                format!("{:?}", self.activation),
                "a residual block needs a 1-Lipschitz activation: tanh, elu, softplus or relu",
            ));
        }
        if !(self.lipschitz > 0.0 && self.lipschitz < 1.0) {
            return Err(invalid(
                "lipschitz",
                self.lipschitz,
                "the Lipschitz constant must lie in (0, 1) for the block to be invertible",
            ));
        }
        if self.power_iterations == 0 {
            return Err(invalid(
                "power_iterations",
                0,
                "give at least one iteration",
            ));
        }
        if self.probes == 0 {
            return Err(invalid("probes", 0, "give at least one probe"));
        }
        self.estimator.check()
    }
}

/// A residual flow `F = F_B ∘ … ∘ F_1`, `F_b(x) = x + g_b(x)`, from data to `N(0, I)`.
///
/// Each `g_b` is an MLP whose weights are spectrally normalised, `Ŵ = W · min(1, c / σ̂(W))`
/// with `σ̂` from power iteration (the gradient flows through `σ̂ = uᵀ W v`, exact at
/// convergence), and whose activation is 1-Lipschitz, so `Lip(g_b) ≤ c < 1` and `F_b` is
/// invertible (Behrmann et al., 2019). Then
///
/// `log p(x) = log N(F(x); 0, I) + Σ_b log det(I + J_{g_b})`.
///
/// * Inverse: the fixed point `x ← y − g(x)` from `x_0 = y`, with the a-priori bound
///   `‖x_k − x*‖ ≤ c^k / (1 − c) · ‖g(y)‖` ([`ResidualFlow::invert_block`]).
/// * Evaluation ([`LogDensity`]): the exact log-determinant from the full Jacobian (`d`
///   forward-mode tangents), for small `d`.
/// * Training: the power series with Hutchinson probes, truncated or Russian roulette
///   ([`LogDetEstimator`]); `J^k v` are forward-mode tangents written as graph ops, so the
///   estimate is differentiated by the tape.
///
/// ```
/// use fm_core::LogDensity;
/// use fm_nf::{ResidualConfig, ResidualFlow};
/// let mut rng = fm_core::rng::seeded(0);
/// let flow = ResidualFlow::new(ResidualConfig { blocks: 2, hidden: vec![16], ..Default::default() }, &mut rng).unwrap();
/// let x = ndarray::array![[0.3, -1.2], [2.0, 0.5]];
/// let z = flow.forward(x.view()).unwrap();
/// let back = flow.inverse(z.view()).unwrap();
/// assert!((&back - &x).iter().all(|e| e.abs() < 1e-9));
/// assert!(flow.log_prob(x.view()).unwrap().iter().all(|l| l.is_finite()));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ResidualFlow {
    config: ResidualConfig,
    layout: Layout,
    nets: Vec<GraphMlp>,
    params: Vec<f64>,
}

/// One block recorded on a tape: its output `g(x)`, the normalised weights and the
/// activation derivatives of the hidden layers (for tangents).
struct BlockTape {
    out: Var,
    weights: Vec<Var>,
    derivs: Vec<Var>,
}

impl ResidualFlow {
    /// A flow with every layer drawn as PyTorch initialises linear layers (the last layer too,
    /// scaled by 0.1, so the blocks start close to, but not at, the identity).
    pub fn new<R: Rng + ?Sized>(config: ResidualConfig, rng: &mut R) -> Result<Self> {
        let mut flow = Self::zeroed(config)?;
        for net in &flow.nets {
            for &(wi, bi) in &net.layers {
                let bound = 1.0 / (flow.layout.specs[wi].rows as f64).sqrt();
                for i in [wi, bi] {
                    let s = &flow.layout.specs[i];
                    for p in &mut flow.params[s.offset..s.offset + s.len()] {
                        *p = rng.random_range(-bound..bound);
                    }
                }
            }
            let (wl, bl) = *net.layers.last().expect("a layer");
            for i in [wl, bl] {
                let s = &flow.layout.specs[i];
                flow.params[s.offset..s.offset + s.len()]
                    .iter_mut()
                    .for_each(|p| *p *= 0.1);
            }
        }
        Ok(flow)
    }

    pub(crate) fn zeroed(config: ResidualConfig) -> Result<Self> {
        config.check()?;
        let mut layout = Layout::default();
        let mut widths = vec![config.dim];
        widths.extend(&config.hidden);
        widths.push(config.dim);
        let nets = (0..config.blocks)
            .map(|b| {
                GraphMlp::new(
                    &mut layout,
                    &format!("block.{b}"),
                    &widths,
                    config.activation,
                )
            })
            .collect();
        let params = vec![0.0; layout.total];
        Ok(Self {
            config,
            layout,
            nets,
            params,
        })
    }

    /// The settings.
    pub fn config(&self) -> &ResidualConfig {
        &self.config
    }

    /// The named tensors of the flat parameter vector, in order.
    pub fn param_specs(&self) -> &[ParamSpec] {
        &self.layout.specs
    }

    fn check_x(&self, what: &str, x: ArrayView2<f64>) -> Result<()> {
        fm_core::shape::check_data(what, x, self.config.dim)?;
        Ok(())
    }

    /// `σ̂(W)` by power iteration from a fixed start, with its singular vectors `u`, `v`.
    fn power_iteration(&self, w: ArrayView2<f64>) -> (f64, Array2<f64>, Array2<f64>) {
        let (rows, cols) = w.dim();
        let mut v = Array1::from_elem(cols, 1.0 / (cols as f64).sqrt());
        let mut u = Array1::from_elem(rows, 1.0 / (rows as f64).sqrt());
        for _ in 0..self.config.power_iterations {
            u = w.dot(&v);
            let nu = u.dot(&u).sqrt().max(1e-300);
            u /= nu;
            v = w.t().dot(&u);
            let nv = v.dot(&v).sqrt().max(1e-300);
            v /= nv;
        }
        let sigma = u.dot(&w.dot(&v));
        (sigma, u.insert_axis(Axis(0)), v.insert_axis(Axis(1)))
    }

    /// The spectrally normalised weight `W · min(1, c / σ̂)` as a node.
    fn normalised(&self, g: &mut Graph<f64>, w: Var) -> Result<Var> {
        let (sigma, u, v) = self.power_iteration(g.value(w).view());
        let c = self.config.lipschitz;
        if sigma <= c {
            return Ok(w);
        }
        let (rows, cols) = g.value(w).dim();
        let u = g.leaf(u);
        let v = g.leaf(v);
        let uw = g.matmul(u, w)?;
        let s = g.matmul(uw, v)?; // σ̂ = uᵀ W v, (1, 1)
        let cv = g.leaf(Array2::from_elem((1, 1), c));
        let f = g.div(cv, s)?;
        let left = ones_col(g, rows);
        let right = g.leaf(Array2::ones((1, cols)));
        let f = g.matmul(left, f)?;
        let f = g.matmul(f, right)?;
        Ok(g.mul(w, f)?)
    }

    fn block_graph(&self, g: &mut Graph<f64>, b: usize, x: Var, p: &[Var]) -> Result<BlockTape> {
        let net = &self.nets[b];
        let mut h = x;
        let mut weights = Vec::new();
        let mut derivs = Vec::new();
        for (l, &(wi, bi)) in net.layers.iter().enumerate() {
            let w = self.normalised(g, p[wi])?;
            weights.push(w);
            let z = g.matmul(h, w)?;
            let z = g.add_bias(z, p[bi])?;
            h = if l + 1 < net.layers.len() {
                derivs.push(g.act_deriv(z, net.activation)?);
                g.activate(z, net.activation)?
            } else {
                z
            };
        }
        Ok(BlockTape {
            out: h,
            weights,
            derivs,
        })
    }

    /// The tangent `J_g · ẋ` per row (forward mode, as graph ops).
    fn jvp(g: &mut Graph<f64>, tape: &BlockTape, tangent: Var) -> Result<Var> {
        let mut t = tangent;
        for (l, &w) in tape.weights.iter().enumerate() {
            let dz = g.matmul(t, w)?;
            t = match tape.derivs.get(l) {
                Some(&d) => g.mul(d, dz)?,
                None => dz,
            };
        }
        Ok(t)
    }

    fn values_of_blocks<F>(&self, x: ArrayView2<f64>, mut each: F) -> Result<Array2<f64>>
    where
        F: FnMut(&mut Graph<f64>, &BlockTape, Var) -> Result<()>,
    {
        let mut h = x.to_owned();
        for b in 0..self.nets.len() {
            let mut g = Graph::new();
            let p = self.layout.leaves(&mut g, &self.params);
            let xv = g.leaf(h.clone());
            let tape = self.block_graph(&mut g, b, xv, &p)?;
            each(&mut g, &tape, xv)?;
            h = &h + g.value(tape.out);
        }
        Ok(h)
    }

    /// The latent `z = F(x)`.
    pub fn forward(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        self.check_x("x", x)?;
        self.values_of_blocks(x, |_, _, _| Ok(()))
    }

    /// The exact `log|det ∂F/∂x|` per row: for each block, the full Jacobian `I + J_g` from
    /// `d` tangents and its log-determinant by LU (cost `O(d)` passes; for small `d`).
    pub fn exact_log_det(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        self.check_x("x", x)?;
        let (n, d) = x.dim();
        let mut total = Array1::zeros(n);
        self.values_of_blocks(x, |g, tape, _| {
            let mut jac = vec![Array2::<f64>::eye(d); n];
            for j in 0..d {
                let e = g.leaf(Array2::from_shape_fn((n, d), |(_, c)| f64::from(c == j)));
                let col = Self::jvp(g, tape, e)?;
                let col = g.value(col);
                for (i, m) in jac.iter_mut().enumerate() {
                    for r in 0..d {
                        m[[r, j]] += col[[i, r]];
                    }
                }
            }
            for (t, m) in total.iter_mut().zip(jac) {
                *t += log_abs_det(m);
            }
            Ok(())
        })?;
        Ok(total)
    }

    /// `log p(x)` per row with the exact log-determinant.
    pub fn log_density(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        let z = self.forward(x)?;
        let base = StandardNormal::new(self.config.dim)?.log_prob(z.view())?;
        Ok(base + self.exact_log_det(x)?)
    }

    /// Inverts one block `y = x + g_b(x)` by `iterations` fixed-point steps `x ← y − g_b(x)`
    /// from `x_0 = y`; returns `x_k` and the a-priori bound `c^k / (1 − c) · ‖g_b(y)‖` on
    /// each row's error `‖x_k − x*‖`.
    pub fn invert_block(
        &self,
        b: usize,
        y: ArrayView2<f64>,
        iterations: usize,
    ) -> Result<(Array2<f64>, Array1<f64>)> {
        self.check_x("y", y)?;
        if b >= self.nets.len() {
            return Err(invalid(
                "block",
                b,
                format!("this flow has {} blocks", self.nets.len()),
            ));
        }
        // The normalised weights once (one power iteration per weight), then plain products.
        let layers: Vec<(Array2<f64>, Array2<f64>)> = {
            let mut g = Graph::new();
            let p = self.layout.leaves(&mut g, &self.params);
            let yv = g.leaf(y.slice_axis(Axis(0), ndarray::Slice::from(0..1)).to_owned());
            let tape = self.block_graph(&mut g, b, yv, &p)?;
            tape.weights
                .iter()
                .zip(&self.nets[b].layers)
                .map(|(&w, &(_, bi))| {
                    (
                        g.value(w).clone(),
                        self.layout.view(&self.params, bi).to_owned(),
                    )
                })
                .collect()
        };
        let act = self.nets[b].activation;
        let g_of = |x: &Array2<f64>| -> Result<Array2<f64>> {
            let mut h = x.clone();
            for (l, (w, bias)) in layers.iter().enumerate() {
                h = h.dot(w) + bias;
                if l + 1 < layers.len() {
                    h.mapv_inplace(|z| act.eval(z).0);
                }
            }
            Ok(h)
        };
        let y = y.to_owned();
        let g0 = g_of(&y)?;
        let c = self.config.lipschitz;
        let bound = g0
            .rows()
            .into_iter()
            .map(|r| c.powi(iterations as i32) / (1.0 - c) * r.dot(&r).sqrt())
            .collect();
        let mut x = y.clone();
        for _ in 0..iterations {
            x = &y - &g_of(&x)?;
        }
        Ok((x, bound))
    }

    /// The inverse `x = F⁻¹(z)`, each block inverted by fixed-point iteration until the
    /// a-priori bound falls below 1e-12 · (1 + ‖g(y)‖) (at most 500 iterations each).
    pub fn inverse(&self, z: ArrayView2<f64>) -> Result<Array2<f64>> {
        self.check_x("z", z)?;
        let c = self.config.lipschitz;
        // c^k / (1 − c) ≤ 1e-12 ⇔ k ≥ ln(1e-12 (1 − c)) / ln c.
        let k = (((1e-12 * (1.0 - c)).ln() / c.ln()).ceil() as usize).clamp(1, 500);
        let mut h = z.to_owned();
        for b in (0..self.nets.len()).rev() {
            h = self.invert_block(b, h.view(), k)?.0;
        }
        Ok(h)
    }

    /// `n` samples `x = F⁻¹(z)`, `z ~ N(0, I)` drawn from `rng`.
    pub fn sample<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Result<Array2<f64>> {
        if n == 0 {
            return Err(invalid("n", 0, "ask for at least one sample"));
        }
        let z = StandardNormal::new(self.config.dim)?.sample(n, rng);
        self.inverse(z.view())
    }

    /// The training estimate of `log p(x)` per row as an `(n, 1)` node: the log-determinant by
    /// the configured series estimator with `probes` Gaussian probes per row.
    fn estimated_log_prob(
        &self,
        g: &mut Graph<f64>,
        x: Var,
        p: &[Var],
        rng: &mut dyn RngCore,
    ) -> Result<Var> {
        let (n, d) = g.value(x).dim();
        let mut h = x;
        let mut logdet: Option<Var> = None;
        for b in 0..self.nets.len() {
            let tape = self.block_graph(g, b, h, p)?;
            let weights = self.config.estimator.draw(rng);
            for _ in 0..self.config.probes {
                let v = g.leaf(Array2::from_shape_simple_fn((n, d), || rng.sample(Gauss)));
                let mut w = v;
                for (k, &wk) in weights.iter().enumerate() {
                    w = Self::jvp(g, &tape, w)?;
                    let vw = g.mul(v, w)?;
                    let tr = g.row_sum(vw)?;
                    let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
                    let coef = sign * wk / ((k + 1) as f64 * self.config.probes as f64);
                    let term = g.scale(tr, coef)?;
                    logdet = Some(match logdet {
                        Some(acc) => g.add(acc, term)?,
                        None => term,
                    });
                }
            }
            h = g.add(h, tape.out)?;
        }
        let sq = g.mul(h, h)?;
        let sq = g.row_sum(sq)?;
        let base = g.scale(sq, -0.5)?;
        let base = g.add_scalar(base, -0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln())?;
        Ok(match logdet {
            Some(ld) => g.add(base, ld)?,
            None => base,
        })
    }

    /// The series estimate of `log|det ∂F/∂x|` per row (what training differentiates),
    /// drawing probes and the number of terms from `rng`.
    pub fn estimated_log_det<R: Rng>(
        &self,
        x: ArrayView2<f64>,
        rng: &mut R,
    ) -> Result<Array1<f64>> {
        self.check_x("x", x)?;
        let mut g = Graph::new();
        let p = self.layout.leaves(&mut g, &self.params);
        let xv = g.leaf(x.to_owned());
        let lp = self.estimated_log_prob(&mut g, xv, &p, rng)?;
        let z = self.forward(x)?;
        let base = StandardNormal::new(self.config.dim)?.log_prob(z.view())?;
        Ok(g.value(lp).column(0).to_owned() - base)
    }
}

/// `log|det a|` by Gaussian elimination with partial pivoting.
fn log_abs_det(mut a: Array2<f64>) -> f64 {
    let n = a.nrows();
    let mut acc = 0.0;
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[[i, c]].abs().total_cmp(&a[[j, c]].abs()))
            .expect("non-empty");
        if p != c {
            for k in 0..n {
                a.swap([c, k], [p, k]);
            }
        }
        let piv = a[[c, c]];
        acc += piv.abs().ln();
        for r in c + 1..n {
            let f = a[[r, c]] / piv;
            for k in c..n {
                a[[r, k]] -= f * a[[c, k]];
            }
        }
    }
    acc
}

impl MaxLikelihood for ResidualFlow {
    fn params(&self) -> &[f64] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [f64] {
        &mut self.params
    }

    /// The estimated mean negative log-likelihood (probes and roulette drawn from `rng`).
    fn nll_and_grad(&self, x: ArrayView2<f64>, rng: &mut dyn RngCore) -> Result<(f64, Vec<f64>)> {
        self.check_x("training batch", x)?;
        let mut g = Graph::new();
        let p = self.layout.leaves(&mut g, &self.params);
        let xv = g.leaf(x.to_owned());
        let lp = self.estimated_log_prob(&mut g, xv, &p, rng)?;
        self.layout.mean_nll_and_grad(&mut g, lp, &p)
    }
}

impl LogDensity for ResidualFlow {
    fn dim(&self) -> usize {
        self.config.dim
    }

    fn log_prob(&self, x: ArrayView2<f64>) -> fm_core::Result<Array1<f64>> {
        self.log_density(x)
            .map_err(|e| e.into_core("residual flow evaluation", x.dim()))
    }
}
