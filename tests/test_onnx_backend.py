"""ONNX Runtime backend: same policy as torch, clear errors for bad files and oversized statistics."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from rlfm_edge.inference import ModelLimitError  # noqa: E402
from rlfm_edge.inference.onnx_backend import OnnxRuntimeEngine, spec_path  # noqa: E402
from rlfm_edge.inference.torch_backend import TorchEngine  # noqa: E402
from rlfm_edge.model.io import (  # noqa: E402
    DEFAULT_MODEL_DIR,
    ModelFileError,
    sha256_file,
    write_manifest,
)
from rlfm_edge.training.export import random_stats  # noqa: E402

SMAX, AMAX = 10, 4


@pytest.fixture(scope="module")
def model_dir(tiny_model):
    return tiny_model(seed=1, jitter=0.1, export=True, hidden=8, heads=2, layers=2, max_successors=3,
                      max_states=SMAX, max_actions=AMAX)


@pytest.fixture
def copy_dir(model_dir, tmp_path):
    return shutil.copytree(model_dir, tmp_path / "m")


def test_policy_has_the_statistics_shape_and_matches_torch(model_dir):
    ort_engine, torch_engine = OnnxRuntimeEngine(model_dir), TorchEngine(model_dir, device="cpu")
    assert (ort_engine.backend, ort_engine.precision) == ("onnxruntime", "fp32")
    assert (ort_engine.max_states, ort_engine.max_actions) == (SMAX, AMAX)
    rng = np.random.default_rng(0)
    for S, A, n in [(SMAX, AMAX, 400), (3, 2, 30), (7, 4, 0)]:
        stats = random_stats(rng, S, A, n)
        got = ort_engine.policy(stats, 9)
        assert got.shape == (S, A)
        assert np.abs(got - torch_engine.policy(stats, 9)).max() <= 1e-4


def test_a_refresh_is_padded_only_to_the_statistics_own_size(model_dir, monkeypatch):
    engine = OnnxRuntimeEngine(model_dir)
    fed = []
    run = engine.run_padded
    monkeypatch.setattr(engine, "run_padded", lambda inputs: fed.append(inputs["sa_x"].shape) or run(inputs))
    rng = np.random.default_rng(2)
    small = random_stats(rng, 3, 2, 30)
    engine.policy(small, 5)
    engine.policy_batch([(small, 5), (random_stats(rng, 6, 1, 30), 5)])
    assert [shape[:3] for shape in fed] == [(1, 3, 2), (2, 6, 2)]  # a batch: its largest S and A


def test_a_batch_call_equals_single_calls(model_dir):
    engine = OnnxRuntimeEngine(model_dir)
    rng = np.random.default_rng(1)
    batch = [(random_stats(rng, 6, 3, 100), 5), (random_stats(rng, 9, 4, 200), 12)]
    for (stats, h), logits in zip(batch, engine.policy_batch(batch), strict=True):
        np.testing.assert_allclose(logits, engine.policy(stats, h), atol=1e-5)


def test_statistics_above_the_export_raise_model_limit_error_saying_how_to_export(model_dir):
    engine = OnnxRuntimeEngine(model_dir)
    with pytest.raises(ModelLimitError, match=r"S=11.*rlfm-edge export --max-states"):
        engine.policy(random_stats(np.random.default_rng(0), SMAX + 1, 2, 10), 5)


def test_a_missing_onnx_names_the_file_and_the_export_command(copy_dir):
    (copy_dir / "model.onnx").unlink()
    with pytest.raises(ModelFileError, match=r"model\.onnx.*rlfm-edge export --model"):
        OnnxRuntimeEngine(copy_dir)


def test_missing_int8_model_says_to_calibrate(copy_dir):
    with pytest.raises(ModelFileError, match=r"model\.int8\.onnx.*rlfm-edge calibrate"):
        OnnxRuntimeEngine(copy_dir, precision="int8")


def test_a_corrupted_onnx_fails_the_manifest_check(copy_dir):
    data = bytearray((copy_dir / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy_dir / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"model\.onnx: sha256 does not match the manifest"):
        OnnxRuntimeEngine(copy_dir)


def test_an_unloadable_onnx_with_a_consistent_manifest_says_to_re_export(copy_dir):
    (copy_dir / "model.onnx").write_bytes(b"not an onnx model")
    spec = json.loads((copy_dir / "model.onnx.json").read_text())
    spec["sha256"] = sha256_file(copy_dir / "model.onnx")
    (copy_dir / "model.onnx.json").write_text(json.dumps(spec))
    write_manifest(copy_dir)
    with pytest.raises(ModelFileError, match=r"ONNX Runtime cannot load it.*rlfm-edge export --model"):
        OnnxRuntimeEngine(copy_dir)


def test_an_export_description_of_another_file_is_rejected(copy_dir):
    spec = json.loads((copy_dir / "model.onnx.json").read_text())
    spec["sha256"] = "0" * 64
    (copy_dir / "model.onnx.json").write_text(json.dumps(spec))
    write_manifest(copy_dir)
    with pytest.raises(ModelFileError, match=r"model\.onnx\.json: describes another model\.onnx"):
        OnnxRuntimeEngine(copy_dir)


def test_unknown_precision_is_a_value_error(model_dir):
    with pytest.raises(ValueError, match="precision"):
        OnnxRuntimeEngine(model_dir, precision="fp8")


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _stand_in_int8(model_dir, data=None, **fields):
    """An int8 export as calibrate writes it, with model.onnx's bytes (or ``data``) standing in."""
    out = model_dir / "model.int8.onnx"
    out.write_bytes(data if data is not None else (model_dir / "model.onnx").read_bytes())
    spec = json.loads((model_dir / "model.onnx.json").read_text())
    spec.update({"file": out.name, "precision": "int8", "sha256": sha256_file(out),
                 "source_sha256": spec["sha256"], **fields})
    (model_dir / "model.int8.onnx.json").write_text(json.dumps(spec))
    write_manifest(model_dir)


