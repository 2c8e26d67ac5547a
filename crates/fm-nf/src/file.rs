//! The model file: one `.safetensors` file, parameters as F64 tensors, a JSON config naming the
//! kind in its metadata under [`CONFIG_KEY`]; written atomically (temporary file + rename).

use crate::cnf::{CnfConfig, CnfMle};
use crate::coupling::{CouplingConfig, CouplingFlow};
use crate::error::{NfError, Result};
use crate::params::ParamSpec;
use crate::residual::{ResidualConfig, ResidualFlow};
use crate::train::MaxLikelihood;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The metadata key of the JSON config (the same key as `fm-train`'s flow-matching model files).
pub const CONFIG_KEY: &str = "fm_config";

/// The format version this build writes and reads.
pub const NF_FORMAT_VERSION: u32 = 1;

/// The `kind` of a coupling flow's model file.
pub const COUPLING_KIND: &str = "coupling";

/// The `kind` of a residual flow's model file.
pub const RESIDUAL_KIND: &str = "residual";

/// The `kind` of a maximum-likelihood CNF's model file.
pub const CNF_KIND: &str = "cnf-mle";

/// The JSON config of a coupling flow's file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CouplingFile {
    kind: String,
    format_version: u32,
    crate_version: String,
    flow: CouplingConfig,
    actnorm_ready: bool,
}

/// The JSON config of a residual flow's file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ResidualFile {
    kind: String,
    format_version: u32,
    crate_version: String,
    flow: ResidualConfig,
}

/// The JSON config of a CNF's file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CnfFile {
    kind: String,
    format_version: u32,
    crate_version: String,
    flow: CnfConfig,
}

fn bad(path: &Path, reason: impl Into<String>) -> NfError {
    NfError::BadFile {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn read_config(path: &Path, bytes: &[u8]) -> Result<serde_json::Value> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| {
        bad(
            path,
            format!("not a readable safetensors file ({e}); is it truncated or not a model file?"),
        )
    })?;
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(CONFIG_KEY))
        .ok_or_else(|| {
            bad(
                path,
                format!("not an fm model file (no `{CONFIG_KEY}` metadata)"),
            )
        })?;
    serde_json::from_str(json).map_err(|e| bad(path, format!("the model config is not JSON: {e}")))
}

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| NfError::Io {
        path: path.display().to_string(),
        message: match e.kind() {
            std::io::ErrorKind::NotFound => "no such file: check the path".into(),
            _ => e.to_string(),
        },
    })
}

/// The `kind` a model file names (`"coupling"`, …), or `None` for a file without one (a
/// flow-matching model written by `fm-train`), so a caller can dispatch to the right loader.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("flow.safetensors");
/// let flow = fm_nf::CouplingFlow::new(Default::default(), &mut fm_core::rng::seeded(0)).unwrap();
/// flow.save(&path).unwrap();
/// assert_eq!(fm_nf::model_kind(&path).unwrap().as_deref(), Some("coupling"));
/// ```
pub fn model_kind(path: &Path) -> Result<Option<String>> {
    let value = read_config(path, &read_bytes(path)?)?;
    Ok(value
        .get("kind")
        .and_then(|k| k.as_str())
        .map(str::to_string))
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// crash leaves the old file or the new one, never a torn mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(bad(
            path,
            format!(
                "the directory {} does not exist: create it first",
                parent.display()
            ),
        ));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| bad(path, "no file name: give a path to a file"))?;
    let tmp = parent.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        NfError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    })
}

/// Encodes `params` as the F64 tensors `specs` with the JSON `config`, written atomically.
fn save_file(
    path: &Path,
    config: &impl Serialize,
    specs: &[ParamSpec],
    params: &[f64],
) -> Result<()> {
    let json = serde_json::to_string(config)
        .map_err(|e| bad(path, format!("cannot encode the config: {e}")))?;
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = specs
        .iter()
        .map(|s| {
            let bytes = params[s.offset..s.offset + s.len()]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            (s.name.clone(), vec![s.rows, s.cols], bytes)
        })
        .collect();
    let mut views = Vec::with_capacity(raw.len());
    for (name, shape, data) in &raw {
        let view = TensorView::new(Dtype::F64, shape.clone(), data)
            .map_err(|e| bad(path, format!("cannot encode tensor {name}: {e}")))?;
        views.push((name.clone(), view));
    }
    let bytes =
        safetensors::serialize(views, Some(HashMap::from([(CONFIG_KEY.to_string(), json)])))
            .map_err(|e| bad(path, format!("cannot encode the tensors: {e}")))?;
    write_atomic(path, &bytes)
}

