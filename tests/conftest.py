"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest


def save_tiny_model(path: Path, *, seed: int = 0, jitter: float = 0.0, export: bool = False,
                    **config) -> Path:
    """A small random policy GAT (``ModelConfig(**config)``, ``torch.manual_seed(seed)``) saved
    as a model directory at ``path``. ``jitter`` adds that much Gaussian noise to every weight,
    so that no term hides behind an initialisation of zeros and the logits spread as a trained
    model's do; ``export`` also writes its ONNX export into the directory."""
    torch = pytest.importorskip("torch")
    from rlfm_edge.model import ModelConfig
    from rlfm_edge.model.gat import PolicyGAT
    from rlfm_edge.model.io import save_model

    torch.manual_seed(seed)
    net = PolicyGAT(ModelConfig(**config))
    if jitter:
        with torch.no_grad():
            for p in net.parameters():
                p.add_(jitter * torch.randn_like(p))
    save_model(net, path)
    if export:
        from rlfm_edge.training.export import export_onnx

        export_onnx(path)
    return Path(path)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """``tiny_model(path=None, **kw)``: ``save_tiny_model`` into ``path`` or a fresh directory."""
    def make(path: Path | None = None, **kw) -> Path:
        return save_tiny_model(path if path is not None else tmp_path_factory.mktemp("model"), **kw)
    return make
