"""The zuko side of `cargo xtask bench-nflows` (issue 16).

Trains zuko's RealNVP and CNF by maximum likelihood on the same train CSV the xtask gives
`fm train`, one thread, and prints one JSON line per model:

* the median wall time and the median CPU time of a training step (each step timed alone),
  and the whole loop's wall/CPU time divided by the steps;
* the mean test log-likelihood after the same number of steps.

Models (matching `fm train --model coupling --layers 8 --hidden 64,64 --activation relu` and
`fm train --model cnf-mle --hidden 64,64 --activation elu --cnf-solver rk4 --solver-steps K
--eval-steps E`):

* ``realnvp``: ``zuko.flows.RealNVP(2, transforms=8, hidden_features=(64, 64))`` (affine
  couplings, ReLU hypernetworks; zuko's defaults otherwise).
* ``cnf-rk4``: ``zuko.flows.CNF(2, hidden_features=(64, 64), exact=True)`` (ELU field with
  zuko's 3-frequency time embedding, exact trace) with zuko's ODE integrator replaced by a
  fixed-step RK4 whose steps autograd records (discretise-then-optimise, K steps for training,
  E for the test likelihood) -- the scheme ours uses, so the step counts are like for like.
* ``cnf-adaptive``: the same CNF with zuko's own integrator (adaptive Dormand-Prince,
  atol 1e-6, rtol 1e-5, gradients by the adaptive checkpoint adjoint), zuko's default.

Usage: python zuko_bench.py --train train.csv --test test.csv --steps N --batch B
       [--models realnvp,cnf-rk4,cnf-adaptive] [--solver-steps K] [--eval-steps E] [--seed S]
"""

import argparse
import json
import statistics
import time

import numpy as np
import torch
import zuko
import zuko.transforms as zt


def rk4(steps):
    """A fixed-step RK4 with zuko's `odeint` signature (states may be tuples)."""

    def odeint(f, x, t0, t1, phi=(), atol=None, rtol=None):
        tup = isinstance(x, (tuple, list))
        xs = tuple(x) if tup else (x,)
        t0 = torch.as_tensor(t0, dtype=xs[0].dtype)
        t1 = torch.as_tensor(t1, dtype=xs[0].dtype)
        h = (t1 - t0) / steps

        def g(t, s):
            out = f(t, *s) if tup else f(t, s[0])
            return tuple(out) if tup else (out,)

        t = t0
        for _ in range(steps):
            k1 = g(t, xs)
            k2 = g(t + h / 2, tuple(a + h / 2 * b for a, b in zip(xs, k1)))
            k3 = g(t + h / 2, tuple(a + h / 2 * b for a, b in zip(xs, k2)))
            k4 = g(t + h, tuple(a + h * b for a, b in zip(xs, k3)))
            xs = tuple(
                a + h / 6 * (b1 + 2 * b2 + 2 * b3 + b4)
                for a, b1, b2, b3, b4 in zip(xs, k1, k2, k3, k4)
            )
            t = t + h
        return xs if tup else xs[0]

    return odeint


ADAPTIVE = zt.odeint


def load(path):
    return torch.from_numpy(np.loadtxt(path, delimiter=",", ndmin=2, comments="#")).float()


def build(name, dim):
    if name == "realnvp":
        return zuko.flows.RealNVP(dim, transforms=8, hidden_features=(64, 64))
    return zuko.flows.CNF(dim, hidden_features=(64, 64), exact=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--models", default="realnvp,cnf-rk4,cnf-adaptive")
    p.add_argument("--solver-steps", type=int, default=8)
    p.add_argument("--eval-steps", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    torch.set_num_threads(1)
    train, test = load(a.train), load(a.test)
    dim = train.shape[1]
    for name in a.models.split(","):
        torch.manual_seed(a.seed)
        gen = torch.Generator().manual_seed(a.seed)
        flow = build(name, dim)
        opt = torch.optim.Adam(flow.parameters(), lr=a.lr)
        zt.odeint = rk4(a.solver_steps) if name == "cnf-rk4" else ADAPTIVE
        walls, cpus = [], []
        loop_w, loop_c = time.perf_counter(), time.process_time()
        loss = float("nan")
        for _ in range(a.steps):
            w0, c0 = time.perf_counter(), time.process_time()
            idx = torch.randint(0, train.shape[0], (a.batch,), generator=gen)
            nll = -flow().log_prob(train[idx]).mean()
            opt.zero_grad()
            nll.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
            opt.step()
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
            loss = nll.item()
        loop_w = time.perf_counter() - loop_w
        loop_c = time.process_time() - loop_c
        zt.odeint = rk4(a.eval_steps) if name == "cnf-rk4" else ADAPTIVE
        e0 = time.perf_counter()
        with torch.no_grad():
            ll = flow().log_prob(test).mean().item()
        eval_s = time.perf_counter() - e0
        print(
            json.dumps(
                {
                    "model": name,
                    "torch": torch.__version__,
                    "zuko": zuko.__version__,
                    "threads": torch.get_num_threads(),
                    "steps": a.steps,
                    "batch": a.batch,
                    "median_step_wall": statistics.median(walls),
                    "median_step_cpu": statistics.median(cpus),
                    "loop_wall_per_step": loop_w / a.steps,
                    "loop_cpu_per_step": loop_c / a.steps,
                    "final_loss": loss,
                    "test_ll": ll,
                    "test_n": test.shape[0],
                    "eval_wall": eval_s,
                    "params": sum(q.numel() for q in flow.parameters()),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