/// Reads a file's bytes and its config of kind `kind` (else [`NfError::WrongKind`]).
fn open_kind<C: serde::de::DeserializeOwned>(
    path: &Path,
    kind: &'static str,
) -> Result<(Vec<u8>, C)> {
    let bytes = read_bytes(path)?;
    let value = read_config(path, &bytes)?;
    let found = value.get("kind").and_then(|k| k.as_str());
    if found != Some(kind) {
        return Err(NfError::WrongKind {
            path: path.display().to_string(),
            expected: kind,
            found: found
                .unwrap_or("flow matching (no `kind` in the config)")
                .to_string(),
        });
    }
    let version = value
        .get("format_version")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    if version > u64::from(NF_FORMAT_VERSION) {
        return Err(bad(
            path,
            format!(
                "format version {version} is newer than this build's {NF_FORMAT_VERSION}: update fm"
            ),
        ));
    }
    let config = serde_json::from_value(value)
        .map_err(|e| bad(path, format!("the {kind} config is invalid: {e}")))?;
    Ok((bytes, config))
}

/// Fills `params` from the F64 tensors `specs` of the file's `bytes` (all present, right shapes, no others).
fn fill_params(path: &Path, bytes: &[u8], specs: &[ParamSpec], params: &mut [f64]) -> Result<()> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| bad(path, format!("not a readable safetensors file ({e})")))?;
    if st.len() != specs.len() {
        return Err(bad(
            path,
            format!(
                "{} tensors, but this architecture has {}",
                st.len(),
                specs.len()
            ),
        ));
    }
    for s in specs {
        let t = st
            .tensor(&s.name)
            .map_err(|_| bad(path, format!("tensor {} is missing", s.name)))?;
        if t.dtype() != Dtype::F64 || t.shape() != [s.rows, s.cols] {
            return Err(bad(
                path,
                format!(
                    "tensor {} is {:?} {:?}, expected F64 [{}, {}]",
                    s.name,
                    t.dtype(),
                    t.shape(),
                    s.rows,
                    s.cols
                ),
            ));
        }
        let dst = &mut params[s.offset..s.offset + s.len()];
        for (d, c) in dst.iter_mut().zip(t.data().chunks_exact(8)) {
            *d = f64::from_le_bytes(c.try_into().expect("8 bytes"));
        }
    }
    Ok(())
}

impl CouplingFlow {
    /// Saves the flow to one `.safetensors` file (atomically): each tensor of
    /// [`CouplingFlow::param_specs`] as F64 with shape `(rows, cols)` (weights `(in, out)`), and
    /// the JSON config `{"kind": "coupling", …}` under [`CONFIG_KEY`].
    pub fn save(&self, path: &Path) -> Result<()> {
        let config = CouplingFile {
            kind: COUPLING_KIND.into(),
            format_version: NF_FORMAT_VERSION,
            crate_version: env!("CARGO_PKG_VERSION").into(),
            flow: self.config().clone(),
            actnorm_ready: self.actnorm_ready(),
        };
        save_file(path, &config, self.param_specs(), self.params())
    }

    /// Loads a flow written by [`CouplingFlow::save`]; a file of another kind is
    /// [`NfError::WrongKind`], a missing or misshapen tensor [`NfError::BadFile`].
    pub fn load(path: &Path) -> Result<Self> {
        let (bytes, file): (_, CouplingFile) = open_kind(path, COUPLING_KIND)?;
        let mut flow = CouplingFlow::zeroed(file.flow)?;
        let specs = flow.param_specs().to_vec();
        fill_params(path, &bytes, &specs, flow.params_mut())?;
        flow.set_actnorm_ready(file.actnorm_ready);
        Ok(flow)
    }
}

impl ResidualFlow {
    /// Saves the flow to one `.safetensors` file (atomically), as [`CouplingFlow::save`] does,
    /// with `{"kind": "residual", …}`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let config = ResidualFile {
            kind: RESIDUAL_KIND.into(),
            format_version: NF_FORMAT_VERSION,
            crate_version: env!("CARGO_PKG_VERSION").into(),
            flow: self.config().clone(),
        };
        save_file(path, &config, self.param_specs(), self.params())
    }

    /// Loads a flow written by [`ResidualFlow::save`]; a file of another kind is
    /// [`NfError::WrongKind`].
    pub fn load(path: &Path) -> Result<Self> {
        let (bytes, file): (_, ResidualFile) = open_kind(path, RESIDUAL_KIND)?;
        let mut flow = ResidualFlow::zeroed(file.flow)?;
        let specs = flow.param_specs().to_vec();
        fill_params(path, &bytes, &specs, flow.params_mut())?;
        Ok(flow)
    }
}

impl CnfMle {
    /// Saves the model to one `.safetensors` file (atomically), as [`CouplingFlow::save`] does,
    /// with `{"kind": "cnf-mle", …}`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let config = CnfFile {
            kind: CNF_KIND.into(),
            format_version: NF_FORMAT_VERSION,
            crate_version: env!("CARGO_PKG_VERSION").into(),
            flow: self.config().clone(),
        };
        save_file(path, &config, self.param_specs(), self.params())
    }

    /// Loads a model written by [`CnfMle::save`]; a file of another kind is [`NfError::WrongKind`].
    pub fn load(path: &Path) -> Result<Self> {
        let (bytes, file): (_, CnfFile) = open_kind(path, CNF_KIND)?;
        let mut cnf = CnfMle::zeroed(file.flow)?;
        let specs = cnf.param_specs().to_vec();
        fill_params(path, &bytes, &specs, cnf.params_mut())?;
        Ok(cnf)
    }
}
