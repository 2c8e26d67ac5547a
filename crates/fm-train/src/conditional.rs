//! Conditional flow matching `p(x | c)`: the context layout stored in a model file, z-scoring,
//! label encoding with a reserved "no label" entry, classifier-free guidance, and sampling with a
//! context.
//!
//! The formulas are in `docs/conditioning.md`. In short: a conditional network is the
//! unconditional one with `k` more input columns, `v_θ(t, x, c)`; the batch carries the context
//! rows of its targets; the source stays `N(0, I)` independent of `c`; couplings never pair across
//! contexts ([`LabelOtCoupling`] within a label, [`ConditionalOtCoupling`] with cost
//! `‖x_0 − x_1‖² + β ‖c_0 − c_1‖²` for continuous contexts). With z-scoring the model lives in the
//! standardized coordinates `x̃ = (x − μ_x)/σ_x`, `c̃ = (c − μ_c)/σ_c`; samples are mapped back
//! and log-likelihoods include `−Σ_j log σ_{x,j}`.

use crate::{CouplingKind, MatcherSpec, Objective, SampleOptions, TrainError, TrainedModel};
use fm_autograd::Mlp;
use fm_core::{LogDensity, VectorField};
use fm_couplings::{
    ConditionalCoupling, ConditionalOtCoupling, IgnoreContext, IndependentCoupling, LabelOtCoupling,
};
use fm_ode::Solution;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, Slice};
use serde::{Deserialize, Serialize};

/// The default weight `β` of the context term of [`ConditionalOtCoupling`] under OT matchers
/// with continuous contexts: on z-scored contexts, `β = 100` showed no detectable bias of the
/// source given the context (fm-couplings' `trade_off_of_beta_on_a_continuous_context`: largest
/// z-score 2.3, against 2.2 for the independent coupling) while still shortening the paired
/// distances (2.05 against 2.60).
pub const DEFAULT_CONTEXT_BETA: f64 = 100.0;

/// The default probability with which a training label is replaced by the "no label" entry, so
/// that one network learns both `v(x, c)` and `v(x, ∅)` (classifier-free guidance, Ho &
/// Salimans 2022, use 0.1–0.2).
pub const DEFAULT_LABEL_DROPOUT: f64 = 0.1;

/// What kind of context a model was trained with (stored in lowercase in model files).
///
/// ```
/// use fm_train::ContextKind;
/// assert_eq!(serde_json::to_string(&ContextKind::Labels).unwrap(), "\"labels\"");
/// assert_eq!(ContextKind::default(), ContextKind::None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ContextKind {
    /// No context: an unconditional model.
    #[default]
    None,
    /// Real-valued context vectors `c ∈ R^k`.
    Continuous,
    /// Integer class labels, fed one-hot with a reserved "no label" entry.
    Labels,
}

/// Per-column standardization `x̃ = (x − mean) / std`.
///
/// [`Standardizer::fit`] uses the sample standard deviation (`n − 1` in the denominator); a
/// column whose deviation is zero (or below `1e-12 · max(1, |mean|)`) keeps scale 1, so constant
/// columns are shifted but never divided by zero.
///
/// ```
/// use fm_train::Standardizer;
/// let x = ndarray::array![[1.0, 10.0], [3.0, 10.0]];
/// let z = Standardizer::fit(x.view());
/// assert_eq!(z.mean, vec![2.0, 10.0]);
/// assert_eq!(z.std[1], 1.0); // a constant column
/// let back = z.invert(z.apply(x.view()).view());
/// assert!((&back - &x).iter().all(|v| v.abs() < 1e-12));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Standardizer {
    /// Column means.
    pub mean: Vec<f64>,
    /// Column scales (positive).
    pub std: Vec<f64>,
}

impl Standardizer {
    /// The column means and sample standard deviations of `x` (at least one row).
    pub fn fit(x: ArrayView2<f64>) -> Self {
        let n = x.nrows().max(1) as f64;
        let mut mean = Vec::with_capacity(x.ncols());
        let mut std = Vec::with_capacity(x.ncols());
        for col in x.columns() {
            let m = col.sum() / n;
            let ss: f64 = col.iter().map(|v| (v - m) * (v - m)).sum();
            let s = (ss / (n - 1.0).max(1.0)).sqrt();
            mean.push(m);
            std.push(if s > 1e-12 * m.abs().max(1.0) { s } else { 1.0 });
        }
        Self { mean, std }
    }

