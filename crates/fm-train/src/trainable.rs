//! The trait a network implements to be trained by the [`Trainer`](crate::Trainer), its
//! implementation for the built-in [`Mlp`], and the trained network as a vector field and a file.

use crate::tensors::{self, Tensor, TensorData};
use crate::{Batch, MatcherSpec, NamedScheduler, Objective, ScoreField, TrainError};
use fm_autograd::{AutogradError, Grads, Mlp};
use fm_core::VectorField;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// A network the [`Trainer`](crate::Trainer) can train: [`Trainer::run_with`](crate::Trainer::run_with)
/// gives it the whole loop — batches, Adam/AdamW, the EMA, the divergence rule, checkpoints and a
/// bit-identical resume, the stop flag and the progress callback.
///
/// A network is a flat `f32` parameter vector (what Adam, the EMA and checkpoints work on), a
/// loss with its gradient for a [`Batch`], and a velocity `v_θ(t, x)` for sampling (through
/// [`NetworkField`], an `fm_core::VectorField`). Named tensors (for model files) default to one
/// tensor `params`; override [`TrainableField::to_tensors`] and [`TrainableField::set_tensors`]
/// for PyTorch-style names. [`Mlp`] implements the trait: [`Trainer::run`](crate::Trainer::run)
/// is `run_with` on the MLP its architecture describes.
///
/// The loss should be the trainer's, `mean over the batch and the d coordinates of
/// (v_θ(t, x_t) − target)²` with `target = batch.target` (`u_t` for flow matching, the noise for
/// score matching), but any loss works: the divergence rule compares each loss with the run's
/// first. A non-finite loss may be returned as `Ok` (the divergence rule reports it); an `Err`
/// ends the run with that error.
///
/// Determinism is the implementation's: if its loss and gradient are a function of the
/// parameters and the batch, runs and resumes are bit-identical.
///
/// ```
/// use fm_data::Dataset;
/// use fm_train::{Batch, MatcherSpec, Objective, TrainError, TrainParams, TrainableField, Trainer};
/// use ndarray::{Array2, ArrayView1, ArrayView2};
///
/// /// The affine field `v(t, x) = x Aᵀ + t b + c` in 2-D: parameters `[A (row-major), b, c]`.
/// #[derive(Clone)]
/// struct Affine { p: Vec<f32> }
///
/// impl TrainableField for Affine {
///     fn dim(&self) -> usize { 2 }
///     fn params(&self) -> &[f32] { &self.p }
///     fn params_mut(&mut self) -> &mut [f32] { &mut self.p }
///     fn velocity(&self, t: ArrayView1<f64>, x: ArrayView2<f64>) -> Result<Array2<f64>, TrainError> {
///         let p: Vec<f64> = self.p.iter().map(|&v| f64::from(v)).collect();
///         Ok(Array2::from_shape_fn((x.nrows(), 2), |(i, j)| {
///             p[2 * j] * x[[i, 0]] + p[2 * j + 1] * x[[i, 1]] + p[4 + j] * t[i] + p[6 + j]
///         }))
///     }
///     fn loss_and_grad(&mut self, batch: &Batch, grads: &mut [f32]) -> Result<f64, TrainError> {
///         let v = self.velocity(batch.t.view(), batch.x_t.view())?;
///         let r = &v - &batch.target; // residuals
///         let s = 2.0 / r.len() as f64; // d mean(r²) / d r
///         let mut g = [0.0_f64; 8];
///         for (i, row) in r.rows().into_iter().enumerate() {
///             for j in 0..2 {
///                 let e = s * row[j];
///                 g[2 * j] += e * batch.x_t[[i, 0]];
///                 g[2 * j + 1] += e * batch.x_t[[i, 1]];
///                 g[4 + j] += e * batch.t[i];
///                 g[6 + j] += e;
///             }
///         }
///         grads.iter_mut().zip(g).for_each(|(d, v)| *d = v as f32);
///         Ok(r.mapv(|e| e * e).mean().unwrap_or(f64::NAN))
///     }
/// }
///
/// let target = Dataset::parse("moons", None).unwrap();
/// let source = Dataset::parse("gaussian", Some(2)).unwrap();
/// let params = TrainParams::default().steps(300).batch(64).lr(1e-2).check().unwrap();
/// let matcher = MatcherSpec::parse("otcfm", Some(0.1), None, None).unwrap();
/// let trainer = Trainer::new(source, target, matcher, Objective::Flow, Default::default(), params).unwrap();
/// let mut first = None;
/// let out = trainer
///     .run_with(Affine { p: vec![1.0; 8] }, &mut |p| { first.get_or_insert(p.loss); })
///     .unwrap();
/// assert_eq!(out.model.steps_done, 300);
/// assert!(out.final_loss < first.unwrap() / 2.0, "{} vs {first:?}", out.final_loss);
/// ```
pub trait TrainableField: Clone + Send + Sync {
    /// The data dimension `d` (input and output width of `v_θ(t, x)`).
    fn dim(&self) -> usize;

