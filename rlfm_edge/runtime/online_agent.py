"""The robot's control-loop agent: discretize, count, act from the latest policy.

``step(observation, reward)`` does O(1) pure-Python work in the caller's thread: it
discretizes the observation, queues the transition it closes, reads the latest policy and
returns an action. It touches no numpy array: on a small robot computer, and worse in a VM,
every tick starts with cold caches, and a few numpy calls then cost more than the rest of the
step. Two background threads do the rest:

- the bookkeeper applies the queued transitions to the statistics (the only writer), writes
  the MCAP log, saves the statistics when due, and hands copies of them to
- the refresher, which runs ``engine.policy(snapshot, horizon)`` and swaps the result in.

Reading ``agent.stats`` applies the transitions still queued first, so it is never behind the
last step; it returns a copy, safe to keep or save while the agent runs.

A refresh is requested every ``refresh_every`` transitions, when a (state, action) pair is
tried for the first time (the statistics changed qualitatively), and at episode ends. Requests
made while a refresh runs coalesce into one. A refresh slower than ``control_period_s`` (one
control tick) is counted late; until it finishes, and if it raises or returns a malformed
policy, the last good policy stays in use.

A robot that steps faster than a refresh would otherwise act on ever older policies (requests
coalesce, so it gets one refresh per refresh-time of steps, whatever ``refresh_every`` says).
``max_policy_lag`` bounds that: a step waits for a requested refresh once the request is this
many transitions old. At the usual tick (a refresh well inside ``refresh_every`` ticks) it never
waits; 0 makes every step wait for the refresh it requested, which is what a simulated-time
benchmark needs to be deterministic; None never waits.

Before the first good policy the agent takes the safe action: ``safe_action`` if given, else
an action drawn uniformly at random (which explores, and that is what the statistics need;
give a stop/no-op action where a random one is unsafe).

Rewards: the reward passed with an observation is the one earned by the previous action.
At an episode's first step there is no previous action, and the reward is ignored.

Episodes that end by failure (a pole falls, a robot tips over) or by reaching a goal (a
mountain car at the flag) must look different from episodes that simply stop at a time
limit, or the counts cannot tell falling from carrying on. ``terminal_state`` names the
absorbing states the agent keeps after the discretizer's (``TERMINAL_KINDS``, in that order):
"failure" is worth 0 per step, "goal" the top reward 1 per step (the [0, 1] image of "minus one
per step until the goal"). ``terminate(reward, kind=...)`` records the last transition as
entering one, plus one self-loop per action at its worth, so the statistics say the state is
absorbing and what it is worth (an untried state would look promising to an optimistic
planner or to the model).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import threading
import time
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass
from math import isfinite
from pathlib import Path

import numpy as np

from rlfm_edge.discretize import Discretizer
from rlfm_edge.inference.base import (
    ModelLimitError,
    PolicyEngine,
    action_probabilities,
    state_temperatures,
)
from rlfm_edge.logs import TransitionLogger, check_log_folder
from rlfm_edge.runtime.engine import make_robot_engine
from rlfm_edge.runtime.persistence import StatsPersistence
from rlfm_edge.runtime.robot_config import (
    AGENT_SETTINGS,
    TERMINAL_KINDS,
    RobotConfig,
    terminal_kinds,
    unknown_message,
)
from rlfm_edge.stats import CountStats, StatsFileError

log = logging.getLogger(__name__)


def absorbing_transitions(prev_state: int, prev_action: int, reward: float, terminal: int,
                          worth: float, n_actions: int) -> list[tuple[int, int, float, int]]:
    """What a terminal episode end adds to the statistics, (s, a, r, s') each: the last action's
    transition into the absorbing state, then one self-loop per action at its worth per step.

    The one source of how terminations enter the counts, for the runtime and for the tabular
    agents benchmarked beside it.
    """
    return [(prev_state, prev_action, reward, terminal),
            *((terminal, a, worth, terminal) for a in range(n_actions))]


# Bookkeeper queue items: (prev_state, prev_action, reward, state) is a transition for the
# statistics; a longer tuple is a step record for the MCAP log (queued only with a log);
# _RESET and _Replace replace the statistics.
_RESET = object()


@dataclass(frozen=True)
class _Replace:
    stats: CountStats


class InvalidObservation(ValueError):
    """An observation or reward the agent refused (NaN/inf, wrong length); drop it."""


class _Wakeup:
    """A one-shot wake-up for a background thread, cheap enough to signal from step().

    ``threading.Event.set`` runs a Condition's Python code (tens of microseconds when caches
    are cold); this is one C-level lock release. ``wait`` consumes the signal; signals sent
    while none is pending coalesce.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        try:  # noqa: SIM105 - contextlib.suppress is a Python-level context manager, slower
            self._lock.release()
        except RuntimeError:  # already signalled
            pass

    def wait(self, timeout: float | None = None) -> bool:
        return self._lock.acquire(timeout=-1 if timeout is None else timeout)


