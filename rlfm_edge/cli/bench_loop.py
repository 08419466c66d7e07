"""`rlfm-edge bench loop`: the robot loop's timing and memory, the edge runtime's targets.

Three measurements: (1) ``OnlineAgent.step`` latency and tick jitter in a loop paced at
--rate Hz for --duration seconds, policy refreshed in the background; (2) RSS at the start
and end of --memory-steps free-running steps; (3) serial round trips (OBSERVATION out,
ACTION back) over a real pty, against the time the same bytes take on a wire at --baud. A
pty does not emulate the baud rate, so (3) measures the software's share of the round trip.
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import tempfile
import threading
import time
import timeit
import tty
from pathlib import Path

import numpy as np

from rlfm_edge.cli.bench import add_record_options, record
from rlfm_edge.cli.serve import add_engine_options, engine_from_args, positive


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class _Robot:
    """A synthetic robot: a bounded random walk in [-1, 1]^d, episodes of ``horizon`` steps."""

    def __init__(self, dims: int, horizon: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.x = np.zeros(dims)
        self.horizon = horizon
        self.t = 0

    def next(self, action: int):
        """(observation, reward, episode_end)."""
        self.x = np.clip(self.x + self.rng.normal(0, 0.2, self.x.size) + 0.05 * (action - 1),
                         -1, 1)
        self.t += 1
        return self.x.tolist(), float(self.rng.random() < 0.5), self.t % self.horizon == 0


def _discretizer(states: int):
    from rlfm_edge.discretize import Discretizer

    bins = round(states ** 0.25)
    if bins ** 4 != states:
        raise ValueError(f"--states: expected a fourth power (4 dimensions), e.g. 256, got {states}")
    return Discretizer.uniform([-1.0] * 4, [1.0] * 4, bins)


def _make_agent(args, engine):
    from rlfm_edge.runtime import OnlineAgent

    return OnlineAgent(_discretizer(args.states), engine, horizon=args.horizon,
                       n_actions=args.actions, deadline_s=1.0 / args.rate, seed=args.seed)


def _wait_until(tick: float) -> float:
    """Sleep to just before ``tick``, spin the rest; return the time the wait ended."""
    while (now := time.perf_counter()) < tick:
        time.sleep(max(0.0, tick - now - 2e-4) if tick - now > 3e-4 else 0)
    return now


def pacing_floor(rate: float, call=lambda: None, ticks: int = 500) -> np.ndarray:
    """Seconds ``call()`` takes when timed like ``step`` at ``rate``: the platform's share.

    After each sleep the caches, branch predictors and (on a VM) the vCPU are cold, so a call
    is measured slower than back to back: a no-op call gives the timer's floor, and a short
    piece of pure Python (the discretizer, the first thing ``step`` runs) what cold code
    costs. The step's figures read against these.
    """
    period = 1.0 / rate
    out = np.empty(ticks)
    next_tick = time.perf_counter() + period
    for i in range(ticks):
        _wait_until(next_tick)
        t0 = time.perf_counter()
        call()
        out[i] = time.perf_counter() - t0
        next_tick += period
    return out


def back_to_back_s(call, number: int = 10_000) -> float:
    """Seconds per ``call()`` in a tight loop (best of 3), where the caches stay warm."""
    return min(timeit.repeat(call, number=number, repeat=3)) / number


def paced_loop(args, engine) -> dict:
    agent = _make_agent(args, engine)
    robot = _Robot(4, args.horizon, args.seed)
    period = 1.0 / args.rate
    n = int(args.duration * args.rate)
    latency, jitter = np.empty(n), np.empty(n)
    obs, reward, a = robot.x.tolist(), None, 0
    agent.wait_refreshed(timeout=30)
    next_tick = time.perf_counter() + period
    for i in range(n):
        jitter[i] = _wait_until(next_tick) - next_tick
        t0 = time.perf_counter()
        a = agent.step(obs, reward)
        latency[i] = time.perf_counter() - t0
        obs, reward, end = robot.next(a)
        if end:
            agent.end_episode()
            reward = None
        next_tick += period
    c = agent.counters
    agent.close(save=False)
    return {"latency": latency, "jitter": jitter, "steps": n, "refreshes": c.refreshes,
            "late_refreshes": c.late_refreshes, "step_overruns": c.step_overruns,
            "last_refresh_latency_s": c.last_refresh_latency_s,
            "late_ticks": int((jitter > period).sum())}


def memory_run(args, engine) -> dict:
    agent = _make_agent(args, engine)
    robot = _Robot(4, args.horizon, args.seed + 1)
    obs, reward = robot.x.tolist(), None
    samples = []
    warmup = min(10_000, args.memory_steps // 10)
    t0 = time.perf_counter()
    for i in range(args.memory_steps + warmup):
        if i == warmup:
            start = rss_mib()
            t0 = time.perf_counter()
        if i >= warmup and (i - warmup) % max(1, args.memory_steps // 20) == 0:
            samples.append(rss_mib())
        a = agent.step(obs, reward)
        obs, reward, end = robot.next(a)
        if end:
            agent.end_episode()
            reward = None
    elapsed = time.perf_counter() - t0
    end_rss = rss_mib()
    stats_mib = sum(x.nbytes for x in (agent.stats.n_sas, agent.stats.n_sa,
                                       agent.stats.reward_sum, agent.stats.reward_sq_sum)) / 2**20
    agent.close(save=False)
    return {"steps": args.memory_steps, "rss_start_mib": start, "rss_end_mib": end_rss,
            "rss_max_mib": max(samples + [end_rss]), "stats_mib": stats_mib,
            "steps_per_s": args.memory_steps / elapsed}


def serial_rtt(args) -> dict:
    from rlfm_edge.serial.link import SerialLink
    from rlfm_edge.serial.protocol import Action, FrameDecoder, Observation, encode_frame

    master, slave = os.openpty()
    tty.setraw(slave)
    link_path = Path(tempfile.mkdtemp()) / "ttyBENCH"
    os.symlink(os.ttyname(slave), link_path)
    obs = Observation((0.1, -0.2, 0.3, -0.4), 1.0)
    frame_bytes = len(encode_frame(obs)) + len(encode_frame(Action(0, 1)))
    wire_s = frame_bytes * 10 / args.baud  # 8N1: 10 bits per byte
    rtt = np.empty(args.rtt_count)
    done = threading.Event()

    def host() -> None:
        with SerialLink(str(link_path), args.baud, heartbeat_s=0) as link:
            while not done.is_set():
                msg = link.receive(timeout=0.05)
                if isinstance(msg, Observation):
                    link.send(Action(msg.seq, 1))

    thread = threading.Thread(target=host, daemon=True)
    thread.start()
    time.sleep(0.3)
    decoder = FrameDecoder()
    try:
        for i in range(args.rtt_count):
            t0 = time.perf_counter()
            os.write(master, encode_frame(Observation(obs.observation, 1.0, seq=i & 0xFFFF)))
            got = False
            while not got:
                got = any(isinstance(m, Action) for m in decoder.feed(os.read(master, 256)))
            rtt[i] = time.perf_counter() - t0
    finally:
        done.set()
        thread.join(2)
        os.close(master)
        os.close(slave)
        link_path.unlink()
    return {"rtt": rtt, "wire_s": wire_s, "frame_bytes": frame_bytes}


def _us(x: float) -> str:
    return f"{x * 1e6:.0f} us"


def plot(loop: dict, rtt: dict, path: Path) -> Path:
    from rlfm_edge.bench.report import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, data, title in ((axes[0], loop["latency"], "OnlineAgent.step latency"),
                            (axes[1], loop["jitter"], "tick start jitter (late by)"),
                            (axes[2], rtt["rtt"], "pty round trip (obs -> action)")):
        us = data * 1e6
        ax.hist(us, bins=np.logspace(np.log10(max(us.min(), 0.5)), np.log10(us.max() + 1), 60))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("microseconds")
        ax.set_title(title)
        ax.axvline(np.percentile(us, 99), color="tab:red", ls="--", label="p99")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cmd_loop(args: argparse.Namespace) -> int:
    engine = engine_from_args(args, (args.states, args.actions))
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    loop = paced_loop(args, engine)
    ticks = max(10, min(500, int(args.duration * args.rate)))
    floor = pacing_floor(args.rate, ticks=ticks)
    discretize = functools.partial(_discretizer(args.states).state, [0.1, -0.2, 0.3, -0.4])
    cold_python = pacing_floor(args.rate, discretize, ticks)
    warm_python = back_to_back_s(discretize)
    mem = memory_run(args, engine)
    rtt = serial_rtt(args)
    elapsed = time.perf_counter() - t0
    load_after = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = plot(loop, rtt, out / "loop_jitter.png")
    lat, jit, r = loop["latency"], loop["jitter"], rtt["rtt"]
    period = 1.0 / args.rate
    table = (
        "| measure | value | target |\n|---|---|---|\n"
        f"| `OnlineAgent.step` at {args.rate:g} Hz, S={args.states}, A={args.actions}, "
        f"{loop['steps']:,} steps: median / p99 / max | {_us(np.median(lat))} / "
        f"{_us(np.percentile(lat, 99))} / {_us(lat.max())} | p99 <= 100 us |\n"
        f"| the same timing around a no-op Python call, {floor.size} ticks, agent closed: median "
        f"/ p99 / max (platform floor) | {_us(np.median(floor))} / {_us(np.percentile(floor, 99))} / "
        f"{_us(floor.max())} | - |\n"
        f"| the same timing around the discretizer alone (`Discretizer.state`, {warm_python * 1e6:.1f} "
        f"us back to back), {cold_python.size} ticks, agent closed: median / p99 / max (cold pure "
        f"Python) | {_us(np.median(cold_python))} / {_us(np.percentile(cold_python, 99))} / "
        f"{_us(cold_python.max())} | - |\n"
        f"| steps over the {_us(period)} deadline (agent's own) | {loop['step_overruns']} | 0 |\n"
        f"| tick start jitter: median / p99 / max (OS scheduling) | {_us(np.median(jit))} / "
        f"{_us(np.percentile(jit, 99))} / {_us(jit.max())} | - |\n"
        f"| ticks started a whole period late | {loop['late_ticks']} | - |\n"
        f"| background refreshes ({engine.backend}; last took {loop['last_refresh_latency_s'] * 1e3:.1f}"
        f" ms) / late | {loop['refreshes']} / {loop['late_refreshes']} | - |\n"
        f"| RSS over {mem['steps']:,} free-running steps: start -> end (max) | "
        f"{mem['rss_start_mib']:.1f} -> {mem['rss_end_mib']:.1f} MiB ({mem['rss_max_mib']:.1f}) "
        f"| flat (statistics: {mem['stats_mib']:.2f} MiB) |\n"
        f"| free-running step rate | {mem['steps_per_s']:,.0f} steps/s | - |\n"
        f"| pty round trip, {args.rtt_count} exchanges: median / p99 / max | {_us(np.median(r))} / "
        f"{_us(np.percentile(r, 99))} / {_us(r.max())} | - |\n"
        f"| wire time of those frames ({rtt['frame_bytes']} bytes) at {args.baud} baud | "
        f"{_us(rtt['wire_s'])} | round trip within 1 ms of it |\n")
    machine = (f"{os.cpu_count()} CPU cores; load average {load_before[0]:.1f} before, "
               f"{load_after[0]:.1f} after ({elapsed:.0f} s)")
    print(table)
    print(f"{machine}; wrote {png}")
    command = shlex.join(["rlfm-edge", "bench", "loop", "--duration", f"{args.duration:g}",
                          "--rate", f"{args.rate:g}", "--states", str(args.states),
                          "--actions", str(args.actions), "--backend", args.backend,
                          "--memory-steps", str(args.memory_steps), "--rtt-count",
                          str(args.rtt_count), "--out", args.out])
    body = (f"{table}\n{machine}. A pty moves bytes without the baud-rate delay, so the round "
            f"trip is the software's share; on a real 115200-baud line add the wire time. "
            f"Histograms: `{png}`.")
    record(args, f"Robot loop: step latency, jitter, memory, serial round trip "
                 f"({args.rate:g} Hz, S={args.states})", command, body)
    return 0


def register(bench_subparsers) -> None:
    p = bench_subparsers.add_parser("loop", help="OnlineAgent.step latency and jitter, memory, "
                                    "serial round trip", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=positive(float), default=60.0,
                   help="seconds of the paced loop")
    p.add_argument("--rate", type=positive(float), default=100.0, help="control rate, Hz")
    p.add_argument("--states", type=positive(int), default=256,
                   help="discretizer states (4 dimensions, so a fourth power)")
    p.add_argument("--actions", type=positive(int), default=4, help="the robot's action count")
    p.add_argument("--horizon", type=positive(int), default=40,
                   help="horizon given to the model")
    p.add_argument("--memory-steps", type=positive(int), default=200_000,
                   help="free-running steps over which resident memory is watched")
    p.add_argument("--rtt-count", type=positive(int), default=2000,
                   help="serial round trips timed over a pty")
    p.add_argument("--baud", type=positive(int), default=115200,
                   help="baud rate whose wire time the round trips are compared with")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic robot and agent")
    p.add_argument("--out", default="results/loop", help="folder for the histogram PNG")
    add_engine_options(p)
    p.set_defaults(backend="planning")
    add_record_options(p)
    p.set_defaults(func=cmd_loop)
