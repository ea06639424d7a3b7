"""marker_driver node over a pty: command -> ack -> done, lost acks retried with the same id (the
device marks once), silent device -> failure after retries, refusal, ~/fire, unplugged port."""

import json
import threading
import time

import pytest
from rclpy.parameter import Parameter
from std_msgs.msg import String
from std_srvs.srv import Trigger

from mine_robot.drivers.protocols import ProtocolError
from mine_robot.drivers.protocols import marker as mk
from mine_robot.drivers.pty import PtyDevice
from mine_robot.nodes.marker_driver import MarkerDriverNode
from mine_robot.ros import qos
from mine_robot.ros.testing import BackgroundSpinner, MessageCollector, call_service

pytestmark = pytest.mark.ros


class MarkerFirmware(threading.Thread):
    """The device side of docs/protocols.md, run against the pty master."""

    def __init__(self, dev: PtyDevice, drop_first: int = 0, silent: bool = False, level: int = 80):
        super().__init__(daemon=True)
        self.dev, self.drop_first, self.silent, self.level = dev, drop_first, silent, level
        self.received: list[mk.MarkerCommand] = []
        self.fired: list[mk.MarkerCommand] = []
        self.answers: dict[int, bytes] = {}
        self.stop = threading.Event()

    def run(self):
        buf = b''
        while not self.stop.is_set():
            buf += self.dev.read(0.02)
            while b'\n' in buf:
                line, buf = buf.split(b'\n', 1)
                try:
                    cmd = mk.parse_command(line + b'\n')
                except ProtocolError:
                    continue
                self.received.append(cmd)
                if self.silent:
                    continue
                answer = self.answers.get(cmd.cmd_id)
                if answer is None:
                    answer = self.execute(cmd)
                    self.answers[cmd.cmd_id] = answer          # de-duplication memory
                if len(self.received) <= self.drop_first:
                    continue                                     # the acknowledgement is lost
                self.dev.write(answer)

    def execute(self, cmd: mk.MarkerCommand) -> bytes:
        if cmd.name != 'FIRE':
            return mk.encode_ack(cmd.cmd_id) + mk.encode_status('IDLE', self.level, 0, len(self.fired))
        if self.level == 0:
            return mk.encode_ack(cmd.cmd_id, False, mk.AckError.EMPTY, 'paint tank empty')
        self.fired.append(cmd)
        self.level -= 1
        return (mk.encode_ack(cmd.cmd_id) + mk.encode_status('FIRING', self.level, 0, len(self.fired))
                + mk.encode_done(cmd.cmd_id, cmd.target_id, cmd.duration_ms, cmd.slide_mm)
                + mk.encode_status('IDLE', self.level, 0, len(self.fired)))


@pytest.fixture
def rig(ros_context, ros_node_factory):
    devices = []

    def make(firmware_kwargs=None, port=None, **params):
        dev = PtyDevice() if port is None else None
        if dev:
            devices.append(dev)
        overrides = [Parameter('port', value=port or dev.path), Parameter('ack_timeout', value=0.15),
                     Parameter('retries', value=2), Parameter('reconnect_min', value=0.05)]
        overrides += [Parameter(k, value=v) for k, v in params.items()]
        node = MarkerDriverNode(context=ros_context, parameter_overrides=overrides)
        probe = ros_node_factory('probe')
        status = MessageCollector(probe, String, 'marker/status', qos.RELIABLE)
        pub = probe.create_publisher(String, 'marker/command', qos.RELIABLE)
        firmware = MarkerFirmware(dev, **(firmware_kwargs or {})) if dev else None
        if firmware:
            firmware.start()
        devices.append((node, firmware))
        return node, probe, status, pub, firmware

    yield make
    for item in reversed(devices):          # stop firmware and nodes before closing their ptys
        if isinstance(item, tuple):
            node, firmware = item
            if firmware:
                firmware.stop.set()
                firmware.join()
            node.close()
            node.destroy_node()
        else:
            item.close()


def of_type(msgs, kind):
    return [json.loads(m.data) for m in msgs if json.loads(m.data).get('type') == kind]


def send(pub, **request):
    pub.publish(String(data=json.dumps(request)))


def wait_subscribed(pub, timeout=5.0):
    deadline = time.monotonic() + timeout
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)


