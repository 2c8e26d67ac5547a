#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (committed; rerun after a format change).

Usage: python3 fuzz/make_seeds.py PATH/TO/fm

Names: `ok-*` must load, `bad-*` must be refused (checked by `cargo test --lib` in fuzz/),
anything else may go either way. Model files and checkpoints come from tiny runs of the `fm`
binary; CSV and .npy files are written here byte by byte.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def csv_seeds():
    s = {
        "ok-header": "x,y\n1,2\n3,4.5\n",
        "ok-no-header": "0.5,-1\n2e3,1e-300\n-0,7\n",
        "ok-comments-blank": "# made by hand\nx0,x1,x2\n\n1,2,3\n\n4,5,6\n",
        "ok-crlf-quoted": 'a,b\r\n"1", 2 \r\n3,4\r\n',
        "ok-one-column": "v\n1\n2\n3\n",
        "ok-wide": ",".join(f"c{i}" for i in range(9)) + "\n" + ",".join(str(i) for i in range(9)) + "\n",
        "bad-ragged": "x,y\n1,2\n3\n",
        "bad-nan": "x,y\n1,NaN\n",
        "bad-inf": "1,2\n3,inf\n",
        "bad-text-cell": "x,y\n1,2\n3,abc\n",
        "bad-header-only": "x,y\n",
        "bad-empty": "",
        "bad-whitespace": " \n\t\n",
        "bad-mixed-header": "x,1\n2,3\n",
        "bad-unterminated-quote": '"1,2\n3,4\n',
        "bad-huge-exponent": "1,2\n1e400,3\n",
        "bom": "\ufeffx,y\n1,2\n",
        "two-headers": "x,y\nx,y\n1,2\n",
    }
    for k, v in s.items():
        put("csv", k + ".csv", v)


def npy(descr, shape, payload, fortran=False, version=1, magic=b"\x93NUMPY"):
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr,
        "True" if fortran else "False",
        "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")",
    )
    pre = 10 if version == 1 else 12
    pad = (-(pre + len(header) + 1)) % 64
    header = header + " " * pad + "\n"
    head = magic + bytes([version, 0])
    head += struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return head + header.encode("latin1") + payload


def npy_seeds():
    f8 = lambda *xs: struct.pack("<%dd" % len(xs), *xs)
    f4 = lambda *xs: struct.pack("<%df" % len(xs), *xs)
    put("npy", "ok-f64.npy", npy("<f8", (3, 2), f8(1, 2, 3, 4, 5, 6)))
    put("npy", "ok-f32.npy", npy("<f4", (2, 2), f4(0.5, -1, 2, 3)))
    put("npy", "ok-f64-big-endian.npy", npy(">f8", (1, 2), struct.pack(">2d", 1.5, -2)))
    put("npy", "ok-fortran.npy", npy("<f8", (2, 3), f8(1, 2, 3, 4, 5, 6), fortran=True))
    put("npy", "ok-version2.npy", npy("<f8", (1, 1), f8(7), version=2))
    put("npy", "bad-1d.npy", npy("<f8", (3,), f8(1, 2, 3)))
    put("npy", "bad-3d.npy", npy("<f8", (1, 2, 2), f8(1, 2, 3, 4)))
    put("npy", "bad-int.npy", npy("<i8", (2, 1), struct.pack("<2q", 1, 2)))
    put("npy", "bad-truncated.npy", npy("<f8", (3, 2), f8(1, 2, 3, 4, 5, 6))[:-5])
    put("npy", "bad-nan.npy", npy("<f8", (1, 2), f8(1, float("nan"))))
    put("npy", "bad-inf-f32.npy", npy("<f4", (1, 2), f4(float("inf"), 1)))
    put("npy", "bad-no-rows.npy", npy("<f8", (0, 2), b""))
    put("npy", "bad-extra-bytes.npy", npy("<f8", (1, 1), f8(1, 2)))
    put("npy", "bad-magic.npy", npy("<f8", (1, 1), f8(1), magic=b"\x93NUMPZ"))
    put("npy", "bad-empty.npy", b"")


def safetensors_meta(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return b, json.loads(b[8 : 8 + n])["__metadata__"]


def model_seeds(fm):
    tmp = tempfile.mkdtemp()
    runs = {
        "ema": ["--target", "moons", "--steps", "20", "--batch", "16", "--hidden", "4"],
        "noema": ["--target", "moons", "--steps", "20", "--batch", "16", "--hidden", "3,3",
                  "--ema", "0", "--activation", "tanh", "--time-features", "fourier:2"],
        "score": ["--target", "8gaussians", "--matcher", "affine", "--scheduler", "cosine",
                  "--objective", "score", "--steps", "10", "--batch", "8", "--hidden", "4",
                  "--optimizer", "adamw", "--max-grad-norm", "1"],
        "sbcfm-1d": ["--target", "gaussian", "--matcher", "sbcfm", "--steps", "10", "--batch", "8",
                     "--hidden", "2", "--activation", "gelu"],
    }
    try:
        for name, args in runs.items():
            out = os.path.join(tmp, name + ".safetensors")
            subprocess.run([fm, "train", *args, "--checkpoint-every", "5", "--out", out, "--quiet"],
                           check=True, stdout=subprocess.DEVNULL)
            model, config = safetensors_meta(out)
            ckpt, state = safetensors_meta(out + ".ckpt")
            put("model_file", f"ok-{name}.safetensors", model)
            put("checkpoint", f"ok-{name}.ckpt", ckpt)
            put("model_config", f"ok-{name}.json", config["fm_config"])
            put("checkpoint_state", f"ok-{name}.json", state["fm_checkpoint"])
            if name == "ema":
                put("model_file", "bad-truncated.safetensors", model[: len(model) // 2])
                put("model_file", "bad-future-version.safetensors",
                    model.replace(b'\\"format_version\\":2', b'\\"format_version\\":9', 1))
                put("model_file", "bad-checkpoint-not-model.safetensors", ckpt)
                put("checkpoint", "bad-truncated.ckpt", ckpt[: len(ckpt) - 7])
                put("checkpoint", "bad-future-version.ckpt",
                    ckpt.replace(b'\\"format_version\\":2', b'\\"format_version\\":9', 1))
                put("checkpoint", "bad-model-not-checkpoint.ckpt", model)
                c = config["fm_config"]
                put("model_config", "bad-drop-tensor.json", c + "\0\x00\x01")
                put("model_config", "bad-f64-weights.json", c + "\0\x03\x02")
                put("model_config", "bad-nan-weight.json", c + "\0\x04\x00")
                put("model_config", "bad-wrong-shape.json", c + "\0\x02\x03")
                put("model_config", "bad-future-version.json",
                    c.replace('"format_version":1', '"format_version":2', 1))
                s = state["fm_checkpoint"]
                put("checkpoint_state", "params-short.json", s + "\0\x03")
                put("checkpoint_state", "params-long.json", s + "\0\x02")
                put("checkpoint_state", "bad-params-f64.json", s + "\0\x04")
                put("checkpoint_state", "bad-future-version.json",
                    s.replace('"format_version":1', '"format_version":2', 1))
                put("checkpoint_state", "bad-not-json.json", s[: len(s) // 2])
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for t in ["csv", "npy", "model_file", "checkpoint", "model_config", "checkpoint_state"]:
        shutil.rmtree(os.path.join(ROOT, t), ignore_errors=True)
    csv_seeds()
    npy_seeds()
    model_seeds(sys.argv[1])
