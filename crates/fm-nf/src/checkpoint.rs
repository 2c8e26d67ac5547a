//! Checkpoints of maximum-likelihood training: a stop flag, periodic checkpoints and a resume
//! that is bit-identical to an uninterrupted run.

use crate::cnf::CnfMle;
use crate::coupling::CouplingFlow;
use crate::error::{NfError, Result, invalid};
use crate::file::write_atomic;
use crate::residual::ResidualFlow;
use crate::train::{MaxLikelihood, Next, Start, TrainConfig, TrainReport, run_loop};
use crate::{CNF_KIND, COUPLING_KIND, RESIDUAL_KIND};
use fm_autograd::Adam;
use fm_core::rng::FmRng;
use ndarray::ArrayView2;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// The metadata key of a checkpoint's JSON state: the same key as `fm-train`'s checkpoints,
/// so tools that recognise an fm checkpoint recognise these; the state's `"nf_kind"` tells
/// them apart.
pub const CHECKPOINT_KEY: &str = "fm_checkpoint";

/// The checkpoint format version this build writes and reads.
pub const NF_CHECKPOINT_VERSION: u32 = 1;

/// A model whose maximum-likelihood training can be checkpointed and resumed: its kind, the
/// settings a resumed run must match, and any state beyond the parameter vector.
///
/// ```
/// use fm_nf::{MaxLikelihood, Resumable, Result, TrainConfig, TrainControl, train_with};
/// use ndarray::ArrayView2;
/// /// N(μ, 1) in 1-D with the mean μ as its one parameter.
/// struct Shift(Vec<f64>);
/// impl MaxLikelihood for Shift {
///     fn params(&self) -> &[f64] { &self.0 }
///     fn params_mut(&mut self) -> &mut [f64] { &mut self.0 }
///     fn nll_and_grad(&self, x: ArrayView2<f64>, _rng: &mut dyn rand::RngCore) -> Result<(f64, Vec<f64>)> {
///         let n = x.nrows() as f64;
///         let nll = x.iter().map(|v| 0.5 * (v - self.0[0]).powi(2)).sum::<f64>() / n;
///         Ok((nll, vec![x.iter().map(|v| self.0[0] - v).sum::<f64>() / n]))
///     }
/// }
/// impl Resumable for Shift {
///     fn kind(&self) -> &str { "shift" }
///     fn settings(&self) -> serde_json::Value { serde_json::json!({}) }
/// }
/// let dir = tempfile::tempdir().unwrap();
/// let ckpt = dir.path().join("run.ckpt");
/// let data = ndarray::Array2::from_elem((8, 1), 2.0);
/// let cfg = TrainConfig { steps: 50, batch_size: 4, lr: 0.1, ..Default::default() };
/// let control = TrainControl { checkpoint: Some(&ckpt), checkpoint_every: Some(20), ..Default::default() };
/// let mut m = Shift(vec![0.0]);
/// let report = train_with(&mut m, data.view(), &cfg, &mut fm_core::rng::seeded(0), &control).unwrap();
/// assert_eq!(report.checkpoints_written, 2);
/// assert_eq!(fm_nf::NfCheckpoint::load(&ckpt).unwrap().step(), 40);
/// ```
pub trait Resumable: MaxLikelihood {
    /// The model's kind (as its model file names it).
    fn kind(&self) -> &str;
    /// The settings (architecture and training-relevant options) a checkpoint can only be
    /// resumed with.
    fn settings(&self) -> Value;
    /// State beyond the parameters (default: none).
    fn state(&self) -> Value {
        Value::Null
    }
    /// Restores [`Resumable::state`] from a checkpoint.
    fn restore_state(&mut self, state: &Value) -> Result<()> {
        let _ = state;
        Ok(())
    }
}

fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("settings serialise to JSON")
}

impl Resumable for CouplingFlow {
    fn kind(&self) -> &str {
        COUPLING_KIND
    }
    fn settings(&self) -> Value {
        to_json(self.config())
    }
    fn state(&self) -> Value {
        serde_json::json!({ "actnorm_ready": self.actnorm_ready() })
    }
    fn restore_state(&mut self, state: &Value) -> Result<()> {
        let ready = state
            .get("actnorm_ready")
            .and_then(Value::as_bool)
            .ok_or_else(|| {
                invalid(
                    "checkpoint",
                    "coupling state",
                    "the checkpoint has no `actnorm_ready` flag",
                )
            })?;
        self.set_actnorm_ready(ready);
        Ok(())
    }
}

