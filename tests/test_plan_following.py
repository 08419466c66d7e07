"""benchmarks/plan_following.py: a smoke run on two prior MDPs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_plan_following_reports_normalised_values_no_policy_can_exceed():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "plan_following.py"), "--mdps", "2",
                          "--episodes", "5", "--s-max", "10", "--support", "--stationary"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| uniform") or
            line.startswith("| eps_optimal")]
    assert {r[2].strip() for r in rows} >= {"all"} and len(rows) >= 4
    values = [float(v) for r in rows for v in r[4:]]
    # the shipped model: free, on the data's support, BCQ's, BCQ's stationary; VI, VI-LCB
    assert len(values) == 6 * len(rows)
    assert all(0.0 <= v <= 1.0 + 1e-9 for v in values)  # V^pi <= V*: above 1 is a bug
    cells = {r[0].strip(): r[1].strip() for r in (line.split("|")[1:-1] for line in out.splitlines())
             if len(r) == 3 and r[1].strip().endswith("/ 4")}
    assert cells["vi_lcb"] == "4 / 4"  # 2 MDPs x 2 behaviours x 1 size, each within 0.02 of itself
    assert len(cells) == 6
