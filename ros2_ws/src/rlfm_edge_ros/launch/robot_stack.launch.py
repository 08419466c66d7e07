"""A microcontroller robot on a serial port, driven by the rlfm agent through ROS 2.

    ros2 launch rlfm_edge_ros robot_stack.launch.py port:=/dev/ttyACM0

Starts rlfm_agent_node (via rlfm_agent.launch.py, configured and activated) with
config/robot_stack.yaml, and rlfm_serial_bridge, which turns the robot's OBSERVATION frames
into the agent's topics and the agent's actions into ACTION frames.
"""

import os

import launch
import launch.actions
import launch_ros.actions
from ament_index_python.packages import get_package_share_directory
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration


def generate_launch_description():
    share = get_package_share_directory("rlfm_edge_ros")
    params_file = LaunchConfiguration("params_file")
    agent = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "rlfm_agent.launch.py")),
        launch_arguments={"params_file": params_file, "autostart": "true"}.items())
    bridge = launch_ros.actions.Node(
        package="rlfm_edge_ros", executable="rlfm_serial_bridge", name="rlfm_serial_bridge",
        output="screen",
        parameters=[params_file, {"port": LaunchConfiguration("port"),
                                  "baudrate": LaunchConfiguration("baudrate")}])
    return launch.LaunchDescription([
        launch.actions.DeclareLaunchArgument(
            "params_file", default_value=os.path.join(share, "config", "robot_stack.yaml"),
            description="parameters of the agent and the bridge"),
        launch.actions.DeclareLaunchArgument("port", default_value="/dev/ttyACM0",
                                             description="serial device of the robot"),
        launch.actions.DeclareLaunchArgument("baudrate", default_value="115200"),
        agent, bridge,
    ])
