"""Continuous observation vector -> tabular state index, the robot's side of the model's input.

Each dimension is cut into bins by ascending interior edges: uniform over [low, high], or
quantiles of recorded observations so every bin is visited about equally. The state index is
the mixed-radix number of the per-dimension bins, the last dimension varying fastest (as
``numpy.ravel_multi_index``). Values outside [low, high] fall in the first or last bin and are
counted in ``clipped``. Non-finite observations raise ValueError: the caller drops them.
"""

from __future__ import annotations

import math
import os
from bisect import bisect_right
from dataclasses import dataclass
from math import isfinite
from pathlib import Path

import numpy as np
import yaml

from rlfm_edge.inference.base import ModelLimitError

CONFIG_VERSION = 1
MAX_BINS = 1 << 16  # per dimension; more than any model serves, and bounds what a config allocates


@dataclass(frozen=True)
class Dimension:
    """One observation dimension: its name, clipping range and the bin edges inside it."""

    name: str
    low: float
    high: float
    edges: tuple[float, ...]  # interior cut points, len == bins - 1, ascending within [low, high]

    @property
    def bins(self) -> int:
        return len(self.edges) + 1

    @classmethod
    def uniform(cls, name: str, low: float, high: float, bins: int) -> Dimension:
        edges = np.linspace(low, high, bins + 1)[1:-1] if bins > 1 else ()
        return cls(name, float(low), float(high), tuple(float(e) for e in edges))


class Discretizer:
    """Maps an observation vector to a state index in [0, n_states)."""

    def __init__(self, dimensions: list[Dimension]) -> None:
        if not dimensions:
            raise ValueError("dimensions: expected at least one dimension")
        for i, d in enumerate(dimensions):
            _validate_dimension(f"dimensions[{i}]", d)
        self.dimensions = list(dimensions)
        self.bins = tuple(d.bins for d in dimensions)
        self.n_states = math.prod(self.bins)
        self.clipped = 0  # observation values seen outside [low, high]
        # per dimension: (edges, low, high, stride of its bin in the state index)
        self._dims = tuple((list(d.edges), d.low, d.high, math.prod(self.bins[i + 1:]))
                           for i, d in enumerate(dimensions))

    @property
    def n_dims(self) -> int:
        return len(self.dimensions)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def uniform(cls, low, high, bins, names: list[str] | None = None) -> Discretizer:
        """Uniform bins per dimension; ``bins`` is an int for all or a list per dimension."""
        low, high = np.atleast_1d(np.asarray(low, float)), np.atleast_1d(np.asarray(high, float))
        if low.shape != high.shape or low.ndim != 1:
            raise ValueError(f"low/high: expected two equal-length vectors, got {low.shape}, "
                             f"{high.shape}")
        bins_list = _bins_per_dim(bins, low.size)
        names = names or [f"x{i}" for i in range(low.size)]
        for i, (lo, hi, b) in enumerate(zip(low, high, bins_list, strict=True)):
            _check_range(f"dimensions[{i}]", lo, hi)
            _check_bins(f"dimensions[{i}].bins", b)
        return cls([Dimension.uniform(n, lo, hi, b)
                    for n, lo, hi, b in zip(names, low, high, bins_list, strict=True)])

    @classmethod
    def fit_quantiles(cls, observations, bins, names: list[str] | None = None) -> Discretizer:
        """Bins with equal shares of recorded observations (N, D) in each dimension.

        The range [low, high] is the observed min and max; ties may leave some bins empty.
        """
        obs = np.asarray(observations, dtype=np.float64)
        if obs.ndim != 2 or obs.shape[0] < 2:
            raise ValueError(f"observations: expected an (N, D) array with N >= 2, got shape "
                             f"{obs.shape}")
        if not np.all(np.isfinite(obs)):
            raise ValueError("observations: contain NaN or inf; drop those rows first")
        bins_list = _bins_per_dim(bins, obs.shape[1])
        names = names or [f"x{i}" for i in range(obs.shape[1])]
        dims = []
        for i, b in enumerate(bins_list):
            _check_bins(f"dimensions[{i}].bins", b)
            col = obs[:, i]
            lo, hi = float(col.min()), float(col.max())
            if hi <= lo:
                raise ValueError(f"observations: dimension {i} ({names[i]}) is constant ({lo}); "
                                 f"it cannot be binned")
            edges = np.quantile(col, np.arange(1, b) / b)
            dims.append(Dimension(names[i], lo, hi, tuple(float(e) for e in edges)))
        return cls(dims)

    # -- mapping ---------------------------------------------------------------------------
    def state(self, observation) -> int:
        """State index of one observation; ValueError on wrong length, non-numbers or NaN/inf.

        Pure Python with as few calls as possible: it runs once per control tick, when caches
        are cold and every numpy call or extra frame costs microseconds.
        """
        values = observation if type(observation) is list else _as_list(observation)
        if len(values) != len(self._dims):
            raise ValueError(f"observation: expected {len(self._dims)} values, got "
                             f"{len(values)}")
        index = 0
        try:
            for v, (edges, lo, hi, stride) in zip(values, self._dims, strict=True):
                if not isfinite(v):
                    raise ValueError(f"observation: non-finite value {v}")
                if v < lo or v > hi:
                    self.clipped += 1
                index += bisect_right(edges, v) * stride
        except TypeError:
            raise ValueError(f"observation: expected numbers, got {observation!r:.80}") from None
        return index

    def check_fits(self, max_states: int) -> None:
        """Raise ModelLimitError when this discretization has more states than the model serves."""
        if self.n_states > max_states:
            raise ModelLimitError(
                f"discretizer: bins {list(self.bins)} give {self.n_states} states but the model "
                f"serves at most {max_states}; use fewer bins per dimension"
            )

    # -- config files ----------------------------------------------------------------------
    def to_config(self) -> dict:
        return {"version": CONFIG_VERSION, "dimensions": [
            {"name": d.name, "low": d.low, "high": d.high, "bins": d.bins, "edges": list(d.edges)}
            for d in self.dimensions]}

    @classmethod
    def from_config(cls, config, source: str = "config") -> Discretizer:
        """Build from a dict like ``to_config()``; ``edges`` may be omitted for uniform bins."""
        if not isinstance(config, dict):
            raise ValueError(f"{source}: expected a mapping with 'dimensions', got "
                             f"{type(config).__name__}")
        version = config.get("version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ValueError(f"{source}: version: expected {CONFIG_VERSION}, got {version!r}")
        dims_cfg = config.get("dimensions")
        if not isinstance(dims_cfg, list) or not dims_cfg:
            raise ValueError(f"{source}: dimensions: expected a non-empty list")
        dims = []
        for i, d in enumerate(dims_cfg):
            where = f"{source}: dimensions[{i}]"
            if not isinstance(d, dict):
                raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
            unknown = set(d) - {"name", "low", "high", "bins", "edges"}
            if unknown:
                raise ValueError(f"{where}: unknown field(s) {sorted(map(str, unknown))}")
            low, high = (_number(f"{where}.{key}", d.get(key)) for key in ("low", "high"))
            _check_range(where, low, high)
            name = str(d.get("name", f"x{i}"))
            if "edges" in d and d["edges"] is not None:
                edges = d["edges"]
                if not isinstance(edges, list) or len(edges) >= MAX_BINS:
                    raise ValueError(f"{where}.edges: expected a list of fewer than {MAX_BINS} "
                                     f"numbers")
                dim = Dimension(name, low, high,
                                tuple(_number(f"{where}.edges", e) for e in edges))
                if "bins" in d and d["bins"] != dim.bins:
                    raise ValueError(f"{where}.bins: {d['bins']!r} disagrees with "
                                     f"{len(edges)} edges (expected bins = edges + 1)")
            else:
                _check_bins(f"{where}.bins", d.get("bins"))
                dim = Dimension.uniform(name, low, high, d["bins"])
            _validate_dimension(where, dim)
            dims.append(dim)
        return cls(dims)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Discretizer:
        path = Path(path)
        config = load_yaml(path, "discretizer config")
        if isinstance(config, dict) and "discretizer" in config:  # section of a robot config
            config = config["discretizer"]
        return cls.from_config(config, source=str(path))

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_config(), sort_keys=False))
        return path

    def __repr__(self) -> str:
        return f"Discretizer(bins={list(self.bins)}, n_states={self.n_states})"