impl Resumable for ResidualFlow {
    fn kind(&self) -> &str {
        RESIDUAL_KIND
    }
    fn settings(&self) -> Value {
        to_json(self.config())
    }
}

impl Resumable for CnfMle {
    fn kind(&self) -> &str {
        CNF_KIND
    }
    fn settings(&self) -> Value {
        to_json(self.config())
    }
}

/// How [`train_with`] may stop and where it writes checkpoints. `Default`: no flag, no
/// checkpoints, no resume (then it is [`train`](crate::train)).
#[derive(Debug, Clone, Copy, Default)]
pub struct TrainControl<'a> {
    /// Checked after every step: once set, the run writes its checkpoint (if a path is set)
    /// and returns with [`TrainReport::interrupted`].
    pub stop: Option<&'a AtomicBool>,
    /// The checkpoint file (written atomically).
    pub checkpoint: Option<&'a Path>,
    /// Write the checkpoint every this many steps.
    pub checkpoint_every: Option<usize>,
    /// Start from the checkpoint at [`TrainControl::checkpoint`] (which must exist).
    pub resume: bool,
}

/// A fingerprint of the training data: shape and an FNV-1a hash of the values' bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct DataPrint {
    rows: usize,
    cols: usize,
    hash: u64,
}

impl DataPrint {
    fn of(x: ArrayView2<f64>) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for v in x.iter() {
            for b in v.to_bits().to_le_bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        Self {
            rows: x.nrows(),
            cols: x.ncols(),
            hash: h,
        }
    }
}

/// The JSON state of a checkpoint (the parameters are an F64 tensor).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    format_version: u32,
    crate_version: String,
    nf_kind: String,
    settings: Value,
    model_state: Value,
    train: TrainConfig,
    data: DataPrint,
    step: usize,
    losses: Vec<(usize, f64)>,
    adam: Adam,
    rng: FmRng,
}

/// A checkpoint of [`train_with`]: the parameters, Adam's state, the step, the losses so far,
/// the RNG's position and what the run must match to resume (kind, settings, training
/// settings but `steps`, a fingerprint of the data), in one `.safetensors` file.
#[derive(Debug, Clone)]
pub struct NfCheckpoint {
    state: State,
    params: Vec<f64>,
}

fn bad(path: &Path, reason: impl Into<String>) -> NfError {
    NfError::BadFile {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

impl NfCheckpoint {
    /// Steps completed.
    pub fn step(&self) -> usize {
        self.state.step
    }

    /// The model's kind.
    pub fn kind(&self) -> &str {
        &self.state.nf_kind
    }

    /// Writes the checkpoint atomically.
    fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string(&self.state)
            .map_err(|e| bad(path, format!("cannot encode the checkpoint: {e}")))?;
        let bytes: Vec<u8> = self.params.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = TensorView::new(Dtype::F64, vec![self.params.len()], &bytes)
            .map_err(|e| bad(path, format!("cannot encode the parameters: {e}")))?;
        let out = safetensors::serialize(
            [("params".to_string(), view)],
            Some(HashMap::from([(CHECKPOINT_KEY.to_string(), json)])),
        )
        .map_err(|e| bad(path, format!("cannot encode the checkpoint: {e}")))?;
        write_atomic(path, &out)
    }

    /// Reads a checkpoint written by [`train_with`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| NfError::Io {
            path: path.display().to_string(),
            message: match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "no such checkpoint: train without --resume first (or check the path)".into()
                }
                _ => e.to_string(),
            },
        })?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(path, format!("not a readable checkpoint ({e})")))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(path, format!("not a readable checkpoint ({e})")))?;
        let json = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(CHECKPOINT_KEY))
            .ok_or_else(|| bad(path, "not a checkpoint (no checkpoint metadata)"))?;
        let value: Value = serde_json::from_str(json)
            .map_err(|e| bad(path, format!("the checkpoint state is not JSON: {e}")))?;
        if value.get("nf_kind").is_none() {
            return Err(bad(
                path,
                "a flow-matching checkpoint, not a normalizing flow's: resume it with `fm train --model fm`",
            ));
        }
        let version = value
            .get("format_version")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if version != u64::from(NF_CHECKPOINT_VERSION) {
            return Err(bad(
                path,
                format!(
                    "checkpoint format version {version}, this build reads {NF_CHECKPOINT_VERSION}"
                ),
            ));
        }
        let state: State = serde_json::from_value(value)
            .map_err(|e| bad(path, format!("the checkpoint state is malformed: {e}")))?;
        let t = st
            .tensor("params")
            .map_err(|_| bad(path, "the checkpoint has no `params` tensor"))?;
        if t.dtype() != Dtype::F64 || t.shape().len() != 1 {
            return Err(bad(path, "the `params` tensor is not a 1-D F64 tensor"));
        }
        let params = t
            .data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Ok(Self { state, params })
    }

    /// Checks that this checkpoint continues the run of `model` on `data` with `config`.
    fn check_matches<M: Resumable + ?Sized>(
        &self,
        path: &Path,
        model: &M,
        data: ArrayView2<f64>,
        config: &TrainConfig,
    ) -> Result<()> {
        let s = &self.state;
        let differs = |what: &str| {
            bad(
                path,
                format!(
                    "the checkpoint was written by a run with other {what}: resume with the run's own flags \
                     (only --steps may change), or train afresh without --resume"
                ),
            )
        };
        if s.nf_kind != model.kind() {
            return Err(bad(
                path,
                format!(
                    "a checkpoint of a {} flow, not of a {} flow: resume with --model {}",
                    s.nf_kind,
                    model.kind(),
                    s.nf_kind
                ),
            ));
        }
        if s.settings != model.settings() {
            return Err(differs("model settings"));
        }
        let same_train = TrainConfig {
            steps: config.steps,
            ..s.train.clone()
        };
        if &same_train != config {
            return Err(differs("training settings (batch, lr, clipping, logging)"));
        }
        if s.data != DataPrint::of(data) {
            return Err(differs("training data (--target, --seed)"));
        }
        if self.params.len() != model.params().len() {
            return Err(differs("model settings"));
        }
        Ok(())
    }
}

