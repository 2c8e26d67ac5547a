//! The continuous normalizing flow trained by maximum likelihood (FFJORD, Grathwohl et al., 2019).

use crate::error::{Result, invalid};
use crate::params::{GraphMlp, Layout, ParamSpec, Pool, give_pool, take_pool};
use crate::train::MaxLikelihood;
use fm_autograd::{Activation, Graph, Var};
use fm_core::{LogDensity, StandardNormal, VectorField};
use fm_ode::{
    AugmentedField, ButcherTableau, Dopri5, ExplicitRk, Integrator, augmented_state,
    split_augmented,
};
use ndarray::linalg::{general_mat_mul, general_mat_vec_mul};
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, Zip};
use rand::{Rng, RngCore};
use rand_distr::StandardNormal as Gauss;
use serde::{Deserialize, Serialize};

/// How a [`CnfMle`] solves its ODE for [`LogDensity`] and sampling.
/// `Default`: Dormand–Prince with `rtol = atol = 1e-5` (the tolerances of `fm likelihood`).
///
/// ```
/// use fm_nf::CnfEval;
/// assert_eq!(CnfEval::default(), CnfEval::Dopri5 { rtol: 1e-5, atol: 1e-5 });
/// let json = serde_json::to_string(&CnfEval::Fixed).unwrap();
/// assert_eq!(json, r#"{"method":"fixed"}"#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CnfEval {
    /// `fm-ode`'s adaptive [`Dopri5`] on the augmented state `[x, ℓ]` with `dℓ/dt = −div v`
    /// (exact divergence), error controlled on both.
    Dopri5 {
        /// Relative tolerance, finite and `> 0`.
        rtol: f64,
        /// Absolute tolerance, finite and `≥ 0`.
        atol: f64,
    },
    /// The fixed-step method [`CnfConfig::solver`] with [`CnfConfig::eval_steps`] steps (the
    /// same discretisation as training, with more steps).
    Fixed,
}

impl Default for CnfEval {
    fn default() -> Self {
        CnfEval::Dopri5 {
            rtol: 1e-5,
            atol: 1e-5,
        }
    }
}

/// The distribution of Hutchinson's probes `v` (`E[v vᵀ] = I` for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeNoise {
    /// `v ~ N(0, I)`.
    Gaussian,
    /// Entries ±1 with probability ½ each (the lower-variance choice, FFJORD's default).
    Rademacher,
}

/// How training computes `div v_θ = tr(∂v/∂x)` inside the recorded solve.
/// `Default`: exact.
///
/// ```
/// use fm_nf::{ProbeNoise, TraceEstimator};
/// let est = TraceEstimator::Hutchinson { probes: 2, noise: ProbeNoise::Rademacher };
/// let json = serde_json::to_string(&est).unwrap();
/// assert_eq!(serde_json::from_str::<TraceEstimator>(&json).unwrap(), est);
/// assert_eq!(TraceEstimator::default(), TraceEstimator::Exact);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "trace", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TraceEstimator {
    /// `d` forward-mode tangents per evaluation: exact, cost `O(d)` network passes.
    #[default]
    Exact,
    /// Hutchinson's estimator `(1/K) Σ_k v_kᵀ (∂v/∂x) v_k` with `K` probes per row drawn once
    /// per solve from the training RNG and held fixed along it (FFJORD, Grathwohl et al.,
    /// 2019): unbiased for the loss and its gradient, cost `O(K)` passes.
    Hutchinson {
        /// Probes per row, `K ≥ 1`.
        probes: usize,
        /// Their distribution.
        noise: ProbeNoise,
    },
}

