"""Metal-detector array processing: coil samples + robot poses -> georeferenced detections.

Physics (issue 4): ``signal_i = m (a^2 / (a^2 + r^2))^3 + ground(x, y) + drift_i(t) + noise``, with
``r`` the 3-D distance from coil ``i`` (radius ``a``, height ``h``) to an object at depth ``d``.
The ground response is a smooth, spatially correlated field that is often stronger than a
minimum-metal mine, so the processor treats it as correlated noise and detects with a
**generalised-least-squares matched filter** (the optimal linear detector for a known response
shape in Gaussian coloured noise):

1. **Path grid.** Each sample is georeferenced with the robot pose interpolated at its own
   timestamp. Samples are averaged into bins of ``bin_m`` of travelled path (the array centre's path
   length), one value per coil and bin, so the processing no longer depends on the speed.
2. **Noise model of a window** of bins (``window_back_m`` behind to ``window_ahead_m`` ahead of the
   candidate, all coils): white noise (per-coil estimate from second differences of the raw
   samples) + the ground field with a Gaussian correlation of length ``ground_corr_m`` and an
   amplitude estimated online from the differences between neighbouring coils + per-coil offset
   and slope along the window (drift and the coil baselines: nuisance parameters, projected out).
3. **Matched filter bank.** For every lateral position across the array (``lateral_step_m``) and a
   few depths, the response template ``g`` gives the GLS filter ``f = Q g`` (``Q`` the inverse
   covariance with the nuisance projected out) and the statistic ``T = f.y / sqrt(f.g)``, which is
   N(0, 1) on target-free ground when the model holds; ``f.y / f.g`` is the metal mass. ``T`` is
   normalised by its own recent robust spread per lateral position (adaptive threshold: what the
   model misses, e.g. rougher ground, raises the threshold there).
4. **Peaks** of the normalised statistic over (path, lateral position) above ``threshold_sigma``
   are refined on a fine grid of position and depth (same statistic, templates computed on the fly)
   and reported with position, depth, equivalent metal mass, SNR and a position sigma.

Windows only span straight travel: bins where the heading turned more than ``max_turn_deg`` from
the candidate's, or where the robot stood still longer than ``max_bin_s``, are left out (shorter
filters, precomputed for a few back lengths, are used after a turn). The processor is causal: a
peak is reported once the array is ``window_ahead_m + peak_ahead_m`` past it (about 0.4 s at the
0.3 m/s sweep speed).
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from mine_robot.detection.types import Detection, DetectionError, GrowBuffer, PoseHistory, body_to_map
from mine_robot.robot import RobotGeometry


@dataclass(frozen=True)
class MetalDetectorConfig:
    bin_m: float = 0.01                 # path-grid step
    window_back_m: float = 0.4          # filter window behind the candidate
    min_back_m: float = 0.1             # shortest back window (just after a turn)
    window_ahead_m: float = 0.10        # filter window ahead of the candidate (sets the latency)
    ground_compensation: str = 'model'  # 'model' (correlated ground in the noise model) or 'none'
    ground_corr_m: float = 0.6          # correlation length of the ground response
    ground_sigma: float = 0.0           # ground response std (signal units); 0 = estimate online
    drift_per_sqrt_m: float = 0.002     # per-coil drift random walk along the path (signal/sqrt(m))
    template_offsets: tuple = (-0.12, -0.08, -0.04, 0.0)   # object positions behind the window centre
    threshold_sigma: float = 5.0        # detection threshold on the normalised statistic
    min_amplitude: float = 0.0          # absolute floor on the fitted peak response (signal units)
    initial_noise: float = 0.003        # white noise per sample assumed until estimated
    warmup_s: float = 1.0               # no detections before the estimators have this much data
    lateral_step_m: float = 0.0275      # template grid across the array
    lateral_margin_m: float = 0.06      # templates this far beyond the outer coils
    template_depths: tuple = (0.0, 0.06, 0.12, 0.2, 0.32, 0.45)
    max_depth_m: float = 0.6            # deepest object the refinement considers
    refine_back_m: float = 0.16         # the refinement looks this far behind the window centre
    max_ahead_m: float = 0.0            # an object fitted further ahead than this waits a bin
    explain_max_depth_m: float = 0.2    # reports taken out of the data (no re-report, no phantom
    explain_min_snr: float = 8.0        # from their tails) must be shallow, clear ...
    explain_max_mass_g: float = 30.0    # ... and mine- or fragment-sized
    duplicate_m: float = 0.12           # a fit this close to a report of this pass is that object
    duplicate_sigma: float = 2.0        # ... and one within this many sigmas of it, both ways
    shadow_m: float = 0.4               # weaker fits this close to a report ...
    shadow_ratio: float = 0.25          # ... with less than this share of its mass, or whose own
                                        # peak response is below the report's response there, are
                                        # that report's remainder
    min_explained: float = 0.2          # fit check: share of the window's excess energy explained
    candidate_sep_m: float = 0.25       # a second peak across the array this far away is tried too
    neighbour_min_m: float = 0.3        # a poor fit is retried with the responses of reports this
    neighbour_max_m: float = 1.2        # far from it projected out (a strong neighbour's tail)
    deep_m: float = 0.25                # fits deeper than this (broad, ground-like responses) ...
    deep_threshold_sigma: float = 12.0  # ... need this SNR
    max_turn_deg: float = 12.0          # heading change that ends a straight window
    max_bin_s: float = 1.0              # a bin lasting longer (robot stopped) breaks the window
    norm_bins: int = 400                # bins of statistic history for the robust normalisation
    signal_per_gram: float = 1.0        # signal units per gram of metal on the coil axis at r=0
    position_floor_m: float = 0.015     # added (in quadrature) to the position sigma
    max_sigma_m: float = 0.5            # cap of the fitted position/depth sigma
    sensor: str = 'metal'

    def __post_init__(self):
        positive = ('bin_m', 'window_back_m', 'min_back_m', 'window_ahead_m', 'ground_corr_m',
                    'threshold_sigma', 'initial_noise', 'lateral_step_m', 'max_depth_m',
                    'max_turn_deg', 'max_bin_s', 'signal_per_gram',
                    'position_floor_m', 'max_sigma_m')
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise DetectionError(f'metal detector config: {name} must be > 0, got {value!r}')
        if self.ground_compensation not in ('model', 'none'):
            raise DetectionError("metal detector config: ground_compensation must be 'model' or "
                                 f"'none', got {self.ground_compensation!r}")
        if self.min_amplitude < 0 or self.warmup_s < 0 or self.ground_sigma < 0 or self.drift_per_sqrt_m < 0:
            raise DetectionError('metal detector config: min_amplitude, warmup_s, ground_sigma and '
                                 'drift_per_sqrt_m must be >= 0')
        if self.min_back_m > self.window_back_m:
            raise DetectionError('metal detector config: min_back_m must be <= window_back_m')
        if not self.template_depths or min(self.template_depths) < 0:
            raise DetectionError('metal detector config: template_depths must be a non-empty list of '
                                 'depths >= 0')
        if self.norm_bins < 20:
            raise DetectionError('metal detector config: norm_bins must be >= 20')


def md_kernel(a: float, horizontal: np.ndarray, vertical) -> np.ndarray:
    """Coil response per unit mass: ``(a^2 / (a^2 + r^2))^3`` with ``r^2 = horizontal^2 + vertical^2``."""
    a2 = a * a
    return (a2 / (a2 + np.square(horizontal) + np.square(vertical))) ** 3


class _FilterBank:
    """GLS filters of one window shape (``nb`` bins back, ``nf`` ahead, ``n`` coils)."""

    def __init__(self, coil_y, bin_m, nb, nf, sigma_b, ground_sigma, corr_m, drift, templates):
        self.nb, self.nf = nb, nf
        s = np.arange(-nb, nf + 1) * bin_m
        n = len(coil_y)
        self.s = np.repeat(s, n)                       # bin-major, coil-minor
        self.y = np.tile(np.asarray(coil_y, float), len(s))
        m = len(self.s)
        cov = np.eye(m) * sigma_b ** 2
        if ground_sigma > 0:
            d2 = (self.s[:, None] - self.s[None, :]) ** 2 + (self.y[:, None] - self.y[None, :]) ** 2
            cov += ground_sigma ** 2 * np.exp(-d2 / corr_m ** 2)
        # per-coil drift: a random walk along the path, and an unknown per-coil offset (nuisance,
        # projected out: the coil baselines)
        same = self.y[:, None] == self.y[None, :]
        u = self.s - self.s[0]
        cov += same * drift ** 2 * np.minimum(u[:, None], u[None, :])
        b = np.array([(np.arange(m) % n == i).astype(float) for i in range(n)]).T
        ci = np.linalg.inv(cov)
        cib = ci @ b
        self.q = ci - cib @ np.linalg.solve(b.T @ cib, cib.T)     # Q: GLS with nuisance projected out
        self.q = 0.5 * (self.q + self.q.T)
        g = templates(self.s, self.y)                             # (m, K) unit-mass templates
        self.f = self.q @ g                                       # (m, K)
        self.fg = np.maximum(np.einsum('mk,mk->k', self.f, g), 1e-30)
        self.norm = np.sqrt(self.fg)


class MetalDetectorProcessor:
    """Streaming processor for one metal-detector array. Feed poses and samples, get detections.

    ``add_pose(t, x, y, yaw)`` (robot base_link in map) and ``add_sample(t, signals)`` may arrive
    in any interleaving; samples wait until the pose history covers their timestamp. ``poll()``
    processes what can be processed and returns new detections.
    """

    def __init__(self, robot: RobotGeometry, config: MetalDetectorConfig | None = None,
                 poses: PoseHistory | None = None):
        self.config = cfg = config or MetalDetectorConfig()
        md = robot.metal_detector
        self.coil_radius = md.coil_radius
        self.coil_height = md.coil_height
        self.offsets = md.coil_positions()
        self.coil_y = np.asarray(self.offsets[:, 1], dtype=float)
        self.n = len(self.offsets)
        self.poses = poses if poses is not None else PoseHistory()
        self._pending: list[tuple[float, np.ndarray]] = []
        self._next_id = 1
        self._last_t = -math.inf
        self._t0: float | None = None
        # white noise per coil, from second differences of consecutive samples
        self._noise = np.full(self.n, cfg.initial_noise)
        self._prev: list[np.ndarray] = []
        self._prev_t = -math.inf
        # ground amplitude estimate (neighbouring-coil differences about a slow per-coil baseline)
        self._base: np.ndarray | None = None
        self._dvar: float | None = None
        # path grid
        self._s = 0.0
        self._last_centre: np.ndarray | None = None
        self._acc = None                       # the bin being filled
        self._bin_index: int | None = None
        self._forward: bool | None = None      # travelling forwards (True) or backwards
        self._explained: list[tuple] = []      # reported objects (x, y, depth, mass) still near the array
        # finalized bins: t, duration, count, cx, cy, cos yaw, sin yaw, break flag, z (n), mean path s
        self._bins = GrowBuffer(9 + self.n)
        self._bin_base = 0                     # absolute index of the first row kept in _bins
        # lateral template grid (body y) and depth grid
        lo = float(self.coil_y.min()) - cfg.lateral_margin_m
        hi = float(self.coil_y.max()) + cfg.lateral_margin_m
        self.lateral = np.arange(lo, hi + 1e-9, cfg.lateral_step_m)
        self.depths = np.asarray(sorted(cfg.template_depths), dtype=float)
        self.offsets_s = np.asarray(sorted(cfg.template_offsets), dtype=float)
        self._ref = (int(np.argmin(np.abs(self.offsets_s))), min(1, len(self.depths) - 1))
        self._nf = max(1, int(round(cfg.window_ahead_m / cfg.bin_m)))
        nb_max = max(1, int(round(cfg.window_back_m / cfg.bin_m)))
        nb_min = max(1, int(round(cfg.min_back_m / cfg.bin_m)))
        self._backs = sorted({nb_max, *[int(v) for v in np.linspace(nb_min, nb_max, 3)]})
        self._banks: dict[int, _FilterBank] = {}
        self._bank_params: tuple | None = None
        # statistic per centre bin: best normalised-by-model T over depth per lateral position
        self._stat = GrowBuffer(len(self.lateral))      # T (max over depth), NaN where not computed
        self._mass = GrowBuffer(len(self.lateral))      # mass at that depth
        self._didx = GrowBuffer(len(self.lateral))      # depth index
        self._scale = np.ones(len(self.lateral))
        self._scale_stale = True
        self._quiet_until = np.zeros(len(self.lateral), dtype=np.int64)
        self._refine_result = ''
        self._hist = GrowBuffer(len(self.lateral))      # reference-depth T, for the normalisation
        self._next_centre = 0                  # absolute bin index of the next window centre
        self._recent: list[tuple] = []         # reported x, y, mass, depth, position covariance
        self.stats = {'samples': 0, 'dropped_no_pose': 0, 'rejected': 0, 'detections': 0}
        self.rejected: list[tuple] = []        # the last candidates refused by the fit check (diagnostics)

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
        ready, self._pending = self.poses.split_ready(self._pending, 0.02, self.stats)
        if ready:
            ts = np.array([r[0] for r in ready])
            poses = self.poses.at(ts, tolerance=0.02)
            centres = body_to_map(poses, np.array([[float(self.offsets[:, 0].mean()), 0.0]]))[:, 0, :]
            for k, (t, values) in enumerate(ready):
                self._ingest(t, values, centres[k], float(poses[k, 2]))
        return self._process(flush=False)

    def flush(self) -> list[Detection]:
        """End of a run: close the open bin and report what the data allow."""
        if self._acc is not None:
            self._close_bin()
            self._acc = None
        return self._process(flush=True)

    # -- per-sample conditioning --------------------------------------------------------------
    def _ingest(self, t: float, values: np.ndarray, centre: np.ndarray, yaw: float) -> None:
        cfg = self.config
        self.stats['samples'] += 1
        if self._t0 is None:
            self._t0 = t
        self._update_noise(t, values)
        if self._last_centre is not None:
            self._s += float(math.hypot(centre[0] - self._last_centre[0], centre[1] - self._last_centre[1]))
        self._last_centre = centre
        index = int(math.floor(self._s / cfg.bin_m))
        if self._acc is not None and index != self._bin_index:
            self._close_bin()
            gap = index - self._bin_index - 1
            if gap > 0:          # faster than one sample per bin: fill by interpolation later
                self._pending_gap = gap
            self._acc = None
        if self._acc is None:
            self._acc = [t, t, 0, np.zeros(2), 0.0, 0.0, np.zeros(self.n), 0.0]
            self._bin_index = index
        acc = self._acc
        acc[1] = t
        acc[2] += 1
        acc[3] += centre
        acc[4] += math.cos(yaw)
        acc[5] += math.sin(yaw)
        acc[6] += values
        acc[7] += self._s

    def _update_noise(self, t: float, values: np.ndarray) -> None:
        cfg = self.config
        if t - self._prev_t > 0.2:
            self._prev = []
        self._prev_t = t
        self._prev.append(values)
        if len(self._prev) > 3:
            self._prev.pop(0)
        if len(self._prev) == 3:
            d2 = (self._prev[2] - 2 * self._prev[1] + self._prev[0]) / math.sqrt(6.0)
            warm = self._t0 is not None and t - self._t0 >= cfg.warmup_s
            beta = 0.002 if warm else 0.02
            clipped = np.minimum(np.abs(d2), 3.0 * self._noise)
            self._noise = np.maximum(np.sqrt((1 - beta) * self._noise ** 2 + beta * clipped ** 2), 1e-9)
        # ground amplitude: neighbouring-coil differences about slow per-coil baselines
        if self._base is None:
            self._base = values.copy()
        self._base += 0.002 * (values - self._base)
        r = values - self._base
        dv = float(np.median(np.square(np.diff(r)))) / 0.455
        if self._dvar is None:
            self._dvar = dv
        else:   # clipped like the noise estimate: a target passing under the array is not ground
            warm = self._t0 is not None and t - self._t0 >= cfg.warmup_s
            self._dvar += (0.002 if warm else 0.02) * (min(dv, 4.0 * self._dvar) - self._dvar)

    def _close_bin(self) -> None:
        t0, t1, count, csum, c, s, vsum, ssum = self._acc
        cfg = self.config
        row = np.empty(9 + self.n)
        norm = math.hypot(c, s) or 1.0
        row[:8] = (0.5 * (t0 + t1), t1 - t0, count, csum[0] / count, csum[1] / count, c / norm, s / norm,
                   float(t1 - t0 > cfg.max_bin_s))
        row[8:8 + self.n] = vsum / count
        row[8 + self.n] = ssum / count
        if self._explained:         # objects already reported on this pass: their response is known
            self._explained = [o for o in self._explained if math.hypot(o[0] - row[3], o[1] - row[4]) < 1.2]
            for ox, oy, od, om in self._explained:
                cx = row[3] - row[6] * self.coil_y
                cy = row[4] + row[5] * self.coil_y
                row[8:8 + self.n] -= om * md_kernel(self.coil_radius, np.hypot(cx - ox, cy - oy),
                                                    self.coil_height + od)
        # direction of travel against the heading: a reverse leg folds the path back over the
        # same ground, so a change of direction breaks the straight window like a turn
        if len(self._bins):
            prev = self._bins.view[-1]
            along = (row[3] - prev[3]) * row[5] + (row[4] - prev[4]) * row[6]
            forward = along >= 0.0
            if self._forward is not None and forward != self._forward:
                row[7] = 1.0
            self._forward = forward
        gap = getattr(self, '_pending_gap', 0)
        self._pending_gap = 0
        if gap and len(self._bins):
            prev = self._bins.view[-1].copy()
            for g in range(1, gap + 1):
                w = g / (gap + 1)
                fill = prev + w * (row - prev)
                fill[1], fill[2], fill[7] = 0.0, 0.0, 0.0
                self._bins.append(fill)
        self._bins.append(row)

    # -- filters ------------------------------------------------------------------------------
    def _templates(self, s: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Unit-mass responses (m, O*L*D) of objects at along-track offsets x lateral positions x
        depths (the template grid)."""
        a, h = self.coil_radius, self.coil_height
        off = self.offsets_s[None, :, None, None]
        lat = self.lateral[None, None, :, None]
        dep = self.depths[None, None, None, :]
        r = np.sqrt((s[:, None, None, None] - off) ** 2 + (y[:, None, None, None] - lat) ** 2)
        return md_kernel(a, r, h + dep).reshape(len(s), -1)

    def _ensure_banks(self) -> None:
        cfg = self.config
        counts = self._bins.view[-50:, 2]
        per_bin = float(np.median(counts[counts > 0])) if np.any(counts > 0) else 1.0
        sigma_b = float(np.median(self._noise)) / math.sqrt(max(per_bin, 1.0))
        if cfg.ground_compensation == 'none':
            ground = 0.0
        elif cfg.ground_sigma > 0:
            ground = cfg.ground_sigma
        else:
            rho = math.exp(-(float(np.median(np.diff(np.sort(self.coil_y)))) / cfg.ground_corr_m) ** 2)
            white = float(np.median(self._noise)) ** 2
            g2 = ((self._dvar or 0.0) / 2.0 - white) / max(1.0 - rho, 1e-3)
            ground = math.sqrt(min(max(g2, 0.25 * sigma_b ** 2), 100.0 * sigma_b ** 2))
        params = (sigma_b, ground)
        if self._bank_params is not None:
            old_b, old_g = self._bank_params
            settled = self._t0 is not None and self._last_t - self._t0 > 30.0
            if abs(math.log(sigma_b / old_b)) < (0.5 if settled else 0.3) and \
                    abs(math.log(max(ground, 1e-9) / max(old_g, 1e-9))) < (0.6 if settled else 0.4):
                return
        self._bank_params = params
        self._banks = {nb: _FilterBank(self.coil_y, cfg.bin_m, nb, self._nf, sigma_b, ground,
                                       cfg.ground_corr_m, cfg.drift_per_sqrt_m, self._templates)
                       for nb in self._backs}

    # -- detection ----------------------------------------------------------------------------
    def _process(self, flush: bool) -> list[Detection]:
        n_bins = len(self._bins)
        if n_bins == 0:
            return []
        end_abs = self._bin_base + n_bins          # absolute index one past the last bin
        last_centre = end_abs - 1 - self._nf       # the newest centre with a full forward window
        if self._next_centre <= last_centre:
            self._ensure_banks()
        out = []
        while self._next_centre <= last_centre:
            c_abs = self._next_centre
            self._compute_centre(c_abs)
            self._next_centre += 1
            det = self._test_peak(c_abs)
            if det is not None:
                out.append(det)
                # the object is explained: take its fitted response out of the data, so that
                # later windows neither report it again nor fit a phantom to its tails
                self._subtract(det)
        self._trim()
        self.stats['detections'] += len(out)
        return out

    def _append_stat(self, values) -> None:
        nan = np.full(len(self.lateral), np.nan)
        if values is None:
            self._stat.append(nan)
            self._mass.append(nan)
            self._didx.append(nan)
            self._hist.append(nan)
        else:
            for buf, v in zip((self._stat, self._mass, self._didx, self._hist), values):
                buf.append(v)

    def _window(self, c_abs: int):
        """(back bins, window rows) of the straight window around centre ``c_abs``, or None."""
        cfg = self.config
        rows = self._bins.view
        c = c_abs - self._bin_base
        lo_max = c - self._backs[-1]
        hi = c + self._nf
        if hi >= len(rows) or c - self._backs[0] < 0:
            return None
        seg = rows[max(lo_max, 0):hi + 1]
        cos_t = np.clip(seg[:, 5] * rows[c, 5] + seg[:, 6] * rows[c, 6], -1.0, 1.0)
        bad = (cos_t < math.cos(math.radians(cfg.max_turn_deg))) | (seg[:, 7] > 0.5)
        k_c = c - max(lo_max, 0)
        if bad[k_c:].any():
            return None
        before = np.nonzero(bad[:k_c])[0]
        avail = k_c - (before[-1] + 1 if len(before) else 0)
        nb = max((b for b in self._backs if b <= avail), default=None)
        if nb is None:
            return None
        if self._t0 is None or rows[c - nb, 0] - self._t0 < cfg.warmup_s:
            return None
        return nb, rows[c - nb:hi + 1]

    def _compute_centre(self, c_abs: int) -> None:
        win = self._window(c_abs)
        if win is None:
            self._append_stat(None)
            return
        nb, rows = win
        bank = self._banks[nb]
        y = rows[:, 8:8 + self.n].ravel()
        num = y @ bank.f                                   # (O*L*D,)
        shape = (len(self.offsets_s), len(self.lateral), len(self.depths))
        t = (num / bank.norm).reshape(shape)
        mass = (num / bank.fg).reshape(shape)
        flat = t.transpose(1, 0, 2).reshape(len(self.lateral), -1)
        best = np.argmax(flat, axis=1)
        idx = np.arange(len(self.lateral))
        o_i, d_i = np.divmod(best, len(self.depths))
        self._append_stat((flat[idx, best], mass[o_i, idx, d_i], best.astype(float),
                           t[self._ref[0], :, self._ref[1]]))

    def _test_peak(self, c_abs: int) -> Detection | None:
        """Threshold test of the newest window: the best template anywhere in it."""
        cfg = self.config
        c = c_abs - self._bin_base
        stat = self._stat.view
        if c >= len(stat) or not np.any(np.isfinite(stat[c])):
            return None
        # robust normalisation: spread of the reference statistic over recent bins, per position
        if c % 10 == 0 or self._scale_stale:
            hist = self._hist.view[max(0, c - cfg.norm_bins):c + 1]
            ok = np.isfinite(hist[:, 0])
            if ok.sum() >= 50:
                # trimmed: the bins a strong or deep object (a UXO's broad response can fill a
                # third of the history) lifts far above the spread are left out, twice, so a
                # neighbour does not raise the threshold of the ground around it
                h = hist[ok]
                med = np.median(h, axis=0)
                mad = 1.4826 * np.median(np.abs(h - med), axis=0)
                for _ in range(2):
                    hm = np.where(np.abs(h - med) <= 4.0 * np.maximum(mad, 1e-9), h, np.nan)
                    med = np.nanmedian(hm, axis=0)
                    mad = 1.4826 * np.nanmedian(np.abs(hm - med), axis=0)
                self._scale = np.clip(np.nan_to_num(mad, nan=10.0), 0.8, 10.0)
                self._scale_stale = False
        snr_row = stat[c] / self._scale
        # candidates: local maxima across the array above the threshold, strongest first; a
        # strong neighbour's tail that fits poorly must not hide a weaker object elsewhere
        row = np.where(np.isfinite(snr_row), snr_row, -np.inf)
        padded = np.concatenate([[-np.inf], row, [-np.inf]])
        local = (row >= padded[:-2]) & (row >= padded[2:]) & (row >= cfg.threshold_sigma)
        order = [int(k) for k in np.argsort(-row) if local[k]]
        prev = stat[c - 1] / self._scale if c > 0 else None
        tried = []
        for j in order[:3]:
            if any(abs(self.lateral[j] - self.lateral[k]) < cfg.candidate_sep_m for k in tried):
                continue
            tried.append(j)
            if c_abs < self._quiet_until[j]:
                continue
            peak = float(snr_row[j])
            o_i = int(self._didx.view[c, j]) // len(self.depths)
            d_i = int(self._didx.view[c, j]) % len(self.depths)
            growing = prev is not None and np.isfinite(prev[j]) and peak > float(np.nanmax(prev))
            if o_i == len(self.offsets_s) - 1 and growing:
                return None    # the best template is still the front one and rising: wait a bin
            det = self._refine(c_abs, j, peak, float(self.offsets_s[o_i]), float(self.depths[d_i]))
            if det is not None:
                return det
            if self._refine_result == 'poor_fit':
                # a poor fit is not refitted every bin (nor its neighbours across the array)
                near = np.abs(self.lateral - self.lateral[j]) < cfg.candidate_sep_m
                self._quiet_until[near] = c_abs + 4
        return None

    def _fit_one(self, q, y, cx, cy, place, j, s0, d0):
        """Fit one object in a window with GLS metric ``q``: coarse grid around the detecting
        template, then a shrinking pattern search. Returns (result '' | 'ahead' | 'poor_fit',
        (along, lateral, depth), T, mass, explained share, excess chi-square)."""
        cfg = self.config
        a, h = self.coil_radius, self.coil_height
        qy = q @ y

        def stat(pts):
            """T and mass of objects at ``pts`` (k, 3): along offset, lateral, depth."""
            px, py = place(pts[:, 0], pts[:, 1])
            r = np.hypot(cx[:, None] - px[None, :], cy[:, None] - py[None, :])
            g = md_kernel(a, r, h + np.maximum(pts[:, 2], 0.0)[None, :])
            num = qy @ g
            den = np.maximum(np.einsum('mk,mk->k', g, q @ g), 1e-30)
            return num / np.sqrt(den), num / den

        ahead = self._nf * cfg.bin_m
        deep = d0 >= 0.2
        s_vals = np.arange(-(0.25 if deep else cfg.refine_back_m), 0.5 * ahead + 1e-9, 0.03)
        u_vals = self.lateral[j] + np.array([-1.0, 0.0, 1.0]) * (0.06 if deep else 0.03)
        d_vals = np.unique(np.clip([0.5 * d0, d0, 1.5 * d0 + 0.03], 0.0, cfg.max_depth_m))
        grid = np.array(np.meshgrid(s_vals, u_vals, d_vals, indexing='ij')).reshape(3, -1).T
        grid = np.vstack([grid, [s0, self.lateral[j], d0]])
        t, _ = stat(grid)
        best = grid[int(np.argmax(t))].copy()
        t_best = float(t.max())
        step = np.array([0.015, 0.015, 0.03])
        moves = np.vstack([np.eye(3), -np.eye(3)])
        for _ in range(40):
            cand = best[None, :] + moves * step[None, :]
            cand[:, 2] = np.clip(cand[:, 2], 0.0, cfg.max_depth_m)
            t, _ = stat(cand)
            k = int(np.argmax(t))
            if t[k] > t_best + 1e-9:
                best, t_best = cand[k].copy(), float(t[k])
            else:
                step *= 0.5
                if step[0] < 0.001:
                    break
        t_fit, m_fit = stat(best[None, :])
        t_fit, mass = float(t_fit[0]), float(m_fit[0])
        s_best, u_best, d_best = (float(v) for v in best)
        # the GLS amplitude of a broad template the ground model can almost explain is unstable;
        # the plain least-squares amplitude (per-coil offsets removed) bounds what the data hold
        px, py = place(s_best, u_best)
        g = md_kernel(a, np.hypot(cx - px, cy - py), h + d_best).reshape(-1, self.n)
        gt = g - g.mean(axis=0)
        yt = y.reshape(-1, self.n) - y.reshape(-1, self.n).mean(axis=0)
        m_ls = float(np.sum(gt * yt) / max(float(np.sum(gt * gt)), 1e-30))
        mass = min(mass, max(m_ls, 0.0) * 1.5)
        # goodness of fit: the chi-square left after removing the fitted response, against the
        # degrees of freedom: a window whose energy the single-object model does not explain (the
        # edge of a stronger object ahead, ground the model misses) is not a clean detection
        yqy = float(y @ qy)
        dof = len(y) - self.n - 1
        scale2 = float(self._scale[j]) ** 2
        excess = (yqy - t_fit * t_fit) / scale2 - dof
        explained = (t_fit * t_fit / scale2) / max(yqy / scale2 - dof, 1e-9)
        if s_best > cfg.max_ahead_m:
            result = 'ahead'
        elif excess > 6.0 * math.sqrt(2.0 * dof) and explained < cfg.min_explained:
            result = 'poor_fit'
        else:
            result = ''
        return result, best, t_fit, mass, explained, excess

    def _neighbour_templates(self, cx, cy, px, py):
        """Unit responses at the window's coil samples of the reported objects near a candidate at
        (px, py) (but not that candidate itself), with their derivatives along x, y and depth:
        (m, 4k) or None."""
        cfg = self.config
        a, h = self.coil_radius, self.coil_height
        cols = []
        for ox, oy, _m, od, _cov in self._recent:
            dist = math.hypot(ox - px, oy - py)
            if not cfg.neighbour_min_m <= dist <= cfg.neighbour_max_m:
                continue
            if float(np.min(np.hypot(cx - ox, cy - oy))) > cfg.neighbour_max_m:
                continue
            e = 0.01
            base = md_kernel(a, np.hypot(cx - ox, cy - oy), h + od)
            cols += [base,
                     (md_kernel(a, np.hypot(cx - ox - e, cy - oy), h + od) - base) / e,
                     (md_kernel(a, np.hypot(cx - ox, cy - oy - e), h + od) - base) / e,
                     (md_kernel(a, np.hypot(cx - ox, cy - oy), h + od + e) - base) / e]
        if not cols:
            return None
        return np.column_stack(cols)

    def _refine(self, c_abs: int, j: int, snr: float, s0: float, d0: float) -> Detection | None:
        """Fit one object in the window of centre ``c_abs`` (exact coil positions of every bin,
        the window's GLS metric); None if it is still ahead, fits poorly or is a fit's remainder."""
        cfg = self.config
        self._refine_result = ''
        win = self._window(c_abs)
        if win is None:
            return None
        nb, rows = win
        bank = self._banks[nb]
        y = rows[:, 8:8 + self.n].ravel()
        a, h = self.coil_radius, self.coil_height
        # coil centres of every bin in map coordinates (heading wobble and curvature included)
        cx = (rows[:, 3:4] - rows[:, 6:7] * self.coil_y[None, :]).ravel()
        cy = (rows[:, 4:5] + rows[:, 5:6] * self.coil_y[None, :]).ravel()
        centre = rows[nb]
        cos_y, sin_y = float(centre[5]), float(centre[6])
        # direction of travel along the path (backwards on a reverse leg)
        step_xy = rows[min(nb + 3, len(rows) - 1), 3:5] - rows[max(nb - 3, 0), 3:5]
        norm = float(np.hypot(*step_xy))
        ux, uy = (step_xy / norm) if norm > 1e-6 else (cos_y, sin_y)

        def place(sv, uv):
            return centre[3] + ux * sv - sin_y * uv, centre[4] + uy * sv + cos_y * uv

        q = bank.q
        fit = self._fit_one(q, y, cx, cy, place, j, s0, d0)
        if fit[0] == 'poor_fit':
            # a known strong neighbour's tail in the window (a reported object the data were not
            # corrected for: large or deep): its response, with free amplitude and small position
            # and depth corrections, becomes a nuisance projected out of the metric; refit
            px, py = place(fit[1][0], fit[1][1])
            nuis = self._neighbour_templates(cx, cy, px, py)
            if nuis is not None:
                qb = q @ nuis
                gram = nuis.T @ qb
                try:
                    q2 = q - qb @ np.linalg.solve(gram + 1e-12 * np.trace(gram) * np.eye(len(gram)), qb.T)
                except np.linalg.LinAlgError:
                    q2 = None
                if q2 is not None:
                    fit2 = self._fit_one(0.5 * (q2 + q2.T), y, cx, cy, place, j, s0, d0)
                    if fit2[0] != 'poor_fit' and fit2[2] / float(self._scale[j]) >= cfg.threshold_sigma:
                        self.stats['refit_beside_neighbour'] = self.stats.get('refit_beside_neighbour', 0) + 1
                        q, fit = 0.5 * (q2 + q2.T), fit2
                        snr = 0.0        # the bank's statistic held the neighbour: the refit's counts
        result, best, t_fit, mass, explained, excess = fit
        s_best, u_best, d_best = (float(v) for v in best)
        if result == 'ahead':
            self._refine_result = 'ahead'
            return None        # the object is still ahead of the window centre: decide later
        if result == 'poor_fit':
            self.stats['poor_fit'] = self.stats.get('poor_fit', 0) + 1
            self._refine_result = 'poor_fit'
            self.rejected.append((*place(s_best, u_best), 'poor_fit', snr, round(explained, 2),
                                  round(excess, 1)))
            del self.rejected[:-50]
            return None
        px, py = place(s_best, u_best)
        g = md_kernel(a, np.hypot(cx - px, cy - py), h + d_best).reshape(-1, self.n)
        if not (mass > 0 and math.isfinite(mass) and math.isfinite(t_fit)):
            return None
        x, yy = (float(v) for v in place(s_best, u_best))
        snr = max(snr, t_fit / float(self._scale[j]))
        if d_best >= cfg.deep_m and snr < cfg.deep_threshold_sigma:
            self.stats['deep_weak'] = self.stats.get('deep_weak', 0) + 1
            self._refine_result = 'poor_fit'
            return None
        # the time of the object: the bin nearest the fitted along-track position
        rows_all = self._bins.view
        c = min(max(c_abs - self._bin_base + int(round(s_best / cfg.bin_m)), 0), len(rows_all) - 1)
        row = rows_all[c]
        nearest = int(np.argmin(np.abs(self.coil_y - u_best)))
        strength = mass * float(md_kernel(a, abs(self.coil_y[nearest] - u_best), h + d_best))
        if strength < cfg.min_amplitude:
            return None
        # position uncertainty: the Cramer-Rao bound of this fit (Fisher information of along,
        # lateral, depth and mass in the window's GLS metric, inflated by the normalisation
        # scale), rotated into map; an object beside the array or a deep, broad one is placed
        # much less precisely than one under a coil, and fusion's gates and weights need to know
        cov, depth_sigma = self._fit_covariance(q, cx, cy, place, best, mass, float(self._scale[j]),
                                                (ux, uy), (cos_y, sin_y))
        cov = cov + np.eye(2) * cfg.position_floor_m ** 2
        # what a fit leaves of an object it just explained (its depth and mass trade off, more so
        # in a causal window) is not a second object: weak fits close to a stronger report are
        # not, and neither is a fit that lies within the other's uncertainty while the other lies
        # within its own (two loose fits of one object beside the array)
        peak = mass * float(md_kernel(a, 0.0, h + d_best))
        for px, py, pm, pd, pcov in self._recent:
            dist = math.hypot(x - px, yy - py)
            d = np.array([x - px, yy - py])
            mutual = max(float(d @ np.linalg.solve(cov, d)), float(d @ np.linalg.solve(pcov, d)))
            tail = pm * float(md_kernel(a, dist, h + pd))     # the report's response here
            if dist < cfg.duplicate_m or mutual < cfg.duplicate_sigma ** 2 or (
                    dist < cfg.shadow_m and (mass < cfg.shadow_ratio * pm or peak < tail)):
                self.stats['shadowed'] = self.stats.get('shadowed', 0) + 1
                self._refine_result = 'poor_fit'
                return None
        sigma = math.sqrt(min(float(np.linalg.eigvalsh(cov)[-1]), cfg.max_sigma_m ** 2))
        # where the coils saw the fitted object most strongly, and how strongly: what the data
        # of this report actually hold, whatever the fit's position (fusion uses it to tell a
        # neighbour's tail, fitted as a second object, from a second object)
        resp = mass * g.ravel()
        k_peak = int(np.argmax(resp))
        conf = float(1.0 / (1.0 + math.exp(-(snr - cfg.threshold_sigma) * 1.5)))
        det = Detection(
            t=float(row[0]), x=float(x), y=float(yy), depth=d_best, confidence=conf,
            strength=float(strength), sensor=cfg.sensor, id=self._next_id, sigma=sigma,
            extra={'mass_g': mass / cfg.signal_per_gram, 'snr': float(snr), 'coil': nearest,
                   'lateral_m': u_best, 'depth_sigma': depth_sigma,
                   'cov_xx': float(cov[0, 0]), 'cov_xy': float(cov[0, 1]), 'cov_yy': float(cov[1, 1]),
                   'peak_signal': float(resp[k_peak]), 'peak_x': float(cx[k_peak]),
                   'peak_y': float(cy[k_peak])})
        self._next_id += 1
        self._recent = [r for r in self._recent if math.hypot(x - r[0], yy - r[1]) < 2.0][-20:]
        self._recent.append((float(x), float(yy), float(mass), float(d_best), cov))
        return det

    def _fit_covariance(self, q, cx, cy, place, best, mass, scale, along_dir, head):
        """(2x2 map-frame position covariance, depth sigma) of a fitted object: the inverse Fisher
        information of (along, lateral, depth, mass) for ``mass * g`` in the GLS metric ``q``
        (unit-variance statistic), times ``scale^2`` (the adaptive normalisation: the noise the
        model misses). Capped at ``max_sigma_m`` per axis."""
        cfg = self.config
        a, h = self.coil_radius, self.coil_height
        step = 0.004
        s0, u0, d0 = (float(v) for v in best)

        def g(sv, uv, dv):
            px, py = place(sv, uv)
            return md_kernel(a, np.hypot(cx - px, cy - py), h + max(dv, 0.0))

        d_lo = max(d0 - step, 0.0)
        d_hi = d_lo + 2.0 * step
        cols = [mass * (g(s0 + step, u0, d0) - g(s0 - step, u0, d0)) / (2 * step),
                mass * (g(s0, u0 + step, d0) - g(s0, u0 - step, d0)) / (2 * step),
                mass * (g(s0, u0, d_hi) - g(s0, u0, d_lo)) / (d_hi - d_lo),
                g(s0, u0, d0)]
        jac = np.column_stack(cols)
        info = jac.T @ (q @ jac)
        cap = cfg.max_sigma_m ** 2
        try:
            cov4 = np.linalg.inv(info + np.diag([1.0 / cap, 1.0 / cap, 1.0 / cap, 0.0])) * scale * scale
        except np.linalg.LinAlgError:
            return np.eye(2) * cap, cfg.max_sigma_m
        # (along, lateral) -> map: along = travel direction, lateral = body left (heading + 90 deg)
        ux, uy = along_dir
        cos_y, sin_y = head
        rot = np.array([[ux, -sin_y], [uy, cos_y]])
        cov = rot @ cov4[:2, :2] @ rot.T
        cov = 0.5 * (cov + cov.T)
        return cov, float(math.sqrt(max(min(cov4[2, 2], cap), 0.0)))

    def _subtract(self, det: Detection) -> None:
        cfg = self.config
        if not (det.depth <= cfg.explain_max_depth_m and det.extra['snr'] >= cfg.explain_min_snr
                and det.extra['mass_g'] <= cfg.explain_max_mass_g):
            return    # only a well-determined fit is trusted to be taken out of the data
        rows = self._bins.view
        self._explained.append((det.x, det.y, det.depth, det.extra['mass_g'] * cfg.signal_per_gram))
        near = np.hypot(rows[:, 3] - det.x, rows[:, 4] - det.y) < 0.8
        if not near.any():
            return
        r = rows[near]
        cx = r[:, 3:4] - r[:, 6:7] * self.coil_y[None, :]
        cy = r[:, 4:5] + r[:, 5:6] * self.coil_y[None, :]
        resp = det.extra['mass_g'] * cfg.signal_per_gram * md_kernel(
            self.coil_radius, np.hypot(cx - det.x, cy - det.y), self.coil_height + det.depth)
        rows[near, 8:8 + self.n] -= resp

    def _trim(self) -> None:
        """Drop bins and statistics that no future window or peak test can need."""
        cfg = self.config
        keep_back = max(self._backs[-1], cfg.norm_bins) + 2
        drop = self._next_centre - keep_back - self._bin_base
        if drop < 512:
            return
        self._bins.drop(drop)
        for buf in (self._stat, self._mass, self._didx, self._hist):
            buf.drop(drop)
        self._bin_base += drop
