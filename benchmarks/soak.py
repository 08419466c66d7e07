"""Soak test: the hardware-in-the-loop setup run for a long time, looking for slow failures.

    python benchmarks/soak.py                                  # 3 minutes at 200 Hz, planning engine
    python benchmarks/soak.py --steps 1000000 --rate 600 --duration 1800 --record   # the long soak
    python benchmarks/soak.py --backend onnxruntime --model DIR --precision int8

A simulated CartPole robot (rlfm_edge.sim_robot, its own process) on the far end of a
real pty, and the host's serial loop driving an OnlineAgent, exactly as `rlfm-edge serve`
does, with periodic statistics saves and (``--log``) an MCAP log. Recorded: steps and
episodes, deadline misses (the robot's ticks with no ACTION in time, the host's steps
slower than the control period, late policy refreshes), the host's resident memory and
open file descriptors after warm-up and at the end, and the statistics' integrity at the
end: the saved file reloads equal to the live counts, and every dynamics step the robot
took is one transition on the host.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    """Resident memory of this process now (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def soak(args) -> dict:
    from rlfm_edge.inference import make_engine
    from rlfm_edge.logs import read_statistics
    from rlfm_edge.runtime import RobotConfig
    from rlfm_edge.runtime.serial_loop import SerialAgentLoop
    from rlfm_edge.serial.link import SerialLink
    from rlfm_edge.sim_robot import CARTPOLE_CONFIG, spawn
    from rlfm_edge.stats import CountStats

    work = Path(args.workdir or tempfile.mkdtemp(prefix="rlfm-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    stats_path, log_path = work / "stats.npz", work / "logs"
    for p in (stats_path, stats_path.with_name("stats.npz.prev")):
        p.unlink(missing_ok=True)
    shutil.rmtree(log_path, ignore_errors=True)
    config = RobotConfig.from_dict({
        **CARTPOLE_CONFIG, "control_period_s": 1.0 / args.rate,
        "statistics": {"path": str(stats_path), "save_every_s": args.save_every_s},
        "log": str(log_path) if args.log else None})
    kw = {} if args.backend == "planning" else {"model": args.model, "precision": args.precision}
    agent = config.make_agent(make_engine(args.backend, **kw))
    port, summary = work / "ttyROBOT", work / "robot.json"
    summary.unlink(missing_ok=True)
    robot = spawn(port, episodes=10**9, summary=summary, rate_hz=args.rate,
                  max_episode_steps=args.max_episode_steps, seed=args.seed)
    link = SerialLink(str(port), 115200, backoff_initial_s=0.02, backoff_max_s=0.5)
    loop = SerialAgentLoop(link, agent)
    t0 = time.monotonic()
    samples = []
    start = None
    try:
        while True:
            loop.run(duration_s=1.0)
            elapsed = time.monotonic() - t0
            steps = agent.counters.steps
            samples.append((round(elapsed, 1), steps, round(rss_mb(), 1), open_fds()))
            if start is None and elapsed >= args.warmup_s:
                start = samples[-1]
            if (args.steps and steps >= args.steps) or elapsed >= args.duration:
                break
            if robot.poll() is not None:
                raise RuntimeError(f"the simulated robot exited early (code {robot.returncode})")
    finally:
        robot.send_signal(signal.SIGINT)  # the robot stops and writes its counters
        try:
            robot.wait(timeout=30)
        except Exception:  # noqa: BLE001 - a robot that ignores SIGINT is killed
            robot.kill()
            robot.wait()
        link.close()
    wall = time.monotonic() - t0
    end = samples[-1]  # taken while the link and robot were still up
    agent.close()
    after_close_fds = open_fds()
    c = agent.counters
    robot_counters = json.loads(summary.read_text()) if summary.exists() else {}
    saved = CountStats.load(stats_path)
    start = start or samples[0]
    result = {
        "backend": agent.engine.backend, "precision": agent.engine.precision, "rate_hz": args.rate,
        "wall_s": round(wall, 1), "steps": c.steps, "transitions": c.transitions,
        "episodes": loop.counters.episodes, "steps_per_s": round(c.steps / wall, 1),
        "robot_ticks": robot_counters.get("ticks"),
        "robot_missed_ticks": robot_counters.get("missed_ticks"),
        "robot_overruns": robot_counters.get("overruns"),
        "robot_actions_applied": robot_counters.get("actions_applied"),
        "host_step_overruns": c.step_overruns, "late_refreshes": c.late_refreshes,
        "refreshes": c.refreshes, "refresh_failures": c.refresh_failures,
        "saves": c.saves, "save_failures": c.save_failures,
        "rss_mb_start": start[2], "rss_mb_end": end[2], "rss_at_s": start[0],
        "fds_start": start[3], "fds_end": end[3], "fds_after_close": after_close_fds,
        "saved_equals_live": saved == agent.stats,
        "lost_steps": (robot_counters.get("actions_applied", c.transitions) - c.transitions),
        "frames_dropped": link.decoder.counters.dropped,
        "reconnects": link.counters.disconnects,
        "samples": samples,
    }
    if args.log:
        result["log_replays_to_live"] = read_statistics(log_path) == agent.stats
    return result


def _table(r: dict) -> str:
    rows = [
        ("run", f"{r['wall_s']:.0f} s, {r['steps']:,} steps ({r['steps_per_s']:.0f}/s), "
                f"{r['episodes']:,} episodes, {r['backend']}/{r['precision']} at {r['rate_hz']:g} Hz"),
        ("deadline misses: robot ticks with no ACTION in time",
         f"{r['robot_missed_ticks']} of {r['robot_ticks']:,}"),
        ("deadline misses: host steps over the control period", f"{r['host_step_overruns']}"),
        ("late policy refreshes (over one tick)", f"{r['late_refreshes']} of {r['refreshes']}"),
        ("resident memory (MB), after warm-up -> end", f"{r['rss_mb_start']} -> {r['rss_mb_end']} "
                                                       f"(warm-up {r['rss_at_s']} s)"),
        ("open file descriptors, after warm-up -> end -> after close",
         f"{r['fds_start']} -> {r['fds_end']} -> {r['fds_after_close']}"),
        ("statistics saves (failures)", f"{r['saves']} ({r['save_failures']})"),
        ("saved statistics reload equal to the live counts", "yes" if r["saved_equals_live"] else "NO"),
        ("robot steps not counted on the host (at most the one in flight at the stop)",
         f"{r['lost_steps']}"),
    ]
    if "log_replays_to_live" in r:
        rows.append(("MCAP log replays to the live counts", "yes" if r["log_replays_to_live"] else "NO"))
    return "\n".join(["| measure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=180.0, help="seconds (upper bound)")
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: duration only)")
    p.add_argument("--rate", type=float, default=200.0, help="robot control rate, Hz")
    p.add_argument("--max-episode-steps", type=int, default=500)
    p.add_argument("--backend", default="planning")
    p.add_argument("--model", default=None)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--save-every-s", type=float, default=10.0)
    p.add_argument("--warmup-s", type=float, default=10.0, help="memory/fd baseline taken after this")
    p.add_argument("--log", action="store_true", help="also write (and check) an MCAP log")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None)
    p.add_argument("--out", default="results/soak/summary.json")
    p.add_argument("--record", action="store_true", help="write the table into BENCHMARKS.md")
    args = p.parse_args(argv)
    # the robot stops and writes its counters on SIGINT; a shell's background job would hand
    # it SIGINT ignored, so give the child a default disposition to inherit
    signal.signal(signal.SIGINT, signal.default_int_handler)
    result = soak(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    table = _table(result)
    from rlfm_edge.bench.report import print_and_record

    print_and_record(table, ROOT / "BENCHMARKS.md" if args.record else None, "Reliability: soak",
                     __file__, [a for a in (argv or sys.argv[1:]) if a != "--record"])
    ok = result["saved_equals_live"] and result.get("log_replays_to_live", True) \
        and result["save_failures"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
