"""Python reference posteriors for `cargo xtask reproduce --task sbi` (issue 17).

Trains lampe's FMPE or sbi's NPE (neural spline flow) on the simulations that `fm simulate`
wrote, draws posterior samples for sbibm's observations 1-3, scores each against the reference
posterior with OUR `fm c2st` (so every method is measured by the same metric), and writes one
results JSON.

    python scripts/sbi/baseline.py --method lampe --task two_moons --budget 10000 \
        --fm target/reproduce/sbi/fm

Files (made with `fm` if missing, the same commands and seeds as the xtask):

    DATA/<task>/train-<budget>-theta.csv   fm simulate --task T --n <budget> --seed 1
    DATA/<task>/train-<budget>-x.csv
    DATA/<task>/reference-<k>.csv          fm simulate --task T --reference --observation k
                                              --n 10000 --seed 100+k
    DATA/<task>/obs-<k>.json               that command's JSON line (it holds x_obs)

lampe FMPE as the issue specifies: MLP 4 x 128 ELU, Adam lr 1e-3, batch 256, 20,000 steps,
theta and x z-scored with the training set's mean and sd (as `fm train --context` does by
default). sbi: SNPE with density_estimator="nsf" and sbi's defaults (batch 50, lr 5e-4, 10%
validation split, early stopping after 20 epochs without improvement; sbi z-scores itself).
Everything runs on one thread.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
torch.set_num_interop_threads(1)

ROOT = Path(__file__).resolve().parents[2]
TRAIN_SEED = 1
REFERENCE_N = 10_000

# sbibm's priors, for sbi's support checks (same definitions as crates/fm-sbi).
PRIORS = {
    "two_moons": ("uniform", 2, -1.0, 1.0),
    "slcp": ("uniform", 5, -3.0, 3.0),
    "gaussian_mixture": ("uniform", 2, -10.0, 10.0),
    "gaussian_linear": ("normal", 10, 0.0, 0.1),  # variance 0.1
}


def run_fm(fm, args):
    """Runs `fm ARGS --json` and returns its JSON last line."""
    out = subprocess.run(
        [str(fm), *args, "--json"], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def read_csv(path):
    with open(path) as f:
        first = f.readline()
    skip = 1 if first and not _is_number(first.split(",")[0]) else 0
    a = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)
    return a


def _is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def write_csv(path, a):
    tmp = Path(str(path) + ".tmp")
    header = ",".join(f"x{i}" for i in range(a.shape[1]))
    np.savetxt(tmp, a, delimiter=",", header=header, comments="", fmt="%.17g")
    os.replace(tmp, path)


def ensure_data(fm, data, task, budget, observations):
    d = data / task
    d.mkdir(parents=True, exist_ok=True)
    th, x = d / f"train-{budget}-theta.csv", d / f"train-{budget}-x.csv"
    if not (th.exists() and x.exists()):
        run_fm(fm, ["simulate", "--task", task, "--n", str(budget), "--seed", str(TRAIN_SEED),
                    "--out-theta", str(th), "--out-x", str(x), "--force"])
    obs = {}
    for k in observations:
        ref, meta = d / f"reference-{k}.csv", d / f"obs-{k}.json"
        if not (ref.exists() and meta.exists()):
            j = run_fm(fm, ["simulate", "--task", task, "--reference", "--observation", str(k),
                            "--n", str(REFERENCE_N), "--seed", str(100 + k), "--out", str(ref),
                            "--force"])
            tmp = Path(str(meta) + ".tmp")
            tmp.write_text(json.dumps(j) + "\n")
            os.replace(tmp, meta)
        obs[k] = (ref, np.asarray(json.loads(meta.read_text())["x_obs"], dtype=np.float64))
    return read_csv(th), read_csv(x), obs


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system().lower()}, 1 torch thread"


def train_lampe(theta, x, args):
    import lampe
    import torch.nn as nn
    from lampe.inference import FMPE, FMPELoss

    torch.manual_seed(args.seed)
    th = torch.as_tensor(theta, dtype=torch.float32)
    xx = torch.as_tensor(x, dtype=torch.float32)
    if args.zscore:
        th_m, th_s = th.mean(0), th.std(0).clamp_min(1e-12)
        x_m, x_s = xx.mean(0), xx.std(0).clamp_min(1e-12)
    else:
        th_m, th_s = torch.zeros(th.shape[1]), torch.ones(th.shape[1])
        x_m, x_s = torch.zeros(xx.shape[1]), torch.ones(xx.shape[1])
    th_z, x_z = (th - th_m) / th_s, (xx - x_m) / x_s
    est = FMPE(th.shape[1], xx.shape[1], hidden_features=[args.hidden] * args.layers,
               activation=nn.ELU)
    loss_fn = FMPELoss(est)
    opt = torch.optim.Adam(est.parameters(), lr=args.lr)
    n = th.shape[0]
    g = torch.Generator().manual_seed(args.seed)
    est.train()
    # Minibatches drawn by shuffled epochs (as a DataLoader with shuffle=True would).
    perm, pos = torch.randperm(n, generator=g), 0
    losses = []
    start, cpu0 = time.perf_counter(), time.process_time()
    for step in range(args.steps):
        if pos + args.batch > n:
            perm, pos = torch.randperm(n, generator=g), 0
        idx = perm[pos:pos + args.batch]
        pos += args.batch
        loss = loss_fn(th_z[idx], x_z[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            losses.append(float(loss.detach()))
    train_s, train_cpu = time.perf_counter() - start, time.process_time() - cpu0
    est.eval()

    def sample(x_obs, n_samples):
        xo = (torch.as_tensor(x_obs, dtype=torch.float32) - x_m) / x_s
        with torch.no_grad():
            z = est.flow(xo).sample((n_samples,))
        return (z * th_s + th_m).double().numpy()

    info = {
        "library": f"lampe {lampe.__version__}" if hasattr(lampe, "__version__") else "lampe",
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "hidden": [args.hidden] * args.layers,
        "activation": "elu",
        "zscore": args.zscore,
        "train_seconds": train_s,
        "train_seconds_per_step": train_s / max(args.steps, 1),
        "train_cpu_seconds": train_cpu,
        "train_cpu_seconds_per_step": train_cpu / max(args.steps, 1),
        "final_loss": losses[-1] if losses else None,
        "sampler": "zuko FreeFormJacobianTransform (adaptive Dopri5, zuko's default tolerances)",
    }
    return sample, info


def train_sbi(theta, x, task, args):
    import sbi
    from sbi.inference import SNPE
    from sbi.utils import BoxUniform

    torch.manual_seed(args.seed)
    kind, d, a, b = PRIORS[task]
    if kind == "uniform":
        prior = BoxUniform(low=a * torch.ones(d), high=b * torch.ones(d))
    else:
        prior = torch.distributions.MultivariateNormal(
            a * torch.ones(d), covariance_matrix=b * torch.eye(d)
        )
    # sbi logs to TensorBoard under ./sbi-logs by default; keep that out of the work tree.
    import tempfile

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=tempfile.mkdtemp(prefix="sbi-logs-"))
    inference = SNPE(prior=prior, density_estimator="nsf", device="cpu", show_progress_bars=False,
                     summary_writer=writer)
    th = torch.as_tensor(theta, dtype=torch.float32)
    xx = torch.as_tensor(x, dtype=torch.float32)
    start, cpu0 = time.perf_counter(), time.process_time()
    de = inference.append_simulations(th, xx).train()
    train_s, train_cpu = time.perf_counter() - start, time.process_time() - cpu0
    epochs = inference._summary.get("epochs_trained", [None])[-1] if hasattr(
        inference, "_summary") else None
    posterior = inference.build_posterior(de)

    def sample(x_obs, n_samples):
        xo = torch.as_tensor(x_obs, dtype=torch.float32)
        with torch.no_grad():
            s = posterior.sample((n_samples,), x=xo, show_progress_bars=False)
        return s.double().numpy()

    info = {
        "library": f"sbi {sbi.__version__}",
        "density_estimator": "nsf (sbi defaults)",
        "training": "sbi defaults: batch 50, lr 5e-4, 10% validation, stop after 20 epochs "
                    "without improvement",
        "epochs": epochs,
        "train_seconds": train_s,
        "train_cpu_seconds": train_cpu,
        "zscore": "sbi default (independent)",
        "sampler": "sbi DirectPosterior (rejection to the prior support)",
    }
    return sample, info


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", choices=["lampe", "sbi"], required=True)
    p.add_argument("--task", required=True, choices=sorted(PRIORS))
    p.add_argument("--budget", type=int, default=10_000)
    p.add_argument("--fm", type=Path, default=ROOT / "target/reproduce/sbi/fm",
                   help="the fm binary (for simulate and c2st)")
    p.add_argument("--data", type=Path, default=ROOT / "target/reproduce/sbi/data")
    p.add_argument("--observations", default="1,2,3")
    p.add_argument("--n-samples", type=int, default=10_000)
    p.add_argument("--steps", type=int, default=20_000, help="lampe training steps")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--no-zscore", dest="zscore", action="store_false")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-c2st", action="store_true",
                   help="time training and sampling only (cargo xtask bench-sbi)")
    p.add_argument("--results", type=Path,
                   help="default: scripts/sbi/results/<task>-<budget>-<method>.json")
    p.add_argument("--samples-dir", type=Path, default=ROOT / "target/reproduce/sbi/baselines")
    args = p.parse_args()
    if args.budget < 1 or args.steps < 1 or args.n_samples < 1:
        p.error("--budget, --steps and --n-samples must be at least 1")
    observations = [int(k) for k in args.observations.split(",")]
    results = args.results or ROOT / f"scripts/sbi/results/{args.task}-{args.budget}-{args.method}.json"

    theta, x, obs = ensure_data(args.fm, args.data, args.task, args.budget, observations)
    print(f"{args.method} on {args.task}: {theta.shape[0]} simulations, theta {theta.shape[1]}-D, "
          f"x {x.shape[1]}-D", flush=True)
    if args.method == "lampe":
        sample, info = train_lampe(theta, x, args)
        print(f"  trained {args.steps} steps in {info['train_seconds']:.1f} s "
              f"({1e3 * info['train_seconds_per_step']:.3f} ms/step)", flush=True)
    else:
        sample, info = train_sbi(theta, x, args.task, args)
        print(f"  trained in {info['train_seconds']:.1f} s ({info['epochs']} epochs)", flush=True)

    out_dir = args.samples_dir / args.task
    out_dir.mkdir(parents=True, exist_ok=True)
    per_obs = []
    for k in observations:
        ref, x_obs = obs[k]
        torch.manual_seed(1000 + k)
        start, cpu0 = time.perf_counter(), time.process_time()
        s = sample(x_obs, args.n_samples)
        secs, cpu = time.perf_counter() - start, time.process_time() - cpu0
        f = out_dir / f"{args.method}-{args.budget}-obs{k}.csv"
        write_csv(f, s)
        row = {"observation": k, "sample_seconds": secs, "sample_cpu_seconds": cpu, "samples": str(f.relative_to(ROOT))
               if f.is_relative_to(ROOT) else str(f)}
        if not args.skip_c2st:
            c = run_fm(args.fm, ["c2st", "--a", str(ref), "--b", str(f)])
            row["c2st"] = c["c2st"]
            row["c2st_folds"] = c["fold_accuracies"]
        per_obs.append(row)
        print(f"  observation {k}: {args.n_samples} samples in {secs:.2f} s"
              + (f", C2ST {row['c2st']:.4f}" if "c2st" in row else ""), flush=True)

    c2sts = [r["c2st"] for r in per_obs if "c2st" in r]
    doc = {
        "task": args.task,
        "budget": args.budget,
        "method": args.method,
        "measured": True,
        "machine": machine(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            **_versions(args.method),
        },
        "command": "python scripts/sbi/baseline.py " + " ".join(sys.argv[1:]),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "n_samples": args.n_samples,
        "seed": args.seed,
        **info,
        "observations": per_obs,
        "c2st_mean": sum(c2sts) / len(c2sts) if c2sts else None,
        "sample_seconds_mean": sum(r["sample_seconds"] for r in per_obs) / len(per_obs),
        "sample_cpu_seconds_mean": sum(r["sample_cpu_seconds"] for r in per_obs) / len(per_obs),
        "timing": "wall seconds (time.perf_counter) and CPU seconds of this process "
                  "(time.process_time; one torch thread), training loop and sampling only",
        "load_average": list(os.getloadavg()),
        "metric": "fm c2st (sbibm-style: z-scored by the reference, MLP classifier, 5 folds) "
                  "against fm simulate --reference samples",
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(results) + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, results)
    if c2sts:
        print(f"  mean C2ST {doc['c2st_mean']:.4f}")
    print(f"wrote {results}")


def _versions(method):
    out = {}
    for name in (["lampe", "zuko"] if method == "lampe" else ["sbi", "nflows", "pyknos"]):
        try:
            from importlib.metadata import version

            out[name] = version(name)
        except Exception:  # noqa: BLE001 - a missing package is reported, not fatal
            out[name] = "unknown"
    return out


if __name__ == "__main__":
    main()
