"""Two models on the same runs, paired per seed: `bench robot` or `bench online` output folders.

The ship rule (docs/model-selection.md) compares a candidate model with the shipped one on the
same tasks and seeds. Given two output folders of the same benchmark, one per model, this prints
for each task or environment the per-seed difference of the model agent's figure (candidate
minus base) with its standard error over seeds:
- `bench robot` folders: mean return over the first ``--episodes`` episodes (higher is better);
- `bench online` folders: regret over all episodes (lower is better).

    python benchmarks/paired_compare.py results/robot_v7 results/robot_robot2 --record
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

import numpy as np

from rlfm_edge.bench.metrics import mean_se
from rlfm_edge.bench.report import print_and_record


def robot_figures(folder: Path, agent: str, episodes: int) -> dict[tuple[str, int], float]:
    out = {}
    for path in glob.glob(str(folder / "runs" / f"*__{agent}__*.json")):
        run = json.loads(Path(path).read_text())
        out[(run["task"], run["seed"])] = float(np.mean(run["returns"][:episodes]))
    return out


def online_figures(folder: Path, agent: str) -> dict[tuple[str, int], float]:
    results = json.loads((folder / "results.json").read_text())
    seeds = results["config"]["seeds"]
    out = {}
    for env, r in results["envs"].items():
        regret = (r["v_star"] - np.asarray(r["returns"][agent])).sum(axis=1)
        out.update({(env, s): float(g) for s, g in zip(seeds, regret, strict=True)})
    return out


def table(base: dict, cand: dict, what: str, base_name: str, cand_name: str, unit: str) -> str:
    rows = [f"| {unit} | seeds | {base_name}: {what} | {cand_name} | difference +- SE | in SE |",
            "|---|---|---|---|---|---|"]
    for task in dict.fromkeys(k[0] for k in base):
        keys = sorted(k for k in base if k[0] == task and k in cand)
        if not keys:
            continue
        b, c = np.array([base[k] for k in keys]), np.array([cand[k] for k in keys])
        diff, se, _ = mean_se(c - b)
        z = diff / se if se > 0 else 0.0
        rows.append(f"| {task} | {len(keys)} | {b.mean():.1f} | {c.mean():.1f} | "
                    f"{diff:+.1f} +- {se:.1f} | {z:+.1f} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path, help="output folder of the base model's run")
    parser.add_argument("candidate", type=Path, help="output folder of the candidate's run")
    parser.add_argument("--agent", default="rlfm", help="the agent compared (default: rlfm)")
    parser.add_argument("--episodes", type=int, default=100,
                        help="bench robot: mean return over this many first episodes (default: 100)")
    parser.add_argument("--title", default=None, help="section title for --record")
    parser.add_argument("--record", nargs="?", const="BENCHMARKS.md", default=None)
    args = parser.parse_args(argv)
    robot = (args.base / "runs").is_dir()
    if robot:
        base = robot_figures(args.base, args.agent, args.episodes)
        cand = robot_figures(args.candidate, args.agent, args.episodes)
        what = f"mean return, first {args.episodes} episodes"
    else:
        base, cand = online_figures(args.base, args.agent), online_figures(args.candidate, args.agent)
        what = "regret"
    if not base or not cand:
        raise SystemExit(f"no {args.agent} runs in {args.base if not base else args.candidate}")
    body = (f"`{args.agent}` in {args.candidate} against {args.base}, paired per seed "
            f"(candidate minus base, +- the standard error of the differences).\n\n"
            + table(base, cand, what, args.base.name, args.candidate.name,
                    "task" if robot else "environment"))
    print_and_record(body, args.record, args.title or f"Paired: {args.candidate.name} vs {args.base.name}",
                     __file__, argv if argv is not None else sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
