//! The bodies of the fuzz targets in `fuzz_targets/`, kept here so that the seeds can be checked
//! by ordinary tests (`cargo test --manifest-path fuzz/Cargo.toml --lib`) and a crash can be
//! replayed without libFuzzer.
//!
//! The contract every function checks: a loader given arbitrary bytes returns a typed error or a
//! value that satisfies the loader's documented invariants; it never panics, aborts or allocates
//! without bound. A panic (including a failed `assert!` here) is a finding.

use fm_data::DataError;
use fm_train::tensors::{self, Tensor, TensorData};
use fm_train::{
    CHECKPOINT_KEY, CONFIG_KEY, Checkpoint, EMA_PREFIX, ModelFile, OptimizerKind, TrainError,
    TrainParams, TrainedModel, Trainer,
};
use ndarray::Array2;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A private directory for the files the path-based loaders read, made once per process.
fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("fm-fuzz-")
            .tempdir()
            .expect("cannot create a scratch directory for the fuzz inputs")
    })
    .path()
}

/// `name` in the scratch directory, made unique per thread (tests run in parallel).
fn scratch_path(name: &str) -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    scratch_dir().join(format!("t{thread}-{name}"))
}

fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch_path(name);
    std::fs::write(&path, bytes).expect("cannot write the fuzz input to the scratch directory");
    path
}

/// Feeds `bytes` as a file `input.<ext>` to [`fm_data::read_points`] (the path-based loader
/// the CLI uses) and checks what it promises: `Ok` means a non-empty `(n, d)` array of finite
/// numbers; an error names the file.
pub fn read_points_bytes(ext: &str, bytes: &[u8]) -> Result<Array2<f64>, DataError> {
    let path = scratch_file(&format!("input.{ext}"), bytes);
    let out = fm_data::read_points(&path);
    match &out {
        Ok(x) => {
            assert!(
                x.nrows() > 0 && x.ncols() > 0,
                "empty array accepted: {:?}",
                x.dim()
            );
            assert!(x.iter().all(|v| v.is_finite()), "non-finite value accepted");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("input."),
                "the error does not name the file: {msg}"
            );
        }
    }
    out
}

/// The largest number of `f32` values a model's network may have for the target to evaluate it.
const MAX_EVAL_PARAMS: usize = 1 << 16;

/// Decodes a model file (`ModelFile::from_bytes`, then `TrainedModel::from_file` as
/// `TrainedModel::load` does), and for a loaded model: re-encodes it (the bytes must load back
/// to the same file), builds its velocity field and evaluates it on one point.
pub fn load_model_bytes(bytes: &[u8]) -> Result<TrainedModel, TrainError> {
    let path = Path::new("fuzz.safetensors");
    let file = ModelFile::from_bytes(path, bytes)?;
    let again = file
        .to_bytes()
        .expect("a model file that loaded cannot be encoded again");
    let reloaded =
        ModelFile::from_bytes(path, &again).expect("a re-encoded model file does not load");
    assert_eq!(
        reloaded, file,
        "a model file changed in a save/load round trip"
    );
    let model = TrainedModel::from_file(path, &file)?;
    for use_ema in [false, true] {
        let net = model.network(use_ema);
        if net.params().len() > MAX_EVAL_PARAMS {
            continue;
        }
        let field = model.field(use_ema)?;
        let d = field.dim();
        assert_eq!(
            d, model.config.architecture.dim,
            "field and architecture disagree"
        );
        let x = Array2::<f64>::zeros((1, d));
        for t in [0.0, 0.5, 1.0] {
            let v = field.velocity_vec(t, x.view());
            assert_eq!(v.dim(), (1, d), "velocity has the wrong shape");
        }
    }
    Ok(model)
}

/// Limits on a checkpoint's run for the target to resume it for one step.
const MAX_RESUME_DIM: usize = 8;
const MAX_RESUME_WIDTH: usize = 32;
const MAX_RESUME_LAYERS: usize = 3;
const MAX_RESUME_BATCH: usize = 64;

