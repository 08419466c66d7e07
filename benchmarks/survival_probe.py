"""Online regret on "survival" MDPs from a generator outside the training prior.

Every step alive pays 1, an absorbing failure state pays 0, and actions differ only in
their risk of failing (balancing a pole, not falling). The prior's own "survival" family
(training/prior.py) drifts along a line and starts in the middle; these MDPs move to
random nearby states and start anywhere, so they test whether the model learned the shape
in general rather than that family. Seeds 9 x 10^7 + k.

    python benchmarks/survival_probe.py --mdps 64 --compare runs/other/model --record
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from heldout_prior import agent_regrets

from rlfm_edge.bench.report import print_and_record
from rlfm_edge.bench.runner import run_jobs
from rlfm_edge.inference.base import DEFAULT_ANNEAL_VISITS
from rlfm_edge.mdp import TabularMDP

SEED_BASE = 9 * 10**7


def survival_mdp(rng: np.random.Generator) -> TabularMDP:
    """10-60 alive states, 2-4 actions, H 20-60; failure risk danger(s) x U^2 per action."""
    n, A, H = int(rng.integers(10, 61)), int(rng.integers(2, 5)), int(rng.integers(20, 61))
    P = np.zeros((n + 1, A, n + 1))
    R = np.zeros((n + 1, A))
    danger = rng.uniform(0.0, 0.4, n)
    for s in range(n):
        for a in range(A):
            fail = danger[s] * rng.random() ** 2
            b = int(rng.integers(1, 5))
            succ = np.clip(s + rng.integers(-3, 4, b), 0, n - 1)
            np.add.at(P[s, a], succ, (1 - fail) * rng.dirichlet(np.ones(b)))
            P[s, a, n] = fail
    R[:n] = 1.0
    P[n, :, n] = 1.0
    mu0 = np.eye(n + 1)[int(rng.integers(0, n))]
    return TabularMDP(P, R, mu0, H, name="survival-probe")


def regrets(k: int, episodes: int, agents: list[tuple[str, dict]]) -> dict[str, float]:
    """Survival MDP k: each agent's regret / (V* x episodes), all on run seed k."""
    return agent_regrets(survival_mdp(np.random.default_rng(SEED_BASE + k)), k, episodes, agents)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped one)")
    parser.add_argument("--compare", nargs="*", default=[], metavar="MODEL")
    parser.add_argument("--mdps", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--record", nargs="?", const="BENCHMARKS.md", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    agents = [(f"rlfm {m or 'default'}", {"model": m, "temperature": 0.3})
              for m in (args.model, *args.compare)]
    agents += [(name, {}) for name in ("ucbvi", "psrl", "random")]
    done = run_jobs(regrets, [(k, args.episodes, agents) for k in range(args.mdps)], args.workers,
                    True, "survival MDPs")
    names = list(done[0])
    lines = [f"{args.mdps} MDPs, seeds {SEED_BASE} + k, {args.episodes} episodes each, rlfm at T=0.3 "
             f"(anneal_visits {DEFAULT_ANNEAL_VISITS}); "
             "regret normalised by V*(mu0) x episodes; the last column counts the MDPs where the "
             "agent's regret is below UCB-VI's.", "",
             "| agent | mean | standard error | median | below UCB-VI |", "|---|---|---|---|---|"]
    ucbvi = np.array([d["ucbvi"] for d in done])
    for name in names:
        r = np.array([d[name] for d in done])
        lines.append(f"| {name} | {r.mean():.3f} | {r.std(ddof=1) / np.sqrt(r.size):.3f} | "
                     f"{np.median(r):.3f} | {(r < ucbvi).sum()} / {r.size} |")
    print_and_record("\n".join(lines), args.record, "Survival MDPs outside the prior", __file__,
                     sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
