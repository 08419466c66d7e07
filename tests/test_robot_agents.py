"""Receding-horizon PSRL / UCB-VI and discounted UCB Q-learning, on hand-checkable MDPs."""

from __future__ import annotations

import numpy as np
import pytest

from rlfm_edge.agents import agent_names, make_agent

NEW_AGENTS = ["psrl_rh", "ucbvi_rh", "qlearning_disc"]


@pytest.mark.parametrize("name", NEW_AGENTS)
def test_registered_and_built_by_make_agent(name):
    assert name in agent_names()
    agent = make_agent(name, 4, 3, 6, seed=1)
    assert 0 <= agent.act(0, 0) < 3


def two_armed_loop(agent, pulls: int) -> None:
    """One state, action 1 pays 1 and action 0 pays 0; each tried ``pulls`` times."""
    for _ in range(pulls):
        for a in (0, 1):
            agent.act(0, 1)
            agent.observe(0, a, float(a), 0)


@pytest.mark.parametrize("name", ["psrl_rh", "ucbvi_rh"])
def test_receding_agents_plan_when_a_window_opens_and_act_on_q0(name):
    agent = make_agent(name, 1, 2, 5, seed=0)
    two_armed_loop(agent, 30)
    q_before = agent.Q
    agent.act(0, 3)  # inside a window: no new plan, whatever was observed
    assert agent.Q is q_before
    assert agent.act(0, 0) == 1  # a window opens after new data: plan, then act on Q_0
    assert agent.Q is not q_before
    q_planned = agent.Q
    agent.act(0, 0)  # no data since the plan: keep it
    assert agent.Q is q_planned
    # Q_0 of the 5-step plan: action 1 is worth about 5 (1 per step), action 0 about 4
    assert agent.Q[0, 0, 1] == pytest.approx(5.0, abs=0.6)
    assert agent.Q[0, 0, 1] > agent.Q[0, 0, 0]


def test_receding_agents_do_not_plan_at_episode_end():
    agent = make_agent("psrl_rh", 1, 2, 5, seed=0)
    two_armed_loop(agent, 3)
    q = agent.Q
    agent.end_episode()
    assert agent.Q is q  # the next episode's first act plans


def test_ucbvi_rh_log_term_counts_transitions_not_episodes():
    agent = make_agent("ucbvi_rh", 2, 2, 10, seed=0, delta=0.1)
    two_armed_loop(agent, 5)  # 10 transitions, no episode ended
    assert agent.log_term() == pytest.approx(np.log(5 * 2 * 2 * (10 + 10) / 0.1))


def test_ucbvi_rh_keeps_the_projects_bonus_constant():
    assert make_agent("ucbvi_rh", 2, 2, 10).bonus_scale == make_agent("ucbvi", 2, 2, 10).bonus_scale


def test_qlearning_disc_values_absorbing_states_exactly():
    # state 1 is a goal (worth 1 per step), state 2 a failure (worth 0); gamma = 1 - 1/10
    agent = make_agent("qlearning_disc", 3, 1, 10, bonus_scale=0.0, absorbing={1: 1.0, 2: 0.0})
    assert agent.Q_hat[1, 0] == pytest.approx(10.0) and agent.Q_hat[2, 0] == 0.0
    agent.act(0, 0)
    agent.observe(0, 0, 0.0, 1)  # t = 1: alpha = (H + 1) / (H + 1) = 1
    assert agent.Q_hat[0, 0] == pytest.approx(0.9 * 10.0)
    agent.observe(0, 0, 0.0, 2)  # t = 2: alpha = 11 / 12, target 0
    assert agent.Q[0, 0] == pytest.approx(9.0 / 12)
    agent.observe(1, 0, 1.0, 1)  # the self-loop the runtime records: an absorbing value is known
    assert agent.Q_hat[1, 0] == pytest.approx(10.0)


def test_qlearning_disc_bonus_matches_the_finite_horizon_shape():
    # c / (1 - gamma) sqrt(H iota / t) with 1 / (1 - gamma) = H is c sqrt(H^3 iota / t)
    H, S, A, c, p = 10, 2, 1, 0.001, 0.1
    agent = make_agent("qlearning_disc", S, A, H, bonus_scale=c, p=p)
    agent.act(0, 0)
    agent.observe(0, 0, 0.0, 0)
    iota = np.log(S * A * 2 * 3 / p)
    expected = 0.0 + c * np.sqrt(H ** 3 * iota) + 0.9 * H  # alpha_1 = 1
    assert agent.Q[0, 0] == pytest.approx(expected)


def test_qlearning_disc_refuses_bad_absorbing_states():
    with pytest.raises(ValueError, match="absorbing"):
        make_agent("qlearning_disc", 3, 2, 10, absorbing={5: 0.0})
    with pytest.raises(ValueError, match="absorbing"):
        make_agent("qlearning_disc", 3, 2, 10, absorbing={1: 2.0})


@pytest.mark.parametrize("name", NEW_AGENTS)
def test_learn_the_better_arm(name):
    agent = make_agent(name, 1, 2, 5, seed=0)
    two_armed_loop(agent, 40)
    picks = [agent.act(0, h % 5) for h in range(20)]
    assert np.mean(picks) > 0.9
