"""`rlfm-edge bench BENCHMARK`: benchmark tables and plots, optionally recorded in
BENCHMARKS.md with the command that produced them.

``online``, ``offline`` and ``stats`` are defined here; the others plug in through
BENCH_MODULES: each named module ``rlfm_edge.cli.<name>`` defines
``register(bench_subparsers)``, like the top-level command modules. ``rlfm-edge bench --help``
lists every registered one.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import time

import numpy as np

BENCH_MODULES: list[str] = ["bench_latency", "bench_loop", "bench_robot"]
DEFAULT_BENCHMARKS_FILE = "BENCHMARKS.md"


def csv_list(text: str) -> list[str]:
    """``"a,b"`` -> ["a", "b"] (blank items dropped)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def csv_ints(field: str, text: str) -> list[int]:
    items = csv_list(text)
    try:
        return [int(x) for x in items]
    except ValueError:
        raise ValueError(f"--{field}: expected comma-separated integers, got {text!r}") from None


def parse_agent_kw(items: list[str]) -> dict[str, dict]:
    """``["ucbvi:bonus_scale=0.1"]`` -> {"ucbvi": {"bonus_scale": 0.1}} (Python literals)."""
    from rlfm_edge.bench.specs import parse_value

    out: dict[str, dict] = {}
    for item in items:
        agent, sep, assignment = item.partition(":")
        key, eq, raw = assignment.partition("=")
        if not (sep and eq and agent.strip() and key.strip()):
            raise ValueError(f"--agent-kw: expected AGENT:KEY=VALUE, got {item!r}")
        out.setdefault(agent.strip(), {})[key.strip()] = parse_value(raw)
    return out


def add_record_options(parser: argparse.ArgumentParser) -> None:
    """--record [FILE] and --title, shared by every bench subcommand."""
    parser.add_argument("--record", nargs="?", const=DEFAULT_BENCHMARKS_FILE, default=None,
                        metavar="FILE", help="add or replace this run's section in FILE "
                        f"(default {DEFAULT_BENCHMARKS_FILE})")
    parser.add_argument("--title", default=None,
                        help="section title in the --record file (default: from the options)")


def record(args: argparse.Namespace, default_title: str, command: str, body: str) -> None:
    """Write the section when --record was given, and say where."""
    if args.record is None:
        return
    from rlfm_edge.bench.report import record_section

    path = record_section(args.record, args.title or default_title, command, body)
    print(f"recorded in {path}")


def _machine() -> str:
    return f"{os.cpu_count()} CPU cores"


def _add_common(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument("--envs", default="riverswim,chain,sixarms",
                   help="comma-separated environments (names: `rlfm-edge info`), each with "
                   "optional parameters: deepsea:size=20 or garnet:n_states=20,seed=3 "
                   "(docs/benchmark-mdps.md lists them)")
    p.add_argument("--seeds", type=int, default=10, help="number of seeds per configuration")
    p.add_argument("--seed", type=int, default=0, help="first seed; runs use seed..seed+seeds-1")
    p.add_argument("--out", default=out, help="folder for results.json, results.md and the plot")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: one per CPU core)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_record_options(p)


def _run_keeping_finished(run, args):
    """``run()``'s results; on Ctrl-C or SIGTERM the runs that finished are written to
    ``--out`` (not recorded in BENCHMARKS.md) before the stop goes on up."""
    from rlfm_edge.bench.report import write_report
    from rlfm_edge.interrupt import Interrupted

    try:
        return run()
    except Interrupted as stop:
        results = stop.partial
        if not results or not results["envs"]:
            raise stop.saying(f"no run had finished; nothing written to {args.out}") from None
        done = results.get("partial", {})
        _, paths = write_report(results, args.out)
        raise stop.saying(
            f"wrote the {done.get('finished_runs')} of {done.get('runs')} runs that finished to "
            f"{', '.join(map(str, paths))} (not recorded); run the command again for all of "
            f"them") from None


def _finish(args, results, command: str, title: str, elapsed: float) -> int:
    from rlfm_edge.bench.report import write_report

    table, paths = write_report(results, args.out)
    print(table)
    print(f"{elapsed:.1f} s on {_machine()}; wrote {', '.join(str(p) for p in paths)}")
    body = f"{table}\n{elapsed:.0f} s on {_machine()}; plot: `{paths[-1]}`."
    record(args, title, command, body)
    return 0


def cmd_online(args: argparse.Namespace) -> int:
    from rlfm_edge.bench.runner import run_online_experiment
    from rlfm_edge.bench.specs import split_env_list

    envs, agents = split_env_list(args.envs), csv_list(args.agents)
    agent_kw = parse_agent_kw(args.agent_kw)
    start = time.perf_counter()
    results = _run_keeping_finished(lambda: run_online_experiment(
        envs, agents, args.episodes, args.seeds, seed=args.seed, agent_kw=agent_kw,
        workers=args.workers, progress=not args.no_progress), args)
    elapsed = time.perf_counter() - start
    command = ["rlfm-edge", "bench", "online", "--envs", ",".join(envs),
               "--agents", ",".join(agents), "--episodes", str(args.episodes),
               "--seeds", str(args.seeds), "--seed", str(args.seed)]
    for item in args.agent_kw:
        command += ["--agent-kw", item]
    command += ["--out", args.out]
    title = f"Online: {', '.join(envs)} ({args.episodes} episodes, {args.seeds} seeds)"
    return _finish(args, results, shlex.join(command), title, elapsed)


def cmd_offline(args: argparse.Namespace) -> int:
    from rlfm_edge.bench.runner import run_offline_experiment
    from rlfm_edge.bench.specs import split_env_list

    envs, methods = split_env_list(args.envs), csv_list(args.methods)
    behaviours, sizes = csv_list(args.behaviours), csv_ints("sizes", args.sizes)
    start = time.perf_counter()
    results = _run_keeping_finished(lambda: run_offline_experiment(
        envs, methods, sizes, behaviours, args.seeds, seed=args.seed, workers=args.workers,
        progress=not args.no_progress), args)
    elapsed = time.perf_counter() - start
    command = shlex.join(["rlfm-edge", "bench", "offline", "--envs", ",".join(envs),
                          "--methods", ",".join(methods), "--sizes", ",".join(map(str, sizes)),
                          "--behaviours", ",".join(behaviours), "--seeds", str(args.seeds),
                          "--seed", str(args.seed), "--out", args.out])
    title = f"Offline: {', '.join(envs)} ({', '.join(behaviours)}; {args.seeds} seeds)"
    return _finish(args, results, command, title, elapsed)


def cmd_stats(args: argparse.Namespace) -> int:
    from rlfm_edge.bench.online import check_count
    from rlfm_edge.stats import CountStats

    S, A = check_count("--states", args.states), check_count("--actions", args.actions)
    n, calls = check_count("--transitions", args.transitions), check_count("--calls", args.calls)
    repeats = check_count("--repeats", args.repeats)
    rng = np.random.default_rng(args.seed)
    s, a, s2 = rng.integers(0, S, n), rng.integers(0, A, n), rng.integers(0, S, n)
    r = rng.random(n)
    stats = CountStats(S, A)
    batch_best = min(_timed(stats.update_batch, s, a, r, s2) for _ in range(repeats))
    # Python ints and floats, as a robot's control loop would pass them.
    one = list(zip(s[:calls].tolist(), a[:calls].tolist(), r[:calls].tolist(),
                   s2[:calls].tolist(), strict=False))
    single_best = min(_timed(_update_each, stats, one) for _ in range(repeats)) / len(one)
    rate = n / batch_best
    table = (
        "| measure | value | target |\n|---|---|---|\n"
        f"| `CountStats.update_batch` ({n:,} transitions, S={S}, A={A}) "
        f"| {rate / 1e6:.2f} M transitions/s | >= 1 M/s |\n"
        f"| `CountStats.update` per call (Python loop included, {len(one):,} calls) "
        f"| {single_best * 1e6:.2f} us | <= 5 us |\n")
    print(table)
    command = shlex.join(["rlfm-edge", "bench", "stats", "--states", str(S), "--actions", str(A),
                          "--transitions", str(n), "--calls", str(calls),
                          "--repeats", str(repeats), "--seed", str(args.seed)])
    body = f"{table}\nBest of {repeats} repeats on {_machine()}."
    record(args, "CountStats update throughput", command, body)
    return 0


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def _update_each(stats, transitions) -> None:
    update = stats.update
    for s, a, r, s_next in transitions:
        update(s, a, r, s_next)


def register(subparsers) -> None:
    bench = subparsers.add_parser("bench", help="benchmark tables and plots (online, offline, "
                                  "latency, robot loop, ...)", description=__doc__.split("\n\n")[0])
    sub = bench.add_subparsers(dest="bench_command", metavar="BENCHMARK")

    def usage(args: argparse.Namespace) -> int:
        bench.print_help()
        return 2

    bench.set_defaults(func=usage)

    text = "agents learning from scratch on benchmark MDPs: returns and regret"
    p = sub.add_parser("online", help=text, description=text[0].upper() + text[1:] + ".")
    _add_common(p, "results/online")
    p.add_argument("--agents", default="rlfm,ucbvi,qlearning,psrl,random",
                   help="comma-separated agent names (see `rlfm-edge info`); rlfm is the "
                   "package's model")
    p.add_argument("--episodes", type=int, default=300, help="episodes per run")
    p.add_argument("--agent-kw", action="append", default=[], metavar="AGENT:KEY=VALUE",
                   help="constructor argument for one agent, e.g. ucbvi:bonus_scale=0.1 "
                   "(repeatable)")
    p.set_defaults(func=cmd_online)

    text = "policies extracted from fixed datasets: their exact values"
    p = sub.add_parser("offline", help=text, description=text[0].upper() + text[1:] + ".")
    _add_common(p, "results/offline")
    p.add_argument("--methods", default="rlfm,vi,vi_lcb", help="comma-separated offline methods")
    p.add_argument("--sizes", default="10,50,200",
                   help="comma-separated dataset sizes, in episodes of H transitions")
    p.add_argument("--behaviours", default="uniform,eps_optimal",
                   help="comma-separated behaviours: uniform, optimal, eps_optimal[:EPS], "
                   "mixture[:P]")
    p.set_defaults(func=cmd_offline)

    text = "CountStats.update_batch throughput and update() overhead"
    p = sub.add_parser("stats", help=text, description=text + ".")
    p.add_argument("--states", type=int, default=64, help="state count S of the statistics")
    p.add_argument("--actions", type=int, default=4, help="action count A of the statistics")
    p.add_argument("--transitions", type=int, default=1_000_000, help="batch size")
    p.add_argument("--calls", type=int, default=200_000, help="single update() calls timed")
    p.add_argument("--repeats", type=int, default=5, help="timings repeated; the best is kept")
    p.add_argument("--seed", type=int, default=0, help="seed of the random transitions")
    add_record_options(p)
    p.set_defaults(func=cmd_stats)

    for name in BENCH_MODULES:
        importlib.import_module(f"rlfm_edge.cli.{name}").register(sub)
