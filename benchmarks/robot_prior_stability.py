"""How many samples per bin make the robot family's training target stable.

The robot prior family (training/robot_prior.py) estimates the tabular MDP that a system's bins
induce from ``samples_per_bin`` continuous states per bin. The training target is
softmax(scaled Q*_0 / tau) of that MDP. This measures, on random systems of the family, the
total-variation distance between the targets estimated from n samples per bin and from a
reference of 4096, averaged over the states the MDP's start distribution reaches in H steps.

    python benchmarks/robot_prior_stability.py --mdps 30 --samples 64,256 --record
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from rlfm_edge.bench.report import print_and_record
from rlfm_edge.planning import value_iteration
from training.data import scaled_q
from training.robot_prior import BUILDERS, SYSTEMS, _bins, _edges, _random_rollouts, induced_mdp

REFERENCE = 4096
TAU = 0.05  # the training configs' target temperature


def target(mdp) -> np.ndarray:
    Q, _ = value_iteration(mdp)
    z = scaled_q(Q[0]) / TAU
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def reached(mdp) -> np.ndarray:
    """States with positive probability of a visit within H steps under uniform actions."""
    d, seen = mdp.mu0.copy(), mdp.mu0 > 0
    P = mdp.P.mean(axis=1)
    for _ in range(mdp.horizon):
        d = d @ P
        seen |= d > 1e-9
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mdps", type=int, default=30)
    parser.add_argument("--samples", default="64,256", help="samples per bin to compare")
    parser.add_argument("--s-max", type=int, default=250)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--record", nargs="?", const="BENCHMARKS.md", default=None)
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.samples.split(",")]
    rows = {n: [] for n in sizes}
    for k in range(args.mdps):
        rng = np.random.default_rng(args.seed + k)
        system = BUILDERS[SYSTEMS[rng.integers(len(SYSTEMS))]](rng, int(rng.integers(2, 6)))
        obs = system.observe(_random_rollouts(system, rng))
        edges = _edges(rng, obs, _bins(rng, obs.shape[1], args.s_max))
        noise, horizon = np.zeros(obs.shape[1]), int(rng.integers(20, 101))
        ref_mdp = induced_mdp(system, edges, noise, horizon, np.random.default_rng(1), REFERENCE)
        ref, where = target(ref_mdp), reached(ref_mdp)
        for n in sizes:
            p = target(induced_mdp(system, edges, noise, horizon, np.random.default_rng(2), n))
            rows[n].append(0.5 * np.abs(p - ref).sum(axis=1)[where].mean())
    body = (f"{args.mdps} random systems of the robot family (S <= {args.s_max}), seeds "
            f"{args.seed} + k: total-variation distance between the training target estimated "
            f"from n samples per bin and from {REFERENCE}, over the states reachable in H steps.\n\n"
            "| samples per bin | mean | median | 90th percentile |\n|---|---|---|---|\n")
    for n in sizes:
        v = np.array(rows[n])
        body += f"| {n} | {v.mean():.3f} | {np.median(v):.3f} | {np.percentile(v, 90):.3f} |\n"
    print_and_record(body, args.record, "Training: the robot prior family's target stability",
                     __file__, argv if argv is not None else sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
