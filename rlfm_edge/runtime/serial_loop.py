"""The host side of a serial robot: OBSERVATION frames in, one ACTION out for each.

The loop is what `rlfm-edge serve` runs. It turns the protocol's flags into agent calls:
an ordinary observation is ``actor.step(obs, reward)``; ``EPISODE_END`` adds
``end_episode()`` (or ``terminate(reward)`` with ``TERMINAL``, when the agent has a terminal
state); ``RESET`` cuts an episode in progress; a ``REPEAT`` of the observation last answered
gets the same action again without being counted twice, so a lost ACTION frame costs a tick,
not a corrupted statistic. An EPISODE_END observation is answered with action -1 (none: the
robot resets). An observation the agent refuses (NaN/inf, wrong length) gets an ERROR frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from rlfm_edge.runtime.online_agent import InvalidObservation
from rlfm_edge.serial.protocol import (
    ERR_INVALID_OBSERVATION,
    WARN_EVERY_S,
    Action,
    Error,
    Observation,
    RateLimitedWarnings,
)

log = logging.getLogger(__name__)

NO_ACTION = -1  # the answer to an EPISODE_END observation


class Actor(Protocol):
    """What the loop drives: OnlineAgent, or RandomActor for a baseline."""

    def step(self, observation, reward: float | None = None) -> int: ...

    def end_episode(self) -> None: ...


class RandomActor:
    """Uniformly random actions, with the agent's interface: the baseline a learner must beat."""

    has_terminal_state = True  # terminations change nothing for it, and need no warning

    def __init__(self, n_actions: int, n_dims: int, seed: int = 0) -> None:
        self.n_actions = n_actions
        self.n_dims = n_dims
        self._rng = np.random.default_rng(seed)

    def step(self, observation, reward: float | None = None) -> int:
        x = np.asarray(observation, dtype=np.float64)
        if x.shape != (self.n_dims,) or not np.all(np.isfinite(x)):
            raise InvalidObservation(f"observation: expected {self.n_dims} finite values")
        return int(self._rng.integers(self.n_actions))

    def end_episode(self) -> None:
        pass

    def terminate(self, reward: float, observation=None) -> None:
        if observation is not None:
            self.step(observation)  # refuses what step refuses


@dataclass(frozen=True)
class EpisodeRecord:
    index: int
    ret: float  # sum of the rewards of the episode's actions
    steps: int  # actions whose reward came back
    terminated: bool  # ended in an absorbing state (TERMINAL)
    cut: bool  # cut short by a robot RESET
    wall_s: float


@dataclass
class LoopCounters:
    observations: int = 0
    actions_sent: int = 0
    repeats_answered: int = 0  # REPEATs of an answered observation: same action, not counted
    invalid_observations: int = 0
    resets: int = 0
    episodes: int = 0  # completed (not cut) episodes
    peer_errors: int = 0
    unexpected: int = 0
    episode_log: list[EpisodeRecord] = field(default_factory=list, repr=False)


class SerialAgentLoop:
    """Drives ``actor`` from the messages of ``link`` (a SerialLink or anything with
    ``receive(timeout)`` and ``send(msg)``). ``on_episode`` is called after each episode;
    refused observations and unexpected messages are logged at most once per ``warn_every_s``."""

    def __init__(self, link, actor: Actor,
                 on_episode: Callable[[EpisodeRecord], None] | None = None,
                 warn_every_s: float = WARN_EVERY_S) -> None:
        self.link = link
        self.actor = actor
        self.on_episode = on_episode
        self.counters = LoopCounters()
        self.warnings = RateLimitedWarnings(log, warn_every_s)
        self._can_terminate = getattr(actor, "has_terminal_state", False)
        self._warned_terminal = False
        self._last_key: tuple | None = None
        self._last_action = NO_ACTION
        self._in_episode = False
        self._ret = 0.0
        self._steps = 0
        self._t_start = 0.0

    @property
    def episodes(self) -> list[EpisodeRecord]:
        return self.counters.episode_log

    def run(self, max_episodes: int | None = None, duration_s: float | None = None,
            stop: threading.Event | None = None) -> list[EpisodeRecord]:
        """Serve until ``max_episodes`` completed episodes, ``duration_s``, or ``stop`` is set."""
        end = None if duration_s is None else time.monotonic() + duration_s
        while not (stop is not None and stop.is_set()):
            if max_episodes is not None and self.counters.episodes >= max_episodes:
                break
            if end is not None and time.monotonic() >= end:
                break
            msg = self.link.receive(timeout=0.05)
            if isinstance(msg, Observation):
                self.handle(msg)
            elif isinstance(msg, Error):
                self.counters.peer_errors += 1
                log.warning("robot reported error %d for frame %d: %s", msg.code, msg.ref_seq,
                            msg.text)
            elif msg is not None:
                self.counters.unexpected += 1
                self.warnings.warn("unexpected", self.counters.unexpected,
                                   f"ignored a {type(msg).__name__} from the robot")
        return self.episodes

    def handle(self, msg: Observation) -> None:
        c = self.counters
        c.observations += 1
        key = (msg.observation, msg.reward, msg.episode_end, msg.terminal, msg.reset)
        if msg.repeat and key == self._last_key:
            c.repeats_answered += 1
            self._answer(msg.seq, self._last_action)
            return
        if msg.reset:
            c.resets += 1
            if self._in_episode:
                self.actor.end_episode()
                self._finish(terminated=False, cut=True)
        first = not self._in_episode
        reward = None if first else msg.reward
        try:
            if msg.episode_end:
                if msg.terminal and self._can_terminate:
                    self.actor.terminate(msg.reward if not first else 0.0, msg.observation)
                else:
                    if msg.terminal and not self._warned_terminal:
                        self._warned_terminal = True
                        log.warning("the robot reports terminal states but the agent has none; "
                                    "set terminal_state: true in the robot config")
                    self.actor.step(msg.observation, reward)
                    self.actor.end_episode()
                action = NO_ACTION
            else:
                action = int(self.actor.step(msg.observation, reward))
        except InvalidObservation as exc:
            c.invalid_observations += 1
            self.warnings.warn("invalid_observations", c.invalid_observations,
                               f"refused observation {msg.seq}: {exc}")
            self.link.send(Error(ERR_INVALID_OBSERVATION, msg.seq, str(exc)[:100]))
            return
        if first:
            self._in_episode, self._ret, self._steps = True, 0.0, 0
            self._t_start = time.monotonic()
        else:
            self._ret += msg.reward
            self._steps += 1
        self._last_key, self._last_action = key, action
        self._answer(msg.seq, action)
        if msg.episode_end:
            self._finish(terminated=msg.terminal, cut=False)

    def _answer(self, seq: int, action: int) -> None:
        self.counters.actions_sent += self.link.send(Action(ack_seq=seq, action=action))

    def _finish(self, terminated: bool, cut: bool) -> None:
        c = self.counters
        record = EpisodeRecord(len(c.episode_log), self._ret, self._steps, terminated, cut,
                               time.monotonic() - self._t_start)
        c.episode_log.append(record)
        c.episodes += not cut
        self._in_episode = False
        if self.on_episode is not None:
            self.on_episode(record)
