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
PAPER_VARIANTS = ["ucbvi_paper", "qlearning_paper"]  # explore like random agents: not LEARNERS


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


# A fixed transition sequence on S=3, A=2, H=4: it visits every pair, reaches every step, and
# does not depend on the agent, so two agents fed it can be compared value by value.
S_FIX, A_FIX, H_FIX = 3, 2, 4


def fixed_episode(k: int):
    """(h, s, a, r, s_next) of episode k; actions are imposed, so act() only sets the step."""
    s = 0
    for h in range(H_FIX):
        a = (k + h * h) % A_FIX
        s_next = (s + a + k) % S_FIX
        yield h, s, a, ((5 * k + 3 * h) % 7) / 6, s_next
        s = s_next


def play(agent, k: int) -> list[tuple]:
    """Feed episode k to the agent; returns its transitions (s, a, r, s_next)."""
    steps = list(fixed_episode(k))
    for h, s, a, r, s_next in steps:
        agent.act(s, h)
        agent.observe(s, a, r, s_next)
    agent.end_episode()
    return [(s, a, r, s_next) for _, s, a, r, s_next in steps]


def feed(agent, episodes: int):
    for k in range(episodes):
        play(agent, k)
    return agent


# -- registry -------------------------------------------------------------------------------
def test_registry_lists_baselines_and_rlfm():
    names = agent_names()
    for name in [*BASELINES, *PAPER_VARIANTS, "rlfm"]:
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


@pytest.mark.parametrize("name", [*BASELINES, *PAPER_VARIANTS])
def test_make_agent_builds_every_baseline(name):
    agent = make_agent(name, 4, 3, 6, seed=1)
    assert (agent.n_states, agent.n_actions, agent.horizon) == (4, 3, 6)
    assert 0 <= agent.act(0, 0) < 3


def test_unknown_keyword_is_a_value_error():
    with pytest.raises(ValueError, match="bogus"):
        make_agent("psrl", 3, 2, 5, bogus=1)


# -- argument checks ------------------------------------------------------------------------
@pytest.mark.parametrize("name", [*BASELINES, *PAPER_VARIANTS])
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
    ("ucbvi", {"paper": "false"}, "paper"),
    ("qlearning", {"paper": 1}, "paper"),
    ("ucbvi_paper", {"n_episodes": 0}, "n_episodes"),
    ("qlearning_paper", {"n_episodes": 2.5}, "n_episodes"),
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
@pytest.mark.parametrize("name", [*BASELINES, *PAPER_VARIANTS])
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


# Q_1 after feed(agent, 6), recorded before the paper variants were added: the defaults feed
# BENCHMARKS.md, so they must not move (tolerance only for BLAS summation order).
DEFAULT_Q1 = {
    "ucbvi": [2.2807063272702366, 2.3807063272702367, 2.860719021651994,
              2.0669837733376863, 2.166983773337686, 2.6107190216519944],
    "ucbvi_bernstein": [2.6559083841372217, 2.755908384137222, 3.0,
                        2.454740384474197, 2.5214070511408635, 3.0],
    "qlearning": [2.021573907785204, 2.5187286115634313, 2.6876305339197657,
                  2.3546350918872574, 2.1865443504011894, 3.0205200408763884],
    "qlearning_eps": [2.0, 2.5, 2.6666666666666665, 2.3333333333333335, 2.1666666666666665, 3.0],
}


@pytest.mark.parametrize("name", DEFAULT_Q1)
def test_default_agents_keep_their_recorded_values(name):
    agent = feed(make_agent(name, S_FIX, A_FIX, H_FIX), 6)
    np.testing.assert_allclose(agent.Q[1].ravel(), DEFAULT_Q1[name], rtol=1e-13, atol=0)


# -- paper mode: the published algorithms, checked against minimal transcriptions ------------
def paper_ucbvi_q(data, T: int, c: float, Q_prev: np.ndarray | None, delta: float = 0.1):
    """Azar et al. 2017, Algorithms 2-3 (UCBVI-CH) on the transitions ``data`` (s, a, r, s').

    Q_h = min(Q_prev_h, H, R̂ + P̂ V_{h+1} + c 7 H L sqrt(1/N)), Q_h = H where N = 0; the
    minimum with Q_prev is skipped when it is None. Steps 1..H, stored at index h - 1.
    """
    S, A, H = S_FIX, A_FIX, H_FIX
    N, N_next, R_sum = np.zeros((S, A)), np.zeros((S, A, S)), np.zeros((S, A))
    for s, a, r, s_next in data:
        N[s, a] += 1
        N_next[s, a, s_next] += 1
        R_sum[s, a] += r
    L = np.log(5 * S * A * T / delta)
    Q, V_next = np.zeros((H, S, A)), np.zeros(S)
    for h in range(H, 0, -1):
        for s in range(S):
            for a in range(A):
                if N[s, a] == 0:
                    Q[h - 1, s, a] = H
                    continue
                b = c * 7 * H * L * np.sqrt(1 / N[s, a])
                q = min(H, (R_sum[s, a] + N_next[s, a] @ V_next) / N[s, a] + b)
                Q[h - 1, s, a] = q if Q_prev is None else min(Q_prev[h - 1, s, a], q)
        V_next = Q[h - 1].max(axis=1)
    return Q


