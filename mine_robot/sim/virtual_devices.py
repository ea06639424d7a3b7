"""Virtual serial devices: the simulator behind pty pairs, speaking the device protocols of
``docs/protocols.md`` (encoders and parsers from ``mine_robot.drivers.protocols``), so the real
drivers run end to end against the simulation.

Each device is a :class:`mine_robot.drivers.pty.PtyDevice` whose stable path is
``<device_dir>/<name>`` (``metal_detector``, ``gnss``, ``gpr``, ``marker``); point the driver's
``port`` parameter there. A device never blocks the simulation: output waits in the device's own
output buffer (``OUTPUT_BUFFER_BYTES``, like a GPR's trace memory or a USB bridge's FIFO) until the
pty takes it; when the driver falls so far behind that the buffer is full, frames are dropped whole
and counted (``dropped``). (Without that buffer the GPR array's 10 kB per scan overflowed the pty
whenever the driver's reader thread waited a few milliseconds for the CPU: 61 % of scans arrived
incomplete in a 2x-real-time sweep on 2 cores, 2026-12-06.)

- **metal detector**: one ``$MDS`` line per sample; values in device units = simulator signal
  units × ``MD_DEVICE_SCALE`` (1000, i.e. milli-units, so 2 decimals keep 1e-5 resolution): set the
  driver's ``signal_scale`` to ``1 / MD_DEVICE_SCALE`` (0.001). ``$MDC`` commands are acknowledged
  (GB and SENS accepted; RATE only at the simulated rate); a repeated ``cmd_id`` gets the same
  acknowledgement again without re-applying.
- **GNSS**: per fix, GGA (+ RMC and GST) NMEA sentences with the simulated position, fix quality
  (4 RTK, 5 float, 1 single, 0 none), satellites, HDOP and GST sigmas; UTC = ``time_base`` + sim time.
- **GPR**: one binary frame per trace, float32 samples, the configured time window; an antenna
  array sends version-2 frames, one per antenna per scan (docs/protocols.md).
- **marker**: ``$MKC`` commands; FIRE is acknowledged, the slide moves to ``slide_mm`` and the mark
  lands in the simulated world at the nozzle's **true** position (``SimWorld.mark``); ``$MKD``
  follows after ``duration_ms`` of sim time. STATUS/LEVEL/CLEAR as documented; ``$MKS`` at least
  once a second; the last 8 ``cmd_id``s are remembered so a retried FIRE never marks twice.
"""

from __future__ import annotations

from collections import OrderedDict
import datetime as dt
import math
from pathlib import Path

import numpy as np

from mine_robot.drivers.protocols import ProtocolError
from mine_robot.drivers.protocols import gnss as gnss_proto
from mine_robot.drivers.protocols import gpr as gpr_proto
from mine_robot.drivers.protocols import marker as marker_proto
from mine_robot.drivers.protocols import metal_detector as md_proto
from mine_robot.drivers.pty import PtyDevice
from mine_robot.sim.sensors import GnssFix, GprConfig

MD_DEVICE_SCALE = 1000.0
OUTPUT_BUFFER_BYTES = 256 * 1024     # 0.5 s of the 5-antenna GPR array at 2x real time


class VirtualDevice:
    """A pty-backed device: non-blocking output, framed command input."""

    def __init__(self, directory: str | Path, name: str, protocol=None,
                 buffer_bytes: int = OUTPUT_BUFFER_BYTES):
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.name = name
        self.pty = PtyDevice(Path(directory) / name)
        self.framer = protocol.make_framer() if protocol is not None else None
        self.buffer_bytes = int(buffer_bytes)
        self._backlog = bytearray()
        self.sent = 0
        self.dropped = 0
        self.bad_commands = 0

    @property
    def path(self) -> str:
        return self.pty.path

    @property
    def backlog(self) -> int:
        """Bytes waiting in the device's output buffer."""
        return len(self._backlog)

    def send(self, data: bytes) -> bool:
        """Queue one frame (whole, or dropped whole when the output buffer is full) and write what
        the pty takes now."""
        if self.pty.master is None:
            return False
        self.flush()
        if len(self._backlog) + len(data) > self.buffer_bytes:
            self.dropped += 1
            return False
        self._backlog += data
        self.sent += 1
        self.flush()
        return True

    def flush(self) -> None:
        """Write as much of the output buffer as the pty takes without blocking."""
        while self._backlog:
            try:
                n = self.pty.write_some(self._backlog)
            except OSError:              # unplugged: what was buffered is lost with the device
                self.dropped += 1
                self._backlog.clear()
                return
            if n <= 0:
                return
            del self._backlog[:n]

    def commands(self) -> list[bytes]:
        """Complete command frames the driver has written since the last call."""
        if self.framer is None:
            return []
        out = []
        while data := self.pty.read(0.0):
            for item in self.framer.feed(data):
                if isinstance(item, ProtocolError):
                    self.bad_commands += 1
                else:
                    out.append(item)
        return out

    def close(self) -> None:
        self.pty.close()


