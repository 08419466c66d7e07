"""Offline policy extraction: certainty-equivalence VI, VI-LCB, the method registry."""

from __future__ import annotations

import numpy as np
import pytest

from rlfm_edge.inference.base import PolicyEngine
from rlfm_edge.mdp import TabularMDP
from rlfm_edge.offline import extract_policy, method_names, register_method
from rlfm_edge.planning import optimal_value, policy_value
from rlfm_edge.stats import CountStats


def lucky_rooms(n_actions: int = 8, horizon: int = 4) -> TabularMDP:
    """From state 0, action 0 enters a safe cycle paying 1, 0, 1, ... exactly (state 1, 2);
    every other action enters its own room paying Bernoulli(0.4) per step. With few
    samples some room action looks like it pays 1 every step: the winner's curse."""
    S = n_actions + 2
    P = np.zeros((S, n_actions, S))
    R = np.zeros((S, n_actions))
    P[0, 0, 1] = 1.0
    for a in range(1, n_actions):
        P[0, a, 2 + a] = 1.0
    P[1, :, 2] = P[2, :, 1] = 1.0
    R[1] = 1.0
    for s in range(3, S):
        P[s, :, s] = 1.0
        R[s] = 0.4
    return TabularMDP(P, R, np.eye(S)[0], horizon, name="lucky-rooms")


def small_random_mdp(seed: int = 0) -> TabularMDP:
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(3), size=(3, 2))
    return TabularMDP(P, rng.random((3, 2)), np.ones(3) / 3, 4, name="random3",
                      reward_dist="deterministic")


def uniform_episodes(mdp: TabularMDP, episodes: int, seed: int) -> list[tuple]:
    """Transitions of a uniformly random behaviour policy."""
    rng = np.random.default_rng(seed)
    data = []
    for _ in range(episodes):
        s = mdp.reset(rng)
        for _h in range(mdp.horizon):
            a = int(rng.integers(mdp.n_actions))
            r, s_next = mdp.step(s, a, rng)
            data.append((s, a, r, s_next))
            s = s_next
    return data


