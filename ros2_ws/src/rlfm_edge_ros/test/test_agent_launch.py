"""launch_testing: rlfm_agent.launch.py brings the node to active, and it answers an observation.

Runs where ROS 2 with launch_testing is installed and the package is built in a sourced
workspace (`colcon test --packages-select rlfm_edge_ros`); elsewhere it is skipped with the
reason (launch has no PyPI wheels). DDS stays on this machine in a domain of this test's own.
"""

import os
import time
import unittest

import pytest

pytest.importorskip("launch_testing", reason="launch_testing is not installed (needs a ROS 2 installation)")
pytest.importorskip("launch_ros", reason="launch_ros is not installed")

import launch  # noqa: E402
import launch.launch_description_sources  # noqa: E402
import launch_testing  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from ament_index_python.packages import PackageNotFoundError, get_package_share_directory  # noqa: E402
from rclpy.context import Context  # noqa: E402

try:
    SHARE = get_package_share_directory("rlfm_edge_ros")
except (PackageNotFoundError, OSError):  # OSError: no AMENT_PREFIX_PATH, no workspace sourced
    pytest.skip("rlfm_edge_ros is not installed in a sourced ROS 2 workspace (colcon build, then "
                "source install/setup.bash)", allow_module_level=True)

from rlfm_edge_ros.client import AgentClient  # noqa: E402

# distros that ignore ROS_AUTOMATIC_DISCOVERY_RANGE (it came with Iron) and need ROS_LOCALHOST_ONLY;
# Jazzy still honors ROS_LOCALHOST_ONLY but warns it is deprecated, so it is set only where needed
PRE_IRON_DISTROS = ("foxy", "galactic", "humble")


def _isolate_dds() -> None:
    """Loopback only, in a domain apart from other tests', for the launched node and this process."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_DOMAIN_ID"] = str(50 + os.getpid() % 40)  # tests/test_ros_node.py uses 10-49
    if os.environ.get("ROS_DISTRO") in PRE_IRON_DISTROS:
        os.environ["ROS_LOCALHOST_ONLY"] = "1"


@pytest.mark.launch_test
def generate_test_description():
    _isolate_dds()  # before launch starts the node and the test cases start rclpy
    params = os.path.join(os.path.dirname(__file__), "launch_test_params.yaml")
    agent = launch.actions.IncludeLaunchDescription(
        launch.launch_description_sources.PythonLaunchDescriptionSource(
            os.path.join(SHARE, "launch", "rlfm_agent.launch.py")),
        launch_arguments={"params_file": params}.items())
    return launch.LaunchDescription([agent, launch_testing.actions.ReadyToTest()])


class TestAgentLaunch(unittest.TestCase):
    def test_node_becomes_active_and_answers_an_observation(self):
        context = Context()
        rclpy.init(context=context)
        client = AgentClient(context)
        try:
            deadline = time.monotonic() + 30.0
            while client.get_state(timeout=30.0) != "active":
                self.assertLess(time.monotonic(), deadline, "rlfm_agent never became active")
                client.spin_until(lambda: False, 0.2)
            self.assertTrue(client.wait_connected())
            action = client.step([0.1, -0.1])
            self.assertIsNotNone(action)
            self.assertIn(action, range(4))
            self.assertTrue(client.change_state("shutdown"))
        finally:
            client.destroy()
            rclpy.shutdown(context=context)


@launch_testing.post_shutdown_test()
class TestAgentExit(unittest.TestCase):
    def test_exit_code_is_zero_after_shutdown(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
