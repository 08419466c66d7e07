"""The policy engine a robot configuration names: the one function `serve`, `demo`, `bench
loop` and the ROS 2 node build their engine with."""

from __future__ import annotations

import json
from pathlib import Path

from rlfm_edge.inference import make_engine
from rlfm_edge.inference.base import PolicyEngine
from rlfm_edge.runtime.robot_config import RobotConfig


def make_robot_engine(config: RobotConfig) -> PolicyEngine:
    """The engine of ``config``'s backend, precision and model; ``auto`` ranks the backends by a
    refresh at the robot's size (S, A)."""
    model = config.model_file_path
    if model is not None and not model.exists():
        raise FileNotFoundError(f"model_file_path: {model} not found")
    if config.backend == "planning":  # model-free
        return make_engine("planning")
    kw = {}
    if config.backend == "tensorrt":
        kw = {"engine_file_path": config.engine_file_path,
              "force_engine_update": config.force_engine_update}
    return make_engine(config.backend, model=model, precision=config.precision,
                       probe_size=(config.n_states, config.n_actions), **kw)


def model_version(engine: PolicyEngine, model: str | Path | None = None) -> str:
    """A short id of the weights: the engine's own, else the manifest's weights sha256."""
    engine = getattr(engine, "engine", engine)  # "auto" wraps the backend it chose
    version = getattr(engine, "model_version", None)
    if version:
        return str(version)
    model_dir = getattr(engine, "model_dir", None) or model
    if model_dir is None:
        return f"{engine.backend} (no model)"
    try:
        files = json.loads((Path(model_dir) / "manifest.json").read_text())["files"]
        return f"{Path(model_dir).name}@{files['weights.npz'][:12]}"
    except (OSError, ValueError, KeyError, TypeError):
        return str(model_dir)