/// [`train`](crate::train) with a stop flag, periodic checkpoints and resume
/// ([`TrainControl`]). The RNG is the workspace's [`FmRng`] so that its position can be stored:
/// a run resumed from a checkpoint continues with the parameters, Adam's moments, the step,
/// the losses and the RNG stream of the interrupted run, and ends bit-identical to a run that
/// was never interrupted (`config.steps` is the total; a larger value trains longer).
///
/// On resume the model's parameters (whatever they were) and its [`Resumable::state`] are
/// replaced by the checkpoint's, and `rng` continues from the stored position; the
/// checkpoint must match the model's kind and settings, `config` (all but `steps`) and the
/// data.
pub fn train_with<M: Resumable + ?Sized>(
    model: &mut M,
    data: ArrayView2<f64>,
    config: &TrainConfig,
    rng: &mut FmRng,
    control: &TrainControl<'_>,
) -> Result<TrainReport> {
    config.check()?;
    if control.checkpoint_every == Some(0) {
        return Err(invalid("checkpoint_every", 0, "must be at least 1"));
    }
    if (control.resume || control.checkpoint_every.is_some()) && control.checkpoint.is_none() {
        return Err(invalid(
            "checkpoint",
            "none",
            "give a checkpoint path to resume from or write to",
        ));
    }
    let start = match (control.resume, control.checkpoint) {
        (true, Some(path)) => {
            let ck = NfCheckpoint::load(path)?;
            ck.check_matches(path, model, data, config)?;
            model.params_mut().copy_from_slice(&ck.params);
            model.restore_state(&ck.state.model_state)?;
            *rng = ck.state.rng.clone();
            Some(Start {
                adam: ck.state.adam,
                step: ck.state.step,
                losses: ck.state.losses,
            })
        }
        _ => None,
    };
    let print = DataPrint::of(data);
    let mut written = 0usize;
    let mut hook =
        |step: usize, m: &M, adam: &Adam, rng: &FmRng, losses: &[(usize, f64)]| -> Result<Next> {
            let stop = control.stop.is_some_and(|f| f.load(Ordering::SeqCst));
            let due = control.checkpoint_every.is_some_and(|k| step % k == 0);
            if let (true, Some(path)) = (stop || due, control.checkpoint) {
                let ck = NfCheckpoint {
                    state: State {
                        format_version: NF_CHECKPOINT_VERSION,
                        crate_version: env!("CARGO_PKG_VERSION").into(),
                        nf_kind: m.kind().to_string(),
                        settings: m.settings(),
                        model_state: m.state(),
                        train: config.clone(),
                        data: print,
                        step,
                        losses: losses.to_vec(),
                        adam: adam.clone(),
                        rng: rng.clone(),
                    },
                    params: m.params().to_vec(),
                };
                ck.save(path)?;
                written += 1;
            }
            Ok(if stop { Next::Stop } else { Next::Continue })
        };
    let mut report = run_loop(model, data, config, rng, start, &mut hook)?;
    report.checkpoints_written = written;
    Ok(report)
}