/// Decodes a checkpoint (`Checkpoint::from_bytes`); for a loaded one: saves it and loads it
/// back (same step, identity and parameters) and, when the run it describes is small and uses
/// built-in data sets, resumes it for one step through `Trainer` (which re-checks everything
/// against the run: identity, weights, optimizer and EMA state). The resume may fail with an
/// error; it must not panic.
pub fn load_checkpoint_bytes(bytes: &[u8]) -> Result<Checkpoint, TrainError> {
    let ck = Checkpoint::from_bytes(Path::new("fuzz.ckpt"), bytes)?;
    let path = scratch_path("resume.ckpt");
    ck.save(&path)
        .expect("a checkpoint that loaded cannot be saved again");
    let back = Checkpoint::load(&path).expect("a saved checkpoint does not load");
    assert_eq!(
        back.step(),
        ck.step(),
        "step changed in a save/load round trip"
    );
    assert_eq!(
        back.identity(),
        ck.identity(),
        "identity changed in a round trip"
    );
    assert_eq!(
        back.params()
            .iter()
            .map(|p| p.to_bits())
            .collect::<Vec<_>>(),
        ck.params().iter().map(|p| p.to_bits()).collect::<Vec<_>>(),
        "parameters changed in a round trip"
    );
    let _ = resume_one_step(&ck, &path);
    Ok(ck)
}

/// Resumes the run of `ck` (saved at `path`) for one more step, if it is small enough:
/// `Ok(true)` if it ran, `Ok(false)` if the run is too large or reads files.
pub fn resume_one_step(ck: &Checkpoint, path: &Path) -> Result<bool, TrainError> {
    let id = ck.identity();
    let arch = &id.architecture;
    let small = arch.dim <= MAX_RESUME_DIM
        && arch.hidden.len() <= MAX_RESUME_LAYERS
        && arch.hidden.iter().all(|&w| w <= MAX_RESUME_WIDTH)
        && (1..=MAX_RESUME_BATCH).contains(&id.batch)
        && ck.step() < 1 << 40;
    // Data set specs that name files would make the target read arbitrary paths.
    let builtin = |s: &str| !s.contains('.') && !s.contains('/') && !s.contains('\\');
    if !small || !builtin(&id.source) || !builtin(&id.target) {
        return Ok(false);
    }
    let target = fm_data::Dataset::parse(&id.target, Some(arch.dim))?;
    let source = fm_data::Dataset::parse(&id.source, Some(arch.dim))?;
    let params = TrainParams::default()
        .steps(ck.step() + 1)
        .batch(id.batch)
        .seed(id.seed)
        .optimizer(OptimizerKind::parse(&id.optimizer)?)
        .ema(id.ema)
        .threads(1)
        .log_every(1)
        .check()?;
    let trainer = Trainer::new(
        source,
        target,
        id.matcher.clone(),
        id.objective,
        arch.clone(),
        params,
    )?
    .checkpoint_path(path)
    .resume(true);
    let out = trainer.run(&mut |_| {})?;
    assert_eq!(
        out.model.config.steps_done,
        ck.step() + 1,
        "a resumed run did not end at its last step"
    );
    Ok(true)
}

/// Splits a structured input at its first NUL byte: the text before it, the bytes after it.
fn split_input(data: &[u8]) -> (String, &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        None => (String::from_utf8_lossy(data).into_owned(), &[]),
    }
}

/// The widths `[d + time columns, hidden..., d]` of the architecture in a JSON value, if it
/// parses and is small enough to build tensors for.
fn widths_of(arch: &serde_json::Value) -> Option<Vec<usize>> {
    let small = |v: &serde_json::Value| v.as_u64().filter(|&w| (1..=64).contains(&w));
    let dim = small(arch.get("dim")?)? as usize;
    let hidden = arch
        .get("hidden")?
        .as_array()?
        .iter()
        .map(|w| small(w).map(|w| w as usize))
        .collect::<Option<Vec<_>>>()?;
    if hidden.len() > 4 {
        return None;
    }
    let tf = arch.get("time_features")?.as_str()?;
    let tc = fm_train::time_columns(tf).ok().filter(|&c| c <= 64)?;
    let mut widths = vec![dim + tc];
    widths.extend(hidden);
    widths.push(dim);
    Some(widths)
}

/// The weight tensors (`layers.{i}.weight` of shape (out, in), `layers.{i}.bias`) of an
/// MLP with these widths, filled with small deterministic values.
fn mlp_tensors(widths: &[usize], salt: u8) -> Vec<Tensor> {
    let mut k = u32::from(salt);
    let mut next = || {
        k = k.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (f64::from(k >> 8) / f64::from(1u32 << 24) - 0.5) as f32
    };
    let mut out = Vec::new();
    for (i, w) in widths.windows(2).enumerate() {
        let (inp, o) = (w[0], w[1]);
        out.push(Tensor::f32(
            format!("layers.{i}.weight"),
            vec![o, inp],
            (0..o * inp).map(|_| next()).collect(),
        ));
        out.push(Tensor::f32(
            format!("layers.{i}.bias"),
            vec![o],
            (0..o).map(|_| next()).collect(),
        ));
    }
    out
}