    /// `(x − mean) / std` per column.
    pub fn apply(&self, x: ArrayView2<f64>) -> Array2<f64> {
        let mut out = x.to_owned();
        for (j, mut col) in out.columns_mut().into_iter().enumerate() {
            let (m, s) = (self.mean[j], self.std[j]);
            col.mapv_inplace(|v| (v - m) / s);
        }
        out
    }

    /// `mean + std · x̃` per column (the inverse of [`Standardizer::apply`]).
    pub fn invert(&self, x: ArrayView2<f64>) -> Array2<f64> {
        let mut out = x.to_owned();
        for (j, mut col) in out.columns_mut().into_iter().enumerate() {
            let (m, s) = (self.mean[j], self.std[j]);
            col.mapv_inplace(|v| m + s * v);
        }
        out
    }

    /// `Σ_j log std_j`, the log-determinant of [`Standardizer::invert`]: a density `p̃` of the
    /// standardized coordinates gives `log p(x) = log p̃(x̃) − Σ_j log std_j`.
    ///
    /// ```
    /// let z = fm_train::Standardizer { mean: vec![0.0, 1.0], std: vec![2.0, 0.5] };
    /// assert!(z.log_det().abs() < 1e-15); // log 2 + log ½
    /// ```
    pub fn log_det(&self) -> f64 {
        self.std.iter().map(|s| s.ln()).sum()
    }
}

/// The context layout of a conditional model, stored in its model file
/// ([`ModelConfig::context`](crate::ModelConfig::context)); files written before conditioning
/// read as [`ContextKind::None`].
///
/// ```
/// use fm_train::{ContextKind, ContextLayout};
/// let labels = ContextLayout { kind: ContextKind::Labels, width: 1, labels: vec![0, 1, 2], ..Default::default() };
/// assert_eq!(labels.input_width(), 4); // one-hot over 3 classes + the "no label" entry
/// assert!(ContextLayout::default().is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ContextLayout {
    /// Continuous vectors, labels, or none.
    pub kind: ContextKind,
    /// The number of context columns the user gives: `k` for continuous contexts, 1 for labels.
    pub width: usize,
    /// The classes seen in training, sorted (labels only); class `labels[i]` is one-hot entry
    /// `i`, entry `labels.len()` is "no label".
    pub labels: Vec<i64>,
    /// The probability with which a training label was replaced by "no label".
    pub label_dropout: f64,
    /// The weight `β` of [`ConditionalOtCoupling`] (OT matchers with continuous contexts).
    pub beta: f64,
    /// The z-scoring of `x`, if any (samples are mapped back with it).
    pub x_scale: Option<Standardizer>,
    /// The z-scoring of continuous contexts, if any (contexts are mapped with it).
    pub c_scale: Option<Standardizer>,
}

impl ContextLayout {
    /// Whether the model is unconditional.
    pub fn is_none(&self) -> bool {
        self.kind == ContextKind::None
    }

    /// The number of context columns of the network's input: `k` (continuous), the number of
    /// classes + 1 (labels), 0 (none).
    pub fn input_width(&self) -> usize {
        match self.kind {
            ContextKind::None => 0,
            ContextKind::Continuous => self.width,
            ContextKind::Labels => self.labels.len() + 1,
        }
    }

