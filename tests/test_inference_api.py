"""make_engine/available_backends: auto keeps the measured fastest backend and falls back on failure."""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from rlfm_edge.inference import (  # noqa: E402
    FallbackEngine,
    ModelLimitError,
    PolicyEngine,
    available_backends,
    make_engine,
)
from rlfm_edge.training.export import export_onnx, random_stats  # noqa: E402


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, tiny_model):
    bare = tiny_model(seed=3, hidden=8, heads=2, layers=1, max_successors=3, max_states=8,
                      max_actions=3)
    exported = tmp_path_factory.mktemp("exported")
    export_onnx(bare, exported)
    return bare, exported


def test_available_backends_lists_every_backend_with_none_or_a_reason():
    backends = available_backends()
    assert {"tensorrt", "onnxruntime", "torch", "planning"} <= set(backends)
    assert backends["onnxruntime"] is None and backends["torch"] is None
    assert all(v is None or (isinstance(v, str) and v) for v in backends.values())


def test_auto_times_every_backend_keeps_the_fastest_and_says_so(dirs, caplog):
    with caplog.at_level(logging.INFO):
        engine = make_engine("auto", model=dirs[1], precision="fp32")
    runnable = {name for name, why in available_backends().items() if why is None} - {"planning"}
    assert engine.backend in runnable
    assert f"'auto' chose {engine.backend}/fp32" in caplog.text
    assert all(f"{name}/fp32 " in caplog.text for name in runnable)  # each timing is logged
    assert engine.policy(random_stats(np.random.default_rng(0), 5, 3, 40), 4).shape == (5, 3)


@pytest.mark.parametrize("faster", ["torch", "onnxruntime"])
def test_auto_chooses_by_the_measured_refresh_time_and_falls_back_to_the_next_fastest(
        dirs, monkeypatch, faster):
    import rlfm_edge.inference as inference

    monkeypatch.setattr(inference, "probe_ms", lambda e, size: 1.0 if e.backend == faster else 9.0)
    engine = make_engine("auto", model=dirs[1], precision="fp32")
    assert engine.backend == faster
    engine.engine.policy = _Broken().policy
    assert engine.policy(random_stats(np.random.default_rng(2), 4, 3, 30), 4).shape == (4, 3)
    assert engine.backend != faster


def test_auto_ranks_the_backends_at_the_size_the_caller_will_run(dirs, monkeypatch, caplog):
    import rlfm_edge.inference as inference

    sizes = []
    monkeypatch.setattr(inference, "probe_ms", lambda e, size: sizes.append(size) or 1.0)
    with caplog.at_level(logging.INFO):
        make_engine("auto", model=dirs[1], precision="fp32", probe_size=(5, 2))
    assert sizes and set(sizes) == {(5, 2)} and "refresh at S=5, A=2" in caplog.text
    sizes.clear()
    make_engine("auto", model=dirs[1], precision="fp32")
    assert set(sizes) == {(8, 3)}  # the model's full size when the caller does not say
    with pytest.raises(ModelLimitError, match="at most S=8"):
        make_engine("auto", model=dirs[1], precision="fp32", probe_size=(9, 2))


def test_auto_falls_back_to_torch_with_a_warning_when_the_model_has_no_onnx(dirs, caplog):
    with caplog.at_level(logging.WARNING):
        engine = make_engine("auto", model=dirs[0], precision="int8")
    assert (engine.backend, engine.precision) == ("torch", "fp32")
    assert "model.int8.onnx" in caplog.text and "trying the next" in caplog.text


class _Broken(PolicyEngine):
    backend, precision, max_states, max_actions = "broken", "fp32", 8, 3

    def policy(self, stats, horizon):
        raise RuntimeError("device lost")


def test_a_backend_failing_at_run_time_hands_over_to_the_next(dirs, caplog):
    engine = FallbackEngine([("broken", _Broken), ("torch", lambda: make_engine("torch", dirs[0]))])
    assert engine.backend == "broken"
    stats = random_stats(np.random.default_rng(1), 6, 3, 50)
    with caplog.at_level(logging.WARNING):
        logits = engine.policy(stats, 5)
    assert engine.backend == "torch" and logits.shape == (6, 3)
    assert "broken/fp32 failed at run time" in caplog.text and "device lost" in caplog.text


def test_a_batch_falls_back_like_a_single_call(dirs, caplog):
    engine = FallbackEngine([("broken", _Broken), ("torch", lambda: make_engine("torch", dirs[0]))])
    rng = np.random.default_rng(4)
    batch = [(random_stats(rng, 6, 3, 50), 5), (random_stats(rng, 4, 2, 20), 7)]
    with caplog.at_level(logging.WARNING):
        logits = engine.policy_batch(batch)
    assert engine.backend == "torch" and [x.shape for x in logits] == [(6, 3), (4, 2)]
    assert "broken/fp32 failed at run time" in caplog.text


def test_auto_and_every_engine_take_a_batch(dirs):
    class OneAtATime(PolicyEngine):
        backend, precision, max_states, max_actions = "one", "fp32", 8, 3

        def policy(self, stats, horizon):
            return np.full((stats.n_states, stats.n_actions), float(horizon))

    stats = random_stats(np.random.default_rng(5), 5, 3, 40)
    assert [x[0, 0] for x in OneAtATime().policy_batch([(stats, 2), (stats, 3)])] == [2.0, 3.0]
    engine = make_engine("auto", model=dirs[1])
    (got,) = engine.policy_batch([(stats, 4)])
    np.testing.assert_allclose(got, engine.policy(stats, 4), atol=1e-5)


def test_a_size_limit_says_how_this_backend_serves_larger_statistics(dirs):
    stats = random_stats(np.random.default_rng(2), 9, 3, 10)
    with pytest.raises(ModelLimitError, match="its config.json"):  # an export would not help torch
        make_engine("torch", model=dirs[1]).policy(stats, 5)
    with pytest.raises(ModelLimitError, match="rlfm-edge export --max-states N"):
        make_engine("onnxruntime", model=dirs[1]).policy(stats, 5)


def test_errors_in_the_callers_input_are_not_hidden_by_fallback(dirs):
    engine = make_engine("auto", model=dirs[1])
    with pytest.raises(ModelLimitError, match="S=9"):
        engine.policy(random_stats(np.random.default_rng(2), 9, 3, 10), 5)
    assert engine.backend in ("onnxruntime", "tensorrt")


def test_when_every_backend_fails_the_error_lists_each_reason():
    with pytest.raises(RuntimeError, match="broken.*device lost"):
        FallbackEngine([("broken", _Broken)]).policy(random_stats(np.random.default_rng(0), 2, 2, 4), 3)


def test_bad_backend_and_precision_names_are_value_errors(dirs):
    with pytest.raises(ValueError, match="backend"):
        make_engine("cuda", model=dirs[1])
    with pytest.raises(ValueError, match="precision.*onnxruntime"):
        make_engine("onnxruntime", model=dirs[1], precision="fp16")


def test_bench_latency_reports_each_configuration_and_records(dirs, tmp_path, capsys):
    from rlfm_edge.cli import bench

    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers())
    record = tmp_path / "BENCH.md"
    args = parser.parse_args(["bench", "latency", "--model", str(dirs[1]), "--backends", "torch,onnxruntime",
                              "--precisions", "fp32,int8", "--states", "4,8,16", "--actions", "3",
                              "--repeats", "3", "--warmup", "1", "--out", str(tmp_path / "lat"),
                              "--record", str(record)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "| torch | fp32 | 8 x 3 |" in out and "| onnxruntime | fp32 | 4 x 3 |" in out
    assert "S=16: above the export's Smax=8" in out and "onnxruntime/int8: skipped" in out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith(("| torch", "| onnx"))]
    assert len(rows) == 4 and all(len(r) == 13 for r in rows)
    results = json.loads((tmp_path / "lat" / "results.json").read_text())
    summary = results["summary"]
    assert [(s["backend"], s["S"]) for s in summary] == [("torch", 4), ("torch", 8), ("onnxruntime", 4),
                                                         ("onnxruntime", 8)]
    for row in results["rows"]:  # every call timed in its three parts, then the two GEMMs
        assert {len(row[k]) for k in ("refresh_ms", "features_ms", "model_ms", "refresh_cpu_ms")} == {3}
        assert len(row["gemm_gflops"]) == 2 and min(row["gemm_gflops"].values()) > 0
    mflop = [s["model_mflop"] for s in summary]
    assert 0 < mflop[0] < mflop[1] and mflop[:2] == mflop[2:]  # grows with S, the same for each backend
    assert all(s["model_median_ms"] > 0 and s["features_median_ms"] > 0 and s["refresh_cpu_median_ms"] > 0
               for s in summary)
    assert all(0 < s["gemm_share"] == s["model_gflops"] / max(s["gemm_gflops"].values()) for s in summary)
    assert "| onnxruntime | fp32 | 8 x 3 |" in (tmp_path / "lat" / "results.md").read_text()
    assert (tmp_path / "lat" / "latency.png").stat().st_size > 0
    assert "rlfm-edge bench latency" in record.read_text()