    /// All parameters, flat; the optimizer, the EMA and checkpoints index into this slice.
    fn params(&self) -> &[f32];

    /// Mutable access to the parameters (same length as [`TrainableField::params`]). The trainer
    /// writes updates and resumed weights here; a network that caches anything derived from its
    /// weights drops the cache when this is called.
    fn params_mut(&mut self) -> &mut [f32];

    /// The loss of `batch` and its gradient with respect to every parameter, written into
    /// `grads` (length [`TrainableField::params`]`.len()`, in the same layout).
    fn loss_and_grad(&mut self, batch: &Batch, grads: &mut [f32]) -> Result<f64, TrainError>;

    /// `v_θ(t_i, x_i)` for every row: `t` of length `n`, `x` of shape `(n, d)`, output `(n, d)`.
    fn velocity(&self, t: ArrayView1<f64>, x: ArrayView2<f64>) -> Result<Array2<f64>, TrainError>;

    /// What the architecture is beyond its tensors' names and shapes (e.g. the activation). A
    /// checkpoint records it with the tensors' shapes and is resumed only by a network that
    /// reports the same. Default: empty.
    fn architecture(&self) -> String {
        String::new()
    }

    /// The parameters as named tensors, as they go into a model file. Default: one tensor
    /// `params` of shape `[n]`.
    fn to_tensors(&self) -> Vec<Tensor> {
        let p = self.params();
        vec![Tensor::f32("params", vec![p.len()], p.to_vec())]
    }

    /// Sets the parameters from named tensors written by [`TrainableField::to_tensors`]; every
    /// expected tensor must be present with its shape. Default: the one tensor `params`.
    fn set_tensors(&mut self, tensors: &[Tensor]) -> Result<(), TrainError> {
        let n = self.params().len();
        let bad = |reason: String| TrainError::param("tensors", "params", reason);
        match tensors {
            [
                Tensor {
                    name,
                    shape,
                    data: TensorData::F32(v),
                },
            ] if name == "params" => {
                if shape != &[n] || v.len() != n {
                    return Err(bad(format!(
                        "tensor `params` has shape {shape:?} but the network has {n} parameters"
                    )));
                }
                self.params_mut().copy_from_slice(v);
                Ok(())
            }
            _ => Err(bad(format!(
                "expected exactly one F32 tensor `params` of shape [{n}], found {:?}",
                tensors.iter().map(|t| t.name.as_str()).collect::<Vec<_>>()
            ))),
        }
    }
}

/// The built-in network: the loss is the fused [`Mlp::loss_and_grad_into`], tensors are
/// PyTorch's `layers.{i}.weight` / `layers.{i}.bias`.
impl TrainableField for Mlp {
    fn dim(&self) -> usize {
        self.config().dim
    }
    fn params(&self) -> &[f32] {
        Mlp::params(self)
    }
    fn params_mut(&mut self) -> &mut [f32] {
        Mlp::params_mut(self)
    }
    fn loss_and_grad(&mut self, batch: &Batch, grads: &mut [f32]) -> Result<f64, TrainError> {
        let mut g = Grads::zeros(self);
        let loss = match self.loss_and_grad_into_ctx(
            batch.t.view(),
            batch.x_t.view(),
            batch.c.as_ref().map(|c| c.view()),
            batch.target.view(),
            &mut g,
        ) {
            Ok(l) => l,
            Err(AutogradError::NonFinite { value, .. }) => return Ok(value),
            Err(e) => return Err(e.into()),
        };
        if grads.len() != g.as_slice().len() {
            return Err(AutogradError::ShapeMismatch {
                what: "grads".into(),
                expected: g.as_slice().len().to_string(),
                found: grads.len().to_string(),
            }
            .into());
        }
        grads.copy_from_slice(g.as_slice());
        Ok(loss)
    }
    fn velocity(&self, t: ArrayView1<f64>, x: ArrayView2<f64>) -> Result<Array2<f64>, TrainError> {
        Ok(self.forward(t, x)?)
    }
    fn architecture(&self) -> String {
        format!("mlp {:?}", self.config())
    }
    fn to_tensors(&self) -> Vec<Tensor> {
        crate::trained::to_tensors(self)
    }
    fn set_tensors(&mut self, tensors: &[Tensor]) -> Result<(), TrainError> {
        let mut raw = Vec::with_capacity(tensors.len());
        for t in tensors {
            match &t.data {
                TensorData::F32(v) => raw.push((t.name.clone(), t.shape.clone(), v.clone())),
                TensorData::F64(_) => {
                    return Err(TrainError::param(
                        "tensors",
                        &t.name,
                        "the tensor is F64, MLP weights are F32".to_string(),
                    ));
                }
            }
        }
        *self = Mlp::from_tensors(self.config(), &raw)?;
        Ok(())
    }
}

