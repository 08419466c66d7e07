"""TabularMDP: every invalid field is rejected by name; reset/step sample the stated laws."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from rlfm_edge.mdp import TabularMDP


def _valid() -> dict:
    P = np.array([[[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]],
                  [[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]],
                  [[0.0, 0.0, 1.0], [1 / 3, 1 / 3, 1 / 3]]])
    R = np.array([[0.3, 0.0], [1.0, 0.7], [0.0, 0.25]])
    mu0 = np.array([0.1, 0.6, 0.3])
    return {"P": P, "R": R, "mu0": mu0, "horizon": 4}


def _with(**changes) -> dict:
    kw = _valid()
    kw.update(changes)
    return kw


def _edit(field: str, index, value) -> dict:
    kw = _valid()
    arr = kw[field].copy()
    arr[index] = value
    kw[field] = arr
    return kw


INVALID = {
    "P not 3-D": (_with(P=np.ones((3, 2))), "P"),
    "P not square": (_with(P=np.full((3, 2, 2), 0.5)), "P"),
    "P empty": (_with(P=np.zeros((0, 2, 0)), R=np.zeros((0, 2)), mu0=np.zeros(0)), "P"),
    "P not numeric": (_with(P="abc"), "P"),
    "P NaN": (_edit("P", (0, 0, 0), np.nan), "P"),
    "P negative": (_edit("P", (0, 0, 0), -0.2), "P"),
    "P row sum": (_edit("P", (1, 1, 1), 0.3), "P"),
    "R wrong shape": (_with(R=np.zeros((3, 3))), "R"),
    "R NaN": (_edit("R", (2, 1), np.nan), "R"),
    "R inf": (_edit("R", (2, 1), np.inf), "R"),
    "R above 1": (_edit("R", (0, 0), 1.5), "R"),
    "R negative": (_edit("R", (0, 0), -0.1), "R"),
    "mu0 wrong shape": (_with(mu0=np.ones(2) / 2), "mu0"),
    "mu0 2-D": (_with(mu0=np.ones((3, 1)) / 3), "mu0"),
    "mu0 NaN": (_edit("mu0", 0, np.nan), "mu0"),
    "mu0 negative": (_with(mu0=np.array([-0.5, 1.0, 0.5])), "mu0"),
    "mu0 sum": (_with(mu0=np.array([0.5, 0.5, 0.5])), "mu0"),
    "horizon zero": (_with(horizon=0), "horizon"),
    "horizon negative": (_with(horizon=-3), "horizon"),
    "horizon fractional": (_with(horizon=2.5), "horizon"),
    "horizon bool": (_with(horizon=True), "horizon"),
    "reward_dist unknown": (_with(reward_dist="gaussian"), "reward_dist"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_field_raises_value_error_naming_it(case):
    kw, field = INVALID[case]
    with pytest.raises(ValueError, match=rf"^{field}:"):
        TabularMDP(**kw)


def test_valid_mdp_exposes_sizes_and_accepts_round_off():
    kw = _valid()
    kw["P"] = kw["P"] * (1 + 1e-9)
    mdp = TabularMDP(**kw, name="tiny")
    assert (mdp.n_states, mdp.n_actions, mdp.horizon) == (3, 2, 4)
    np.testing.assert_allclose(mdp.P.sum(axis=2), 1.0, atol=1e-15)
    assert "tiny" in repr(mdp)


def test_float_valued_integer_horizon_is_accepted_as_int():
    mdp = TabularMDP(**_with(horizon=5.0))
    assert mdp.horizon == 5 and isinstance(mdp.horizon, int)


def _chi2_pvalue(samples: np.ndarray, probs: np.ndarray) -> float:
    observed = np.bincount(samples, minlength=len(probs))
    keep = probs > 0
    assert observed[~keep].sum() == 0, "sampled an outcome of probability 0"
    if keep.sum() == 1:  # a certain outcome: nothing left to test
        return 1.0
    return stats.chisquare(observed[keep], probs[keep] * len(samples)).pvalue


def test_reset_samples_mu0():
    mdp = TabularMDP(**_valid())
    rng = np.random.default_rng(0)
    samples = np.array([mdp.reset(rng) for _ in range(20_000)])
    assert _chi2_pvalue(samples, mdp.mu0) > 1e-3


@pytest.mark.parametrize(("s", "a"), [(0, 0), (1, 1), (2, 1), (1, 0)])
def test_step_samples_next_state_from_P(s, a):
    mdp = TabularMDP(**_valid())
    rng = np.random.default_rng(1)
    samples = np.array([mdp.step(s, a, rng)[1] for _ in range(20_000)])
    assert _chi2_pvalue(samples, mdp.P[s, a]) > 1e-3


@pytest.mark.parametrize(("s", "a"), [(0, 0), (1, 1), (2, 1), (0, 1), (1, 0)])
def test_bernoulli_rewards_have_the_stated_mean(s, a):
    mdp = TabularMDP(**_valid())
    rng = np.random.default_rng(2)
    n = 20_000
    rewards = np.array([mdp.step(s, a, rng)[0] for _ in range(n)])
    assert set(np.unique(rewards)) <= {0.0, 1.0}
    p = mdp.R[s, a]
    assert abs(rewards.mean() - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12


def test_deterministic_rewards_return_the_mean_exactly():
    mdp = TabularMDP(**_valid(), reward_dist="deterministic")
    rng = np.random.default_rng(3)
    for s in range(3):
        for a in range(2):
            assert mdp.step(s, a, rng)[0] == mdp.R[s, a]


def test_same_seed_gives_same_trajectory():
    mdp = TabularMDP(**_valid())

    def trajectory(seed):
        rng = np.random.default_rng(seed)
        s, out = mdp.reset(rng), []
        for _ in range(50):
            r, s = mdp.step(s, 1, rng)
            out.append((r, s))
        return out

    assert trajectory(7) == trajectory(7)
    assert trajectory(7) != trajectory(8)
