//! Reading and writing named tensors with a metadata map in the safetensors format.

use crate::TrainError;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::HashMap;
use std::path::Path;

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
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| TrainError::param("tensors", "", format!("cannot encode tensors: {e}")))
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
    Ok((metadata, out))
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, TrainError> {
    if path.is_dir() {
        return Err(TrainError::bad_file(
            path,
            "is a directory, not a model file",
        ));
    }
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TrainError::bad_file(path, "no such file: check the path"),
        std::io::ErrorKind::PermissionDenied => {
            TrainError::bad_file(path, "permission denied: make the file readable")
        }
        _ => TrainError::io(path, e),
    })
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