    /// The network input of contexts given by the user: z-scored continuous rows, or one-hot
    /// labels. One row is broadcast to `n` rows; otherwise there must be `n`.
    ///
    /// ```
    /// use fm_train::{Context, ContextKind, ContextLayout};
    /// let l = ContextLayout { kind: ContextKind::Labels, width: 1, labels: vec![-1, 5], ..Default::default() };
    /// let enc = l.encode(&Context::Labels(vec![5]), 2).unwrap();
    /// assert_eq!(enc, ndarray::array![[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]);
    /// assert!(l.encode(&Context::Labels(vec![7]), 1).is_err()); // unseen label
    /// ```
    pub fn encode(&self, context: &Context, n: usize) -> Result<Array2<f64>, TrainError> {
        let rows = context.len();
        if rows != 1 && rows != n {
            return Err(TrainError::param(
                "context",
                format!("{rows} rows"),
                format!("give one context (used for every point) or one per point ({n})"),
            ));
        }
        let enc = match (self.kind, context) {
            (ContextKind::None, _) => {
                return Err(TrainError::param(
                    "context",
                    "given",
                    "this model is unconditional: drop the context flags",
                ));
            }
            (ContextKind::Continuous, Context::Values(c)) => {
                if c.ncols() != self.width {
                    return Err(TrainError::param(
                        "context",
                        format!("{} values per row", c.ncols()),
                        format!(
                            "the model was trained with contexts of {} values: give exactly {} per row",
                            self.width, self.width
                        ),
                    ));
                }
                if let Some((i, v)) = c.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                    return Err(TrainError::param(
                        "context",
                        v,
                        format!("entry {i} is not finite: give finite context values"),
                    ));
                }
                match &self.c_scale {
                    Some(z) => z.apply(c.view()),
                    None => c.clone(),
                }
            }
            (ContextKind::Labels, Context::Labels(l)) => {
                let mut out = Array2::zeros((l.len(), self.input_width()));
                for (i, lab) in l.iter().enumerate() {
                    let pos = self.labels.binary_search(lab).map_err(|_| {
                        TrainError::param(
                            "label",
                            lab,
                            format!(
                                "the model was trained on the labels {:?}: give one of them",
                                self.labels
                            ),
                        )
                    })?;
                    out[[i, pos]] = 1.0;
                }
                out
            }
            (ContextKind::Continuous, Context::Labels(_)) => {
                return Err(TrainError::param(
                    "context",
                    "a label",
                    format!(
                        "this model takes continuous contexts of {} values (--context / --context-file), not labels",
                        self.width
                    ),
                ));
            }
            (ContextKind::Labels, Context::Values(_)) => {
                return Err(TrainError::param(
                    "context",
                    "continuous values",
                    format!(
                        "this model takes class labels (--label, one of {:?}), not context vectors",
                        self.labels
                    ),
                ));
            }
        };
        Ok(if rows == 1 && n != 1 {
            enc.broadcast((n, enc.ncols()))
                .expect("one row broadcasts")
                .to_owned()
        } else {
            enc
        })
    }

    /// The network input of "no label" (labels only): zeros with a one at the last entry.
    ///
    /// ```
    /// use fm_train::{ContextKind, ContextLayout};
    /// let l = ContextLayout { kind: ContextKind::Labels, width: 1, labels: vec![0, 1], ..Default::default() };
    /// assert_eq!(l.null_row().unwrap().to_vec(), vec![0.0, 0.0, 1.0]);
    /// assert!(ContextLayout::default().null_row().is_none());
    /// ```
    pub fn null_row(&self) -> Option<Array1<f64>> {
        (self.kind == ContextKind::Labels).then(|| {
            let mut r = Array1::zeros(self.input_width());
            r[self.labels.len()] = 1.0;
            r
        })
    }
}

/// Contexts given by a user: continuous vectors (one row per point, or one row for all) or
/// integer class labels (one per point, or one for all).
///
/// ```
/// use fm_train::Context;
/// assert_eq!(Context::Labels(vec![3]).len(), 1);
/// assert_eq!(Context::Values(ndarray::Array2::zeros((5, 2))).len(), 5);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Context {
    /// Context vectors, shape `(n, k)` or `(1, k)`.
    Values(Array2<f64>),
    /// Class labels, `n` or one.
    Labels(Vec<i64>),
}

