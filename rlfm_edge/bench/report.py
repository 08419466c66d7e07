"""Turn experiment results into a markdown table, a JSON file and PNG plots.

Tables give mean ± half-width of the 95% Student-t confidence interval over seeds.
:func:`record_section` keeps BENCHMARKS.md as a set of titled sections, each with the
command that produced it, so rerunning a benchmark replaces its section.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from pathlib import Path

import numpy as np

from rlfm_edge.atomic import atomic_write_bytes
from rlfm_edge.bench import metrics

OFFLINE_MARGIN = 0.02  # the offline target: within this of VI-LCB's normalised value
# The methods the offline table counts cells against, when they ran: the practical VI-LCB
# (the target's) and the paper's constants.
PESSIMISTIC_REFERENCES = ("vi_lcb", "vi_lcb_paper")
REFERENCE_AGENTS = ("ucbvi", "qlearning", "psrl")  # the online targets' comparisons


def _fmt(mean: float, half: float, digits: int = 2) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.{digits}f}" if math.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def summarize_online(results: dict) -> list[dict]:
    """One summary per (env, agent): final return, regret at K, episodes to 90% V*."""
    rows = []
    for env, res in results["envs"].items():
        v_star = res["v_star"]
        for agent, returns in res["returns"].items():
            hits = [metrics.episodes_to_threshold(r, v_star) for r in returns]
            reached = [h for h in hits if h is not None]
            rows.append({
                "env": env, "agent": agent, "v_star": v_star, "seeds": len(returns),
                "episodes": returns.shape[1],
                "final_return": metrics.mean_ci([metrics.final_return(r) for r in returns]),
                "regret": metrics.mean_ci([metrics.cumulative_regret(r, v_star)[-1]
                                           for r in returns]),
                "episodes_to_90": metrics.mean_ci(reached),
                "reached_90": len(reached),
            })
    return rows


def online_table(results: dict) -> str:
    """Markdown table of :func:`summarize_online`, then :func:`regret_ratios`."""
    k = results["config"]["episodes"]
    header = ["env", "agent", "V*(mu0)", "final return", f"regret after {k} ep.",
              "episodes to 90% V* (seeds reaching)"]
    rows = []
    summary = summarize_online(results)
    for row in summary:
        rows.append([row["env"], row["agent"], f"{row['v_star']:.3f}",
                     _fmt(*row["final_return"], 3), _fmt(*row["regret"], 1),
                     f"{_fmt(*row['episodes_to_90'], 0)} ({row['reached_90']}/{row['seeds']})"])
    ratios = regret_ratios(summary)
    table = _markdown(header, rows)
    return f"{table}\nMedian over envs of mean regret ratios:\n\n{ratios}" if ratios else table


def regret_ratios(summary: list[dict]) -> str:
    """Markdown table from :func:`summarize_online`'s rows: per agent, the median over envs of
    its mean regret divided by each reference agent's (the online targets' statistic); empty
    when no reference ran."""
    regret = {(r["env"], r["agent"]): r["regret"][0] for r in summary}
    envs = list(dict.fromkeys(r["env"] for r in summary))
    agents = list(dict.fromkeys(r["agent"] for r in summary))
    refs = [a for a in REFERENCE_AGENTS if a in agents]
    if not refs:
        return ""
    def ratio(a: str, ref: str) -> str:  # over the envs where both ran (all, unless interrupted)
        both = [regret[e, a] / max(regret[e, ref], 1e-9) for e in envs
                if (e, a) in regret and (e, ref) in regret]
        return f"{np.median(both):.2f}" if both else "n/a"

    rows = [[a, *(ratio(a, ref) for ref in refs)] for a in agents if a not in refs]
    return _markdown(["agent", *(f"median regret / {ref}'s" for ref in refs)], rows) if rows else ""


def offline_table(results: dict) -> str:
    """Markdown table: one row per (env, behaviour, size), one value column per method;
    then, for each VI-LCB that ran, how many of those cells each method is within
    ``OFFLINE_MARGIN`` of it (the offline target's criterion, on the means over seeds)."""
    methods = results["config"]["methods"]
    header = ["env", "behaviour", "size (x H)", "V*(mu0)", "V^behaviour", *methods]
    rows, means = [], []
    for env, res in results["envs"].items():
        for b, by_size in res["values"].items():
            for n, by_method in by_size.items():
                rows.append([env, b, str(n), f"{res['v_star']:.3f}",
                             f"{res['behaviour_values'][b]:.3f}",
                             *(_fmt(*metrics.mean_ci(by_method[m]), 3) for m in methods)])
                means.append({m: np.mean(by_method[m]) / res["v_star"] for m in methods})
    table = _markdown(header, rows)
    refs = [r for r in PESSIMISTIC_REFERENCES if r in methods]
    if not refs or len(methods) < 2:
        return table
    cells = []
    for ref in refs:
        for m in methods:
            if m != ref:
                ok = sum(c[m] >= c[ref] - OFFLINE_MARGIN for c in means)
                cells.append([m, ref, f"{ok} / {len(means)}", f"{ok / len(means):.0%}"])
    return (f"{table}\nCells where V^pi / V* is at least the reference's - {OFFLINE_MARGIN} "
            "(the target reads vi_lcb):\n\n"
            + _markdown(["method", "reference", "cells", "share"], cells))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_json(results: dict, path: str | os.PathLike, summary: list[dict] | None = None) -> Path:
    """Raw results (every seed's numbers) and, if given, the summary rows."""
    path = Path(path)
    payload = dict(results)
    if summary is not None:
        payload["summary"] = summary
    path.write_text(json.dumps(_jsonable(payload), indent=1) + "\n")
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_band(ax, x, curves: np.ndarray, label: str, **style) -> None:
    """Mean over seeds (rows of ``curves``) with its 95% confidence band."""
    mean, half = metrics.band(curves)
    (line,) = ax.plot(x, mean, label=label, **style)
    ax.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.2)


