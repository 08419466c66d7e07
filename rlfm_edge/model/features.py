"""Turn count statistics into graph features: the one place that decides what the model sees.

Nodes are states and state-action pairs. A state-action node (s, a) attends over its
observed successor states s' (edges where N(s, a, s') > 0, at most ``max_successors``
of them, the most visited first); a state node attends over its own actions. The same
arrays feed the PyG graph (training) and the padded dense tensors (export, inference).

Message passing sees only as many steps ahead as the network has layers, while a reward may
sit H steps away (DeepSea, chains, combination locks). So each (s, a) also gets the values of
a full H-step backward induction on the statistics' own graph: the empirical Q̂ and an
optimistic Q⁺ (a count bonus, untried actions worth the most reward per step): what
certainty-equivalent planning and UCB-style exploration would each do. The network learns
when to follow which, and what to do where neither is trustworthy.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace

import numpy as np
from scipy import sparse

from rlfm_edge.stats import CountStats

STATE_FEATURES = 7
BASE_SA_FEATURES = 9   # read from the statistics: what the training shards store
PLAN_SA_FEATURES = 4   # Q̂/H, (Q̂ - V̂)/H, Q⁺/H, (Q⁺ - V⁺)/H from plan_features()
SA_FEATURES = BASE_SA_FEATURES + PLAN_SA_FEATURES
EDGE_FEATURES = 2
_LOG_SCALE = 5.0
# Column names, for errors that say which feature went wrong.
STATE_FEATURE_NAMES = ("bias", "log visits", "seen", "tried fraction", "log arrivals", "log horizon",
                       "log states")
SA_FEATURE_NAMES = ("bias", "log visits", "tried", "mean reward", "reward std", "count bonus",
                    "successor mass not kept", "successors kept", "log horizon",
                    "Q̂/H", "(Q̂ - V̂)/H", "Q⁺/H", "(Q⁺ - V⁺)/H")
EDGE_FEATURE_NAMES = ("transition probability", "log count")


@dataclass
class GraphFeatures:
    """Features of one MDP's statistics, unpadded.

    state_x (S, STATE_FEATURES); sa_x (S*A, SA_FEATURES), row s*A + a;
    edge_state, edge_sa (E,) successor state and source state-action of each edge;
    edge_slot (E,) rank of the edge among its state-action's successors;
    edge_attr (E, EDGE_FEATURES).
    """

    n_states: int
    n_actions: int
    state_x: np.ndarray
    sa_x: np.ndarray
    edge_state: np.ndarray
    edge_sa: np.ndarray
    edge_slot: np.ndarray
    edge_attr: np.ndarray


def _check_finite(stats: CountStats) -> None:
    for name in ("reward_sum", "reward_sq_sum"):
        if not np.all(np.isfinite(getattr(stats, name))):
            raise ValueError(f"statistics field {name!r} contains NaN or inf")


def _check_horizon(horizon) -> None:
    """A positive whole number; NaN and inf are refused here rather than failing in int()."""
    if (isinstance(horizon, bool) or not isinstance(horizon, numbers.Real) or not math.isfinite(horizon)
            or int(horizon) != horizon or horizon < 1):
        raise ValueError(f"horizon: expected a positive integer, got {horizon!r}")


def _check_finite_features(field: str, x: np.ndarray, names: tuple[str, ...], first_col: int = 0) -> None:
    """Refuse NaN or inf in float32 features: a value finite in the float64 statistics (a
    reward of 1e39) overflows float32 to inf and would make every logit NaN without an error.
    ``x`` holds columns ``first_col`` on of ``field``."""
    if np.isfinite(x).all():
        return
    row, col = np.argwhere(~np.isfinite(x))[0]
    col += first_col
    raise ValueError(f"features: {field} column {col} ({names[col]}) is NaN or inf at row {row}: the "
                     f"statistics hold a value beyond float32's range (about 3.4e38)")


def _transitions(n_sas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sa, s_next, count) of every nonzero N(s, a, s'), in row-major order.

    The one pass over the dense (S, A, S) counts a refresh makes; negative counts (a
    corrupted statistics object) are rejected here, where they are already at hand.
    """
    S = n_sas.shape[-1]
    flat = n_sas.reshape(-1)
    index = np.flatnonzero(flat != 0)
    counts = flat[index]
    if counts.size and counts.min() < 0:
        raise ValueError("statistics field 'n_sas' has negative counts")
    sa, s_next = np.divmod(index, S)
    return sa, s_next, counts