@pytest.mark.parametrize("bonus_scale,n_episodes", [(None, None), (0.01, None), (0.01, 10)])
def test_ucbvi_paper_matches_the_published_algorithm(bonus_scale, n_episodes):
    kw = {} if bonus_scale is None else {"bonus_scale": bonus_scale}
    agent = make_agent("ucbvi_paper", S_FIX, A_FIX, H_FIX, n_episodes=n_episodes, **kw)
    data, Q = [], np.full((H_FIX, S_FIX, A_FIX), float(H_FIX))
    for k in range(10):
        T = H_FIX * (n_episodes or k + 1)
        Q = paper_ucbvi_q(data, T, 1.0 if bonus_scale is None else bonus_scale, Q)
        np.testing.assert_allclose(agent.Q, Q, rtol=1e-12, atol=1e-12)
        data += play(agent, k)
    assert (Q < H_FIX).any() if bonus_scale else (Q == H_FIX).all()  # c = 1 keeps Q at H


def test_ucbvi_paper_values_never_increase_across_episodes():
    """The min with the previous Q binds: without it the growing anytime L raises some Q."""
    agent = make_agent("ucbvi_paper", S_FIX, A_FIX, H_FIX, bonus_scale=0.01)
    data, raised = [], False
    for k in range(12):
        previous = agent.Q.copy()
        data += play(agent, k)
        assert np.all(previous >= agent.Q)
        raised |= bool(np.any(paper_ucbvi_q(data, H_FIX * (k + 2), 0.01, None) > previous))
    assert raised


class PaperQLearning:
    """Jin et al. 2018, Algorithm 1 (UCB-Hoeffding): Q_h = H, V_h = min(H, max_a Q_h), V_{H+1} = 0."""

    def __init__(self, c: float, p: float = 0.1) -> None:
        S, A, H = S_FIX, A_FIX, H_FIX
        self.c, self.p = c, p
        self.Q = np.full((H, S, A), float(H))
        self.V = np.vstack([np.full((H, S), float(H)), np.zeros((1, S))])
        self.N = np.zeros((H, S, A))

    def update(self, h: int, s: int, a: int, r: float, s_next: int, T: int) -> None:
        H = H_FIX
        self.N[h, s, a] += 1
        t = self.N[h, s, a]
        alpha = (H + 1) / (H + t)
        b = self.c * np.sqrt(H**3 * np.log(S_FIX * A_FIX * T / self.p) / t)
        self.Q[h, s, a] = (1 - alpha) * self.Q[h, s, a] + alpha * (r + self.V[h + 1, s_next] + b)
        self.V[h, s] = min(H, self.Q[h, s].max())


@pytest.mark.parametrize("bonus_scale,n_episodes", [(None, None), (0.01, None), (0.01, 10)])
def test_qlearning_paper_matches_the_published_algorithm(bonus_scale, n_episodes):
    kw = {} if bonus_scale is None else {"bonus_scale": bonus_scale}
    agent = make_agent("qlearning_paper", S_FIX, A_FIX, H_FIX, n_episodes=n_episodes, **kw)
    ref = PaperQLearning(1.0 if bonus_scale is None else bonus_scale)
    for k in range(10):
        for h, s, a, r, s_next in fixed_episode(k):
            agent.act(s, h)
            agent.observe(s, a, r, s_next)
            ref.update(h, s, a, r, s_next, T=H_FIX * (n_episodes or k + 1))
            np.testing.assert_allclose(agent.Q, ref.Q, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(agent.V, ref.V, rtol=1e-12, atol=1e-12)
        agent.end_episode()
    assert (ref.Q < H_FIX).any() if bonus_scale else (ref.Q >= H_FIX).all()  # c = 1 keeps Q >= H


def test_paper_mode_refuses_the_unimplemented_bernstein_bonus():
    with pytest.raises(ValueError, match="Bernstein bonus .* not implemented.*N'_"):
        make_agent("ucbvi_bernstein", 3, 2, 5, paper=True)


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


def test_rlfm_episode_sampling_commits_to_one_action_per_state_for_the_episode():
    from rlfm_edge.agents.rlfm import RLFMAgent
    from rlfm_edge.inference.planning_engine import PlanningEngine

    def episodes(sampling):
        # No data and a high temperature: every action about equally likely in every state.
        agent = RLFMAgent(2, 4, 30, engine=PlanningEngine(bonus_scale=0.0), temperature=100.0,
                          anneal_visits=None, sampling=sampling, seed=1)
        out = []
        for _ in range(20):
            out.append([agent.act(h % 2, h) for h in range(30)])
            agent.end_episode()
        return np.array(out)

    committed, fresh = episodes("episode"), episodes("step")
    for state in (0, 1):
        per_episode = committed[:, state::2]
        assert np.all(per_episode == per_episode[:, :1])  # the same action all episode long
        assert len(set(per_episode[:, 0])) > 1  # a new draw each episode
        assert all(len(set(row)) > 1 for row in fresh[:, state::2])


def test_rlfm_rejects_an_unknown_sampling_rule():
    from rlfm_edge.agents.rlfm import RLFMAgent
    from rlfm_edge.inference.planning_engine import PlanningEngine

    with pytest.raises(ValueError, match="sampling"):
        RLFMAgent(2, 2, 5, engine=PlanningEngine(), sampling="trajectory")