/// Damages `tensors` as the control bytes say (the bytes after the NUL of a structured input):
/// drop one, add an unknown one, change a shape, switch to F64, put in a NaN.
fn damage(tensors: &mut Vec<Tensor>, control: &[u8]) {
    let mut c = control.iter().copied();
    while let (Some(op), Some(arg)) = (c.next(), c.next()) {
        if tensors.is_empty() {
            return;
        }
        let i = usize::from(arg) % tensors.len();
        match op % 8 {
            0 => {
                tensors.remove(i);
            }
            1 => tensors.push(Tensor::f32(format!("extra.{arg}"), vec![1], vec![0.0])),
            2 => {
                let t = &mut tensors[i];
                let n = t.data.len();
                t.shape = if n > 1 { vec![1, n] } else { vec![n, 1, 1] };
            }
            3 => {
                let t = &mut tensors[i];
                if let TensorData::F32(v) = &t.data {
                    t.data = TensorData::F64(v.iter().map(|&x| f64::from(x)).collect());
                }
            }
            4 => {
                if let TensorData::F32(v) = &mut tensors[i].data {
                    if let Some(x) = v.first_mut() {
                        *x = if arg % 2 == 0 {
                            f32::NAN
                        } else {
                            f32::INFINITY
                        };
                    }
                }
            }
            5 => {
                if let TensorData::F32(v) = &mut tensors[i].data {
                    v.pop();
                    let n = v.len();
                    tensors[i].shape = vec![n];
                }
            }
            6 => tensors[i].name = format!("layers.{arg}.weight"),
            _ => tensors[i].name = format!("{EMA_PREFIX}{}", tensors[i].name),
        }
    }
    // A file cannot hold two tensors of one name (and `tensors::encode` panics on them, see
    // `known_finding_encode_panics_on_duplicate_names`): keep the first of each name.
    let mut seen = std::collections::HashSet::new();
    tensors.retain(|t| seen.insert(t.name.clone()));
}

/// Structured model input: the `fm_config` JSON text, then optionally a NUL and control bytes
/// for [`damage`]. Weights matching the JSON's architecture are generated (so inputs get past
/// the shape checks), encoded into a safetensors file and given to [`load_model_bytes`].
pub fn load_model_config(data: &[u8]) -> Result<TrainedModel, TrainError> {
    let (json, control) = split_input(data);
    let value: Option<serde_json::Value> = serde_json::from_str(&json).ok();
    let arch = value.as_ref().and_then(|v| v.get("architecture"));
    let mut ts = match arch.and_then(widths_of) {
        Some(w) => {
            let mut ts = mlp_tensors(&w, 1);
            let has_ema = value
                .as_ref()
                .and_then(|v| v.get("has_ema"))
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            if has_ema {
                ts.extend(mlp_tensors(&w, 2).into_iter().map(|t| Tensor {
                    name: format!("{EMA_PREFIX}{}", t.name),
                    ..t
                }));
            }
            ts
        }
        None => vec![Tensor::f32("layers.0.weight", vec![1], vec![0.5])],
    };
    damage(&mut ts, control);
    let bytes = tensors::encode(HashMap::from([(CONFIG_KEY.to_string(), json)]), &ts)?;
    load_model_bytes(&bytes)
}

/// Structured checkpoint input: the `fm_checkpoint` JSON text, then optionally a NUL and
/// control bytes (the first picks the `params` length: as the identity's architecture needs,
/// one less, one more, or none). Encoded into a safetensors file and given to
/// [`load_checkpoint_bytes`].
pub fn load_checkpoint_state(data: &[u8]) -> Result<Checkpoint, TrainError> {
    let (json, control) = split_input(data);
    let value: Option<serde_json::Value> = serde_json::from_str(&json).ok();
    let arch = value
        .as_ref()
        .and_then(|v| v.get("identity"))
        .and_then(|v| v.get("architecture"));
    let n = arch
        .and_then(widths_of)
        .map(|w| w.windows(2).map(|w| w[1] * w[0] + w[1]).sum::<usize>())
        .unwrap_or(4);
    let mut ts = match control.first().map(|c| c % 5) {
        None | Some(0) | Some(1) => vec![Tensor::f32("params", vec![n], vec![0.125; n])],
        Some(2) => vec![Tensor::f32("params", vec![n + 1], vec![0.125; n + 1])],
        Some(3) => vec![Tensor::f32(
            "params",
            vec![n.saturating_sub(1)],
            vec![-0.5; n.saturating_sub(1)],
        )],
        _ => vec![Tensor::f64("params", vec![n], vec![0.125; n])],
    };
    if control.len() > 1 {
        damage(&mut ts, &control[1..]);
    }
    let bytes = tensors::encode(HashMap::from([(CHECKPOINT_KEY.to_string(), json)]), &ts)?;
    load_checkpoint_bytes(&bytes)
}

