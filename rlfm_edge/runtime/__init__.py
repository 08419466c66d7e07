"""What runs on the robot: the online agent loop and crash-safe statistics."""

from rlfm_edge.runtime.online_agent import AgentCounters, InvalidObservation, OnlineAgent
from rlfm_edge.runtime.persistence import StatsPersistence
from rlfm_edge.runtime.robot_config import RobotConfig
from rlfm_edge.runtime.serial_loop import EpisodeRecord, RandomActor, SerialAgentLoop

__all__ = ["AgentCounters", "EpisodeRecord", "InvalidObservation", "OnlineAgent", "RandomActor",
           "RobotConfig", "SerialAgentLoop", "StatsPersistence"]
