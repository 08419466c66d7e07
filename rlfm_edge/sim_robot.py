"""A simulated microcontroller robot: real Gymnasium dynamics behind a real pseudo-terminal.

The robot owns the master side of a pty pair and publishes the slave at a stable path (a
symlink, as udev gives /dev/ttyUSB0), so the host opens it like a USB serial adapter. At a
fixed control rate it does what firmware would: send an OBSERVATION (with the reward of the
last action), wait for the ACTION that acknowledges it until the tick ends, apply it to the
dynamics. When no ACTION comes in time it freezes the dynamics and sends the same
observation again with REPEAT. An episode's end is its own OBSERVATION (EPISODE_END, plus
TERMINAL when the dynamics terminated rather than ran out of time).

Faults for hardware-in-the-loop tests are injected on the wire (``Faults``): garbage bytes,
frames with a broken CRC, duplicated and stale sequence numbers, NaN observations, lost
ACTION frames, and the port unplugged and plugged back in.

Run it alone with ``python -m rlfm_edge.sim_robot --link /tmp/ttyROBOT --episodes 20``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import select
import subprocess
import sys
import time
import tty
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np

from rlfm_edge.serial.protocol import (
    Action,
    Error,
    FrameDecoder,
    Observation,
    encode_frame,
)

# The robot config for the simulated cart-pole (examples/cartpole_robot.yaml says the same,
# with comments; a test keeps them equal).
CARTPOLE_CONFIG = {
    "discretizer": {"dimensions": [
        {"name": "cart_position", "low": -2.4, "high": 2.4, "bins": 1},
        {"name": "cart_velocity", "low": -1.5, "high": 1.5, "bins": 3},
        {"name": "pole_angle", "low": -0.21, "high": 0.21, "bins": 6},
        {"name": "pole_angular_velocity", "low": -2.0, "high": 2.0, "bins": 6}]},
    "n_actions": 2, "horizon": 40, "terminal_state": True, "mode": "sample", "temperature": 0.3,
    "refresh_every": 10, "control_period_s": 0.01, "seed": 0,
}


@dataclass
class Faults:
    """Every ``*_every`` is a period in ticks (0: never). ``unplug_at``: the tick at which the
    port disappears for ``unplug_for_s`` seconds (0: never); the robot then reboots: a new
    episode starting with RESET."""

    garbage_every: int = 0
    corrupt_every: int = 0
    duplicate_every: int = 0
    stale_every: int = 0
    nan_every: int = 0
    drop_action_every: int = 0
    unplug_at: int = 0
    unplug_for_s: float = 0.3


@dataclass
class RobotCounters:
    ticks: int = 0
    frames_sent: int = 0
    write_failures: int = 0  # nobody reading and the pty buffer full
    actions_applied: int = 0  # dynamics steps taken
    missed_ticks: int = 0  # no ACTION in time: the observation is repeated
    errors_received: int = 0
    stale_actions: int = 0  # an ACTION for an older frame, arrived late
    overruns: int = 0  # ticks that started late
    faults: dict = field(default_factory=dict)
    returns: list = field(default_factory=list)  # completed episodes' returns
    cut_episodes: int = 0


class PtyPort:
    """The robot's end of a pty pair, the other end published at ``link_path``."""

    def __init__(self, link_path: str | os.PathLike) -> None:
        self.link_path = Path(link_path)
        self.master: int | None = None

    def open(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # binary-clean before the host opens it
        os.set_blocking(master, False)
        tmp = self.link_path.with_name(self.link_path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.link_path)
        os.close(slave)
        self.master = master

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.link_path.unlink()
        if self.master is not None:
            os.close(self.master)
            self.master = None

    def write(self, data: bytes) -> bool:
        try:
            return os.write(self.master, data) == len(data)
        except (BlockingIOError, OSError):
            return False

    def read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.master], [], [], max(0.0, timeout))
        if not ready:
            return b""
        try:
            return os.read(self.master, 4096)
        except (BlockingIOError, OSError):  # EIO: the host has not opened (or closed) its end
            time.sleep(max(0.0, min(timeout, 0.001)))
            return b""