#[cfg(test)]
mod tests {
    //! The committed seeds load as their names say: `ok-*` loads, `bad-*` is refused, anything
    //! else may go either way (it only must not panic).

    use super::*;

    fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target);
        let mut out: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap())
            })
            .collect();
        out.sort();
        assert!(!out.is_empty(), "no seeds in {}", dir.display());
        out
    }

    fn check<T, E: std::fmt::Display>(target: &str, f: impl Fn(&[u8]) -> Result<T, E>) {
        for (name, bytes) in seeds(target) {
            let r = f(&bytes);
            if name.starts_with("ok-") {
                if let Err(e) = r {
                    panic!("{target}/{name} should load: {e}");
                }
            } else if name.starts_with("bad-") {
                assert!(r.is_err(), "{target}/{name} should be refused");
            }
        }
    }

    #[test]
    fn csv_seeds() {
        check("csv", |b| read_points_bytes("csv", b));
    }

    #[test]
    fn npy_seeds() {
        check("npy", |b| read_points_bytes("npy", b));
    }

    #[test]
    fn model_file_seeds() {
        check("model_file", load_model_bytes);
    }

    #[test]
    fn checkpoint_seeds() {
        check("checkpoint", load_checkpoint_bytes);
    }

    #[test]
    fn valid_checkpoint_seeds_resume() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in seeds("checkpoint") {
            if name.starts_with("ok-") {
                let ck = Checkpoint::from_bytes(Path::new(&name), &bytes).unwrap();
                let path = dir.path().join(&name);
                ck.save(&path).unwrap();
                assert!(
                    resume_one_step(&ck, &path).unwrap(),
                    "{name} was not resumed"
                );
            }
        }
    }

    #[test]
    fn model_config_seeds() {
        check("model_config", load_model_config);
    }

    #[test]
    fn checkpoint_state_seeds() {
        check("checkpoint_state", load_checkpoint_state);
    }

    /// Found by the `model_config` and `checkpoint_state` targets (before `damage` dropped
    /// duplicates): `fm_train::tensors::encode`, a public function, panics with "index out of
    /// bounds" inside safetensors 0.8 (`Metadata::serialize`, tensor.rs:581) when two tensors
    /// share a name, instead of returning an error. Not reachable from a file (decoded names are
    /// unique), only through the library API. fm-train now refuses duplicates with an error.
    #[test]
    fn known_finding_encode_panics_on_duplicate_names() {
        let t = || Tensor::f32("layers.0.bias", vec![1], vec![0.0]);
        let r = std::panic::catch_unwind(|| tensors::encode(HashMap::new(), &[t(), t()]));
        assert!(
            matches!(r, Ok(Err(_))),
            "encode must return an error, not panic"
        );
    }

    #[test]
    fn regressions_do_not_panic() {
        // Every input under regressions/<target>/ once crashed its target.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
        let Ok(dirs) = std::fs::read_dir(&root) else {
            return;
        };
        for dir in dirs {
            let dir = dir.unwrap().path();
            let target = dir.file_name().unwrap().to_string_lossy().into_owned();
            for f in std::fs::read_dir(&dir).unwrap() {
                let bytes = std::fs::read(f.unwrap().path()).unwrap();
                run_target(&target, &bytes);
            }
        }
    }
}

/// Runs the body of the fuzz target named `target` on `data` (for replaying inputs in tests).
pub fn run_target(target: &str, data: &[u8]) {
    match target {
        "csv" => drop(read_points_bytes("csv", data)),
        "npy" => drop(read_points_bytes("npy", data)),
        "model_file" => drop(load_model_bytes(data)),
        "checkpoint" => drop(load_checkpoint_bytes(data)),
        "model_config" => drop(load_model_config(data)),
        "checkpoint_state" => drop(load_checkpoint_state(data)),
        other => panic!("unknown fuzz target {other}"),
    }
}
