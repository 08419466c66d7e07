"""The robot benchmark's figures: what a robotics engineer asks, per task and agent.

Per run (one agent, one task, one seed): the mean native return over the first 25, 100 and
300 episodes (fewer when the run is shorter); the episodes until the task counts as solved
(Gymnasium's ``reward_threshold`` reached by the average of the last 100 episodes, where the
task has one); the environment steps and CPU seconds the run took. Over seeds: mean and
standard error (SE = sample standard deviation / sqrt(seeds)).

The issue's targets, on the first 100 episodes, paired per seed (a seed counts for a pair
when both of its runs finished):

* rlfm minus the best tabular agent (psrl, ucbvi or qlearning, whichever has the highest mean
  on that task), mean +- SE of the per-seed differences;
* rlfm's gain over random divided by the best tabular agent's gain over random (means over
  seeds), per task and the median over tasks;
* rlfm minus DQN, mean +- SE of the per-seed differences.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from rlfm_edge.bench.metrics import mean_se, moving_average
from rlfm_edge.bench.report import _fmt, _jsonable, _markdown
from rlfm_edge.bench.robot_tasks import get_task

WINDOWS = (25, 100, 300)
TARGET_WINDOW = 100
SOLVED_WINDOW = 100
CURVE_WINDOW = 10
TABULAR_REFERENCES = ("psrl", "ucbvi", "qlearning")


def episodes_to_solved(returns, threshold: float | None, window: int = SOLVED_WINDOW) -> int | None:
    """The first episode count k >= window whose last ``window`` returns average at least
    ``threshold``; None when never (or when the task has no threshold)."""
    arr = np.asarray(returns, dtype=np.float64)
    if threshold is None or arr.size < window:
        return None
    hit = np.nonzero(moving_average(arr, window)[window - 1:] >= threshold)[0]
    return int(hit[0]) + window if hit.size else None


def _windows(episodes: int) -> list[int]:
    return sorted({min(w, episodes) for w in WINDOWS})


def _runs_by(results: dict) -> dict:
    """task -> agent -> seed -> run record."""
    out: dict = {}
    for (task, agent, seed), record in results["runs"].items():
        out.setdefault(task, {}).setdefault(agent, {})[seed] = record
    return out


def summarize(results: dict) -> list[dict]:
    """One row per (task, agent) that has finished runs."""
    cfg, by = results["config"], _runs_by(results)
    rows = []
    for task in cfg["tasks"]:
        threshold = get_task(task).solved_threshold
        for agent in cfg["agents"]:
            runs = list(by.get(task, {}).get(agent, {}).values())
            if not runs:
                continue
            row = {"task": task, "agent": agent, "seeds": len(runs)}
            for w in _windows(cfg["episodes"]):
                row[f"first_{w}"] = mean_se(np.mean(r["returns"][:w]) for r in runs)
            solved = [episodes_to_solved(r["returns"], threshold) for r in runs]
            row["solved"] = [s for s in solved if s is not None]
            row["steps"] = mean_se(sum(r["steps"]) for r in runs)
            row["cpu_s"] = mean_se(r["cpu_s"] for r in runs)
            rows.append(row)
    return rows


def _first(record: dict, window: int) -> float:
    return float(np.mean(record["returns"][:window]))


def paired(by_agent: dict, a: str, b: str, window: int = TARGET_WINDOW) -> tuple[float, float, int]:
    """Mean, SE and count of the per-seed differences a - b over the first ``window`` episodes."""
    seeds = sorted(set(by_agent.get(a, {})) & set(by_agent.get(b, {})))
    return mean_se(_first(by_agent[a][s], window) - _first(by_agent[b][s], window) for s in seeds)


def targets(results: dict) -> dict:
    """The issue's paired comparisons per task (see the module docstring), where they apply."""
    by, per_task = _runs_by(results), {}
    w = min(TARGET_WINDOW, results["config"]["episodes"])
    for task in results["config"]["tasks"]:
        runs = by.get(task, {})
        if "rlfm" not in runs:
            continue
        means = {a: np.mean([_first(r, w) for r in runs[a].values()]) for a in runs}
        row: dict = {"window": w}
        tabular = [a for a in TABULAR_REFERENCES if a in runs]
        if tabular:
            best = max(tabular, key=lambda a: means[a])
            row["best_tabular"] = best
            row["rlfm_minus_best_tabular"] = paired(runs, "rlfm", best, w)
            if "random" in runs:
                gain_best = means[best] - means["random"]
                row["gain_ratio"] = ((means["rlfm"] - means["random"]) / gain_best
                                     if gain_best > 0 else None)
        if "dqn" in runs:
            row["rlfm_minus_dqn"] = paired(runs, "rlfm", "dqn", w)
        if len(row) > 1:
            per_task[task] = row
    ratios = [r["gain_ratio"] for r in per_task.values() if r.get("gain_ratio") is not None]
    return {"tasks": per_task, "median_gain_ratio": float(np.median(ratios)) if ratios else None}


def _solved_cell(row: dict, task: str) -> str:
    if get_task(task).solved_threshold is None:
        return "no threshold"
    if not row["solved"]:
        return f"not solved (0/{row['seeds']})"
    return f"{int(np.median(row['solved']))} ({len(row['solved'])}/{row['seeds']})"