class SimRobot:
    """Gymnasium dynamics (``env_id``, discrete actions) served over a pty at ``rate_hz``."""

    def __init__(self, link_path: str | os.PathLike, env_id: str = "CartPole-v1",
                 rate_hz: float = 100.0, max_episode_steps: int = 200, seed: int = 0,
                 faults: Faults | None = None, idle_timeout_s: float = 30.0,
                 trace: str | os.PathLike | None = None) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz: expected > 0, got {rate_hz}")
        self.env = gym.make(env_id, max_episode_steps=max_episode_steps)
        if not isinstance(self.env.action_space, gym.spaces.Discrete):
            raise ValueError(f"env_id: {env_id} must have a discrete action space")
        self.port = PtyPort(link_path)
        self.period = 1.0 / rate_hz
        self.seed = seed
        self.faults = faults or Faults()
        self.idle_timeout_s = idle_timeout_s
        self.counters = RobotCounters()
        self._rng = np.random.default_rng(seed)
        self._decoder = FrameDecoder()
        self._seq = 0
        self._episode_seed = seed
        self.trace_path = None if trace is None else Path(trace)
        self._trace: list[int] = []  # time.time_ns() of every ACTION accepted, for --trace

    def _fault(self, name: str) -> bool:
        every = getattr(self.faults, f"{name}_every")
        if every and self.counters.ticks % every == every - 1:
            self.counters.faults[name] = self.counters.faults.get(name, 0) + 1
            return True
        return False

    def _send(self, msg: Observation) -> int:
        """Write one frame (faults applied); returns its sequence number."""
        seq, self._seq = self._seq, (self._seq + 1) & 0xFFFF
        frame = encode_frame(Observation(**{**asdict(msg), "seq": seq}))
        if self._fault("garbage"):
            junk = bytes(self._rng.integers(0, 256, int(self._rng.integers(1, 40)), np.uint8))
            self.port.write(junk + b"\x00")
        if self._fault("corrupt"):
            i = int(self._rng.integers(1, len(frame) - 1))
            frame = frame[:i] + bytes([frame[i] % 255 + 1]) + frame[i + 1:]  # stays non-zero
        ok = self.port.write(frame)
        if self._fault("duplicate"):
            self.port.write(frame)
        if self._fault("stale"):
            old = Observation(**{**asdict(msg), "seq": (seq - 3) & 0xFFFF})
            self.port.write(encode_frame(old))
        self.counters.frames_sent += ok
        self.counters.write_failures += not ok
        return seq

    def _await(self, seq: int, deadline: float) -> int | None:
        """The action acknowledging frame ``seq``, or None (error, timeout, lost frame)."""
        while True:
            for msg in self._decoder.feed(self.port.read(deadline - time.monotonic())):
                if isinstance(msg, Action):
                    if msg.ack_seq != seq:
                        self.counters.stale_actions += 1
                    elif not self._fault("drop_action"):
                        self._last_heard = time.monotonic()
                        if self.trace_path is not None:
                            self._trace.append(time.time_ns())
                        return msg.action
                elif isinstance(msg, Error) and msg.ref_seq == seq:
                    self.counters.errors_received += 1
                    self._last_heard = time.monotonic()
                    return None
            if time.monotonic() >= deadline:
                return None

    def _reset_env(self) -> np.ndarray:
        obs, _ = self.env.reset(seed=self._episode_seed)
        self._episode_seed += 1
        return obs

    def run(self, episodes: int) -> RobotCounters:
        """Run ``episodes`` complete episodes (or until the host is silent too long)."""
        c = self.counters
        self.port.open()
        obs, reward, ret = self._reset_env(), 0.0, 0.0
        ending = terminal = False
        reset_flag, repeat = True, False
        self._last_heard = time.monotonic()
        next_tick = time.monotonic()
        try:
            while len(c.returns) < episodes:
                if time.monotonic() - self._last_heard > self.idle_timeout_s:
                    break
                c.ticks += 1
                if self.faults.unplug_at and c.ticks == self.faults.unplug_at:
                    self._unplug()
                    c.cut_episodes += 1
                    obs, reward, ret, ending = self._reset_env(), 0.0, 0.0, False
                    reset_flag, repeat = True, False
                    next_tick = time.monotonic()
                sent = tuple(float(v) for v in obs)
                if self._fault("nan"):
                    sent = (math.nan,) + sent[1:]
                seq = self._send(Observation(sent, float(reward), episode_end=ending,
                                             reset=reset_flag, terminal=terminal, repeat=repeat))
                next_tick += self.period
                action = self._await(seq, next_tick)
                if action is None:
                    c.missed_ticks += 1
                    repeat = True
                elif ending:
                    c.returns.append(ret)
                    obs, reward, ret, ending, terminal = self._reset_env(), 0.0, 0.0, False, False
                    reset_flag = repeat = False
                else:
                    obs, reward, term, trunc, _ = self.env.step(action)
                    c.actions_applied += 1
                    ret += float(reward)
                    ending, terminal = bool(term or trunc), bool(term)
                    reset_flag = repeat = False
                now = time.monotonic()
                if now < next_tick:
                    time.sleep(next_tick - now)
                elif now - next_tick > self.period:
                    c.overruns += 1
                    next_tick = now
        finally:
            self.port.close()
            if self.trace_path is not None:
                self.trace_path.write_text("".join(f"{t}\n" for t in self._trace))
        return c

    def _unplug(self) -> None:
        self.port.close()
        time.sleep(self.faults.unplug_for_s)
        self.port.open()
        self._decoder.reset()
        self._seq = 0
        self.counters.faults["unplug"] = self.counters.faults.get("unplug", 0) + 1


