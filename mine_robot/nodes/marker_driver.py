"""``marker_driver``: paint sprayer / flag dropper on a serial port, command/acknowledge protocol.

Interface (docs/interfaces.md, docs/protocols.md):

- ``marker/command`` (std_msgs/String JSON, RELIABLE), e.g. from the ``marking`` node:
  ``{"cmd_id": 12, "name": "FIRE", "target": "T7", "duration_ms": 400, "slide_mm": -250}``;
  also ``{"cmd_id": 13, "name": "CLEAR"}``, ``"STATUS"``, ``{"name": "LEVEL", "level": 100}``.
  A repeated ``cmd_id`` is a retry: it goes to the device with the same id, which answers it
  without marking twice.
- ``marker/status`` (std_msgs/String JSON, RELIABLE): ``{"type": "ack", "cmd_id", "ok", "error",
  "code", "attempts"}`` for every command (``ok: false`` with ``no acknowledgement after N attempts``
  when the device stays silent through ``ack_timeout`` x (1 + ``retries``)); ``{"type": "done",
  "cmd_id", "target", "actual_ms", "slide_mm"}`` when a FIRE finished (measured slide);
  ``{"type": "status", "state", "level", "fault", "fires", "connected"}``; ``{"type": "fault",
  "code", "fault", "text"}``; ``{"type": "error", "error"}`` for a command that could not be read.
- ``~/fire`` (std_srvs/Trigger): operator test fire with ``test_duration_ms`` at ``test_slide_mm``;
  answers once the device acknowledged (or failed) — the coroutine never blocks an executor thread.
- ``~/clear_fault`` (std_srvs/Trigger).

Plain Node: the port is opened in the constructor and retried with backoff; ``close()`` releases it.
"""

from __future__ import annotations

import json
import re
import sys
import time

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import Trigger

from mine_robot.drivers.command import CommandClient, CommandResult
from mine_robot.drivers.device import ERROR, WARN, DeviceStream
from mine_robot.drivers.protocols import ProtocolError
from mine_robot.drivers.protocols import marker as mk
from mine_robot.nodes._drivers import declare_serial, log_connection, wait_future
from mine_robot.ros import qos
from mine_robot.ros.diagnostics import Diagnostics
from mine_robot.ros.params import declare
from mine_robot.ros.runner import run_node