def test_fire_ack_done_with_mission_contract(ros_context, rig):
    node, probe, status, pub, fw = rig()
    with BackgroundSpinner(ros_context, node, probe):
        assert node.stream.transport.wait_connected(3)
        wait_subscribed(pub)
        send(pub, cmd_id=70001, name='FIRE', target='T 7/a', duration_ms=400, slide_mm=-250, mode='paint')
        msgs = status.wait_for(lambda m: of_type(m, 'done'), timeout=5)
        ack = of_type(msgs, 'ack')[0]
        assert ack == {'type': 'ack', 'cmd_id': 70001, 'ok': True, 'error': '', 'code': 0, 'attempts': 1}
        done = of_type(msgs, 'done')[0]
        assert done == {'type': 'done', 'cmd_id': 70001, 'target': 'T_7_a', 'actual_ms': 400,
                        'slide_mm': -250}
        assert fw.fired == [mk.MarkerCommand(70001 % 65536, 'FIRE', 'T_7_a', 400, -250)]
        status.wait_for(lambda m: any(s['state'] == 'IDLE' and s['fires'] == 1 for s in of_type(m, 'status')))


def test_lost_acks_are_retried_with_same_id_and_device_marks_once(ros_context, rig):
    node, probe, status, pub, fw = rig({'drop_first': 2})
    with BackgroundSpinner(ros_context, node, probe):
        assert node.stream.transport.wait_connected(3)
        wait_subscribed(pub)
        send(pub, cmd_id=5, name='FIRE', target='T1', duration_ms=300, slide_mm=100)
        msgs = status.wait_for(lambda m: of_type(m, 'ack'), timeout=5)
        ack = of_type(msgs, 'ack')[0]
        assert ack['ok'] and ack['attempts'] == 3
        assert [c.cmd_id for c in fw.received] == [5, 5, 5]
        assert len(fw.fired) == 1                           # retried three times, marked once
        assert node.commands.resent == 2


def test_silent_device_fails_after_retries_and_refusal_is_reported(ros_context, rig):
    node, probe, status, pub, fw = rig({'silent': True})
    with BackgroundSpinner(ros_context, node, probe):
        assert node.stream.transport.wait_connected(3)
        wait_subscribed(pub)
        t0 = time.monotonic()
        send(pub, cmd_id=9, name='FIRE', target='T2', duration_ms=300)
        ack = of_type(status.wait_for(lambda m: of_type(m, 'ack'), timeout=5), 'ack')[0]
        assert not ack['ok'] and ack['error'] == 'no acknowledgement after 3 attempts (0.15 s each)'
        assert 0.4 < time.monotonic() - t0 < 2.0 and len(fw.received) == 3 and not fw.fired
        fw.silent, fw.level = False, 0                      # device answers but the tank is empty
        send(pub, cmd_id=10, name='FIRE', target='T2', duration_ms=300)
        acks = of_type(status.wait_for(lambda m: len(of_type(m, 'ack')) == 2, timeout=5), 'ack')
        assert acks[1] == {'type': 'ack', 'cmd_id': 10, 'ok': False, 'error': 'paint tank empty',
                           'code': int(mk.AckError.EMPTY), 'attempts': 1}
        send(pub, cmd_id=11, name='FIRE', duration_ms=99999)                  # out of range: error
        send(pub, data='not json')
        errors = of_type(status.wait_for(lambda m: len(of_type(m, 'error')) == 2, timeout=5), 'error')
        assert 'duration_ms' in errors[0]['error'] and 'cmd_id' in errors[1]['error']


def test_fire_service_and_unplugged_port(ros_context, rig, tmp_path):
    node, probe, status, pub, fw = rig(test_duration_ms=250, test_slide_mm=30)
    with BackgroundSpinner(ros_context, node, probe):
        assert node.stream.transport.wait_connected(3)
        response = call_service(probe, Trigger, '/marker_driver/fire', timeout=5)
        assert response.success and 'acknowledged after 1 attempt' in response.message
        assert fw.fired[0].duration_ms == 250 and fw.fired[0].slide_mm == 30
        response = call_service(probe, Trigger, '/marker_driver/clear_fault', timeout=5)
        assert response.success
    node2, probe2, *_ = rig(port=str(tmp_path / 'ttyGONE'))
    with BackgroundSpinner(ros_context, node2, probe2):
        t0 = time.monotonic()
        response = call_service(probe2, Trigger, '/marker_driver/fire', timeout=5)
        assert not response.success and 'not connected' in response.message
        assert time.monotonic() - t0 < 2.0