def uniform_pairs(mdp: TabularMDP, n: int, seed: int) -> list[tuple]:
    """n transitions from (s, a) pairs drawn uniformly (a generative model)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s, a = int(rng.integers(mdp.n_states)), int(rng.integers(mdp.n_actions))
        r, s_next = mdp.step(s, a, rng)
        out.append((s, a, r, s_next))
    return out


def value_of(mdp: TabularMDP, data, method: str, **kw) -> float:
    pi = extract_policy(data, mdp.n_states, mdp.n_actions, mdp.horizon, method, **kw)
    return policy_value(mdp, pi)


def test_vi_lcb_beats_certainty_equivalence_on_small_uniform_datasets():
    mdp = lucky_rooms()
    datasets = [uniform_episodes(mdp, 20, seed) for seed in range(30)]
    ce = np.mean([value_of(mdp, d, "vi") for d in datasets])
    lcb = np.mean([value_of(mdp, d, "vi_lcb") for d in datasets])
    assert lcb > ce + 0.05


@pytest.mark.parametrize("method", ["vi", "vi_lcb"])
def test_both_recover_the_optimal_policy_with_plenty_of_data(method):
    for seed in range(3):
        mdp = small_random_mdp(seed)
        data = uniform_pairs(mdp, 6000, seed)
        assert value_of(mdp, data, method) == pytest.approx(optimal_value(mdp), abs=1e-9)


def test_policy_shape_and_same_answer_from_stats_or_transitions():
    mdp = small_random_mdp(1)
    data = uniform_pairs(mdp, 200, 0)
    stats = CountStats.from_transitions(3, 2, data)
    for method in ("vi", "vi_lcb"):
        pi = extract_policy(data, 3, 2, 4, method)
        assert pi.shape == (4, 3) and np.issubdtype(pi.dtype, np.integer)
        np.testing.assert_array_equal(pi, extract_policy(stats, 3, 2, 4, method))


def test_vi_lcb_prefers_a_tried_action_to_an_untried_one():
    # Only action 1 was tried, and it never paid: LCB still prefers it to the unknown.
    data = [(0, 1, 0.0, 0)] * 3
    pi = extract_policy(data, 1, 3, 2, "vi_lcb")
    assert np.all(pi == 1)


def test_vi_lcb_with_data_splitting_runs_and_needs_transitions():
    mdp = small_random_mdp(2)
    data = uniform_pairs(mdp, 4000, 1)
    assert value_of(mdp, data, "vi_lcb", split=True) > 0.9 * optimal_value(mdp)
    with pytest.raises(ValueError, match="split"):
        extract_policy(CountStats.from_transitions(3, 2, data), 3, 2, 4, "vi_lcb", split=True)


def test_registered_method_scores_are_broadcast_over_steps():
    register_method("always_last", lambda data, horizon: np.tile([0.0, 1.0], (data.stats.n_states, 1)))
    assert "always_last" in method_names()
    pi = extract_policy([], 3, 2, 5, "always_last")
    assert pi.shape == (5, 3) and np.all(pi == 1)


@pytest.mark.parametrize("data,match", [
    ([(0, 0, 0.5)], "data"),
    ([(0, 5, 0.5, 1)], "a must lie"),
    ([(0, 0, 1.5, 1)], "rewards"),
    ([(0.5, 0, 0.5, 1)], "integers"),
    ([(0, 0, float("nan"), 1)], "NaN"),
    (CountStats(4, 2), "S=4"),
])
def test_bad_data_is_rejected_naming_the_problem(data, match):
    with pytest.raises(ValueError, match=match):
        extract_policy(data, 3, 2, 4, "vi")


@pytest.mark.parametrize("kw,match", [
    ({"method": "magic"}, "method"),
    ({"horizon": 0}, "horizon"),
    ({"n_states": -1}, "n_states"),
    ({"method": "vi_lcb", "bonus_scale": -1}, "bonus_scale"),
    ({"method": "vi_lcb", "delta": 2}, "delta"),
    ({"method": "vi", "unvisited": "zero"}, "unvisited"),
])
def test_bad_arguments_are_rejected_naming_the_field(kw, match):
    args = {"n_states": 3, "n_actions": 2, "horizon": 4, "method": "vi"} | kw
    with pytest.raises(ValueError, match=match):
        extract_policy([(0, 0, 0.5, 1)], **args)


class _PreferLastAction(PolicyEngine):
    """An engine whose logits always rank the last action first (the masking's worst case)."""

    backend, precision, max_states, max_actions = "fixed", "fp32", 16, 8

    def policy(self, stats: CountStats, horizon: int) -> np.ndarray:
        return np.tile(np.arange(stats.n_actions, dtype=np.float32), (stats.n_states, 1))


def test_rlfm_by_default_never_picks_an_untried_action_where_one_was_tried():
    pytest.importorskip("torch")
    data = [(0, 0, 1.0, 1), (0, 1, 0.0, 2), (1, 1, 0.5, 2)]  # state 2: nothing tried
    engine = _PreferLastAction()
    free = extract_policy(data, 3, 3, 2, "rlfm", engine=engine, support="all")
    kept = extract_policy(data, 3, 3, 2, "rlfm", engine=engine)
    assert (free == 2).all()  # the model alone picks the untried action 2 everywhere
    np.testing.assert_array_equal(kept[:, :2], [[1, 1], [1, 1]])  # best tried action
    np.testing.assert_array_equal(kept[:, 2], [2, 2])  # nothing tried: the model decides
    with pytest.raises(ValueError, match="support"):
        extract_policy(data, 3, 3, 2, "rlfm", engine=engine, support="some")


def test_rlfm_bcq_support_keeps_only_actions_the_behaviour_took_often_enough():
    pytest.importorskip("torch")
    # state 0: action 0 x 10, action 1 x 2, action 2 x 4 (0.2 and 0.4 of the most taken)
    data = [(0, 0, 0.0, 1)] * 10 + [(0, 1, 1.0, 1)] * 2 + [(0, 2, 0.0, 1)] * 4
    engine = _PreferLastAction()
    strict = extract_policy(data, 2, 3, 1, "rlfm", engine=engine, support="bcq")
    assert strict[0, 0] == 2  # 0.4 >= 0.3: the model's favourite stays allowed
    stricter = extract_policy(data, 2, 3, 1, "rlfm", engine=engine, support="bcq", bcq_threshold=0.5)
    assert stricter[0, 0] == 0  # only the most taken action is left
    assert strict[0, 1] == stricter[0, 1] == 2  # state 1: nothing tried, the model decides
    with pytest.raises(ValueError, match="bcq_threshold"):
        extract_policy(data, 2, 3, 1, "rlfm", engine=engine, support="bcq", bcq_threshold=1.5)


def test_rlfm_per_step_reads_the_model_at_the_steps_left():
    pytest.importorskip("torch")
    from rlfm_edge.inference.planning_engine import PlanningEngine

    # State 0: action 0 pays 0.2 and stays, action 1 pays 0 and moves to state 1, which pays
    # 1 every step: moving on is best while 2 or more steps are left, the 0.2 on the last one.
    data = [(0, 0, 0.2, 0)] * 5 + [(0, 1, 0.0, 1)] * 5 + [(1, 0, 1.0, 1)] * 5 + [(1, 1, 1.0, 1)] * 5
    engine = PlanningEngine(bonus_scale=0.0)  # logits: Q of the empirical MDP for the steps left
    stationary = extract_policy(data, 2, 2, 4, "rlfm", engine=engine, per_step=False)
    per_step = extract_policy(data, 2, 2, 4, "rlfm", engine=engine)  # the default
    assert stationary[:, 0].tolist() == [1, 1, 1, 1]  # the first step's choice, every step
    assert per_step[:, 0].tolist() == [1, 1, 1, 0]
