"""What runs on the robot: the online agent loop and crash-safe statistics."""

from rlfm_edge.runtime.online_agent import AgentCounters, InvalidObservation, OnlineAgent
from rlfm_edge.runtime.persistence import StatsPersistence

__all__ = ["AgentCounters", "InvalidObservation", "OnlineAgent", "StatsPersistence"]
