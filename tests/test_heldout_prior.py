"""benchmarks/heldout_prior.py: a smoke run, and its paired comparison of two models or engines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_model_compared_with_itself_differs_by_exactly_zero():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "heldout_prior.py"), "--mdps", "3",
                          "--episodes", "5", "--s-max", "10", "--temperatures", "0.3",
                          "--compare", "rlfm_edge/models/default"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    rows = [line.split("|")[1:-1] for line in out.splitlines()]
    means = {r[0].strip(): float(r[1]) for r in rows  # the first table: agent, mean, median
             if len(r) == 3 and r[0].strip()[:4] in ("psrl", "ucbv", "rlfm")}
    assert set(means) == {"psrl", "ucbvi", "rlfm T=0.3", "rlfm T=0.3 (rlfm_edge/models/default)"}
    assert all(0.0 <= v <= 1.0 + 1e-9 for v in means.values())  # regret / (V* x episodes)
    paired = next(line for line in out.splitlines() if line.startswith("| rlfm_edge/models/default | 0.3"))
    assert paired.split("|")[3:5] == [" +0.000 ", " 0.000 "]  # same model, same MDPs and seeds
    assert paired.split("|")[6] == " +0.00 "  # in SE: 0 where the standard error is 0


def test_families_restricts_the_mdps_to_the_families_named():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "heldout_prior.py"), "--mdps", "3",
                          "--episodes", "3", "--s-max", "10", "--temperatures", "0.3",
                          "--families", "survival", "--workers", "1"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    table = out[out.index("by prior family"):].splitlines()
    assert [line.split("|")[1:3] for line in table if line.startswith("| ") and "MDPs" not in line] == [
        [" survival ", " 3 "]]


def test_anneal_runs_every_temperature_with_each_rule_and_pairs_them_with_the_first():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "heldout_prior.py"), "--mdps", "3",
                          "--episodes", "3", "--s-max", "10", "--temperatures", "0.3",
                          "--anneal", "none,30", "--workers", "1"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    means = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| rlfm")]
    assert means[:2] == ["rlfm T=0.3", "rlfm T=0.3 anneal=30"]
    paired = out[out.index("Paired against rlfm T=0.3:"):].splitlines()
    assert any(line.startswith("| rlfm T=0.3 anneal=30 |") for line in paired)


def test_the_model_on_onnx_runtime_fp32_pairs_with_torch_to_zero_and_a_bad_engine_is_refused():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "heldout_prior.py"), "--mdps", "3", "--episodes", "5",
           "--s-max", "10", "--temperatures", "0.3", "--workers", "1"]
    out = subprocess.run(cmd + ["--compare-engines", "onnxruntime:fp32"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    paired = next(line for line in out.splitlines() if line.startswith("| onnxruntime:fp32 | 0.3"))
    # the same weights to ~1e-6 and the same seeds: the same sampled actions
    assert [c.strip() for c in paired.split("|")[3:6]] == ["+0.000", "0.000", "+0.0%"]
    bad = subprocess.run(cmd + ["--compare-engines", "int8"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "expected BACKEND:PRECISION, got 'int8'" in bad.stderr
