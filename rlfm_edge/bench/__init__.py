"""Evaluation harness: online learning curves and offline policy values on tabular MDPs.

``run_online`` and ``run_offline`` are the public contract; :mod:`.runner` runs them over
envs x agents (or methods) x seeds, :mod:`.metrics` defines what is measured and
:mod:`.report` writes tables, JSON and plots.
"""

from rlfm_edge.bench.offline import run_offline
from rlfm_edge.bench.online import run_online

__all__ = ["run_offline", "run_online"]
