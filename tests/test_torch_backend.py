"""Torch backend: eager on the CPU; on CUDA a captured graph that must equal the eager pass."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rlfm_edge.inference.torch_backend import TorchEngine  # noqa: E402
from rlfm_edge.model.features import build_features, pad_features  # noqa: E402
from rlfm_edge.training.export import random_stats  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA GPU visible: CUDA graphs run only on a GPU")


@pytest.fixture(scope="module")
def model_dir(tiny_model):
    return tiny_model(seed=5, hidden=8, heads=2, layers=2, max_successors=3, max_states=12,
                      max_actions=4)


def test_run_padded_on_padded_inputs_equals_policy_on_the_statistics(model_dir):
    engine = TorchEngine(model_dir, device="cpu")
    stats = random_stats(np.random.default_rng(0), 7, 3, 80)
    padded = pad_features([build_features(stats, 6, 3)], 12, 4, 3).as_dict()
    np.testing.assert_allclose(engine.run_padded(padded)[0, :7, :3], engine.policy(stats, 6), atol=1e-6)


def test_a_batch_is_one_forward_pass_equal_to_single_calls(model_dir, monkeypatch):
    engine = TorchEngine(model_dir, device="cpu")
    rng = np.random.default_rng(1)
    batch = [(random_stats(rng, 5, 3, 60), 4), (random_stats(rng, 9, 4, 150), 11)]
    singles = [engine.policy(stats, h) for stats, h in batch]
    calls = []
    run_padded = engine.run_padded
    monkeypatch.setattr(engine, "run_padded", lambda inputs: calls.append(1) or run_padded(inputs))
    for got, want in zip(engine.policy_batch(batch), singles, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert len(calls) == 1


def test_nan_logits_are_an_error_naming_the_overflow(model_dir, monkeypatch):
    engine = TorchEngine(model_dir, device="cpu")
    monkeypatch.setattr(engine, "run_padded", lambda inputs: np.full((1, 7, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="logits: the model returned NaN or inf"):
        engine.policy(random_stats(np.random.default_rng(0), 7, 3, 80), 6)


def test_a_cuda_graph_on_the_cpu_is_refused_with_the_reason(model_dir):
    assert TorchEngine(model_dir, device="cpu").cuda_graph is False
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        TorchEngine(model_dir, device="cpu", cuda_graph=True)


@needs_cuda
@pytest.mark.parametrize("precision, atol", [("fp32", 1e-4), ("fp16", 5e-2)])
def test_the_cuda_graph_replays_the_eager_pass_for_new_statistics(model_dir, precision, atol):
    graphed = TorchEngine(model_dir, precision=precision, device="cuda")
    eager = TorchEngine(model_dir, precision=precision, device="cuda", cuda_graph=False)
    reference = TorchEngine(model_dir, device="cpu")
    assert graphed.cuda_graph and not eager.cuda_graph
    rng = np.random.default_rng(1)
    for S, A, n in [(12, 4, 300), (3, 2, 20), (9, 4, 0), (12, 4, 900)]:  # replays see new inputs
        stats = random_stats(rng, S, A, n)
        got = graphed.policy(stats, 8)
        assert got.shape == (S, A)
        np.testing.assert_allclose(got, eager.policy(stats, 8), atol=atol)
        np.testing.assert_allclose(got, reference.policy(stats, 8), atol=atol)


@needs_cuda
def test_inputs_of_another_shape_than_the_captured_graph_are_refused(model_dir):
    graphed = TorchEngine(model_dir, device="cuda")
    stats = random_stats(np.random.default_rng(3), 5, 2, 40)
    graphed.policy(stats, 6)  # captures at (Smax, Amax)
    smaller = pad_features([build_features(stats, 6, 3)], 5, 4, 3).as_dict()
    with pytest.raises(ValueError, match="captured for state_x of shape"):
        graphed.run_padded(smaller)


def test_on_the_cpu_the_engine_leaves_a_core_to_the_control_loop(model_dir, monkeypatch):
    from rlfm_edge.inference.base import refresh_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        TorchEngine(model_dir, device="cpu")
        assert torch.get_num_threads() == refresh_threads() == max(1, min(2, (os.cpu_count() or 1) - 1))
        TorchEngine(model_dir, device="cpu", threads=3)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value, expected", [("3", 3), ("1", 1), ("0", None), ("many", None)])
def test_a_positive_omp_num_threads_sets_the_refresh_threads(monkeypatch, value, expected):
    from rlfm_edge.inference.base import refresh_threads

    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert refresh_threads() == (expected or max(1, min(2, (os.cpu_count() or 1) - 1)))
