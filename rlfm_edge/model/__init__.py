"""The policy GAT: features, the PyG network (training), its dense twin (export)."""

from rlfm_edge.model.config import ModelConfig
from rlfm_edge.model.features import GraphFeatures, build_features, pad_features

__all__ = ["ModelConfig", "GraphFeatures", "build_features", "pad_features"]
