"""Online regret on held-out MDPs of the training prior: the model against UCB-VI and PSRL.

These MDPs come from the same families as the training data but from seeds (10^7 + k)
that no dataset used. This is where the sampling temperature of the `rlfm` agent was
chosen (never on the public benchmarks). A second table splits the regret by prior family,
which says where the prior or the model needs work without looking at a public benchmark.

    python benchmarks/heldout_prior.py --mdps 16 --episodes 100 --s-max 30 --record
    python benchmarks/heldout_prior.py --s-max 80 --temperatures 0.3 --compare runs/x/model

With ``--compare``, other models run on the same MDPs and seeds, and a third table gives
each one's regret minus the main model's with its standard error over MDPs (paired), which
says whether a difference between two candidates is larger than the split's noise.
``--compare-engines`` does the same for the main model on other backends and precisions
(``onnxruntime:int8``: what INT8 costs in regret, against torch fp32).
"""

from __future__ import annotations

import argparse
import sys
from functools import cache

import numpy as np
import torch

from rlfm_edge.bench import run_online
from rlfm_edge.bench.metrics import mean_se
from rlfm_edge.bench.report import print_and_record
from rlfm_edge.bench.runner import run_jobs
from rlfm_edge.inference import PolicyEngine, make_engine
from rlfm_edge.planning import optimal_value
from rlfm_edge.training.prior import PriorConfig, sample_mdp


@cache
def _engine(model: str | None, engine: str = "torch:fp32") -> PolicyEngine:
    """One engine per model, backend:precision and worker process (loading one costs more
    than a short run)."""
    backend, precision = engine.split(":")
    return make_engine(backend, model, precision)


def regrets(seed_base: int, k: int, prior: PriorConfig, episodes: int, agents: list[tuple[str, dict]]):
    """Prior MDP k (seed ``seed_base + k``): its family and each agent's regret / (V* x episodes).

    An agent is (name, keyword arguments); "model" (and "engine", backend:precision) makes
    an rlfm agent's engine.
    Every agent runs with run seed k, so agents are compared on the same draws.
    """
    mdp = sample_mdp(np.random.default_rng(seed_base + k), prior)
    return mdp.meta["family"], agent_regrets(mdp, k, episodes, agents)


