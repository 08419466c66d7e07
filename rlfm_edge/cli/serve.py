"""`rlfm-edge serve`: the agent against a robot over a serial port (protocol in the README).

Runs until Ctrl-C or SIGTERM (or --episodes / --duration); the statistics are saved
periodically and at exit, so the next start carries on from them. Exits 1 when the port
never opened; a start that fails leaves every file as it was (docs/robot-data.md).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from pathlib import Path

log = logging.getLogger(__name__)


def add_engine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="auto",
                   help="inference backend: auto, torch, onnxruntime, tensorrt, or planning "
                   "(model-free optimistic planning on the counts)")
    p.add_argument("--precision", default="fp32", help="fp32, fp16 or int8 (backend permitting)")
    p.add_argument("--model", default=None, help="model directory (default: the shipped model)")


def engine_from_args(args: argparse.Namespace, size: tuple[int, int] | None = None):
    """The engine the options name; ``auto`` ranks the backends by a refresh at ``size`` (S, A)."""
    from rlfm_edge.inference import make_engine

    if args.backend == "planning":
        if args.model is not None:
            raise ValueError("--model: the planning backend uses no model")
        return make_engine("planning")
    return make_engine(args.backend, model=args.model, precision=args.precision, probe_size=size)


def positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a value > 0, got {text}")
        return value
    return parse


@contextlib.contextmanager
def stop_on_sigterm(stop: threading.Event):
    """While inside, SIGTERM (systemd, docker stop, kill) sets ``stop`` instead of killing the
    process, so the loop ends as on Ctrl-C: statistics saved, log closed. Only the main
    thread may install signal handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def dropped_summary(counters) -> str:
    """The dropped-frame total of DecoderCounters with its causes: "5 frames dropped (bad_crc 3,
    duplicates 2)", so the summary says what to look at."""
    causes = ", ".join(f"{cause} {n}" for cause, n in counters.dropped_by_cause().items())
    return f"{counters.dropped} frames dropped" + (f" ({causes})" if causes else "")


def cmd_serve(args: argparse.Namespace) -> int:
    from rlfm_edge.interrupt import Interrupted

    try:
        config, agent = _start(args)
    except Interrupted as stop:
        raise stop.saying("stopped while starting: nothing was written, the statistics and "
                          "logs are as they were") from None
    return _serve(args, config, agent)


def _start(args: argparse.Namespace):
    """Everything checked and loaded before anything is written: config, log folder,
    statistics, engine; then the agent (whose log segment appears with its first step)."""
    from rlfm_edge.logs import check_log_folder
    from rlfm_edge.runtime import RobotConfig

    config = RobotConfig.load(args.config)
    if args.stats is not None:
        config.stats_path = Path(args.stats)
    if args.log is not None:
        config.log_path = Path(args.log)
    if config.log_path is not None:
        check_log_folder(config.log_path)
    persistence = config.persistence()
    stats = (persistence.load_or_new(config.n_states, config.n_actions)
             if persistence is not None else None)
    engine = engine_from_args(args, (config.n_states, config.n_actions))
    return config, config.make_agent(engine, stats=stats, persistence=persistence)


def _serve(args: argparse.Namespace, config, agent) -> int:
    from rlfm_edge.runtime import SerialAgentLoop
    from rlfm_edge.serial.link import SerialLink

    print(f"serving {agent!r} on {args.port} at {args.baud} baud; S={agent.n_states} "
          f"(terminal state: {agent.has_terminal_state}), horizon {config.horizon}; Ctrl-C stops")

    def report(ep) -> None:
        c = agent.counters
        log.info("episode %d: return %.2f in %d steps%s; %d transitions, %d refreshes",
                 ep.index, ep.ret, ep.steps, " (terminated)" if ep.terminated else
                 " (cut by a robot reset)" if ep.cut else "", c.transitions, c.refreshes)

    link = SerialLink(args.port, args.baud)
    loop = SerialAgentLoop(link, agent, on_episode=report)
    stop = threading.Event()
    stopped_by = None
    with stop_on_sigterm(stop):
        try:
            loop.run(max_episodes=args.episodes, duration_s=args.duration, stop=stop)
        except KeyboardInterrupt:
            stopped_by = "Ctrl-C"
        finally:
            link.close()
            agent.close()
    if stop.is_set():
        stopped_by = "SIGTERM"
    c, lc = agent.counters, loop.counters
    print(f"{lc.episodes} episodes, {c.transitions} transitions, {c.refreshes} refreshes "
          f"({c.late_refreshes} late, {c.refresh_failures} failed); {lc.invalid_observations} "
          f"invalid observations, {lc.repeats_answered} repeats answered, "
          f"{dropped_summary(link.decoder.counters)}, {lc.unexpected} unexpected messages, "
          f"{link.counters.disconnects} disconnects; statistics saved {c.saves} times "
          f"({c.save_failures} failures)" + (f" to {config.stats_path}" if config.stats_path
                                             else ""))
    if link.counters.connects == 0:
        print(f"rlfm-edge serve: never connected to {args.port} ({link.counters.connect_failures} "
              f"attempts); nothing was written, the statistics and logs are as they were",
              file=sys.stderr)
        return 1
    print(("stopped by " + stopped_by + "; " if stopped_by else "") + kept_summary(agent)
          + "; start again to carry on from them")
    return 0


def kept_summary(agent) -> str:
    """What a run left on disk: its statistics file and its log segment."""
    persistence, logger = agent.persistence, agent.transition_log
    parts = []
    if persistence is not None:
        parts.append(f"statistics in {persistence.path} ({agent.stats.n_transitions} transitions"
                     + (f", {agent.counters.save_failures} saves failed" if
                        agent.counters.save_failures else "") + ")")
    else:
        parts.append("statistics not kept (no statistics path)")
    if logger is not None:
        parts.append(f"log segment {logger.path}" if logger.path.exists()
                     else "no log segment (no step)")
    return "; ".join(parts)


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="run the agent against a robot over a serial port",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--port", required=True, help="serial device (e.g. /dev/ttyUSB0) or pyserial URL")
    p.add_argument("--baud", type=positive(int), default=115200, help="serial baud rate")
    p.add_argument("--config", required=True, help="robot YAML (see examples/cartpole_robot.yaml)")
    add_engine_options(p)
    p.add_argument("--stats", default=None, help="statistics file (overrides the config)")
    p.add_argument("--log", default=None,
                   help="folder of MCAP transition logs, one segment per start (overrides the config)")
    p.add_argument("--episodes", type=positive(int), default=None,
                   help="stop after this many complete episodes")
    p.add_argument("--duration", type=positive(float), default=None, help="stop after seconds")
    p.set_defaults(func=cmd_serve)
