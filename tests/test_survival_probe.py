"""benchmarks/survival_probe.py: its MDPs have the survival shape, and a smoke run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from survival_probe import survival_mdp  # noqa: E402


def test_every_alive_step_pays_one_and_failure_is_absorbing_and_pays_nothing():
    for k in range(5):
        mdp = survival_mdp(np.random.default_rng(k))
        fail = mdp.n_states - 1
        np.testing.assert_allclose(mdp.P.sum(-1), 1.0)
        assert (mdp.R[:fail] == 1.0).all() and (mdp.R[fail] == 0.0).all()
        assert (mdp.P[fail, :, fail] == 1.0).all() and mdp.mu0[fail] == 0.0


def test_the_probe_reports_each_agent_with_regrets_in_range():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "survival_probe.py"), "--mdps", "2",
                          "--episodes", "3", "--workers", "1"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    rows = {r[0].strip(): r for r in (line.split("|")[1:-1] for line in out.splitlines()) if len(r) == 5}
    assert set(rows) >= {"rlfm default", "ucbvi", "psrl", "random"}
    assert all(0.0 <= float(rows[a][1]) <= 1.0 + 1e-9 for a in ("rlfm default", "ucbvi", "psrl", "random"))
    assert rows["ucbvi"][4].strip() == "0 / 2"  # never below itself
