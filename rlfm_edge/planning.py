"""Finite-horizon dynamic programming: optimal values and exact policy evaluation."""

from __future__ import annotations

import numpy as np

from rlfm_edge.mdp import TabularMDP


def backward_induction(
    P: np.ndarray,
    R: np.ndarray,
    horizon: int,
    bonus: np.ndarray | None = None,
    v_max: float | None = None,
    v_min: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Q_h = clip(R + bonus_h + P V_{h+1}), V_h = max_a Q_h, for h = H-1 .. 0.

    ``bonus`` is (S, A) or (H, S, A) and may be negative (pessimism). Clipping to
    [v_min, v_max * (H - h) / H ...] is left to the caller through v_max/v_min, which
    bound Q_h by the per-step value range times the steps left.
    Returns Q (H, S, A) and V (H + 1, S) with V[H] = 0.
    """
    S, A = R.shape
    Q = np.zeros((horizon, S, A))
    V = np.zeros((horizon + 1, S))
    for h in range(horizon - 1, -1, -1):
        q = R + P @ V[h + 1]
        if bonus is not None:
            q = q + (bonus[h] if bonus.ndim == 3 else bonus)
        steps_left = horizon - h
        if v_max is not None:
            q = np.minimum(q, v_max * steps_left)
        if v_min is not None:
            q = np.maximum(q, v_min * steps_left)
        Q[h] = q
        V[h] = q.max(axis=1)
    return Q, V


def value_iteration(mdp: TabularMDP) -> tuple[np.ndarray, np.ndarray]:
    """Optimal finite-horizon values: Q (H, S, A) and V (H + 1, S)."""
    return backward_induction(mdp.P, mdp.R, mdp.horizon)


def _stochastic_policy(policy: np.ndarray, horizon: int, S: int, A: int) -> np.ndarray:
    """Bring a policy to (H, S, A) action probabilities.

    Accepts deterministic (S,) or (H, S) action indices, or stochastic (S, A) or (H, S, A).
    """
    pi = np.asarray(policy)
    if pi.shape in ((S,), (horizon, S)) and np.issubdtype(pi.dtype, np.integer):
        if np.any(pi < 0) or np.any(pi >= A):
            raise ValueError(f"policy: action indices must lie in [0, {A}), got {pi.min()}..{pi.max()}")
        probs = np.eye(A)[pi]
    elif pi.shape in ((S, A), (horizon, S, A)):
        probs = pi.astype(np.float64)
        if not np.all(np.isfinite(probs)) or np.any(probs < 0):
            raise ValueError("policy: probabilities must be finite and non-negative")
        if np.any(np.abs(probs.sum(axis=-1) - 1.0) > 1e-6):
            raise ValueError("policy: action probabilities must sum to 1 in every state")
    else:
        raise ValueError(
            f"policy: expected shape (S,), (H, S) of ints or (S, A), (H, S, A) of probabilities "
            f"with S={S}, A={A}, H={horizon}; got {pi.shape} {pi.dtype}"
        )
    if probs.ndim == 2:
        probs = np.broadcast_to(probs, (horizon, S, A))
    return probs


def policy_evaluation(mdp: TabularMDP, policy: np.ndarray) -> np.ndarray:
    """Exact values V^pi (H + 1, S) of a deterministic or stochastic policy."""
    S, A, H = mdp.n_states, mdp.n_actions, mdp.horizon
    probs = _stochastic_policy(policy, H, S, A)
    V = np.zeros((H + 1, S))
    for h in range(H - 1, -1, -1):
        q = mdp.R + mdp.P @ V[h + 1]
        V[h] = (probs[h] * q).sum(axis=1)
    return V


def policy_value(mdp: TabularMDP, policy: np.ndarray) -> float:
    """Expected return V^pi(mu0) of an episode under the policy."""
    return float(mdp.mu0 @ policy_evaluation(mdp, policy)[0])


def optimal_value(mdp: TabularMDP) -> float:
    """V*(mu0), the best expected return of an episode."""
    return float(mdp.mu0 @ value_iteration(mdp)[1][0])
