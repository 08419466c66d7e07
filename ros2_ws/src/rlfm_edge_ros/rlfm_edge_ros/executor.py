"""The executor the agent node and the serial bridge spin on.

rclpy's EventsExecutor (``rclpy.experimental``, Jazzy and later) dispatches callbacks from a
C++ event queue; SingleThreadedExecutor rebuilds a wait set in Python on every spin, which
on a 2-core machine is most of an observation's trip through the node (BENCHMARKS.md, "ROS 2
node latency"). Humble has no EventsExecutor: there the single-threaded one is used. Both
nodes call ``spin_once`` in a loop: in rclpy 7.1.6, ``EventsExecutor.spin()`` answered no
message, took a whole core and ignored SIGINT and SIGTERM.
"""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor


def executor_class() -> type:
    """EventsExecutor where the installed rclpy has it, else SingleThreadedExecutor."""
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:  # Humble
        return SingleThreadedExecutor
    return EventsExecutor


def make_executor(context=None):
    """An executor of ``executor_class()`` for ``context``."""
    return executor_class()(context=context)


def spin(node, done: Callable[[], bool] = lambda: False) -> None:
    """Run ``node``'s callbacks until ``done()``, Ctrl-C or SIGTERM (``spin_once`` in a loop:
    see the module docstring). The caller releases the node and shuts rclpy down."""
    executor = make_executor()
    executor.add_node(node)
    try:
        while rclpy.ok() and not done():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.remove_node(node)
