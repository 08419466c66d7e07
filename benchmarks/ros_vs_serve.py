"""Does the ROS 2 route learn as much as `rlfm-edge serve`, and meet as many deadlines?

Both routes drive the simulated CartPole robot (rlfm_edge/sim_robot.py: its own process,
Gymnasium dynamics, the serial protocol on a real pty, a fixed control rate) with the same robot
configuration (the demo's CartPole config, ``--backend``, the run's seed, the control period
of ``--rate``), and the robot starts its episodes from the same seeds:

- serve: SerialAgentLoop on a SerialLink, as `rlfm-edge serve` runs, in a process of its own;
- ros: rlfm_serial_bridge and rlfm_agent_node, each in its own process, over DDS on loopback,
  with the node's default QoS; the node takes the robot YAML as its ``robot_config`` parameter.

The robot starts once it hears its host (``--wait-for-host``), so process start-up is not
counted. Returns and the ticks the robot waited in vain for an ACTION (``missed_ticks``: it
then repeats its observation) come from the robot's own counters; deadline misses (refreshes
and steps slower than one tick) from the agent's.

    python benchmarks/ros_vs_serve.py [--seeds 0 1 2] [--episodes 30] [--rate 100] [--backend torch]
    python benchmarks/ros_vs_serve.py --record   # also writes its section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PKG_SRC = ROOT / "ros2_ws" / "src" / "rlfm_edge_ros"


def robot_config(args, seed: int, workdir: Path) -> dict:
    from rlfm_edge.sim_robot import CARTPOLE_CONFIG

    return {**CARTPOLE_CONFIG, "seed": seed, "backend": args.backend,
            "control_period_s": 1.0 / args.rate, "statistics": {"path": str(workdir / "stats.npz")}}


def run_serve(args, seed: int, workdir: Path) -> dict:
    from rlfm_edge.runtime import RobotConfig
    from rlfm_edge.runtime.engine import make_robot_engine
    from rlfm_edge.sim_robot import serve_sim

    config = RobotConfig.from_dict(robot_config(args, seed, workdir), source="benchmark")
    agent = config.make_agent(make_robot_engine(config))
    try:
        session = serve_sim(agent, workdir / "pty", args.episodes, rate_hz=args.rate,
                            max_episode_steps=args.max_steps, seed=seed, wait_for_host=True)
    finally:
        agent.close()
    c = agent.counters
    return {"robot": session.robot, "late_refreshes": c.late_refreshes, "step_overruns": c.step_overruns,
            "refreshes": c.refreshes, "policy_waits": c.policy_waits}


def run_serve_child(args, seed: int, workdir: Path) -> dict:
    """run_serve in a process of its own, as the node has: the agents share no interpreter."""
    out = subprocess.run([sys.executable, __file__, "--serve-child", str(seed), str(workdir),
                          "--episodes", str(args.episodes), "--rate", str(args.rate),
                          "--max-steps", str(args.max_steps), "--backend", args.backend],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _wait_state(client, proc, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return client.get_state(timeout=1.0)
        except TimeoutError:
            continue
    raise RuntimeError("the agent node did not come up")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_ros(args, seed: int, workdir: Path, context) -> dict:
    from rlfm_edge_ros.client import AgentClient

    from rlfm_edge.sim_robot import spawn

    config = workdir / "robot.yaml"
    config.write_text(json.dumps(robot_config(args, seed, workdir)))
    node = f"rlfm_bench_{seed}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PKG_SRC), os.environ.get("PYTHONPATH", "")])}
    log = open(workdir / "node.log", "w")  # noqa: SIM115 - closed below
    agent = subprocess.Popen([sys.executable, "-m", "rlfm_edge_ros.agent_node", "--ros-args", "-r",
                              f"__node:={node}", "-p", f"robot_config:={config}"],
                             env=env, stdout=log, stderr=subprocess.STDOUT)
    client = AgentClient(context, agent=f"/{node}", name=f"rlfm_bench_client_{seed}")
    robot = bridge = None
    try:
        _wait_state(client, agent)
        if not (client.change_state("configure", timeout=300) and client.change_state("activate")):
            raise RuntimeError(f"the agent node did not start: {(workdir / 'node.log').read_text()}")
        port, summary = workdir / "ttyROBOT", workdir / "robot.json"
        robot = spawn(port, args.episodes, summary, args.rate, args.max_steps, seed, wait_for_host=True)
        bridge = subprocess.Popen([sys.executable, "-m", "rlfm_edge_ros.serial_bridge", "--ros-args",
                                   "-p", f"port:={port}", "-p", f"agent:=/{node}",
                                   "-p", "observation_dim:=4"], env=env, stdout=log, stderr=subprocess.STDOUT)
        robot.wait(timeout=args.episodes * args.max_steps / args.rate * 10 + 120)
        diag = client.latest_diagnostics(timeout=5.0) or {}
        client.change_state("shutdown")
        return {"robot": json.loads(summary.read_text()), "late_refreshes": int(diag["late_refreshes"]),
                "step_overruns": int(diag["step_overruns"]), "refreshes": int(diag["refreshes"]),
                "policy_waits": int(diag["policy_waits"]),
                "dropped": sum(int(diag[k]) for k in ("dropped_observations", "dropped_rewards",
                                                       "missing_rewards", "dropped_terminals"))}
    finally:
        client.destroy()
        for proc in (bridge, robot, agent):
            if proc is not None:
                _stop(proc)
        log.close()


def row(route: str, seed: int, r: dict) -> dict:
    returns = np.asarray(r["robot"]["returns"], float)
    k = min(10, max(1, returns.size // 3))
    return {"route": route, "seed": seed, "episodes": returns.size, "first": returns[:k].mean(),
            "last": returns[-k:].mean(), "mean": returns.mean(), "k": k,
            "misses": r["late_refreshes"] + r["step_overruns"], "late": r["late_refreshes"],
            "overruns": r["step_overruns"], "refreshes": r["refreshes"], "waits": r["policy_waits"],
            "missed_ticks": r["robot"]["missed_ticks"], "steps": r["robot"]["actions_applied"],
            "dropped": r.get("dropped", 0)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--rate", type=float, default=100.0, help="the robot's control rate, Hz")
    p.add_argument("--max-steps", type=int, default=200, help="episode length cap")
    p.add_argument("--backend", default="torch")
    p.add_argument("--record", action="store_true", help="write the section of BENCHMARKS.md")
    p.add_argument("--serve-child", nargs=2, metavar=("SEED", "WORKDIR"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_child:  # the process run_serve_child starts
        print(json.dumps(run_serve(args, int(args.serve_child[0]), Path(args.serve_child[1]))))
        return 0

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(60 + os.getpid() % 40))
    sys.path.insert(0, str(PKG_SRC))
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    load_before = os.getloadavg()[0]
    rows = []
    try:
        for i, seed in enumerate(args.seeds):
            for route in ("serve", "ros")[::1 if i % 2 == 0 else -1]:
                with tempfile.TemporaryDirectory(prefix=f"rlfm-{route}-") as tmp:
                    result = (run_serve_child(args, seed, Path(tmp)) if route == "serve"
                              else run_ros(args, seed, Path(tmp), context))
                rows.append(row(route, seed, result))
                print(rows[-1], flush=True)
    finally:
        rclpy.shutdown(context=context)
    k = rows[0]["k"]
    lines = [f"Simulated CartPole robot (pty, {args.rate:g} Hz, at most {args.max_steps} steps per "
             f"episode), {args.episodes} episodes per run, backend {args.backend}, the same robot "
             f"config on both routes; {os.cpu_count()} CPU cores shared with other work (1-min load "
             f"average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after).", "",
             f"| route | seed | return, first {k} episodes | last {k} | all | deadline misses "
             f"(late refreshes + step overruns) | robot ticks without an action | steps | refreshes "
             f"| dropped input |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["seed"], r["route"] != "serve")):
        lines.append(f"| {r['route']} | {r['seed']} | {r['first']:.1f} | {r['last']:.1f} | "
                     f"{r['mean']:.1f} | {r['misses']} ({r['late']} + {r['overruns']}) | "
                     f"{r['missed_ticks']} | {r['steps']} | {r['refreshes']} | {r['dropped']} |")
    for route in ("serve", "ros"):
        rs = [r for r in rows if r["route"] == route]
        lines.append(f"| **{route}, mean** | | {np.mean([r['first'] for r in rs]):.1f} | "
                     f"{np.mean([r['last'] for r in rs]):.1f} | {np.mean([r['mean'] for r in rs]):.1f} | "
                     f"{np.mean([r['misses'] for r in rs]):.1f} | "
                     f"{np.mean([r['missed_ticks'] for r in rs]):.1f} | | | |")
    from rlfm_edge.bench.report import print_and_record

    print_and_record("\n".join(lines), ROOT / "BENCHMARKS.md" if args.record else None,
                     "ROS 2 route vs serve: learning and deadlines on the simulated CartPole robot",
                     __file__, sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
