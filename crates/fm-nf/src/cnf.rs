//! The continuous normalizing flow trained by maximum likelihood (FFJORD, Grathwohl et al., 2019).

use crate::error::{Result, invalid};
use crate::params::{GraphMlp, Layout, ParamSpec};
use crate::train::MaxLikelihood;
use fm_autograd::{Activation, Graph, Var};
use fm_core::{LogDensity, StandardNormal};
use fm_ode::ButcherTableau;
use ndarray::{Array1, Array2, ArrayView2};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

/// The settings of a [`CnfMle`]. `Default`: 2-D, three hidden layers of 64, tanh, RK4 with 8
/// steps in training and 32 in evaluation and sampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnfConfig {
    /// Data dimension `d ≥ 1`.
    pub dim: usize,
    /// Hidden widths of the field `v_θ(t, x) = MLP([x, t])`.
    pub hidden: Vec<usize>,
    /// The field's activation (smooth ones keep the divergence smooth).
    pub activation: Activation,
    /// The fixed-step explicit Runge–Kutta method, by `fm-ode`'s tableau name: `euler`,
    /// `midpoint`, `heun`, `ralston`, `ssprk3` or `rk4`.
    pub solver: String,
    /// Steps of the solve recorded on the tape for training.
    pub train_steps: usize,
    /// Steps of the solve for [`LogDensity`] and sampling.
    pub eval_steps: usize,
}

impl Default for CnfConfig {
    fn default() -> Self {
        Self {
            dim: 2,
            hidden: vec![64, 64, 64],
            activation: Activation::Tanh,
            solver: "rk4".into(),
            train_steps: 8,
            eval_steps: 32,
        }
    }
}

impl CnfConfig {
    /// Checks every field and returns the solver's tableau.
    pub fn check(&self) -> Result<ButcherTableau> {
        if self.dim == 0 {
            return Err(invalid("dim", 0, "the dimension must be at least 1"));
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(invalid(
                "hidden",
                format!("{:?}", self.hidden),
                "give at least one hidden layer, every width at least 1",
            ));
        }
        for (name, v) in [
            ("train_steps", self.train_steps),
            ("eval_steps", self.eval_steps),
        ] {
            if v == 0 {
                return Err(invalid(name, 0, "give at least one solver step"));
            }
        }
        match self.solver.to_ascii_lowercase().as_str() {
            "euler" => Ok(ButcherTableau::euler()),
            "midpoint" => Ok(ButcherTableau::midpoint()),
            "heun" => Ok(ButcherTableau::heun()),
            "ralston" => Ok(ButcherTableau::ralston()),
            "ssprk3" => Ok(ButcherTableau::ssprk3()),
            "rk4" => Ok(ButcherTableau::rk4()),
            _ => Err(invalid(
                "solver",
                &self.solver,
                "a fixed-step explicit method: euler, midpoint, heun, ralston, ssprk3 or rk4",
            )),
        }
    }
}

/// A CNF `dx/dt = v_θ(t, x)` from `N(0, I)` at `t = 0` to the data at `t = 1`, trained by
/// maximum likelihood through the solver (FFJORD, Grathwohl et al., 2019):
///
/// `log p_1(x) = log N(x(0); 0, I) − ∫_0^1 div v_θ(t, x(t)) dt`, integrated from `x(1) = x`
/// back to `t = 0` together with the divergence by a fixed-step Runge–Kutta method (`fm-ode`'s
/// tableaus). The divergence is exact: `d` forward-mode tangents written as graph ops, so the
/// whole discretised objective is on the tape and its gradient is exact for the discretisation.
/// This is the expensive training that flow matching removes: every step solves an ODE.
///
/// ```
/// use fm_core::LogDensity;
/// use fm_nf::{CnfConfig, CnfMle};
/// let mut rng = fm_core::rng::seeded(0);
/// let cnf = CnfMle::new(CnfConfig { hidden: vec![16], ..Default::default() }, &mut rng).unwrap();
/// let x = cnf.sample(3, &mut rng).unwrap();
/// assert!(cnf.log_prob(x.view()).unwrap().iter().all(|l| l.is_finite()));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CnfMle {
    config: CnfConfig,
    tableau: ButcherTableau,
    layout: Layout,
    net: GraphMlp,
    params: Vec<f64>,
}