impl Context {
    /// The number of rows (labels).
    pub fn len(&self) -> usize {
        match self {
            Context::Values(c) => c.nrows(),
            Context::Labels(l) => l.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a [`Trainer`](crate::Trainer) conditions on a context
/// ([`Trainer::context`](crate::Trainer::context)).
///
/// ```
/// let o = fm_train::ConditionOptions::default();
/// assert!(o.zscore && o.label_dropout == 0.1 && o.beta == 100.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConditionOptions {
    /// z-score the target `x` and continuous contexts (stats stored in the model file).
    pub zscore: bool,
    /// The probability of replacing a training label by "no label" (labels only), in `[0, 1)`.
    pub label_dropout: f64,
    /// The weight `β > 0` of [`ConditionalOtCoupling`] (OT matchers, continuous contexts).
    pub beta: f64,
}

impl Default for ConditionOptions {
    /// z-scoring on, label dropout [`DEFAULT_LABEL_DROPOUT`], `β` = [`DEFAULT_CONTEXT_BETA`].
    fn default() -> Self {
        Self {
            zscore: true,
            label_dropout: DEFAULT_LABEL_DROPOUT,
            beta: DEFAULT_CONTEXT_BETA,
        }
    }
}

/// The training data of a conditional run, prepared once: standardized targets, network-input
/// contexts and the conditional coupling.
pub(crate) struct Conditioning {
    pub(crate) layout: ContextLayout,
    pub(crate) x: Array2<f64>,
    pub(crate) c: Array2<f64>,
    pub(crate) coupling: Box<dyn ConditionalCoupling>,
}

impl std::fmt::Debug for Conditioning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conditioning")
            .field("layout", &self.layout)
            .field("rows", &self.x.nrows())
            .finish()
    }
}

impl Conditioning {
    /// Checks and prepares `x` (targets, `(n, d)`) with `context` (`n` rows).
    pub(crate) fn new(
        x: ArrayView2<f64>,
        context: &Context,
        spec: &MatcherSpec,
        objective: Objective,
        opts: &ConditionOptions,
    ) -> Result<Self, TrainError> {
        let n = x.nrows();
        if context.len() != n {
            return Err(TrainError::param(
                "context",
                format!("{} rows", context.len()),
                format!("the target has {n} rows: give one context row per target row"),
            ));
        }
        if objective != Objective::Flow {
            return Err(TrainError::param(
                "objective",
                objective.name(),
                "conditioning is implemented for flow matching: use --objective flow",
            ));
        }
        if !(0.0..1.0).contains(&opts.label_dropout) {
            return Err(TrainError::param(
                "label-dropout",
                opts.label_dropout,
                "give a probability in [0, 1)",
            ));
        }
        if !(opts.beta.is_finite() && opts.beta > 0.0) {
            return Err(TrainError::param(
                "beta",
                opts.beta,
                "give a finite context weight > 0",
            ));
        }
        let x_scale = opts.zscore.then(|| Standardizer::fit(x));
        let xs = match &x_scale {
            Some(z) => z.apply(x),
            None => x.to_owned(),
        };
        let mut layout = ContextLayout {
            x_scale,
            beta: opts.beta,
            ..ContextLayout::default()
        };
        let c = match context {
            Context::Values(c) => {
                if c.ncols() == 0 {
                    return Err(TrainError::param(
                        "context",
                        "0 columns",
                        "give at least one context column",
                    ));
                }
                if let Some((i, v)) = c.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                    return Err(TrainError::param(
                        "context",
                        v,
                        format!(
                            "row {} column {} is not finite: give finite contexts",
                            i / c.ncols(),
                            i % c.ncols()
                        ),
                    ));
                }
                layout.kind = ContextKind::Continuous;
                layout.width = c.ncols();
                layout.c_scale = opts.zscore.then(|| Standardizer::fit(c.view()));
                match &layout.c_scale {
                    Some(z) => z.apply(c.view()),
                    None => c.clone(),
                }
            }
            Context::Labels(l) => {
                let mut classes = l.clone();
                classes.sort_unstable();
                classes.dedup();
                if classes.len() > 65_536 {
                    return Err(TrainError::param(
                        "labels",
                        classes.len(),
                        "at most 65536 distinct classes are supported",
                    ));
                }
                layout.kind = ContextKind::Labels;
                layout.width = 1;
                layout.labels = classes;
                layout.label_dropout = opts.label_dropout;
                layout.encode(context, n)?
            }
        };
        let coupling: Box<dyn ConditionalCoupling> = match spec.coupling {
            CouplingKind::Independent => Box::new(IgnoreContext(IndependentCoupling::identity())),
            CouplingKind::Exact => match layout.kind {
                ContextKind::Labels => Box::new(LabelOtCoupling::default()),
                _ => Box::new(ConditionalOtCoupling::new(opts.beta)?),
            },
            CouplingKind::ExactWithReplacement | CouplingKind::Sinkhorn => {
                return Err(TrainError::param(
                    "coupling",
                    format!("{:?}", spec.coupling).to_lowercase(),
                    "under conditioning only the independent coupling and exact OT (within labels, or conditional OT for continuous contexts) are available: use --matcher icfm or otcfm",
                ));
            }
        };
        Ok(Self {
            layout,
            x: xs,
            c,
            coupling,
        })
    }
}