def successor_edges(n_sas: np.ndarray, max_successors: int) -> tuple[np.ndarray, ...]:
    """Observed successor edges, at most ``max_successors`` per (s, a), most visited first.

    Returns (sa, s_next, slot, count) arrays sorted by sa then slot (count descending, ties
    by state index).
    """
    S, A, _ = n_sas.shape
    return _top_successors(*_transitions(n_sas), S, A, max_successors)


def _top_successors(sa, s_next, counts, S: int, A: int, max_successors: int) -> tuple[np.ndarray, ...]:
    """successor_edges on _transitions' output. It runs on every policy refresh, so the
    three sort keys are packed into one int64 and sorted in place (a vectorised sort, a
    third of lexsort's time); lexsort remains for counts too large to pack."""
    top = int(counts.max()) + 1 if counts.size else 1
    if S * A * top * S < 2**62:
        key = (sa * top + (top - 1 - counts)) * S + s_next
        key.sort()
        rest, s_next = np.divmod(key, S)
        sa, rank = np.divmod(rest, top)
        counts = top - 1 - rank
    else:
        order = np.lexsort((s_next, -counts, sa))
        sa, s_next, counts = sa[order], s_next[order], counts[order]
    per_sa = np.bincount(sa, minlength=S * A)
    slot = np.arange(sa.size) - np.repeat(np.cumsum(per_sa) - per_sa, per_sa)
    keep = slot < max_successors
    return sa[keep], s_next[keep], slot[keep], counts[keep]


def build_features(stats: CountStats, horizon: int, max_successors: int) -> GraphFeatures:
    """Features the model reads for statistics ``stats`` and episode length ``horizon``."""
    return with_plan_features(base_features(stats, horizon, max_successors), horizon)


def base_features(stats: CountStats, horizon: int, max_successors: int) -> GraphFeatures:
    """The features read straight from the statistics (sa_x has BASE_SA_FEATURES columns)."""
    _check_horizon(horizon)
    _check_finite(stats)
    S, A = stats.n_states, stats.n_actions
    n_sa = stats.n_sa.astype(np.float64)
    tried = (n_sa > 0).astype(np.float64)
    n_s = n_sa.sum(axis=1)
    log_h = np.log(horizon) / _LOG_SCALE
    log_s = np.log(S) / _LOG_SCALE

    transitions = _transitions(stats.n_sas)
    n_in = np.bincount(transitions[1], weights=transitions[2], minlength=S)
    sa, s_next, slot, counts = _top_successors(*transitions, S, A, max_successors)
    p_hat = counts / np.maximum(n_sa.reshape(-1)[sa], 1.0)
    kept_mass = np.bincount(sa, weights=p_hat, minlength=S * A).reshape(S, A)
    n_succ = np.bincount(sa, minlength=S * A).reshape(S, A)

    state_x = np.stack([
        np.ones(S),
        np.log1p(n_s) / _LOG_SCALE,
        (n_s > 0) | (n_in > 0),
        tried.mean(axis=1),
        np.log1p(n_in) / _LOG_SCALE,
        np.full(S, log_h),
        np.full(S, log_s),
    ], axis=1).astype(np.float32)
    sa_x = np.stack([
        np.ones((S, A)),
        np.log1p(n_sa) / _LOG_SCALE,
        tried,
        stats.R_hat(),
        np.sqrt(stats.R_var()),
        tried / np.sqrt(np.maximum(n_sa, 1.0)),
        tried * (1.0 - kept_mass),
        n_succ / max_successors,
        np.full((S, A), log_h),
    ], axis=-1).reshape(S * A, BASE_SA_FEATURES).astype(np.float32)
    edge_attr = np.stack([p_hat, np.log1p(counts) / _LOG_SCALE], axis=1).astype(np.float32)
    for field, x, names in (("state_x", state_x, STATE_FEATURE_NAMES), ("sa_x", sa_x, SA_FEATURE_NAMES),
                            ("edge_attr", edge_attr, EDGE_FEATURE_NAMES)):
        _check_finite_features(field, x, names)
    return GraphFeatures(S, A, state_x, sa_x, s_next.astype(np.int64), sa.astype(np.int64),
                         slot.astype(np.int64), edge_attr)


def horizon_of(g: GraphFeatures) -> int:
    """The episode length that base features were built for (their log-H column)."""
    return int(round(float(np.exp(g.state_x[0, 5] * _LOG_SCALE))))


