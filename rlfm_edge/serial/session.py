"""The serial-session rules: what a robot's OBSERVATION frame asks of the agent.

One module for `rlfm-edge serve` (which applies each turn to an OnlineAgent) and the ROS 2
serial bridge (which publishes it on the agent node's topics), so both read the flags alike:

- a REPEAT of the observation last answered gets the same action again, and nothing else
  happens: a lost ACTION frame costs a tick, not a step counted twice; a REPEAT of the
  observation whose answer is still being computed (the bridge waits for the agent node) is
  answered with that answer when it comes;
- RESET cuts an episode in progress (it ends with no terminal state) before this observation
  starts the next;
- the first observation of an episode has no reward (the one in the frame is ignored);
- EPISODE_END ends the episode with this observation. With TERMINAL it ended in an absorbing
  state, a goal with GOAL or else the robot config's default kind: the last action's reward
  enters that state and the observation is only logged. Without TERMINAL the time ran out:
  the observation is a state like any other (its transition is recorded) and the episode
  ends after it. Either way the answer is ``NO_ACTION``.

The session also keeps each episode's return and length (``EpisodeRecord``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rlfm_edge.serial.protocol import Observation

NO_ACTION = -1  # the answer to an EPISODE_END observation: none, reset the robot


@dataclass(frozen=True)
class EpisodeRecord:
    index: int
    ret: float  # sum of the rewards of the episode's actions
    steps: int  # actions whose reward came back
    terminated: bool  # ended in an absorbing state (TERMINAL)
    cut: bool  # cut short by a robot RESET
    wall_s: float


@dataclass(frozen=True)
class Turn:
    """What one OBSERVATION frame asks for.

    ``repeat_action`` not None: answer it at once, nothing else. ``awaited``: a copy of the
    observation still being answered; answer this ``seq`` with that answer, nothing else.
    Otherwise: end the episode
    in progress first if ``cut``; then ``end`` is None (step: ``observation`` with ``reward``,
    None at an episode's first observation, and answer the action), "truncated" (step, end
    the episode, answer NO_ACTION) or "terminal" (enter the absorbing state of ``kind``,
    None meaning the configured default, with ``reward``; answer NO_ACTION).
    """

    seq: int
    observation: tuple[float, ...] = ()
    reward: float | None = None
    cut: bool = False
    end: str | None = None
    kind: str | None = None
    repeat_action: int | None = None
    awaited: bool = False
    key: tuple = field(default=(), repr=False)


class SerialSession:
    """The state the rules need across frames: the last answer, and the episode in progress.

    ``turn(msg)`` reads a frame; once the caller has answered it, ``answered(turn, action)``,
    or ``refused(turn)`` when the observation was refused (the robot sends it again).
    ``on_episode`` is called with each finished or cut episode.
    """

    def __init__(self, on_episode: Callable[[EpisodeRecord], None] | None = None) -> None:
        self.on_episode = on_episode
        self.episodes: list[EpisodeRecord] = []
        self._last_key: tuple | None = None
        self._pending: tuple | None = None  # the key of the turn handed out, not yet answered
        self._last_action = NO_ACTION
        self._in_episode = False
        self._ret = 0.0
        self._steps = 0
        self._t_start = 0.0

    def turn(self, msg: Observation) -> Turn:
        key = (msg.observation, msg.reward, msg.episode_end, msg.terminal, msg.goal, msg.reset)
        if msg.repeat and key == self._last_key:
            return Turn(msg.seq, repeat_action=self._last_action)
        if msg.repeat and key == self._pending:
            return Turn(msg.seq, awaited=True)
        self._pending = key
        cut = msg.reset and self._in_episode
        if cut:
            self._finish(terminated=False, cut=True)
        end = ("terminal" if msg.terminal else "truncated") if msg.episode_end else None
        return Turn(msg.seq, msg.observation, None if not self._in_episode else msg.reward, cut,
                    end, "goal" if end == "terminal" and msg.goal else None, key=key)

    def answered(self, turn: Turn, action: int) -> None:
        """Record the answer sent for ``turn`` (a repeat's changes nothing)."""
        if turn.repeat_action is not None or turn.awaited:
            return
        self._pending = None
        if not self._in_episode:
            self._in_episode, self._ret, self._steps = True, 0.0, 0
            self._t_start = time.monotonic()
        else:
            self._ret += turn.reward
            self._steps += 1
        self._last_key, self._last_action = turn.key, action
        if turn.end is not None:
            self._finish(terminated=turn.end == "terminal", cut=False)

    def refused(self, turn: Turn) -> None:
        """``turn``'s observation was refused: its REPEAT is a new frame, not one awaited."""
        self._pending = None

    def _finish(self, terminated: bool, cut: bool) -> None:
        record = EpisodeRecord(len(self.episodes), self._ret, self._steps, terminated, cut,
                               time.monotonic() - self._t_start)
        self.episodes.append(record)
        self._in_episode = False
        if self.on_episode is not None:
            self.on_episode(record)


def invalid_observation(observation, n_dims: int) -> str | None:
    """Why ``observation`` is not ``n_dims`` finite values, or None."""
    if len(observation) != n_dims or not all(map(math.isfinite, observation)):
        return f"observation: expected {n_dims} finite values"
    return None
