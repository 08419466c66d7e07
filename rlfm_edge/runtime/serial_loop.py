"""The host side of a serial robot: OBSERVATION frames in, one ACTION out for each.

The loop is what `rlfm-edge serve` runs. The serial-session rules (``rlfm_edge.serial.session``,
shared with the ROS 2 serial bridge) turn each frame into a Turn; the loop applies it to the
actor: ``step(obs, reward)``, then ``end_episode()`` at a time limit, or ``terminate(reward,
obs, kind)`` at a TERMINAL end (when the agent has that terminal state; else it is treated as a
time limit, with a warning). An observation the agent refuses (NaN/inf, wrong length) gets an
ERROR frame.
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
from rlfm_edge.serial.session import NO_ACTION, EpisodeRecord, SerialSession, Turn

log = logging.getLogger(__name__)


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

    def terminate(self, reward: float, observation=None, kind: str | None = None) -> None:
        if observation is not None:
            self.step(observation)  # refuses what step refuses


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
        self.session = SerialSession(on_episode=self._on_episode)
        self._warned_terminal: set = set()

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
        turn = self.session.turn(msg)
        if turn.repeat_action is not None:
            c.repeats_answered += 1
            self._answer(msg.seq, turn.repeat_action)
            return
        c.resets += msg.reset
        try:
            action = self._apply(turn)
        except InvalidObservation as exc:
            self.session.refused(turn)
            c.invalid_observations += 1
            self.warnings.warn("invalid_observations", c.invalid_observations,
                               f"refused observation {msg.seq}: {exc}")
            self.link.send(Error(ERR_INVALID_OBSERVATION, msg.seq, str(exc)[:100]))
            return
        self._answer(msg.seq, action)
        self.session.answered(turn, action)

    def _apply(self, turn: Turn) -> int:
        actor = self.actor
        if turn.cut:
            actor.end_episode()
        if turn.end == "terminal" and self._can_terminate(turn.kind):
            actor.terminate(0.0 if turn.reward is None else turn.reward, turn.observation, turn.kind)
            return NO_ACTION
        action = int(actor.step(turn.observation, turn.reward))
        if turn.end is not None:
            actor.end_episode()
            return NO_ACTION
        return action

    def _can_terminate(self, kind: str | None) -> bool:
        """Whether the actor has the terminal state ``kind`` (None: its default); warns once if not."""
        kinds = getattr(self.actor, "terminal_indices", None)
        ok = getattr(self.actor, "has_terminal_state", False) and (
            kinds is None or kind is None or kind in kinds)
        if not ok and kind not in self._warned_terminal:
            self._warned_terminal.add(kind)
            log.warning("the robot reports %s terminal states but the agent has none; set "
                        "terminal_state in the robot config (treated as a time limit)",
                        kind or "its")
        return ok

    def _answer(self, seq: int, action: int) -> None:
        self.counters.actions_sent += self.link.send(Action(ack_seq=seq, action=action))

    def _on_episode(self, record: EpisodeRecord) -> None:
        self.counters.episode_log.append(record)
        self.counters.episodes += not record.cut
        if self.on_episode is not None:
            self.on_episode(record)