def with_plan_features(g: GraphFeatures, horizon: int) -> GraphFeatures:
    """Base features ``g`` with the plan_features columns appended to sa_x."""
    if g.sa_x.shape[1] != BASE_SA_FEATURES:
        raise ValueError(f"expected base features ({BASE_SA_FEATURES} columns), got {g.sa_x.shape[1]}")
    plan = plan_features(g, horizon)
    _check_finite_features("sa_x", plan, SA_FEATURE_NAMES, BASE_SA_FEATURES)  # the base ones are checked
    return replace(g, sa_x=np.concatenate([g.sa_x, plan], axis=1))


def plan_features(g: GraphFeatures, horizon: int) -> np.ndarray:
    """(S*A, 4) float32: H-step backward induction on the kept successor edges.

    Q̂_h = R̂ + P̂ V̂_{h-1}, V̂ the max over tried actions (0 where none is tried);
    Q⁺_h = min(h r, R̂ + r / sqrt(n) + P̂ V⁺_{h-1}) for tried actions and h r for untried,
    r = max(1, largest R̂). Returned per step of the horizon: Q̂_H/H, (Q̂_H - V̂_H)/H and
    the same for Q⁺. Reads only base features, so old training shards get them too.
    """
    S, A = g.n_states, g.n_actions
    tried = g.sa_x[:, 2] > 0
    r_hat = g.sa_x[:, 3].astype(np.float64)
    bonus = g.sa_x[:, 5].astype(np.float64)  # tried / sqrt(n)
    r_top = max(1.0, float(r_hat[tried].max())) if tried.any() else 1.0
    M = _backup_matrix(g, tried, r_hat, r_hat + r_top * bonus)
    x = np.zeros((2, S + 1))  # [V̂ | 1] and [V⁺ | 1]: the 1 adds each row's reward
    x[:, S] = 1.0
    V = x[:, :S]
    for h in range(1, horizon + 1):
        Q = (M @ x.reshape(-1)).reshape(2, A + 1, S)
        np.max(Q, axis=1, out=V)
        np.minimum(V[1], h * r_top, out=V[1])  # the cap commutes with the max: S values, not S*A
    np.minimum(Q[1], horizon * r_top, out=Q[1])
    Q = Q[:, :A].transpose(0, 2, 1)  # back to (2, S, A)
    q_hat = np.where(tried.reshape(S, A), Q[0], 0.0)
    return (np.stack([q_hat, q_hat - V[0, :, None], Q[1], Q[1] - V[1, :, None]], axis=-1
                     ).reshape(S * A, 4) / horizon).astype(np.float32)


def _backup_matrix(g: GraphFeatures, tried: np.ndarray, r_hat: np.ndarray, r_plus: np.ndarray):
    """The sparse matrix of one backup of both values: Q = M @ [V̂ | 1 | V⁺ | 1].

    A refresh runs H backups, so each is one sparse product, one min and one max over
    actions. Rows are (value, action, state), action-major so that the max over actions is
    a max over contiguous blocks of S values (several times faster than over a short last
    axis), with a virtual action A: worth 0 to V̂ where the state has no tried action (V̂ = 0
    there), never chosen otherwise. A row holds its kept successor edges (P̂) and, in the
    column of the value's constant 1, its reward: R̂ for Q̂, R̂ + r / sqrt(n) for Q⁺; untried
    rows have no edges and reward -inf (kept out of V̂'s max) or +inf (Q⁺ left at its cap).
    Built straight in CSR form: an edge's place is its row's start plus its slot.
    """
    S, A = g.n_states, g.n_actions
    per_row = np.ones((A + 1, S), np.int64)  # the reward entry
    per_row[:A] += np.bincount(g.edge_sa, minlength=S * A).reshape(S, A).T
    ends = np.cumsum(per_row).reshape(A + 1, S)
    nnz = int(ends[-1, -1])
    reward_at = ends - 1  # each row's last entry
    sa_rewards = reward_at[:A].T.reshape(-1)  # in (s, a) order, like the features
    edge_at = (sa_rewards - per_row[:A].T.reshape(-1) + 1)[g.edge_sa] + g.edge_slot
    index = np.int32 if 2 * (nnz + S) < 2**31 else np.int64
    indices = np.full(nnz, S, index)  # the reward column, where no edge goes
    indices[edge_at] = g.edge_state
    data = np.empty((2, nnz))
    data[0, edge_at] = g.edge_attr[:, 0]
    data[1, edge_at] = data[0, edge_at]
    data[0, sa_rewards] = np.where(tried, r_hat, -np.inf)
    data[1, sa_rewards] = np.where(tried, r_plus, np.inf)
    data[0, reward_at[A]] = np.where(tried.reshape(S, A).any(axis=1), -np.inf, 0.0)
    data[1, reward_at[A]] = -np.inf
    indptr = np.concatenate([[0], ends.reshape(-1), nnz + ends.reshape(-1)]).astype(index)
    return sparse.csr_matrix((data.reshape(-1), np.concatenate([indices, indices + (S + 1)]), indptr),
                             shape=(2 * (A + 1) * S, 2 * (S + 1)))