/// A trained [`TrainableField`] as an `fm_core::VectorField` for the ODE solvers:
/// `v(t, x) = v_θ(t, x)`, the divergence by finite differences (the default of
/// `VectorField`). A network that fails to evaluate fills the output with NaN, which the
/// integrator reports as a non-finite state.
///
/// ```
/// use fm_core::VectorField;
/// let mlp = fm_autograd::Mlp::new(&Default::default(), &mut fm_core::rng::seeded(0)).unwrap();
/// let field = fm_train::NetworkField::new(mlp.clone());
/// let x = ndarray::array![[0.5, -1.0]];
/// assert_eq!(field.velocity_vec(0.3, x.view()), fm_train::MlpField::new(mlp).velocity_vec(0.3, x.view()));
/// ```
#[derive(Debug, Clone)]
pub struct NetworkField<N> {
    net: N,
}

impl<N: TrainableField> NetworkField<N> {
    /// The field of `net`.
    pub fn new(net: N) -> Self {
        Self { net }
    }
    /// The network.
    pub fn network(&self) -> &N {
        &self.net
    }
}

impl<N: TrainableField> VectorField for NetworkField<N> {
    fn dim(&self) -> usize {
        self.net.dim()
    }
    fn velocity(&self, t: f64, x: ArrayView2<f64>, mut out: ArrayViewMut2<f64>) {
        let tt = Array1::from_elem(x.nrows(), t);
        match self.net.velocity(tt.view(), x) {
            Ok(v) if v.dim() == out.dim() => out.assign(&v),
            _ => out.fill(f64::NAN),
        }
    }
    fn divergence(&self, t: f64, x: ArrayView2<f64>, out: ArrayViewMut1<f64>) {
        fm_core::finite_difference_divergence(self, t, x, out);
    }
}

/// The metadata key of a [`TrainedNet`] file's JSON config.
pub const NETWORK_KEY: &str = "fm_network";

/// The `format` field of a [`TrainedNet`] file.
pub const NETWORK_FORMAT: &str = "fm-network";

/// The config of a [`TrainedNet`] file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct NetworkConfig {
    format: String,
    format_version: u32,
    crate_version: String,
    architecture: String,
    objective: Objective,
    matcher: MatcherSpec,
    steps_done: usize,
    loss_history: Vec<(usize, f64)>,
    has_ema: bool,
}

/// A network trained by [`Trainer::run_with`](crate::Trainer::run_with): the last weights, the
/// EMA weights if the run kept an EMA, and what it was trained for.
#[derive(Debug, Clone)]
pub struct TrainedNet<N> {
    /// The trained network.
    pub net: N,
    /// The EMA network (the same network with the averaged weights), if the run kept one.
    pub ema: Option<N>,
    /// Flow matching or score matching.
    pub objective: Objective,
    /// The matcher it was trained with.
    pub matcher: MatcherSpec,
    /// Optimizer steps taken.
    pub steps_done: usize,
    /// `(step, loss)` every `log_every` steps.
    pub loss_history: Vec<(usize, f64)>,
}

impl<N: TrainableField> TrainedNet<N> {
    /// The network used for sampling: the EMA network if there is one and `use_ema`.
    pub fn network(&self, use_ema: bool) -> &N {
        match (&self.ema, use_ema) {
            (Some(e), true) => e,
            _ => &self.net,
        }
    }

    /// The velocity field of the model (EMA weights if present and `use_ema`): the network for
    /// flow matching, the probability-flow field of its noise prediction for score matching.
    pub fn field(&self, use_ema: bool) -> Result<Box<dyn VectorField + Send + Sync>, TrainError>
    where
        N: 'static,
    {
        let field = NetworkField::new(self.network(use_ema).clone());
        Ok(match self.objective {
            Objective::Flow => Box::new(field),
            Objective::Score => {
                let name = self.matcher.scheduler.as_deref().unwrap_or("condot");
                Box::new(ScoreField::new(field, NamedScheduler::parse(name)?))
            }
        })
    }