/// The velocity field of a conditional model on the augmented state `[x̃, c̃]` (shape
/// `(n, d + k)`, `k` the network's context width): the `x̃` columns move with
/// `v(t, x̃, c̃)`, the context columns stay fixed (velocity 0), so each row keeps its own context
/// however a solver splits the batch. With guidance `w` (label models), the velocity is
/// `v(x̃, ∅) + w (v(x̃, c̃) − v(x̃, ∅))`, computed as `(1 − w) v(x̃, ∅) + w v(x̃, c̃)`; `w = 1` is
/// the conditional field itself and `w = 0` the unconditional one (each evaluated once, bit for
/// bit the network at that input).
///
/// The divergence is the exact one of the `x̃` block (the context block contributes nothing).
///
/// ```
/// use fm_core::VectorField;
/// let cfg = fm_autograd::MlpConfig { context: 1, hidden: vec![8], ..Default::default() };
/// let mlp = fm_autograd::Mlp::new(&cfg, &mut fm_core::rng::seeded(0)).unwrap();
/// let field = fm_train::ConditionalField::new(mlp, None, 1.0).unwrap();
/// assert_eq!(field.dim(), 3); // x (2) + context (1)
/// let v = field.velocity_vec(0.5, ndarray::array![[0.0, 1.0, 2.0]].view());
/// assert_eq!(v[[0, 2]], 0.0); // the context does not move
/// ```
#[derive(Debug, Clone)]
pub struct ConditionalField {
    mlp: Mlp,
    null: Option<Array1<f64>>,
    guidance: f64,
}

impl ConditionalField {
    /// The field of a conditional network; `null` is the network input of "no label", needed
    /// for any guidance `w ≠ 1`.
    pub fn new(mlp: Mlp, null: Option<Array1<f64>>, guidance: f64) -> Result<Self, TrainError> {
        let k = mlp.config().context;
        if k == 0 {
            return Err(TrainError::param(
                "context",
                0,
                "the network is unconditional: use MlpField",
            ));
        }
        if !guidance.is_finite() {
            return Err(TrainError::param(
                "guidance",
                guidance,
                "give a finite guidance scale",
            ));
        }
        if guidance != 1.0 && null.is_none() {
            return Err(TrainError::param(
                "guidance",
                guidance,
                "guidance needs a model trained on labels with label dropout (--label-col with --label-dropout > 0)",
            ));
        }
        if let Some(n) = &null
            && n.len() != k
        {
            return Err(TrainError::param(
                "null",
                n.len(),
                format!("the network takes {k} context columns"),
            ));
        }
        Ok(Self {
            mlp,
            null,
            guidance,
        })
    }

    /// The network.
    pub fn mlp(&self) -> &Mlp {
        &self.mlp
    }

    /// The guidance scale `w`.
    pub fn guidance(&self) -> f64 {
        self.guidance
    }

    fn split<'a>(&self, x: &'a ArrayView2<'a, f64>) -> (ArrayView2<'a, f64>, ArrayView2<'a, f64>) {
        let d = self.mlp.config().dim;
        (
            x.slice_axis(Axis(1), Slice::from(..d)),
            x.slice_axis(Axis(1), Slice::from(d..)),
        )
    }

    fn nulls(&self, n: usize) -> Array2<f64> {
        let null = self.null.as_ref().expect("checked in new");
        null.broadcast((n, null.len()))
            .expect("a row broadcasts")
            .to_owned()
    }
}

