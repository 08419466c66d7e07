"""The training pipeline: rounds in order, each from the one before, checked before any work."""

from __future__ import annotations

import logging

import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from training.pipeline import load, run  # noqa: E402

TINY = dict(n_examples=48, n_val=8, epochs=1, batch_size=16, lr=3e-3, workers=1,
            model={"hidden": 8, "heads": 2, "layers": 1},
            prior={"s_max": 6, "a_max": 3, "h_max": 8}, data={"max_episodes": 5})


def _config(tmp_path, name, **overrides):
    fields = {**TINY, "out_dir": str(tmp_path / "runs" / name), "data_dir": str(tmp_path / name),
              "val_dir": str(tmp_path / f"val_{name}"), **overrides}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(fields))
    return str(path)


def _pipeline(tmp_path, rounds, finish=None):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"rounds": rounds, **({"finish": finish} if finish else {})}))
    return path


@pytest.mark.slow
def test_the_rounds_run_in_order_each_from_the_last_and_a_rerun_skips_them(tmp_path, caplog):
    first = _config(tmp_path, "first")
    model1 = str(tmp_path / "runs" / "first" / "model")
    data = _config(tmp_path, "data", data={"max_episodes": 5, "model_dir": model1,
                                           "behaviour_weights": [0, 0, 0, 0, 1]})
    second = _config(tmp_path, "second", init_from=model1, replay_dirs=[str(tmp_path / "data")])
    path = _pipeline(tmp_path, [first, {"config": data, "data_only": True}, second],
                     finish=[["export"]])
    final = run(path)
    assert final == tmp_path / "runs" / "second" / "model"
    assert (final / "weights.npz").is_file() and (final / "model.onnx").is_file()
    assert list((tmp_path / "data").glob("shard_*.npz")) and not (tmp_path / "runs" / "data").exists()
    before = (final / "weights.npz").read_bytes()
    with caplog.at_level(logging.INFO, logger="rlfm_edge.train"):
        run(path)
    assert "round 1/3" in caplog.text and "done" in caplog.text
    assert (final / "weights.npz").read_bytes() == before


def test_a_broken_chain_is_refused_before_any_work(tmp_path):
    first = _config(tmp_path, "first")
    stray = _config(tmp_path, "second", init_from=str(tmp_path / "elsewhere" / "model"))
    with pytest.raises(ValueError, match=r"rounds\[1\].*init_from is .*elsewhere.*expected the previous"):
        load(_pipeline(tmp_path, [first, stray]))
    warm = _config(tmp_path, "warm", init_from=str(tmp_path / "x"))
    with pytest.raises(ValueError, match="first round trains from scratch"):
        load(_pipeline(tmp_path, [warm]))
    bad = _config(tmp_path, "bad", epochs="one")
    with pytest.raises(ValueError, match=r"rounds\[1\].*epochs"):
        load(_pipeline(tmp_path, [first, bad]))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "first").exists()


def test_the_shipped_pipeline_is_a_checked_chain_ending_in_an_export():
    pipeline = load("training/pipeline.yaml")
    assert pipeline.rounds[0].config_path.name == "default.yaml"
    assert [c[0] for c in pipeline.finish] == ["export", "calibrate"]