class MarkerDriverNode(Node):
    def __init__(self, **kwargs):
        super().__init__('marker_driver', **kwargs)
        config = declare_serial(self)
        ack_timeout = declare(self, 'ack_timeout', 0.3, 's to wait for an acknowledgement',
                              range=(0.01, 10.0))
        retries = declare(self, 'retries', 2, 'extra sends of an unacknowledged command', range=(0, 10))
        self.test_duration = declare(self, 'test_duration_ms', 200, '~/fire spray duration (ms)',
                                     range=mk.DURATION_RANGE_MS)
        self.test_slide = declare(self, 'test_slide_mm', 0, '~/fire slide position (mm)',
                                  range=mk.SLIDE_RANGE_MM)
        self.low_level = declare(self, 'low_level_warn', 15, 'warn in diagnostics below this level (%)',
                                 range=(0, 100))
        self.status_pub = self.create_publisher(String, 'marker/status', qos.RELIABLE)
        self.diag = Diagnostics(self, hardware_id=config.port)
        self.stream = DeviceStream('marker', config, mk, self._on_message, on_error=self._on_bad,
                                   on_connection=self._on_connection)
        self.commands = CommandClient(self.stream.write, ack_timeout, retries)
        self.device_status: mk.MarkerStatus | None = None
        self.last_fault: mk.MarkerFault | None = None
        self._host_ids: dict[int, int] = {}       # device cmd_id -> host cmd_id (recent FIREs)
        self.create_subscription(String, 'marker/command', self._on_command, qos.RELIABLE)
        group = ReentrantCallbackGroup()           # awaiting services must not hold the timers' group
        self.create_service(Trigger, '~/fire', self._fire, callback_group=group)
        self.create_service(Trigger, '~/clear_fault', self._clear_fault, callback_group=group)
        self.create_timer(0.02, lambda: self.commands.poll(time.monotonic()))
        self.create_timer(1.0, self._publish_health)
        self.stream.start()

    # commands ------------------------------------------------------------------
    def _on_command(self, msg: String) -> None:
        try:
            request = json.loads(msg.data)
            host_id = int(request['cmd_id'])
            command = _command(request, host_id % (mk.MAX_CMD_ID + 1))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self._publish({'type': 'error', 'error': f'bad marker command {msg.data[:80]!r}: {exc}'})
            self.get_logger().error(f'bad marker command ignored: {exc}', throttle_duration_sec=2.0)
            return
        self.submit(command, host_id)

    def submit(self, command: mk.MarkerCommand, host_id: int):
        """Send ``command``; its outcome is published as an ack on marker/status. None if in flight."""
        self._host_ids[command.cmd_id] = host_id
        while len(self._host_ids) > 64:
            self._host_ids.pop(next(iter(self._host_ids)))
        try:
            return self.commands.submit(command.cmd_id, mk.encode_command(command), time.monotonic(),
                                        on_done=lambda result: self._publish_ack(result, host_id))
        except ValueError:      # the same id is already in flight: this is a caller's retry
            self.get_logger().info(f'command {host_id} already in flight; waiting for its ack')
            return None

    def _publish_ack(self, result: CommandResult, host_id: int) -> None:
        self._publish({'type': 'ack', 'cmd_id': host_id, 'ok': result.ok, 'error': result.detail,
                       'code': result.code, 'attempts': result.attempts})
        if not result.ok:
            self.get_logger().error(f'marker command {host_id} failed: {result.detail}')

    async def _fire(self, request, response):
        cmd_id = self.commands.next_id()
        command = mk.MarkerCommand(cmd_id, 'FIRE', target_id='manual', duration_ms=self.test_duration,
                                   slide_mm=self.test_slide)
        future = self.submit(command, cmd_id)
        return await self._answer(future, response, f'test fire (command {cmd_id})')

    async def _clear_fault(self, request, response):
        cmd_id = self.commands.next_id()
        return await self._answer(self.submit(mk.MarkerCommand(cmd_id, 'CLEAR'), cmd_id), response,
                                  f'clear fault (command {cmd_id})')

    async def _answer(self, future, response, what: str):
        if future is None:
            response.success, response.message = False, f'{what}: command id already in flight'
            return response
        result = await wait_future(self, future)
        response.success = result.ok
        response.message = (f'{what} acknowledged after {result.attempts} attempt(s)' if result.ok
                            else f'{what} failed: {result.detail}')
        return response

    # device messages (reader thread) ------------------------------------------------
    def _on_message(self, msg, t: float) -> None:
        if isinstance(msg, mk.MarkerAck):
            self.commands.on_ack(msg.cmd_id, msg.ok, time.monotonic(), msg.text, msg.code)
        elif isinstance(msg, mk.MarkerDone):
            self._publish({'type': 'done', 'cmd_id': self._host_ids.get(msg.cmd_id, msg.cmd_id),
                           'target': msg.target_id, 'actual_ms': msg.actual_ms, 'slide_mm': msg.slide_mm})
        elif isinstance(msg, mk.MarkerStatus):
            changed = self.device_status != msg
            self.device_status = msg
            if changed:
                self._publish_status()
        elif isinstance(msg, mk.MarkerFault):
            self.last_fault = msg
            name = mk.Fault(msg.code).name if msg.code in mk.Fault._value2member_map_ else 'UNKNOWN'
            self._publish({'type': 'fault', 'code': msg.code, 'fault': name, 'text': msg.text})
            self.get_logger().error(f'marker fault {msg.code} ({name}): {msg.text}')

    def _on_bad(self, exc: ProtocolError, t: float) -> None:
        self.get_logger().warning(f'bad marker line skipped: {exc}', throttle_duration_sec=2.0)

    def _on_connection(self, connected: bool, reason: str) -> None:
        log_connection(self, connected, reason)
        self._publish_status()

    def _publish_status(self) -> None:
        s = self.device_status
        self._publish({'type': 'status', 'connected': self.stream.transport.connected,
                       'state': s.state if s else 'UNKNOWN', 'level': s.level if s else None,
                       'fault': s.fault if s else None, 'fires': s.fires if s else None})

    def _publish(self, data: dict) -> None:
        self.status_pub.publish(String(data=json.dumps(data)))

    def _publish_health(self) -> None:
        h = self.stream.health()
        s = self.device_status
        values = dict(h.values, state=s.state if s else 'unknown', level=s.level if s else 'unknown',
                      fault=s.fault if s else 'unknown', fires=s.fires if s else 'unknown',
                      commands_sent=self.commands.sent, commands_resent=self.commands.resent,
                      commands_refused=self.commands.refused, commands_failed=self.commands.failed,
                      last_command_failure=self.commands.last_failure or 'none')
        level, message = h.level, h.message
        if level < ERROR and s is not None and (s.state == 'FAULT' or s.fault):
            text = f': {self.last_fault.text}' if self.last_fault else ''
            level, message = ERROR, f'marker fault {s.fault}{text}'
        elif level < WARN and s is not None and s.level < self.low_level:
            level, message = WARN, f'{message}; paint/flag level {s.level} %'
        self.diag.update(level, message, values, force=True)

    def close(self) -> None:
        self.commands.cancel_all('marker driver shutting down', time.monotonic())
        self.stream.close()


_TARGET_CHARS = re.compile(r'[^A-Za-z0-9_.:-]')


def _command(request: dict, cmd_id: int) -> mk.MarkerCommand:
    """A protocol command from a JSON request (target ids are made wire-safe, they are only logged)."""
    name = str(request.get('name', 'FIRE')).upper()
    if name == 'FIRE':
        target = _TARGET_CHARS.sub('_', str(request.get('target', 'unknown')))[:24] or 'unknown'
        command = mk.MarkerCommand(cmd_id, name, target_id=target, duration_ms=int(request['duration_ms']),
                                   slide_mm=int(request.get('slide_mm', 0)))
    elif name == 'LEVEL':
        command = mk.MarkerCommand(cmd_id, name, level=int(request['level']))
    elif name in ('STATUS', 'CLEAR'):
        command = mk.MarkerCommand(cmd_id, name)
    else:
        raise ValueError(f'unknown command name {name!r} (FIRE, STATUS, LEVEL, CLEAR)')
    mk.encode_command(command)      # validates ranges: ValueError with the field name
    return command


def main(args=None):
    sys.exit(run_node(MarkerDriverNode, args))
