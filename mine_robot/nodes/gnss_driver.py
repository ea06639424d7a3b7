"""``gnss_driver``: NMEA 0183 receiver on a serial port -> ``gnss/fix`` + ``gnss/time_reference``.

GGA, RMC, GST, VTG and HDT are parsed with pynmea2 (``mine_robot.drivers.protocols.gnss``; other
well-formed sentences such as GSV are skipped and counted, not treated as bad frames);
``mine_robot.drivers.gnss_fix`` maps the fix quality honestly onto NavSatStatus and builds the
covariance from GST (or from HDOP, marked APPROXIMATED). One NavSatFix per GGA, stamped with the
arrival time of the sentence; one TimeReference per valid RMC. The GGA fix quality that NavSatStatus
cannot express (RTK fixed vs float, DGPS) is in the diagnostics as ``fix_quality``.

Plain Node: the port is opened in the constructor and retried with backoff; ``close()`` releases it.
"""

from __future__ import annotations

import sys

from rclpy.node import Node
from sensor_msgs.msg import NavSatFix, NavSatStatus, TimeReference

from mine_robot.drivers.device import WARN, DeviceStream
from mine_robot.drivers.gnss_fix import Fix, GnssConfig, GnssFixBuilder, TimeRef
from mine_robot.drivers.protocols import ProtocolError, gnss
from mine_robot.nodes._drivers import StampMapper, declare_serial, log_connection
from mine_robot.ros import qos
from mine_robot.ros.conversions import sec_to_stamp
from mine_robot.ros.diagnostics import Diagnostics
from mine_robot.ros.params import ConfigError, declare
from mine_robot.ros.runner import run_node


class GnssDriverNode(Node):
    def __init__(self, **kwargs):
        super().__init__('gnss_driver', **kwargs)
        config = declare_serial(self)
        self.frame_id = declare(self, 'frame_id', 'gnss_antenna', 'frame of the antenna phase centre')
        uere = {q: declare(self, f'uere.{q.lower()}', d, f'UERE (m) for {q} fixes, HDOP fallback',
                           range=(0.001, 100.0))
                for q, d in GnssConfig().uere.items()}
        try:
            gnss_config = GnssConfig(
                gst_max_age=declare(self, 'gst_max_age', 1.5, 's a GST may lag the GGA it applies to',
                                    range=(0.01, 60.0)),
                uere=uere,
                vertical_factor=declare(self, 'vertical_factor', 2.0, 'sigma_v / sigma_h, HDOP fallback',
                                        range=(0.1, 10.0)))
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        self.builder = GnssFixBuilder(gnss_config)
        self.fix_pub = self.create_publisher(NavSatFix, 'gnss/fix', qos.SENSOR)
        self.time_pub = self.create_publisher(TimeReference, 'gnss/time_reference', qos.SENSOR)
        self.diag = Diagnostics(self, hardware_id=config.port)
        self.fixes = 0
        self.other_sentences = 0
        self.stamp = StampMapper(self)
        self.stream = DeviceStream('gnss', config, gnss, self._on_message, on_error=self._on_bad,
                                   on_connection=self._on_connection)
        self.create_timer(1.0, self._publish_health)
        self.stream.start()

    def _on_message(self, msg, t: float) -> None:
        if isinstance(msg, gnss.OtherSentence):
            self.other_sentences += 1
            return
        for out in self.builder.update(msg, t):
            if isinstance(out, Fix):
                self.fix_pub.publish(self._fix_msg(out))
                self.fixes += 1
            elif isinstance(out, TimeRef):
                ref = TimeReference(time_ref=sec_to_stamp(out.utc), source='gnss')
                ref.header.stamp = self.stamp(out.t)
                ref.header.frame_id = self.frame_id
                self.time_pub.publish(ref)

    def _fix_msg(self, fix: Fix) -> NavSatFix:
        msg = NavSatFix()
        msg.header.stamp = self.stamp(fix.t)
        msg.header.frame_id = self.frame_id
        msg.status = NavSatStatus(status=fix.status, service=fix.service)
        msg.latitude, msg.longitude, msg.altitude = fix.latitude, fix.longitude, fix.altitude
        msg.position_covariance = list(fix.covariance)
        msg.position_covariance_type = fix.covariance_type
        return msg

    def _on_bad(self, exc: ProtocolError, t: float) -> None:
        self.get_logger().warning(f'bad NMEA sentence skipped: {exc}', throttle_duration_sec=2.0)

    def _on_connection(self, connected: bool, reason: str) -> None:
        log_connection(self, connected, reason)

    def _publish_health(self) -> None:
        h = self.stream.health()
        quality = self.builder.last_quality
        values = dict(h.values, fixes=self.fixes, other_sentences=self.other_sentences,
                      fix_quality=quality.name if quality is not None else 'n/a',
                      heading_deg=self.builder.heading_deg, speed_mps=self.builder.speed_mps)
        level, message = h.level, h.message
        if level < WARN and quality is not None and quality.name in ('INVALID', 'ESTIMATED', 'MANUAL'):
            level, message = WARN, f'{message}; no satellite fix ({quality.name})'
        self.diag.update(level, message, values, force=True)

    def close(self) -> None:
        self.stream.close()


def main(args=None):
    sys.exit(run_node(GnssDriverNode, args))
