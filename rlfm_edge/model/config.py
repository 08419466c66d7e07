"""Model hyperparameters, stored beside the weights so a checkpoint rebuilds its network."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class ModelConfig:
    hidden: int = 32          # node embedding width d
    heads: int = 4            # attention heads (hidden % heads == 0)
    layers: int = 4           # message-passing rounds (value-iteration-like backups)
    max_successors: int = 8   # K: successor edges kept per (s, a), most visited first
    max_states: int = 256     # Smax of the dense/exported network
    max_actions: int = 8      # Amax of the dense/exported network

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"model config {f.name}: expected a positive integer, got {v!r}")
        if self.hidden % self.heads:
            raise ValueError(f"model config: hidden={self.hidden} must be divisible by heads={self.heads}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"model config: unknown fields {sorted(unknown)}; known {sorted(known)}")
        return cls(**d)