impl VectorField for ConditionalField {
    fn dim(&self) -> usize {
        self.mlp.config().dim + self.mlp.config().context
    }

    fn velocity(&self, t: f64, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>) {
        let d = self.mlp.config().dim;
        let n = x.nrows();
        let (xs, cs) = self.split(&x);
        let tt = Array1::from_elem(n, t);
        out.slice_axis_mut(Axis(1), Slice::from(d..)).fill(0.0);
        if self.guidance == 0.0 {
            // The unconditional field itself.
            let nulls = self.nulls(n);
            let mut o = out.slice_axis_mut(Axis(1), Slice::from(..d));
            match self.mlp.forward_ctx(tt.view(), xs, Some(nulls.view())) {
                Ok(v) => o.assign(&v),
                Err(_) => o.fill(f64::NAN),
            }
            return;
        }
        let vc = match self.mlp.forward_ctx(tt.view(), xs, Some(cs)) {
            Ok(v) => v,
            Err(_) => {
                out.fill(f64::NAN);
                return;
            }
        };
        let mut o = out.slice_axis_mut(Axis(1), Slice::from(..d));
        if self.guidance == 1.0 {
            o.assign(&vc);
            return;
        }
        let nulls = self.nulls(n);
        match self.mlp.forward_ctx(tt.view(), xs, Some(nulls.view())) {
            Ok(vu) => {
                let w = self.guidance;
                ndarray::Zip::from(&mut o)
                    .and(&vu)
                    .and(&vc)
                    .for_each(|o, &u, &c| *o = (1.0 - w) * u + w * c);
            }
            Err(_) => o.fill(f64::NAN),
        }
    }

    fn divergence(&self, t: f64, x: ArrayView2<f64>, mut out: ArrayViewMut1<f64>) {
        let n = x.nrows();
        let (xs, cs) = self.split(&x);
        let tt = Array1::from_elem(n, t);
        if self.guidance == 0.0 {
            let nulls = self.nulls(n);
            match self.mlp.divergence_ctx(tt.view(), xs, Some(nulls.view())) {
                Ok(v) => out.assign(&v),
                Err(_) => out.fill(f64::NAN),
            }
            return;
        }
        let dc = match self.mlp.divergence_ctx(tt.view(), xs, Some(cs)) {
            Ok(v) => v,
            Err(_) => {
                out.fill(f64::NAN);
                return;
            }
        };
        if self.guidance == 1.0 {
            out.assign(&dc);
            return;
        }
        let nulls = self.nulls(n);
        match self.mlp.divergence_ctx(tt.view(), xs, Some(nulls.view())) {
            Ok(du) => {
                let w = self.guidance;
                ndarray::Zip::from(&mut out)
                    .and(&du)
                    .and(&dc)
                    .for_each(|o, &u, &c| *o = (1.0 - w) * u + w * c);
            }
            Err(_) => out.fill(f64::NAN),
        }
    }
}

/// `N(0, I_d)` on the first `d` of `d + k` columns: the source density of a
/// [`ConditionalField`]'s augmented state (the context columns are not random), for
/// `fm_metrics::log_likelihood_with_source`.
///
/// ```
/// use fm_core::LogDensity;
/// let s = fm_train::ContextSource::new(1, 2);
/// let lp = s.log_prob(ndarray::array![[0.0, 5.0, -7.0]].view()).unwrap();
/// assert!((lp[0] + 0.5 * (2.0 * std::f64::consts::PI).ln()).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextSource {
    d: usize,
    k: usize,
}

impl ContextSource {
    /// The density over `d` data and `k` context columns.
    pub fn new(d: usize, k: usize) -> Self {
        Self { d, k }
    }
}

