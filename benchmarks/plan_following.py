"""Does the model act on the plan its inputs hold? Offline, on held-out MDPs of the prior.

With plenty of data the certainty-equivalent plan (value iteration on R̂, P̂, whose Q̂ the
model reads among its plan features) is nearly optimal, so a model that has learned to
use its inputs should match it there. This compares the normalised value V^pi / V* of the
model's greedy policy with that plan's and VI-LCB's, on fresh prior MDPs (seeds
3 x 10^7 + k, which neither training nor model selection used), for uniform and
epsilon-optimal (eps = 0.1) data. It is a diagnostic for the next training run, not a
selection criterion.

With ``--episodes 10 50 200`` (the sizes of `rlfm-edge bench offline`, in episodes) and
``--support``, it also weighs the offline method's options on fresh MDPs (``--seed-base``
apart from the diagnostic's): "rlfm ... all" lets the model pick any action, "rlfm ...
tried" only actions in the data, "rlfm ... bcq" only actions the data took at least 0.3
times as often as the state's most taken one (see rlfm_edge.agents.rlfm.offline_scores), and the table
counts the cells (MDP, data, size) where a method is within OFFLINE_MARGIN (0.02) of VI-LCB,
the offline target's criterion. ``--stationary`` adds the default rule with the first
step's policy at every step ("rlfm ... stationary", per_step=False), the way the method
worked before it read the model at each step's steps left.

    python benchmarks/plan_following.py --models rlfm_edge/models/default runs/x/model --record
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rlfm_edge.agents.rlfm import OFFLINE_SUPPORTS
from rlfm_edge.bench.report import OFFLINE_MARGIN, print_and_record
from rlfm_edge.inference.torch_backend import TorchEngine
from rlfm_edge.offline import extract_policy
from rlfm_edge.planning import policy_value, value_iteration
from rlfm_edge.training.data import epsilon_greedy
from rlfm_edge.training.prior import PriorConfig, sample_mdp
from rlfm_edge.training.rollout import rollout

EPSILON = 0.1


def behaviour_policy(Q_star: np.ndarray, behaviour: str) -> np.ndarray:
    """(H, S, A) action probabilities: uniform, or epsilon-greedy on the true Q*."""
    return epsilon_greedy(Q_star, 1.0 if behaviour == "uniform" else EPSILON)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["rlfm_edge/models/default"])
    parser.add_argument("--mdps", type=int, default=60)
    parser.add_argument("--episodes", type=int, nargs="+", default=[200],
                        help="episodes of data per MDP (one table block per value)")
    parser.add_argument("--support", action="store_true",
                        help="run each model on all actions, on the data's, and on discrete BCQ's "
                             "(support='all', 'tried', 'bcq')")
    parser.add_argument("--stationary", action="store_true",
                        help="also run each model's default rule with the first step's policy at "
                             "every step (per_step=False)")
    parser.add_argument("--s-max", type=int, default=80)
    parser.add_argument("--seed-base", type=int, default=3 * 10**7)
    parser.add_argument("--record", nargs="?", const="BENCHMARKS.md", default=None)
    args = parser.parse_args()
    methods = {}
    for m in args.models:
        name, engine = f"rlfm {Path(m).parent.name}/{Path(m).name}", TorchEngine(m)
        if args.support:
            for support in OFFLINE_SUPPORTS:
                methods[f"{name} {support}"] = {"method": "rlfm", "engine": engine, "support": support}
        else:
            methods[name] = {"method": "rlfm", "engine": engine}
        if args.stationary:
            methods[f"{name} stationary"] = {"method": "rlfm", "engine": engine, "per_step": False}
    methods |= {"vi (plan on R̂, P̂)": {"method": "vi"}, "vi_lcb": {"method": "vi_lcb"}}
    behaviours = ("uniform", f"eps_optimal:{EPSILON}")
    cells = [(b, n) for b in behaviours for n in args.episodes]
    values = {(cell, name): [] for cell in cells for name in methods}
    families = []
    prior = PriorConfig(s_max=args.s_max, h_max=100)
    for k in tqdm(range(args.mdps), desc="held-out MDPs", unit="mdp"):
        rng = np.random.default_rng(args.seed_base + k)
        mdp = sample_mdp(rng, prior)
        families.append(mdp.meta["family"])
        Q_star, V_star = value_iteration(mdp)
        best = max(float(mdp.mu0 @ V_star[0]), 1e-9)
        for b, episodes in cells:
            stats = rollout(mdp, behaviour_policy(Q_star, b.split(":")[0]), episodes, rng)
            for name, kw in methods.items():
                kw = dict(kw)
                pi = extract_policy(stats, mdp.n_states, mdp.n_actions, mdp.horizon, kw.pop("method"), **kw)
                values[(b, episodes), name].append(policy_value(mdp, pi) / best)
    sizes = ", ".join(map(str, args.episodes))
    lines = [f"{args.mdps} MDPs of the prior (S <= {args.s_max}, H <= 100), seeds {args.seed_base} + k, "
             f"{sizes} episodes of data each; mean V^pi / V* of the greedy policy.", "",
             "| data | episodes | family | MDPs | " + " | ".join(methods) + " |",
             "|---|---|---|---|" + "---|" * len(methods)]
    for cell in cells:
        for family in ["all", *sorted(set(families))]:
            rows = [i for i, f in enumerate(families) if family in ("all", f)]
            lines.append(f"| {cell[0]} | {cell[1]} | {family} | {len(rows)} | " + " | ".join(
                f"{np.mean([values[cell, name][i] for i in rows]):.3f}" for name in methods) + " |")
    lcb = np.concatenate([values[cell, "vi_lcb"] for cell in cells])
    lines += ["", f"Cells (MDP, data, episodes) where a method's V^pi / V* is at least VI-LCB's - "
              f"{OFFLINE_MARGIN}:", "",
              "| method | cells | share |", "|---|---|---|"]
    for name in methods:
        ok = np.concatenate([values[cell, name] for cell in cells]) >= lcb - OFFLINE_MARGIN
        lines.append(f"| {name} | {ok.sum()} / {ok.size} | {ok.mean():.1%} |")
    body = "\n".join(lines)
    title = "Plan following: offline, held-out prior MDPs"
    if args.episodes != [200] or args.support or args.stationary:
        title = f"Offline on held-out prior MDPs ({sizes} episodes, seeds {args.seed_base} + k)"
    print_and_record(body, args.record, title, __file__, sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
