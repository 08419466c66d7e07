"""Baseline agents: registry, argument checks, determinism, learning, optimism."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from rlfm_edge.agents import agent_names, make_agent, unavailable_agents
from rlfm_edge.agents.ucbvi import UCBVIAgent
from rlfm_edge.mdp import TabularMDP
from rlfm_edge.planning import optimal_value, value_iteration

BASELINES = ["ucbvi", "ucbvi_bernstein", "qlearning", "qlearning_eps", "psrl", "random"]
LEARNERS = [n for n in BASELINES if n != "random"]


def riverswim(horizon: int = 20) -> TabularMDP:
    """The 6-state RiverSwim of Osband et al. 2013 (action 0 left, 1 right)."""
    S = 6
    P = np.zeros((S, 2, S))
    for s in range(S):
        P[s, 0, max(s - 1, 0)] = 1.0
    P[0, 1, [0, 1]] = [0.4, 0.6]
    for s in range(1, S - 1):
        P[s, 1, [s - 1, s, s + 1]] = [0.05, 0.6, 0.35]
    P[S - 1, 1, [S - 2, S - 1]] = [0.4, 0.6]
    R = np.zeros((S, 2))
    R[0, 0], R[S - 1, 1] = 0.005, 1.0
    return TabularMDP(P, R, np.eye(S)[0], horizon, name="riverswim")


def easy_bandit(horizon: int = 5) -> TabularMDP:
    """Two states, random moves, one clearly best action: any learner should find it."""
    P = np.full((2, 3, 2), 0.5)
    R = np.tile([0.9, 0.5, 0.2], (2, 1))
    return TabularMDP(P, R, np.array([0.5, 0.5]), horizon, name="easy")


def run_episodes(mdp: TabularMDP, agent, episodes: int, seed: int = 0) -> np.ndarray:
    """Episode returns of ``agent`` on ``mdp``, environment noise seeded apart from the agent."""
    rng = np.random.default_rng(10_000 + seed)
    returns = np.zeros(episodes)
    for k in range(episodes):
        s = mdp.reset(rng)
        for h in range(mdp.horizon):
            a = agent.act(s, h)
            r, s_next = mdp.step(s, a, rng)
            agent.observe(s, a, r, s_next)
            returns[k] += r
            s = s_next
        agent.end_episode()
    return returns


def regret(mdp: TabularMDP, name: str, episodes: int, seeds, **kw) -> float:
    v_star = optimal_value(mdp)
    totals = [episodes * v_star - run_episodes(
        mdp, make_agent(name, mdp.n_states, mdp.n_actions, mdp.horizon, seed=s, **kw),
        episodes, s).sum() for s in seeds]
    return float(np.mean(totals))


# -- registry -------------------------------------------------------------------------------
def test_registry_lists_baselines_and_rlfm():
    names = agent_names()
    for name in [*BASELINES, "rlfm"]:
        assert name in names


def test_unknown_agent_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="ucbvi"):
        make_agent("nope", 3, 2, 5)


def test_rlfm_reports_why_it_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "rlfm_edge.agents.rlfm", None)  # import now fails
    with pytest.raises(RuntimeError, match="rlfm"):
        make_agent("rlfm", 3, 2, 5)
    assert "rlfm" in unavailable_agents()
    assert "rlfm" in unavailable_agents()["rlfm"]


@pytest.mark.parametrize("name", BASELINES)
def test_make_agent_builds_every_baseline(name):
    agent = make_agent(name, 4, 3, 6, seed=1)
    assert (agent.n_states, agent.n_actions, agent.horizon) == (4, 3, 6)
    assert 0 <= agent.act(0, 0) < 3


def test_unknown_keyword_is_a_value_error():
    with pytest.raises(ValueError, match="bogus"):
        make_agent("psrl", 3, 2, 5, bogus=1)


# -- argument checks ------------------------------------------------------------------------
@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("args,field", [((-1, 2, 5), "n_states"), ((3, 0, 5), "n_actions"),
                                        ((3, 2, 0), "horizon"), ((3.5, 2, 5), "n_states"),
                                        ((True, 2, 5), "n_states")])
def test_bad_sizes_are_rejected_naming_the_field(name, args, field):
    with pytest.raises(ValueError, match=field):
        make_agent(name, *args)


@pytest.mark.parametrize("name,kw,field", [
    ("ucbvi", {"bonus": "gauss"}, "bonus"),
    ("ucbvi", {"bonus_scale": -1.0}, "bonus_scale"),
    ("ucbvi", {"delta": 1.5}, "delta"),
    ("qlearning", {"bonus_scale": float("nan")}, "bonus_scale"),
    ("qlearning", {"p": 0.0}, "p"),
    ("qlearning_eps", {"epsilon": 1.5}, "epsilon"),
    ("qlearning_eps", {"step_size": "fast"}, "step_size"),
    ("psrl", {"prior_transitions": 0.0}, "prior_transitions"),
    ("random", {"seed": -3}, "seed"),
])
def test_bad_options_are_rejected_naming_the_field(name, kw, field):
    with pytest.raises(ValueError, match=field):
        make_agent(name, 3, 2, 5, **kw)


def test_out_of_range_inputs_are_rejected():
    agent = make_agent("ucbvi", 3, 2, 5)
    with pytest.raises(ValueError, match="h"):
        agent.act(0, 5)
    with pytest.raises(ValueError, match="s"):
        agent.act(3, 0)
    agent.act(0, 0)
    with pytest.raises(ValueError, match="r"):
        agent.observe(0, 0, 2.0, 1)


# -- behaviour ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BASELINES)
def test_a_fixed_seed_gives_the_same_run(name):
    mdp = riverswim(10)
    runs = [run_episodes(mdp, make_agent(name, 6, 2, 10, seed=3), 30, seed=3) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("name", LEARNERS)
def test_every_learner_becomes_near_optimal_on_an_easy_mdp(name):
    mdp = easy_bandit()
    returns = run_episodes(mdp, make_agent(name, 2, 3, mdp.horizon, seed=0), 400)
    assert returns[-100:].mean() >= 0.9 * optimal_value(mdp)


def test_random_agent_stays_far_from_optimal():
    mdp = easy_bandit()
    returns = run_episodes(mdp, make_agent("random", 2, 3, mdp.horizon), 200)
    assert returns.mean() < 0.7 * optimal_value(mdp)


@pytest.mark.parametrize("name", ["ucbvi", "ucbvi_bernstein", "psrl"])
def test_ucbvi_and_psrl_beat_eps_greedy_qlearning_on_riverswim(name):
    mdp = riverswim(20)
    baseline = regret(mdp, "qlearning_eps", 300, range(3))
    assert regret(mdp, name, 300, range(3)) < 0.5 * baseline


def test_ucbvi_values_untried_pairs_at_the_maximum():
    agent = UCBVIAgent(4, 3, 6)
    np.testing.assert_allclose(agent.Q, np.broadcast_to((6 - np.arange(6))[:, None, None],
                                                         (6, 4, 3)))


def test_ucbvi_is_optimistic_early_with_the_textbook_bonus():
    mdp = riverswim(8)
    Q_star, _ = value_iteration(mdp)
    for seed in range(5):
        agent = UCBVIAgent(6, 2, 8, seed=seed, bonus_scale=1.0)
        rng = np.random.default_rng(seed)
        for _ in range(20):
            assert np.all(agent.Q - Q_star >= -1e-9)
            s = mdp.reset(rng)
            for h in range(mdp.horizon):
                a = agent.act(s, h)
                r, s_next = mdp.step(s, a, rng)
                agent.observe(s, a, r, s_next)
                s = s_next
            agent.end_episode()


def test_psrl_samples_are_distributions():
    agent = make_agent("psrl", 5, 2, 4, seed=0)
    agent.observe(0, 1, 0.5, 3)
    P, R = agent.sample_mdp()
    np.testing.assert_allclose(P.sum(axis=2), 1.0)
    assert np.all((R >= 0) & (R <= 1))


# -- the rlfm agent's per-state temperature ---------------------------------------------------
def test_state_temperatures_cool_with_visits_and_stay_fixed_without_annealing():
    from rlfm_edge.inference.base import state_temperatures

    visits = np.array([0, 30, 90, 3000])
    assert state_temperatures(0.3, visits, None).ravel().tolist() == [0.3] * 4
    cooled = state_temperatures(0.3, visits, 30.0).ravel()
    assert cooled[0] == 0.3 and np.allclose(cooled[1:3], [0.3 / np.sqrt(2), 0.15])
    assert np.all(np.diff(cooled) < 0) and cooled[-1] < 0.031


def test_rlfm_annealing_samples_greedily_where_the_state_is_well_visited():
    from rlfm_edge.agents.rlfm import RLFMAgent
    from rlfm_edge.inference.planning_engine import PlanningEngine

    def probabilities(anneal_visits):
        agent = RLFMAgent(2, 3, 5, engine=PlanningEngine(), temperature=1.0,
                          anneal_visits=anneal_visits)
        for _ in range(400):  # state 0 well visited, state 1 never
            for a, r in ((0, 0.2), (1, 0.5), (2, 0.4)):
                agent.stats.update(0, a, r, 0)
        agent._end_episode()
        return np.diff(agent.cdf, prepend=0.0, axis=1)

    fixed, cooled = probabilities(None), probabilities(1.0)  # T = 1 / sqrt(1 + 1200)
    assert cooled[0].argmax() == 1 and cooled[0, 1] > fixed[0, 1] + 0.2 and cooled[0, 1] > 0.95
    assert np.allclose(cooled[1], fixed[1])  # an unvisited state keeps the full temperature


@pytest.mark.parametrize("value", [0.0, -1.0, float("inf"), "hot"])
def test_rlfm_rejects_bad_anneal_visits(value):
    from rlfm_edge.agents.rlfm import RLFMAgent
    from rlfm_edge.inference.planning_engine import PlanningEngine

    with pytest.raises(ValueError, match="anneal_visits"):
        RLFMAgent(2, 2, 5, engine=PlanningEngine(), anneal_visits=value)
