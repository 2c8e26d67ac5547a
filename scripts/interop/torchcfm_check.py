#!/usr/bin/env python3
"""Evaluate a state dict written by `fm export --format torchcfm` (TorchCFM's MLP layout).

    python3 torchcfm_check.py STATE_DICT.safetensors POINTS.json
    POINTS.json: {"t": 0.5, "x": [[0.1, -0.2], ...]}   (t: one number or one per row)

Prints one JSON object:

    {"v": [[...], ...],            # numpy forward pass of the state dict (needs numpy, safetensors)
     "torch": [[...], ...] | null, # the same through PyTorch (null without torch)
     "torch_module": "torchcfm.models.models.MLP" | "torch.nn.Sequential" | null}

With torch, the state dict is loaded with `load_state_dict` (strict) into TorchCFM's
`MLP(dim, w, time_varying=True)` when it has that shape (3 hidden layers of one width, SELU) and
torchcfm is installed, else into an `nn.Sequential` of `Linear` and the recorded activation
module; the forward pass runs in float64 on `torch.cat([x, t], dim=-1)`, as TorchCFM calls it.
"""

import json
import os
import sys

import numpy as np
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fm_model  # noqa: E402  (the activations, shared with the model-file loader)

EXPORT_KEY = "fm_export"


def read(path):
    with safe_open(path, framework="np") as f:
        meta = json.loads((f.metadata() or {}).get(EXPORT_KEY, "{}"))
        layers = []
        while f"net.{2 * len(layers)}.weight" in f.keys():
            k = 2 * len(layers)
            layers.append((f.get_tensor(f"net.{k}.weight").astype(np.float64),
                           f.get_tensor(f"net.{k}.bias").astype(np.float64)))
    if not layers:
        raise ValueError(f"{path}: no net.0.weight tensor: not a TorchCFM MLP state dict")
    return meta, layers


def numpy_forward(meta, layers, t, x):
    act = fm_model.ACTIVATIONS[meta.get("activation", "selu")]
    h = np.concatenate([x, t[:, None]], axis=1)  # [x, t]
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i + 1 < len(layers):
            h = act(h)
    return h


def torch_forward(path, meta, layers, t, x):
    try:
        import torch
        from safetensors.torch import load_file
    except ImportError:
        return None, None
    name = meta.get("activation", "selu")
    modules = {
        "selu": lambda: torch.nn.SELU(), "silu": lambda: torch.nn.SiLU(),
        "elu": lambda: torch.nn.ELU(), "relu": lambda: torch.nn.ReLU(),
        "tanh": lambda: torch.nn.Tanh(), "softplus": lambda: torch.nn.Softplus(),
        "gelu": lambda: torch.nn.GELU(), "gelu-tanh": lambda: torch.nn.GELU(approximate="tanh"),
    }
    dim = layers[-1][0].shape[0]
    hidden = [w.shape[0] for w, _ in layers[:-1]]
    model, kind = None, None
    if name == "selu" and len(hidden) == 3 and len(set(hidden)) == 1:
        try:
            from torchcfm.models.models import MLP
            model, kind = MLP(dim, w=hidden[0], time_varying=True), "torchcfm.models.models.MLP"
        except ImportError:
            pass
    if model is None:
        widths = [dim + 1, *hidden, dim]
        mods = []
        for i in range(len(widths) - 1):
            mods.append(torch.nn.Linear(widths[i], widths[i + 1]))
            if i + 2 < len(widths):
                mods.append(modules[name]())
        class Seq(torch.nn.Module):  # the attribute `net`, as TorchCFM's MLP names it
            def __init__(self):
                super().__init__()
                self.net = torch.nn.Sequential(*mods)

            def forward(self, inp):
                return self.net(inp)

        model, kind = Seq(), "torch.nn.Sequential"
    model.load_state_dict(load_file(path), strict=True)
    model = model.double()
    with torch.no_grad():
        inp = torch.cat([torch.from_numpy(x), torch.from_numpy(t)[:, None]], dim=-1)
        return model(inp).numpy(), kind


def main(argv):
    if len(argv) != 2:
        print("usage: torchcfm_check.py STATE_DICT.safetensors POINTS.json")
        return 2
    meta, layers = read(argv[0])
    with open(argv[1]) as f:
        pts = json.load(f)
    x = np.asarray(pts["x"], dtype=np.float64)
    t = np.broadcast_to(np.asarray(pts["t"], dtype=np.float64), (x.shape[0],)).copy()
    v = numpy_forward(meta, layers, t, x)
    vt, kind = torch_forward(argv[0], meta, layers, t, x)
    print(json.dumps({"v": v.tolist(), "torch": None if vt is None else vt.tolist(),
                      "torch_module": kind}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
