"""CountStats: batch and single updates agree, estimates are exact, files survive damage."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlfm_edge.stats import CountStats, StatsFileError


@st.composite
def transitions(draw, max_len: int = 60):
    S = draw(st.integers(1, 5))
    A = draw(st.integers(1, 4))
    step = st.tuples(st.integers(0, S - 1), st.integers(0, A - 1),
                     st.floats(-5, 5, allow_nan=False), st.integers(0, S - 1))
    return S, A, draw(st.lists(step, max_size=max_len))


def _single(S, A, items) -> CountStats:
    stats = CountStats(S, A)
    for s, a, r, s2 in items:
        stats.update(s, a, r, s2)
    return stats


def _batch(S, A, items) -> CountStats:
    stats = CountStats(S, A)
    cols = list(zip(*items, strict=True)) if items else [[], [], [], []]
    stats.update_batch(np.array(cols[0], dtype=np.int64), np.array(cols[1], dtype=np.int64),
                       np.array(cols[2], dtype=np.float64), np.array(cols[3], dtype=np.int64))
    return stats


@settings(max_examples=80, deadline=None)
@given(transitions())
def test_update_batch_equals_repeated_update(data):
    S, A, items = data
    one, many = _single(S, A, items), _batch(S, A, items)
    assert one == many
    np.testing.assert_array_equal(one.n_sa, many.n_sa)
    np.testing.assert_allclose(one.reward_sq_sum, many.reward_sq_sum)
    assert one == CountStats.from_transitions(S, A, items)
    assert one.n_transitions == len(items)


@settings(max_examples=50, deadline=None)
@given(transitions(), st.integers(0, 60))
def test_merge_pools_experience(data, cut):
    S, A, items = data
    left, right = _single(S, A, items[:cut]), _single(S, A, items[cut:])
    version = left.version
    assert left.merge(right) is left
    assert left == _single(S, A, items)
    assert left.version > version


def test_estimates_are_empirical_frequencies_and_means():
    stats = CountStats(3, 2)
    for s, a, r, s2 in [(0, 0, 1.0, 1), (0, 0, 0.0, 1), (0, 0, 1.0, 2), (0, 0, 0.5, 0),
                        (2, 1, 0.25, 2)]:
        stats.update(s, a, r, s2)
    P = stats.P_hat()
    np.testing.assert_allclose(P[0, 0], [0.25, 0.5, 0.25])
    np.testing.assert_allclose(P[2, 1], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(P[1, 0], [1 / 3] * 3)  # untried: uniform by default
    np.testing.assert_allclose(stats.P_hat("self")[1, 1], [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(stats.P_hat("zero")[1, 0], 0.0)
    R = stats.R_hat()
    assert R[0, 0] == pytest.approx(2.5 / 4) and R[2, 1] == 0.25 and R[1, 0] == 0.0
    assert stats.R_var()[0, 0] == pytest.approx(np.var([1.0, 0.0, 1.0, 0.5]))
    assert stats.R_var()[2, 1] == 0.0
    assert stats.visited_states == 3
    with pytest.raises(ValueError, match="unvisited"):
        stats.P_hat("bogus")


def test_reset_and_copy_are_independent():
    stats = _single(2, 2, [(0, 1, 1.0, 1), (1, 0, 0.0, 0)])
    clone = stats.copy()
    stats.reset()
    assert stats.n_transitions == 0 and clone.n_transitions == 2
    assert clone != stats


def _filled() -> CountStats:
    rng = np.random.default_rng(0)
    stats = CountStats(4, 3)
    n = 200
    stats.update_batch(rng.integers(0, 4, n), rng.integers(0, 3, n), rng.random(n),
                       rng.integers(0, 4, n))
    return stats


def test_save_load_round_trip_and_previous_copy(tmp_path):
    path = tmp_path / "sub" / "stats.npz"
    first = _filled()
    first.save(path)
    assert CountStats.load(path) == first
    second = first.copy()
    second.update(0, 0, 1.0, 0)
    second.save(path)
    assert CountStats.load(path) == second
    assert CountStats.load(path.with_name("stats.npz.prev")) == first
    assert not list(path.parent.glob("*.tmp"))


def test_missing_file_raises_naming_the_path(tmp_path):
    path = tmp_path / "nope.npz"
    with pytest.raises(StatsFileError, match="nope.npz.*not found"):
        CountStats.load(path)


def test_every_single_byte_flip_is_detected_or_harmless(tmp_path):
    original = _filled()
    path = tmp_path / "stats.npz"
    original.save(path)
    raw = path.read_bytes()
    detected = 0
    for i in range(len(raw)):
        damaged = bytearray(raw)
        damaged[i] ^= 0xFF
        path.write_bytes(bytes(damaged))
        try:
            loaded = CountStats.load(path)
        except StatsFileError as exc:
            assert str(path) in str(exc)
            detected += 1
        else:  # a flip in metadata the reader never uses must not change the data
            assert loaded == original, f"flip at byte {i} silently changed the statistics"
    assert detected > len(raw) // 2


@pytest.mark.parametrize("keep", [0, 1, 30, 0.5, -1])
def test_truncated_file_raises_naming_the_path(tmp_path, keep):
    path = tmp_path / "stats.npz"
    _filled().save(path)
    raw = path.read_bytes()
    n = int(len(raw) * keep) if isinstance(keep, float) else (keep % len(raw))
    path.write_bytes(raw[:n])
    with pytest.raises(StatsFileError, match=str(path)):
        CountStats.load(path)


def _rewrite_meta(path, **changes) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes())
    meta.update(changes)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_wrong_format_version_raises(tmp_path):
    path = tmp_path / "stats.npz"
    _filled().save(path)
    _rewrite_meta(path, format_version=99)
    with pytest.raises(StatsFileError, match="format version 99"):
        CountStats.load(path)


def test_wrong_checksum_raises(tmp_path):
    path = tmp_path / "stats.npz"
    _filled().save(path)
    _rewrite_meta(path, sha256="0" * 64)
    with pytest.raises(StatsFileError, match="checksum"):
        CountStats.load(path)


def test_pickled_payload_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    with open(path, "wb") as f:
        np.savez(f, meta=np.array([{"format_version": 1}], dtype=object))
    with pytest.raises(StatsFileError, match="evil.npz"):
        CountStats.load(path)


def test_load_with_fallback_uses_previous_copy(tmp_path):
    path = tmp_path / "stats.npz"
    good = _filled()
    good.save(path)
    newer = good.copy()
    newer.update(1, 1, 0.0, 2)
    newer.save(path)
    assert CountStats.load_with_fallback(path) == (newer, path)
    path.write_bytes(path.read_bytes()[:40])  # power cut mid-copy, say
    stats, source = CountStats.load_with_fallback(path)
    assert stats == good and source == path.with_name("stats.npz.prev")
    source.write_bytes(b"garbage")
    with pytest.raises(StatsFileError, match=r"stats\.npz:"):
        CountStats.load_with_fallback(path)


@pytest.mark.parametrize(
    ("args", "error", "field"),
    [((3, 0, 0.5, 0), ValueError, "s"),
     ((0, 2, 0.5, 0), ValueError, "a"),
     ((0, 0, 0.5, -1), ValueError, "s_next"),
     ((0.0, 0, 0.5, 0), TypeError, "s"),
     ((0, True, 0.5, 0), TypeError, "a"),
     ((0, 0, float("nan"), 0), ValueError, "r"),
     ((0, 0, float("inf"), 0), ValueError, "r")],
)
def test_update_rejects_bad_input_and_leaves_counts_alone(args, error, field):
    stats = CountStats(3, 2)
    with pytest.raises(error, match=f"^{field}:"):
        stats.update(*args)
    assert stats.n_transitions == 0


def test_update_accepts_numpy_integers():
    stats = CountStats(3, 2)
    stats.update(np.int64(2), np.int32(1), np.float32(0.5), np.int16(0))
    assert stats.n_sas[2, 1, 0] == 1


@pytest.mark.parametrize(
    ("arrays", "error", "match"),
    [(([0, 1], [0], [0.1, 0.2], [0, 1]), ValueError, "equal length"),
     (([[0]], [[0]], [[0.1]], [[0]]), ValueError, "1-D"),
     (([0, 3], [0, 0], [0.1, 0.2], [0, 1]), ValueError, "^s:"),
     (([0, 1], [0, -1], [0.1, 0.2], [0, 1]), ValueError, "^a:"),
     (([0, 1], [0, 0], [0.1, 0.2], [0, 5]), ValueError, "^s_next:"),
     (([0.0, 1.0], [0, 0], [0.1, 0.2], [0, 1]), TypeError, "^s:"),
     (([0, 1], [0, 0], [0.1, np.nan], [0, 1]), ValueError, "^r:")],
)
def test_update_batch_rejects_bad_input(arrays, error, match):
    stats = CountStats(3, 2)
    with pytest.raises(error, match=match):
        stats.update_batch(*(np.asarray(x) for x in arrays))
    assert stats.n_transitions == 0


def test_merge_rejects_mismatched_statistics():
    with pytest.raises(ValueError, match="^merge: shapes differ"):
        CountStats(3, 2).merge(CountStats(3, 3))
    with pytest.raises(TypeError, match="^merge:"):
        CountStats(3, 2).merge({"n_sas": 0})


@pytest.mark.parametrize(("S", "A"), [(0, 2), (2, 0), (-1, 2), (True, 2), (2.5, 2), ("3", 2)])
def test_constructor_rejects_bad_sizes(S, A):
    with pytest.raises(ValueError, match="^n_(states|actions):"):
        CountStats(S, A)