@dataclass
class AgentCounters:
    """What the agent did, for diagnostics (a snapshot; read ``OnlineAgent.counters``)."""

    steps: int = 0
    transitions: int = 0
    episodes: int = 0
    refreshes: int = 0
    refresh_failures: int = 0
    late_refreshes: int = 0
    safe_actions: int = 0  # steps acted before any good policy existed
    rejected_observations: int = 0
    clipped_values: int = 0
    step_overruns: int = 0  # steps that themselves took longer than control_period_s
    policy_waits: int = 0  # steps that waited for a refresh (max_policy_lag)
    saves: int = 0
    save_failures: int = 0
    log_failures: int = 0  # steps the MCAP log could not take (disk full)
    last_refresh_latency_s: float = math.nan
    last_step_latency_s: float = math.nan
    policy_stats_version: int = -1  # CountStats.version the current policy was computed from
    stats_transitions: int = 0  # transitions in the statistics (as CountStats.n_transitions)
    visited_states: int = 0  # states left or reached (as CountStats.visited_states)


@dataclass(frozen=True)
class _Policy:
    greedy: list[int]
    cdf: list[list[float]]  # per state, cumulative action probabilities
    stats_version: int


class OnlineAgent:
    """Acts on a robot with a PolicyEngine refreshed in the background.

    Args:
        discretizer: observation vector -> state index; ``n_states`` comes from it.
        engine: the PolicyEngine; its ``max_states``/``max_actions`` are checked here.
        horizon: the horizon passed to the engine.
        n_actions: size of the robot's discrete action space.
        stats: initial statistics; else loaded through ``persistence``, else empty.
        persistence: periodic and final saving; ``transition_log``: MCAP step logger,
            owned (closed) by the agent.
        **settings: the agent's settings of ``RobotConfig`` (``AGENT_SETTINGS``: mode,
            temperature, anneal_visits, refresh_every, max_policy_lag, control_period_s,
            safe_action, terminal_state, seed, ...), with their defaults and validation.

    ``OnlineAgent.from_config(config, engine)`` builds one from a whole RobotConfig, its
    statistics file and log included.
    """

    def __init__(self, discretizer: Discretizer, engine: PolicyEngine, horizon: int,
                 n_actions: int, *, stats: CountStats | None = None,
                 persistence: StatsPersistence | None = None,
                 transition_log: TransitionLogger | None = None, **settings) -> None:
        unknown = sorted(set(settings) - set(AGENT_SETTINGS))
        if unknown:
            raise ValueError(f"OnlineAgent: {unknown_message(unknown, AGENT_SETTINGS)} (statistics, "
                             f"log and engine settings: OnlineAgent.from_config)")
        config = RobotConfig(discretizer=discretizer, n_actions=n_actions, horizon=horizon, **settings)
        kinds = terminal_kinds(config.terminal_state)
        discretizer.check_fits(engine.max_states - len(kinds))
        if n_actions > engine.max_actions:  # before the statistics are allocated
            raise ModelLimitError(f"n_actions: {n_actions} actions but the {engine.backend} engine "
                                  f"serves at most {engine.max_actions}")
        S = discretizer.n_states + len(kinds)
        if stats is None:
            stats = (persistence.load_or_new(S, n_actions) if persistence is not None
                     else CountStats(S, n_actions))
        if (stats.n_states, stats.n_actions) != (S, n_actions):
            raise ValueError(f"stats: shape (S={stats.n_states}, A={stats.n_actions}) differs "
                             f"from the discretizer and actions (S={S}, A={n_actions})")
        engine.check_fits(stats)

        self.discretizer = discretizer
        self.engine = engine
        self.n_states = S
        # absorbing state per kind, after the discretizer's states
        self.terminal_indices = {k: discretizer.n_states + i for i, k in enumerate(kinds)}
        for name in ("horizon", "n_actions", *AGENT_SETTINGS):  # attributes: one lookup in step()
            setattr(self, name, getattr(config, name))
        self._stats = stats  # written by the bookkeeper only (or under _stats_lock)
        self._stats_lock = threading.Lock()
        self.persistence = persistence
        self.transition_log = transition_log
        self._rng = random.Random(config.seed)  # the stdlib's: a tenth of numpy's per-call cost in step()
        self._c = AgentCounters()
        self._track(stats)
        self._policy: _Policy | None = None
        self._prev: tuple[int, int] | None = None  # (state, action) awaiting its reward
        self._since_request = 0
        self._episode = 0

        # background machinery
        self._queue: deque = deque()
        self._requested_gen = 0
        self._pending: deque[tuple[int, int]] = deque()  # (ticket, transitions at request)
        self._gave_up_at: int | None = None  # _done_gen when a wait timed out
        self._snapshot_gen = 0
        self._done_gen = 0
        self._mailbox: tuple[int, CountStats] | None = None
        self._mailbox_lock = threading.Lock()
        self._done = threading.Condition()
        self._late_lock = threading.Lock()
        self._inflight_start: float | None = None
        self._late_flagged = False
        self._stopping = False
        self._closed = False
        self._book_wake = _Wakeup()
        self._refresh_wake = _Wakeup()
        self._bookkeeper = threading.Thread(target=self._bookkeeper_loop, name="rlfm-bookkeeper",
                                            daemon=True)
        self._refresher = threading.Thread(target=self._refresher_loop, name="rlfm-refresher",
                                           daemon=True)
        self._bookkeeper.start()
        self._refresher.start()
        self.request_refresh()

    @classmethod
    def from_config(cls, config: RobotConfig, engine: PolicyEngine | None = None,
                    stats: CountStats | None = None) -> OnlineAgent:
        """The agent ``config`` describes, with its statistics file and its log folder.

        A start checks and loads everything before it writes anything: the log folder, the
        statistics (``stats``, else those at ``statistics.path``), then the engine (``engine``,
        else ``make_robot_engine(config)``). A start that fails leaves every file as it was,
        apart from a damaged statistics file, moved aside with the command that rebuilds it
        (``StatsPersistence.load_or_new``). The log segment is created by the first step.
        """
        kinds = terminal_kinds(config.terminal_state)
        if engine is not None:
            config.discretizer.check_fits(engine.max_states - len(kinds))
        if config.log_path is not None:
            check_log_folder(config.log_path)
        persistence = config.persistence()
        if stats is None and persistence is not None:
            if config.stats_required and not persistence.path.exists() \
                    and not persistence.prev_path.exists():
                raise FileNotFoundError(f"statistics.path: {persistence.path} not found "
                                        f"(statistics.require_file is true)")
            stats = persistence.load_or_new(config.n_states, config.n_actions)
        if engine is None:
            engine = make_robot_engine(config)
        logger = None
        if config.log_path is not None:
            import yaml

            logger = TransitionLogger.new_segment(
                config.log_path, config.n_states, config.n_actions, config.horizon,
                yaml.safe_dump(config.discretizer.to_config(), sort_keys=False))
        try:
            return cls(config.discretizer, engine, config.horizon, config.n_actions, stats=stats,
                       persistence=persistence, transition_log=logger, **config.agent_settings())
        except BaseException:
            if logger is not None:
                logger.close()
            raise

    # -- the control loop ------------------------------------------------------------------
    def step(self, observation, reward: float | None = None) -> int:
        """Record the transition this observation closes and return the next action.

        Raises InvalidObservation (statistics untouched) for NaN/inf or wrong-length input.
        """
        t0 = time.perf_counter()
        c = self._c
        prev = self._prev
        if reward is not None:
            reward = float(reward)
            if not isfinite(reward):
                c.rejected_observations += 1
                raise InvalidObservation(f"reward: must be finite, got {reward}")
        elif prev is not None:
            c.rejected_observations += 1
            raise InvalidObservation("reward: required after an episode's first step")
        try:
            s = self.discretizer.state(observation)
        except ValueError as exc:
            c.rejected_observations += 1
            raise InvalidObservation(str(exc)) from None

        if prev is not None:
            c.transitions += 1
            c.stats_transitions += 1
            self._since_request += 1
            self._queue.append((prev[0], prev[1], reward, s))
            self._see(prev[0])
            self._see(s)
            pair = prev[0] * self.n_actions + prev[1]
            first_try = not self._tried[pair]
            self._tried[pair] = 1
            if self._since_request >= self.refresh_every or (self.refresh_on_new_pair and first_try):
                if self._pending:  # first the request before, so that the two do not coalesce
                    self._wait_if_lagging()
                self.request_refresh()
        if self._pending:
            self._wait_if_lagging()

        policy = self._policy
        if policy is None:
            c.safe_actions += 1
            a = (self.safe_action if self.safe_action is not None
                 else min(int(self._rng.random() * self.n_actions), self.n_actions - 1))
        elif self.mode == "greedy":
            a = policy.greedy[s]
        else:
            a = min(bisect_right(policy.cdf[s], self._rng.random()), self.n_actions - 1)
        self._prev = (s, a)

        start = self._inflight_start
        if start is not None and not self._late_flagged and t0 - start > self.control_period_s:
            self._flag_late()
        c.steps += 1
        if self.transition_log is not None:
            self._queue.append((self._episode, c.steps, np.array(observation, np.float32), s, a,
                                reward, prev, int((time.perf_counter() - t0) * 1e9),
                                time.time_ns()))
        dt = time.perf_counter() - t0  # after the copy for the log: the caller waits for it too
        c.last_step_latency_s = dt
        if dt > self.control_period_s:
            c.step_overruns += 1
        return a

    def _wait_if_lagging(self) -> None:
        """Wait for the oldest unfinished refresh request once it is max_policy_lag old.

        An engine that hangs costs one bounded wait: until a refresh finishes again, none.
        """
        pending, done = self._pending, self._done_gen
        while pending and pending[0][0] <= done:
            pending.popleft()
        if not pending or self._c.transitions - pending[0][1] < self.max_policy_lag:
            return
        if self._gave_up_at == done:
            pending.clear()
            return
        self._c.policy_waits += 1
        timeout = max(1.0, 100 * self.control_period_s)
        if not self.wait_refreshed(pending[0][0], timeout=timeout):
            log.warning("a policy refresh is still running after %.1f s; acting on the last policy "
                        "and not waiting again until a refresh finishes", timeout)
            self._gave_up_at = done
            pending.clear()

    def end_episode(self) -> None:
        """The next step starts a new episode (its reward is ignored)."""
        self._prev = None
        self._episode += 1
        self._c.episodes += 1
        if self.refresh_on_episode_end:
            self.request_refresh()

    def terminate(self, reward: float, observation=None, kind: str | None = None) -> None:
        """End the episode in an absorbing state; ``reward`` is the last action's.

        ``kind`` is "failure" or "goal" (None: the first of ``terminal_state``); ``observation``
        (optional, only logged) is what the robot saw as it ended. Raises InvalidObservation
        (nothing changed) for a non-finite reward or an observation that ``step`` would refuse,
        ValueError for a kind the agent was not built with.
        """
        if not self.terminal_indices:
            raise ValueError("terminate: this agent has no terminal state; construct it with "
                             "terminal_state='failure', 'goal' or 'both'")
        if kind is None:
            kind = next(iter(self.terminal_indices))
        if kind not in self.terminal_indices:
            raise ValueError(f"terminate: kind {kind!r} is not one of this agent's terminal states "
                             f"{tuple(self.terminal_indices)}")
        T, worth = self.terminal_indices[kind], TERMINAL_KINDS[kind]
        reward = float(reward)
        if not math.isfinite(reward):
            self._c.rejected_observations += 1
            raise InvalidObservation(f"reward: must be finite, got {reward}")
        if observation is not None:
            try:
                self.discretizer.state(observation)  # the same checks as step's
            except ValueError as exc:
                self._c.rejected_observations += 1
                raise InvalidObservation(str(exc)) from None
        prev = self._prev
        if prev is not None:
            added = absorbing_transitions(prev[0], prev[1], reward, T, worth, self.n_actions)
            self._see(prev[0])
            self._see(T)
            self._c.stats_transitions += len(added)
            for s, a, _, _ in added:
                self._tried[s * self.n_actions + a] = 1
            self._queue.extend(added)
            if self.transition_log is not None:
                obs = (np.zeros(0, np.float32) if observation is None
                       else np.array(observation, np.float32).ravel())
                stamp = time.time_ns()
                self._queue.append((self._episode, self._c.steps, obs, T, -1, reward, prev, 0, stamp))
                for a in range(self.n_actions):
                    self._queue.append((self._episode, self._c.steps, np.zeros(0, np.float32), T,
                                        -1, worth, (T, a), 0, stamp))
            self._c.transitions += 1
        self.end_episode()

    def reset_statistics(self) -> None:
        """Forget all experience; the current policy stays until the next refresh."""
        self._track(CountStats(self.n_states, self.n_actions))
        self._prev = None
        self._queue.append(_RESET)
        self.request_refresh()

    def load_statistics(self, path: str | os.PathLike | None = None) -> tuple[int, Path]:
        """Replace the live statistics by saved ones (default: the persistence path, falling
        back to its last good copy); returns (transitions loaded, the file read).

        Call it from the thread that steps, as ``reset_statistics``. Raises FileNotFoundError
        without a file, ValueError (StatsFileError) for an unreadable or mis-shaped one, and
        leaves the live statistics as they were.
        """
        if path is None and self.persistence is None:
            raise ValueError("load_statistics: no path given and no persistence configured")
        path = Path(path) if path is not None else self.persistence.path
        if not path.exists() and not path.with_name(path.name + ".prev").exists():
            raise FileNotFoundError(f"no statistics file at {path}")
        if self.persistence is not None and path == self.persistence.path:
            stats = self.persistence.load_or_new(self.n_states, self.n_actions)
            used = self.persistence.loaded_from
        else:
            stats, used = CountStats.load_with_fallback(path)
            if (stats.n_states, stats.n_actions) != (self.n_states, self.n_actions):
                raise StatsFileError(f"{used}: statistics have S={stats.n_states}, "
                                     f"A={stats.n_actions}; this agent has S={self.n_states}, "
                                     f"A={self.n_actions}")
        self._track(stats)
        self._prev = None
        self._queue.append(_Replace(stats))
        self.request_refresh()
        return stats.n_transitions, used

    def _track(self, stats: CountStats) -> None:
        """step()'s O(1) views of ``stats``: the pairs tried, the states seen, their counts."""
        # (s, a) pairs tried at least once, row-major: step()'s cheap "first try" test
        self._tried = bytearray((stats.n_sa > 0).ravel().tolist())
        seen = (stats.n_sa.sum(axis=1) > 0) | (stats.n_sas.sum(axis=(0, 1)) > 0)
        self._seen = bytearray(seen.tolist())
        self._c.stats_transitions = stats.n_transitions
        self._c.visited_states = int(seen.sum())

    def _see(self, state: int) -> None:
        if not self._seen[state]:
            self._seen[state] = 1
            self._c.visited_states += 1

    def save_statistics(self, path: str | os.PathLike | None = None) -> bool:
        """Save the live statistics now (to the persistence path if ``path`` is None).

        False when the disk refused (logged; counted for the persistence path), as callers
        such as the ROS node's save service answer with it; raises ValueError without a path.
        """
        if path is None and self.persistence is None:
            raise ValueError("save_statistics: no path given and no persistence configured")
        with self._stats_lock:
            self._drain()
            if path is None:
                return self.persistence.save(self._stats, force=True)
            try:
                self._stats.save(path, keep_previous=True)
            except OSError as exc:
                log.error("could not save statistics to %s (%s)", path, exc)
                return False
        return True

    # -- refresh control -------------------------------------------------------------------
    def request_refresh(self) -> int:
        """Ask for a policy refresh from the statistics as they are now; returns its ticket."""
        self._since_request = 0
        self._requested_gen += 1
        if self.max_policy_lag is not None:
            self._pending.append((self._requested_gen, self._c.transitions))
        self._book_wake.set()
        return self._requested_gen

    def wait_refreshed(self, ticket: int | None = None, timeout: float | None = None) -> bool:
        """Block until the refresh of ``ticket`` (default: the latest request) was attempted."""
        ticket = self._requested_gen if ticket is None else ticket
        with self._done:
            return self._done.wait_for(lambda: self._done_gen >= ticket or self._stopping,
                                       timeout) and self._done_gen >= ticket

    @property
    def stats(self) -> CountStats:
        """A copy of the statistics, up to the last step (O(S^2 A): not for every tick; the
        counters hold the totals)."""
        with self._stats_lock:
            self._drain()
            return self._stats.copy()

    def statistics_summary(self) -> dict:
        """Totals of the statistics up to the last step, without copying them."""
        with self._stats_lock:
            self._drain()
            s = self._stats
            n = s.n_transitions
            return {"transitions": n, "visited_states": s.visited_states, "n_states": s.n_states,
                    "action_counts": s.n_sa.sum(axis=0).tolist(),
                    "mean_reward": float(s.reward_sum.sum() / n) if n else None}

    @property
    def has_terminal_state(self) -> bool:
        return bool(self.terminal_indices)

    @property
    def terminal_index(self) -> int | None:
        """The state a termination enters by default, None without one."""
        return next(iter(self.terminal_indices.values()), None)

    @property
    def has_policy(self) -> bool:
        return self._policy is not None

    @property
    def counters(self) -> AgentCounters:
        snap = dataclasses.replace(self._c, clipped_values=self.discretizer.clipped)
        if self.persistence is not None:
            snap.saves = self.persistence.counters.saves
            snap.save_failures = self.persistence.counters.save_failures
        return snap

    def _flag_late(self) -> None:
        with self._late_lock:
            if not self._late_flagged:
                self._late_flagged = True
                self._c.late_refreshes += 1

    # -- background threads ----------------------------------------------------------------
    def _drain(self) -> None:
        """Apply the queued steps to the statistics and the log; hold _stats_lock."""
        q, stats, logger = self._queue, self._stats, self.transition_log
        while q:
            item = q.popleft()
            if item is _RESET:
                stats.reset()
            elif type(item) is _Replace:
                stats.reset()
                stats.merge(item.stats)
            elif len(item) == 4:
                stats.update(*item)
            else:
                episode, step, obs, s, a, r, prev, latency_ns, stamp = item
                p_s, p_a = prev if prev is not None else (-1, -1)
                try:
                    logger.write(episode, step, obs.ravel(), s, a, r if r is not None else 0.0,
                                 p_s, p_a, latency_ns, stamp)
                except OSError as exc:
                    self._log_failed(exc)
        if logger is not None:
            try:
                logger.flush_if_due()  # also while the robot is idle: the crash-loss bound holds
            except OSError as exc:
                self._log_failed(exc)

    def _log_failed(self, exc: OSError) -> None:
        self._c.log_failures += 1
        if self._c.log_failures == 1:
            log.error("cannot write the transition log (%s); steps go unlogged", exc)

    def _bookkeeper_loop(self) -> None:
        while True:
            self._book_wake.wait(0.05)
            stopping = self._stopping
            try:
                # Read the ticket before draining: step() queues a transition before it
                # requests the refresh that must include it.
                gen = self._requested_gen
                with self._stats_lock:
                    self._drain()
                    snapshot = self._stats.copy() if gen > self._snapshot_gen and not stopping else None
                    if (not stopping and self.persistence is not None
                            and self.persistence.due(self._stats.n_transitions)):
                        self.persistence.save(self._stats)
                if snapshot is not None:
                    self._snapshot_gen = gen
                    with self._mailbox_lock:
                        self._mailbox = (gen, snapshot)
                    self._refresh_wake.set()
            except Exception:  # a logging or disk error must not stop the bookkeeping
                log.exception("bookkeeper error")
            if stopping:
                return

    def _lower_refresh_priority(self) -> None:
        """Renice this (the refresh) thread only: on Linux a thread id is a PRIO_PROCESS target."""
        if not self.refresh_niceness or not hasattr(os, "setpriority"):
            return
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + self.refresh_niceness)
        except OSError as exc:
            log.warning("cannot lower the refresh thread's priority (%s); it competes with the "
                        "control loop as an equal", exc)

    def _refresher_loop(self) -> None:
        self._lower_refresh_priority()
        while True:
            self._refresh_wake.wait()
            if self._stopping:
                return
            with self._mailbox_lock:
                item, self._mailbox = self._mailbox, None
            if item is None:
                continue
            gen, snapshot = item
            self._refresh(snapshot)
            with self._done:
                self._done_gen = gen
                self._done.notify_all()

    def _refresh(self, snapshot: CountStats) -> None:
        self._late_flagged = False
        t0 = time.perf_counter()
        self._inflight_start = t0
        try:
            logits = np.asarray(self.engine.policy(snapshot, self.horizon), dtype=np.float64)
            expected = (snapshot.n_states, snapshot.n_actions)
            if logits.shape != expected or not np.all(np.isfinite(logits)):
                raise ValueError(f"engine returned logits of shape {logits.shape} (expected "
                                 f"{expected}) or with non-finite values")
            policy = self._make_policy(logits, snapshot)
        except Exception as exc:  # any engine failure: keep the last good policy
            self._c.refresh_failures += 1
            log.warning("policy refresh failed (%s: %s); keeping the last good policy",
                        type(exc).__name__, exc)
        else:
            self._policy = policy
            self._c.refreshes += 1
            self._c.policy_stats_version = snapshot.version
        finally:
            latency = time.perf_counter() - t0
            self._c.last_refresh_latency_s = latency
            if latency > self.control_period_s:
                self._flag_late()
            self._inflight_start = None

    def _make_policy(self, logits: np.ndarray, snapshot: CountStats) -> _Policy:
        temperatures = state_temperatures(self.temperature, snapshot.n_sa.sum(axis=1),
                                          self.anneal_visits)
        cdf = np.cumsum(action_probabilities(logits, temperatures), axis=1)
        return _Policy(np.argmax(logits, axis=1).tolist(), cdf.tolist(), snapshot.version)

    # -- shutdown --------------------------------------------------------------------------
    def close(self, save: bool = True) -> None:
        """Stop the threads, flush the log, and save the statistics (if persistence is set)."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        self._book_wake.set()
        self._refresh_wake.set()
        with self._done:
            self._done.notify_all()
        self._bookkeeper.join(timeout=10.0)
        self._refresher.join(timeout=max(1.0, 10 * self.control_period_s))
        if self._refresher.is_alive():
            log.warning("policy engine still running at close; leaving its thread behind")
        with self._stats_lock:
            self._drain()  # whatever the bookkeeper left, before the log closes
            if self.transition_log is not None:
                self.transition_log.close()
            if save and self.persistence is not None:
                self.persistence.save(self._stats)

    def __enter__(self) -> OnlineAgent:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"OnlineAgent(S={self.n_states}, A={self.n_actions}, mode={self.mode!r}, "
                f"engine={self.engine.backend})")

