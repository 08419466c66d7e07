"""Export: the ONNX graph is valid, batch-dynamic, described by a manifest, and equals torch."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from rlfm_edge.model import build_features, pad_features  # noqa: E402
from rlfm_edge.model.dense import DenseGAT  # noqa: E402
from rlfm_edge.model.features import INPUT_NAMES  # noqa: E402
from rlfm_edge.model.io import (  # noqa: E402
    ModelFileError,
    load_model,
    sha256_file,
    verify_manifest,
    write_manifest,
)
from rlfm_edge.training.export import export_onnx, random_stats, valid_logit_diff  # noqa: E402

SMAX, AMAX = 12, 4


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model):
    src = tiny_model(seed=0, jitter=0.1, hidden=16, heads=2, layers=2, max_successors=4,
                     max_states=SMAX, max_actions=AMAX)
    out = tmp_path_factory.mktemp("export")
    spec = export_onnx(src, out)
    return src, out, spec


def test_export_writes_a_checked_onnx_and_a_manifest_covering_every_file(exported):
    src, out, spec = exported
    model = onnx.load(out / "model.onnx")
    onnx.checker.check_model(model, full_check=True)
    manifest = verify_manifest(out, required=("model.onnx", "model.onnx.json", "weights.npz", "config.json"))
    assert manifest["files"]["model.onnx"] == spec["sha256"]
    on_disk = json.loads((out / "model.onnx.json").read_text())
    assert (on_disk["max_states"], on_disk["max_actions"], on_disk["max_successors"]) == (SMAX, AMAX, 4)
    assert on_disk["opset"] == 17 and on_disk["weights_sha256"] == manifest["files"]["weights.npz"]
    assert [i.name for i in model.graph.input] == list(INPUT_NAMES)
    assert [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch dimension
    assert load_model(out).config == load_model(src).config  # a complete model directory


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_runtime_matches_torch_within_1e_4_on_valid_entries(exported, batch):
    src, out, _ = exported
    rng = np.random.default_rng(batch)
    sizes = [(SMAX, AMAX), (5, 3), (2, 2)][:batch]
    feats = [build_features(random_stats(rng, S, A, 15 * S * A), 7, 4) for S, A in sizes]
    inputs = pad_features(feats, SMAX, AMAX, 4).as_dict()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, inputs)[0]
    with torch.inference_mode():
        want = DenseGAT(load_model(src)).eval()(*(torch.from_numpy(v) for v in inputs.values())).numpy()
    assert got.shape == (batch, SMAX, AMAX)
    for b, (S, A) in enumerate(sizes):
        assert valid_logit_diff(got[b:b + 1], want[b:b + 1], S, A) <= 1e-4


@pytest.mark.parametrize("S, A", [(SMAX, AMAX), (5, 3), (1, 1), (SMAX, 1)])
def test_the_export_runs_at_each_statistics_own_size_and_equals_torch_there(exported, S, A):
    src, out, spec = exported
    assert spec["inputs"]["succ_attr"] == ["batch", "states", "actions", 4, 2]
    feats = build_features(random_stats(np.random.default_rng(S * A), S, A, 15 * S * A), 7, 4)
    own = pad_features([feats], S, A, 4).as_dict()
    got = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, own)[0]
    dense = DenseGAT(load_model(src)).eval()
    with torch.inference_mode():
        full = pad_features([feats], SMAX, AMAX, 4).as_dict()
        padded = dense(*(torch.from_numpy(v) for v in full.values()))
    assert got.shape == (1, S, A)
    assert np.abs(got - padded.numpy()[:, :S, :A]).max() <= 1e-4  # padding changes nothing


def test_export_rejects_an_unsupported_opset_and_sizes(exported):
    src, out, _ = exported
    with pytest.raises(ValueError, match="opset"):
        export_onnx(src, out, opset=11)
    with pytest.raises(ValueError, match="max_states"):
        export_onnx(src, out, max_states=1)


def test_export_of_a_folder_without_a_model_names_the_manifest(tmp_path):
    with pytest.raises(ModelFileError, match="manifest not found"):
        export_onnx(tmp_path, tmp_path / "out")


def test_export_cli_writes_into_the_output_folder(exported, tmp_path, capsys):
    import argparse

    from rlfm_edge.cli import export as export_cli

    parser = argparse.ArgumentParser()
    export_cli.register(parser.add_subparsers())
    args = parser.parse_args(["export", "--model", str(exported[0]), "--out", str(tmp_path / "o"),
                              "--max-states", "6", "--max-actions", "4"])
    assert args.func(args) == 0
    assert "Smax=6" in capsys.readouterr().out
    assert json.loads((tmp_path / "o" / "model.onnx.json").read_text())["max_states"] == 6


def test_export_overwrites_a_corrupted_onnx_and_vouches_for_no_file_it_did_not_write(exported, tmp_path):
    import shutil

    from rlfm_edge.inference.onnx_backend import OnnxRuntimeEngine

    d = shutil.copytree(exported[1], tmp_path / "m")
    (d / "model.int8.onnx").write_bytes(b"an int8 model")
    (d / "model.int8.onnx.json").write_text(json.dumps(
        {"sha256": sha256_file(d / "model.int8.onnx"), "max_states": SMAX, "max_actions": AMAX,
         "max_successors": 4}))
    write_manifest(d)
    for name in ("model.onnx", "model.int8.onnx"):
        (d / name).write_bytes((d / name).read_bytes()[:10])  # half-written
    export_onnx(d)
    assert OnnxRuntimeEngine(d).max_states == SMAX
    with pytest.raises(ModelFileError, match=r"model\.int8\.onnx: sha256 does not match the manifest"):
        verify_manifest(d, required=("model.int8.onnx",))


def test_an_export_that_remakes_model_onnx_bit_for_bit_keeps_the_int8_file(exported, tmp_path, caplog,
                                                                           tiny_model):
    import shutil

    from rlfm_edge.calibration.calibset import build_calibration_set
    from rlfm_edge.calibration.quantize import quantize_int8
    from rlfm_edge.inference.onnx_backend import OnnxRuntimeEngine

    d = shutil.copytree(exported[1], tmp_path / "m")
    quantize_int8(d, build_calibration_set(SMAX, AMAX, 4, n_prior=4, seed=0))
    before = sha256_file(d / "model.onnx")
    with caplog.at_level("WARNING", logger="rlfm_edge.training.export"):
        export_onnx(d)
    assert sha256_file(d / "model.onnx") == before
    assert "calibrated from the previous export" not in caplog.text
    assert OnnxRuntimeEngine(d, precision="int8").precision == "int8"  # and the backend agrees

    # other weights: the INT8 file is stale now, and export says so
    other = tiny_model(tmp_path / "other", seed=1, hidden=16, heads=2, layers=2, max_successors=4,
                       max_states=SMAX, max_actions=AMAX)
    shutil.copyfile(other / "weights.npz", d / "weights.npz")
    write_manifest(d)
    with caplog.at_level("WARNING", logger="rlfm_edge.training.export"):
        export_onnx(d)
    assert "model.int8.onnx was calibrated from the previous export" in caplog.text
    with pytest.raises(ModelFileError, match="model.int8.onnx was made from another weights.npz"):
        OnnxRuntimeEngine(d, precision="int8")
