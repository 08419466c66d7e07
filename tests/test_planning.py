"""Finite-horizon planning against independent solvers, Monte Carlo and its own invariants."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlfm_edge.mdp import TabularMDP
from rlfm_edge.planning import (
    backward_induction,
    optimal_value,
    policy_evaluation,
    policy_value,
    value_iteration,
)


def random_mdp(rng: np.random.Generator, S: int, A: int, H: int, sparse: bool = False,
               **kw) -> TabularMDP:
    P = rng.dirichlet(np.ones(S), size=(S, A))
    if sparse:  # exact zeros and near-deterministic rows, which a dense Dirichlet never gives
        P = np.where(rng.random(P.shape) < 0.5, 0.0, P)
        P[np.arange(S), :, rng.integers(0, S, size=S)] += 1e-3
        P /= P.sum(axis=2, keepdims=True)
    R = rng.random((S, A))
    return TabularMDP(P, R, np.full(S, 1.0 / S), H, **kw)


def brute_force_values(mdp: TabularMDP, steps: int) -> np.ndarray:
    """max over all deterministic non-stationary policies of the expected return of each
    start state, summed over every state sequence: no dynamic programming involved."""
    S, A = mdp.n_states, mdp.n_actions
    best = np.full(S, -np.inf)
    for flat in itertools.product(range(A), repeat=S * steps):
        policy = np.array(flat).reshape(steps, S)
        for s0 in range(S):
            total = 0.0
            for rest in itertools.product(range(S), repeat=steps - 1):
                states = (s0, *rest)
                prob, ret = 1.0, 0.0
                for h, s in enumerate(states):
                    a = policy[h, s]
                    ret += mdp.R[s, a]
                    if h + 1 < steps:
                        prob *= mdp.P[s, a, states[h + 1]]
                total += prob * ret
            best[s0] = max(best[s0], total)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_value_iteration_matches_brute_force_policy_enumeration(seed):
    rng = np.random.default_rng(seed)
    S, A, H = rng.integers(1, 4), rng.integers(1, 3), rng.integers(1, 4)
    mdp = random_mdp(rng, S, A, H, sparse=seed % 2 == 1)
    Q, V = value_iteration(mdp)
    assert Q.shape == (H, S, A) and V.shape == (H + 1, S)
    for h in range(H):  # V[h] is the optimal value with H - h steps left
        np.testing.assert_allclose(V[h], brute_force_values(mdp, H - h), atol=1e-9)
    np.testing.assert_array_equal(V[H], 0.0)


def test_value_iteration_matches_pymdptoolbox_finite_horizon():
    pytest.importorskip("mdptoolbox", reason="pymdptoolbox not installed")
    import mdptoolbox.example
    import mdptoolbox.mdp

    cases = [mdptoolbox.example.forest(S=5, r1=4, r2=2, p=0.1),
             mdptoolbox.example.forest(S=8, r1=10, r2=3, p=0.3)]
    np.random.seed(0)  # pymdptoolbox's rand draws from numpy's global state
    cases += [mdptoolbox.example.rand(6, 3), mdptoolbox.example.rand(4, 2, is_sparse=False)]
    for P_as, R in cases:
        P = np.transpose(P_as, (1, 0, 2))  # theirs is (A, S, S)
        R_sa = R if R.ndim == 2 else np.einsum("ast,ast->sa", P_as, R)
        for N in (1, 4, 9):
            ref = mdptoolbox.mdp.FiniteHorizon(P_as, R, 1.0, N)
            ref.run()
            _, V = backward_induction(P, R_sa, N)
            np.testing.assert_allclose(V.T, ref.V, atol=1e-6)  # theirs is (S, N + 1)
            # value_iteration needs rewards in [0, 1]: rescale, then map the values back
            r_min, scale = R_sa.min(), np.ptp(R_sa) or 1.0
            mdp = TabularMDP(P, (R_sa - r_min) / scale, np.eye(len(R_sa))[0], N)
            steps_left = np.arange(N, -1, -1)[:, None]
            V_scaled = value_iteration(mdp)[1]
            np.testing.assert_allclose(V_scaled * scale + r_min * steps_left, ref.V.T, atol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_policy_evaluation_matches_monte_carlo_rollouts(seed):
    rng = np.random.default_rng(seed)
    S, A, H = 4, 3, 6
    mdp = random_mdp(rng, S, A, H)
    policy = rng.dirichlet(np.ones(A), size=(H, S))
    exact = policy_value(mdp, policy)
    n = 4000
    returns = np.zeros(n)
    for i in range(n):
        s = mdp.reset(rng)
        for h in range(H):
            a = rng.choice(A, p=policy[h, s])
            r, s = mdp.step(s, a, rng)
            returns[i] += r
    assert abs(returns.mean() - exact) <= 5 * returns.std() / np.sqrt(n)


@pytest.mark.parametrize("seed", range(5))
def test_greedy_policy_of_q_star_attains_the_optimal_value(seed):
    rng = np.random.default_rng(seed)
    mdp = random_mdp(rng, 6, 3, 10)
    Q, V = value_iteration(mdp)
    greedy = Q.argmax(axis=2)  # (H, S) action indices
    np.testing.assert_allclose(policy_evaluation(mdp, greedy), V, atol=1e-12)
    assert policy_value(mdp, greedy) == pytest.approx(optimal_value(mdp), abs=1e-12)
    stationary = greedy[0]  # a stationary policy cannot beat the optimum
    assert policy_value(mdp, stationary) <= optimal_value(mdp) + 1e-12


mdp_params = st.tuples(st.integers(1, 6), st.integers(1, 4), st.integers(1, 8),
                       st.integers(0, 2**32 - 1))


@settings(max_examples=60, deadline=None)
@given(mdp_params)
def test_optimal_values_are_bounded_and_grow_with_steps_left(params):
    S, A, H, seed = params
    mdp = random_mdp(np.random.default_rng(seed), S, A, H)
    Q, V = value_iteration(mdp)
    steps_left = np.arange(H, 0, -1)[:, None, None]
    assert np.all(Q >= -1e-12) and np.all(Q - steps_left <= 1e-12)
    np.testing.assert_allclose(V[:H], Q.max(axis=2))
    assert np.all(np.diff(V, axis=0) <= 1e-12)  # V[h] >= V[h + 1]: more steps, more reward
    # Bellman optimality equation holds exactly at every step
    np.testing.assert_allclose(Q, mdp.R + np.einsum("sat,ht->hsa", mdp.P, V[1:]), atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(mdp_params, st.floats(0.0, 1.0))
def test_optimal_value_dominates_every_policy_and_shifts_with_rewards(params, shift):
    S, A, H, seed = params
    rng = np.random.default_rng(seed)
    mdp = random_mdp(rng, S, A, H)
    policy = rng.dirichlet(np.ones(A), size=(H, S))
    assert np.all(policy_evaluation(mdp, policy) <= value_iteration(mdp)[1] + 1e-12)
    # an affine reward map that keeps rewards in [0, 1] maps values by the same map per step
    scaled = TabularMDP(mdp.P, mdp.R * (1 - shift) + shift, mdp.mu0, H)
    steps_left = np.arange(H, -1, -1)[:, None]
    np.testing.assert_allclose(value_iteration(scaled)[1],
                               value_iteration(mdp)[1] * (1 - shift) + shift * steps_left,
                               atol=1e-9)


def test_backward_induction_applies_bonus_and_clipping():
    rng = np.random.default_rng(0)
    mdp = random_mdp(rng, 3, 2, 4)
    bonus = rng.random((4, 3, 2))
    Q, _ = backward_induction(mdp.P, mdp.R, 4, bonus=bonus, v_max=1.0)
    steps_left = np.arange(4, 0, -1)[:, None, None]
    assert np.all(Q - steps_left <= 1e-12)
    Q_pess, _ = backward_induction(mdp.P, mdp.R, 4, bonus=-10 * bonus, v_min=0.0)
    assert np.all(Q_pess >= 0.0)
    Q_free, _ = backward_induction(mdp.P, mdp.R, 4)
    assert np.all(Q_pess <= Q_free + 1e-12)


@pytest.mark.parametrize(
    "policy",
    [np.zeros(5, dtype=int),                      # wrong length
     np.full(3, 2),                               # action index out of range
     np.full(3, -1),                              # negative action
     np.full((3, 2), 0.7),                        # probabilities not summing to 1
     np.array([[1.5, -0.5]] * 3),                 # negative probability
     np.array([[np.nan, 1.0]] * 3),               # NaN probability
     np.zeros((2, 2, 2))],                        # wrong (H, S, A) shape
)
def test_policy_evaluation_rejects_malformed_policies(policy):
    mdp = random_mdp(np.random.default_rng(0), 3, 2, 4)
    with pytest.raises(ValueError, match="^policy:"):
        policy_evaluation(mdp, policy)
