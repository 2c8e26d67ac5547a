//! Probability paths of flow matching (Gaussian conditional paths, affine paths with schedulers) and a continuity-equation test kit.
