"""Transitions lost per kill -9: `rlfm-edge serve` SIGKILLed at random moments, restarted, again.

    python benchmarks/kill9_loss.py --kills 25 --record      # the figure in BENCHMARKS.md
    python benchmarks/kill9_loss.py --kills 4 --json out.json

A simulated CartPole robot (rlfm_edge.sim_robot, its own process) runs on a real pty at
--rate Hz and notes the time of every ACTION it accepts. `rlfm-edge serve` (a real process,
planning backend, statistics saved every --save-every-s, a log folder) is started, left to
serve for a random time after its first step, and killed with SIGKILL; then started again,
--kills times in all. Each start writes its own log segment.

Checked after each kill: the statistics file loads and holds at least the transitions it held
just before the kill. Checked at the end, per run: its log segment holds every step the robot
saw answered more than the crash-loss bound (rlfm_edge.logs.FLUSH_EVERY_S plus two
bookkeeper ticks) before the kill. Measured: the steps the robot saw answered that the
segment lacks, the transitions that kill lost from the log. Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

BOOKKEEPER_TICK_S = 0.05  # OnlineAgent's bookkeeper wakes at least this often


def loss_bound_s() -> float:
    from rlfm_edge.logs import FLUSH_EVERY_S

    return FLUSH_EVERY_S + 2 * BOOKKEEPER_TICK_S


def _on_disk(path: Path) -> int:
    """Transitions in the statistics file (or its last good copy); 0 when there is none."""
    from rlfm_edge.stats import CountStats

    if not path.exists() and not path.with_name(path.name + ".prev").exists():
        return 0
    return CountStats.load_with_fallback(path)[0].n_transitions


def _wait_for_new_segment(folder: Path, known: set, proc: subprocess.Popen, err: Path,
                          timeout_s: float = 120.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while True:
        new = set(folder.glob("*.mcap")) - known if folder.is_dir() else set()
        if new:
            return new.pop()
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"serve exited ({proc.returncode}) or never stepped:\n"
                               f"{err.read_text()[-3000:]}")
        time.sleep(0.02)


def run(kills: int, work: Path, rate: float, save_every_s: float, alive_s: tuple[float, float],
        seed: int, slack_s: float = 0.0) -> dict:
    from rlfm_edge.sim_robot import CARTPOLE_CONFIG, spawn

    rng = np.random.default_rng(seed)
    work.mkdir(parents=True, exist_ok=True)
    stats, logs, port, trace = work / "stats.npz", work / "logs", work / "ttyROBOT", work / "trace.txt"
    config = work / "robot.yaml"
    config.write_text(yaml.safe_dump({
        **CARTPOLE_CONFIG, "control_period_s": 1.0 / rate,
        "statistics": {"path": str(stats), "save_every_s": save_every_s}, "log": str(logs)}))
    robot = spawn(port, episodes=10**9, rate_hz=rate, max_episode_steps=200, seed=seed,
                  trace=trace)
    runs = []
    try:
        for k in range(kills):
            err = work / f"serve_{k}.err"
            known = set(logs.glob("*.mcap")) if logs.is_dir() else set()
            with open(err, "w") as stderr:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "rlfm_edge", "serve", "--port", str(port), "--config",
                     str(config), "--backend", "planning"],
                    stdout=subprocess.DEVNULL, stderr=stderr)
            try:
                segment = _wait_for_new_segment(logs, known, proc, err)
                alive = float(rng.uniform(*alive_s))
                time.sleep(alive)
                before = _on_disk(stats)
                kill_ns = time.time_ns()
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                dead_ns = time.time_ns()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            after = _on_disk(stats)  # raises if neither copy loads
            runs.append({"segment": str(segment), "alive_s": alive, "kill_ns": kill_ns,
                         "dead_ns": dead_ns, "stats_before": before, "stats_after": after})
    finally:
        robot.send_signal(signal.SIGINT)  # it writes the trace as it stops
        try:
            robot.wait(timeout=30)
        except subprocess.TimeoutExpired:
            robot.kill()
            robot.wait()
    return analyse(runs, np.array([int(t) for t in trace.read_text().split()], np.int64), slack_s)


def analyse(runs: list[dict], accepted_ns: np.ndarray, slack_s: float = 0.0) -> dict:
    """Per run: the robot's accepted actions in its window, the steps its segment logged,
    the loss, and the checks (``slack_s`` added to the bound for the log check only)."""
    from rlfm_edge.logs import read_steps

    logging.getLogger("rlfm_edge.logs").setLevel(logging.ERROR)  # every segment is cut short
    bound_ns = int((loss_bound_s() + slack_s) * 1e9)
    start = 0
    for r in runs:
        end = r["dead_ns"] + 300_000_000  # the robot reads the last ACTION a moment later
        window = accepted_ns[(accepted_ns > start) & (accepted_ns <= end)]
        start = end
        # one step per accepted ACTION; a terminal end's extra self-loop records carry no observation
        logged = sum(1 for s in read_steps(r["segment"]) if s.observation.size)
        r["accepted"] = int(window.size)
        r["logged"] = logged
        r["lost"] = int(window.size) - logged
        r["accepted_older_than_bound"] = int((window <= r["kill_ns"] - bound_ns).sum())
        r["ok_log"] = logged >= r["accepted_older_than_bound"]
        r["ok_stats"] = r["stats_after"] >= r["stats_before"]
    lost = [r["lost"] for r in runs]
    return {"bound_s": loss_bound_s(), "runs": runs, "kills": len(runs),
            "load_average": os.getloadavg()[0],
            "lost_mean": float(np.mean(lost)), "lost_max": int(max(lost)),
            "lost_min": int(min(lost)), "steps": int(sum(r["accepted"] for r in runs)),
            "ok": all(r["ok_log"] and r["ok_stats"] for r in runs)}


def table(result: dict, rate: float, save_every_s: float, alive_s: tuple[float, float]) -> str:
    bound_steps = result["bound_s"] * rate
    lost = np.array([r["lost"] for r in result["runs"]])
    fails = [i for i, r in enumerate(result["runs"]) if not (r["ok_log"] and r["ok_stats"])]
    return (
        "| measure | value |\n|---|---|\n"
        f"| kills (SIGKILL of `rlfm-edge serve`, {alive_s[0]:g}-{alive_s[1]:g} s after its first "
        f"step) | {result['kills']} |\n"
        f"| steps answered, all runs (robot's count) | {result['steps']} |\n"
        f"| transitions lost from the log per kill: mean / median / max | {lost.mean():.1f} / "
        f"{np.median(lost):.0f} / {lost.max()} |\n"
        f"| the bound: {result['bound_s']:.2f} s of steps at {rate:g} Hz | {bound_steps:.0f} |\n"
        f"| kills after which the statistics file held fewer transitions than before | "
        f"{sum(not r['ok_stats'] for r in result['runs'])} |\n"
        f"| kills whose log lacked a step older than the bound | "
        f"{sum(not r['ok_log'] for r in result['runs'])} |\n"
        f"\nA kill loses the steps since the log's last flush (every FLUSH_EVERY_S = "
        f"{result['bound_s'] - 2 * BOOKKEEPER_TICK_S:g} s), about half a period on average. The "
        f"statistics file (saved every {save_every_s:g} s here, 30 s by default) can be further "
        f"behind; `rlfm-edge replay` rebuilds it from the logs. {os.cpu_count()} CPU cores, load average "
        f"{result['load_average']:.1f} during the run"
        + (f"; FAILED runs {fails}" if fails else "") + ".")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=25)
    p.add_argument("--rate", type=float, default=100.0, help="the robot's control rate, Hz")
    p.add_argument("--save-every-s", type=float, default=1.0, help="statistics save period")
    p.add_argument("--alive", type=float, nargs=2, default=(0.5, 4.0), metavar=("MIN", "MAX"),
                   help="seconds serve runs after its first step before the kill (uniform)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--slack-s", type=float, default=0.0,
                   help="added to the bound in the log check (thread scheduling on a loaded machine)")
    p.add_argument("--workdir", default=None, help="default: a new temporary folder")
    p.add_argument("--json", default=None, help="write every run's numbers here")
    p.add_argument("--record", nargs="?", const="BENCHMARKS.md", default=None, metavar="FILE")
    args = p.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rlfm-kill9-"))
    alive = (args.alive[0], args.alive[1])
    result = run(args.kills, work, args.rate, args.save_every_s, alive, args.seed, args.slack_s)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    from rlfm_edge.bench.report import print_and_record

    print_and_record(table(result, args.rate, args.save_every_s, alive), args.record,
                     "Reliability: transitions lost per kill -9", __file__,
                     ["--kills", str(args.kills), "--rate", f"{args.rate:g}", "--save-every-s",
                      f"{args.save_every_s:g}", "--alive", f"{alive[0]:g}", f"{alive[1]:g}",
                      "--seed", str(args.seed)])
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
