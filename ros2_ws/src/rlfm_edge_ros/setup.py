"""ament_python package; also installs with plain `pip install` wherever rclpy imports."""

from glob import glob

from setuptools import setup

PACKAGE = "rlfm_edge_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[PACKAGE],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools", "rlfm_edge"],
    zip_safe=True,
    maintainer="rlfm-edge developers",
    maintainer_email="rlfm-edge@example.org",
    description="Lifecycle ROS 2 node running the rlfm-edge online agent, and a serial bridge",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "rlfm_agent_node = rlfm_edge_ros.agent_node:main",
            "rlfm_serial_bridge = rlfm_edge_ros.serial_bridge:main",
            "rlfm_agent_ctl = rlfm_edge_ros.client:main",
        ],
    },
)
