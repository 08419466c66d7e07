"""The ROS node's pairing of rewards, observations and episode ends into agent calls, without DDS."""

from __future__ import annotations

import pytest

from rlfm_edge.discretize import Discretizer
from rlfm_edge.inference.planning_engine import PlanningEngine
from rlfm_edge.runtime import OnlineAgent
from rlfm_edge.runtime.message_pairing import MessagePairing


@pytest.fixture
def setup():
    agent = OnlineAgent(Discretizer.uniform([0.0], [1.0], 4), PlanningEngine(), horizon=5,
                        n_actions=2, terminal_state="both", max_policy_lag=0)
    actions: list[int] = []
    yield agent, MessagePairing(agent, actions.append, reward_wait_s=0.01), actions
    agent.close(save=False)


def _transitions(agent):
    s = agent.stats
    return {(int(a), int(b), int(c)): int(s.n_sas[a, b, c])
            for a, b, c in zip(*s.n_sas.nonzero(), strict=True)}


def test_each_observation_gets_one_action_and_a_reward_closes_the_transition_before_it(setup):
    agent, pairing, actions = setup
    assert not pairing.observation([0.1])
    pairing.reward(0.5)
    assert not pairing.observation([0.6])
    assert len(actions) == 2 and agent.counters.stats_transitions == 1
    assert agent.stats.reward_sum.sum() == 0.5


def test_an_observation_that_overtakes_its_reward_waits_for_it_or_for_the_timeout(setup):
    agent, pairing, actions = setup
    pairing.observation([0.1])
    assert pairing.observation([0.6])  # held: the reward of the first action has not come
    assert len(actions) == 1
    pairing.reward(0.5)  # now it is answered, with that reward
    assert len(actions) == 2 and agent.counters.stats_transitions == 1
    assert pairing.observation([0.9])
    pairing.timeout()  # no reward came: answered, the transition is unknowable
    assert len(actions) == 3 and agent.counters.stats_transitions == 1
    assert pairing.counts["missing_rewards"] == 1


def test_a_terminal_end_carries_the_last_reward_and_an_overtaking_first_observation_waits(setup):
    agent, pairing, actions = setup
    pairing.observation([0.1])
    pairing.reward(0.5)
    pairing.observation([0.4])
    assert pairing.observation([0.9])  # the next episode's first, ahead of ~/goal
    pairing.terminal(0.25, "goal")
    assert len(actions) == 3 and agent.counters.episodes == 1
    goal = agent.terminal_indices["goal"]
    assert _transitions(agent)[(1, actions[1], goal)] == 1
    assert agent.stats.reward_sum[1, actions[1]] == 0.25
    pairing.reward(1.0)
    pairing.observation([0.1])  # the third episode step closes (0.9 -> 0.1) with reward 1.0
    assert _transitions(agent)[(3, actions[2], 0)] == 1


def test_bad_input_is_dropped_counted_and_named(setup):
    agent, pairing, actions = setup
    pairing.reward(1.0)
    assert "no action before it" in pairing.last_drop
    pairing.observation([float("nan")])
    pairing.observation([0.1, 0.2])
    assert pairing.counts["dropped_observations"] == 2 and "expected 1 finite values" in pairing.last_drop
    pairing.observation([0.1])
    pairing.terminal(float("inf"))
    assert pairing.counts["dropped_terminals"] == 1
    pairing.reward(0.5)
    pairing.episode_end()  # a reward with no final observation after it
    assert pairing.counts["dropped_rewards"] == 2 and agent.counters.episodes == 1
    assert len(actions) == 1


def test_a_terminal_kind_the_agent_lacks_ends_the_episode_as_a_time_limit():
    agent = OnlineAgent(Discretizer.uniform([0.0], [1.0], 4), PlanningEngine(), horizon=5, n_actions=2)
    pairing = MessagePairing(agent, lambda a: None, reward_wait_s=0.0)
    pairing.observation([0.1])
    pairing.terminal(0.0)
    assert pairing.counts["dropped_terminals"] == 1 and "terminal_state has none" in pairing.last_drop
    assert agent.counters.episodes == 1 and agent.counters.stats_transitions == 0
    agent.close(save=False)