impl LogDensity for ContextSource {
    fn dim(&self) -> usize {
        self.d + self.k
    }
    fn log_prob(&self, x: ArrayView2<f64>) -> fm_core::Result<Array1<f64>> {
        fm_core::shape::check_data("x", x, self.d + self.k)?;
        let c = -0.5 * self.d as f64 * (2.0 * std::f64::consts::PI).ln();
        Ok(x.rows()
            .into_iter()
            .map(|r| c - 0.5 * r.iter().take(self.d).map(|v| v * v).sum::<f64>())
            .collect())
    }
}

/// A tiny label model for the examples below.
///
/// ```
/// # fn label_model() -> fm_train::TrainedModel {
/// use fm_train::{ArchConfig, ConditionOptions, Context, MatcherSpec, Objective, Trainer, TrainParams};
/// let x = ndarray::Array2::from_shape_fn((40, 2), |(i, j)| (i % 2) as f64 * 3.0 + j as f64);
/// let target = fm_data::Dataset::Points(fm_data::Points::new("x", x).unwrap());
/// let source = fm_data::Dataset::parse("gaussian", Some(2)).unwrap();
/// let params = TrainParams::default().steps(2).batch(8).check().unwrap();
/// let m = MatcherSpec::parse("icfm", Some(0.1), None, None).unwrap();
/// let labels = Context::Labels((0..40).map(|i| i % 2).collect());
/// Trainer::new(source, target, m, Objective::Flow, ArchConfig { hidden: vec![8], ..Default::default() }, params)
///     .unwrap().context(labels, ConditionOptions::default()).unwrap().run(&mut |_| {}).unwrap().model
/// # }
/// # let model = label_model();
/// use fm_core::VectorField;
/// assert!(model.is_conditional());
/// let guided = model.conditional_field(true, Some(2.0)).unwrap();
/// assert_eq!(guided.dim(), 2 + 3); // x, then one-hot over {0, 1} and "no label"
/// let x = ndarray::array![[0.0, 1.0], [3.0, 4.0]];
/// let (state, log_det) = model.conditional_inputs(x.view(), &fm_train::Context::Labels(vec![1])).unwrap();
/// assert_eq!(state.dim(), (2, 5));
/// assert!(log_det.is_finite()); // Σ log σ of the z-scoring of x
/// ```
impl TrainedModel {
    /// Whether the model was trained with a context.
    pub fn is_conditional(&self) -> bool {
        !self.config.context.is_none()
    }

    /// The [`ConditionalField`] of a conditional model (EMA weights if present and `use_ema`)
    /// with guidance scale `guidance` (`None`: 1, the plain conditional field). Guidance needs a
    /// label model trained with label dropout.
    pub fn conditional_field(
        &self,
        use_ema: bool,
        guidance: Option<f64>,
    ) -> Result<ConditionalField, TrainError> {
        let layout = &self.config.context;
        if layout.is_none() {
            return Err(TrainError::param(
                "context",
                "given",
                "this model is unconditional: drop the context flags",
            ));
        }
        let w = guidance.unwrap_or(1.0);
        if guidance.is_some() && (layout.kind != ContextKind::Labels || layout.label_dropout <= 0.0)
        {
            return Err(TrainError::param(
                "guidance",
                w,
                "guidance needs a model trained on labels with label dropout > 0 (fm train --label-col ... --label-dropout P); this one was not",
            ));
        }
        ConditionalField::new(self.network(use_ema).clone(), layout.null_row(), w)
    }

    /// The augmented states `[x̃, c̃]` of data points `x` (shape `(n, d)`) with contexts, and
    /// `Σ_j log σ_j` of the z-scoring (0 without): `log p(x | c) = log p̃([x̃, c̃]) − that`, where
    /// `log p̃` is `fm_metrics::log_likelihood_with_source` of [`TrainedModel::conditional_field`]
    /// with the source [`ContextSource`].
    pub fn conditional_inputs(
        &self,
        x: ArrayView2<f64>,
        context: &Context,
    ) -> Result<(Array2<f64>, f64), TrainError> {
        let d = self.config.architecture.dim;
        fm_core::shape::check_data("x", x, d)?;
        let layout = &self.config.context;
        let c = layout.encode(context, x.nrows())?;
        let (xs, log_det) = match &layout.x_scale {
            Some(z) => (z.apply(x), z.log_det()),
            None => (x.to_owned(), 0.0),
        };
        Ok((
            ndarray::concatenate(Axis(1), &[xs.view(), c.view()]).expect("equal rows"),
            log_det,
        ))
    }
}