def test_a_corrupted_int8_export_stops_only_int8_and_says_to_calibrate(copy_dir):
    _stand_in_int8(copy_dir)
    _flip_a_byte(copy_dir / "model.int8.onnx")
    with pytest.raises(ModelFileError, match=r"model\.int8\.onnx: sha256 does not match the manifest.*"
                                             r"rlfm-edge calibrate --model"):
        OnnxRuntimeEngine(copy_dir, precision="int8")
    stats = random_stats(np.random.default_rng(0), 5, 3, 40)
    assert OnnxRuntimeEngine(copy_dir).policy(stats, 6).shape == (5, 3)
    assert TorchEngine(copy_dir, device="cpu").policy(stats, 6).shape == (5, 3)


def test_calibrate_overwrites_a_corrupted_int8_export(copy_dir):
    from rlfm_edge.calibration.calibset import build_calibration_set
    from rlfm_edge.calibration.quantize import quantize_int8

    _stand_in_int8(copy_dir)
    _flip_a_byte(copy_dir / "model.int8.onnx")
    quantize_int8(copy_dir, build_calibration_set(SMAX, AMAX, 3, n_prior=4))
    assert OnnxRuntimeEngine(copy_dir, precision="int8").precision == "int8"


def test_an_unloadable_int8_model_says_to_calibrate_not_export(copy_dir):
    _stand_in_int8(copy_dir, data=b"not an onnx model")
    with pytest.raises(ModelFileError, match=r"ONNX Runtime cannot load it.*rlfm-edge calibrate --model"):
        OnnxRuntimeEngine(copy_dir, precision="int8")


def test_an_export_of_older_weights_is_refused_saying_to_re_export(copy_dir, tiny_model):
    _stand_in_int8(copy_dir)
    tiny_model(copy_dir, seed=7, hidden=8, heads=2, layers=2, max_successors=3, max_states=SMAX,
               max_actions=AMAX)  # retrained, not re-exported
    with pytest.raises(ModelFileError, match=r"model\.onnx\.json: model\.onnx was made from another "
                                             r"weights\.npz.*stale.*rlfm-edge export --model"):
        OnnxRuntimeEngine(copy_dir)
    with pytest.raises(ModelFileError, match=r"stale.*rlfm-edge export --model .* then `rlfm-edge calibrate"):
        OnnxRuntimeEngine(copy_dir, precision="int8")


def test_an_int8_model_of_an_older_export_is_refused_saying_to_calibrate(copy_dir):
    _stand_in_int8(copy_dir, source_sha256="0" * 64)
    with pytest.raises(ModelFileError, match=r"quantized from another model\.onnx.*stale calibration.*"
                                             r"rlfm-edge calibrate --model"):
        OnnxRuntimeEngine(copy_dir, precision="int8")


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_shipped_model_is_fresh_and_a_copy_with_a_stale_description_is_refused(tmp_path, precision):
    assert OnnxRuntimeEngine(precision=precision).precision == precision
    d = shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "m")
    sidecar = spec_path(d, precision)
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "weights_sha256": "0" * 64}))
    write_manifest(d)
    with pytest.raises(ModelFileError, match="stale export"):
        OnnxRuntimeEngine(d, precision=precision)


def test_a_description_whose_sizes_differ_from_the_onnx_inputs_is_refused(copy_dir):
    sidecar = copy_dir / "model.onnx.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "max_successors": 5}))
    write_manifest(copy_dir)
    with pytest.raises(ModelFileError, match=r"input succ_index has shape \['\?', '\?', '\?', 3\].*"
                                             r"feed \['\?', '\?', '\?', 5\].*K=5.*rlfm-edge export --model"):
        OnnxRuntimeEngine(copy_dir)


def test_an_export_of_fixed_sizes_is_refused_saying_to_export_again(copy_dir):
    """An export from before dynamic S and A (its state axis fixed) would fail every refresh."""
    import onnx

    model = onnx.load(copy_dir / "model.onnx")
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = SMAX  # state_x: (batch, SMAX, 7)
    (copy_dir / "model.onnx").write_bytes(model.SerializeToString())
    sidecar = spec_path(copy_dir, "fp32")
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()),
                                   "sha256": sha256_file(copy_dir / "model.onnx")}))
    write_manifest(copy_dir)
    with pytest.raises(ModelFileError, match=rf"input state_x has shape \['\?', {SMAX}, 7\].*before "
                                             r"dynamic S and A.*rlfm-edge export --model"):
        OnnxRuntimeEngine(copy_dir)


@pytest.mark.parametrize("batch", [False, True])
def test_nan_logits_from_a_float32_overflow_are_an_error(model_dir, monkeypatch, batch):
    engine = OnnxRuntimeEngine(model_dir)
    monkeypatch.setattr(engine, "run_padded", lambda inputs: np.full((1, SMAX, AMAX), np.nan, np.float32))
    stats = random_stats(np.random.default_rng(0), 6, 3, 200)
    with pytest.raises(ValueError, match="logits: the model returned NaN or inf"):
        engine.policy_batch([(stats, 6)]) if batch else engine.policy(stats, 6)


def test_a_huge_reward_on_the_shipped_model_is_an_error_not_nan_logits():
    stats = random_stats(np.random.default_rng(0), 10, 3, 200)
    stats.update(0, 0, 1e39, 1)  # finite in float64, and so is its mean in float32
    with pytest.raises(ValueError, match="logits: the model returned NaN or inf"):
        OnnxRuntimeEngine().policy(stats, 10)
