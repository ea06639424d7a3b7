"""SerialTransport over real pty pairs and pyserial's loop:// — unplug, re-plug, missing port."""

import threading
import time

import numpy as np
import pytest

from mine_robot.drivers.protocols import gpr
from mine_robot.drivers.protocols import metal_detector as md
from mine_robot.drivers.pty import PtyDevice
from mine_robot.drivers.rawlog import RawLogWriter, replay
from mine_robot.drivers.transport import SerialTransport, TransportConfig, TransportError, backoff_delays


class Sink:
    def __init__(self):
        self.messages, self.errors, self.events = [], [], []
        self.cond = threading.Condition()

    def message(self, msg, t):
        with self.cond:
            self.messages.append((msg, t))
            self.cond.notify_all()

    def error(self, exc, t):
        with self.cond:
            self.errors.append(str(exc))
            self.cond.notify_all()

    def connection(self, up, reason):
        with self.cond:
            self.events.append((up, reason))
            self.cond.notify_all()

    def wait(self, predicate, timeout=5.0):
        with self.cond:
            assert self.cond.wait_for(lambda: predicate(self), timeout), 'timed out'


def make(url, parser=md.parse, framer=None, sink=None, **config):
    sink = sink or Sink()
    cfg = TransportConfig(url, **{'reconnect_min': 0.05, 'reconnect_max': 0.4, **config})
    transport = SerialTransport(cfg, framer or md.make_framer(), parser, sink.message, on_error=sink.error,
                                on_connection=sink.connection)
    return transport.start(), sink


@pytest.fixture
def device():
    with PtyDevice() as dev:
        yield dev


def test_stream_with_bad_input_keeps_flowing_and_counts(device):
    transport, sink = make(device.path)
    try:
        assert transport.wait_connected(3)
        before = time.monotonic()
        good = [md.encode_sample(i, i * 1000, [i, 0, 0, 0, 0]) for i in range(50)]
        junk = [b'\x00\xff\xfe random bytes\n', good[0][:20] + b'\n', good[1].replace(b'*', b'*0'),
                b'$' + b'9' * 600 + b'\n', md.encode_sample(1, 1, [2e7, 0, 0, 0, 0])]
        stream = b''.join(g + (junk[i // 10] if i % 10 == 0 else b'') for i, g in enumerate(good))
        device.write(stream)
        sink.wait(lambda s: len(s.messages) >= 50 and len(s.errors) >= 5)
        assert [m.seq for m, _ in sink.messages] == list(range(50))
        assert all(before <= t <= time.monotonic() for _, t in sink.messages)   # stamped on arrival
        stats = transport.stats()
        assert stats.frames == 50 and stats.bad_frames == 5 and stats.bytes_rx == len(stream)
        assert 'coil 0' in stats.last_error
        assert any('overlong' in e for e in sink.errors) and any('checksum' in e for e in sink.errors)
    finally:
        transport.close()


def test_unplug_mid_stream_and_replug(device):
    transport, sink = make(device.path)
    try:
        assert transport.wait_connected(3)
        device.write(b''.join(md.encode_sample(i, i, [0] * 5) for i in range(10)))
        device.write(md.encode_sample(10, 10, [0] * 5)[:15])           # half a line, then the cable goes
        sink.wait(lambda s: len(s.messages) == 10)
        device.unplug()
        sink.wait(lambda s: any(not up for up, _ in s.events))
        time.sleep(0.3)
        stats = transport.stats()
        assert not stats.connected and stats.disconnects == 1 and stats.connect_failures >= 1
        assert 'cannot open' in stats.last_error
        device.replug()
        sink.wait(lambda s: s.events[-1][0] and 'reconnected' in s.events[-1][1])
        device.write(b''.join(md.encode_sample(i, i, [0] * 5) for i in range(11, 20)))
        sink.wait(lambda s: len(s.messages) == 19)
        assert [m.seq for m, _ in sink.messages][-9:] == list(range(11, 20))
        assert transport.stats().reconnects == 1
        assert transport.stats().bad_frames == 0      # the half line was dropped with the connection
    finally:
        transport.close()


def test_silent_device_is_reopened_and_then_streams(device):
    transport, sink = make(device.path, silence_reopen=0.3)
    try:
        assert transport.wait_connected(3)
        sink.wait(lambda s: any(not up and 'no data for 0.3 s' in why for up, why in s.events))
        sink.wait(lambda s: s.events[-1][0] and 'reconnected' in s.events[-1][1])
        device.write(b''.join(md.encode_sample(i, i, [0] * 5) for i in range(5)))
        sink.wait(lambda s: len(s.messages) == 5)
        assert transport.stats().reconnects >= 1
    finally:
        transport.close()
    quiet, quiet_sink = make(device.path)                  # default: never re-opened for silence
    try:
        assert quiet.wait_connected(3)
        time.sleep(0.5)
        assert all(up for up, _ in quiet_sink.events) and quiet.stats().disconnects == 0
    finally:
        quiet.close()
    with pytest.raises(ValueError, match='silence_reopen'):
        TransportConfig('loop://', silence_reopen=-1.0)


def test_port_that_never_exists_retries_with_backoff(tmp_path):
    transport, sink = make(str(tmp_path / 'ttyNOPE'), reconnect_min=0.05, reconnect_max=0.2)
    try:
        time.sleep(0.8)
        stats = transport.stats()
        assert not stats.connected and 3 <= stats.connect_failures <= 10
        assert 'No such file' in stats.last_error and stats.next_retry_in == pytest.approx(0.2)
        with pytest.raises(TransportError, match='not connected'):
            transport.write(b'$MDC,1,GB*77\r\n')
    finally:
        t0 = time.monotonic()
        transport.close()
        assert time.monotonic() - t0 < 1.0          # close does not wait out the backoff
    assert list(zip(range(6), backoff_delays(0.1, 1.0))) == [
        (0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (5, 1.0)]


def test_port_appearing_later_is_picked_up(tmp_path):
    path = tmp_path / 'ttyLATE'
    transport, sink = make(str(path))
    try:
        time.sleep(0.2)
        assert not transport.connected
        with PtyDevice(path) as dev:
            assert transport.wait_connected(3)
            dev.write(md.encode_sample(5, 5, [1] * 5))
            sink.wait(lambda s: len(s.messages) == 1)
            assert transport.stats().reconnects == 0      # a first connection, not a reconnect
    finally:
        transport.close()


def test_write_reaches_device_and_times_out_when_device_stops_reading(device):
    transport, _ = make(device.path, write_timeout=0.2)
    try:
        assert transport.wait_connected(3)
        transport.write(md.encode_sensitivity(3, 50))
        assert device.read(1.0) == md.encode_sensitivity(3, 50)
        t0 = time.monotonic()
        with pytest.raises(TransportError, match='timed out'):
            for _ in range(10000):                        # nobody reads: the pty buffer fills
                transport.write(b'x' * 4096)
        assert time.monotonic() - t0 < 3.0
        assert 'write timed out' in transport.stats().last_error
        assert transport.stats().bytes_tx >= 4096
    finally:
        transport.close()


def test_binary_frames_over_pty_with_bad_crc_and_absurd_count(device):
    transport, sink = make(device.path, parser=gpr.parse, framer=gpr.make_framer())
    try:
        assert transport.wait_connected(3)
        frames = [gpr.encode_trace(i, i, np.sin(np.arange(512) * i), 50.0) for i in range(20)]
        bad_crc = bytearray(frames[3])
        bad_crc[100] ^= 0xFF
        absurd = gpr.SYNC + (10 ** 8).to_bytes(4, 'little') + bytes(40)
        device.write(b''.join(frames[:3]) + bytes(bad_crc) + absurd + b''.join(frames[4:]))
        sink.wait(lambda s: len(s.messages) == 19)
        assert [m.seq for m, _ in sink.messages] == [0, 1, 2] + list(range(4, 20))
        assert any('CRC' in e for e in sink.errors) and any('absurd' in e for e in sink.errors)
    finally:
        transport.close()


def test_loop_url_and_raw_recording_replays_identically(tmp_path):
    recorder = RawLogWriter(tmp_path / 'loop.raw', device='metal_detector', url='loop://')
    sink = Sink()
    cfg = TransportConfig('loop://', reconnect_min=0.05)
    transport = SerialTransport(cfg, md.make_framer(), md.parse, sink.message, on_error=sink.error,
                                on_chunk=lambda data, t: recorder.write(data, t)).start()
    try:
        assert transport.wait_connected(3)
        lines = [md.encode_sample(i, i, [i, 1, 2, 3, 4], status=i % 3) for i in range(200)]
        for i in range(0, 200, 20):
            transport.write(b''.join(lines[i:i + 20]) + (b'noise\n' if i == 100 else b''))
        sink.wait(lambda s: len(s.messages) == 200 and len(s.errors) == 1)
    finally:
        transport.close()
        recorder.close()
    result = replay(recorder.path, md.make_framer(), md.parse)
    assert [m for _, m in result.messages] == [m for m, _ in sink.messages]
    assert [t for t, _ in result.messages] == [t for _, t in sink.messages]
    assert len(result.errors) == 1


def test_device_stream_health_levels(tmp_path):
    from mine_robot.drivers.device import ERROR, OK, WARN, DeviceConfig, DeviceStream
    path = tmp_path / 'ttyH'
    got = []
    stream = DeviceStream('md', DeviceConfig(str(path), reconnect_min=0.05, reconnect_max=0.1,
                                             stale_timeout=1.0),
                          md, lambda m, t: got.append(m), seq_of=lambda m: m.seq).start()
    try:
        time.sleep(0.2)
        h = stream.health()
        assert h.level == ERROR and h.message.startswith('not connected') and 'retrying in' in h.message
        with PtyDevice(path) as dev:
            assert stream.transport.wait_connected(3)
            assert stream.health().level == WARN and 'no data yet' in stream.health().message
            dev.write(b''.join(md.encode_sample(i, i, [0] * 5) for i in (1, 2, 3, 7)))
            time.sleep(0.15)
            h = stream.health()
            assert h.level == OK and h.values['lost_messages'] == 3 and h.values['frames'] == 4
            dev.write(b'junk\n')
            time.sleep(0.15)
            h = stream.health()
            assert h.level == WARN and '1 bad frames in 10 s' in h.message
            time.sleep(1.0)
            assert 'no good data for' in stream.health().message
    finally:
        stream.close()

