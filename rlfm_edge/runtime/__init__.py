"""What runs on the robot: the one configuration, the online agent loop and crash-safe statistics."""

from rlfm_edge.runtime.online_agent import AgentCounters, InvalidObservation, OnlineAgent
from rlfm_edge.runtime.persistence import StatsPersistence
from rlfm_edge.runtime.robot_config import SETTINGS, RobotConfig, Setting
from rlfm_edge.runtime.serial_loop import RandomActor, SerialAgentLoop
from rlfm_edge.serial.session import EpisodeRecord

__all__ = ["SETTINGS", "AgentCounters", "EpisodeRecord", "InvalidObservation", "OnlineAgent",
           "RandomActor", "RobotConfig", "SerialAgentLoop", "Setting", "StatsPersistence"]
