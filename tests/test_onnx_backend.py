"""ONNX Runtime backend: same policy as torch, clear errors for bad files and oversized statistics."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from rlfm_edge.inference import ModelLimitError  # noqa: E402
from rlfm_edge.inference.onnx_backend import OnnxRuntimeEngine  # noqa: E402
from rlfm_edge.inference.torch_backend import TorchEngine  # noqa: E402
from rlfm_edge.model import ModelConfig  # noqa: E402
from rlfm_edge.model.gat import PolicyGAT  # noqa: E402
from rlfm_edge.model.io import ModelFileError, save_model, write_manifest  # noqa: E402
from training.export import export_onnx, random_stats  # noqa: E402

SMAX, AMAX = 10, 4


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("model")
    net = PolicyGAT(ModelConfig(hidden=8, heads=2, layers=2, max_successors=3, max_states=SMAX,
                                max_actions=AMAX))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    save_model(net, path)
    export_onnx(path)
    return path


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
    from rlfm_edge.model.io import sha256_file

    spec["sha256"] = sha256_file(copy_dir / "model.onnx")
    (copy_dir / "model.onnx.json").write_text(json.dumps(spec))
    write_manifest(copy_dir)
    with pytest.raises(ModelFileError, match=r"ONNX Runtime cannot load it.*re-export"):
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