@dataclass
class DenseInputs:
    """Padded model inputs for a batch (the ONNX/TensorRT input layout): per state, then
    per (state, action), then per successor slot of a (state, action)."""

    state_x: np.ndarray     # (B, S, STATE_FEATURES) float32
    sa_x: np.ndarray        # (B, S, A, SA_FEATURES) float32
    succ_index: np.ndarray  # (B, S, A, K) int64, successor state of each slot
    succ_attr: np.ndarray   # (B, S, A, K, EDGE_FEATURES) float32
    succ_mask: np.ndarray   # (B, S, A, K) float32, 1 where the slot is an edge
    sa_mask: np.ndarray     # (B, S, A) float32, 1 where (s, a) exists

    def as_dict(self) -> dict[str, np.ndarray]:
        return dict(self.__dict__)


INPUT_NAMES = ("state_x", "sa_x", "succ_index", "succ_attr", "succ_mask", "sa_mask")
OUTPUT_NAMES = ("logits",)
# The leading axes of each input that follow the statistics (the exports keep them
# symbolic); the axes after them are fixed by the model (features, K).
DYNAMIC_AXES = {name: ("batch", "states") if name == "state_x" else ("batch", "states", "actions")
                for name in INPUT_NAMES}


def padded_size(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """The (S, A) a batch of statistics of these (n_states, n_actions) is padded to: the largest."""
    return max(s for s, _ in sizes), max(a for _, a in sizes)


def pad_features(batch: list[GraphFeatures], max_states: int, max_actions: int,
                 max_successors: int) -> DenseInputs:
    """Pad a list of GraphFeatures to (S, A, K) = (max_states, max_actions, max_successors)."""
    B, S, A, K = len(batch), max_states, max_actions, max_successors
    out = DenseInputs(
        state_x=np.zeros((B, S, STATE_FEATURES), np.float32),
        sa_x=np.zeros((B, S, A, SA_FEATURES), np.float32),
        succ_index=np.zeros((B, S, A, K), np.int64),
        succ_attr=np.zeros((B, S, A, K, EDGE_FEATURES), np.float32),
        succ_mask=np.zeros((B, S, A, K), np.float32),
        sa_mask=np.zeros((B, S, A), np.float32),
    )
    for b, g in enumerate(batch):
        if g.n_states > S or g.n_actions > A:
            raise ValueError(f"statistics with S={g.n_states}, A={g.n_actions} exceed the padded size "
                             f"Smax={S}, Amax={A}")
        if g.edge_slot.size and g.edge_slot.max() >= K:
            raise ValueError(f"features have {g.edge_slot.max() + 1} successor slots, more than K={K}")
        out.state_x[b, :g.n_states] = g.state_x
        if g.n_actions == A:  # rows s*A + a already in place: whole-block copies
            out.sa_x[b, :g.n_states] = g.sa_x.reshape(g.n_states, A, SA_FEATURES)
            out.sa_mask[b, :g.n_states] = 1.0
            rows = g.edge_sa
        else:
            s_idx, a_idx = np.divmod(np.arange(g.n_states * g.n_actions), g.n_actions)
            out.sa_x[b, s_idx, a_idx] = g.sa_x
            out.sa_mask[b, s_idx, a_idx] = 1.0
            rows = (g.edge_sa // g.n_actions) * A + g.edge_sa % g.n_actions
        slots = rows * K + g.edge_slot  # flat (row, slot) index: one 1-D scatter each
        out.succ_index[b].reshape(-1)[slots] = g.edge_state
        out.succ_attr[b].reshape(-1, EDGE_FEATURES)[slots] = g.edge_attr
        out.succ_mask[b].reshape(-1)[slots] = 1.0
    return out
