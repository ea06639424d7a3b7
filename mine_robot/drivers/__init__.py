"""Device drivers, pure layer: serial transport, framing, one protocol module per device.

Nothing here imports rclpy; the nodes in ``mine_robot/nodes/*_driver.py`` wire these to ROS.
"""
