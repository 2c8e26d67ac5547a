"""Evaluates trained 6-D models with ONE sampler and ONE W2 for both implementations.
A model is a torch state dict (.pt) or an fm model (.safetensors, raw weights unless --ema).
Sampler: RK4, 100 steps, in float64 (weights cast to f64), source N(0, I) from numpy seeds 0..R-1.
W2: POT exact emd2 (squared Euclidean), sqrt, n generated vs n test points (test subsample drawn
independently per draw). Also: component weights (argmax responsibility) and mean true log-density.
usage: evaluate.py MODEL... [--n 2000] [--draws 5] [--floor]"""
import argparse, json, struct, numpy as np, torch, ot
p = argparse.ArgumentParser()
p.add_argument("models", nargs="*"); p.add_argument("--n", type=int, default=2000)
p.add_argument("--draws", type=int, default=5); p.add_argument("--floor", action="store_true")
p.add_argument("--ema", action="store_true"); p.add_argument("--data", default="data")
p.add_argument("--steps", type=int, default=100)
a = p.parse_args()
torch.set_num_threads(1)
train = np.loadtxt(f"{a.data}/train.csv", delimiter=","); test = np.loadtxt(f"{a.data}/test.csv", delimiter=",")
mix = np.load(f"{a.data}/mixture.npz"); W, M, C = mix["w"], mix["means"], mix["covs"]
D = train.shape[1]; K = len(W)
Ci = np.linalg.inv(C); logdet = np.linalg.slogdet(C)[1]
def comp_logp(x):
    d = x[:, None, :] - M[None]
    q = np.einsum("nki,kij,nkj->nk", d, Ci, d)
    return np.log(W)[None] - 0.5 * (q + logdet[None] + D * np.log(2 * np.pi))
def stats(x):
    lp = comp_logp(x)
    wts = np.bincount(lp.argmax(1), minlength=K) / len(x)
    ll = np.logaddexp.reduce(lp, axis=1).mean()
    return wts, ll
def w2(x, y):
    return float(np.sqrt(ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), ot.dist(x, y), numItermax=10**7)))
def read_safetensors(path, prefix):
    b = open(path, "rb").read(); h = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + h]); base = 8 + h; out = {}
    for k, v in hdr.items():
        if k == "__metadata__" or not k.startswith(prefix): continue
        name = k[len(prefix):]
        if prefix == "" and k.startswith("ema."): continue
        s, e = v["data_offsets"]; dt = {"F32": np.float32, "F64": np.float64}[v["dtype"]]
        out[name] = torch.tensor(np.frombuffer(b[base + s:base + e], dtype=dt).reshape(v["shape"]).copy())
    return out
def load(path):
    if path.endswith(".pt"):
        sd = torch.load(path); lin = [sd[k] for k in sorted(sd) if k.endswith("weight")]
        ws = [(sd[f"net.{i}.weight"], sd[f"net.{i}.bias"]) for i in sorted({int(k.split('.')[1]) for k in sd})]
    else:
        sd = read_safetensors(path, "ema." if a.ema else "")
        ws = [(sd[f"layers.{i}.weight"], sd[f"layers.{i}.bias"]) for i in range(len(sd) // 2)]
    ws = [(w.double(), b.double()) for w, b in ws]
    def f(t, x):
        h = torch.cat([x, torch.full((x.shape[0], 1), t, dtype=torch.float64)], 1)
        for i, (w, b) in enumerate(ws):
            h = h @ w.T + b
            if i < len(ws) - 1: h = torch.selu(h)
        return h
    return f
def sample(f, x0, steps):
    x = torch.tensor(x0); h = 1.0 / steps
    with torch.no_grad():
        for i in range(steps):
            t = i * h
            k1 = f(t, x); k2 = f(t + h / 2, x + h / 2 * k1); k3 = f(t + h / 2, x + h / 2 * k2); k4 = f(t + h, x + h * k3)
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x.numpy()
res = {}
if a.floor:
    fl = []
    for r in range(a.draws):
        g = np.random.default_rng(500 + r)
        fl.append(w2(train[g.choice(len(train), a.n, replace=False)], test[g.choice(len(test), a.n, replace=False)]))
    wts, ll = stats(test)
    res["floor"] = {"w2": float(np.mean(fl)), "w2_sd": float(np.std(fl)), "test_weights": wts.round(4).tolist(), "test_true_ll": float(ll),
                    "true_weights": W.tolist()}
    print(json.dumps(res["floor"]))
for m in a.models:
    f = load(m); w2s = []; wts_all = []; lls = []
    for r in range(a.draws):
        x0 = np.random.default_rng(r).normal(size=(a.n, D))
        x = sample(f, x0, a.steps)
        g = np.random.default_rng(900 + r)
        w2s.append(w2(x, test[g.choice(len(test), a.n, replace=False)]))
        wts, ll = stats(x); wts_all.append(wts); lls.append(ll)
    wts = np.mean(wts_all, 0)
    r = {"model": m, "w2": float(np.mean(w2s)), "w2_sd_draws": float(np.std(w2s)), "weights": wts.round(4).tolist(),
         "max_weight_err_pp": float(100 * np.abs(wts - W).max()), "true_ll": float(np.mean(lls))}
    print(json.dumps(r), flush=True)