class _AckMemory:
    """The last ``size`` command ids with the answer given (retries get the same answer)."""

    def __init__(self, size: int = 8):
        self.size = size
        self._answers: OrderedDict[int, list[bytes]] = OrderedDict()

    def get(self, cmd_id: int) -> list[bytes] | None:
        return self._answers.get(cmd_id)

    def put(self, cmd_id: int, answer: list[bytes]) -> None:
        self._answers[cmd_id] = answer
        self._answers.move_to_end(cmd_id)
        while len(self._answers) > self.size:
            self._answers.popitem(last=False)


class VirtualMetalDetector(VirtualDevice):
    def __init__(self, directory, rate_hz: float):
        super().__init__(directory, 'metal_detector', md_proto)
        self.rate_hz = rate_hz
        self.seq = 0
        self.sensitivity = 100
        self.acks = _AckMemory()

    def sample(self, t: float, values) -> None:
        self.service()
        scaled = np.asarray(values, dtype=float) * MD_DEVICE_SCALE
        self.send(md_proto.encode_sample(self.seq, int(round(t * 1e6)), scaled))
        self.seq += 1

    def service(self) -> None:
        for frame in self.commands():
            try:
                cmd = md_proto.parse_command(frame)
            except ProtocolError:
                self.bad_commands += 1
                continue
            answer = self.acks.get(cmd.cmd_id)
            if answer is None:
                if cmd.name == 'RATE' and abs(cmd.value - self.rate_hz) > 0.5:
                    answer = [md_proto.encode_ack(cmd.cmd_id, False,
                                                  f'simulated rate is fixed at {self.rate_hz:g} Hz')]
                else:
                    if cmd.name == 'SENS':
                        self.sensitivity = int(cmd.value)
                    answer = [md_proto.encode_ack(cmd.cmd_id)]
                self.acks.put(cmd.cmd_id, answer)
            for line in answer:
                self.send(line)


class VirtualGpr(VirtualDevice):
    def __init__(self, directory, config: GprConfig):
        super().__init__(directory, 'gpr', None)
        self.config = config
        self.seq = 0

    def trace(self, t: float, samples, channel: int | None = None, channels: int = 1) -> None:
        """One trace: a v1 frame, or with ``channel`` a v2 frame of that antenna; the antennas of
        one scan share seq and time (``seq`` advances after the last channel)."""
        self.send(gpr_proto.encode_trace(self.seq, int(round(t * 1e6)), samples, self.config.time_window_ns,
                                         channel=channel, channel_count=channels))
        if channel is None or channel == channels - 1:
            self.seq += 1


class VirtualGnss(VirtualDevice):
    def __init__(self, directory, time_base: float = 0.0):
        super().__init__(directory, 'gnss', None)
        self.time_base = time_base

    def fix(self, fix: GnssFix) -> None:
        utc = dt.datetime.fromtimestamp(self.time_base + fix.t, dt.UTC)
        sod = utc.hour * 3600 + utc.minute * 60 + utc.second + utc.microsecond * 1e-6
        if not fix.valid:
            self.send(gnss_proto.encode_gga(sod, None, None, 0, fix.satellites))
            self.send(gnss_proto.encode_rmc(utc, None, None, valid=False))
            return
        self.send(gnss_proto.encode_gga(sod, fix.lat, fix.lon, fix.quality, fix.satellites, fix.hdop,
                                        fix.alt, 0.0))
        self.send(gnss_proto.encode_rmc(utc, fix.lat, fix.lon, valid=True))
        s = fix.sigma_h
        self.send(gnss_proto.encode_gst(sod, s * math.sqrt(2.0), s, s, 0.0, s, s, fix.sigma_v))


