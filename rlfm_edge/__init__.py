"""rlfm-edge: a reinforcement-learning foundation model for robots.

A graph attention network reads an MDP's count statistics and outputs a policy in
context. This package holds the runtime: MDP types, benchmarks, statistics, baselines,
inference backends, the online agent, the serial link and the CLI; ``rlfm_edge.training``
and ``rlfm_edge.calibration`` (the repository's ``training/`` and ``calibration/``) make the
model and its INT8 version on the host.

The public API (README, "Layout") is importable from here; each name loads its module on
first use, so ``import rlfm_edge`` stays light.
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "TabularMDP": "rlfm_edge.mdp", "value_iteration": "rlfm_edge.planning", "envs": "rlfm_edge.envs",
    "make_agent": "rlfm_edge.agents", "agent_names": "rlfm_edge.agents",
    "run_online": "rlfm_edge.bench", "run_offline": "rlfm_edge.bench", "CountStats": "rlfm_edge.stats",
    "make_engine": "rlfm_edge.inference", "available_backends": "rlfm_edge.inference",
    "OnlineAgent": "rlfm_edge.runtime", "RobotConfig": "rlfm_edge.runtime",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'rlfm_edge' has no attribute {name!r}")
    module = importlib.import_module(_PUBLIC[name])
    value = module if name == "envs" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
