//! `fm export` and `fm import`: a model's network in TorchCFM's `MLP` state-dict layout.
//!
//! TorchCFM's `torchcfm.models.models.MLP(dim, w, time_varying=True)` is an `nn.Sequential` of
//! `Linear(dim + 1, w), SELU, Linear(w, w), SELU, Linear(w, w), SELU, Linear(w, dim)`: the linear
//! layers sit at the even indices (`net.0`, `net.2`, `net.4`, `net.6`), the parameterless
//! activations at the odd ones, and its input is `torch.cat([x, t], dim=-1)`. A sequential of any
//! depth with one activation module between linear layers keeps linear layer `i` at `net.{2i}`,
//! which is the layout written and read here for every depth and activation. See docs/interop.md.

use crate::safety::{self, Kind, check_outputs};
use crate::{check_out_dir, input};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use flow_matching::autograd::Activation;
use flow_matching::train::tensors::{self, Tensor, TensorData};
use flow_matching::train::{
    ArchConfig, MODEL_FORMAT, MODEL_FORMAT_VERSION, MatcherSpec, ModelConfig, ModelFile, Objective,
    TrainParams, TrainedModel,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The metadata key of an exported state dict: the JSON [`ExportMeta`].
pub const EXPORT_KEY: &str = "fm_export";

/// The `format` of [`ExportMeta`].
pub const EXPORT_FORMAT: &str = "torchcfm-mlp";

/// `fm export` and `fm import`.
#[derive(Subcommand, Debug)]
pub enum InteropCommand {
    /// Write a model's network as a PyTorch state dict (.safetensors) in TorchCFM's `MLP` layout
    /// (`net.0.weight`, `net.0.bias`, `net.2.…`, …), with the weights `fm sample` uses (EMA when
    /// the model has them). `safetensors.torch.load_file` reads it; the metadata key `fm_export`
    /// holds the width, activation and time input as JSON.
    Export(ExportArgs),
    /// Build a model file from a TorchCFM `MLP` state dict (.safetensors): the inverse of
    /// `fm export`. Shapes are checked against --hidden/--width and --dim when given.
    Import(ImportArgs),
}

/// `fm export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Layout of the state dict: torchcfm (TorchCFM's `MLP`; the only one so far).
    #[arg(long, default_value = "torchcfm", value_name = "FORMAT")]
    pub format: String,
    /// The model file written by `fm train`.
    #[arg(long, value_name = "MODEL")]
    pub model: PathBuf,
    /// The state dict to write (.safetensors).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Export the raw weights even if the model holds EMA weights.
    #[arg(long)]
    pub no_ema: bool,
}

/// `fm import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Layout of the state dict: torchcfm (TorchCFM's `MLP`; the only one so far).
    #[arg(long, default_value = "torchcfm", value_name = "FORMAT")]
    pub format: String,
    /// The state dict (.safetensors, F32 or F64 tensors `net.{2i}.weight` and `net.{2i}.bias`),
    /// e.g. written with `safetensors.torch.save_file(model.state_dict(), F)`.
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// The model file to write.
    #[arg(long, value_name = "MODEL")]
    pub out: PathBuf,
    /// Expected hidden widths, comma separated (checked against the tensors' shapes).
    #[arg(long, value_name = "W,W,...", conflicts_with = "width")]
    pub hidden: Option<String>,
    /// Expected width of every hidden layer (TorchCFM's `w`; the number of layers is read from
    /// the tensors).
    #[arg(long, value_name = "W", allow_negative_numbers = true)]
    pub width: Option<i64>,
    /// Expected data dimension (TorchCFM's `dim`).
    #[arg(long, value_name = "D", allow_negative_numbers = true)]
    pub dim: Option<i64>,
    /// The activation between the layers: selu (TorchCFM's `MLP`), silu, elu, relu, tanh,
    /// softplus, gelu (nn.GELU()), gelu-tanh (nn.GELU(approximate="tanh")). Default: the one
    /// `fm export` recorded in the file, else selu.
    #[arg(long, value_name = "NAME")]
    pub activation: Option<String>,
    /// The source distribution `fm sample` draws from (TorchCFM trains from N(0, I): gaussian).
    /// Default: the one `fm export` recorded, else gaussian.
    #[arg(long, value_name = "SPEC")]
    pub source: Option<String>,
}