def spawn(link_path: str | os.PathLike, episodes: int, summary: str | os.PathLike | None = None,
          rate_hz: float = 100.0, max_episode_steps: int = 200, seed: int = 0,
          faults: Faults | None = None, env_id: str = "CartPole-v1",
          wait_s: float = 20.0, trace: str | os.PathLike | None = None) -> subprocess.Popen:
    """Start the robot in its own process; returns once its port exists. ``trace``: a file
    that gets the time.time_ns() of every ACTION the robot accepted, one per line, when it
    stops (at its episode count, when the host is silent too long, or on SIGINT)."""
    link_path = Path(link_path)
    with contextlib.suppress(FileNotFoundError):
        link_path.unlink()
    cmd = [sys.executable, "-m", "rlfm_edge.sim_robot", "--link", str(link_path),
           "--episodes", str(episodes), "--rate", str(rate_hz), "--max-steps",
           str(max_episode_steps), "--seed", str(seed), "--env", env_id]
    if summary is not None:
        cmd += ["--summary", str(summary)]
    if trace is not None:
        cmd += ["--trace", str(trace)]
    for name, value in asdict(faults or Faults()).items():
        if value:
            cmd += [f"--{name.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + wait_s
    while not link_path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"simulated robot exited with code {proc.returncode} before "
                               f"opening {link_path}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"simulated robot did not open {link_path} within {wait_s} s")
        time.sleep(0.02)
    return proc


@dataclass
class SimSession:
    """What one host-robot session over a pty left behind."""

    episodes: list  # EpisodeRecord, host side
    loop: object  # the SerialAgentLoop (counters)
    link: object  # the SerialLink (counters, decoder counters)
    robot: dict  # the robot's RobotCounters, as JSON
    wall_s: float


def serve_sim(actor, workdir: str | os.PathLike, episodes: int, rate_hz: float = 100.0,
              max_episode_steps: int = 200, seed: int = 0, faults: Faults | None = None,
              on_episode=None, timeout_s: float = 600.0, env_id: str = "CartPole-v1") -> SimSession:
    """Run ``actor`` against a simulated robot process over a real pty until ``episodes``
    complete episodes; the host side is SerialAgentLoop on a SerialLink, as in `serve`."""
    from rlfm_edge.runtime.serial_loop import SerialAgentLoop
    from rlfm_edge.serial.link import SerialLink

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port, summary = workdir / "ttyROBOT", workdir / "robot.json"
    summary.unlink(missing_ok=True)
    t0 = time.monotonic()
    proc = spawn(port, episodes, summary, rate_hz, max_episode_steps, seed, faults, env_id)
    link = SerialLink(str(port), 115200, backoff_initial_s=0.02, backoff_max_s=0.5)
    loop = SerialAgentLoop(link, actor, on_episode=on_episode)
    try:
        loop.run(max_episodes=episodes, duration_s=timeout_s)
        deadline = time.monotonic() + 10
        link_log = logging.getLogger("rlfm_edge.serial.link")
        level = link_log.level
        link_log.setLevel(logging.ERROR)  # the robot closing its port now is no news
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                loop.run(duration_s=0.05)  # answer the robot until it has seen its last ACTION
        finally:
            link_log.setLevel(level)
    finally:
        link.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    robot = json.loads(summary.read_text()) if summary.exists() else {}
    return SimSession(loop.episodes, loop, link, robot, time.monotonic() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rlfm_edge.sim_robot", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("--link", required=True, help="path where the port appears (a symlink)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--env", default="CartPole-v1", help="Gymnasium id, discrete actions")
    p.add_argument("--rate", type=float, default=100.0, help="control rate, Hz")
    p.add_argument("--max-steps", type=int, default=200, help="episode length cap")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--summary", default=None, help="write the robot's counters here (JSON)")
    p.add_argument("--trace", default=None,
                   help="write the time (ns) of every ACTION accepted here, one per line")
    for name, f in Faults.__dataclass_fields__.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(f.default), default=f.default)
    args = p.parse_args(argv)
    faults = Faults(**{name: getattr(args, name) for name in Faults.__dataclass_fields__})
    robot = SimRobot(args.link, args.env, args.rate, args.max_steps, args.seed, faults,
                     trace=args.trace)
    try:
        counters = robot.run(args.episodes)
    except KeyboardInterrupt:
        counters = robot.counters
    if args.summary:
        Path(args.summary).write_text(json.dumps(asdict(counters), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
