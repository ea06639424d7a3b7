"""Plain data shared by the detectors, fusion, the lockstep pipeline and the nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
import math

import numpy as np


class DetectionError(ValueError):
    """Bad input to a detector (wrong shape, non-finite values, time going backwards...)."""


@dataclass
class Detection:
    """One georeferenced observation of a possible object by one sensor.

    ``x, y`` in ``map`` (metres), ``depth`` below the ground surface (metres, NaN when the sensor
    cannot tell), ``confidence`` in [0, 1] that a real object is there, ``strength`` the sensor's
    own amplitude measure (metal detector: fitted peak signal; GPR: migrated amplitude; camera:
    contrast), ``sigma`` the 1-sigma horizontal position uncertainty (metres). ``extra`` holds
    sensor-specific features the classifier uses (e.g. ``mass_g``, ``slant_range_m``).
    """

    t: float
    x: float
    y: float
    depth: float
    confidence: float
    strength: float
    sensor: str
    id: int = 0
    sigma: float = 0.05
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ('t', 'x', 'y', 'strength', 'sigma'):
            if not math.isfinite(float(getattr(self, name))):
                raise DetectionError(f'detection from {self.sensor!r}: {name} is not finite')
        if not 0.0 <= self.confidence <= 1.0:
            raise DetectionError(f'detection from {self.sensor!r}: confidence {self.confidence} '
                                 'is outside [0, 1]')
        if self.sigma <= 0.0:
            raise DetectionError(f'detection from {self.sensor!r}: sigma must be > 0')


class GrowBuffer:
    """Append-only 2-D float array with amortised growth and cheap dropping of old rows."""

    def __init__(self, width: int, capacity: int = 1024):
        self._data = np.empty((capacity, width))
        self._start = 0
        self._end = 0

    def append(self, row) -> None:
        if self._end == len(self._data):
            live = self._end - self._start
            if live * 2 > len(self._data):
                grown = np.empty((len(self._data) * 2, self._data.shape[1]))
            else:
                grown = self._data
            grown[:live] = self._data[self._start:self._end]
            self._data, self._start, self._end = grown, 0, live
        self._data[self._end] = row
        self._end += 1

    def truncate(self, n: int) -> None:
        """Remove the newest ``n`` rows."""
        self._end = max(self._end - n, self._start)

    def drop(self, n: int) -> None:
        self._start = min(self._start + n, self._end)

    @property
    def view(self) -> np.ndarray:
        return self._data[self._start:self._end]

    def __len__(self) -> int:
        return self._end - self._start


class PoseHistory:
    """Time-ordered robot poses ``(t, x, y, yaw)`` in ``map``, interpolated at sample times.

    Detectors georeference each sample with the pose at the sample's own timestamp, so a sensor
    stream that arrives before or after the matching odometry still lands in the right place.
    Poses older than ``horizon_s`` before the newest are discarded.
    """

    def __init__(self, horizon_s: float = 30.0):
        self.horizon_s = float(horizon_s)
        self._buf = GrowBuffer(4)

    def add(self, t: float, x: float, y: float, yaw: float) -> None:
        if not all(math.isfinite(v) for v in (t, x, y, yaw)):
            raise DetectionError('pose with non-finite values')
        data = self._buf.view
        if len(data):
            last_t, prev = data[-1, 0], data[-1, 3]
            # keep yaw continuous so linear interpolation never goes the long way round
            yaw = prev + math.remainder(yaw - prev, 2.0 * math.pi)
            if t == last_t:
                data[-1] = (t, x, y, yaw)
                return
            if t < last_t:
                raise DetectionError(f'pose time went backwards ({t} after {last_t})')
        self._buf.append((t, x, y, yaw))
        data = self._buf.view
        if len(data) > 64 and data[32, 0] < t - self.horizon_s:
            self._buf.drop(int(np.searchsorted(data[:, 0], t - self.horizon_s)) - 1)

    def __len__(self) -> int:
        return len(self._buf)

    @property
    def latest_time(self) -> float:
        return float(self._buf.view[-1, 0]) if len(self._buf) else -math.inf

    @property
    def earliest_time(self) -> float:
        return float(self._buf.view[0, 0]) if len(self._buf) else math.inf

    def covers(self, t: float, tolerance: float = 0.0) -> bool:
        return bool(len(self._buf)) and self.earliest_time - tolerance <= t <= self.latest_time + tolerance

    def split_ready(self, pending: list, tolerance: float, stats: dict) -> tuple[list, list]:
        """Split time-ordered ``(t, ...)`` samples into (ready: the history covers their time
        within ``tolerance``, waiting: newer than the newest pose). Samples older than the oldest
        pose are dropped and counted in ``stats['dropped_no_pose']``."""
        ready, waiting = [], []
        for item in pending:
            t = item[0]
            if self.covers(t, tolerance=tolerance):
                ready.append(item)
            elif len(self) and t < self.earliest_time:
                stats['dropped_no_pose'] += 1
            else:
                waiting.append(item)
        return ready, waiting

    def at(self, t, tolerance: float = 0.05) -> np.ndarray:
        """Interpolated ``[x, y, yaw]`` at ``t`` (scalar or array) -> (3,) or (n, 3).

        Times up to ``tolerance`` outside the history are clamped to its ends; further out is an
        error (the caller must wait for odometry or drop the sample).
        """
        if not len(self._buf):
            raise DetectionError('no robot pose received yet')
        data = self._buf.view
        ts = data[:, 0]
        tq = np.asarray(t, dtype=float)
        if np.any(tq < ts[0] - tolerance) or np.any(tq > ts[-1] + tolerance):
            raise DetectionError(f'no robot pose at t={float(np.min(tq)):.3f}..{float(np.max(tq)):.3f} '
                                 f'(poses cover {ts[0]:.3f}..{ts[-1]:.3f})')
        if len(ts) == 1:
            return np.broadcast_to(data[0, 1:], tq.shape + (3,)).copy()
        return np.stack([np.interp(tq, ts, data[:, k]) for k in (1, 2, 3)], axis=-1)


def body_to_map(pose: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Points given in base_link (x forward, y left) -> map, for one or many poses.

    ``pose`` (3,) or (n, 3) ``[x, y, yaw]``; ``offsets`` (m, 2). Returns (m, 2) or (n, m, 2).
    """
    pose = np.asarray(pose, dtype=float)
    offsets = np.asarray(offsets, dtype=float).reshape(-1, 2)
    c, s = np.cos(pose[..., 2]), np.sin(pose[..., 2])
    ox, oy = offsets[:, 0], offsets[:, 1]
    x = pose[..., 0, None] + c[..., None] * ox - s[..., None] * oy
    y = pose[..., 1, None] + s[..., None] * ox + c[..., None] * oy
    return np.stack([x, y], axis=-1)
