//! Reading and writing named tensors with a metadata map in the safetensors format.

use crate::TrainError;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// The metadata key of the checksum [`encode`] stores and [`decode`] checks: `crc32:` and eight
/// hex digits, a CRC-32 over every other metadata entry and every tensor's name, dtype, shape
/// and bytes (see [`checksum`]). Files without it (written before checksums) still decode.
pub const CHECKSUM_KEY: &str = "fm_checksum";

/// The largest model or checkpoint file that `ModelFile::load` and `Checkpoint::load` read:
/// 4 GiB. The widest network the CLI builds holds far fewer parameters; a larger "model" is a
/// wrong path (a disk image, a device).
pub const MAX_FILE_BYTES: u64 = 4 << 30;

/// The values of a [`Tensor`]: little-endian f32 (weights) or f64 (exact state such as Adam's moments).
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 64-bit floats.
    F64(Vec<f64>),
}

impl TensorData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
        }
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A named tensor of a safetensors file.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The name, e.g. `layers.0.weight`.
    pub name: String,
    /// The shape (row-major).
    pub shape: Vec<usize>,
    /// The values.
    pub data: TensorData,
}

impl Tensor {
    /// An f32 tensor.
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self {
            name: name.into(),
            shape,
            data: TensorData::F32(data),
        }
    }
    /// An f64 tensor.
    pub fn f64(name: impl Into<String>, shape: Vec<usize>, data: Vec<f64>) -> Self {
        Self {
            name: name.into(),
            shape,
            data: TensorData::F64(data),
        }
    }
}

/// Encodes tensors and a metadata map into the bytes of a safetensors file.
pub fn encode(
    metadata: HashMap<String, String>,
    tensors: &[Tensor],
) -> Result<Vec<u8>, TrainError> {
    let bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|t| match &t.data {
            TensorData::F32(v) => (
                t.name.clone(),
                Dtype::F32,
                t.shape.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            TensorData::F64(v) => (
                t.name.clone(),
                Dtype::F64,
                t.shape.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = tensors.iter().find(|t| !seen.insert(t.name.as_str())) {
        return Err(TrainError::param(
            "tensor",
            &dup.name,
            "two tensors have this name: every tensor of a file needs its own name".to_string(),
        ));
    }
    let mut views = Vec::with_capacity(bytes.len());
    for (name, dtype, shape, data) in &bytes {
        let view = TensorView::new(*dtype, shape.clone(), data)
            .map_err(|e| TrainError::param("tensor", name, format!("cannot encode tensor: {e}")))?;
        views.push((name.clone(), view));
    }
    let mut metadata = metadata;
    metadata.remove(CHECKSUM_KEY);
    let sum = checksum(&metadata, tensors);
    metadata.insert(CHECKSUM_KEY.to_string(), format!("crc32:{sum:08x}"));
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| TrainError::param("tensors", "", format!("cannot encode tensors: {e}")))?;
    sorted_header(bytes)
}

/// The file with its JSON header rewritten in key order: safetensors writes the metadata map
/// in the `HashMap`'s (random) order, and a file must be a function of its content (runs are
/// compared bit for bit). The data section is unchanged; the header is padded with spaces to a
/// multiple of 8 bytes, as safetensors pads it.
fn sorted_header(bytes: Vec<u8>) -> Result<Vec<u8>, TrainError> {
    let bad = |e: String| TrainError::param("tensors", "", format!("cannot encode tensors: {e}"));
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
        .filter(|n| 8 + n <= bytes.len())
        .ok_or_else(|| bad("the serialised header is malformed".into()))?;
    let header: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).map_err(|e| bad(e.to_string()))?;
    let header: std::collections::BTreeMap<String, serde_json::Value> = header
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::Object(m) => {
                let sorted: std::collections::BTreeMap<String, serde_json::Value> =
                    m.into_iter().collect();
                (k, serde_json::to_value(sorted).unwrap_or_default())
            }
            other => (k, other),
        })
        .collect();
    let mut h = serde_json::to_vec(&header).map_err(|e| bad(e.to_string()))?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