def load_yaml(path: Path, what: str):
    """A YAML file parsed safely; ValueError naming the file for anything that is not YAML."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
        raise ValueError(f"{path}: {what} is not valid YAML ({type(exc).__name__}: {exc})") from None


def _number(where: str, value) -> float:
    """A finite-or-not float from a config value; ValueError for non-numbers and huge integers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{where}: {value} is too large for a float") from None


def largest_bins(n_dims: int, max_states: int) -> list[int]:
    """Bins per dimension giving the most states within ``max_states``, as even as possible:
    the same count everywhere, then one more in the first dimensions while the product fits
    (4 dimensions within 255 states: [4, 4, 4, 3])."""
    if n_dims < 1 or max_states < 2 ** n_dims:
        raise ValueError(f"{n_dims} dimensions need at least {2 ** n_dims} states for two bins "
                         f"each; the limit is {max_states}")
    per_dim = 2
    while (per_dim + 1) ** n_dims <= max_states:
        per_dim += 1
    bins = [per_dim] * n_dims
    for i in range(n_dims):
        if math.prod(bins) // per_dim * (per_dim + 1) <= max_states:
            bins[i] += 1
    return bins


def _bins_per_dim(bins, n: int) -> list:
    if isinstance(bins, (list, tuple, np.ndarray)):
        if len(bins) != n:
            raise ValueError(f"bins: expected {n} values (one per dimension), got {len(bins)}")
        return list(bins)
    return [bins] * n


def _check_bins(where: str, b) -> None:
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 1 <= b <= MAX_BINS:
        raise ValueError(f"{where}: expected a positive integer at most {MAX_BINS}, got {b!r}")


def _check_range(where: str, low, high) -> None:
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise ValueError(f"{where}: expected finite low < high, got low={low}, high={high}")


def _as_list(observation) -> list:
    """Anything sequence-like (tuple, numpy vector) as a flat list; ValueError otherwise."""
    if isinstance(observation, np.ndarray):
        if observation.ndim != 1:
            raise ValueError(f"observation: expected a vector, got shape {observation.shape}")
        return observation.tolist()
    try:
        return list(observation)
    except TypeError:
        raise ValueError(f"observation: expected a sequence of numbers, got "
                         f"{type(observation).__name__}") from None


def _validate_dimension(where: str, d: Dimension) -> None:
    _check_range(where, d.low, d.high)
    e = np.asarray(d.edges, dtype=np.float64)
    if not np.all(np.isfinite(e)):
        raise ValueError(f"{where}.edges: must be finite")
    if e.size and (np.any(np.diff(e) < 0) or e[0] < d.low or e[-1] > d.high):
        raise ValueError(f"{where}.edges: must be ascending within [low, high] = "
                         f"[{d.low}, {d.high}]")