def tables(results: dict, summary: list[dict] | None = None, goals: dict | None = None) -> str:
    """Markdown: the per-(task, agent) table, then the targets' paired figures."""
    summary = summarize(results) if summary is None else summary
    goals = targets(results) if goals is None else goals
    windows = _windows(results["config"]["episodes"])
    header = ["task", "agent", "seeds", *(f"first {w} ep." for w in windows),
              "solved at episode (median; seeds)", "env steps / run", "CPU s / run"]
    rows = []
    for r in summary:
        task = get_task(r["task"])
        threshold = f" ≥ {task.solved_threshold:g}" if task.solved_threshold is not None else ""
        rows.append([f"{task.label}{threshold}", r["agent"], str(r["seeds"]),
                     *(_fmt(*r[f"first_{w}"][:2], 1) for w in windows), _solved_cell(r, r["task"]),
                     f"{r['steps'][0]:,.0f}", _fmt(*r["cpu_s"][:2], 1)])
    text = ("Mean native return over the first K episodes, mean ± SE over seeds.\n\n"
            + _markdown(header, rows))
    if goals["tasks"]:
        w = next(iter(goals["tasks"].values()))["window"]
        trows = []
        for task, g in goals["tasks"].items():
            ratio = g.get("gain_ratio")
            trows.append([get_task(task).label, g.get("best_tabular", "—"),
                          _paired_cell(g.get("rlfm_minus_best_tabular")),
                          "—" if ratio is None else f"{ratio:.2f}",
                          _paired_cell(g.get("rlfm_minus_dqn"))])
        median = goals["median_gain_ratio"]
        text += (f"\nTargets, first {w} episodes, paired per seed (mean ± SE of the differences; "
                 f"n seeds):\n\n"
                 + _markdown(["task", "best tabular", "rlfm − best tabular",
                              "rlfm gain / best tabular gain (over random)", "rlfm − DQN"], trows)
                 + f"\nMedian gain ratio over tasks: "
                 f"{'—' if median is None else f'{median:.2f}'}\n")
    cpu = _cpu_per_agent(summary)
    if cpu:
        text += "\nCPU seconds per run, by agent (mean over tasks of the per-task means):\n\n" + cpu
    return text


def _paired_cell(p) -> str:
    if p is None or p[2] == 0:
        return "—"
    return f"{_fmt(p[0], p[1], 1)} (n={p[2]})"


def _cpu_per_agent(summary: list[dict]) -> str:
    agents = list(dict.fromkeys(r["agent"] for r in summary))
    rows = [[a, f"{np.mean([r['cpu_s'][0] for r in summary if r['agent'] == a]):.1f}"]
            for a in agents]
    return _markdown(["agent", "CPU s / run"], rows) if rows else ""


def plot(results: dict, path: str | os.PathLike, window: int = CURVE_WINDOW) -> Path:
    """One panel per task: each agent's moving-average return, mean ± SE band over seeds."""
    from rlfm_edge.bench.report import _pyplot

    plt = _pyplot()
    by, tasks = _runs_by(results), [t for t in results["config"]["tasks"] if t in _runs_by(results)]
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(5 * max(1, len(tasks)), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=False):
        spec = get_task(task)
        for agent in results["config"]["agents"]:
            runs = list(by[task].get(agent, {}).values())
            if not runs:
                continue
            k = min(len(r["returns"]) for r in runs)
            curves = np.stack([moving_average(r["returns"][:k], window) for r in runs])
            mean = curves.mean(axis=0)
            se = (curves.std(axis=0, ddof=1) / math.sqrt(len(runs)) if len(runs) > 1
                  else np.zeros_like(mean))
            x = np.arange(1, k + 1)
            (line,) = ax.plot(x, mean, label=agent, lw=1.2)
            ax.fill_between(x, mean - se, mean + se, color=line.get_color(), alpha=0.2)
        if spec.solved_threshold is not None:
            ax.axhline(spec.solved_threshold, color="k", ls="--", lw=0.8, label="solved")
        ax.set_title(spec.label)
        ax.set_xlabel("episode")
        ax.set_ylabel(f"return ({window}-episode moving average)")
    axes[0][0].legend(fontsize="small")
    seeds = max((r.get("seeds", 0) for r in summarize(results)), default=0)
    fig.suptitle(f"mean ± SE over up to {seeds} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write_robot_report(results: dict, out_dir: str | os.PathLike) -> tuple[str, list[Path]]:
    """results.json, results.md and learning_curves.png in ``out_dir``; returns the tables."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary, goals = summarize(results), targets(results)
    text = tables(results, summary, goals)
    payload = {"kind": "robot", "config": results["config"], "complete": results["complete"],
               "summary": summary, "targets": goals, "runs": list(results["runs"].values())}
    js = out / "results.json"
    js.write_text(json.dumps(_jsonable(payload), indent=1) + "\n")
    md = out / "results.md"
    md.write_text(text)
    png = plot(results, out / "learning_curves.png")
    return text, [js, md, png]
