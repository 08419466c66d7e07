"""The sufficient statistic of a tabular MDP's experience: what the robot keeps and the model reads.

N(s, a), N(s, a, s'), and the sum and sum of squares of rewards per (s, a). Files are
written atomically (temporary file, fsync, rename) with a format version and a sha256
checksum, so a power cut leaves either the old or the new complete file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from rlfm_edge.atomic import atomic_write_bytes
from rlfm_edge.npz import NpzFormatError, read_npz

FORMAT_VERSION = 1
_ARRAYS = ("n_sas", "reward_sum", "reward_sq_sum")


class StatsFileError(ValueError):
    """A statistics file is missing, truncated, corrupted or of another format."""


def _check_index(name: str, value, bound: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer index, got {type(value).__name__}")
    if not 0 <= value < bound:
        raise ValueError(f"{name}: index {value} outside [0, {bound})")
    return int(value)


class CountStats:
    """Visit counts, empirical rewards and transitions of a tabular MDP."""

    def __init__(self, n_states: int, n_actions: int) -> None:
        for name, v in (("n_states", n_states), ("n_actions", n_actions)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        self.n_states = int(n_states)
        self.n_actions = int(n_actions)
        self.n_sas = np.zeros((n_states, n_actions, n_states), dtype=np.int64)
        self.n_sa = np.zeros((n_states, n_actions), dtype=np.int64)
        self.reward_sum = np.zeros((n_states, n_actions), dtype=np.float64)
        self.reward_sq_sum = np.zeros((n_states, n_actions), dtype=np.float64)
        self.version = 0  # bumps on every change, so readers can tell stale policies

    # -- updates ---------------------------------------------------------------------------
    def update(self, s: int, a: int, r: float, s_next: int) -> None:
        """Add one transition. O(1); rejects out-of-range indices and non-finite rewards."""
        S, A = self.n_states, self.n_actions
        if not (type(s) is int and type(a) is int and type(s_next) is int):
            s = _check_index("s", s, S)
            a = _check_index("a", a, A)
            s_next = _check_index("s_next", s_next, S)
        elif not (0 <= s < S and 0 <= a < A and 0 <= s_next < S):
            _check_index("s", s, S), _check_index("a", a, A), _check_index("s_next", s_next, S)
        r = float(r)
        if r != r or r in (float("inf"), float("-inf")):
            raise ValueError(f"r: reward must be finite, got {r}")
        self.n_sas[s, a, s_next] += 1
        self.n_sa[s, a] += 1
        self.reward_sum[s, a] += r
        self.reward_sq_sum[s, a] += r * r
        self.version += 1

    def update_batch(self, s, a, r, s_next) -> None:
        """Add many transitions at once (arrays of equal length), vectorised with bincount."""
        s, a, s_next = (np.asarray(x) for x in (s, a, s_next))
        r = np.asarray(r, dtype=np.float64)
        n = s.shape[0] if s.ndim == 1 else -1
        if n < 0 or any(x.shape != (n,) for x in (a, r, s_next)):
            raise ValueError(
                f"update_batch: s, a, r, s_next must be 1-D of equal length, got shapes "
                f"{s.shape}, {a.shape}, {r.shape}, {s_next.shape}"
            )
        if n == 0:
            return
        for name, x, bound in (("s", s, self.n_states), ("a", a, self.n_actions),
                               ("s_next", s_next, self.n_states)):
            if not np.issubdtype(x.dtype, np.integer):
                raise TypeError(f"{name}: expected integer indices, got dtype {x.dtype}")
            if x.min() < 0 or x.max() >= bound:
                raise ValueError(f"{name}: indices must lie in [0, {bound}), got {x.min()}..{x.max()}")
        if not np.all(np.isfinite(r)):
            raise ValueError("r: rewards must be finite")
        S, A = self.n_states, self.n_actions
        sa = s.astype(np.int64) * A + a
        self.n_sas += np.bincount(sa * S + s_next, minlength=S * A * S).reshape(S, A, S)
        self.n_sa += np.bincount(sa, minlength=S * A).reshape(S, A)
        self.reward_sum += np.bincount(sa, weights=r, minlength=S * A).reshape(S, A)
        self.reward_sq_sum += np.bincount(sa, weights=r * r, minlength=S * A).reshape(S, A)
        self.version += 1

    def merge(self, other: CountStats) -> CountStats:
        """Pool another robot's statistics into these (same S and A). Returns self."""
        if not isinstance(other, CountStats):
            raise TypeError(f"merge: expected CountStats, got {type(other).__name__}")
        if (other.n_states, other.n_actions) != (self.n_states, self.n_actions):
            raise ValueError(
                f"merge: shapes differ, ({self.n_states}, {self.n_actions}) vs "
                f"({other.n_states}, {other.n_actions})"
            )
        self.n_sas += other.n_sas
        self.n_sa += other.n_sa
        self.reward_sum += other.reward_sum
        self.reward_sq_sum += other.reward_sq_sum
        self.version += 1
        return self

    def reset(self) -> None:
        """Forget all experience."""
        for arr in (self.n_sas, self.n_sa, self.reward_sum, self.reward_sq_sum):
            arr[...] = 0
        self.version += 1

    def copy(self) -> CountStats:
        out = CountStats(self.n_states, self.n_actions)
        out.merge(self)
        out.version = self.version
        return out

    @classmethod
    def from_transitions(cls, n_states: int, n_actions: int, transitions) -> CountStats:
        """Statistics of a list of (s, a, r, s_next) tuples."""
        stats = cls(n_states, n_actions)
        if len(transitions):
            s, a, r, s2 = (np.asarray(c) for c in zip(*transitions, strict=True))
            stats.update_batch(s.astype(np.int64), a.astype(np.int64), r, s2.astype(np.int64))
        return stats

    # -- derived estimates -----------------------------------------------------------------
    @property
    def n_transitions(self) -> int:
        return int(self.n_sa.sum())

    @property
    def visited_states(self) -> int:
        """States that have been left at least once or reached at least once."""
        seen = (self.n_sa.sum(axis=1) > 0) | (self.n_sas.sum(axis=(0, 1)) > 0)
        return int(seen.sum())

    def R_hat(self) -> np.ndarray:
        """Empirical mean reward (S, A); 0 where (s, a) was never tried."""
        return self.reward_sum / np.maximum(self.n_sa, 1)

    def R_var(self) -> np.ndarray:
        """Empirical reward variance (S, A); 0 where (s, a) was tried fewer than twice."""
        n = np.maximum(self.n_sa, 1)
        mean = self.reward_sum / n
        return np.maximum(self.reward_sq_sum / n - mean**2, 0.0)

    def P_hat(self, unvisited: str = "uniform") -> np.ndarray:
        """Empirical transitions (S, A, S).

        Rows of untried (s, a) are uniform (``unvisited="uniform"``), a self-loop
        (``"self"``) or zero (``"zero"``, not a distribution: for features only).
        """
        P = self.n_sas / np.maximum(self.n_sa, 1)[:, :, None]
        untried = self.n_sa == 0
        if unvisited == "uniform":
            P[untried] = 1.0 / self.n_states
        elif unvisited == "self":
            s_idx, a_idx = np.nonzero(untried)
            P[s_idx, a_idx, s_idx] = 1.0
        elif unvisited != "zero":
            raise ValueError(f"unvisited: expected 'uniform', 'self' or 'zero', got {unvisited!r}")
        return P

    # -- persistence -----------------------------------------------------------------------
    def _payload(self) -> dict[str, np.ndarray]:
        return {"n_sas": self.n_sas, "reward_sum": self.reward_sum,
                "reward_sq_sum": self.reward_sq_sum}

    @staticmethod
    def _digest(arrays: dict[str, np.ndarray]) -> str:
        h = hashlib.sha256()
        for name in _ARRAYS:
            arr = np.ascontiguousarray(arrays[name])
            h.update(name.encode())
            h.update(str(arr.dtype).encode() + str(arr.shape).encode())
            h.update(arr.tobytes())
        return h.hexdigest()

    def save(self, path: str | os.PathLike, keep_previous: bool = True) -> Path:
        """Write atomically: temporary file in the same folder, fsync, rename.

        With ``keep_previous`` the file being replaced stays as ``<path>.prev``, the last
        good copy that :meth:`load_with_fallback` falls back to.
        """
        path = Path(path)
        payload = self._payload()
        meta = {"format_version": FORMAT_VERSION, "n_states": self.n_states,
                "n_actions": self.n_actions, "sha256": self._digest(payload)}
        buf = io.BytesIO()
        np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **payload)
        return atomic_write_bytes(path, buf.getvalue(), keep_previous=keep_previous)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CountStats:
        """Read a file written by :meth:`save`; raises StatsFileError naming what is wrong.

        Reads no pickle and allocates no more than the file's size before the checks below
        pass (see rlfm_edge.npz), whatever sizes a corrupted or crafted file claims.
        """
        path = Path(path)
        try:
            arrays = read_npz(path)
        except FileNotFoundError:
            raise StatsFileError(f"{path}: statistics file not found") from None
        except NpzFormatError as exc:
            raise StatsFileError(f"{exc}; not a statistics file written by CountStats.save") from None
        except OSError as exc:
            raise StatsFileError(f"{path}: not a readable statistics file ({exc})") from None
        meta_raw = arrays.pop("meta", None)
        try:
            if meta_raw is None or meta_raw.dtype != np.uint8 or meta_raw.ndim != 1:
                raise ValueError("meta: expected a 1-D uint8 array")
            meta = json.loads(meta_raw.tobytes().decode())
        except (ValueError, RecursionError):
            raise StatsFileError(f"{path}: missing or unreadable header") from None
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
            raise StatsFileError(
                f"{path}: format version {meta.get('format_version') if isinstance(meta, dict) else '?'}"
                f" is not the supported {FORMAT_VERSION}"
            )
        if set(arrays) != set(_ARRAYS):
            raise StatsFileError(f"{path}: expected arrays {_ARRAYS}, found {sorted(arrays)}")
        if cls._digest(arrays) != meta.get("sha256"):
            raise StatsFileError(f"{path}: checksum mismatch, the file is corrupted")
        S, A = meta.get("n_states"), meta.get("n_actions")
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in (S, A)):
            raise StatsFileError(f"{path}: header n_states={S!r}, n_actions={A!r} are not positive "
                                 f"integers")
        n_sas, r_sum, r_sq = (arrays[name] for name in _ARRAYS)
        if n_sas.shape != (S, A, S) or r_sum.shape != (S, A) or r_sq.shape != (S, A):
            raise StatsFileError(f"{path}: array shapes do not match S={S}, A={A}")
        if n_sas.dtype != np.int64 or np.any(n_sas < 0):
            raise StatsFileError(f"{path}: counts must be non-negative int64")
        if r_sum.dtype != np.float64 or r_sq.dtype != np.float64 or not (
                np.all(np.isfinite(r_sum)) and np.all(np.isfinite(r_sq))):
            raise StatsFileError(f"{path}: reward sums must be finite float64")
        stats = cls(S, A)
        stats.n_sas[...] = n_sas
        stats.n_sa[...] = n_sas.sum(axis=2)
        stats.reward_sum[...] = r_sum
        stats.reward_sq_sum[...] = r_sq
        return stats

    @classmethod
    def load_with_fallback(cls, path: str | os.PathLike) -> tuple[CountStats, Path]:
        """Load ``path``, or its last good copy ``<path>.prev`` if it is corrupted.

        Returns the statistics and the file they came from; raises StatsFileError when
        neither is readable.
        """
        path = Path(path)
        try:
            return cls.load(path), path
        except StatsFileError as first:
            prev = path.with_name(path.name + ".prev")
            try:
                return cls.load(prev), prev
            except StatsFileError:
                raise first from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CountStats):
            return NotImplemented
        return (
            (self.n_states, self.n_actions) == (other.n_states, other.n_actions)
            and np.array_equal(self.n_sas, other.n_sas)
            and np.allclose(self.reward_sum, other.reward_sum)
            and np.allclose(self.reward_sq_sum, other.reward_sq_sum)
        )

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return (f"CountStats(S={self.n_states}, A={self.n_actions}, "
                f"transitions={self.n_transitions}, visited_states={self.visited_states})")
