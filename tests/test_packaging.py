"""What the package installs and exports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import rlfm_edge

ROOT = Path(__file__).resolve().parents[1]
README_API = {"TabularMDP": "rlfm_edge.mdp", "value_iteration": "rlfm_edge.planning",
              "envs": "rlfm_edge.envs", "make_agent": "rlfm_edge.agents",
              "agent_names": "rlfm_edge.agents", "run_online": "rlfm_edge.bench",
              "run_offline": "rlfm_edge.bench", "CountStats": "rlfm_edge.stats",
              "make_engine": "rlfm_edge.inference", "available_backends": "rlfm_edge.inference",
              "OnlineAgent": "rlfm_edge.runtime", "RobotConfig": "rlfm_edge.runtime"}


def test_the_readme_public_api_is_importable_from_the_package():
    import importlib

    readme = (ROOT / "README.md").read_text()
    for name, module in README_API.items():
        assert f"`{name}`" in readme or name in ("agent_names", "run_offline", "available_backends",
                                                 "value_iteration", "RobotConfig"), name
        expected = importlib.import_module(module)
        assert getattr(rlfm_edge, name) is (expected if name == "envs" else getattr(expected, name))
    assert set(README_API) <= set(rlfm_edge.__all__) and set(README_API) <= set(dir(rlfm_edge))


def test_importing_the_package_loads_no_module_it_does_not_need():
    code = "import sys, rlfm_edge; print(sorted(m for m in ('numpy', 'torch', 'yaml') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"


def test_training_and_calibration_install_inside_rlfm_edge_not_as_top_level_packages():
    from setuptools import find_packages

    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"][
        "find"]["include"]
    packages = set(find_packages(where=str(ROOT), include=include))
    assert {"rlfm_edge.training", "rlfm_edge.calibration"} <= packages
    assert not {p for p in packages if p.split(".")[0] != "rlfm_edge"}, packages
    # the folders stay at the top of the repository; the package reaches them through a link
    for name in ("training", "calibration"):
        assert (ROOT / name).is_dir() and (ROOT / "rlfm_edge" / name).resolve() == ROOT / name