    /// The file's bytes: the named tensors of [`TrainableField::to_tensors`], the EMA's with the
    /// prefix [`EMA_PREFIX`](crate::EMA_PREFIX), and a JSON config under [`NETWORK_KEY`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, TrainError> {
        let config = NetworkConfig {
            format: NETWORK_FORMAT.into(),
            format_version: crate::MODEL_FORMAT_VERSION,
            crate_version: env!("CARGO_PKG_VERSION").into(),
            architecture: self.net.architecture(),
            objective: self.objective,
            matcher: self.matcher.clone(),
            steps_done: self.steps_done,
            loss_history: self.loss_history.clone(),
            has_ema: self.ema.is_some(),
        };
        let json = serde_json::to_string(&config)
            .map_err(|e| TrainError::param("config", "", format!("cannot encode config: {e}")))?;
        let mut all = self.net.to_tensors();
        if let Some(ema) = &self.ema {
            all.extend(ema.to_tensors().into_iter().map(|t| Tensor {
                name: format!("{}{}", crate::EMA_PREFIX, t.name),
                ..t
            }));
        }
        tensors::encode(HashMap::from([(NETWORK_KEY.to_string(), json)]), &all)
    }

    /// Writes the model file atomically (a `.safetensors` file).
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        crate::write_atomic(path, &self.to_bytes()?)
    }

    /// Reads a file written by [`TrainedNet::save`] into copies of `template` (a network of the
    /// same architecture, e.g. freshly initialised): its tensors go through
    /// [`TrainableField::set_tensors`].
    pub fn load(path: &Path, template: N) -> Result<Self, TrainError> {
        let bytes = tensors::read_file(path)?;
        Self::from_bytes(path, &bytes, template)
    }

    /// As [`TrainedNet::load`], from the file's bytes (`path` names it in errors).
    pub fn from_bytes(path: &Path, bytes: &[u8], template: N) -> Result<Self, TrainError> {
        let (meta, all) = tensors::decode(path, bytes)?;
        let json = meta.get(NETWORK_KEY).ok_or_else(|| {
            TrainError::bad_file(
                path,
                format!("not a network file (no `{NETWORK_KEY}` metadata); give a file written by TrainedNet::save"),
            )
        })?;
        let config: NetworkConfig = serde_json::from_str(json).map_err(|e| {
            TrainError::bad_file(path, format!("the network config is malformed: {e}"))
        })?;
        if config.format != NETWORK_FORMAT {
            return Err(TrainError::bad_file(
                path,
                format!("format is `{}`, expected `{NETWORK_FORMAT}`", config.format),
            ));
        }
        if config.format_version != crate::MODEL_FORMAT_VERSION {
            return Err(TrainError::UnsupportedVersion {
                path: path.display().to_string(),
                found: config.format_version,
                supported: crate::MODEL_FORMAT_VERSION,
            });
        }
        if config.architecture != template.architecture() {
            return Err(TrainError::bad_file(
                path,
                format!(
                    "the file holds a network `{}` but the template is `{}`",
                    config.architecture,
                    template.architecture()
                ),
            ));
        }
        let (ema, weights): (Vec<Tensor>, Vec<Tensor>) = all
            .into_iter()
            .partition(|t| t.name.starts_with(crate::EMA_PREFIX));
        let load = |what: &str, ts: &[Tensor]| -> Result<N, TrainError> {
            let mut net = template.clone();
            net.set_tensors(ts)
                .map_err(|e| TrainError::bad_file(path, format!("{what}: {e}")))?;
            Ok(net)
        };
        let net = load("weights", &weights)?;
        let ema = if config.has_ema {
            let ema: Vec<Tensor> = ema
                .into_iter()
                .map(|t| Tensor {
                    name: t.name[crate::EMA_PREFIX.len()..].to_string(),
                    ..t
                })
                .collect();
            Some(load("EMA weights", &ema)?)
        } else {
            None
        };
        Ok(Self {
            net,
            ema,
            objective: config.objective,
            matcher: config.matcher,
            steps_done: config.steps_done,
            loss_history: config.loss_history,
        })
    }
}

/// The exponential moving average of a flat parameter vector, `θ̄ ← decay · θ̄ + (1 − decay) · θ`,
/// computed exactly as `fm_autograd::Ema` computes it (so the MLP's EMA keeps its bits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FlatEma {
    pub decay: f64,
    pub weights: Vec<f32>,
    pub updates: u64,
}

impl FlatEma {
    pub fn new(decay: f64, params: &[f32]) -> Result<Self, TrainError> {
        if !(0.0..1.0).contains(&decay) {
            return Err(TrainError::param(
                "ema",
                decay,
                "the EMA decay must lie in [0, 1)".to_string(),
            ));
        }
        Ok(Self {
            decay,
            weights: params.to_vec(),
            updates: 0,
        })
    }

    pub fn update(&mut self, params: &[f32]) -> Result<(), TrainError> {
        if params.len() != self.weights.len() {
            return Err(AutogradError::ShapeMismatch {
                what: "ema weights".into(),
                expected: self.weights.len().to_string(),
                found: params.len().to_string(),
            }
            .into());
        }
        let a = self.decay as f32;
        let b = (1.0 - self.decay) as f32;
        for (e, &p) in self.weights.iter_mut().zip(params) {
            *e = a * *e + b * p;
        }
        self.updates += 1;
        Ok(())
    }
}
