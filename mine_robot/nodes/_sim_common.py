"""Message conversions shared by the simulator nodes (sim_world, sim_sensors)."""

from __future__ import annotations

import math

from geometry_msgs.msg import Quaternion
from nav_msgs.msg import Odometry
import numpy as np
from sensor_msgs.msg import CameraInfo, Image, Imu, NavSatFix, NavSatStatus
from std_msgs.msg import Header
from transforms3d.euler import euler2quat, quat2euler

from mine_robot.ros.conversions import sec_to_stamp
from mine_robot.sim.sensors import CameraIntrinsics, GnssFix, ImuSample

# same mapping as the localization stack (mine_robot.control.stack.MODE_STATUS)
GNSS_STATUS = {'rtk': NavSatStatus.STATUS_GBAS_FIX, 'float': NavSatStatus.STATUS_GBAS_FIX,
               'single': NavSatStatus.STATUS_FIX, 'none': NavSatStatus.STATUS_NO_FIX}
GNSS_SERVICE = NavSatStatus.SERVICE_GPS | NavSatStatus.SERVICE_GLONASS | NavSatStatus.SERVICE_GALILEO


def yaw_quaternion(yaw: float) -> Quaternion:
    w, x, y, z = euler2quat(0.0, 0.0, yaw)
    return Quaternion(x=float(x), y=float(y), z=float(z), w=float(w))


def quaternion_yaw(q: Quaternion) -> float:
    return float(quat2euler((q.w, q.x, q.y, q.z))[2])


def header(t: float, frame_id: str) -> Header:
    return Header(stamp=sec_to_stamp(t), frame_id=frame_id)


def odometry(t: float, frame: str, child: str, x: float, y: float, yaw: float, v: float, w: float,
             pose_sigma: tuple[float, float] = (0.0, 0.0), twist_sigma: tuple[float, float] = (0.0, 0.0)
             ) -> Odometry:
    msg = Odometry(header=header(t, frame), child_frame_id=child)
    msg.pose.pose.position.x, msg.pose.pose.position.y = float(x), float(y)
    msg.pose.pose.orientation = yaw_quaternion(yaw)
    msg.twist.twist.linear.x, msg.twist.twist.angular.z = float(v), float(w)
    ps, pa = pose_sigma
    ts, ta = twist_sigma
    big = 1e6  # unobserved axes (z, roll, pitch) of a planar robot
    msg.pose.covariance = np.diag([ps ** 2, ps ** 2, big, big, big, pa ** 2]).ravel().tolist()
    msg.twist.covariance = np.diag([ts ** 2, ts ** 2, big, big, big, ta ** 2]).ravel().tolist()
    return msg


def navsat_fix(fix: GnssFix, frame_id: str) -> NavSatFix:
    msg = NavSatFix(header=header(fix.t, frame_id))
    msg.status = NavSatStatus(status=GNSS_STATUS[fix.mode], service=GNSS_SERVICE)
    if fix.valid:
        msg.latitude, msg.longitude, msg.altitude = fix.lat, fix.lon, fix.alt
        msg.position_covariance = [fix.sigma_h ** 2, 0.0, 0.0, 0.0, fix.sigma_h ** 2, 0.0,
                                   0.0, 0.0, fix.sigma_v ** 2]
        msg.position_covariance_type = NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
    else:
        msg.latitude = msg.longitude = msg.altitude = math.nan
        msg.position_covariance_type = NavSatFix.COVARIANCE_TYPE_UNKNOWN
    return msg


def imu(sample: ImuSample, frame_id: str) -> Imu:
    msg = Imu(header=header(sample.t, frame_id))
    msg.orientation = yaw_quaternion(sample.yaw)
    msg.orientation_covariance = [0.01 ** 2, 0.0, 0.0, 0.0, 0.01 ** 2, 0.0, 0.0, 0.0, sample.yaw_sigma ** 2]
    msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = map(float, sample.gyro)
    g2, a2 = sample.gyro_sigma ** 2, sample.accel_sigma ** 2
    msg.angular_velocity_covariance = [g2, 0.0, 0.0, 0.0, g2, 0.0, 0.0, 0.0, g2]
    ax, ay, az = map(float, sample.accel)
    msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = ax, ay, az
    msg.linear_acceleration_covariance = [a2, 0.0, 0.0, 0.0, a2, 0.0, 0.0, 0.0, a2]
    return msg


def image(t: float, frame_id: str, array: np.ndarray, encoding: str) -> Image:
    array = np.ascontiguousarray(array)
    height, width = array.shape[:2]
    msg = Image(header=header(t, frame_id), height=height, width=width, encoding=encoding,
                is_bigendian=0, step=int(array.strides[0]))
    msg.data = array.tobytes()
    return msg


def camera_info(t: float, frame_id: str, k: CameraIntrinsics) -> CameraInfo:
    msg = CameraInfo(header=header(t, frame_id), width=k.width, height=k.height,
                     distortion_model='plumb_bob')
    msg.d = [0.0] * 5
    msg.k = k.matrix().ravel().tolist()
    msg.r = np.eye(3).ravel().tolist()
    msg.p = [k.fx, 0.0, k.cx, 0.0, 0.0, k.fy, k.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg
