"""TensorRT: the engine cache (runs everywhere) and engine parity (only where a GPU and TensorRT are)."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from rlfm_edge.inference import available_backends, make_engine, tensorrt_backend
from rlfm_edge.inference.engine_cache import EngineKey, load_plan, plan_path, record_path, store_plan
from rlfm_edge.inference.tensorrt_backend import unavailable_reason
from rlfm_edge.model.io import ModelFileError, sha256_file, write_manifest

KEY = EngineKey("ab" * 32, "int8", "10.9.0", "NVIDIA Orin (sm_87)")
TRT_REASON = unavailable_reason()
needs_gpu = pytest.mark.skipif(TRT_REASON is not None, reason=f"TensorRT cannot run here: {TRT_REASON}")


def test_a_stored_engine_is_found_again_for_the_same_key(tmp_path):
    plan = store_plan(plan_path(tmp_path, KEY), KEY, b"engine bytes")
    assert load_plan(plan, KEY) == b"engine bytes"
    assert json.loads(record_path(plan).read_text())["key"]["gpu"] == KEY.gpu


@pytest.mark.parametrize("field, value, why", [
    ("trt_version", "11.0.0", "TensorRT '10.9.0' -> '11.0.0'"),
    ("gpu", "NVIDIA H100 (sm_90)", "GPU 'NVIDIA Orin (sm_87)' -> 'NVIDIA H100 (sm_90)'"),
    ("onnx_sha256", "cd" * 32, "ONNX 'abababababab' -> 'cdcdcdcdcdcd'"),
    ("opt_states", 109, "profile S 0 -> 109"),
])
def test_an_engine_built_for_another_setup_is_a_logged_miss(tmp_path, caplog, field, value, why):
    plan = store_plan(tmp_path / "e.plan", KEY, b"engine bytes")
    other = EngineKey(**{**KEY.__dict__, field: value})
    with caplog.at_level(logging.WARNING):
        assert load_plan(plan, other) is None
    assert "built for another setup" in caplog.text and why in caplog.text and "rebuilding" in caplog.text


def test_a_corrupted_or_unrecorded_engine_is_a_logged_miss(tmp_path, caplog):
    plan = store_plan(tmp_path / "e.plan", KEY, b"engine bytes")
    plan.write_bytes(b"engine bytez")
    with caplog.at_level(logging.WARNING):
        assert load_plan(plan, KEY) is None
    assert "corrupted" in caplog.text and "e.plan" in caplog.text
    record_path(plan).unlink()
    with caplog.at_level(logging.WARNING):
        assert load_plan(plan, KEY) is None
    assert "no readable record" in caplog.text


def test_keys_differ_by_precision_so_engines_never_collide(tmp_path):
    fp16 = EngineKey(**{**KEY.__dict__, "precision": "fp16"})
    assert plan_path(tmp_path, KEY) != plan_path(tmp_path, fp16)


def _key(**changes) -> EngineKey:
    return EngineKey(**{**KEY.__dict__, **changes})


@pytest.mark.parametrize("changes, why", [
    ({"trt_version": "10.10.0"}, "TensorRT '10.9.0' -> '10.10.0'"),
    ({"gpu": "NVIDIA Thor (sm_110)"}, "GPU 'NVIDIA Orin (sm_87)' -> 'NVIDIA Thor (sm_110)'"),
    ({"onnx_sha256": "cd" * 32}, "ONNX 'abababababab' -> 'cdcdcdcdcdcd'"),  # re-exported in place
])
def test_a_cache_miss_says_what_changed_since_the_cached_engine_of_the_model_was_built(
        tmp_path, caplog, changes, why):
    old = store_plan(plan_path(tmp_path, KEY), KEY, b"old engine", source="/robot/model/model.int8.onnx")
    store_plan(plan_path(tmp_path, _key(onnx_sha256="ef" * 32)), _key(onnx_sha256="ef" * 32), b"other model",
               source="/robot/other/model.int8.onnx")
    new = _key(**changes)
    with caplog.at_level(logging.INFO):
        assert load_plan(plan_path(tmp_path, new), new, "/robot/model/model.int8.onnx") is None
    assert f"cached {old.name} was built for another setup: {why}" in caplog.text
    assert "other model" not in caplog.text and caplog.text.count("was built for another setup") == 1


def test_a_cache_miss_for_a_model_never_cached_says_so(tmp_path, caplog):
    store_plan(plan_path(tmp_path, KEY), KEY, b"old engine", source="/robot/model/model.int8.onnx")
    new = _key(onnx_sha256="cd" * 32)
    with caplog.at_level(logging.INFO):
        assert load_plan(plan_path(tmp_path, new), new, "/robot/other/model.int8.onnx") is None
    assert "none cached for this model and precision" in caplog.text


@pytest.fixture
def onnx_dir(tmp_path):
    """A model directory with stand-in ONNX files: the engine cache reads only their hashes."""
    d = tmp_path / "model"
    d.mkdir()
    for name in ("model.onnx", "model.int8.onnx"):
        (d / name).write_bytes(f"stand-in for {name}".encode())
        (d / f"{name}.json").write_text(json.dumps({"sha256": sha256_file(d / name), "max_states": 8,
                                                    "max_actions": 2, "max_successors": 2}))
    write_manifest(d)
    return d


def test_a_rebuild_deletes_the_engines_it_supersedes_and_keeps_the_others(onnx_dir, tmp_path, monkeypatch):
    source = str((onnx_dir / "model.int8.onnx").resolve())
    sha = sha256_file(onnx_dir / "model.int8.onnx")
    now = _key(onnx_sha256=sha, trt_version="10.10.0", opt_states=8, opt_actions=2)
    older_trt = _key(onnx_sha256=sha, opt_states=8, opt_actions=2)
    older_onnx = _key(trt_version="10.10.0")  # and from before profiles
    other_gpu = _key(onnx_sha256=sha, gpu="NVIDIA Thor (sm_110)")
    other_precision = _key(onnx_sha256=sha, precision="fp16")
    cache = tmp_path / "cache"
    unrelated = store_plan(plan_path(cache, _key(onnx_sha256="ef" * 32)), _key(onnx_sha256="ef" * 32), b"x")
    other_profile = _key(onnx_sha256=sha, trt_version="10.10.0", opt_states=5, opt_actions=2)
    for key in (older_trt, older_onnx, other_gpu, other_precision, other_profile):
        store_plan(plan_path(cache, key), key, b"old", source)
    monkeypatch.setattr(tensorrt_backend, "engine_key", lambda sha256, precision, max_batch, opt: now)
    monkeypatch.setattr(tensorrt_backend, "build_plan", lambda *args: b"new engine")
    plan, data, _ = tensorrt_backend.ensure_engine(onnx_dir, "int8", cache)
    assert data == b"new engine" and plan == plan_path(cache, now)
    kept = {p.name for p in cache.glob("*.plan")}
    assert kept == {plan.name, unrelated.name, plan_path(cache, other_gpu).name,
                    plan_path(cache, other_precision).name, plan_path(cache, other_profile).name}
    assert {p.name for p in cache.glob("*.plan.json")} == {f"{name}.json" for name in kept}


@pytest.mark.parametrize("precision, command",
                         [("int8", "calibrate"), ("fp32", "export"), ("fp16", "export")])
def test_an_onnx_tensorrt_cannot_parse_names_the_command_that_re_creates_it(onnx_dir, monkeypatch,
                                                                            precision, command):
    class Parser:
        num_errors = 1

        def __init__(self, network, logger):
            pass

        def parse(self, data):
            return False

        def get_error(self, i):
            return "unsupported operator"

    builder = types.SimpleNamespace(create_network=lambda flags: object())
    logger = type("Logger", (), {"WARNING": 0, "__init__": lambda self, level: None})
    fake = types.SimpleNamespace(__version__="11.0.0", Logger=logger, OnnxParser=Parser,
                                 Builder=lambda logger: builder)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    onnx_path = onnx_dir / ("model.int8.onnx" if precision == "int8" else "model.onnx")
    profile = tensorrt_backend.profile_shapes(json.loads(Path(f"{onnx_path}.json").read_text()))
    with pytest.raises(ModelFileError, match=rf"cannot parse it \(unsupported operator\); re-create it with "
                                             rf"`rlfm-edge {command} --model {onnx_dir}`"):
        tensorrt_backend.build_plan(Path(onnx_path), precision, profile)


def test_the_optimization_profile_spans_every_size_up_to_the_export_and_is_tuned_for_the_robot():
    spec = {"max_states": 256, "max_actions": 8, "max_successors": 8}
    profile = tensorrt_backend.profile_shapes(spec, max_batch=2, opt_size=(109, 2))
    assert profile["state_x"] == ((1, 1, 7), (1, 109, 7), (2, 256, 7))
    assert profile["succ_attr"] == ((1, 1, 1, 8, 2), (1, 109, 2, 8, 2), (2, 256, 8, 8, 2))
    assert profile["sa_mask"][2] == (2, 256, 8)
    assert tensorrt_backend.profile_shapes(spec)["sa_x"][1] == (1, 256, 8, 13)  # default: the largest
    with pytest.raises(ValueError, match="opt_size"):
        tensorrt_backend.profile_shapes(spec, opt_size=(300, 2))


@pytest.mark.skipif(TRT_REASON is None, reason="TensorRT runs here")
def test_without_tensorrt_the_backend_says_why_and_refuses_clearly():
    assert available_backends()["tensorrt"] == TRT_REASON
    with pytest.raises(RuntimeError, match="'tensorrt' is unavailable here"):
        make_engine("tensorrt")


# ---- on a GPU with TensorRT ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def gpu_model(tiny_model):
    from rlfm_edge.calibration.calibset import build_calibration_set
    from rlfm_edge.calibration.quantize import quantize_int8

    path = tiny_model(seed=0, jitter=0.3, export=True, hidden=32, heads=4, layers=4, max_successors=8,
                      max_states=64, max_actions=8)
    quantize_int8(path, build_calibration_set(64, 8, 8, n_prior=32))
    return path


def _stats(seed, S=64, A=8):
    from rlfm_edge.training.export import random_stats

    return random_stats(np.random.default_rng(seed), S, A, 20 * S * A)


@needs_gpu
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_tensorrt_fp32_matches_onnx_runtime_within_1e_4(gpu_model, tmp_path, cuda_graph):
    from rlfm_edge.inference.tensorrt_backend import TensorRTEngine

    trt_engine = TensorRTEngine(gpu_model, "fp32", cache_dir=tmp_path, cuda_graph=cuda_graph)
    ort_engine = make_engine("onnxruntime", gpu_model, "fp32", providers=["CPUExecutionProvider"])
    for seed, (S, A) in enumerate([(64, 8), (20, 5), (64, 8), (3, 2)]):  # sizes change back and forth
        stats = _stats(seed, S, A)
        got = trt_engine.policy(stats, 15)
        assert got.shape == (S, A)
        assert np.abs(got - ort_engine.policy(stats, 15)).max() <= 1e-4


@needs_gpu
def test_tensorrt_int8_agrees_with_onnx_runtime_int8_on_greedy_actions(gpu_model, tmp_path):
    from rlfm_edge.inference.tensorrt_backend import TensorRTEngine

    trt_engine = TensorRTEngine(gpu_model, "int8", cache_dir=tmp_path)
    ort_engine = make_engine("onnxruntime", gpu_model, "int8", providers=["CPUExecutionProvider"])
    agree = total = 0
    for seed in range(5):
        stats = _stats(seed)
        a, b = trt_engine.policy(stats, 15), ort_engine.policy(stats, 15)
        agree += int((a.argmax(1) == b.argmax(1)).sum())
        total += len(a)
    assert agree >= 0.95 * total


@needs_gpu
def test_a_cached_engine_is_reused_and_a_corrupted_one_rebuilt(gpu_model, tmp_path, caplog):
    from rlfm_edge.inference.tensorrt_backend import TensorRTEngine

    first = TensorRTEngine(gpu_model, "fp32", cache_dir=tmp_path, progress=False)
    with caplog.at_level(logging.INFO):
        TensorRTEngine(gpu_model, "fp32", cache_dir=tmp_path, progress=False)
    assert "building" not in caplog.text
    first.plan.write_bytes(first.plan.read_bytes()[:100])
    caplog.clear()
    with caplog.at_level(logging.INFO):
        again = TensorRTEngine(gpu_model, "fp32", cache_dir=tmp_path, progress=False)
    assert "corrupted" in caplog.text and "building" in caplog.text
    assert again.policy(_stats(0), 10).shape == (64, 8)