def _save(fig, results: dict, path: str | os.PathLike) -> Path:
    fig.suptitle(f"mean and 95% CI over {len(results['config']['seeds'])} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return Path(path)


def plot_online(results: dict, path: str | os.PathLike,
                window: int = metrics.THRESHOLD_WINDOW) -> Path:
    """Per env (columns): moving-average return and cumulative regret, mean and 95% band."""
    plt = _pyplot()
    env_names = list(results["envs"])
    fig, axes = plt.subplots(2, len(env_names), figsize=(4.5 * len(env_names), 7),
                             squeeze=False)
    for j, env in enumerate(env_names):
        res = results["envs"][env]
        top, bottom = axes[0, j], axes[1, j]
        for agent, returns in res["returns"].items():
            x = np.arange(1, returns.shape[1] + 1)
            for ax, curves in (
                (top, np.stack([metrics.moving_average(r, window) for r in returns])),
                (bottom, np.stack([metrics.cumulative_regret(r, res["v_star"])
                                   for r in returns])),
            ):
                _plot_band(ax, x, curves, agent)
        top.axhline(res["v_star"], color="k", ls="--", lw=1, label="V*(mu0)")
        top.set_title(env)
        top.set_ylabel(f"return ({window}-episode moving average)")
        bottom.set_ylabel("cumulative regret")
        bottom.set_xlabel("episode")
        top.legend(fontsize="small")
    return _save(fig, results, path)


def plot_offline(results: dict, path: str | os.PathLike) -> Path:
    """Rows: envs; columns: behaviours; value of each method against dataset size."""
    plt = _pyplot()
    env_names = list(results["envs"])
    specs = results["config"]["behaviours"]
    fig, axes = plt.subplots(len(env_names), len(specs),
                             figsize=(4.5 * len(specs), 3.5 * len(env_names)), squeeze=False)
    for i, env in enumerate(env_names):
        res = results["envs"][env]
        for j, b in enumerate(specs):
            ax = axes[i, j]
            if b not in res["values"]:  # an interrupted run that finished no cell of it
                ax.set_axis_off()
                continue
            sizes = list(res["values"][b])
            for m in results["config"]["methods"]:
                _plot_band(ax, sizes, np.stack([res["values"][b][n][m] for n in sizes], 1), m,
                           marker="o")
            ax.axhline(res["v_star"], color="k", ls="--", lw=1, label="V*(mu0)")
            ax.axhline(res["behaviour_values"][b], color="grey", ls=":", lw=1,
                       label="behaviour")
            ax.set_xscale("log")
            ax.set_title(f"{env}, {b}")
            ax.set_xlabel("dataset size (episodes of H steps)")
            ax.set_ylabel("V^pi(mu0)")
            ax.legend(fontsize="small")
    return _save(fig, results, path)


def write_report(results: dict, out_dir: str | os.PathLike) -> tuple[str, list[Path]]:
    """results.json, results.md and the plot in ``out_dir``; returns the table and the paths."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"out: cannot create output folder {out}: {exc}") from None
    if results["kind"] == "online":
        table, summary = online_table(results), summarize_online(results)
        plot = plot_online(results, out / "learning_curves.png")
    else:
        table, summary = offline_table(results), None
        plot = plot_offline(results, out / "offline_values.png")
    partial = results.get("partial")
    if partial:
        table = (f"Interrupted: {partial['finished_runs']} of {partial['runs']} runs finished; "
                 f"the table holds those.\n\n{table}")
    js = write_json(results, out / "results.json", summary)
    md = out / "results.md"
    md.write_text(table)
    return table, [js, md, plot]


# BENCHMARKS.md is grouped by question (a ``## question`` heading each); a new section goes
# under the question its command answers. Keys: the bench subcommand or the script's name.
QUESTION_OF_COMMAND = {
    "bench online": "Learning online", "heldout_prior.py": "Learning online",
    "survival_probe.py": "Learning online",
    "bench offline": "Learning offline", "plan_following.py": "Learning offline",
    "bench robot": "Robot tasks", "ros_vs_serve.py": "Robot tasks",
    "bench latency": "Inference latency and INT8", "layout_ab.py": "Inference latency and INT8",
    "int8_agreement.py": "Inference latency and INT8", "int8_sensitivity.py": "Inference latency and INT8",
    "gpu_parity.py": "Inference latency and INT8", "plan_features_profile.py": "Inference latency and INT8",
    "bench loop": "Robot loop", "bench stats": "Robot loop", "ros_latency.py": "Robot loop",
    "fuzz.py": "Reliability", "soak.py": "Reliability", "kill9_loss.py": "Reliability",
    "robot_prior_stability.py": "Training cost",
}


def question_of(command: str) -> str | None:
    """The BENCHMARKS.md question a recorded command answers, or None if it has none."""
    words = shlex.split(command)
    if words[:2] == ["rlfm-edge", "bench"] and len(words) > 2:
        return QUESTION_OF_COMMAND.get(f"bench {words[2]}")
    if words[:1] == ["python"] and len(words) > 1:
        return QUESTION_OF_COMMAND.get(Path(words[1]).name)
    return None


def record_section(path: str | os.PathLike, title: str, command: str, body: str) -> Path:
    """Add or replace the section titled ``title`` of a markdown file (created if missing).

    The section holds the command that produced it, in a code block, then ``body``. An
    existing ``## {title}`` or ``### {title}`` (a section filed under a question's heading)
    is replaced in place at its level, up to the next heading of the same or a higher level.
    A new one goes at the end of its question's group as ``### {title}`` (question_of), or
    at the end of the file as ``## {title}`` when the file has no such group. Other sections
    are kept as they are; the file is replaced atomically.
    """
    path = Path(path)
    title = " ".join(title.split())
    if not title:
        raise ValueError("title: a BENCHMARKS.md section needs a non-empty title")
    text = path.read_text() if path.exists() else (
        "# Benchmarks\n\nEach section is written by the command shown in it "
        "(`--record`); rerunning a command replaces its section.\n")
    lines = text.splitlines(keepends=True)
    headings = _headings(lines)
    start = next((i for i, (level, name) in headings.items()
                  if level in (2, 3) and name == title), None)
    question = question_of(command)
    group = next((i for i, (level, name) in headings.items() if level == 2 and name == question), None)
    if start is None and group is not None:
        section = f"### {title}\n\n```\n{command}\n```\n\n{body.strip()}\n"
        end = next((i for i, (lv, _) in headings.items() if i > group and lv <= 2), len(lines))
        head = "".join(lines[:end]).rstrip("\n")
        tail = "".join(lines[end:])
        new = head + "\n\n" + section + ("\n" + tail if tail else "")
    elif start is None:
        section = f"## {title}\n\n```\n{command}\n```\n\n{body.strip()}\n"
        new = text.rstrip("\n") + "\n\n" + section
    else:
        level = headings[start][0]
        section = f"{'#' * level} {title}\n\n```\n{command}\n```\n\n{body.strip()}\n"
        end = next((i for i, (lv, _) in headings.items() if i > start and lv <= level),
                   len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    atomic_write_bytes(path, new.encode())
    return path


def _headings(lines: list[str]) -> dict[int, tuple[int, str]]:
    """Line index -> (level, title) of every markdown heading outside fenced code blocks."""
    out, fenced = {}, False
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            marks = len(line) - len(line.lstrip("#"))
            if line[marks:marks + 1] == " ":
                out[i] = (marks, line[marks:].strip())
    return out


def print_and_record(body: str, record: str | os.PathLike | None, title: str, script: str,
                     argv: list[str]) -> None:
    """Print a benchmark script's result; with ``record`` (a file), also write its section there.

    The section's command is ``python benchmarks/<script's file name> <argv>``, so that the
    figures can be rerun as recorded.
    """
    print(body)
    if record:
        command = shlex.join(["python", f"benchmarks/{Path(script).name}", *argv])
        record_section(record, title, command, body)
