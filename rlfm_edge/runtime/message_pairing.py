"""The ROS 2 node's messages paired into OnlineAgent calls, in plain Python (tested without DDS).

The node hears a robot on separate topics: ``~/reward`` (the reward of the action before it),
``~/observation``, ``~/episode_end`` (the episode ended by a time limit, after its last reward
and final observation) and ``~/terminal`` / ``~/goal`` (the episode ended in an absorbing
state; the message carries the last action's reward). DDS orders messages per topic only, so
an observation can overtake the reward sent before it, or the end of the episode before it:
while a reward is awaited, an observation is held until the reward comes, an episode end
arrives, or ``reward_wait_s`` passes (then ``timeout()``, from the caller's timer).

Every valid observation is answered by exactly one action (``publish``); input that cannot be
used is dropped, counted in ``counts`` by cause, and its reason kept in ``last_drop``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from rlfm_edge.runtime.online_agent import InvalidObservation, OnlineAgent

COUNTS = ("observations", "dropped_observations", "dropped_rewards", "missing_rewards",
          "dropped_terminals")


class MessagePairing:
    def __init__(self, agent: OnlineAgent, publish: Callable[[int], None], reward_wait_s: float,
                 on_drop: Callable[[str, str], None] = lambda key, reason: None) -> None:
        self.agent = agent
        self.publish = publish
        self.reward_wait_s = reward_wait_s
        self.on_drop = on_drop
        self.counts = dict.fromkeys(COUNTS, 0)
        self.last_drop = ""
        self.forget()

    def forget(self) -> None:
        """Start afresh (after the statistics were reset or loaded): no reward awaited."""
        self._reward: float | None = None  # the reward of the last action, once it came
        self._awaiting = False  # an action went out and its reward has not come
        self._held = None  # an observation waiting for its reward

    def _drop(self, key: str, reason: str) -> None:
        self.counts[key] += 1
        self.last_drop = reason
        self.on_drop(key, reason)

    def reward(self, r: float) -> None:
        if not math.isfinite(r):
            self._drop("dropped_rewards", f"reward {r} is not finite")
        elif not self._awaiting:
            self._drop("dropped_rewards", "reward with no action before it (before any "
                       "observation, after an episode end, or a second reward for one action)")
        else:
            self._reward, self._awaiting = r, False
            self.timeout()

    def observation(self, obs) -> bool:
        """Take an observation; True when it is held for its reward (arm the timer)."""
        dim = self.agent.discretizer.n_dims
        if len(obs) != dim or not all(map(math.isfinite, obs)):
            finite = "finite" if all(map(math.isfinite, obs)) else "with NaN/inf"
            self._drop("dropped_observations", f"observation: expected {dim} finite values, got "
                       f"{len(obs)} ({finite})")
            return False  # a reward that came stays for the next valid observation
        self.timeout()  # an observation still held has waited long enough
        if self._awaiting and self.reward_wait_s > 0:
            self._held = obs
            return True
        self._act(obs)
        return False

    def episode_end(self) -> None:
        """The episode ended by a time limit, after its final observation."""
        if self._reward is not None:
            self._drop("dropped_rewards", "episode ended with a reward and no observation after "
                       "it; publish the final observation, or end it with ~/terminal or ~/goal")
        self._reward, self._awaiting = None, False
        self.agent.end_episode()
        self.timeout()  # the next episode's first observation overtook the end

    def terminal(self, reward: float, kind: str | None = None) -> None:
        """The episode ended in an absorbing state of ``kind`` (None: the configured default),
        ``reward`` being the last action's."""
        if not math.isfinite(reward):
            self._drop("dropped_terminals", f"terminal reward {reward} is not finite")
            return
        if self._reward is not None:
            self._drop("dropped_rewards", "a reward on ~/reward before ~/terminal or ~/goal, which "
                       "carry the last reward themselves")
        kinds = self.agent.terminal_indices
        if (kind or next(iter(kinds), None)) not in kinds:
            self._drop("dropped_terminals", f"{kind or 'terminal'} end, but terminal_state "
                       f"has {list(kinds) or 'none'}; the episode ends as by a time limit")
            self.agent.end_episode()
        else:
            self.agent.terminate(reward, kind=kind)
        self._reward, self._awaiting = None, False
        self.timeout()

    def timeout(self) -> None:
        """Answer the held observation now: its reward came, the episode ended, or it waited
        long enough (then without a reward: counted under missing_rewards)."""
        if self._held is not None:
            obs, self._held = self._held, None
            self._act(obs)

    def _act(self, obs) -> None:
        reward = self._reward
        if reward is None and self._awaiting:
            # the reward of the last action never came: that transition is unknowable, so this
            # observation starts a new stretch of experience instead of stalling the robot
            self._drop("missing_rewards", "observation with no reward for the previous action")
            self.agent.end_episode()
        try:
            action = self.agent.step(obs, reward)
        except InvalidObservation as exc:  # checked before; kept for whatever the agent refuses
            self._drop("dropped_observations", str(exc))
            return
        self.publish(action)
        self._reward, self._awaiting = None, True
        self.counts["observations"] += 1
