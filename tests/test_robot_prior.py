"""The robot prior family: random continuous systems seen through a robot's bins."""

from __future__ import annotations

import numpy as np
import pytest

from rlfm_edge.training.prior import PriorConfig, sample_mdp
from rlfm_edge.training.robot_prior import (
    BUILDERS,
    SYSTEMS,
    System,
    induced_mdp,
    sample_robot_mdp,
)


@pytest.mark.parametrize("name", SYSTEMS)
def test_every_system_induces_a_valid_mdp_whose_terminals_are_absorbing_at_their_worth(name):
    rng = np.random.default_rng(3)
    for _ in range(8):
        mdp = sample_robot_mdp(np.random.default_rng(rng.integers(1 << 30)), 120, 3, 40)
        assert mdp.n_states <= 120 and mdp.n_actions == 3 and mdp.horizon == 40
        kinds = mdp.meta["terminals"]
        bins = int(np.prod(mdp.meta["bins"]))
        assert mdp.n_states == bins + len(kinds)
        for i, kind in enumerate(kinds):
            T = bins + i
            assert np.all(mdp.P[T, :, T] == 1.0)
            assert np.all(mdp.R[T] == (1.0 if kind == "goal" else 0.0))
            assert mdp.mu0[T] == 0.0
        assert all(2 <= b <= 12 for b in mdp.meta["bins"])
    system = BUILDERS[name](np.random.default_rng(0), 3)
    assert system.name == name and len(system.controls) == 3


def test_the_family_is_reproducible_from_its_seed():
    a = sample_robot_mdp(np.random.default_rng(11), 200, 2, 30)
    b = sample_robot_mdp(np.random.default_rng(11), 200, 2, 30)
    assert np.array_equal(a.P, b.P) and np.array_equal(a.R, b.R)
    plain = [{k: v for k, v in m.meta.items() if k != "binned_system"} for m in (a, b)]
    assert plain[0] == plain[1]
    assert all(np.array_equal(x, y) for x, y in zip(a.meta["binned_system"].edges,
                                                    b.meta["binned_system"].edges, strict=True))


def _drift_line() -> System:
    """x' = x + u on [-1, 1] with u = -0.5 or +0.5; reaching x >= 0.75 is the goal."""
    return System(
        "line", np.array([-1.0]), np.array([1.0]), np.array([-0.5, 0.5]),
        step=lambda x, u, rng: np.clip(x + u[:, None], -1.0, 1.0), observe=lambda x: x,
        start=lambda n, rng: np.full((n, 1), -0.5), reward=lambda x, u: np.full(len(x), 0.0),
        goal=lambda x: x[:, 0] >= 0.75)


def test_transitions_are_the_frequencies_of_the_bins_reached_from_samples_of_each_bin():
    # Two bins cut at 0. From the left bin, +0.5 lands in the left bin for x < -0.5 and in the
    # right one otherwise; samples are uniform there (the random-policy rollouts start at -0.5
    # and spread), so both are likely. From the right bin, +0.5 reaches the goal for x >= 0.25.
    mdp = induced_mdp(_drift_line(), [np.array([0.0])], np.zeros(1), 10,
                      np.random.default_rng(0), samples_per_bin=4096)
    assert mdp.n_states == 3 and mdp.meta["terminals"] == ["goal"]
    left, right, goal = 0, 1, 2
    assert mdp.P[left, 0, left] == 1.0  # -0.5 from the left bin stays left
    assert mdp.P[right, 1, goal] > 0.3 and mdp.P[right, 1, left] == 0.0
    assert 0.2 < mdp.P[left, 1, right] < 0.8
    assert mdp.mu0[left] == 1.0 and np.all(mdp.R[goal] == 1.0)


def test_the_prior_draws_robot_mdps_within_its_robot_sizes():
    prior = PriorConfig(s_max=30, a_max=4, h_max=60, robot_s_max=64, robot_h_min=20,
                        weights={"robot": 1.0})
    rng = np.random.default_rng(5)
    for _ in range(10):
        mdp = sample_mdp(rng, prior)
        assert mdp.meta["family"] == "robot" and mdp.n_states <= 64 and 20 <= mdp.horizon <= 60
    with pytest.raises(ValueError, match="robot_s_max"):
        PriorConfig(robot_s_max=4)


def _uniform_counts(mdp, binned, episodes=2000):
    from rlfm_edge.stats import CountStats

    S, A, H = mdp.n_states, mdp.n_actions, mdp.horizon
    stats = CountStats(S, A)
    binned.rollout(np.full((H, S, A), 1.0 / A), episodes, np.random.default_rng(0), stats)
    return stats


def test_statistics_come_from_the_continuous_system_in_the_shuffled_mdps_indices():
    import dataclasses

    mdp = sample_mdp(np.random.default_rng(3), PriorConfig(weights={"robot": 1.0}))
    assert mdp.meta["system"] == "pendulum"
    binned = mdp.meta["binned_system"]

    def tv_to_P(stats):
        seen = stats.n_sa >= 200
        P_hat = stats.n_sas / np.maximum(stats.n_sa, 1)[..., None]
        return 0.5 * np.abs(P_hat - mdp.P).sum(axis=-1)[seen].mean()

    right = tv_to_P(_uniform_counts(mdp, binned))
    unshuffled = dataclasses.replace(binned, control_of=np.broadcast_to(
        np.arange(mdp.n_actions), (mdp.n_states, mdp.n_actions)).copy())
    assert right < 0.1 and tv_to_P(_uniform_counts(mdp, unshuffled)) > 2 * right


def test_an_absorbed_episode_stays_in_its_terminal_state_at_its_worth():
    from rlfm_edge.training.rollout import rollout

    prior = PriorConfig(weights={"robot": 1.0})
    rng = np.random.default_rng(0)
    seen = set()
    while len(seen) < 2:
        mdp = sample_mdp(rng, prior)
        S, A, H = mdp.n_states, mdp.n_actions, mdp.horizon
        stats = rollout(mdp, np.full((H, S, A), 1.0 / A), 300, np.random.default_rng(1))
        assert stats.n_sa.sum() == 300 * H
        for kind, state in _terminal_states(mdp).items():
            if stats.n_sa[state].sum() == 0:
                continue
            seen.add(kind)
            assert stats.n_sas[state, :, state].sum() == stats.n_sa[state].sum()
            worth = 1.0 if kind == "goal" else 0.0
            assert stats.reward_sum[state].sum() == worth * stats.n_sa[state].sum()


def _terminal_states(mdp) -> dict[str, int]:
    """The MDP state of each terminal kind: the absorbing state at the kind's worth."""
    out = {}
    for kind in mdp.meta["terminals"]:
        worth = 1.0 if kind == "goal" else 0.0
        absorbing = [s for s in range(mdp.n_states)
                     if np.all(mdp.P[s, :, s] == 1.0) and np.all(mdp.R[s] == worth)]
        binned = mdp.meta["binned_system"]
        n_bins = int(np.prod([len(e) + 1 for e in binned.edges]))
        out[kind] = int(binned.state_of[n_bins + binned.kinds.index(kind)])
        assert out[kind] in absorbing
    return out