def agent_regrets(mdp, k: int, episodes: int, agents: list[tuple[str, dict]]) -> dict[str, float]:
    """Each agent's regret / (V* x episodes) on ``mdp``, all on run seed k (agents as in regrets)."""
    best = optimal_value(mdp) * episodes
    out = {}
    for name, kw in agents:
        if "model" in kw:  # the rest (temperature, anneal_visits, sampling) go to the agent
            rest = {k: v for k, v in kw.items() if k not in ("model", "engine")}
            kw = {"engine": _engine(kw["model"], kw.get("engine", "torch:fp32"))} | rest
        returns = run_online(mdp, name.split()[0], episodes, seed=k, **kw)
        out[name] = (best - returns.sum()) / max(best, 1e-9)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped one)")
    parser.add_argument("--mdps", type=int, default=16)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--s-min", type=int, default=2,
                        help="smallest S; above the training prior's S, this measures size generalisation")
    parser.add_argument("--s-max", type=int, default=30)
    parser.add_argument("--a-min", type=int, default=PriorConfig.a_min,
                        help="fewest actions; above the training prior's A, this measures action-count "
                             "generalisation (the default model serves A <= 8)")
    parser.add_argument("--a-max", type=int, default=PriorConfig.a_max)
    parser.add_argument("--h-max", type=int, default=100)
    parser.add_argument("--temperatures", default="1.0,0.5,0.3")
    parser.add_argument("--anneal", default="none",
                        help="comma-separated anneal_visits of the rlfm agent, each run with every "
                             "temperature; 'none' keeps the temperature fixed")
    parser.add_argument("--sampling", default="step",
                        help="comma-separated sampling rules of the rlfm agent ('step': a fresh draw "
                             "every step; 'episode': one draw per state per episode), each run with "
                             "every temperature and annealing rule")
    parser.add_argument("--seed-base", type=int, default=10**7,
                        help="MDP k uses seed SEED_BASE + k; a second base gives a fresh split to "
                             "confirm a choice made on the first")
    parser.add_argument("--families", nargs="+", default=None, metavar="FAMILY",
                        help="draw only these prior families, equally often (default: the prior's "
                             "own weights); e.g. survival, which the default weights leave out")
    parser.add_argument("--compare", nargs="+", default=[], metavar="MODEL",
                        help="other model directories, run on the same MDPs and seeds")
    parser.add_argument("--compare-engines", nargs="+", default=[], metavar="BACKEND:PRECISION",
                        help="the main model on other engines (e.g. onnxruntime:int8), run on the "
                             "same MDPs and seeds; the main runs are torch:fp32")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    parser.add_argument("--record", nargs="?", const="BENCHMARKS.md", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    # label ("0.3", "0.3 anneal=30", "0.3 anneal=30 sampling=episode") -> the rlfm agent's
    # temperature, anneal_visits and sampling
    rules = {f"{t}{'' if n == 'none' else f' anneal={n}'}{'' if m == 'step' else f' sampling={m}'}":
             (float(t), None if n == "none" else float(n), m)
             for m in args.sampling.split(",") for n in args.anneal.split(",")
             for t in args.temperatures.split(",")}
    temperatures = list(rules)
    agents = [("psrl", {}), ("ucbvi", {})]
    for e in args.compare_engines:
        if e.count(":") != 1:
            parser.error(f"--compare-engines: expected BACKEND:PRECISION, got {e!r}")
    # label -> the rlfm engine: model directory and backend:precision
    engines = {"": (args.model, "torch:fp32")} | {f" ({m})": (m, "torch:fp32") for m in args.compare}
    engines |= {f" ({e})": (args.model, e) for e in args.compare_engines}
    for label, (model, engine) in engines.items():
        agents += [(f"rlfm T={t}{label}", {"model": model, "engine": engine, "temperature": temperature,
                                           "anneal_visits": anneal_visits, "sampling": sampling})
                   for t, (temperature, anneal_visits, sampling) in rules.items()]
    weights = {f: 1.0 for f in args.families} if args.families else PriorConfig().weights
    prior = PriorConfig(s_min=args.s_min, s_max=args.s_max, a_min=args.a_min, a_max=args.a_max,
                        h_max=args.h_max, weights=weights)
    done = run_jobs(regrets, [(args.seed_base, k, prior, args.episodes, agents)
                              for k in range(args.mdps)], args.workers, True, "held-out MDPs")
    families = [family for family, _ in done]
    regret = {name: [r[name] for _, r in done] for name, _ in agents}
    base = "10^7" if args.seed_base == 10**7 else str(args.seed_base)
    sizes = f"S <= {args.s_max}" if args.s_min == 2 else f"{args.s_min} <= S <= {args.s_max}"
    if (args.a_min, args.a_max) != (PriorConfig.a_min, PriorConfig.a_max):
        sizes += f", {args.a_min} <= A <= {args.a_max}"
    if args.families:
        sizes += f"; {', '.join(args.families)} only"
    lines = [f"{args.mdps} MDPs of the prior ({sizes}, H <= {args.h_max}), seeds {base} + k, "
             f"{args.episodes} episodes each; regret normalised by V*(mu0) x episodes.", "",
             "| agent | normalised regret: mean | median |", "|---|---|---|"]
    lines += [f"| {name} | {np.mean(r):.3f} | {np.median(r):.3f} |" for name, r in regret.items()]
    lines += ["", "Mean normalised regret by prior family:", "",
              "| family | MDPs | " + " | ".join(regret) + " |", "|---|---|" + "---|" * len(regret)]
    for family in sorted(set(families)):
        rows = [i for i, f in enumerate(families) if f == family]
        lines.append(f"| {family} | {len(rows)} | " + " | ".join(
            f"{np.mean([r[i] for i in rows]):.3f}" for r in regret.values()) + " |")
    if len(temperatures) > 1:
        first = f"rlfm T={temperatures[0]}"
        lines += ["", f"Paired against {first}: mean of (regret - its regret) over the MDPs, +- "
                  "its standard error (negative: lower regret).", "",
                  "| agent | difference | standard error |", "|---|---|---|"]
        for t in temperatures[1:]:
            diff, se, _ = mean_se(np.subtract(regret[f"rlfm T={t}"], regret[first]))
            lines.append(f"| rlfm T={t} | {diff:+.3f} | {se:.3f} |")
    if len(engines) > 1:
        lines += ["", "Paired against the main model: mean of (regret - main model's regret) over "
                  "the MDPs, +- its standard error (negative: lower regret than the main model); "
                  "relative: that mean over the main model's mean regret; in SE: that mean over "
                  "its standard error (the ship rules' 2 SE).",
                  "", "| model or engine | temperature | difference | standard error | relative | in SE |",
                  "|---|---|---|---|---|---|"]
        for other in [*args.compare, *args.compare_engines]:
            for t in temperatures:
                diff, se, _ = mean_se(np.subtract(regret[f"rlfm T={t} ({other})"], regret[f"rlfm T={t}"]))
                relative = diff / max(np.mean(regret[f"rlfm T={t}"]), 1e-9)
                lines.append(f"| {other} | {t} | {diff:+.3f} | {se:.3f} | {relative:+.1%} "
                             f"| {diff / se if se > 0 else 0.0:+.2f} |")
    body = "\n".join(lines)
    split = "" if args.seed_base == 10**7 else f", seeds {base} + k"
    split += "" if args.episodes == 100 else f", {args.episodes} episodes"
    print_and_record(body, args.record, f"Held-out prior MDPs ({sizes}{split})", __file__,
                     sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