/// The settings of a [`CnfMle`]. `Default`: 2-D, three hidden layers of 64, tanh, RK4 with 8
/// steps in training (exact divergence), adaptive Dormand–Prince for evaluation and sampling
/// (`eval_steps = 32` is used by [`CnfEval::Fixed`]).
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
    /// Steps of the solve for [`LogDensity`] and sampling with [`CnfEval::Fixed`].
    pub eval_steps: usize,
    /// The solver of [`LogDensity`] and sampling (files without it read the default).
    #[serde(default)]
    pub eval: CnfEval,
    /// The divergence in training (files without it read the default, exact).
    #[serde(default)]
    pub trace: TraceEstimator,
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
            eval: CnfEval::default(),
            trace: TraceEstimator::Exact,
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
        if let CnfEval::Dopri5 { rtol, atol } = self.eval {
            if !(rtol.is_finite() && rtol > 0.0) {
                return Err(invalid(
                    "rtol",
                    rtol,
                    "give a finite relative tolerance > 0",
                ));
            }
            if !(atol.is_finite() && atol >= 0.0) {
                return Err(invalid(
                    "atol",
                    atol,
                    "give a finite absolute tolerance ≥ 0",
                ));
            }
        }
        if let TraceEstimator::Hutchinson { probes, .. } = self.trace
            && !(1..=10_000).contains(&probes)
        {
            return Err(invalid(
                "probes",
                probes,
                "give 1 to 10000 Hutchinson probes",
            ));
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
/// tableaus). The divergence is exact (`d` forward-mode tangents; with two hidden layers one
/// matrix product for any `d`) and the gradient is exact for the discretisation: a
/// hand-written backward pass through the field, its tangents and the Runge–Kutta stages
/// (the same function as the tape's, [`CnfMle::nll_and_grad_tape`], which Hutchinson's
/// estimator still uses).
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

    /// Changes how [`LogDensity`] and sampling solve the ODE (e.g. tighter tolerances for a
    /// final evaluation): the evaluation solver, and for [`CnfEval::Fixed`] optionally the
    /// fixed-step method (this also becomes the training method) and its number of steps. The
    /// parameters are untouched; invalid settings leave the model as it was.
    ///
    /// ```
    /// use fm_nf::{CnfEval, CnfMle};
    /// let mut cnf = CnfMle::new(Default::default(), &mut fm_core::rng::seeded(0)).unwrap();
    /// cnf.set_evaluation(CnfEval::Fixed, Some("heun"), Some(64)).unwrap();
    /// assert_eq!((cnf.config().solver.as_str(), cnf.config().eval_steps), ("heun", 64));
    /// assert!(cnf.set_evaluation(CnfEval::Dopri5 { rtol: -1.0, atol: 0.0 }, None, None).is_err());
    /// ```
    pub fn set_evaluation(
        &mut self,
        eval: CnfEval,
        solver: Option<&str>,
        eval_steps: Option<usize>,
    ) -> Result<()> {
        let mut config = self.config.clone();
        config.eval = eval;
        if let Some(s) = solver {
            config.solver = s.to_string();
        }
        if let Some(k) = eval_steps {
            config.eval_steps = k;
        }
        self.tableau = config.check()?;
        self.config = config;
        Ok(())
    }

    fn check_x(&self, what: &str, x: ArrayView2<f64>) -> Result<()> {
        fm_core::shape::check_data(what, x, self.config.dim)?;
        Ok(())
    }

    /// `v(t, x)` and its divergence `(n, 1)`: exact by `d` tangents, or Hutchinson's
    /// estimate with the given probes.
    fn field(
        &self,
        g: &mut Graph<f64>,
        t: f64,
        x: Var,
        p: &[Var],
        div: &Div,
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
                derivs.push(g.act_deriv(z, self.net.activation)?);
                g.activate(z, self.net.activation)?
            } else {
                z
            };
        }
        // The Jacobian-vector product (∂v/∂x) u for a tangent `e = [u, 0]` of the input.
        let jvp = |g: &mut Graph<f64>, e: Var| -> Result<Var> {
            let mut tan = e;
            for (l, &(wi, _)) in layers.iter().enumerate() {
                let dz = g.matmul(tan, p[wi])?;
                tan = match derivs.get(l) {
                    Some(&dv) => g.mul(dv, dz)?,
                    None => dz,
                };
            }
            Ok(tan)
        };
        match div {
            Div::Exact => {
                let mut terms = Vec::with_capacity(d);
                for j in 0..d {
                    let e = g.leaf(Array2::from_shape_fn((n, d + 1), |(_, c)| {
                        f64::from(c == j)
                    }));
                    let tan = jvp(g, e)?;
                    terms.push(g.select_cols(tan, &[j])?);
                }
                let cols = g.concat_cols(&terms)?;
                Ok((h, Some(g.row_sum(cols)?)))
            }
            Div::Probes(probes) => {
                let mut acc: Option<Var> = None;
                for &(e, v) in probes.iter() {
                    let tan = jvp(g, e)?;
                    let vjv = g.mul(v, tan)?;
                    let vjv = g.row_sum(vjv)?;
                    acc = Some(match acc {
                        Some(a) => g.add(a, vjv)?,
                        None => vjv,
                    });
                }
                let acc = acc.expect("at least one probe");
                Ok((h, Some(g.scale(acc, 1.0 / probes.len() as f64)?)))
            }
        }
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
        div: &Div,
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
                let (k, div) = self.field(g, t + tab.c()[i] * h, xi, p, div)?;
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
    fn log_prob_graph(
        &self,
        g: &mut Graph<f64>,
        x: Var,
        p: &[Var],
        steps: usize,
        div: &Div,
    ) -> Result<Var> {
        let d = self.config.dim as f64;
        let (z, acc) = self.solve(g, x, p, (1.0, 0.0), steps, div)?;
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
        let (z, acc) = self.solve(&mut g, xv, &p, (1.0, 0.0), steps, &Div::Exact)?;
        let acc = acc.expect("divergence requested");
        Ok((g.value(z).clone(), g.value(acc).column(0).to_owned()))
    }

    /// `log p(x)` per row with the evaluation solver [`CnfConfig::eval`] and the exact
    /// divergence: Dormand–Prince on the augmented state `[x, ℓ]` (`dℓ/dt = −div v`, from
    /// `t = 1` to 0), or the fixed-step method with `eval_steps` steps.
    pub fn log_density(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        self.check_x("x", x)?;
        match self.config.eval {
            CnfEval::Fixed => self.log_density_fixed(x, self.config.eval_steps),
            CnfEval::Dopri5 { rtol, atol } => {
                let field = self.field_at_params();
                let aug = AugmentedField::new(&field);
                let sol = Integrator::new(Dopri5::default())
                    .span(1.0, 0.0)
                    .tolerances(rtol, atol)
                    .run(&aug, augmented_state(x).view())?;
                let (z, ell) = split_augmented(sol.x.view());
                let base = StandardNormal::new(self.config.dim)?.log_prob(z.view())?;
                Ok(base - ell)
            }
        }
    }

    /// `log p(x)` per row by the fixed-step method [`CnfConfig::solver`] with `steps` steps
    /// and the exact divergence: the discretisation training records (the same tableau on
    /// `[x, ℓ]`), run by `fm-ode`'s integrator on plain arrays (no tape, so memory does not
    /// grow with the steps).
    pub fn log_density_fixed(&self, x: ArrayView2<f64>, steps: usize) -> Result<Array1<f64>> {
        self.check_x("x", x)?;
        if steps == 0 {
            return Err(invalid("steps", 0, "give at least one solver step"));
        }
        let field = self.field_at_params();
        let aug = AugmentedField::new(&field);
        let sol = Integrator::new(ExplicitRk::new(self.tableau.clone()))
            .span(1.0, 0.0)
            .steps(steps)
            .run(&aug, augmented_state(x).view())?;
        let (z, ell) = split_augmented(sol.x.view());
        let base = StandardNormal::new(self.config.dim)?.log_prob(z.view())?;
        Ok(base - ell)
    }

    /// The field `v_θ(t, x)` with its exact divergence as an `fm-ode` [`VectorField`], computed
    /// with plain arrays (no tape): what [`CnfEval::Dopri5`] integrates.
    ///
    /// ```
    /// use fm_core::VectorField;
    /// let cnf = fm_nf::CnfMle::new(Default::default(), &mut fm_core::rng::seeded(0)).unwrap();
    /// let field = cnf.field_at_params();
    /// let div = field.divergence_vec(0.5, ndarray::array![[0.1, -0.2]].view());
    /// assert!(div[0].is_finite());
    /// ```
    pub fn field_at_params(&self) -> CnfField<'_> {
        CnfField { cnf: self }
    }

    /// `n` samples: `z ~ N(0, I)` from `rng`, solved from `t = 0` to 1 with the evaluation
    /// solver [`CnfConfig::eval`].
    pub fn sample<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Result<Array2<f64>> {
        if n == 0 {
            return Err(invalid("n", 0, "ask for at least one sample"));
        }
        let z = StandardNormal::new(self.config.dim)?.sample(n, rng);
        match self.config.eval {
            CnfEval::Fixed => {
                let field = self.field_at_params();
                let sol = Integrator::new(ExplicitRk::new(self.tableau.clone()))
                    .span(0.0, 1.0)
                    .steps(self.config.eval_steps)
                    .run(&field, z.view())?;
                Ok(sol.x)
            }
            CnfEval::Dopri5 { rtol, atol } => {
                let field = self.field_at_params();
                let sol = Integrator::new(Dopri5::default())
                    .span(0.0, 1.0)
                    .tolerances(rtol, atol)
                    .run(&field, z.view())?;
                Ok(sol.x)
            }
        }
    }

    /// Hutchinson probes for a batch of `n` rows: `(input tangent [v, 0], v)` leaves.
    fn probes(
        &self,
        g: &mut Graph<f64>,
        n: usize,
        k: usize,
        noise: ProbeNoise,
        rng: &mut dyn RngCore,
    ) -> Vec<(Var, Var)> {
        let d = self.config.dim;
        (0..k)
            .map(|_| {
                let v = Array2::from_shape_simple_fn((n, d), || match noise {
                    ProbeNoise::Gaussian => rng.sample::<f64, _>(Gauss),
                    ProbeNoise::Rademacher => {
                        if rng.random::<bool>() {
                            1.0
                        } else {
                            -1.0
                        }
                    }
                });
                let mut e = Array2::zeros((n, d + 1));
                e.slice_axis_mut(Axis(1), ndarray::Slice::from(..d))
                    .assign(&v);
                (g.leaf(e), g.leaf(v))
            })
            .collect()
    }
}