impl CnfMle {
    /// A field with PyTorch's default initialisation of every layer.
    pub fn new<R: Rng + ?Sized>(config: CnfConfig, rng: &mut R) -> Result<Self> {
        let mut cnf = Self::zeroed(config)?;
        for &(wi, bi) in &cnf.net.layers {
            let bound = 1.0 / (cnf.layout.specs[wi].rows as f64).sqrt();
            for i in [wi, bi] {
                let s = &cnf.layout.specs[i];
                for p in &mut cnf.params[s.offset..s.offset + s.len()] {
                    *p = rng.random_range(-bound..bound);
                }
            }
        }
        Ok(cnf)
    }

    pub(crate) fn zeroed(config: CnfConfig) -> Result<Self> {
        let tableau = config.check()?;
        let mut layout = Layout::default();
        let mut widths = vec![config.dim + 1];
        widths.extend(&config.hidden);
        widths.push(config.dim);
        let net = GraphMlp::new(&mut layout, "field", &widths, config.activation);
        let params = vec![0.0; layout.total];
        Ok(Self {
            config,
            tableau,
            layout,
            net,
            params,
        })
    }

    /// The settings.
    pub fn config(&self) -> &CnfConfig {
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

    /// `v(t, x)` and, if asked, its exact divergence `(n, 1)` by `d` tangents.
    fn field(
        &self,
        g: &mut Graph<f64>,
        t: f64,
        x: Var,
        p: &[Var],
        with_div: bool,
    ) -> Result<(Var, Option<Var>)> {
        let (n, d) = g.value(x).dim();
        let tc = g.leaf(Array2::from_elem((n, 1), t));
        let mut h = g.concat_cols(&[x, tc])?;
        let mut derivs = Vec::new();
        let layers = &self.net.layers;
        for (l, &(wi, bi)) in layers.iter().enumerate() {
            let z = g.matmul(h, p[wi])?;
            let z = g.add_bias(z, p[bi])?;
            h = if l + 1 < layers.len() {
                if with_div {
                    derivs.push(g.act_deriv(z, self.net.activation)?);
                }
                g.activate(z, self.net.activation)?
            } else {
                z
            };
        }
        if !with_div {
            return Ok((h, None));
        }
        let mut terms = Vec::with_capacity(d);
        for j in 0..d {
            let e = g.leaf(Array2::from_shape_fn((n, d + 1), |(_, c)| {
                f64::from(c == j)
            }));
            let mut tan = e;
            for (l, &(wi, _)) in layers.iter().enumerate() {
                let dz = g.matmul(tan, p[wi])?;
                tan = match derivs.get(l) {
                    Some(&dv) => g.mul(dv, dz)?,
                    None => dz,
                };
            }
            terms.push(g.select_cols(tan, &[j])?);
        }
        let cols = g.concat_cols(&terms)?;
        Ok((h, Some(g.row_sum(cols)?)))
    }

    /// One solve of `steps` fixed steps from `t0` to `t1` on the tape; with `with_div`, also
    /// `∫_{t0}^{t1} div v dt` per row by the same quadrature.
    fn solve(
        &self,
        g: &mut Graph<f64>,
        x: Var,
        p: &[Var],
        (t0, t1): (f64, f64),
        steps: usize,
        with_div: bool,
    ) -> Result<(Var, Option<Var>)> {
        let tab = &self.tableau;
        let h = (t1 - t0) / steps as f64;
        let mut x = x;
        let mut acc: Option<Var> = None;
        let add = |g: &mut Graph<f64>, a: Option<Var>, b: Var| -> Result<Var> {
            Ok(match a {
                Some(a) => g.add(a, b)?,
                None => b,
            })
        };
        for s in 0..steps {
            let t = t0 + s as f64 * h;
            let mut ks: Vec<Var> = Vec::with_capacity(tab.stages());
            let mut dx: Option<Var> = None;
            let mut dl: Option<Var> = None;
            for i in 0..tab.stages() {
                let mut xi = x;
                for (j, &kj) in ks.iter().enumerate() {
                    let a = tab.a(i, j);
                    if a != 0.0 {
                        let inc = g.scale(kj, h * a)?;
                        xi = g.add(xi, inc)?;
                    }
                }
                let (k, div) = self.field(g, t + tab.c()[i] * h, xi, p, with_div)?;
                ks.push(k);
                let b = tab.b()[i];
                if b != 0.0 {
                    let inc = g.scale(k, h * b)?;
                    dx = Some(add(g, dx, inc)?);
                    if let Some(div) = div {
                        let inc = g.scale(div, h * b)?;
                        dl = Some(add(g, dl, inc)?);
                    }
                }
            }
            if let Some(dx) = dx {
                x = g.add(x, dx)?;
            }
            if let Some(dl) = dl {
                acc = Some(add(g, acc, dl)?);
            }
        }
        Ok((x, acc))
    }

    /// `log p(x)` per row as an `(n, 1)` node with a solve of `steps` steps from `t = 1` to 0.
    fn log_prob_graph(&self, g: &mut Graph<f64>, x: Var, p: &[Var], steps: usize) -> Result<Var> {
        let d = self.config.dim as f64;
        let (z, acc) = self.solve(g, x, p, (1.0, 0.0), steps, true)?;
        let sq = g.mul(z, z)?;
        let sq = g.row_sum(sq)?;
        let base = g.scale(sq, -0.5)?;
        let base = g.add_scalar(base, -0.5 * d * (2.0 * std::f64::consts::PI).ln())?;
        // acc = ∫_1^0 div dt = −∫_0^1 div dt.
        Ok(g.add(base, acc.expect("divergence requested"))?)
    }

    /// The latent `z = x(0)` of the solve from `x(1) = x` and `∫_1^0 div v dt` (the discretised
    /// `log|det ∂z/∂x|`), with `steps` solver steps.
    pub fn encode(&self, x: ArrayView2<f64>, steps: usize) -> Result<(Array2<f64>, Array1<f64>)> {
        self.check_x("x", x)?;
        if steps == 0 {
            return Err(invalid("steps", 0, "give at least one solver step"));
        }
        let mut g = Graph::new();
        let p = self.layout.leaves(&mut g, &self.params);
        let xv = g.leaf(x.to_owned());
        let (z, acc) = self.solve(&mut g, xv, &p, (1.0, 0.0), steps, true)?;
        let acc = acc.expect("divergence requested");
        Ok((g.value(z).clone(), g.value(acc).column(0).to_owned()))
    }

    /// `log p(x)` per row with `eval_steps` solver steps.
    pub fn log_density(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        self.check_x("x", x)?;
        let mut g = Graph::new();
        let p = self.layout.leaves(&mut g, &self.params);
        let xv = g.leaf(x.to_owned());
        let lp = self.log_prob_graph(&mut g, xv, &p, self.config.eval_steps)?;
        Ok(g.value(lp).column(0).to_owned())
    }

    /// `n` samples: `z ~ N(0, I)` from `rng`, solved from `t = 0` to 1 with `eval_steps` steps.
    pub fn sample<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Result<Array2<f64>> {
        if n == 0 {
            return Err(invalid("n", 0, "ask for at least one sample"));
        }
        let z = StandardNormal::new(self.config.dim)?.sample(n, rng);
        let mut g = Graph::new();
        let p = self.layout.leaves(&mut g, &self.params);
        let zv = g.leaf(z);
        let (x, _) = self.solve(&mut g, zv, &p, (0.0, 1.0), self.config.eval_steps, false)?;
        Ok(g.value(x).clone())
    }
}

impl MaxLikelihood for CnfMle {
    fn params(&self) -> &[f64] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [f64] {
        &mut self.params
    }

    /// The discretised mean negative log-likelihood with `train_steps` steps (`rng` unused:
    /// the divergence is exact).
    fn nll_and_grad(&self, x: ArrayView2<f64>, _rng: &mut dyn RngCore) -> Result<(f64, Vec<f64>)> {
        self.check_x("training batch", x)?;
        let mut g = Graph::new();
        let p = self.layout.leaves(&mut g, &self.params);
        let xv = g.leaf(x.to_owned());
        let lp = self.log_prob_graph(&mut g, xv, &p, self.config.train_steps)?;
        self.layout.mean_nll_and_grad(&mut g, lp, &p)
    }
}

impl LogDensity for CnfMle {
    fn dim(&self) -> usize {
        self.config.dim
    }

    fn log_prob(&self, x: ArrayView2<f64>) -> fm_core::Result<Array1<f64>> {
        self.log_density(x)
            .map_err(|e| e.into_core("cnf evaluation", x.dim()))
    }
}
