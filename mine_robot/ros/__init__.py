"""Shared rclpy plumbing for the node layer: QoS profiles, parameter declaration, message
conversions, the process runner and test helpers. Only ``mine_robot.nodes``, ``mine_robot.ros``
and the graph-starting CLI import rclpy."""
