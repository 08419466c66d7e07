"""Calibration inputs: padded model inputs from the statistics the model will actually see.

Activation ranges are only as good as the data they are measured on, so the set mixes
the synthetic prior the model was trained on (every family, behaviour and data size)
with real experience when given: recorded robot logs (MCAP, several snapshots along the
run, since the robot's statistics grow from empty) and saved CountStats files.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from rlfm_edge.atomic import atomic_write_bytes
from rlfm_edge.model.features import (
    INPUT_NAMES,
    GraphFeatures,
    build_features,
    pad_features,
    with_plan_features,
)
from rlfm_edge.stats import CountStats

SNAPSHOTS = (0.05, 0.2, 0.5, 1.0)  # fractions of a log's transitions kept as calibration samples


def prior_features(n: int, seed: int, max_states: int, max_actions: int,
                   max_successors: int) -> list[GraphFeatures]:
    """Features of ``n`` examples of the training prior that fit (Smax, Amax)."""
    from rlfm_edge.training.data import DataConfig, make_example
    from rlfm_edge.training.prior import PriorConfig

    prior = PriorConfig(s_max=max(2, min(PriorConfig().s_max, max_states)),
                        a_max=max(2, min(PriorConfig().a_max, max_actions)))
    data = DataConfig(max_successors=max_successors)
    seeds = np.random.SeedSequence(seed).generate_state(n, dtype=np.uint32)
    examples = (make_example(int(s), prior, data) for s in seeds)
    return [with_plan_features(g, info["H"]) for g, _, info in examples]


def log_features(path, max_successors: int) -> list[GraphFeatures]:
    """Features of growing prefixes of a recorded robot log (an rlfm-edge MCAP file, a folder
    of its segments, or several of either)."""
    from rlfm_edge.logs import read_info, read_steps

    info = read_info(path)
    rows = [(r.prev_state, r.prev_action, r.reward, r.state) for r in read_steps(path)
            if r.prev_state >= 0]
    if not rows:
        raise ValueError(f"{path}: the log holds no transitions to calibrate on")
    s, a, r, s2 = (np.asarray(c) for c in zip(*rows, strict=True))
    out = []
    for frac in SNAPSHOTS:
        k = max(1, int(round(frac * len(rows))))
        stats = CountStats(info["n_states"], info["n_actions"])
        stats.update_batch(s[:k].astype(np.int64), a[:k].astype(np.int64), r[:k].astype(np.float64),
                           s2[:k].astype(np.int64))
        out.append(build_features(stats, info["horizon"], max_successors))
    return out


def stats_features(path: str | Path, horizon: int, max_successors: int) -> GraphFeatures:
    return build_features(CountStats.load(path), horizon, max_successors)


def calibration_inputs(features: list[GraphFeatures], max_states: int, max_actions: int,
                       max_successors: int) -> list[dict[str, np.ndarray]]:
    """One padded batch-of-one input dict per example; oversized statistics are an error."""
    out = []
    for i, g in enumerate(features):
        if g.n_states > max_states or g.n_actions > max_actions:
            raise ValueError(f"calibration sample {i}: S={g.n_states}, A={g.n_actions} exceeds the "
                             f"export's Smax={max_states}, Amax={max_actions}")
        out.append(pad_features([g], max_states, max_actions, max_successors).as_dict())
    return out


def build_calibration_set(max_states: int, max_actions: int, max_successors: int, n_prior: int = 128,
                          seed: int = 0, logs: tuple = (), stats_files: tuple = (),
                          horizon: int | None = None) -> list[dict[str, np.ndarray]]:
    """Prior samples plus, when given, robot logs and CountStats files (these need ``horizon``)."""
    feats = prior_features(n_prior, seed, max_states, max_actions, max_successors)
    for path in logs:
        feats += log_features(path, max_successors)
    if stats_files and horizon is None:
        raise ValueError("horizon: CountStats files carry no horizon; pass --horizon with --stats")
    feats += [stats_features(p, horizon, max_successors) for p in stats_files]
    if not feats:
        raise ValueError("calibration set is empty: give --samples > 0, --log or --stats")
    return calibration_inputs(feats, max_states, max_actions, max_successors)


def save_calibration_set(path: str | Path, samples: list[dict[str, np.ndarray]], meta: dict) -> Path:
    """The set as one npz (inputs stacked on the batch axis), written atomically; no pickle."""
    path = Path(path)
    arrays = {name: np.concatenate([s[name] for s in samples]) for name in INPUT_NAMES}
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_calibration_set(path: str | Path) -> tuple[list[dict[str, np.ndarray]], dict]:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            arrays = {name: z[name] for name in INPUT_NAMES}
    except FileNotFoundError:
        raise ValueError(f"{path}: calibration set not found") from None
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise ValueError(f"{path}: not a calibration set written by `rlfm-edge calibrate` ({exc})") from None
    try:
        expected = pad_features([], *meta["dims"]).as_dict()
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: not a calibration set written by `rlfm-edge calibrate` "
                         f"(no valid 'dims')") from None
    for name, array in arrays.items():
        if array.shape[1:] != expected[name].shape[1:]:
            raise ValueError(f"{path}: input {name} has shape {list(array.shape[1:])} per sample, not "
                             f"{list(expected[name].shape[1:])} (written by an older version, for another "
                             f"input layout); delete it to rebuild")
    n = len(arrays[INPUT_NAMES[0]])
    return [{k: v[i:i + 1] for k, v in arrays.items()} for i in range(n)], meta
