"""benchmarks/paired_compare.py: two models' runs of one benchmark, paired per seed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import paired_compare  # noqa: E402


def _robot_folder(path: Path, returns_by_seed: dict[int, list[float]]) -> Path:
    (path / "runs").mkdir(parents=True)
    for seed, returns in returns_by_seed.items():
        run = {"task": "cartpole", "agent": "rlfm", "seed": seed, "returns": returns}
        (path / "runs" / f"cartpole__rlfm__{seed}.json").write_text(json.dumps(run))
    return path


def test_robot_runs_are_paired_by_seed_over_the_first_episodes(tmp_path, capsys):
    base = _robot_folder(tmp_path / "base", {0: [10, 10, 99], 1: [20, 20, 99], 2: [30, 30, 99]})
    cand = _robot_folder(tmp_path / "cand", {0: [12, 12, 0], 1: [25, 25, 0], 2: [31, 31, 0]})
    paired_compare.main([str(base), str(cand), "--episodes", "2"])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| cartpole"))
    # differences 2, 5, 1: mean 2.667, SE = std([2, 5, 1], ddof=1) / sqrt(3) = 1.202
    assert row == "| cartpole | 3 | 20.0 | 22.7 | +2.7 +- 1.2 | +2.2 |"


def test_online_regret_is_paired_by_seed(tmp_path, capsys):
    for name, returns in (("base", [[1, 1], [0, 1]]), ("cand", [[1, 1], [1, 1]])):
        (tmp_path / name).mkdir()
        results = {"config": {"seeds": [0, 1]},
                   "envs": {"chain": {"v_star": 1.0, "returns": {"rlfm": returns}}}}
        (tmp_path / name / "results.json").write_text(json.dumps(results))
    paired_compare.main([str(tmp_path / "base"), str(tmp_path / "cand")])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| chain"))
    assert row.startswith("| chain | 2 | 0.5 | 0.0 | -0.5 +- 0.5 |")
