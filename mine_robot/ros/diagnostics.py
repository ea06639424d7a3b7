"""Publish a node's health on ``/diagnostics`` (diagnostic_msgs/DiagnosticArray).

Pure layers report health as plain data (level, message, key/values); this turns it into the
message, rate-limited so a fast callback can call ``update`` every time.
"""

from __future__ import annotations

from collections.abc import Mapping

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK, WARN, ERROR, STALE = (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR,
                          DiagnosticStatus.STALE)


class Diagnostics:
    """One diagnostic status (``name``) published by ``node`` at most every ``period`` s."""

    def __init__(self, node, name: str | None = None, hardware_id: str = '', period: float = 1.0):
        self._node = node
        self._name = name or f'{node.get_namespace().rstrip("/")}/{node.get_name()}'.lstrip('/')
        self._hardware_id = hardware_id
        self._period = period
        self._last = None
        self._pub = node.create_publisher(DiagnosticArray, '/diagnostics', 10)

    def update(self, level: bytes | int, message: str, values: Mapping[str, object] | None = None,
               force: bool = False) -> None:
        now = self._node.get_clock().now()
        if not force and self._last is not None and (now - self._last).nanoseconds < self._period * 1e9:
            return
        self._last = now
        status = DiagnosticStatus(level=level if isinstance(level, bytes) else bytes([level]),
                                  name=self._name, message=message,
                                  hardware_id=self._hardware_id)
        status.values = [KeyValue(key=str(k), value=str(v)) for k, v in (values or {}).items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = now.to_msg()
        self._pub.publish(array)
