#!/usr/bin/env python3
"""Load an `fm` model file (.safetensors) with numpy and evaluate its network.

Needs only numpy and safetensors (`python3 -m pip install numpy safetensors`).
The file layout and the formulas are documented in docs/interop.md.

As a library:

    import fm_model
    model = fm_model.load("model.safetensors")   # EMA weights when present, like `fm sample`
    v = model.velocity(0.5, x)                   # x: (n, d) array -> (n, d) array

As a script (prints {"v": [[...], ...]} as JSON; t may be one number or one per row):

    python3 fm_model.py MODEL.safetensors POINTS.json [--raw]
    POINTS.json: {"t": 0.5, "x": [[0.1, -0.2], ...]}
"""

import json
import math
import sys

import numpy as np
from safetensors import safe_open

CONFIG_KEY = "fm_config"
EMA_PREFIX = "ema."
SELU_LAMBDA = 1.0507009873554805
SELU_ALPHA = 1.6732632423543773

# Defaults of every field a config may omit (TorchCFM's MLP(dim=2, w=64)).
ARCH_DEFAULTS = {"dim": 2, "hidden": [64, 64, 64], "activation": "selu", "time_features": "raw"}


def _sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


ACTIVATIONS = {
    "selu": lambda z: np.where(
        z > 0, SELU_LAMBDA * z, SELU_LAMBDA * SELU_ALPHA * np.expm1(np.minimum(z, 0.0))
    ),
    "silu": lambda z: z * _sigmoid(z),
    "swish": lambda z: z * _sigmoid(z),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "softplus": lambda z: np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z))),
    # The exact GELU z Φ(z), PyTorch's nn.GELU() (format version 2 on).
    "gelu": lambda z: 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0))),
    # The tanh approximation, PyTorch's nn.GELU(approximate="tanh").
    "gelu-tanh": lambda z: 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3))),
}
ACTIVATIONS["gelu_tanh"] = ACTIVATIONS["gelu-tanh"]

# The newest format version this loader reads; version 1 wrote `gelu` for the tanh form.
FORMAT_VERSION = 2


def _erf(z):
    # numpy has no erf; math.erf elementwise (the loader is a reference, not fast).
    return np.vectorize(math.erf, otypes=[np.float64])(z)


def activation_name(config):
    """The activation's name under today's naming (a version-1 `gelu` is `gelu-tanh`)."""
    arch = {**ARCH_DEFAULTS, **config.get("architecture", {})}
    name = arch["activation"].strip().lower()
    if config.get("format_version", FORMAT_VERSION) == 1 and name == "gelu":
        return "gelu-tanh"
    return name


def time_features(spec, t):
    """The time columns for t of shape (n,): `raw` -> [t]; `fourier:K` -> [sin(2πjt)…, cos(2πjt)…]."""
    if spec == "raw":
        return t[:, None]
    if spec.startswith("fourier:"):
        k = int(spec[len("fourier:"):])
        a = t[:, None] * (2.0 * math.pi * np.arange(1, k + 1))
        return np.concatenate([np.sin(a), np.cos(a)], axis=1)
    raise ValueError(f"unknown time_features `{spec}`: expected `raw` or `fourier:K`")


class Model:
    """The network of a model file: config plus the chosen weights as float64 arrays."""

    def __init__(self, config, layers):
        self.config = config
        arch = {**ARCH_DEFAULTS, **config.get("architecture", {})}
        self.dim = arch["dim"]
        self.time_spec = arch["time_features"]
        version = config.get("format_version")
        if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            raise ValueError(f"format_version {version!r} is not supported: expected 1 to {FORMAT_VERSION}")
        name = activation_name(config)
        if name not in ACTIVATIONS:
            raise ValueError(f"unknown activation `{name}`: expected one of {sorted(ACTIVATIONS)}")
        self.activation = ACTIVATIONS[name]
        self.layers = layers  # [(weight (out, in), bias (out,)), ...]

    def network(self, t, x):
        """The network's output for time t (a number or one per row) and points x of shape (n, d)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x has shape {x.shape}: expected (n, {self.dim})")
        t = np.broadcast_to(np.asarray(t, dtype=np.float64), (x.shape[0],))
        h = np.concatenate([x, time_features(self.time_spec, t)], axis=1)  # input order [x, t]
        for i, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            if i + 1 < len(self.layers):
                h = self.activation(h)
        return h

    def velocity(self, t, x):
        """v(t, x) of a flow-matching model (objective `flow`)."""
        objective = self.config.get("objective", "flow")
        if objective != "flow":
            raise ValueError(
                f"the model's objective is `{objective}`: its network predicts noise, not a "
                "velocity; use network(t, x) and the probability-flow formula in docs/interop.md"
            )
        return self.network(t, x)


def load(path, use_ema=True):
    """Reads a model file; uses the EMA weights when the file has them and use_ema (the default)."""
    with safe_open(path, framework="np") as f:
        meta = f.metadata() or {}
        if CONFIG_KEY not in meta:
            raise ValueError(f"{path}: no `{CONFIG_KEY}` metadata; not an fm model file")
        config = json.loads(meta[CONFIG_KEY])
        prefix = EMA_PREFIX if use_ema and config.get("has_ema", False) else ""
        layers = []
        while f"{prefix}layers.{len(layers)}.weight" in f.keys():
            i = len(layers)
            w = f.get_tensor(f"{prefix}layers.{i}.weight").astype(np.float64)
            b = f.get_tensor(f"{prefix}layers.{i}.bias").astype(np.float64)
            layers.append((w, b))
    if not layers:
        raise ValueError(f"{path}: no `{prefix}layers.0.weight` tensor")
    return Model(config, layers)


def main(argv):
    args = [a for a in argv if a != "--raw"]
    if len(args) != 2:
        print("usage: fm_model.py MODEL.safetensors POINTS.json [--raw]  "
              '(POINTS.json: {"t": 0.5, "x": [[...], ...]}; prints {"v": [[...], ...]}; '
              "--raw: the raw weights instead of the EMA ones)")
        return 2
    model = load(args[0], use_ema="--raw" not in argv)
    with open(args[1]) as f:
        points = json.load(f)
    v = model.velocity(points["t"], points["x"])
    print(json.dumps({"v": v.tolist()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