/// How the recorded solve computes the divergence.
enum Div {
    /// Exactly, by `d` tangents.
    Exact,
    /// Hutchinson's estimate with these `(tangent [v, 0], v)` leaves.
    Probes(Vec<(Var, Var)>),
}

/// The field of a [`CnfMle`] at its parameters as an [`fm_core::VectorField`] with the exact
/// divergence (from [`CnfMle::field_at_params`]).
#[derive(Debug, Clone, Copy)]
pub struct CnfField<'a> {
    cnf: &'a CnfMle,
}

impl CnfField<'_> {
    /// The pre-activations' derivatives per hidden layer and the output.
    fn forward(&self, t: f64, x: ArrayView2<f64>) -> (Array2<f64>, Vec<Array2<f64>>) {
        let cnf = self.cnf;
        let (n, d) = x.dim();
        let mut h = Array2::zeros((n, d + 1));
        h.slice_axis_mut(Axis(1), ndarray::Slice::from(..d))
            .assign(&x);
        h.column_mut(d).fill(t);
        let layers = &cnf.net.layers;
        let mut derivs = Vec::with_capacity(layers.len());
        for (l, &(wi, bi)) in layers.iter().enumerate() {
            let w = cnf.layout.view(&cnf.params, wi);
            let b = cnf.layout.view(&cnf.params, bi);
            let mut z = h.dot(&w);
            z += &b;
            if l + 1 < layers.len() {
                let mut dz = Array2::zeros(z.raw_dim());
                Zip::from(&mut z).and(&mut dz).for_each(|z, dz| {
                    let (y, dy) = cnf.net.activation.eval(*z);
                    *z = y;
                    *dz = dy;
                });
                derivs.push(dz);
            }
            h = z;
        }
        (h, derivs)
    }
}

