"""Offline evaluation: extract a policy from a fixed dataset, then value it exactly."""

from __future__ import annotations

import numpy as np

from rlfm_edge.mdp import TabularMDP
from rlfm_edge.planning import policy_value


def check_dataset(mdp: TabularMDP, dataset) -> np.ndarray:
    """The dataset as an (n, 4) array of rows (s, a, r, s'), checked against the MDP's sizes."""
    try:
        n = len(dataset)
    except TypeError:
        raise ValueError(
            f"dataset: expected a list of (s, a, r, s_next) tuples, got {type(dataset).__name__}"
        ) from None
    if n == 0:
        raise ValueError("dataset: is empty; an offline method needs at least one transition")
    try:
        arr = np.asarray(dataset, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape != (n, 4):
        raise ValueError("dataset: every entry must be a (s, a, r, s_next) tuple of numbers")
    for col, name, bound in ((0, "s", mdp.n_states), (1, "a", mdp.n_actions),
                             (3, "s_next", mdp.n_states)):
        x = arr[:, col]
        bad = np.nonzero(~np.isfinite(x) | (x != np.round(x)) | (x < 0) | (x >= bound))[0]
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"dataset[{i}]: {name}={dataset[i][col]!r} is not an integer in [0, {bound})"
            )
    bad = np.nonzero(~np.isfinite(arr[:, 2]))[0]
    if bad.size:
        raise ValueError(f"dataset[{int(bad[0])}]: reward must be finite")
    return arr


def check_method_names(methods) -> list[str]:
    """The names as a list, or a ValueError naming the first unknown offline method."""
    from rlfm_edge.offline import method_names

    known = method_names()
    for method in methods:
        if method not in known:
            raise ValueError(f"method: unknown {method!r}; known: {', '.join(known)}")
    return list(methods)


def run_offline(mdp: TabularMDP, dataset, method: str, **method_kw) -> float:
    """Exact value V^pi(mu0) on ``mdp`` of the policy ``method`` extracts from ``dataset``.

    ``dataset`` is a list of (s, a, r, s_next) tuples; ``method_kw`` go to the method.
    """
    from rlfm_edge.offline import extract_policy

    if not isinstance(mdp, TabularMDP):
        raise ValueError(f"mdp: expected a TabularMDP, got {type(mdp).__name__}")
    arr = check_dataset(mdp, dataset)
    check_method_names([method])
    policy = extract_policy(arr, mdp.n_states, mdp.n_actions, mdp.horizon, method, **method_kw)
    return policy_value(mdp, policy)
