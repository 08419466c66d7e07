"""Start the rlfm_agent lifecycle node and, with autostart (default), configure and activate it.

    ros2 launch rlfm_edge_ros rlfm_agent.launch.py params_file:=/path/params.yaml
"""

import os

import launch
import launch.actions
import launch.events
import launch_ros.actions
import launch_ros.event_handlers
import launch_ros.events.lifecycle
import lifecycle_msgs.msg
from ament_index_python.packages import get_package_share_directory
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration


def generate_launch_description():
    share = get_package_share_directory("rlfm_edge_ros")
    params_file = LaunchConfiguration("params_file")
    autostart = LaunchConfiguration("autostart")
    agent = launch_ros.actions.LifecycleNode(
        package="rlfm_edge_ros", executable="rlfm_agent_node", name="rlfm_agent",
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[params_file])
    configure = launch.actions.EmitEvent(
        event=launch_ros.events.lifecycle.ChangeState(
            lifecycle_node_matcher=launch.events.matches_action(agent),
            transition_id=lifecycle_msgs.msg.Transition.TRANSITION_CONFIGURE),
        condition=IfCondition(autostart))
    activate_when_inactive = launch.actions.RegisterEventHandler(
        launch_ros.event_handlers.OnStateTransition(
            target_lifecycle_node=agent, goal_state="inactive",
            entities=[launch.actions.EmitEvent(event=launch_ros.events.lifecycle.ChangeState(
                lifecycle_node_matcher=launch.events.matches_action(agent),
                transition_id=lifecycle_msgs.msg.Transition.TRANSITION_ACTIVATE))]),
        condition=IfCondition(autostart))
    # the node exits by itself after the SHUTDOWN transition; end the launch with it
    shutdown_with_node = launch.actions.RegisterEventHandler(
        launch.event_handlers.OnProcessExit(
            target_action=agent, on_exit=[launch.actions.EmitEvent(event=launch.events.Shutdown())]))
    return launch.LaunchDescription([
        launch.actions.DeclareLaunchArgument(
            "params_file", default_value=os.path.join(share, "config", "params.yaml"),
            description="parameters of the rlfm_agent node"),
        launch.actions.DeclareLaunchArgument(
            "namespace", default_value="", description="namespace of the node"),
        launch.actions.DeclareLaunchArgument(
            "autostart", default_value="true", description="configure and activate at start"),
        agent, activate_when_inactive, configure, shutdown_with_node,
    ])
