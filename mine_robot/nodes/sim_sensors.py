"""``sim_sensors``: metal detector, GPR and camera computed from the scenario's ground truth and the
robot's true pose.

The pose comes from ``pose_topic`` (nav_msgs/Odometry in ``map``): ``sim/ground_truth`` from
``sim_world``, or the pose Gazebo reports through ros_gz_bridge (set ``camera_rate: 0`` there,
Gazebo renders the camera). Samples are due on the sim-time stamps of the poses: every sample
falling between two poses is computed at its own time from the linearly interpolated pose, so a
25 Hz pose stream gives 50 Hz coil readings and the output follows sim time whatever the
real-time factor. Publishes

- ``metal_detector/signal`` PointCloud2, one point per coil, fields ``x y z`` (coil centre in
  ``md_array``), ``signal`` (detector units, see ``mine_robot.sim.sensors``) and ``coil`` (uint32);
- ``gpr/trace`` Image ``32FC1``, ``samples`` × antennas (column i = antenna i of
  ``gpr.channel_y``), one per scan, frame ``gpr_antenna`` (time window ``gpr.time_window_ns``);
- ``camera/image_raw`` Image ``bgr8`` and ``camera/camera_info``, frame ``camera_optical``.

With ``virtual_devices`` the metal detector and GPR are also pty serial devices speaking the
device protocols (``mine_robot.sim.virtual_devices``), for the real drivers.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
import sys

from nav_msgs.msg import Odometry
import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from mine_robot.nodes import _sim_common as conv
from mine_robot.robot import RobotConfigError, load_robot
from mine_robot.ros import qos
from mine_robot.ros.conversions import fields_to_cloud, sec_to_stamp, stamp_to_sec
from mine_robot.ros.diagnostics import OK, WARN, Diagnostics
from mine_robot.ros.params import ConfigError, declare
from mine_robot.sim.scenario import ScenarioError, load_scenario
from mine_robot.sim.sensors import GprConfig, camera_intrinsics
from mine_robot.sim.world import SensorSuite, SimConfig

SENSORS = ('md', 'gpr', 'camera')
MAX_GAP_S = 1.0   # a pose gap longer than this restarts the sample schedules (no back-filling)


def interpolate(t0: float, pose0, t1: float, pose1, t: float) -> tuple[float, float, float]:
    """Pose at ``t`` between two timed poses (linear; yaw along the shorter arc)."""
    if t1 <= t0:
        return pose1
    a = min(max((t - t0) / (t1 - t0), 0.0), 1.0)
    dyaw = math.remainder(pose1[2] - pose0[2], math.tau)
    return (pose0[0] + a * (pose1[0] - pose0[0]), pose0[1] + a * (pose1[1] - pose0[1]),
            math.remainder(pose0[2] + a * dyaw, math.tau))


@dataclass(frozen=True)
class SimSensorsSettings:
    scenario: str
    seed: int
    robot_config: str
    pose_topic: str
    virtual_devices: bool
    publish_direct: bool
    device_dir: str
    sim: SimConfig


def declare_settings(node: Node) -> SimSensorsSettings:
    rates = {name: declare(node, name, default, f'{what} rate (Hz, sim time; 0 = off)', range=(0.0, 1000.0))
             for name, default, what in (('md_rate', 50.0, 'metal detector'), ('gpr_rate', 25.0, 'GPR trace'),
                                         ('camera_rate', 1.0, 'camera image'))}
    g = GprConfig()
    gpr = GprConfig(
        samples=declare(node, 'gpr.samples', g.samples, 'samples per GPR trace', range=(16, 8192)),
        time_window_ns=declare(node, 'gpr.time_window_ns', g.time_window_ns, 'trace time window (ns)',
                               range=(1.0, 500.0)),
        t0_ns=declare(node, 'gpr.t0_ns', g.t0_ns, 'transmit time zero within the window (ns)',
                      range=(0.0, 100.0)),
        centre_frequency_ghz=declare(node, 'gpr.centre_frequency_ghz', g.centre_frequency_ghz,
                                     'Ricker wavelet peak frequency (GHz)', range=(0.05, 10.0)))
    try:
        sim = SimConfig(gpr=gpr, **rates)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return SimSensorsSettings(
        scenario=declare(node, 'scenario', 'default', 'scenario: packaged name or YAML path',
                         read_only=True),
        seed=declare(node, 'seed', 0, 'random seed', range=(0, 2 ** 31 - 1), read_only=True),
        robot_config=declare(node, 'robot_config', '', 'robot.yaml (empty: package default)',
                             read_only=True),
        pose_topic=declare(node, 'pose_topic', 'sim/ground_truth',
                           'true robot pose (nav_msgs/Odometry in map)', read_only=True),
        virtual_devices=declare(node, 'virtual_devices', False, 'metal detector and GPR as pty devices',
                                read_only=True),
        publish_direct=declare(node, 'publish_direct', True,
                               'also publish the metal detector and GPR data directly (false when the '
                               'real drivers read the virtual devices and publish the same topics)',
                               read_only=True),
        device_dir=declare(node, 'device_dir', '/tmp/mine_robot_sim', 'where the device links go',
                           read_only=True),
        sim=sim)


class SimSensorsNode(Node):
    def __init__(self, **kwargs):
        super().__init__('sim_sensors', **kwargs)
        self.settings = s = declare_settings(self)
        try:
            self.scenario = load_scenario(s.scenario)
            self.robot = load_robot(s.robot_config or None)
            self.suite = SensorSuite.seeded(self.scenario, self.robot, s.seed, s.sim)
        except (ScenarioError, RobotConfigError) as exc:
            raise ConfigError(str(exc)) from exc
        rates = {'md': s.sim.md_rate, 'gpr': s.sim.gpr_rate, 'camera': s.sim.camera_rate}
        self.period = {k: 1.0 / r for k, r in rates.items() if r > 0}
        self.next_due: dict[str, float] = {}
        self.last_t = -math.inf
        self.last_pose = (0.0, 0.0, 0.0)
        md = self.robot.metal_detector
        n = len(md.coil_y)
        coil_fields = {'x': np.zeros(n), 'y': np.array(md.coil_y, dtype=float), 'z': np.zeros(n),
                       'signal': np.zeros(n), 'coil': np.arange(n)}
        # one packed cloud reused for every sample: only the signal column and the stamp change
        template = fields_to_cloud(coil_fields, md.frame, 0.0, dtypes={'coil': np.uint32})
        self._md_points = np.frombuffer(bytes(template.data), dtype=np.dtype(
            [('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('signal', '<f4'), ('coil', '<u4')])).copy()
        self._md_template = template
        self.intrinsics = camera_intrinsics(self.robot)
        self.md_pub = self.create_publisher(PointCloud2, 'metal_detector/signal', qos.SENSOR)
        self.gpr_pub = self.create_publisher(Image, 'gpr/trace', qos.SENSOR)
        self.image_pub = self.create_publisher(Image, 'camera/image_raw', qos.SENSOR)
        self.info_pub = self.create_publisher(CameraInfo, 'camera/camera_info', qos.SENSOR)
        self.counts = dict.fromkeys(SENSORS, 0)
        self.diag = Diagnostics(self, hardware_id='builtin-sim')
        self.devices = None
        if s.virtual_devices:
            from mine_robot.sim.virtual_devices import SensorDevices
            self.devices = SensorDevices(s.device_dir, s.sim.gpr, s.sim.md_rate)
            self.get_logger().info(f'virtual devices: {self.devices.links()}')
        self.create_subscription(Odometry, s.pose_topic, self._on_pose, qos.RELIABLE)

    def _on_pose(self, msg: Odometry) -> None:
        if not self.context.ok():      # shutting down: publishers are already invalid
            return
        t = stamp_to_sec(msg.header.stamp)
        p = msg.pose.pose
        pose = (float(p.position.x), float(p.position.y), conv.quaternion_yaw(p.orientation))
        if not all(math.isfinite(v) for v in pose):
            self.get_logger().warn('ignoring a non-finite pose', throttle_duration_sec=5.0)
            return
        if t < self.last_t or t - self.last_t > MAX_GAP_S:   # first pose, restart or a long gap
            self.next_due.clear()
            self.last_pose = pose
            self.last_t = t
        for name, period in self.period.items():
            due = self.next_due.setdefault(name, t)
            times = []
            while due <= t + 1e-9:
                times.append(due)
                due += period
            self.next_due[name] = due
            if times:
                self._publish(name, times, [interpolate(self.last_t, self.last_pose, t, pose, tt)
                                            for tt in times])
        self.last_t, self.last_pose = t, pose
        self._report()

    def _publish(self, name: str, times: list[float], poses: list) -> None:
        self.counts[name] += len(times)
        if name == 'md':
            cloud = self._md_template
            for sample in self.suite.md_batch(times, poses):
                if self.devices is not None:
                    self.devices.metal_detector(sample.t, sample.signal)
                if not self.settings.publish_direct:
                    continue
                self._md_points['signal'] = sample.signal
                cloud.data = self._md_points.tobytes()
                cloud.header.stamp = sec_to_stamp(sample.t)
                self.md_pub.publish(cloud)
        elif name == 'gpr':
            for scan in self.suite.gpr_batch(times, poses):
                n = len(scan.trace)
                if self.devices is not None:
                    for i, trace in enumerate(scan.trace):       # one v2 frame per antenna
                        self.devices.gpr(scan.t, trace, i if n > 1 else None, n)
                if not self.settings.publish_direct:
                    continue
                # samples x antennas (column i = antenna i of gpr.channel_y)
                self.gpr_pub.publish(conv.image(scan.t, self.robot.gpr.frame,
                                                np.ascontiguousarray(scan.trace.T), '32FC1'))
        else:
            t, pose = times[-1], poses[-1]     # a late camera frame is dropped, not queued
            frame = self.suite.camera_frame(t, pose)
            optical = self.robot.camera.optical_frame
            self.image_pub.publish(conv.image(t, optical, frame.image, 'bgr8'))
            self.info_pub.publish(conv.camera_info(t, optical, self.intrinsics))

    def _report(self) -> None:
        level = OK if self.counts['md'] or 'md' not in self.period else WARN
        counts = {f'{k}_samples': v for k, v in self.counts.items()}
        self.diag.update(level, 'publishing' if level == OK else 'no pose yet',
                         {'sim_time': round(self.last_t, 2), **counts})

    def close(self) -> None:
        if self.devices is not None:
            self.devices.close()


def main(args=None):
    from mine_robot.ros.runner import run_node
    sys.exit(run_node(SimSensorsNode, args))


if __name__ == '__main__':
    main()
