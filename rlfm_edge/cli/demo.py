"""`rlfm-edge demo`: the whole robot loop on one machine.

A simulated cart-pole robot (Gymnasium CartPole-v1 dynamics, its own process) speaks the
serial protocol on a pseudo-terminal; the agent drives it through SerialLink exactly as
`rlfm-edge serve` drives a real robot, learning live. The same run with a uniformly random
policy is the baseline. Writes learning_curve.png and summary.json to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np

from rlfm_edge.cli.config_flags import add_engine_options, add_set_option, overrides
from rlfm_edge.cli.serve import positive


def _progress(label: str, total: int, enabled: bool):
    """A tqdm bar and the on_episode callback that feeds it."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit="ep", disable=not enabled, dynamic_ncols=True)
    start = time.monotonic()
    steps = [0]

    def on_episode(ep, refreshes=None) -> None:
        if ep.cut:
            return
        steps[0] += ep.steps
        post = {"return": f"{ep.ret:.0f}", "steps/s": f"{steps[0] / (time.monotonic() - start):.0f}"}
        if refreshes is not None:
            post["refreshes"] = refreshes()
        bar.set_postfix(post, refresh=False)
        bar.update(1)

    return bar, on_episode


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each point (fewer at the start)."""
    c = np.cumsum(np.insert(np.asarray(x, float), 0, 0.0))
    idx = np.arange(1, len(x) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_curves(curves: dict[str, np.ndarray], path: Path, window: int, title: str) -> Path:
    from rlfm_edge.bench.report import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for (label, returns), color in zip(curves.items(), ("tab:blue", "tab:gray"), strict=False):
        ep = np.arange(1, len(returns) + 1)
        ax.plot(ep, returns, ".", color=color, alpha=0.35)
        ax.plot(ep, moving_average(returns, window), "-", color=color,
                label=f"{label} (moving average of {window})")
    ax.set_xlabel("episode")
    ax.set_ylabel("episode return (steps balanced)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def cmd_demo(args: argparse.Namespace) -> int:
    from rlfm_edge.interrupt import Interrupted

    try:
        return _demo(args)
    except Interrupted as stop:
        log = Path(args.out) / "agent_log"
        kept = f"; the agent's MCAP log is in {log}" if args.log and log.is_dir() else ""
        raise stop.saying(f"the plot and summary.json are written at the end: nothing in "
                          f"{args.out} yet{kept}; run the command again") from None


def _demo(args: argparse.Namespace) -> int:
    from rlfm_edge.runtime import RandomActor, RobotConfig
    from rlfm_edge.runtime.engine import make_robot_engine
    from rlfm_edge.sim_robot import CARTPOLE_CONFIG, serve_sim

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = RobotConfig.from_dict({**CARTPOLE_CONFIG, "seed": args.seed,
                                    "control_period_s": 1.0 / args.rate}, source="demo config")
    config = config.updated({**overrides(args, ("backend", "precision", "model")),
                             **({"log": str(out / "agent_log")} if args.log else {})},
                            source="command line")
    engine = make_robot_engine(config)
    agent = config.make_agent(engine)
    print(f"demo: {agent!r} ({engine.backend}, {engine.precision}) vs a simulated CartPole robot "
          f"over a pty, {args.episodes} episodes at {args.rate:g} Hz, at most {args.max_steps} "
          f"steps each")
    sim = {"episodes": args.episodes, "rate_hz": args.rate, "max_episode_steps": args.max_steps,
           "seed": args.seed}
    bar, on_episode = _progress("agent ", args.episodes, not args.no_progress)
    try:
        learned = serve_sim(agent, out / "pty_agent", on_episode=lambda ep: on_episode(
            ep, lambda: agent.counters.refreshes), **sim)
    finally:
        bar.close()
        agent.close()
    counters = agent.counters
    bar, on_episode = _progress("random", args.episodes, not args.no_progress)
    try:
        baseline = serve_sim(RandomActor(config.n_actions, config.discretizer.n_dims, args.seed),
                             out / "pty_random", on_episode=on_episode, **sim)
    finally:
        bar.close()

    curves = {name: np.array([e.ret for e in session.episodes if not e.cut])
              for name, session in (("agent", learned), ("random", baseline))}
    window = max(1, min(10, args.episodes // 4))
    plot_curves(curves, out / "learning_curve.png", window,
                      f"CartPole over a serial pty: {engine.backend} agent vs random")
    k = max(1, min(10, args.episodes // 4))
    summary = {
        "out": str(out),
        "config": {**sim, "backend": engine.backend, "precision": engine.precision,
                   "model": args.model, "horizon": config.horizon, "n_states": agent.n_states,
                   "machine": platform.machine(), "python": platform.python_version()},
        "runs": {},
    }
    for name, session in (("agent", learned), ("random", baseline)):
        r = curves[name]
        steps = int(sum(e.steps for e in session.episodes))
        summary["runs"][name] = {
            "returns": r.tolist(), "mean_return": float(r.mean()) if r.size else math.nan,
            f"mean_return_first_{k}": float(r[:k].mean()) if r.size else math.nan,
            f"mean_return_last_{k}": float(r[-k:].mean()) if r.size else math.nan,
            "steps": steps, "wall_s": round(session.wall_s, 2),
            "steps_per_s": round(steps / session.wall_s, 1) if session.wall_s else math.nan,
            "frames_dropped": session.link.decoder.counters.dropped,
            "repeats_answered": session.loop.counters.repeats_answered,
            "robot": session.robot,
        }
    summary["runs"]["agent"]["agent_counters"] = {
        k2: v for k2, v in vars(counters).items() if not isinstance(v, float) or math.isfinite(v)}
    summary["counter_meanings"] = COUNTER_MEANINGS
    if config.log_path is not None:
        summary["mcap_log"] = str(config.log_path)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(summary_text(summary, k, 1000.0 / args.rate))
    return 0


# What the demo's counters mean (names as in summary.json), printed beside them.
COUNTER_MEANINGS = {
    "refreshes": "policies recomputed from the statistics by the background thread",
    "late_refreshes": "refreshes slower than one control tick; the agent kept acting on the "
                      "previous policy meanwhile (a busy CPU, or a model slower than the tick)",
    "clipped_values": "observation values outside the discretizer's [low, high], counted in the "
                      "end bins (CartPole's velocities leave the range as the pole falls)",
    "repeats_answered": "observations the robot sent again because no ACTION came within its "
                        "tick; answered with the action already chosen, not counted twice",
    "frames_dropped": "serial frames the host discarded (bad CRC, duplicates, noise)",
}


def summary_text(summary: dict, k: int, tick_ms: float) -> str:
    """The demo's closing lines: the returns, each counter with what it means, the files."""
    a, b = summary["runs"]["agent"], summary["runs"]["random"]
    values = {**a["agent_counters"], **a}
    rows = [
        f"agent: mean return {a['mean_return']:.1f} over {len(a['returns'])} episodes (first {k}: "
        f"{a[f'mean_return_first_{k}']:.1f}, last {k}: {a[f'mean_return_last_{k}']:.1f}); "
        f"random policy: {b['mean_return']:.1f}; control tick {tick_ms:g} ms",
        *(f"  {name} {values[name]}: {meaning}" for name, meaning in COUNTER_MEANINGS.items()),
    ]
    out = Path(summary["out"])
    files = [str(out / "learning_curve.png"), str(out / "summary.json")]
    if "mcap_log" in summary:
        files.append(f"the MCAP log {summary['mcap_log']} (`rlfm-edge replay` turns it into "
                     "statistics)")
    rows.append("wrote " + ", ".join(files))
    return "\n".join(rows)


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="a simulated robot over a serial pty, learning live",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=positive(int), default=40,
                   help="episodes of the agent, then as many of a random policy")
    add_engine_options(p, {"backend": "auto"})
    p.add_argument("--out", default="results/demo", help="folder for the plot and summary.json")
    p.add_argument("--rate", type=positive(float), default=200.0, help="robot control rate, Hz")
    p.add_argument("--max-steps", type=positive(int), default=200, help="episode length cap")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the simulated robot and of the agent's sampling")
    p.add_argument("--log", action="store_true",
                   help="also write the agent's MCAP transition log (a segment in OUT/agent_log/)")
    add_set_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