impl VectorField for CnfField<'_> {
    fn dim(&self) -> usize {
        self.cnf.config.dim
    }

    fn velocity(&self, t: f64, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>) {
        out.assign(&self.forward(t, x).0);
    }

    fn divergence(&self, t: f64, x: ArrayView2<f64>, mut out: ArrayViewMut1<f64>) {
        let cnf = self.cnf;
        let (n, d) = x.dim();
        let (_, derivs) = self.forward(t, x);
        let layers = &cnf.net.layers;
        out.fill(0.0);
        for j in 0..d {
            // The tangent e_j through the layers: row i of W_0 is the input's j-th weight row.
            let w0 = cnf.layout.view(&cnf.params, layers[0].0);
            let mut tan = Array2::from_shape_fn((n, w0.ncols()), |(_, c)| w0[[j, c]]);
            for (l, &(wi, _)) in layers.iter().enumerate() {
                if l > 0 {
                    tan = tan.dot(&cnf.layout.view(&cnf.params, wi));
                }
                if let Some(dv) = derivs.get(l) {
                    tan *= dv;
                }
            }
            out += &tan.index_axis(Axis(1), j);
        }
    }
}

impl MaxLikelihood for CnfMle {
    fn params(&self) -> &[f64] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [f64] {
        &mut self.params
    }