class VirtualMarker(VirtualDevice):
    """The marking actuator: marks land in ``world`` at the nozzle's true position."""

    def __init__(self, directory, world):
        super().__init__(directory, 'marker', marker_proto)
        self.world = world
        self.level = 100
        self.fires = 0
        self.state = 'IDLE'
        self.acks = _AckMemory()
        self.pending: list[tuple[float, marker_proto.MarkerCommand]] = []
        self.last_status = -math.inf
        self.slide_mm = 0

    def _status(self) -> None:
        self.last_status = self.world.time
        self.send(marker_proto.encode_status(self.state, self.level, 0, self.fires))

    def _execute(self, cmd: marker_proto.MarkerCommand) -> list[bytes]:
        if cmd.name == 'FIRE':
            if self.pending:
                return [marker_proto.encode_ack(cmd.cmd_id, False, marker_proto.AckError.BUSY, 'firing')]
            if self.level <= 0:
                return [marker_proto.encode_ack(cmd.cmd_id, False, marker_proto.AckError.EMPTY, 'empty')]
            lo, hi = self.world.robot.marker.slide_limits
            self.slide_mm = int(round(1000.0 * min(max(cmd.slide_mm / 1000.0, lo), hi)))
            self.world.mark(slide=self.slide_mm / 1000.0, target_id=cmd.target_id or '')
            self.fires += 1
            self.level = max(0, self.level - 1)
            self.state = 'FIRING'
            self.pending.append((self.world.time + cmd.duration_ms / 1000.0, cmd))
            return [marker_proto.encode_ack(cmd.cmd_id)]
        if cmd.name == 'LEVEL':
            self.level = int(cmd.level)
        return [marker_proto.encode_ack(cmd.cmd_id)]

    def service(self) -> None:
        for frame in self.commands():
            try:
                cmd = marker_proto.parse_command(frame)
            except ProtocolError:
                self.bad_commands += 1
                continue
            answer = self.acks.get(cmd.cmd_id)
            if answer is None:
                answer = self._execute(cmd)
                self.acks.put(cmd.cmd_id, answer)
            for line in answer:
                self.send(line)
            if cmd.name in ('STATUS', 'FIRE', 'LEVEL', 'CLEAR'):
                self._status()
        now = self.world.time
        for done_at, cmd in list(self.pending):
            if now >= done_at:
                self.pending.remove((done_at, cmd))
                self.send(marker_proto.encode_done(cmd.cmd_id, cmd.target_id, cmd.duration_ms, self.slide_mm))
                self.state = 'IDLE'
                self._status()
        if now - self.last_status >= 1.0:
            self._status()


class WorldDevices:
    """The devices sim_world owns: GNSS and marker."""

    def __init__(self, world, directory: str | Path, time_base: float = 0.0):
        self.gnss = VirtualGnss(directory, time_base)
        self.marker = VirtualMarker(directory, world)

    def service(self, step) -> None:
        for fix in step.gnss:
            self.gnss.fix(fix)
        self.marker.service()

    def links(self) -> dict[str, str]:
        return {d.name: d.path for d in (self.gnss, self.marker)}

    def close(self) -> None:
        self.gnss.close()
        self.marker.close()


class SensorDevices:
    """The devices sim_sensors owns: metal detector and GPR."""

    def __init__(self, directory: str | Path, gpr: GprConfig, md_rate: float = 50.0):
        self.md = VirtualMetalDetector(directory, md_rate)
        self.gpr_device = VirtualGpr(directory, gpr)

    def metal_detector(self, t: float, values) -> None:
        self.md.sample(t, values)

    def gpr(self, t: float, samples, channel: int | None = None, channels: int = 1) -> None:
        self.gpr_device.trace(t, samples, channel, channels)

    def links(self) -> dict[str, str]:
        return {d.name: d.path for d in (self.md, self.gpr_device)}

    def close(self) -> None:
        self.md.close()
        self.gpr_device.close()
