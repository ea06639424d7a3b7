"""GPR processing: traces + robot poses -> georeferenced hyperbola detections.

The radar is an array of monostatic antennas across the detector head (``config/robot.yaml``
``gpr.channel_y``, one per coil by default). Each antenna (channel) has its own B-scan along the
path it drives: each of its traces is placed by the robot pose at the trace's timestamp and that
antenna's offset. Then, per channel and trace:

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
    aperture_traces: int = 21           # traces summed per migrated trace (evenly over the aperture)
    range_step_m: float = 0.004         # slant-range step of the migrated image (>= one sample)
    beam_half_angle_deg: float = 45.0   # antenna beam: gain exp(-(angle off nadir / this)^2)
    max_range_m: float = 0.7            # deepest slant range searched
    max_loss_gain: float = 60.0         # ... and no deeper than where attenuation divides by this
    min_range_m: float = 0.02           # shallowest (the surface echo itself is excluded)
    threshold_sigma: float = 6.0
    peak_window_m: float = 0.12         # along-track half-window of the local-maximum test
    max_turn_deg: float = 10.0          # no detection where the heading turned more over the aperture
    trace_step_m: float = 0.005         # a trace is kept once the antenna moved this far (B-scan step)
    min_aperture_fill: float = 0.4      # no detection from a stack missing more of its aperture
    warmup_m: float = 0.5               # travel before detections start (background settles)
    range_tolerance_m: float = 0.08     # slant-range tolerance reported for association
    position_sigma_m: float = 0.04
    sensor: str = 'gpr'

    def __post_init__(self):
        for name in ('time_window_ns', 'permittivity', 'background_m', 'aperture_m', 'max_range_m',
                     'threshold_sigma', 'peak_window_m', 'range_tolerance_m', 'position_sigma_m',
                     'range_step_m', 'beam_half_angle_deg'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise DetectionError(f'gpr config: {name} must be > 0, got {value!r}')
        if not 3 <= self.aperture_traces <= 401:
            raise DetectionError(f'gpr config: aperture_traces must be 3..401, got {self.aperture_traces!r}')
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
    """Streaming processor of the whole antenna array: ``add_pose``, ``add_trace(t, trace,
    channel)``, ``poll() -> detections`` (of every channel; ``extra['channel']`` says which)."""

    def __init__(self, robot: RobotGeometry, config: GprConfig | None = None,
                 poses: PoseHistory | None = None):
        self.config = config or GprConfig()
        self.poses = poses if poses is not None else PoseHistory()
        self.offsets = robot.gpr.channel_positions()
        self._ids = [1]
        self.channels = [GprChannel(self.config, self.poses, self.offsets[i], i, self._ids)
                         for i in range(len(self.offsets))]

    @property
    def stats(self) -> dict:
        out: dict = {}
        for ch in self.channels:
            for k, v in ch.stats.items():
                out[k] = out.get(k, 0) + v
        return out

    def add_pose(self, t: float, x: float, y: float, yaw: float) -> None:
        self.poses.add(t, x, y, yaw)

    def add_trace(self, t: float, trace, channel: int = 0) -> None:
        """One trace of antenna ``channel`` (0 = the first entry of ``gpr.channel_y``)."""
        if not isinstance(channel, (int, np.integer)) or not 0 <= channel < len(self.channels):
            raise DetectionError(f'GPR channel {channel!r} is not one of the {len(self.channels)} '
                                 'antennas of config/robot.yaml gpr.channel_y')
        self.channels[int(channel)].add_trace(t, trace)

    def add_scan(self, t: float, traces) -> None:
        """Traces of all channels fired at ``t``: an array (channels, samples)."""
        values = np.asarray(traces, dtype=float)
        if values.ndim != 2 or values.shape[0] != len(self.channels):
            raise DetectionError(f'GPR scan of shape {values.shape}: expected ({len(self.channels)}, '
                                 'samples), one trace per antenna')
        for i, row in enumerate(values):
            self.channels[i].add_trace(t, row)

    def poll(self) -> list[Detection]:
        return [d for ch in self.channels for d in ch.poll()]

    def flush(self) -> list[Detection]:
        return [d for ch in self.channels for d in ch.flush()]


class GprChannel:
    """Streaming B-scan processor of one antenna. ``add_trace``, ``poll() -> detections``."""

    def __init__(self, config: GprConfig, poses: PoseHistory, offset, channel: int = 0,
                 ids: list[int] | None = None):
        self.config = config
        self.offset = np.asarray(offset, dtype=float).reshape(1, 2)
        self.channel = int(channel)
        self.poses = poses
        self._ids = ids if ids is not None else [1]
        self._pending: list[tuple[float, np.ndarray]] = []
        self._samples: int | None = None
        self._mean: np.ndarray | None = None
        self._s = 0.0
        self._last_xy: np.ndarray | None = None
        self._last_t = -math.inf
        self._traces: GrowBuffer | None = None     # cleaned traces
        self._meta = GrowBuffer(5)                  # t, s, x, y, heading
        self._mig: GrowBuffer | None = None        # envelopes of the migrated traces
        self._next_mig = 0
        self._next_final = 0
        self._noise = None
        self.stats = {'traces': 0, 'rejected': 0, 'dropped_no_pose': 0, 'detections': 0}

    def add_trace(self, t: float, trace) -> None:
        values = np.asarray(trace, dtype=float).ravel()
        if values.size < 16:
            self.stats['rejected'] += 1
            raise DetectionError(f'GPR channel {self.channel}: trace has {values.size} samples; at least 16 '
                                 'are needed')
        if self._samples is not None and values.size != self._samples:
            self.stats['rejected'] += 1
            raise DetectionError(f'GPR channel {self.channel}: trace has {values.size} samples, earlier '
                                 f'traces had {self._samples}')
        if not np.all(np.isfinite(values)):
            self.stats['rejected'] += 1
            raise DetectionError(f'GPR channel {self.channel}: trace contains non-finite samples')
        if not math.isfinite(t) or t <= self._last_t:
            self.stats['rejected'] += 1
            raise DetectionError(f'GPR channel {self.channel}: trace time {t} is not after the previous '
                                 f'{self._last_t}')
        self._last_t = t
        self._samples = values.size
        self._pending.append((float(t), values))

    # ------------------------------------------------------------------
    def _setup(self, n: int) -> None:
        cfg = self.config
        self.dt_ns = cfg.time_window_ns / n
        self._traces = GrowBuffer(n)

    def poll(self) -> list[Detection]:
        ready, self._pending = self.poses.split_ready(self._pending, 0.02, self.stats)
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
            if step < cfg.trace_step_m:
                # distance-triggered B-scan (as with a survey wheel): a robot standing still
                # (marking, turning on the spot) would stack the same spot for seconds, and the
                # background and noise trackers would learn a stationary scene
                self.stats['stationary'] = self.stats.get('stationary', 0) + 1
                return
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

    def _migrate(self, ks: np.ndarray, traces: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Envelopes of the migrated traces at apexes ``ks`` (K,) -> (K, ranges).

        The aperture is sampled at ``aperture_traces`` offsets evenly spread over
        ``±aperture_m``, each taken from the nearest trace (the hyperbola moves less than half a
        wavelet period between them); all apexes are migrated in one vectorised gather."""
        n = traces.shape[1]
        u = self._aperture_offsets
        want = s[ks][:, None] + u[None, :]                                   # (K, M)
        if len(s) > 1:
            idx = np.clip(np.searchsorted(s, want), 1, len(s) - 1)
            idx -= (want - s[idx - 1]) < (s[idx] - want)                     # nearest trace
        else:
            idx = np.zeros(want.shape, dtype=np.intp)
        offs = s[idx] - s[ks][:, None]
        near = np.abs(offs - u[None, :]) <= self._aperture_step               # a trace is there
        t_idx = (self._k_surface + np.sqrt(self._ranges2[None, None, :] + offs[:, :, None] ** 2)
                 * self._two_over_v_dt)                                      # (K, M, R)
        i0 = t_idx.astype(np.intp)
        valid = near[:, :, None] & (i0 < n - 1)
        np.minimum(i0, n - 2, out=i0)
        frac = t_idx - i0
        flat = traces.ravel()
        base = (idx * n)[:, :, None] + i0
        vals = flat[base] * (1.0 - frac) + flat[base + 1] * frac
        vals[~valid] = 0.0
        stack = vals.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
        self._fill.extend(near.mean(axis=1).tolist())    # share of the aperture with a trace
        return _envelope(stack)

    def _detect(self, flush: bool) -> list[Detection]:
        cfg = self.config
        if self._traces is None or not len(self._traces):
            return []
        meta = self._meta.view
        s = meta[:, 1]
        traces = self._traces.view
        if self._mig is None:
            v = cfg.velocity
            dr = max(v * self.dt_ns / 2.0, cfg.range_step_m)
            # deepest range whose whole aperture hyperbola fits in the trace (deeper, fewer traces
            # are stacked and the end of the record rings), and where the loss correction of the
            # reflectivity stays below max_loss_gain (deeper, the soil hides everything anyway)
            t_room = (traces.shape[1] - 2 - self._k_surface) * self.dt_ns
            r_fit = math.sqrt(max((t_room * v / 2.0) ** 2 - cfg.aperture_m ** 2, 0.0))
            r_loss = (math.log(cfg.max_loss_gain) / (2.0 * cfg.attenuation_per_m)
                      if cfg.attenuation_per_m > 0 else math.inf)
            top = min(cfg.max_range_m, r_fit, max(r_loss, 0.1))
            self._ranges = np.arange(max(cfg.min_range_m, dr), max(top, 2 * dr), dr)
            self._ranges2 = self._ranges ** 2
            self._two_over_v_dt = 2.0 / v / self.dt_ns
            m = max(int(cfg.aperture_traces), 3) | 1
            self._aperture_offsets = np.linspace(-cfg.aperture_m, cfg.aperture_m, m)
            self._aperture_step = cfg.aperture_m / (m - 1)
            self._mig = GrowBuffer(len(self._ranges))
            self._fill: list[float] = []
        # migrate every trace whose aperture is complete, in batches
        last_mig = len(s) if flush else int(np.searchsorted(s, s[-1] - cfg.aperture_m, side='right'))
        for k0 in range(self._next_mig, last_mig, 64):
            ks = np.arange(k0, min(k0 + 64, last_mig))
            for row in self._migrate(ks, traces, s):
                self._mig.append(row)
        self._next_mig = max(self._next_mig, last_mig)
        if not len(self._mig):
            return []
        img = self._mig.view
        out = []
        last_final = len(img) if flush else int(np.searchsorted(
            s[:len(img)], s[len(img) - 1] - cfg.peak_window_m, side='right'))
        if last_final <= self._next_final:
            return []
        rows = img[self._next_final:last_final]
        noise = self._update_noise(rows, s[self._next_final:last_final] < cfg.warmup_m)
        snr = rows / noise
        peaks = snr.argmax(axis=1)
        for i, k in enumerate(range(self._next_final, last_final)):
            if s[k] < cfg.warmup_m:
                continue
            j = int(peaks[i])
            row = rows[i]
            if snr[i, j] < cfg.threshold_sigma:
                continue
            lo = int(np.searchsorted(s, s[k] - cfg.peak_window_m, side='left'))
            hi = min(int(np.searchsorted(s, s[k] + cfg.peak_window_m, side='right')), len(img))
            jl, jh = max(j - 6, 0), j + 7
            block = img[lo:hi, jl:jh] / noise[i, jl:jh]
            if snr[i, j] < block.max() or np.argwhere(block == block.max())[0][0] != k - lo:
                continue
            # a stack of fewer traces (scans lost on the way, a gap in the track) has a higher
            # noise than the tracker's (1/sqrt of the share stacked): the threshold rises with it
            fill = self._fill[k]
            if fill < cfg.min_aperture_fill or snr[i, j] < cfg.threshold_sigma / math.sqrt(fill):
                self.stats['thin_aperture'] = self.stats.get('thin_aperture', 0) + 1
                continue
            # the migration assumes a straight track over the aperture: in a turn the traces
            # are no hyperbola and a 'focus' there is an artefact (a turn at the field's edge
            # left a GPR-only target outside the field that no metal pass could ever clear)
            a_lo = int(np.searchsorted(s, s[k] - cfg.aperture_m, side='left'))
            a_hi = int(np.searchsorted(s, s[k] + cfg.aperture_m, side='right'))
            turn = np.abs(np.remainder(meta[a_lo:a_hi, 4] - meta[k, 4] + np.pi, 2 * np.pi) - np.pi)
            if turn.size and math.degrees(float(turn.max())) > cfg.max_turn_deg:
                self.stats['turning'] = self.stats.get('turning', 0) + 1
                continue
            det = self._make_detection(k, j, float(row[j]), float(noise[i, j]), meta)
            det.extra['mdr'] = self._min_detectable(noise[i])
            det.extra['mdr_deep'] = self._min_detectable(noise[i], 0.2)
            out.append(det)
        self._next_final = last_final
        self._trim()
        self.stats['detections'] += len(out)
        return out

    def _update_noise(self, rows: np.ndarray, warming: np.ndarray) -> np.ndarray:
        """Noise sigma per slant range (the stack's noise varies with range: surface residue near
        the top, fewer samples deep), tracked along the path: the mean envelope of noise is
        ``sigma sqrt(pi/2)`` (Rayleigh); each row updates it with its envelope clipped at 2x the
        current mean, so a reflector barely moves it (during the warm-up: a plain, faster mean).
        Returns the sigma in force for each row (K, ranges)."""
        out = np.empty_like(rows)
        if self._noise is None:
            self._noise = rows[0].copy()
        mean = self._noise
        for i, row in enumerate(rows):
            out[i] = mean
            if warming[i]:
                mean += 0.1 * (row - mean)
            else:
                mean += 0.02 * (np.minimum(row, 2.0 * mean) - mean)
        return np.maximum(out / 1.2533, 1e-12)

    def _make_detection(self, k, j, amp, noise, meta) -> Detection:
        cfg = self.config
        t, _s, x, y, heading = meta[k]
        c = float(self._ranges[j])
        loss = self._loss(c)
        snr = amp / noise
        conf = float(1.0 / (1.0 + math.exp(-(snr - cfg.threshold_sigma))))
        det = Detection(t=float(t), x=float(x), y=float(y), depth=c, confidence=conf, strength=amp,
                        sensor=cfg.sensor, id=self._ids[0], sigma=cfg.position_sigma_m,
                        extra={'slant_range_m': c, 'heading': float(heading), 'amplitude': amp,
                               'reflectivity': amp / loss, 'snr': snr, 'channel': self.channel,
                               'range_tolerance_m': cfg.range_tolerance_m})
        self._ids[0] += 1
        return det

    def _min_detectable(self, noise_row: np.ndarray, slant: float = 0.1) -> float:
        """Smallest reflectivity this channel detects now at ``slant`` m under its track (the
        threshold over the current noise at that range, divided by the loss): fusion uses it to
        judge how much a pass without a hit says."""
        j = min(int(np.searchsorted(self._ranges, slant)), len(self._ranges) - 1)
        return float(self.config.threshold_sigma * noise_row[j] / self._loss(float(self._ranges[j])))

    def _path_loss(self, r, theta):
        cfg = self.config
        return (np.minimum(1.0, 0.1 / np.maximum(r, 1e-3)) * np.exp(-2.0 * cfg.attenuation_per_m * r)
                * np.exp(-(np.degrees(theta) / cfg.beam_half_angle_deg) ** 2))

    def _loss(self, c: float) -> float:
        """Migrated amplitude of a reflector of reflectivity 1 at slant range ``c`` on the track:
        spreading, attenuation and the beam pattern averaged over the migration aperture, so
        ``reflectivity = amplitude / loss`` estimates the reflector's own reflectivity."""
        u = self._aperture_offsets
        r = np.sqrt(c * c + u * u)
        return float(np.mean(self._path_loss(r, np.arctan2(np.abs(u), c))))

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
        self._mig.drop(keep_from)
        del self._fill[:keep_from]
        self._next_mig -= keep_from
        self._next_final -= keep_from


