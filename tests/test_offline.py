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


def reference_vi_lcb_paper(data: list[tuple], S: int, A: int, H: int, delta: float,
                           seed: int) -> np.ndarray:
    """The paper's episodic VI-LCB written out loop by loop: fold h of a random split backs
    up step h, b = H sqrt(L / m), L = 2000 ln(2 H S A / delta), V = max(0, max_a Q);
    where no bound beats 0 every action scores 0 (the paper keeps its initial policy)."""
    arr = np.asarray(data, dtype=float)
    order = np.random.default_rng(seed).permutation(len(arr))
    folds = np.array_split(order, H)
    L = 2000.0 * np.log(2 * H * S * A / delta)
    scores = np.zeros((H, S, A))
    V = np.zeros(S)
    for h in reversed(range(H)):
        rows = arr[folds[h]]
        Q = np.zeros((S, A))
        for s in range(S):
            for a in range(A):
                mine = rows[(rows[:, 0] == s) & (rows[:, 1] == a)]
                if len(mine) == 0:
                    Q[s, a] = -np.inf
                    continue
                p_next = np.bincount(mine[:, 3].astype(int), minlength=S) / len(mine)
                q = mine[:, 2].mean() + p_next @ V - H * np.sqrt(L / len(mine))
                Q[s, a] = min(q, H - h)
        V = np.maximum(Q.max(axis=1), 0.0)
        scores[h] = np.where(Q.max(axis=1, keepdims=True) > 0, Q, 0.0)
    return scores


def test_vi_lcb_paper_matches_a_loop_by_loop_reading_of_the_paper():
    from rlfm_edge.offline import OfflineData, _stats_of, vi_lcb_paper

    rng = np.random.default_rng(3)
    # Enough data that some lower bounds clear 0: L = 2000 ln(160) = 10,150, and action 0
    # (reward 1, about 51,000 samples per state and fold) gets 1 - 2 sqrt(L / m) > 0.
    n = 240_000
    actions = (rng.random(n) > 0.85).astype(int)
    data = np.column_stack([rng.integers(0, 2, n), actions, actions == 0,
                            rng.integers(0, 2, n)]).astype(float)
    ours = vi_lcb_paper(OfflineData(_stats_of(data, 2, 2), data), 2, delta=0.1, seed=5)
    ref = reference_vi_lcb_paper(data, 2, 2, 2, 0.1, 5)
    tried = np.isfinite(ref)
    np.testing.assert_allclose(ours[tried], ref[tried], atol=1e-9)
    assert np.all(ours[~tried] < ours[tried].min())  # untried: below every tried pair
    assert np.any(ref[:, :, 0] > 0)  # the bound-clearing branch was exercised


def test_vi_lcb_paper_imitates_the_most_frequent_action_when_no_bound_clears_zero():
    # 300 transitions: every penalty exceeds H, so the policy is the behaviour's mode.
    rng = np.random.default_rng(0)
    mdp = small_random_mdp(4)
    data = []
    for _ in range(300):
        s = int(rng.integers(3))
        a = int(rng.random() < 0.8)  # action 1 in 80% of the steps, whatever pays
        r, s_next = mdp.step(s, a, rng)
        data.append((s, a, r, s_next))
    assert np.all(extract_policy(data, 3, 2, 4, "vi_lcb_paper") == 1)


def test_vi_lcb_paper_follows_a_clear_lower_bound_over_the_most_frequent_action():
    # One state, H = 1: action 0 pays 1 on 10,000 samples, action 1 pays 0 on 20,000.
    # L = 2000 ln(40) = 7378, so action 0's bound is 1 - sqrt(L / 10000) = 0.14 > 0.
    data = [(0, 0, 1.0, 0)] * 10_000 + [(0, 1, 0.0, 0)] * 20_000
    assert extract_policy(data, 1, 2, 1, "vi_lcb_paper").tolist() == [[0]]


def test_vi_lcb_paper_needs_raw_transitions():
    stats = CountStats.from_transitions(1, 2, [(0, 0, 1.0, 0)])
    with pytest.raises(ValueError, match="split"):
        extract_policy(stats, 1, 2, 1, "vi_lcb_paper")