    /// The discretised mean negative log-likelihood with `train_steps` steps and its
    /// gradient; with [`TraceEstimator::Hutchinson`] an unbiased estimate of both, the probes
    /// drawn from `rng` (unused with the exact divergence).
    fn nll_and_grad(&self, x: ArrayView2<f64>, rng: &mut dyn RngCore) -> Result<(f64, Vec<f64>)> {
        self.check_x("training batch", x)?;
        if self.config.trace == TraceEstimator::Exact {
            return Ok(self.nll_and_grad_fused(x));
        }
        self.nll_and_grad_tape(x, rng)
    }
}

impl CnfMle {
    /// The training loss and gradient by the `fm-autograd` tape: the path of
    /// [`MaxLikelihood::nll_and_grad`] with Hutchinson's estimator, and with the exact
    /// divergence the reference the tests compare the fused pass with (and the baseline of the
    /// `step` bench).
    ///
    /// ```
    /// use fm_nf::{CnfConfig, CnfMle, MaxLikelihood};
    /// let mut rng = fm_core::rng::seeded(0);
    /// let cnf = CnfMle::new(CnfConfig { hidden: vec![8], train_steps: 2, ..Default::default() }, &mut rng).unwrap();
    /// let x = ndarray::array![[0.3, -1.2], [1.0, 0.5]];
    /// let (a, ga) = cnf.nll_and_grad_tape(x.view(), &mut rng).unwrap();
    /// let (b, gb) = cnf.nll_and_grad(x.view(), &mut rng).unwrap();
    /// assert!((a - b).abs() < 1e-12);
    /// assert!(ga.iter().zip(&gb).all(|(u, v)| (u - v).abs() < 1e-12));
    /// ```
    pub fn nll_and_grad_tape(
        &self,
        x: ArrayView2<f64>,
        rng: &mut dyn RngCore,
    ) -> Result<(f64, Vec<f64>)> {
        self.check_x("training batch", x)?;
        let mut g = Graph::new();
        let p = self.layout.leaves(&mut g, &self.params);
        let xv = g.leaf(x.to_owned());
        let div = match self.config.trace {
            TraceEstimator::Exact => Div::Exact,
            TraceEstimator::Hutchinson { probes, noise } => {
                Div::Probes(self.probes(&mut g, x.nrows(), probes, noise, rng))
            }
        };
        let lp = self.log_prob_graph(&mut g, xv, &p, self.config.train_steps, &div)?;
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

/// What the fused training pass keeps of one field evaluation for its backward pass.
struct FieldTape {
    /// Every layer's input: `[x, t]`, then each hidden layer's output `f(z_l)`.
    hs: Vec<Array2<f64>>,
    /// `f'(z_l)` per hidden layer.
    ds: Vec<Array2<f64>>,
    /// `f''(z_l)` per hidden layer.
    dds: Vec<Array2<f64>>,
    /// Per input direction `j < d` and hidden layer: the tangent's pre-activation `a_l`
    /// (`a_0 = W_0[j, ·]`, `a_l = τ_{l−1} W_l`) and `τ_l = f'(z_l) ⊙ a_l`.
    tangents: Vec<Vec<(Array2<f64>, Array2<f64>)>>,
    /// With two hidden layers, the divergence in one product instead of the tangents:
    /// `(P, M, Q)` of [`CnfMle::field_fused`].
    collapsed: Option<(Array2<f64>, Array2<f64>, Array2<f64>)>,
}

impl CnfMle {
    /// `v(t, x)` and its exact divergence per row by the `d` forward-mode tangents
    /// `e_j`, with everything the backward pass needs.
    ///
    /// With two hidden layers (`D_0 = f'(z_0)`, `D_1 = f'(z_1)`) the trace of
    /// `∂v/∂x = W_2ᵀ D_1 W_1ᵀ D_0 W_0[:d]ᵀ` collapses to one product for any `d`:
    /// `div_i = Σ_{a,b} D_0[i,a] P[a,b] D_1[i,b]` with `P = W_1 ⊙ M`,
    /// `M = W_0[:d]ᵀ W_2ᵀ` (a matrix independent of the row), i.e. `Q = D_0 P`,
    /// `div_i = Σ_b Q[i,b] D_1[i,b]`.
    fn field_fused(
        &self,
        t: f64,
        x: &Array2<f64>,
        pool: &mut Pool,
    ) -> (Array2<f64>, Array1<f64>, FieldTape) {
        let (n, d) = x.dim();
        let act = self.net.activation;
        let layers = &self.net.layers;
        let nh = layers.len() - 1;
        let w = |l: usize| self.layout.view(&self.params, layers[l].0);
        let mut h0 = pool.take(n, d + 1);
        h0.column_mut(d).fill(t);
        h0.slice_axis_mut(Axis(1), (0..d).into()).assign(x);
        let mut hs = vec![h0];
        let (mut ds, mut dds) = (Vec::with_capacity(nh), Vec::with_capacity(nh));
        let mut v = Array2::zeros((0, 0));
        for (l, &(_, bi)) in layers.iter().enumerate() {
            let wl = w(l);
            let mut z = pool.take(n, wl.ncols());
            z.assign(&self.layout.view(&self.params, bi).row(0));
            general_mat_mul(1.0, &hs[l], &wl, 1.0, &mut z);
            if l < nh {
                let mut dz = pool.take(n, wl.ncols());
                let mut ddz = pool.take(n, wl.ncols());
                let tanh = act == Activation::Tanh;
                Zip::from(&mut z)
                    .and(&mut dz)
                    .and(&mut ddz)
                    .for_each(|z, dz, ddz| {
                        let zv = *z;
                        (*z, *dz) = act.eval(zv);
                        // tanh'' = −2 y (1 − y²) from the value at hand (no second tanh).
                        *ddz = if tanh {
                            -2.0 * *z * *dz
                        } else {
                            act.second_derivative(zv)
                        };
                    });
                hs.push(z);
                ds.push(dz);
                dds.push(ddz);
            } else {
                v = z;
            }
        }
        let wlast = w(nh);
        let mut div = Array1::zeros(n);
        let mut tangents = Vec::with_capacity(d);
        let mut collapsed = None;
        if nh == 2 {
            let (h0, h1) = (ds[0].ncols(), ds[1].ncols());
            let mut m = pool.zeros(h0, h1);
            let w0x = w(0).slice_axis_move(Axis(0), (0..d).into());
            general_mat_mul(1.0, &w0x.t(), &wlast.t(), 0.0, &mut m);
            let mut p = pool.take(h0, h1);
            Zip::from(&mut p)
                .and(&w(1))
                .and(&m)
                .for_each(|p, &w, &m| *p = w * m);
            let mut q = pool.zeros(n, h1);
            general_mat_mul(1.0, &ds[0], &p, 0.0, &mut q);
            Zip::from(&mut div)
                .and(q.rows())
                .and(ds[1].rows())
                .for_each(|dv, q, d1| *dv = q.dot(&d1));
            collapsed = Some((p, m, q));
        }
        for j in (0..d).filter(|_| collapsed.is_none()) {
            let mut tj: Vec<(Array2<f64>, Array2<f64>)> = Vec::with_capacity(nh);
            for l in 0..nh {
                let (r, c) = ds[l].dim();
                let mut a = pool.take(r, c);
                if l == 0 {
                    a.assign(&w(0).row(j));
                } else {
                    a.fill(0.0);
                    general_mat_mul(1.0, &tj[l - 1].1, &w(l), 0.0, &mut a);
                }
                let mut tau = pool.take(r, c);
                Zip::from(&mut tau)
                    .and(&a)
                    .and(&ds[l])
                    .for_each(|t, &a, &d| *t = a * d);
                tj.push((a, tau));
            }
            general_mat_vec_mul(1.0, &tj[nh - 1].1, &wlast.column(j), 1.0, &mut div);
            tangents.push(tj);
        }
        (
            v,
            div,
            FieldTape {
                hs,
                ds,
                dds,
                tangents,
                collapsed,
            },
        )
    }

    /// The backward pass of [`CnfMle::field_fused`] for the cotangents `gv` of `v` and `gdiv`
    /// (the same for every row) of the divergence: adds the parameter gradient into `grad`,
    /// returns the cotangent of `x`.
    fn field_fused_backward(
        &self,
        tape: &FieldTape,
        gv: &Array2<f64>,
        gdiv: f64,
        grad: &mut [f64],
        pool: &mut Pool,
    ) -> Array2<f64> {
        let d = self.config.dim;
        let layers = &self.net.layers;
        let nh = layers.len() - 1;
        let specs = &self.layout.specs;
        let w = |l: usize| self.layout.view(&self.params, layers[l].0);
        // Output layer.
        let (wi, bi) = layers[nh];
        let wlast = w(nh);
        {
            let mut g = spec_mut(&specs[wi], grad);
            general_mat_mul(1.0, &tape.hs[nh].t(), gv, 1.0, &mut g);
            // div = Σ_j τ_j · W_last[·, j]: ∂W_last[·, j] += gdiv Σ_i τ_j[i, ·].
            for (j, tj) in tape.tangents.iter().enumerate() {
                let mut col = g.column_mut(j);
                col.scaled_add(gdiv, &tj[nh - 1].1.sum_axis(Axis(0)));
            }
        }
        let mut gd: Vec<Array2<f64>> = tape
            .ds
            .iter()
            .map(|a| pool.zeros(a.nrows(), a.ncols()))
            .collect();
        if let Some((p, m, q)) = &tape.collapsed {
            // div_i = Σ_b Q[i,b] D_1[i,b], Q = D_0 P, P = W_1 ⊙ M, M = W_0[:d]ᵀ W_2ᵀ.
            let (d0, d1) = (&tape.ds[0], &tape.ds[1]);
            gd[1].scaled_add(gdiv, q);
            general_mat_mul(gdiv, d1, &p.t(), 1.0, &mut gd[0]);
            let mut gp = pool.zeros(p.nrows(), p.ncols());
            general_mat_mul(gdiv, &d0.t(), d1, 0.0, &mut gp);
            spec_mut(&specs[layers[1].0], grad).zip_mut_with(&(&gp * m), |a, &v| *a += v);
            let gm = &gp * &w(1);
            let w0x = w(0).slice_axis_move(Axis(0), (0..d).into());
            {
                let mut g0 = spec_mut(&specs[layers[0].0], grad);
                let mut g0x = g0.slice_axis_mut(Axis(0), (0..d).into());
                general_mat_mul(1.0, &wlast.t(), &gm.t(), 1.0, &mut g0x);
            }
            general_mat_mul(1.0, &gm.t(), &w0x.t(), 1.0, &mut spec_mut(&specs[wi], grad));
            pool.put(gp);
        }
        spec_mut(&specs[bi], grad)
            .row_mut(0)
            .zip_mut_with(&gv.sum_axis(Axis(0)), |a, &v| *a += v);
        // The tangents backwards: cotangents of f'(z_l) into `gd`.
        for (j, tj) in tape.tangents.iter().enumerate() {
            let (r, c) = tape.ds[nh - 1].dim();
            let mut gtau = pool.take(r, c);
            gtau.assign(&wlast.column(j).mapv(|v| gdiv * v));
            for l in (0..nh).rev() {
                let (a, _) = &tj[l];
                Zip::from(&mut gd[l])
                    .and(&gtau)
                    .and(a)
                    .for_each(|g, &gt, &a| {
                        *g = gt.mul_add(a, *g);
                    });
                let mut ga = pool.take(gtau.nrows(), gtau.ncols());
                Zip::from(&mut ga)
                    .and(&gtau)
                    .and(&tape.ds[l])
                    .for_each(|g, &gt, &d| *g = gt * d);
                if l > 0 {
                    let mut g = spec_mut(&specs[layers[l].0], grad);
                    general_mat_mul(1.0, &tj[l - 1].1.t(), &ga, 1.0, &mut g);
                    let (r, c) = tj[l - 1].1.dim();
                    let mut next = pool.zeros(r, c);
                    general_mat_mul(1.0, &ga, &w(l).t(), 0.0, &mut next);
                    pool.put(std::mem::replace(&mut gtau, next));
                } else {
                    let mut g = spec_mut(&specs[layers[0].0], grad);
                    g.row_mut(j)
                        .zip_mut_with(&ga.sum_axis(Axis(0)), |a, &v| *a += v);
                }
                pool.put(ga);
            }
            pool.put(gtau);
        }
        // The value chain.
        let (r, c) = tape.hs[nh].dim();
        let mut gh = pool.zeros(r, c);
        general_mat_mul(1.0, gv, &wlast.t(), 0.0, &mut gh);
        for l in (0..nh).rev() {
            let (wi, bi) = layers[l];
            let mut gz = gh;
            Zip::from(&mut gz)
                .and(&tape.ds[l])
                .and(&gd[l])
                .and(&tape.dds[l])
                .for_each(|g, &d1, &gd, &d2| *g = (*g * d1) + gd * d2);
            general_mat_mul(
                1.0,
                &tape.hs[l].t(),
                &gz,
                1.0,
                &mut spec_mut(&specs[wi], grad),
            );
            spec_mut(&specs[bi], grad)
                .row_mut(0)
                .zip_mut_with(&gz.sum_axis(Axis(0)), |a, &v| *a += v);
            let (r, c) = tape.hs[l].dim();
            gh = pool.zeros(r, c);
            general_mat_mul(1.0, &gz, &w(l).t(), 0.0, &mut gh);
            pool.put(gz);
        }
        pool.extend(gd);
        let mut gx = pool.take(gh.nrows(), d);
        gx.assign(&gh.slice_axis(Axis(1), (0..d).into()));
        pool.put(gh);
        gx
    }

    /// The training loss and gradient with the exact divergence by a hand-written forward and
    /// backward pass through the fixed-step solve (no tape); the same function as the tape's
    /// (the tests compare them).
    fn nll_and_grad_fused(&self, x: ArrayView2<f64>) -> (f64, Vec<f64>) {
        let (n, d) = x.dim();
        let nf = n as f64;
        let tab = &self.tableau;
        let steps = self.config.train_steps;
        let (t0, t1) = (1.0, 0.0);
        let h = (t1 - t0) / steps as f64;
        let stages = tab.stages();
        let mut pool = take_pool();
        let mut xc = x.to_owned();
        let mut acc_sum = 0.0;
        let mut tapes: Vec<Vec<FieldTape>> = Vec::with_capacity(steps);
        for s in 0..steps {
            let t = t0 + s as f64 * h;
            let mut ks: Vec<Array2<f64>> = Vec::with_capacity(stages);
            let mut st = Vec::with_capacity(stages);
            let mut dx = pool.zeros(n, d);
            for i in 0..stages {
                let mut xi = pool.take(n, d);
                xi.assign(&xc);
                for (j, kj) in ks.iter().enumerate() {
                    let a = tab.a(i, j);
                    if a != 0.0 {
                        xi.scaled_add(h * a, kj);
                    }
                }
                let (k, div, tape) = self.field_fused(t + tab.c()[i] * h, &xi, &mut pool);
                pool.put(xi);
                let b = tab.b()[i];
                if b != 0.0 {
                    dx.scaled_add(h * b, &k);
                    acc_sum += h * b * div.sum();
                }
                ks.push(k);
                st.push(tape);
            }
            xc += &dx;
            pool.put(dx);
            pool.extend(ks);
            tapes.push(st);
        }
        let sq: f64 = xc.iter().map(|v| v * v).sum();
        let loss =
            0.5 * sq / nf + 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln() - acc_sum / nf;
        let mut grad = vec![0.0; self.layout.total];
        let mut gx = xc.mapv(|v| v / nf);
        let gacc = -1.0 / nf;
        for st in tapes.iter().rev() {
            let mut gk: Vec<Array2<f64>> = (0..stages)
                .map(|i| {
                    let mut a = pool.take(n, d);
                    let c = h * tab.b()[i];
                    a.zip_mut_with(&gx, |a, &v| *a = v * c);
                    a
                })
                .collect();
            let mut total = pool.take(n, d);
            total.assign(&gx);
            for i in (0..stages).rev() {
                let gxi = self.field_fused_backward(
                    &st[i],
                    &gk[i],
                    gacc * h * tab.b()[i],
                    &mut grad,
                    &mut pool,
                );
                for (j, gkj) in gk.iter_mut().enumerate().take(i) {
                    let a = tab.a(i, j);
                    if a != 0.0 {
                        gkj.scaled_add(h * a, &gxi);
                    }
                }
                total += &gxi;
                pool.put(gxi);
            }
            pool.extend(gk);
            pool.put(std::mem::replace(&mut gx, total));
        }
        for tape in tapes.into_iter().flatten() {
            pool.extend(tape.hs.into_iter().chain(tape.ds).chain(tape.dds));
            for (a, tau) in tape.tangents.into_iter().flatten() {
                pool.extend([a, tau]);
            }
            if let Some((p, m, q)) = tape.collapsed {
                pool.extend([p, m, q]);
            }
        }
        give_pool(pool);
        (loss, grad)
    }
}

/// A mutable `(rows, cols)` view of tensor `spec` in a flat vector.
fn spec_mut<'a>(spec: &ParamSpec, flat: &'a mut [f64]) -> ArrayViewMut2<'a, f64> {
    ArrayViewMut2::from_shape(
        (spec.rows, spec.cols),
        &mut flat[spec.offset..spec.offset + spec.len()],
    )
    .expect("layout sizes are consistent")
}