/// Samples a conditional model at the given contexts: `opts.n` source points `x̃_0 ~ N(0, I)`
/// (seed `opts.seed`, independent of the context) are integrated from t = 0 to 1 on the
/// [`ConditionalField`] (guidance `guidance`, default 1) with the context of their row (one
/// context is broadcast to all rows), and mapped back through the z-scoring. Returns the source
/// draw (standardized coordinates) and the [`Solution`] with `x` (and any trajectory) in the
/// data's coordinates, `d` columns.
///
/// Adaptive tolerances are scaled by `√(d / (d + k))` so that the error norm over the augmented
/// state accepts the same steps as the norm over `x` alone would.
///
/// ```
/// use fm_train::{ArchConfig, ConditionOptions, Context, MatcherSpec, Objective, SampleOptions, Trainer, TrainParams};
/// let mut rng = fm_core::rng::seeded(0);
/// let c = ndarray::Array2::from_shape_fn((200, 1), |(i, _)| (i % 2) as f64);
/// let x = ndarray::Array2::from_shape_fn((200, 2), |(i, j)| c[[i, 0]] * 4.0 + j as f64);
/// let target = fm_data::Dataset::Points(fm_data::Points::new("x", x).unwrap());
/// let source = fm_data::Dataset::parse("gaussian", Some(2)).unwrap();
/// let params = TrainParams::default().steps(5).batch(32).check().unwrap();
/// let m = MatcherSpec::parse("icfm", Some(0.1), None, None).unwrap();
/// let model = Trainer::new(source, target, m, Objective::Flow, ArchConfig::default(), params)
///     .unwrap()
///     .context(Context::Values(c), ConditionOptions::default())
///     .unwrap()
///     .run(&mut |_| {})
///     .unwrap()
///     .model;
/// let opts = SampleOptions { n: 50, ..Default::default() };
/// let ctx = Context::Values(ndarray::array![[1.0]]);
/// let (_, sol) = fm_train::sample_conditional(&model, &opts, &ctx, None).unwrap();
/// assert_eq!(sol.x.dim(), (50, 2));
/// assert!(fm_train::sample(&model, &opts).is_err()); // a conditional model needs a context
/// ```
pub fn sample_conditional(
    model: &TrainedModel,
    opts: &SampleOptions,
    context: &Context,
    guidance: Option<f64>,
) -> Result<(Array2<f64>, Solution), TrainError> {
    crate::sampling::check_batch_n(opts.n)?;
    let field = model.conditional_field(opts.use_ema, guidance)?;
    let layout = &model.config.context;
    let d = model.config.architecture.dim;
    let c = layout.encode(context, opts.n)?;
    let k = c.ncols();
    let x_0 = crate::sampling::draw_source(model, opts)?;
    let state = ndarray::concatenate(Axis(1), &[x_0.view(), c.view()]).expect("equal rows");
    let scaled;
    let opts_run = if opts.solver.is_adaptive() && opts.steps.is_none() {
        let f = (d as f64 / (d + k) as f64).sqrt();
        scaled = SampleOptions {
            rtol: Some(opts.rtol.unwrap_or(1e-5) * f),
            atol: Some(opts.atol.unwrap_or(1e-5) * f),
            ..opts.clone()
        };
        &scaled
    } else {
        opts
    };
    let mut integ = crate::sampling::integrator(opts_run)?;
    let mut sol = integ.run(&field, state.view())?;
    let back = |s: &Array2<f64>| -> Array2<f64> {
        let xs = s.slice_axis(Axis(1), Slice::from(..d));
        match &layout.x_scale {
            Some(z) => z.invert(xs),
            None => xs.to_owned(),
        }
    };
    sol.x = back(&sol.x);
    for (_, s) in sol.trajectory.iter_mut() {
        *s = back(s);
    }
    Ok((x_0, sol))
}
