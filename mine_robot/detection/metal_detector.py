"""Metal-detector array processing: coil samples + robot poses -> georeferenced detections.

Per sample (one value per coil, timestamped) the processor

1. removes each coil's slow **drift** with an adaptive baseline (exponential average, frozen while
   the coil sees an anomaly so a target never pulls its own baseline up);
2. removes the **ground response**: soil mineralisation is spatially correlated over distances
   longer than the coil spacing, so at any instant it is common to neighbouring coils, whereas a
   buried object lights up one or two coils; the across-array median is that common part;
3. tracks each coil's noise level (robust running RMS of the quiet residual), so thresholds adapt
   to the soil and the electronics;
4. smooths each coil's residual along the driven path (a moving average a few centimetres long,
   matched to the width of a target's response) and finds **anomalies along and across the swath**
   as local maxima of the (distance x coil) map above ``threshold_sigma`` noise levels;
5. fits the physical response ``m * (a^2 / (a^2 + r^2))^3`` (coil radius ``a``, 3-D distance ``r``
   from the coil centre at height ``h`` to an object at depth ``d``) to the samples around each
   peak, georeferenced with the robot pose interpolated at every sample's own timestamp and the
   coil offsets from ``config/robot.yaml``. The fit gives position, depth, equivalent metal mass
   and a covariance.

The processor is causal: a peak is reported once the array has moved ``peak_window_m`` past it,
so latency is distance/speed (about 0.3 s at 0.3 m/s).
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from mine_robot.detection.types import Detection, DetectionError, GrowBuffer, PoseHistory, body_to_map
from mine_robot.robot import RobotGeometry


@dataclass(frozen=True)
class MetalDetectorConfig:
    baseline_tau_s: float = 2.0         # drift/background time constant per coil
    noise_tau_s: float = 4.0            # noise-level estimator time constant
    quiet_sigma: float = 3.0            # |residual| below this many sigma updates baseline/noise
    ground_compensation: str = 'median'  # 'median' (across-array common mode) or 'none'
    threshold_sigma: float = 5.5        # detection threshold on the smoothed residual
    min_amplitude: float = 0.003        # absolute floor on the smoothed residual (signal units)
    initial_noise: float = 0.01         # noise level assumed until the estimate settles
    warmup_s: float = 1.0               # no detections before the estimators have this much data
    history_samples: int = 250          # samples of smoothed residual behind a peak for its noise
    smoothing_m: float = 0.05           # along-path moving-average length
    peak_window_m: float = 0.10         # a peak is the maximum within +-this along the path
    fit_window_m: float = 0.22          # samples within +-this of a peak enter the model fit
    fit_search_m: float = 0.16          # horizontal search radius of the fit around the peak coil
    max_depth_m: float = 0.6            # deepest object the fit considers
    signal_per_gram: float = 1.0        # signal units per gram of metal on the coil axis at r=0
    position_floor_m: float = 0.02      # added (in quadrature) to the fit's position sigma
    sensor: str = 'metal'

    def __post_init__(self):
        positive = ('baseline_tau_s', 'noise_tau_s', 'quiet_sigma', 'threshold_sigma', 'initial_noise',
                    'smoothing_m', 'peak_window_m', 'fit_window_m', 'fit_search_m', 'max_depth_m',
                    'signal_per_gram', 'position_floor_m')
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise DetectionError(f'metal detector config: {name} must be > 0, got {value!r}')
        if self.ground_compensation not in ('median', 'none'):
            raise DetectionError("metal detector config: ground_compensation must be 'median' or "
                                 f"'none', got {self.ground_compensation!r}")
        if self.min_amplitude < 0 or self.warmup_s < 0:
            raise DetectionError('metal detector config: min_amplitude and warmup_s must be >= 0')


def md_kernel(a: float, horizontal: np.ndarray, vertical) -> np.ndarray:
    """Coil response per unit mass: ``(a^2 / (a^2 + r^2))^3`` with ``r^2 = horizontal^2 + vertical^2``."""
    a2 = a * a
    return (a2 / (a2 + np.square(horizontal) + np.square(vertical))) ** 3


class MetalDetectorProcessor:
    """Streaming processor for one metal-detector array. Feed poses and samples, get detections.

    ``add_pose(t, x, y, yaw)`` (robot base_link in map) and ``add_sample(t, signals)`` may arrive
    in any interleaving; samples wait until the pose history covers their timestamp. ``poll()``
    processes what can be processed and returns new detections.
    """

    def __init__(self, robot: RobotGeometry, config: MetalDetectorConfig | None = None,
                 poses: PoseHistory | None = None):
        self.config = config or MetalDetectorConfig()
        md = robot.metal_detector
        self.coil_radius = md.coil_radius
        self.coil_height = md.coil_height
        self.offsets = md.coil_positions()
        self.n = len(self.offsets)
        self.poses = poses if poses is not None else PoseHistory()
        self._pending: list[tuple[float, np.ndarray]] = []
        self._next_id = 1
        self._baseline: np.ndarray | None = None
        self._noise = np.full(self.n, self.config.initial_noise)
        self._t0: float | None = None
        self._last_t = -math.inf
        self._s = 0.0
        self._last_centre: np.ndarray | None = None
        # rolling buffer, one row per accepted sample: t, path length s, warm flag,
        # coil x (n), coil y (n), residual z (n), noise sigma (n)
        self._buf = GrowBuffer(3 + 4 * self.n)
        self._last_buf_t: float | None = None
        self._next_final = 0
        self.stats = {'samples': 0, 'dropped_no_pose': 0, 'rejected': 0, 'detections': 0}

    # -- input -------------------------------------------------------------------------------
    def add_pose(self, t: float, x: float, y: float, yaw: float) -> None:
        self.poses.add(t, x, y, yaw)

    def add_sample(self, t: float, signals) -> None:
        values = np.asarray(signals, dtype=float).ravel()
        if values.shape != (self.n,):
            self.stats['rejected'] += 1
            raise DetectionError(f'metal detector sample has {values.size} coil values, the array '
                                 f'has {self.n} coils')
        if not np.all(np.isfinite(values)):
            self.stats['rejected'] += 1
            raise DetectionError('metal detector sample contains non-finite values')
        if not math.isfinite(t) or t <= self._last_t:
            self.stats['rejected'] += 1
            raise DetectionError(f'metal detector sample time {t} is not after the previous {self._last_t}')
        self._last_t = t
        self._pending.append((float(t), values))

    def poll(self) -> list[Detection]:
        """Process every pending sample the pose history covers; return new detections."""
        ready = []
        keep = []
        for t, values in self._pending:
            if self.poses.covers(t, tolerance=0.02):
                ready.append((t, values))
            elif len(self.poses) and t < self.poses.earliest_time:
                self.stats['dropped_no_pose'] += 1
            else:
                keep.append((t, values))
        self._pending = keep
        if ready:
            ts = np.array([r[0] for r in ready])
            poses = self.poses.at(ts, tolerance=0.02)
            coil_xy = body_to_map(poses, self.offsets)
            for k, (t, values) in enumerate(ready):
                self._ingest(t, values, coil_xy[k])
        return self._finalize(flush=False)

    def flush(self) -> list[Detection]:
        """End of a run: report peaks still inside the look-ahead window."""
        return self._finalize(flush=True)

    # -- per-sample conditioning --------------------------------------------------------------
    def _ingest(self, t: float, values: np.ndarray, coil_xy: np.ndarray) -> None:
        cfg = self.config
        self.stats['samples'] += 1
        centre = coil_xy.mean(axis=0)
        if self._last_centre is not None:
            self._s += float(np.hypot(*(centre - self._last_centre)))
        self._last_centre = centre
        if self._baseline is None:
            self._baseline = values.copy()
            self._t0 = t
            dt = 0.0
        else:
            dt = max(t - self._last_buf_t, 0.0)
        resid = values - self._baseline
        ground = float(np.median(resid)) if cfg.ground_compensation == 'median' else 0.0
        z = resid - ground
        quiet = np.abs(z) < cfg.quiet_sigma * self._noise
        alpha = min(dt / cfg.baseline_tau_s, 1.0)
        beta = min(dt / cfg.noise_tau_s, 1.0)
        warm = (t - self._t0) >= cfg.warmup_s
        if not warm:  # settle fast at start-up
            alpha, beta = min(4 * alpha, 1.0), min(4 * beta, 1.0)
            quiet = np.ones_like(quiet)
        self._baseline[quiet] += alpha * (values - ground - self._baseline)[quiet]
        clipped = np.minimum(np.abs(z), cfg.quiet_sigma * self._noise)
        # RMS of a 3-sigma clipped Gaussian is 0.986 sigma: close enough, no correction needed.
        self._noise = np.sqrt((1 - beta) * self._noise ** 2 + beta * clipped ** 2)
        self._noise = np.maximum(self._noise, 1e-9)
        self._last_buf_t = t
        self._buf.append(np.concatenate([(t, self._s, float(warm)), coil_xy[:, 0], coil_xy[:, 1], z,
                                         self._noise]))

    def _columns(self):
        n, data = self.n, self._buf.view
        xy = np.stack([data[:, 3:3 + n], data[:, 3 + n:3 + 2 * n]], axis=-1)
        return (data[:, 0], data[:, 1], data[:, 2] > 0.5, xy, data[:, 3 + 2 * n:3 + 3 * n],
                data[:, 3 + 3 * n:3 + 4 * n])

    # -- peak finding and fitting -------------------------------------------------------------
    def _finalize(self, flush: bool) -> list[Detection]:
        cfg = self.config
        if not len(self._buf):
            return []
        t, s, warm, xy, z, sig = self._columns()
        look = cfg.peak_window_m + cfg.smoothing_m / 2
        last = len(s) if flush else int(np.searchsorted(s, s[-1] - look, side='right'))
        first = self._next_final
        if last <= first:
            return []
        # moving average along the path (+-smoothing/2), using cumulative sums
        csum = np.vstack([np.zeros(self.n), np.cumsum(z, axis=0)])
        lo = np.searchsorted(s, s - cfg.smoothing_m / 2, side='left')
        hi = np.searchsorted(s, s + cfg.smoothing_m / 2, side='right')
        count = (hi - lo)[:, None]
        zs = (csum[hi] - csum[lo]) / count
        sig_s = sig / np.sqrt(count)
        thr = np.maximum(cfg.threshold_sigma * sig_s, cfg.min_amplitude)
        out = []
        cand_k, cand_i = np.nonzero((zs[first:last] > thr[first:last]) & warm[first:last, None])
        for k, i in zip(cand_k + first, cand_i):
            w_lo = int(np.searchsorted(s, s[k] - cfg.peak_window_m, side='left'))
            w_hi = int(np.searchsorted(s, s[k] + cfg.peak_window_m, side='right'))
            i_lo, i_hi = max(i - 1, 0), min(i + 2, self.n)
            block = zs[w_lo:w_hi, i_lo:i_hi]
            peak = zs[k, i]
            if peak < block.max():
                continue
            # exact ties: keep only the first (lowest sample, lowest coil) occurrence
            ties = np.argwhere(block == peak)
            if tuple(ties[0]) != (k - w_lo, i - i_lo):
                continue
            # confirm against the smoothed residual's own recent spread (robust, per coil): it
            # includes what white noise does not, e.g. drift the baseline is still catching up on
            h_lo = max(0, w_lo - cfg.history_samples)
            recent = zs[h_lo:w_lo, i]
            recent = recent[np.abs(recent) < 0.5 * peak]   # other objects are not noise
            noise = sig_s[k, i]
            if len(recent) >= 25:
                noise = max(noise, 1.4826 * float(np.median(np.abs(recent - np.median(recent)))))
            if peak < max(cfg.threshold_sigma * noise, cfg.min_amplitude):
                continue
            det = self._fit(k, i, peak, noise, t, s, xy, z, sig)
            if det is not None:
                out.append(det)
        self._next_final = last
        self._trim()
        self.stats['detections'] += len(out)
        return out

    def _fit(self, k, i, peak, noise, t, s, xy, z, sig):
        cfg = self.config
        lo = int(np.searchsorted(s, s[k] - cfg.fit_window_m, side='left'))
        hi = int(np.searchsorted(s, s[k] + cfg.fit_window_m, side='right'))
        pts = xy[lo:hi].reshape(-1, 2)
        vals = z[lo:hi].ravel()
        w_noise = sig[lo:hi].ravel()
        centre = xy[k, i]
        a, h, n = self.coil_radius, self.coil_height, self.n
        median_comp = cfg.ground_compensation == 'median'

        def search(cx, cy, half, step, depths):
            g = np.arange(-half, half + 1e-9, step)
            gx, gy = np.meshgrid(cx + g, cy + g, indexing='ij')
            q = np.stack([gx.ravel(), gy.ravel()], axis=1)                  # (Q, 2)
            d2 = np.sum((q[:, None, :] - pts[None, :, :]) ** 2, axis=2)     # (Q, N)
            best = (np.inf, None)
            for d in depths:
                kern = md_kernel(a, np.sqrt(d2), h + d)                    # (Q, N)
                if median_comp:  # the model sees the same across-array median removal as the data
                    kern3 = kern.reshape(len(q), -1, n)
                    kern = (kern3 - np.median(kern3, axis=2, keepdims=True)).reshape(len(q), -1)
                kk = np.einsum('qn,qn->q', kern, kern)
                m = np.maximum(kern @ vals / np.maximum(kk, 1e-30), 0.0)
                sse = np.sum(vals ** 2) - 2 * m * (kern @ vals) + m * m * kk
                j = int(np.argmin(sse))
                if sse[j] < best[0]:
                    best = (float(sse[j]), (float(q[j, 0]), float(q[j, 1]), float(d), float(m[j])))
            return best

        depths = np.arange(0.0, cfg.max_depth_m + 1e-9, 0.025)
        _, p = search(centre[0], centre[1], cfg.fit_search_m, 0.02, depths)
        d_fine = np.clip(np.arange(p[2] - 0.02, p[2] + 0.0201, 0.005), 0.0, cfg.max_depth_m)
        sse, p = search(p[0], p[1], 0.02, 0.005, np.unique(d_fine))
        qx, qy, d, m = p
        if m <= 0:
            return None
        cov = self._covariance(pts, vals, w_noise, qx, qy, d, m)
        sxy = math.sqrt(max(0.5 * (cov[0, 0] + cov[1, 1]), 0.0)) if cov is not None else cfg.fit_search_m
        sigma = math.hypot(min(sxy, 0.5), cfg.position_floor_m)
        snr = peak / max(noise, 1e-12)
        # confidence that a real object is there, from the smoothed peak SNR
        conf = float(1.0 / (1.0 + math.exp(-(snr - cfg.threshold_sigma) * 1.5)))
        det = Detection(
            t=float(t[k]), x=qx, y=qy, depth=d, confidence=conf, strength=float(peak),
            sensor=cfg.sensor, id=self._next_id, sigma=sigma,
            extra={'mass_g': m / cfg.signal_per_gram, 'snr': float(snr), 'coil': int(i),
                   'fit_rms': math.sqrt(sse / max(len(vals), 1)),
                   'depth_sigma': float(math.sqrt(max(cov[2, 2], 0.0))) if cov is not None else None})
        self._next_id += 1
        return det

    def _covariance(self, pts, vals, noise, qx, qy, d, m):
        a, h = self.coil_radius, self.coil_height
        theta = np.array([qx, qy, d, m])

        def model(th):
            rho = np.hypot(pts[:, 0] - th[0], pts[:, 1] - th[1])
            kern = md_kernel(a, rho, h + max(th[2], 0.0))
            if self.config.ground_compensation == 'median':
                kern3 = kern.reshape(-1, self.n)
                kern = (kern3 - np.median(kern3, axis=1, keepdims=True)).ravel()
            return th[3] * kern

        base = model(theta)
        jac = np.empty((len(vals), 4))
        steps = (1e-3, 1e-3, 1e-3, max(1e-3 * m, 1e-9))
        for j, step in enumerate(steps):
            th = theta.copy()
            th[j] += step
            jac[:, j] = (model(th) - base) / step
        wj = jac / noise[:, None]
        try:
            return np.linalg.inv(wj.T @ wj)
        except np.linalg.LinAlgError:
            return None

    def _trim(self) -> None:
        """Drop buffered samples that no future peak or fit can need."""
        cfg = self.config
        if self._next_final < 512:
            return
        s = self._buf.view[:, 1]
        keep_from = int(np.searchsorted(s, s[self._next_final - 1] - 2 * cfg.fit_window_m - cfg.smoothing_m,
                                        side='left'))
        keep_from = min(keep_from, self._next_final)
        if keep_from < 256:
            return
        self._buf.drop(keep_from)
        self._next_final -= keep_from
