"""benchmarks/plan_features_profile.py: a smoke run that reports every part it times."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_profile_times_the_call_its_parts_and_the_alternatives():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "plan_features_profile.py"),
                          "--states", "16", "--horizon", "5", "--repeats", "20"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    rows = {r[0].strip(): float(r[1]) for r in (line.split("|")[1:-1] for line in out.splitlines())
            if len(r) == 2 and r[1].strip().replace(".", "").isdigit()}
    assert set(rows) == {"plan_features, whole call", "backup matrix build",
                         "one backup: CSR product (as shipped)", "one backup: max over actions",
                         "one backup: SciPy two-vector product, one copy of the edges",
                         "one backup: torch CSR product (float32)"}
    assert all(us > 0 for us in rows.values())
    assert "5 backups of product and max" in out
