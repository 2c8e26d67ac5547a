"""Seeded 6-D Gaussian mixture: 8 components, unequal weights and covariances.
Writes train.csv / test.csv (no header) and mixture.npz (weights, means, covs) to the given dir."""
import sys, numpy as np
out = sys.argv[1] if len(sys.argv) > 1 else "data"
import os; os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(20)
D, K = 6, 8
w = np.array([0.26, 0.19, 0.15, 0.12, 0.10, 0.08, 0.06, 0.04])
means = rng.uniform(-4.0, 4.0, size=(K, D))
covs = []
for k in range(K):
    q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    s = rng.uniform(0.15, 0.9, size=D)  # per-axis std
    covs.append(q @ np.diag(s**2) @ q.T)
covs = np.array(covs)
def draw(n, r):
    z = r.choice(K, size=n, p=w)
    x = np.empty((n, D))
    for k in range(K):
        m = z == k
        L = np.linalg.cholesky(covs[k])
        x[m] = means[k] + r.normal(size=(m.sum(), D)) @ L.T
    return x, z
ntr, nte = int(os.environ.get("NTRAIN", 10000)), int(os.environ.get("NTEST", 10000))
xtr, ztr = draw(ntr, np.random.default_rng(1))
xte, zte = draw(nte, np.random.default_rng(2))
np.savetxt(f"{out}/train.csv", xtr, delimiter=",", fmt="%.17g")
np.savetxt(f"{out}/test.csv", xte, delimiter=",", fmt="%.17g")
np.savez(f"{out}/mixture.npz", w=w, means=means, covs=covs)
print("train weights", np.bincount(ztr, minlength=K) / ntr)
print("min pairwise mean distance", min(np.linalg.norm(means[i]-means[j]) for i in range(K) for j in range(i)))
