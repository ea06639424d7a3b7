"""Driving: localization EKF, path follower, twist arbitration, safety rules, teleop mapping.

Everything here is plain Python (numpy, shapely); the rclpy adapters live in ``mine_robot.nodes``.
"""
