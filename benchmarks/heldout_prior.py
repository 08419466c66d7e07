"""Online regret on held-out MDPs of the training prior: the model against UCB-VI and PSRL.

These MDPs come from the same families as the training data but from seeds (10^7 + k)
that no dataset used. This is where the sampling temperature of the `rlfm` agent was
chosen (never on the public benchmarks).

    python benchmarks/heldout_prior.py --mdps 16 --episodes 100 --s-max 30 --record
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rlfm_edge.bench import run_online
from rlfm_edge.bench.report import record_section
from rlfm_edge.inference.torch_backend import TorchEngine
from rlfm_edge.planning import optimal_value
from training.prior import PriorConfig, sample_mdp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped one)")
    parser.add_argument("--mdps", type=int, default=16)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--s-max", type=int, default=30)
    parser.add_argument("--h-max", type=int, default=100)
    parser.add_argument("--temperatures", default="1.0,0.5,0.3")
    parser.add_argument("--record", nargs="?", const="BENCHMARKS.md", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    engine = TorchEngine(args.model)
    agents = [("psrl", {}), ("ucbvi", {})] + [
        (f"rlfm T={t}", {"engine": engine, "temperature": float(t)})
        for t in args.temperatures.split(",")]
    regret = {name: [] for name, _ in agents}
    prior = PriorConfig(s_max=args.s_max, h_max=args.h_max)
    for k in tqdm(range(args.mdps), desc="held-out MDPs", unit="mdp"):
        mdp = sample_mdp(np.random.default_rng(10**7 + k), prior)
        best = optimal_value(mdp) * args.episodes
        for name, kw in agents:
            returns = run_online(mdp, name.split()[0], args.episodes, seed=k, **kw)
            regret[name].append((best - returns.sum()) / max(best, 1e-9))
    lines = [f"{args.mdps} MDPs of the prior (S <= {args.s_max}, H <= {args.h_max}), seeds 10^7 + k, "
             f"{args.episodes} episodes each; regret normalised by V*(mu0) x episodes.", "",
             "| agent | normalised regret: mean | median |", "|---|---|---|"]
    lines += [f"| {name} | {np.mean(r):.3f} | {np.median(r):.3f} |" for name, r in regret.items()]
    body = "\n".join(lines)
    print(body)
    if args.record:
        command = "python benchmarks/heldout_prior.py " + shlex.join(sys.argv[1:])
        record_section(Path(args.record), f"Held-out prior MDPs (S <= {args.s_max})", command, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