/// Decodes the bytes of a safetensors file read from `path` (named in errors).
pub fn decode(
    path: &Path,
    bytes: &[u8],
) -> Result<(HashMap<String, String>, Vec<Tensor>), TrainError> {
    let not_model = |e: safetensors::SafeTensorError| {
        TrainError::bad_file(
            path,
            format!("not a readable safetensors file ({e}); is it truncated or not a model file?"),
        )
    };
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(not_model)?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(bytes).map_err(not_model)?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data = match view.dtype() {
            Dtype::F32 => TensorData::F32(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            Dtype::F64 => TensorData::F64(
                raw.chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
            other => {
                return Err(TrainError::bad_file(
                    path,
                    format!("tensor `{name}` has dtype {other:?}; only F32 and F64 are supported"),
                ));
            }
        };
        out.push(Tensor {
            name,
            shape: view.shape().to_vec(),
            data,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    let mut metadata = metadata;
    if let Some(stored) = metadata.remove(CHECKSUM_KEY) {
        let found = checksum(&metadata, &out);
        let expected = stored
            .strip_prefix("crc32:")
            .and_then(|h| u32::from_str_radix(h, 16).ok());
        if expected != Some(found) {
            return Err(TrainError::bad_file(
                path,
                format!(
                    "corrupt: checksum mismatch (stored {stored}, computed crc32:{found:08x}); \
                     the file changed after it was written: restore it from a copy or retrain"
                ),
            ));
        }
    }
    Ok((metadata, out))
}

/// The CRC-32 of a file's content: every metadata entry in key order (key and value, each
/// length-prefixed) except [`CHECKSUM_KEY`], then every tensor in name order (name, dtype, shape,
/// little-endian bytes, each length-prefixed). It depends on the content only, not on how the
/// JSON header is laid out, so a file rewritten with the same content keeps its checksum.
pub fn checksum(metadata: &HashMap<String, String>, tensors: &[Tensor]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    let mut put = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    let mut keys: Vec<&String> = metadata.keys().filter(|k| *k != CHECKSUM_KEY).collect();
    keys.sort();
    for k in keys {
        put(k.as_bytes());
        put(metadata[k].as_bytes());
    }
    let mut sorted: Vec<&Tensor> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for t in sorted {
        put(t.name.as_bytes());
        let shape: Vec<u8> = t
            .shape
            .iter()
            .flat_map(|d| (*d as u64).to_le_bytes())
            .collect();
        put(&shape);
        match &t.data {
            TensorData::F32(v) => {
                put(b"F32");
                put(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
            }
            TensorData::F64(v) => {
                put(b"F64");
                put(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
            }
        }
    }
    h.finalize()
}

/// Reads a whole model or checkpoint file, naming it in the error. Before anything is opened,
/// the path must name a regular file (a FIFO would block, `/dev/zero` would never end) of at
/// most [`MAX_FILE_BYTES`]; the opened file is checked again, and at most that many bytes are read.
pub fn read_file(path: &Path) -> Result<Vec<u8>, TrainError> {
    let open_err = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => TrainError::bad_file(path, "no such file: check the path"),
        std::io::ErrorKind::PermissionDenied => {
            TrainError::bad_file(path, "permission denied: make the file readable")
        }
        _ => TrainError::io(path, e),
    };
    fm_core::read_regular_file(path, MAX_FILE_BYTES).map_err(|e| match e {
        fm_core::ReadFileError::Io(e) => open_err(e),
        fm_core::ReadFileError::Directory => {
            TrainError::bad_file(path, "is a directory, not a model file")
        }
        fm_core::ReadFileError::NotRegular => TrainError::bad_file(
            path,
            "is not a regular file (a device, FIFO or socket): give a model file written by `fm train`",
        ),
        fm_core::ReadFileError::TooLarge { size, grew: false } => TrainError::bad_file(
            path,
            format!(
                "is {size} bytes, more than the limit of {MAX_FILE_BYTES} bytes (4 GiB) for a model or checkpoint file: is it the right file?"
            ),
        ),
        fm_core::ReadFileError::TooLarge { grew: true, .. } => TrainError::bad_file(
            path,
            format!("grew past the limit of {MAX_FILE_BYTES} bytes while it was read"),
        ),
    })
}

/// The metadata map of a safetensors file, reading only its header (at most 100 MB); `None` if
/// the file is not a regular file or not a safetensors file. The CLI uses it to recognise its
/// own model and checkpoint files before replacing one.
pub fn peek_metadata(path: &Path) -> Option<HashMap<String, String>> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut file = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).ok()?;
    let n = u64::from_le_bytes(len);
    if n > 100_000_000 || n > meta.len().saturating_sub(8) {
        return None;
    }
    let mut header = vec![0u8; usize::try_from(n).ok()?];
    file.read_exact(&mut header).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&header).ok()?;
    let map = value.get("__metadata__")?.as_object()?;
    Some(
        map.iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_bits_and_metadata() {
        let t = vec![
            Tensor::f32("a", vec![2, 2], vec![1.0, -0.0, f32::MIN_POSITIVE, 3.5]),
            Tensor::f64("b.m", vec![3], vec![0.1, 1e-300, -7.25]),
        ];
        let meta = HashMap::from([("k".to_string(), "{\"x\":1}".to_string())]);
        let bytes = encode(meta.clone(), &t).unwrap();
        let (m, back) = decode(Path::new("mem"), &bytes).unwrap();
        assert_eq!(m, meta);
        assert_eq!(back, t);
    }

    /// Found by the fuzz targets: safetensors panicked on two tensors of one name.
    #[test]
    fn duplicate_names_are_an_error_not_a_panic() {
        let t = || Tensor::f32("layers.0.bias", vec![1], vec![0.0]);
        let err = encode(HashMap::new(), &[t(), t()]).unwrap_err();
        assert!(err.to_string().contains("layers.0.bias"), "{err}");
        assert!(encode(HashMap::new(), &[t()]).is_ok());
    }

    /// Two metadata entries (the config and the checksum) must not make the bytes depend on
    /// the `HashMap`'s random iteration order.
    #[test]
    fn bytes_are_a_function_of_the_content() {
        let t = vec![
            Tensor::f32("b", vec![2], vec![1.0, 2.0]),
            Tensor::f32("a", vec![1], vec![3.0]),
        ];
        let meta: HashMap<String, String> = (0..8)
            .map(|i| (format!("key{i}"), format!("value{i}")))
            .collect();
        let first = encode(meta.clone(), &t).unwrap();
        for _ in 0..20 {
            let again: HashMap<String, String> = meta.clone().into_iter().collect();
            assert_eq!(encode(again, &t).unwrap(), first);
        }
        let (m, back) = decode(Path::new("mem"), &first).unwrap();
        assert_eq!(m, meta);
        assert_eq!(back.len(), 2);
    }

    #[test]
    fn truncated_bytes_are_a_bad_file() {
        let bytes = encode(HashMap::new(), &[Tensor::f32("a", vec![4], vec![1.0; 4])]).unwrap();
        for cut in [0, 3, 8, bytes.len() - 1] {
            let err = decode(Path::new("m.safetensors"), &bytes[..cut]).unwrap_err();
            assert!(err.is_invalid_input(), "{err}");
            assert!(err.to_string().starts_with("m.safetensors"), "{err}");
        }
    }
}
