"""Message helpers shared by the driving nodes (not an executable: leading underscore)."""

from __future__ import annotations

import math

from geometry_msgs.msg import Quaternion, Twist
from nav_msgs.msg import Odometry
import numpy as np

from mine_robot.control.safety import PoseSample
from mine_robot.ros.conversions import stamp_to_sec


def yaw_to_quaternion(yaw: float) -> Quaternion:
    return Quaternion(x=0.0, y=0.0, z=math.sin(yaw / 2.0), w=math.cos(yaw / 2.0))


def quaternion_to_yaw(q: Quaternion) -> float:
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def twist(v: float, w: float) -> Twist:
    msg = Twist()
    msg.linear.x = float(v)
    msg.angular.z = float(w)
    return msg


def odometry_to_pose(msg: Odometry) -> PoseSample:
    """Pose, body speeds and 1-sigma xy uncertainty from an Odometry message."""
    cov = np.asarray(msg.pose.covariance, dtype=float).reshape(6, 6)[:2, :2]
    sigma = math.sqrt(max(float(np.linalg.eigvalsh(cov).max()), 0.0))
    p = msg.pose.pose.position
    return PoseSample(t=stamp_to_sec(msg.header.stamp), x=p.x, y=p.y,
                      yaw=quaternion_to_yaw(msg.pose.pose.orientation),
                      v=msg.twist.twist.linear.x, w=msg.twist.twist.angular.z, sigma=sigma)


def load_robot_param(path: str):
    from mine_robot.robot import load_robot
    return load_robot(path or None)