/// What `fm export` records next to the tensors (metadata key [`EXPORT_KEY`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportMeta {
    /// Always [`EXPORT_FORMAT`].
    pub format: String,
    /// Data dimension (TorchCFM's `dim`).
    pub dim: usize,
    /// Hidden widths.
    pub hidden: Vec<usize>,
    /// TorchCFM's `w` when every hidden layer has the same width.
    pub w: Option<usize>,
    /// Activation name (`fm` names, PyTorch's: `gelu` is `nn.GELU()`).
    pub activation: String,
    /// The PyTorch module of the activation, e.g. `torch.nn.SELU()`.
    pub torch_activation: String,
    /// The time input: `raw` (one column `t` after the `d` data columns).
    pub time_features: String,
    /// The network's input, `[x, t]` (TorchCFM's `torch.cat([x, t], dim=-1)`).
    pub input: String,
    /// Which weights of the model: `ema` or `raw`.
    pub weights: String,
    /// The source dataset spec of the model.
    pub source: String,
    /// The target dataset spec of the model.
    pub target: String,
    /// The matcher the model was trained with.
    pub matcher: MatcherSpec,
    /// Optimizer steps of the model.
    pub steps_done: usize,
    /// The `fm` version that wrote the file.
    pub fm_version: String,
}

/// The PyTorch module of an activation.
fn torch_activation(act: Activation) -> &'static str {
    match act {
        Activation::Selu => "torch.nn.SELU()",
        Activation::Silu => "torch.nn.SiLU()",
        Activation::Elu => "torch.nn.ELU()",
        Activation::Relu => "torch.nn.ReLU()",
        Activation::Tanh => "torch.nn.Tanh()",
        Activation::Softplus => "torch.nn.Softplus()",
        Activation::Gelu => "torch.nn.GELU()",
        Activation::GeluTanh => "torch.nn.GELU(approximate=\"tanh\")",
    }
}

/// Runs `fm export` or `fm import`.
pub fn run(c: InteropCommand) -> Result<crate::commands::Report> {
    match c {
        InteropCommand::Export(a) => export(a),
        InteropCommand::Import(a) => import(a),
    }
}

fn check_format(format: &str) -> Result<()> {
    if !format.trim().eq_ignore_ascii_case("torchcfm") {
        bail!(input(format!(
            "unknown --format {format}: the one layout so far is torchcfm (TorchCFM's MLP state dict)"
        )));
    }
    Ok(())
}

fn check_safetensors_out(path: &Path, flag: &str) -> Result<()> {
    let ok = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if !ok {
        bail!(input(format!(
            "{}: --{flag} must end in .safetensors",
            path.display()
        )));
    }
    check_out_dir(path)
}

