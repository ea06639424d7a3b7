"""GPR processing: traces + robot poses -> georeferenced hyperbola detections.

Traces from the monostatic antenna are assembled into a B-scan along the driven path (each trace
placed by the robot pose at its timestamp and the antenna offset from ``config/robot.yaml``).
Then, per trace:

1. **Background and ground-surface removal.** A running mean trace (exponential, over about a metre
   of travel) holds the ground-surface reflection and any horizontal banding; each trace has that
   mean subtracted after scaling it to the trace's own surface echo (the surface reflection's
   amplitude varies with roughness from trace to trace). The surface arrival time is measured
   from the mean trace, so the antenna height and system delay need no calibration.
2. **Migration.** A reflector at slant range ``c`` (``sqrt(lateral^2 + depth^2)``) from the
   antenna track appears at along-track offset ``s`` at two-way time
   ``t_surface + 2 sqrt(c^2 + s^2) / v`` with ``v = c0 / sqrt(permittivity)``. Summing the traces
   along that hyperbola (Kirchhoff diffraction stacking over ``aperture_m``) focuses a hyperbola
   to a point and averages the noise down; flat events and noise do not focus.
3. **Detection.** The envelope of the migrated image is searched for local maxima above
   ``threshold_sigma`` times its robust noise level. Each peak becomes a detection on the track
   at the apex, with ``slant_range_m = c``, ``depth`` = c (the depth if the object is under the
   track) and features ``amplitude`` and ``reflectivity`` (amplitude corrected for spreading and
   attenuation at range c, as if on the track).
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from mine_robot.detection.types import Detection, DetectionError, GrowBuffer, PoseHistory, body_to_map
from mine_robot.robot import RobotGeometry

C_M_PER_NS = 0.299792458


@dataclass(frozen=True)
class GprConfig:
    time_window_ns: float = 16.0
    permittivity: float = 6.0           # soil relative permittivity (v = c / sqrt(eps))
    attenuation_per_m: float = 3.0      # amplitude attenuation used for the reflectivity feature
    background_m: float = 1.0           # running-mean background length along the path
    aperture_m: float = 0.2             # half-aperture of the migration
    max_range_m: float = 0.7            # deepest slant range searched
    max_loss_gain: float = 60.0         # ... and no deeper than where attenuation divides by this
    min_range_m: float = 0.02           # shallowest (the surface echo itself is excluded)
    threshold_sigma: float = 6.0
    peak_window_m: float = 0.12         # along-track half-window of the local-maximum test
    warmup_m: float = 0.5               # travel before detections start (background settles)
    range_tolerance_m: float = 0.08     # slant-range tolerance reported for association
    position_sigma_m: float = 0.04
    sensor: str = 'gpr'

    def __post_init__(self):
        for name in ('time_window_ns', 'permittivity', 'background_m', 'aperture_m', 'max_range_m',
                     'threshold_sigma', 'peak_window_m', 'range_tolerance_m', 'position_sigma_m'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise DetectionError(f'gpr config: {name} must be > 0, got {value!r}')
        if self.permittivity < 1.0:
            raise DetectionError(f'gpr config: permittivity must be >= 1, got {self.permittivity}')

    @property
    def velocity(self) -> float:
        return C_M_PER_NS / math.sqrt(self.permittivity)


def _envelope(x: np.ndarray) -> np.ndarray:
    """Envelope of a real signal (magnitude of the analytic signal, via FFT), along the last axis."""
    n = x.shape[-1]
    spec = np.fft.fft(x, axis=-1)
    h = np.zeros(n)
    h[0] = 1.0
    h[1:(n + 1) // 2] = 2.0
    if n % 2 == 0:
        h[n // 2] = 1.0
    return np.abs(np.fft.ifft(spec * h, axis=-1))


class GprProcessor:
    """Streaming B-scan processor. ``add_pose``, ``add_trace``, ``poll() -> detections``."""

    def __init__(self, robot: RobotGeometry, config: GprConfig | None = None,
                 poses: PoseHistory | None = None):
        self.config = config or GprConfig()
        self.offset = np.array([robot.gpr.xyz[:2]])
        self.poses = poses if poses is not None else PoseHistory()
        self._pending: list[tuple[float, np.ndarray]] = []
        self._samples: int | None = None
        self._mean: np.ndarray | None = None
        self._s = 0.0
        self._last_xy: np.ndarray | None = None
        self._last_t = -math.inf
        self._traces: GrowBuffer | None = None     # cleaned traces
        self._meta = GrowBuffer(5)                  # t, s, x, y, heading
        self._mig_rows: list[np.ndarray] = []
        self._next_mig = 0
        self._next_final = 0
        self._noise = None
        self._next_id = 1
        self.stats = {'traces': 0, 'rejected': 0, 'dropped_no_pose': 0, 'detections': 0}

    def add_pose(self, t: float, x: float, y: float, yaw: float) -> None:
        self.poses.add(t, x, y, yaw)

    def add_trace(self, t: float, trace) -> None:
        values = np.asarray(trace, dtype=float).ravel()
        if values.size < 16:
            self.stats['rejected'] += 1
            raise DetectionError(f'GPR trace has {values.size} samples; at least 16 are needed')
        if self._samples is not None and values.size != self._samples:
            self.stats['rejected'] += 1
            raise DetectionError(f'GPR trace has {values.size} samples, earlier traces had {self._samples}')
        if not np.all(np.isfinite(values)):
            self.stats['rejected'] += 1
            raise DetectionError('GPR trace contains non-finite samples')
        if not math.isfinite(t) or t <= self._last_t:
            self.stats['rejected'] += 1
            raise DetectionError(f'GPR trace time {t} is not after the previous {self._last_t}')
        self._last_t = t
        self._samples = values.size
        self._pending.append((float(t), values))

    # ------------------------------------------------------------------
    def _setup(self, n: int) -> None:
        cfg = self.config
        self.dt_ns = cfg.time_window_ns / n
        self._traces = GrowBuffer(n)

    def poll(self) -> list[Detection]:
        keep, ready = [], []
        for t, values in self._pending:
            if self.poses.covers(t, tolerance=0.02):
                ready.append((t, values))
            elif len(self.poses) and t < self.poses.earliest_time:
                self.stats['dropped_no_pose'] += 1
            else:
                keep.append((t, values))
        self._pending = keep
        for t, values in ready:
            pose = self.poses.at(t, tolerance=0.02)
            xy = body_to_map(pose, self.offset)[0]
            self._ingest(t, values, xy, float(pose[2]))
        return self._detect(flush=False)

    def flush(self) -> list[Detection]:
        return self._detect(flush=True)

    def _ingest(self, t, values, xy, heading) -> None:
        cfg = self.config
        if self._traces is None:
            self._setup(values.size)
        self.stats['traces'] += 1
        if self._last_xy is not None:
            step = float(np.hypot(*(xy - self._last_xy)))
        else:
            step = 0.0
        self._s += step
        self._last_xy = xy
        if self._mean is None:
            self._mean = values.copy()
        else:
            alpha = min(max(step, 0.002) / cfg.background_m, 1.0)
            self._mean += alpha * (values - self._mean)
        mean = self._mean
        k_surf = int(np.argmax(np.abs(mean)))
        self._k_surface = k_surf
        w = slice(max(k_surf - 8, 0), k_surf + 9)
        denom = float(np.dot(mean[w], mean[w]))
        scale = float(np.dot(values[w], mean[w]) / denom) if denom > 0 else 1.0
        clean = values - scale * mean
        self._traces.append(clean)
        self._meta.append((t, self._s, xy[0], xy[1], heading))

    def _migrate(self, k: int, traces: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Migrated trace at apex k (envelope), over slant ranges index j (range = j*dr)."""
        cfg = self.config
        v = cfg.velocity
        n = traces.shape[1]
        lo = int(np.searchsorted(s, s[k] - cfg.aperture_m, side='left'))
        hi = int(np.searchsorted(s, s[k] + cfg.aperture_m, side='right'))
        offs = s[lo:hi] - s[k]
        ranges = self._ranges
        t_idx = (self._k_surface + (2.0 * np.sqrt(ranges[None, :] ** 2 + offs[:, None] ** 2) / v)
                 / self.dt_ns)
        i0 = np.clip(t_idx.astype(int), 0, n - 2)
        frac = t_idx - i0
        rows = np.arange(lo, hi)[:, None]
        vals = traces[rows, i0] * (1 - frac) + traces[rows, i0 + 1] * frac
        valid = t_idx < n - 1
        stack = np.where(valid, vals, 0.0).sum(axis=0) / np.maximum(valid.sum(axis=0), 1)
        return stack

    def _detect(self, flush: bool) -> list[Detection]:
        cfg = self.config
        if self._traces is None or not len(self._traces):
            return []
        meta = self._meta.view
        s = meta[:, 1]
        traces = self._traces.view
        if not hasattr(self, '_ranges'):
            v = cfg.velocity
            dr = v * self.dt_ns / 2.0
            # deepest range whose whole aperture hyperbola fits in the trace (deeper, fewer traces
            # are stacked and the end of the record rings), and where the loss correction of the
            # reflectivity stays below max_loss_gain (deeper, the soil hides everything anyway)
            t_room = (traces.shape[1] - 2 - self._k_surface) * self.dt_ns
            r_fit = math.sqrt(max((t_room * v / 2.0) ** 2 - cfg.aperture_m ** 2, 0.0))
            r_loss = (math.log(cfg.max_loss_gain) / (2.0 * cfg.attenuation_per_m)
                      if cfg.attenuation_per_m > 0 else math.inf)
            top = min(cfg.max_range_m, r_fit, max(r_loss, 0.1))
            self._ranges = np.arange(max(cfg.min_range_m, dr), max(top, 2 * dr), dr)
        # migrate every trace whose aperture is complete
        last_mig = len(s) if flush else int(np.searchsorted(s, s[-1] - cfg.aperture_m, side='right'))
        for k in range(self._next_mig, last_mig):
            stack = self._migrate(k, traces, s)
            env = _envelope_1d(stack)
            self._mig_rows.append(env)
        self._next_mig = max(self._next_mig, last_mig)
        if not self._mig_rows:
            return []
        img = np.asarray(self._mig_rows)
        out = []
        base = len(s) - len(meta)  # always 0: indices of img and meta coincide
        last_final = len(img) if flush else int(np.searchsorted(
            s[:len(img)], s[len(img) - 1] - cfg.peak_window_m, side='right'))
        for k in range(self._next_final, last_final):
            row = img[k]
            noise = self._update_noise(row)
            if s[k] < cfg.warmup_m:
                continue
            j = int(np.argmax(row))
            if row[j] < cfg.threshold_sigma * noise:
                continue
            lo = int(np.searchsorted(s, s[k] - cfg.peak_window_m, side='left'))
            hi = min(int(np.searchsorted(s, s[k] + cfg.peak_window_m, side='right')), len(img))
            jl, jh = max(j - 6, 0), j + 7
            block = img[lo:hi, jl:jh]
            if row[j] < block.max() or np.argwhere(block == row[j])[0][0] != k - lo:
                continue
            out.append(self._make_detection(k + base, j, float(row[j]), noise, meta))
        self._next_final = max(self._next_final, last_final)
        self._trim()
        self.stats['detections'] += len(out)
        return out

    def _update_noise(self, row: np.ndarray) -> float:
        level = float(np.median(row)) * 1.4826 / 1.1774  # median of a Rayleigh envelope -> sigma
        if self._noise is None:
            self._noise = level
        else:
            self._noise += 0.05 * (level - self._noise)
        return max(self._noise, 1e-12)

    def _make_detection(self, k, j, amp, noise, meta) -> Detection:
        cfg = self.config
        t, _s, x, y, heading = meta[k]
        c = float(self._ranges[j])
        loss = min(1.0, 0.1 / max(c, 1e-3)) * math.exp(-2.0 * cfg.attenuation_per_m * c)
        snr = amp / noise
        conf = float(1.0 / (1.0 + math.exp(-(snr - cfg.threshold_sigma))))
        det = Detection(t=float(t), x=float(x), y=float(y), depth=c, confidence=conf, strength=amp,
                        sensor=cfg.sensor, id=self._next_id, sigma=cfg.position_sigma_m,
                        extra={'slant_range_m': c, 'heading': float(heading), 'amplitude': amp,
                               'reflectivity': amp / loss, 'snr': snr,
                               'range_tolerance_m': cfg.range_tolerance_m})
        self._next_id += 1
        return det

    def _trim(self) -> None:
        cfg = self.config
        done = min(self._next_final, self._next_mig)
        if done < 1024:
            return
        s = self._meta.view[:, 1]
        keep_from = int(np.searchsorted(s, s[done - 1] - 2 * cfg.aperture_m - cfg.peak_window_m))
        if keep_from < 512:
            return
        self._traces.drop(keep_from)
        self._meta.drop(keep_from)
        del self._mig_rows[:keep_from]
        self._next_mig -= keep_from
        self._next_final -= keep_from


def _envelope_1d(x: np.ndarray) -> np.ndarray:
    return _envelope(x[None, :])[0]
