"""TorchCFM I-CFM on the 6-D mixture: sigma 0.1, torchcfm MLP w=256 time_varying (3x256 SELU),
batch 256, Adam 1e-3, no EMA, single thread.
usage: torch_train.py SEED OUT.pt [--steps N] [--fresh] [--sigma S] [--ot] [--eps E] [--amsgrad]"""
import argparse, time, numpy as np, torch
from torchcfm.conditional_flow_matching import ConditionalFlowMatcher, ExactOptimalTransportConditionalFlowMatcher
from torchcfm.models.models import MLP
p = argparse.ArgumentParser()
p.add_argument("seed", type=int); p.add_argument("out")
p.add_argument("--steps", type=int, default=20000)
p.add_argument("--fresh", action="store_true", help="fresh mixture draws each step instead of the train file")
p.add_argument("--sigma", type=float, default=0.1)
p.add_argument("--ot", action="store_true")
p.add_argument("--data", default="data")
p.add_argument("--f64", action="store_true")
a = p.parse_args()
torch.set_num_threads(1)
torch.manual_seed(a.seed)
dt = torch.float64 if a.f64 else torch.float32
train = torch.tensor(np.loadtxt(f"{a.data}/train.csv", delimiter=","), dtype=dt)
mix = np.load(f"{a.data}/mixture.npz")
L = np.linalg.cholesky(mix["covs"])
nrng = np.random.default_rng(1000 + a.seed)
def fresh(n):
    z = nrng.choice(len(mix["w"]), size=n, p=mix["w"])
    e = nrng.normal(size=(n, train.shape[1]))
    return torch.tensor(mix["means"][z] + np.einsum("nij,nj->ni", L[z], e), dtype=dt)
FM = (ExactOptimalTransportConditionalFlowMatcher if a.ot else ConditionalFlowMatcher)(sigma=a.sigma)
model = MLP(dim=train.shape[1], w=256, time_varying=True).to(dt)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
B = 256
t0 = time.time()
losses = []
for k in range(a.steps):
    opt.zero_grad()
    x0 = torch.randn(B, train.shape[1], dtype=dt)
    x1 = fresh(B) if a.fresh else train[torch.randint(0, train.shape[0], (B,))]
    t, xt, ut = FM.sample_location_and_conditional_flow(x0, x1)
    vt = model(torch.cat([xt, t[:, None].to(dt)], dim=-1))
    loss = torch.mean((vt - ut) ** 2)
    loss.backward()
    opt.step()
    if k % 100 == 0: losses.append(loss.item())
sec = time.time() - t0
torch.save(model.state_dict(), a.out)
print(f"seed {a.seed} steps {a.steps} {sec:.1f}s final loss(mean last 20 logged) {np.mean(losses[-20:]):.4f}")