/// The tensors of the exported state dict: `net.{2i}.weight` (out, in) and `net.{2i}.bias`.
fn state_dict(model: &TrainedModel, use_ema: bool) -> Vec<Tensor> {
    let mut out: Vec<Tensor> = model
        .network(use_ema)
        .to_tensors()
        .into_iter()
        .map(|(name, shape, data)| {
            let renamed = name
                .strip_prefix("layers.")
                .and_then(|rest| rest.split_once('.'))
                .and_then(|(i, kind)| i.parse::<usize>().ok().map(|i| (i, kind)))
                .map(|(i, kind)| format!("net.{}.{kind}", 2 * i))
                .unwrap_or(name);
            Tensor::f32(renamed, shape, data)
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn export(a: ExportArgs) -> Result<crate::commands::Report> {
    check_format(&a.format)?;
    check_safetensors_out(&a.out, "out")?;
    check_outputs(
        &[("--model", Some(&a.model))],
        &[safety::out("--out", &a.out, Kind::Export)],
    )?;
    let model =
        TrainedModel::load(&a.model).with_context(|| format!("--model {}", a.model.display()))?;
    let cfg = &model.config;
    if cfg.objective != Objective::Flow {
        bail!(input(format!(
            "{}: a score model's network predicts the noise, not v(t, x), so it is no TorchCFM MLP; \
             export a flow model (fm train --objective flow)",
            a.model.display()
        )));
    }
    if model.is_conditional() {
        bail!(input(format!(
            "{}: a conditional model takes a context c next to [x, t], TorchCFM's MLP takes [x, t] only; \
             export an unconditional model (trained without --context/--context-cols/--label-col)",
            a.model.display()
        )));
    }
    let arch = &cfg.architecture;
    if arch.time_features != "raw" {
        bail!(input(format!(
            "{}: the network takes time features `{}`, TorchCFM's MLP takes t as one column; \
             export a model trained with --time-features raw",
            a.model.display(),
            arch.time_features
        )));
    }
    let act = arch.mlp_config()?.activation;
    let use_ema = !a.no_ema && model.ema.is_some();
    let tensors = state_dict(&model, use_ema);
    let w = arch
        .hidden
        .first()
        .copied()
        .filter(|&w| arch.hidden.iter().all(|&h| h == w));
    let meta = ExportMeta {
        format: EXPORT_FORMAT.into(),
        dim: arch.dim,
        hidden: arch.hidden.clone(),
        w,
        activation: act.name().into(),
        torch_activation: torch_activation(act).into(),
        time_features: "raw".into(),
        input: "[x, t]".into(),
        weights: if use_ema { "ema" } else { "raw" }.into(),
        source: cfg.source.clone(),
        target: cfg.target.clone(),
        matcher: cfg.matcher.clone(),
        steps_done: cfg.steps_done,
        fm_version: env!("CARGO_PKG_VERSION").into(),
    };
    let json = serde_json::to_string(&meta).context("cannot encode the export metadata")?;
    let bytes = tensors::encode(HashMap::from([(EXPORT_KEY.to_string(), json)]), &tensors)?;
    flow_matching::train::write_atomic(&a.out, &bytes)?;
    let torchcfm = match (w, arch.hidden.len(), act) {
        (Some(w), 3, Activation::Selu) => format!(
            "loads into torchcfm.models.models.MLP(dim={}, w={w}, time_varying=True)",
            arch.dim
        ),
        _ => format!(
            "loads into an nn.Sequential of Linear layers with {} between them (see docs/interop.md)",
            torch_activation(act)
        ),
    };
    println!(
        "exported the {} weights of {} ({} linear layers, {}) to {}: {torchcfm}",
        meta.weights,
        a.model.display(),
        arch.hidden.len() + 1,
        act.name(),
        a.out.display()
    );
    let mut r = crate::commands::Report::new();
    r.insert("command".into(), json!("export"));
    r.insert("format".into(), json!("torchcfm"));
    r.insert("weights".into(), json!(meta.weights));
    r.insert("dim".into(), json!(meta.dim));
    r.insert("hidden".into(), json!(meta.hidden));
    r.insert("activation".into(), json!(meta.activation));
    r.insert("out".into(), json!(a.out.display().to_string()));
    Ok(r)
}

/// The linear layers of a TorchCFM-layout state dict, `(weight (out, in) as f32, bias)` in order.
fn linear_layers(path: &Path, ts: Vec<Tensor>) -> Result<Vec<(Tensor, Tensor)>> {
    let shown = path.display();
    let mut by_index: BTreeMap<usize, (Option<Tensor>, Option<Tensor>)> = BTreeMap::new();
    for t in ts {
        let parsed = t
            .name
            .strip_prefix("net.")
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(i, kind)| Some((i.parse::<usize>().ok()?, kind.to_string())));
        let Some((i, kind)) = parsed else {
            bail!(input(format!(
                "{shown}: unexpected tensor `{}`: a TorchCFM MLP state dict holds only net.K.weight and net.K.bias",
                t.name
            )));
        };
        let data = match t.data {
            TensorData::F32(v) => v,
            // PyTorch's default is float32; a float64 state dict is rounded to it.
            TensorData::F64(v) => v.into_iter().map(|x| x as f32).collect(),
        };
        let t = Tensor::f32(t.name, t.shape, data);
        let slot = by_index.entry(i).or_default();
        match kind.as_str() {
            "weight" => slot.0 = Some(t),
            "bias" => slot.1 = Some(t),
            _ => bail!(input(format!(
                "{shown}: unexpected tensor `{}`: a TorchCFM MLP state dict holds only net.K.weight and net.K.bias",
                t.name
            ))),
        }
    }
    if by_index.is_empty() {
        bail!(input(format!(
            "{shown}: no net.K.weight tensors: not a TorchCFM MLP state dict"
        )));
    }
    let mut layers = Vec::new();
    for (pos, (i, (w, b))) in by_index.into_iter().enumerate() {
        if i != 2 * pos {
            bail!(input(format!(
                "{shown}: linear layers at net.{i} after {pos} others: expected net.0, net.2, net.4, … \
                 (one activation module between linear layers, as TorchCFM's MLP)"
            )));
        }
        let (Some(w), Some(b)) = (w, b) else {
            bail!(input(format!(
                "{shown}: net.{i} needs both a weight and a bias tensor"
            )));
        };
        if w.shape.len() != 2 || b.shape.len() != 1 || b.shape[0] != w.shape[0] {
            bail!(input(format!(
                "{shown}: net.{i}.weight has shape {:?} and net.{i}.bias {:?}: expected (out, in) and (out,)",
                w.shape, b.shape
            )));
        }
        if let Some((prev, _)) = layers.last() {
            let prev: &Tensor = prev;
            if prev.shape[0] != w.shape[1] {
                bail!(input(format!(
                    "{shown}: net.{}.weight has {} outputs but net.{i}.weight takes {} inputs",
                    i - 2,
                    prev.shape[0],
                    w.shape[1]
                )));
            }
        }
        layers.push((w, b));
    }
    Ok(layers)
}

fn import(a: ImportArgs) -> Result<crate::commands::Report> {
    check_format(&a.format)?;
    check_safetensors_out(&a.out, "out")?;
    check_outputs(
        &[("--in", Some(&a.input))],
        &[safety::out("--out", &a.out, Kind::Model)],
    )?;
    let shown = a.input.display().to_string();
    let bytes = tensors::read_file(&a.input)?;
    let (meta, ts) = tensors::decode(&a.input, &bytes)?;
    if meta.contains_key(flow_matching::train::CONFIG_KEY) {
        bail!(input(format!(
            "{shown}: is an fm model file already, not a state dict: use it as --model directly \
             (or `fm export` it to get TorchCFM's layout)"
        )));
    }
    let export: Option<ExportMeta> = match meta.get(EXPORT_KEY) {
        Some(j) => Some(serde_json::from_str(j).map_err(|e| {
            input(format!(
                "{shown}: the `{EXPORT_KEY}` metadata is malformed: {e}"
            ))
        })?),
        None => None,
    };
    let layers = linear_layers(&a.input, ts)?;
    let dim = layers.last().map(|(w, _)| w.shape[0]).unwrap_or(0);
    let inputs = layers[0].0.shape[1];
    if inputs != dim + 1 {
        bail!(input(format!(
            "{shown}: net.0.weight takes {inputs} inputs and the last layer gives {dim} outputs: \
             a time-varying MLP of dimension {dim} takes {} ([x, t]); was it built with time_varying=False?",
            dim + 1
        )));
    }
    let hidden: Vec<usize> = layers[..layers.len() - 1]
        .iter()
        .map(|(w, _)| w.shape[0])
        .collect();
    if let Some(d) = a.dim {
        if d != dim as i64 {
            bail!(input(format!(
                "--dim {d}: {shown} holds an MLP of dimension {dim} (net.0.weight {:?}); give --dim {dim} or another file",
                layers[0].0.shape
            )));
        }
    }
    if let Some(h) = &a.hidden {
        let want = crate::commands::parse_hidden(h)?;
        if want != hidden {
            bail!(input(format!(
                "--hidden {h}: {shown} has hidden widths {}; give --hidden {} or another file",
                join(&hidden),
                join(&hidden)
            )));
        }
    }
    if let Some(w) = a.width {
        if hidden.is_empty() || hidden.iter().any(|&h| h as i64 != w) {
            bail!(input(format!(
                "--width {w}: {shown} has hidden widths {}; give the width it has, or --hidden",
                join(&hidden)
            )));
        }
    }
    let recorded = export.as_ref().map(|e| e.activation.clone());
    let act = match (&a.activation, &recorded) {
        (Some(flag), Some(rec)) => {
            let f =
                Activation::parse(flag).map_err(|e| input(format!("--activation {flag}: {e}")))?;
            let r = Activation::parse(rec)
                .map_err(|e| input(format!("{shown}: recorded activation: {e}")))?;
            if f != r {
                bail!(input(format!(
                    "--activation {flag}: {shown} was exported with activation {rec}; drop --activation or give {rec}"
                )));
            }
            f
        }
        (Some(flag), None) => {
            Activation::parse(flag).map_err(|e| input(format!("--activation {flag}: {e}")))?
        }
        (None, Some(rec)) => Activation::parse(rec)
            .map_err(|e| input(format!("{shown}: recorded activation: {e}")))?,
        (None, None) => Activation::Selu,
    };
    if let Some(e) = &export {
        if e.dim != dim || e.hidden != hidden {
            bail!(input(format!(
                "{shown}: the tensors hold dimension {dim} and hidden widths {} but the metadata says {} and {}; the file was edited",
                join(&hidden),
                e.dim,
                join(&e.hidden)
            )));
        }
    }
    let source = a
        .source
        .clone()
        .or_else(|| export.as_ref().map(|e| e.source.clone()))
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "gaussian".into());
    // The source must be a dataset `fm sample` can draw from, of the model's dimension.
    flow_matching::data::Dataset::parse(&source, Some(dim))
        .with_context(|| format!("--source {source}"))
        .map_err(|e| input(format!("{e:#}")))?;
    let matcher = match &export {
        Some(e) => e.matcher.clone(),
        None => MatcherSpec::parse("icfm", Some(0.0), None, None)?,
    };
    let mut weights = Vec::new();
    for (i, (w, b)) in layers.into_iter().enumerate() {
        weights.push(Tensor {
            name: format!("layers.{i}.weight"),
            ..w
        });
        weights.push(Tensor {
            name: format!("layers.{i}.bias"),
            ..b
        });
    }
    weights.sort_by(|a, b| a.name.cmp(&b.name));
    let file = ModelFile {
        config: ModelConfig {
            format: MODEL_FORMAT.into(),
            format_version: MODEL_FORMAT_VERSION,
            crate_version: env!("CARGO_PKG_VERSION").into(),
            architecture: ArchConfig {
                dim,
                hidden: hidden.clone(),
                activation: act.name().into(),
                time_features: "raw".into(),
            },
            objective: Objective::Flow,
            matcher,
            training: TrainParams::default(),
            source: source.clone(),
            target: export
                .as_ref()
                .map(|e| e.target.clone())
                .unwrap_or_default(),
            steps_done: export.as_ref().map_or(0, |e| e.steps_done),
            loss_history: Vec::new(),
            has_ema: false,
            context: Default::default(),
        },
        weights,
        ema: None,
    };
    // Every check of the model reader (shapes, finite values) before anything is written.
    let bytes = file.to_bytes()?;
    let decoded =
        ModelFile::from_bytes(&a.input, &bytes).map_err(|e| input(format!("{shown}: {e}")))?;
    TrainedModel::from_file(&a.input, &decoded).map_err(|e| input(format!("{shown}: {e}")))?;
    flow_matching::train::write_atomic(&a.out, &bytes)?;
    println!(
        "imported {shown} (dimension {dim}, hidden {}, {}, source {source}) to {}",
        join(&hidden),
        act.name(),
        a.out.display()
    );
    let mut r = crate::commands::Report::new();
    r.insert("command".into(), json!("import"));
    r.insert("format".into(), json!("torchcfm"));
    r.insert("dim".into(), json!(dim));
    r.insert("hidden".into(), json!(hidden));
    r.insert("activation".into(), json!(act.name()));
    r.insert("source".into(), json!(source));
    r.insert("out".into(), json!(a.out.display().to_string()));
    Ok(r)
}

fn join(v: &[usize]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
