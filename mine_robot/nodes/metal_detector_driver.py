"""``metal_detector_driver``: serial metal-detector array -> ``metal_detector/signal``.

Reads ``$MDS`` sample lines (docs/protocols.md) on a reader thread and publishes each sample as a
PointCloud2 with one point per coil (fields ``x y z signal coil``, coil centres in ``frame_id``,
from config/robot.yaml), stamped with the sample time: the device clock mapped onto this host's
clock (``stamp_source: device``, removes USB/serial buffering jitter), the arrival time, or the
device time as it is (``device_absolute``: a device on the ROS clock, e.g. the simulator's).
``~/ground_balance`` (std_srvs/Trigger) sends a ground-balance command and answers when the device
acknowledges it (or after ``ack_timeout`` x (1 + ``retries``)). Health on ``/diagnostics``.

A plain Node (not lifecycle): the port is opened in the constructor and retried with backoff
forever, closed in ``close()``; there is no ros2 lifecycle tooling in pip mode to drive transitions.
"""

from __future__ import annotations

import functools
import sys
import time

import numpy as np
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger

from mine_robot.drivers.command import CommandClient
from mine_robot.drivers.device import DeviceStream
from mine_robot.drivers.protocols import ProtocolError
from mine_robot.drivers.protocols import metal_detector as md
from mine_robot.nodes._drivers import DeviceStamper, declare_serial, log_connection, wait_future
from mine_robot.robot import RobotConfigError, load_robot
from mine_robot.ros import qos
from mine_robot.ros.conversions import fields_to_cloud
from mine_robot.ros.diagnostics import Diagnostics
from mine_robot.ros.params import ConfigError, declare
from mine_robot.ros.runner import run_node


class MetalDetectorDriverNode(Node):
    def __init__(self, **kwargs):
        super().__init__('metal_detector_driver', **kwargs)
        config = declare_serial(self)
        frame_id = declare(self, 'frame_id', 'md_array', 'frame of the coil positions in the cloud')
        robot_config = declare(self, 'robot_config', '', 'robot.yaml with the coil layout (default: package)')
        self.scale = declare(self, 'signal_scale', 1.0, 'published signal = device value x scale',
                             range=(-1e6, 1e6))
        sensitivity = declare(self, 'sensitivity', -1, 'sensitivity (%) sent on every connect; -1 = leave '
                              'the device setting', range=(-1, 100))
        ack_timeout = declare(self, 'ack_timeout', 0.3, 's to wait for a command acknowledgement',
                              range=(0.01, 10.0))
        retries = declare(self, 'retries', 2, 'extra attempts after an unacknowledged command', range=(0, 10))
        try:
            geometry = load_robot(robot_config or None).metal_detector
        except (RobotConfigError, OSError) as exc:
            raise ConfigError(str(exc)) from exc
        self.n_coils = len(geometry.coil_y)
        self._template = fields_to_cloud(
            {'x': np.zeros(self.n_coils), 'y': np.array(geometry.coil_y), 'z': np.zeros(self.n_coils),
             'signal': np.zeros(self.n_coils), 'coil': np.arange(self.n_coils)}, frame_id, 0.0)
        self._points = np.frombuffer(bytes(self._template.data), np.float32).reshape(self.n_coils, 5).copy()
        self.sensitivity = sensitivity
        self.stamp = DeviceStamper(self)
        self.pub = self.create_publisher(PointCloud2, 'metal_detector/signal', qos.SENSOR)
        self.diag = Diagnostics(self, hardware_id=config.port)
        self.stream = DeviceStream('metal_detector', config, md, self._on_message, on_error=self._on_bad,
                                   on_connection=self._on_connection,
                                   seq_of=lambda m: m.seq if isinstance(m, md.MdSample) else None,
                                   parser=functools.partial(md.parse, coils=self.n_coils))
        self.commands = CommandClient(self.stream.write, ack_timeout, retries)
        # its own group: the awaiting coroutine must not hold the group the retry timer runs in
        self.create_service(Trigger, '~/ground_balance', self._ground_balance,
                            callback_group=ReentrantCallbackGroup())
        self.create_timer(0.05, lambda: self.commands.poll(time.monotonic()))
        self.create_timer(1.0, self._publish_health)
        self.stream.start()

    # reader thread -------------------------------------------------------------
    def _on_message(self, msg, t: float) -> None:
        if isinstance(msg, md.MdAck):
            self.commands.on_ack(msg.cmd_id, msg.ok, time.monotonic(), msg.reason)
            return
        cloud = self._template
        self._points[:, 3] = msg.values
        if self.scale != 1.0:
            self._points[:, 3] *= self.scale
        cloud.data = self._points.tobytes()
        cloud.header.stamp = self.stamp(msg.device_time, t)
        self.pub.publish(cloud)

    def _on_bad(self, exc: ProtocolError, t: float) -> None:
        self.get_logger().warning(f'bad frame skipped: {exc}', throttle_duration_sec=2.0)

    def _on_connection(self, connected: bool, reason: str) -> None:
        log_connection(self, connected, reason)
        self.stamp.reset()
        if connected and self.sensitivity >= 0:
            cmd_id = self.commands.next_id()
            self.commands.submit(cmd_id, md.encode_sensitivity(cmd_id, self.sensitivity), time.monotonic())

    # executor ------------------------------------------------------------------
    async def _ground_balance(self, request, response):
        cmd_id = self.commands.next_id()
        result = await wait_future(self, self.commands.submit(cmd_id, md.encode_ground_balance(cmd_id),
                                                         time.monotonic()))
        response.success = result.ok
        response.message = (f'ground balance acknowledged (command {cmd_id}, {result.attempts} attempt(s))'
                            if result.ok else f'ground balance failed: {result.detail}')
        return response

    def _publish_health(self) -> None:
        h = self.stream.health()
        values = dict(h.values, commands_pending=self.commands.pending, commands_failed=self.commands.failed,
                      clock_resets=self.stamp.resets)
        self.diag.update(h.level, h.message, values, force=True)

    def close(self) -> None:
        self.commands.cancel_all('driver shutting down', time.monotonic())
        self.stream.close()


def main(args=None):
    sys.exit(run_node(MetalDetectorDriverNode, args))
