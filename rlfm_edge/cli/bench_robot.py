"""`rlfm-edge bench robot`: the robot path on CartPole, MountainCar, Acrobot and Pendulum in
simulated time, against tabular agents and DQN or PPO.

`bench robot-configs` writes the tasks' robot configs by the bins rule; both are described in
docs/robot-benchmark.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import time

from rlfm_edge.cli.bench import add_record_options, csv_list, record

DEFAULT_AGENTS = "rlfm,planning,psrl,ucbvi,qlearning,random,dqn,ppo"
DEFAULT_TASKS = "cartpole,mountaincar,acrobot,pendulum"


def cmd_robot(args: argparse.Namespace) -> int:
    from rlfm_edge.bench.robot import run_robot_experiment
    from rlfm_edge.bench.robot_report import write_robot_report

    tasks, agents = csv_list(args.tasks), csv_list(args.agents)
    start = time.perf_counter()
    results = run_robot_experiment(tasks, agents, args.episodes, args.seeds, args.out,
                                   seed=args.seed, backend=args.backend, model=args.model,
                                   config_dir=args.config_dir, workers=args.workers,
                                   progress=not args.no_progress)
    elapsed = time.perf_counter() - start
    expected = len(tasks) * len(agents) * args.seeds
    resumed = results["resumed"]
    table, paths = write_robot_report(results, args.out)
    print(table)
    status = ("" if results["complete"] else
              f"INTERRUPTED: {len(results['runs'])} of {expected} runs finished (kept in "
              f"{args.out}/runs; rerun the same command to resume). ")
    print(f"{status}{elapsed:.0f} s on {os.cpu_count()} CPU cores; wrote "
          f"{', '.join(str(p) for p in paths)}")
    command = ["rlfm-edge", "bench", "robot", "--tasks", ",".join(tasks), "--agents",
               ",".join(agents), "--episodes", str(args.episodes), "--seeds", str(args.seeds),
               "--seed", str(args.seed), "--backend", args.backend]
    if args.model:
        command += ["--model", args.model]
    if args.config_dir:
        command += ["--config-dir", args.config_dir]
    command += ["--out", args.out]
    body = (f"{table}\n{status}Runs: {len(results['runs'])} of {expected}, {resumed} of them "
            f"resumed from {args.out}/runs; {elapsed:.0f} s wall for the rest, on "
            f"{os.cpu_count()} CPU cores (CPU seconds per run are each worker's process time, "
            f"model loading included); plot: `{paths[-1]}`.")
    record(args, f"Robot tasks: {', '.join(tasks)} ({args.episodes} episodes, {args.seeds} seeds)",
           shlex.join(command), body)
    return 0 if results["complete"] else 130


def cmd_robot_configs(args: argparse.Namespace) -> int:
    from rlfm_edge.bench.robot_tasks import write_robot_configs

    for path in write_robot_configs(args.out, csv_list(args.tasks)):
        print(f"wrote {path}")
    return 0


def register(bench_subparsers) -> None:
    p = bench_subparsers.add_parser(
        "robot", help="robot tasks in simulated time: the model vs tabular agents, DQN and PPO",
        description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated tasks")
    p.add_argument("--agents", default=DEFAULT_AGENTS,
                   help="comma-separated agents: rlfm, planning, psrl, ucbvi, qlearning, random, "
                        "dqn, ppo (dqn/ppo need the bench extra)")
    p.add_argument("--episodes", type=int, default=300, help="episodes per run")
    p.add_argument("--seeds", type=int, default=10, help="runs per task and agent")
    p.add_argument("--seed", type=int, default=0, help="first seed; runs use seed..seed+seeds-1")
    p.add_argument("--backend", default="torch",
                   help="the model's backend: torch or onnxruntime (not auto: it may choose "
                        "differently from run to run)")
    p.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    p.add_argument("--config-dir", default=None, metavar="DIR",
                   help="read <task>.yaml robot configs from DIR (default: the bins rule's, "
                        "as in examples/robot_tasks)")
    p.add_argument("--out", default="results/robot",
                   help="folder for runs/, results.json, results.md and the plot")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: one per CPU core)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_record_options(p)
    p.set_defaults(func=cmd_robot)

    text = "write the robot tasks' configs by the bins rule"
    p = bench_subparsers.add_parser("robot-configs", help=text, description=text[0].upper() + text[1:] + ".")
    p.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated tasks")
    p.add_argument("--out", default="examples/robot_tasks", help="folder for <task>.yaml")
    p.set_defaults(func=cmd_robot_configs)
