"""ROS 2 adapter for rlfm-edge: the lifecycle agent node and a serial bridge for microcontroller robots."""
