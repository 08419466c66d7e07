"""Observation published -> action received, through real DDS on loopback, at a fixed rate.

Starts rlfm_agent_node in its own process (256 states: 2 dimensions x 16 bins, 4 actions),
drives it through configure/activate from a client node, then publishes one observation per
tick and the reward after each action, as a robot would, and times each observation until
its action arrives. The policy refreshes in the background while it runs. The backend
"echo" runs no agent: a plain node that answers each observation at once, the floor that DDS,
rclpy and the client set on this machine.

    python benchmarks/ros_latency.py [--messages 2000] [--rate-hz 100] [--backends echo planning torch]
    python benchmarks/ros_latency.py --record   # also writes its section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PKG_SRC = ROOT / "ros2_ws" / "src" / "rlfm_edge_ros"


def round_trips(client, messages: int, rate_hz: float) -> tuple[list[float], int]:
    """Publish one observation per tick (reward after its action) and time each until its action."""
    rng = np.random.default_rng(0)
    period = 1.0 / rate_hz
    latencies, lost = [], 0
    next_tick = time.perf_counter()
    for i in range(messages + 50):  # the first 50 warm up
        obs = rng.uniform(-1.0, 1.0, 2)
        before = len(client.actions)
        t0 = time.perf_counter()
        client.publish_observation(obs)
        if client.spin_until(lambda b=before: len(client.actions) > b, 1.0):
            if i >= 50:
                latencies.append(client.actions[-1][0] - t0)
        else:
            lost += 1
        client.publish_reward(float(rng.random()))
        if i % 50 == 49:
            client.publish_episode_end()
        next_tick += period
        client.spin_until(lambda t=next_tick: time.perf_counter() >= t, period)
    return latencies, lost


def echo_node() -> None:
    """The floor: a plain node answering each observation with an action at once, no agent.

    Same topics, message types, QoS (the agent's defaults) and executor as rlfm_agent_node, so
    what it measures is DDS, rclpy and the client on this machine. Runs until SIGINT.
    """
    import rclpy
    from rclpy.node import Node
    from rlfm_edge_ros.executor import spin
    from rlfm_edge_ros.parameters import qos_profiles
    from std_msgs.msg import Bool, Float32, Float32MultiArray, Int32

    rclpy.init()
    node = Node("rlfm_bench")
    answer = Int32(data=0)
    observation_qos, action_qos = qos_profiles()
    action = node.create_publisher(Int32, "~/action", action_qos)
    node.create_subscription(Float32MultiArray, "~/observation", lambda _: action.publish(answer),
                             observation_qos)
    node.create_subscription(Float32, "~/reward", lambda _: None, 10)
    node.create_subscription(Bool, "~/episode_end", lambda _: None, 10)
    spin(node)  # as rlfm_agent_node spins


def measure(backend: str, messages: int, rate_hz: float, context) -> dict:
    """One row: rlfm_agent_node on ``backend`` (model backends: the shipped model), or "echo"."""
    from rlfm_edge_ros.client import AgentClient

    if backend == "echo":
        args = [sys.executable, str(Path(__file__).resolve()), "--echo-node"]
    else:
        args = [sys.executable, "-m", "rlfm_edge_ros.agent_node", "--ros-args", "-r", "__node:=rlfm_bench"]
        for p in [f"backend:={backend}", "observation_dim:=2", "bins_per_dimension:=16", "n_actions:=4",
                  f"control_period_s:={1.0 / rate_hz}", "horizon:=20", "statistics.save_every_s:=null",
                  f"statistics.path:=/tmp/rlfm_ros_latency_{os.getpid()}_{backend}.npz"]:
            args += ["-p", p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PKG_SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = AgentClient(context, agent="/rlfm_bench", name="rlfm_bench_client")
    diag = {}
    try:
        if backend == "echo":
            if not client.wait_connected(timeout=60):
                raise RuntimeError("the echo node did not start")
            latencies, lost = round_trips(client, messages, rate_hz)
        else:
            state = None
            for _ in range(60):
                try:
                    state = client.get_state(timeout=1.0)
                    break
                except TimeoutError:
                    continue
            if state != "unconfigured" or not client.change_state("configure", timeout=120):
                raise RuntimeError(f"the {backend} agent did not configure")
            client.wait_connected()
            client.change_state("activate")
            latencies, lost = round_trips(client, messages, rate_hz)
            diag = client.latest_diagnostics(timeout=3.0) or {}
            client.change_state("shutdown")
            proc.wait(15)
    finally:
        client.destroy()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(15)
    lat = np.asarray(latencies) * 1e3
    return {"backend": backend, "n": lat.size, "lost": lost, "median_ms": float(np.median(lat)),
            "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()),
            "refreshes": diag.get("refreshes", "-"), "late_refreshes": diag.get("late_refreshes", "-"),
            "refresh_ms": diag.get("last_refresh_latency_ms", "-")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rate-hz", type=float, default=100.0)
    parser.add_argument("--backends", nargs="+", default=["planning", "torch"])
    parser.add_argument("--record", action="store_true", help="write the section of BENCHMARKS.md")
    parser.add_argument("--echo-node", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_node:  # the process measure("echo") starts
        sys.path.insert(0, str(PKG_SRC))
        echo_node()
        return 0

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(60 + os.getpid() % 40))
    sys.path.insert(0, str(PKG_SRC))
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    from rlfm_edge_ros.executor import executor_class

    executor = executor_class().__name__
    load_before = os.getloadavg()[0]
    rows = []
    try:
        for backend in args.backends:
            rows.append(measure(backend, args.messages, args.rate_hz, context))
            print(rows[-1], flush=True)
    finally:
        rclpy.shutdown(context=context)
    load = f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    lines = [f"Loopback DDS (Fast DDS, rclpy Jazzy wheels, the node on {executor}, the client on "
             f"SingleThreadedExecutor), "
             f"{args.rate_hz:g} Hz, 256 states x 4 actions, {platform.processor() or platform.machine()} "
             f"with {os.cpu_count()} cores (1-min load average {load}).", "",
             "| backend | messages | lost | median ms | p99 ms | max ms | refreshes (late) "
             "| last refresh ms |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        label = {"planning": "planning", "echo": "echo (no agent: the DDS + rclpy floor)"}.get(
            r["backend"], f"{r['backend']} (default model)")
        lines.append(f"| {label} | "
                     f"{r['n']} | {r['lost']} | {r['median_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{r['max_ms']:.2f} | {r['refreshes']} ({r['late_refreshes']}) | {r['refresh_ms']} |")
    body = "\n".join(lines)
    from rlfm_edge.bench.report import print_and_record

    print_and_record(body, ROOT / "BENCHMARKS.md" if args.record else None,
                     "ROS 2 node latency: observation -> action", __file__, sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
