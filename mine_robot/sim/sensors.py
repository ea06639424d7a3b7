"""Sensor models of the built-in simulator: metal detector, GPR, camera, GNSS and IMU.

All positions are in the scenario's local frame (metres, x east, y north); times in seconds.

Metal detector (``MetalDetectorModel``)
    Signal units: dimensionless "detector units"; 1.0 is the response of 1 g of metal at the coil
    centre (r = 0). For a coil of radius ``a`` at height ``h`` and an object of ``m`` grams at depth
    ``d``, with ``r`` the 3-D distance from the coil centre to the object
    (``r = sqrt(dx² + dy² + (h + d)²)``)::

        signal = Σ m · (a² / (a² + r²))³   (md_response)
               + ground(x, y)               spatially correlated, std md_ground_amplitude,
                                            correlation length md_ground_correlation_m
               + drift_i(t)                 per coil, slowly mean-reverting walk, md_drift / sqrt(s)
               + N(0, md_noise²)            white, per sample

    With the default array (a = 0.11 m, h = 0.08 m) a 1 g minimum-metal mine at 10 cm gives
    ≈ 0.020 directly under a coil and falls to half ≈ 11 cm off-centre; a 200 g UXO at 30 cm
    gives ≈ 0.09. Scenario ``md_noise`` 0.002–0.005 makes the first hard but possible.

GPR (``GprModel``)
    One trace of ``samples`` (default 512) float32 values over ``time_window_ns`` (default 16 ns),
    sample ``k`` at ``t_k = k · time_window_ns / samples``. Time zero of the transmit pulse is at
    ``t0_ns`` (default 1.0 ns); the ground-surface reflection arrives at
    ``t_surface = t0 + 2·antenna_height/c`` and a reflector at horizontal offset ``h`` and depth
    ``d`` at ``t_surface + 2·sqrt(h² + d²)/v`` with ``v = c/sqrt(gpr_permittivity)`` (c = 0.2998
    m/ns). Each reflection is a Ricker wavelet (``centre_frequency_ghz``, default 1.0) of amplitude
    ``reflectivity · size · spreading · attenuation · beam``: ``size = min(1, (diameter/0.1)²)``,
    ``spreading = min(1, 0.1/dist)``, ``attenuation = exp(-2·gpr_attenuation·dist)``,
    ``beam = exp(-(θ/45°)²)`` with θ the off-nadir angle. Amplitude units: 1.0 = a perfect
    10-cm reflector 10 cm away with no loss. The surface reflection has amplitude
    ``(sqrt(eps) − 1)/(sqrt(eps) + 1)`` (≈ 0.42 at eps 6) with 5 % roughness; rocks and roots
    are random weak reflectors at ``gpr_clutter_density`` per m²; white noise ``gpr_noise``.
    So a plastic mine body (0.3) shows a clear hyperbola, a 2-cm metal fragment (1.0 × 0.04)
    a weak one.

Camera (``CameraModel``)
    A downward pinhole camera with the intrinsics of ``config/robot.yaml`` ``camera``: width ×
    height pixels (640 × 480), ``fx = fy = (width/2)/tan(horizontal_fov/2)`` (554.3 px at 60°),
    ``cx = width/2``, ``cy = height/2``; mounted at ``camera.xyz`` (0.90 m above ground), so one
    pixel is ≈ 1.6 mm of ground. Image ``bgr8``; image up = robot forward, image right = robot
    right. Renders a synthetic soil/vegetation texture (2 cm resolution) with a repeating 2 mm
    grain tile on top, and draws objects on the surface at their true size and yaw; buried objects
    are invisible. At the default 1 Hz and ≤ 0.6 m/s the 0.78 m along-track footprint overlaps.

GNSS (``GnssModel``)
    Antenna position with a first-order Gauss-Markov error whose std depends on the fix mode:
    ``rtk`` 0.02 m, ``float`` 0.5 m, ``single`` 2.0 m horizontal (vertical 2×), ``none`` = no fix.
    NMEA GGA quality 4 / 5 / 1 / 0; the reported sigma is the true std of the mode (honest).

IMU (``ImuModel``)
    Gyro z (rad/s) with white noise and a random-walk bias, accelerometer (m/s², body frame,
    gravity included), and an AHRS yaw with a constant heading bias and noise.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import cv2
import numpy as np

from mine_robot.robot import RobotGeometry
from mine_robot.sim.scenario import Scenario, SimObject, Soil

C_M_PER_NS = 0.299792458
GPR_SAMPLES = 512
GPR_TIME_WINDOW_NS = 16.0


def md_response(mass_g, coil_radius, r):
    """Metal-detector response ``m · (a² / (a² + r²))³`` (issue 4), broadcast over arrays."""
    a2 = np.square(coil_radius)
    return np.asarray(mass_g, dtype=float) * (a2 / (a2 + np.square(r))) ** 3


def ricker(t_ns, f_ghz: float):
    """Ricker wavelet of peak frequency ``f_ghz`` at times ``t_ns`` (peak 1 at t = 0)."""
    x = (math.pi * f_ghz * np.asarray(t_ns)) ** 2
    return (1.0 - 2.0 * x) * np.exp(-x)


# --------------------------------------------------------------------------------- ground field

class GroundField:
    """A stationary Gaussian random field precomputed on a grid, read with bilinear lookup.

    Std ``amplitude``; correlation length ``corr_len`` (the covariance falls to 1/e at that
    distance). Outside the grid the edge value is used.
    """

    def __init__(self, bounds: tuple[float, float, float, float], amplitude: float, corr_len: float,
                 rng: np.random.Generator, max_cells: int = 4_000_000):
        xmin, ymin, xmax, ymax = bounds
        res = min(corr_len / 4.0, 0.1)
        while ((xmax - xmin) / res + 2) * ((ymax - ymin) / res + 2) > max_cells:
            res *= 1.5
        self.res = res
        self.x0, self.y0 = xmin, ymin
        nx = int(math.ceil((xmax - xmin) / res)) + 2
        ny = int(math.ceil((ymax - ymin) / res)) + 2
        self.amplitude = amplitude
        white = rng.standard_normal((ny, nx)).astype(np.float32)
        sigma_px = max(corr_len / 2.0 / res, 0.5)  # Gaussian kernel: cov exp(-r²/(4σ²)) -> 1/e at 2σ
        field = cv2.GaussianBlur(white, (0, 0), sigmaX=sigma_px, sigmaY=sigma_px,
                                 borderType=cv2.BORDER_REFLECT)
        std = float(field.std())
        self.grid = (field / std * amplitude if std > 0 else field * 0.0).astype(np.float64)
        ny, nx = self.grid.shape
        self._flat = self.grid.ravel()
        self._origin = np.array([self.x0, self.y0])
        self._top = np.array([nx - 1.001, ny - 1.001])          # last cell with a right/upper neighbour
        self._corners = np.array([0, 1, nx, nx + 1], dtype=np.intp)
        self._values: list[float] | None = None      # the grid as floats, made on first use

    def __call__(self, x, y) -> np.ndarray:
        x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        return self.at(np.stack((x.ravel(), y.ravel()), axis=1)).reshape(x.shape)

    def at(self, xy: np.ndarray) -> np.ndarray:
        """Field values (m,) at the points ``xy`` (m, 2): bilinear between the four grid nodes
        around each point. A few points (the coils of one sample) are read with plain floats,
        many with numpy; both do the same arithmetic, so give identical values."""
        if xy.shape[0] <= 16:
            return np.array(self._at_floats(xy.tolist()), dtype=float)
        g = (xy - self._origin) / self.res
        np.maximum(g, 0.0, out=g)
        np.minimum(g, self._top, out=g)
        i = g.astype(np.intp)
        f = g - i
        fx, fy = f[:, 0], f[:, 1]
        v00, v01, v10, v11 = self._flat[(i[:, 1] * self.grid.shape[1] + i[:, 0])[:, None]
                                        + self._corners].T
        top = v00 + (v01 - v00) * fx
        return top + (v10 + (v11 - v10) * fx - top) * fy

    def _at_floats(self, points: list) -> list[float]:
        if self._values is None:
            self._values = self._flat.tolist()
        values, nx, res, x0, y0 = self._values, self.grid.shape[1], self.res, self.x0, self.y0
        top_x, top_y = self._top.tolist()
        out = []
        for x, y in points:
            gx, gy = (x - x0) / res, (y - y0) / res     # clipped to the grid as np.maximum/minimum
            gx = 0.0 if gx < 0.0 else (top_x if gx > top_x else gx)
            gy = 0.0 if gy < 0.0 else (top_y if gy > top_y else gy)
            ix, iy = int(gx), int(gy)
            fx, fy = gx - ix, gy - iy
            i = iy * nx + ix
            v00, v01, v10, v11 = values[i], values[i + 1], values[i + nx], values[i + nx + 1]
            top = v00 + (v01 - v00) * fx
            out.append(top + (v10 + (v11 - v10) * fx - top) * fy)
        return out


# ------------------------------------------------------------------------------ metal detector

class MetalDetectorModel:
    """Signals of a coil array over the scenario's buried metal (see the module docstring)."""

    def __init__(self, scenario: Scenario, robot: RobotGeometry, rng: np.random.Generator,
                 drift_time_constant_s: float = 120.0):
        md = robot.metal_detector
        self.coil_radius = md.coil_radius
        self.coil_height = md.coil_height
        self.n_coils = len(md.coil_y)
        soil = scenario.soil
        self.soil = soil
        metal = [o for o in scenario.objects if o.metal_g > 0.0]
        self._ox = np.array([o.x for o in metal], dtype=float)
        self._oy = np.array([o.y for o in metal], dtype=float)
        self._oz = np.array([o.depth_m for o in metal], dtype=float) + self.coil_height
        self._om = np.array([o.metal_g for o in metal], dtype=float)
        self._oz2 = self._oz ** 2
        self._oxy = np.stack((self._ox, self._oy))[None]    # (1, 2, objects)
        self._a2 = self.coil_radius ** 2
        self.rng = rng
        self.ground = GroundField(scenario.bounds(margin=5.0), soil.md_ground_amplitude,
                                  soil.md_ground_correlation_m, rng)
        self.drift = np.zeros(self.n_coils)
        self.tau = drift_time_constant_s
        self.t_last: float | None = None

    def metal_signal(self, x, y) -> np.ndarray:
        """Noise-free object response at coil centres ``x, y`` (arrays), signal units."""
        x, y = np.broadcast_arrays(np.atleast_1d(np.asarray(x, dtype=float)),
                                   np.atleast_1d(np.asarray(y, dtype=float)))
        return self._metal_at(np.stack((x.ravel(), y.ravel()), axis=1)).reshape(x.shape)

    def _metal_at(self, xy: np.ndarray) -> np.ndarray:
        """:meth:`metal_signal` at the points ``xy`` (m, 2)."""
        if self._om.size == 0:
            return np.zeros(xy.shape[0])
        d = xy[:, :, None] - self._oxy            # (m, 2, objects): dx, dy
        d *= d
        # md_response with r² = dx² + dy² + dz² used directly (no square root), summed by a product
        r2 = d[:, 0] + d[:, 1]
        r2 += self._oz2
        r2 += self._a2
        q = np.divide(self._a2, r2, out=r2)
        q3 = q * q
        q3 *= q
        return q3 @ self._om

    def sample(self, t: float, coil_xy: np.ndarray) -> np.ndarray:
        """One reading per coil at time ``t`` for coil centres ``coil_xy`` (n, 2)."""
        return self.sample_batch(np.array([t], dtype=float), np.asarray(coil_xy, dtype=float)[None])[0]

    def sample_batch(self, ts: np.ndarray, coil_xy: np.ndarray) -> np.ndarray:
        """Readings (k, n) at the k increasing times ``ts`` for coil centres ``coil_xy`` (k, n, 2);
        identical to k calls of :meth:`sample` (same random draws in the same order)."""
        k, n = coil_xy.shape[:2]
        noise = self.rng.standard_normal((k, 2, n))
        if self.drift.shape[0] != n:
            self.drift = np.zeros(n)
        flat = coil_xy.reshape(-1, 2)
        signal = self._metal_at(flat)
        signal += self.ground.at(flat)
        signal = signal.reshape(k, n)
        if self.soil.md_drift > 0.0:
            for i, t in enumerate(ts.tolist()):
                dt = 0.0 if self.t_last is None else max(t - self.t_last, 0.0)
                self.t_last = t
                if dt > 0.0:
                    self.drift = (self.drift * math.exp(-dt / self.tau)
                                  + self.soil.md_drift * math.sqrt(dt) * noise[i, 0])
                signal[i] += self.drift
        else:
            self.t_last = float(ts[-1])
            signal += self.drift
        signal += self.soil.md_noise * noise[:, 1, :]
        return signal


# ------------------------------------------------------------------------------------------ GPR

@dataclass(frozen=True)
class GprConfig:
    samples: int = GPR_SAMPLES
    time_window_ns: float = GPR_TIME_WINDOW_NS
    t0_ns: float = 1.0
    centre_frequency_ghz: float = 1.0
    max_offset_m: float = 1.0      # reflectors further than this horizontally are ignored
    beam_half_angle_deg: float = 45.0

    def times_ns(self) -> np.ndarray:
        return np.arange(self.samples) * (self.time_window_ns / self.samples)


def _object_effective_reflectivity(obj: SimObject) -> float:
    return obj.gpr_reflectivity * min(1.0, (obj.diameter_m / 0.1) ** 2)


class GprModel:
    """Monostatic GPR traces over the scenario (see the module docstring for units)."""

    def __init__(self, scenario: Scenario, robot: RobotGeometry, rng: np.random.Generator,
                 config: GprConfig | None = None):
        self.config = config or GprConfig()
        self.soil: Soil = scenario.soil
        self.rng = rng
        self.antenna_height = robot.gpr.xyz[2]
        eps = self.soil.gpr_permittivity
        self.velocity = C_M_PER_NS / math.sqrt(eps)                  # m/ns in the soil
        self.surface_reflectivity = (math.sqrt(eps) - 1.0) / (math.sqrt(eps) + 1.0)
        self.t_surface = self.config.t0_ns + 2.0 * self.antenna_height / C_M_PER_NS
        self.times = self.config.times_ns()
        self._surface_wavelet = ricker(self.times - self.t_surface, self.config.centre_frequency_ghz)
        buried = [o for o in scenario.objects if o.depth_m > 0.0]
        xs = [o.x for o in buried]
        ys = [o.y for o in buried]
        ds = [o.depth_m for o in buried]
        amps = [_object_effective_reflectivity(o) for o in buried]
        # rocks and roots: random weak reflectors over the scenario bounds
        xmin, ymin, xmax, ymax = scenario.bounds(margin=2.0)
        count = int(rng.poisson(self.soil.gpr_clutter_density * (xmax - xmin) * (ymax - ymin)))
        self.n_random_clutter = count
        xs += list(rng.uniform(xmin, xmax, count))
        ys += list(rng.uniform(ymin, ymax, count))
        ds += list(rng.uniform(0.03, 0.5, count))
        amps += list(rng.uniform(0.01, 0.12, count))
        self._rx, self._ry = np.array(xs, dtype=float), np.array(ys, dtype=float)
        self._rd, self._ra = np.array(ds, dtype=float), np.array(amps, dtype=float)

    def two_way_time_ns(self, horizontal_offset, depth):
        """Arrival time in the trace (ns) of a reflector (issue 4: t_surface + 2·sqrt(h²+d²)/v)."""
        return self.t_surface + 2.0 * np.sqrt(np.square(horizontal_offset) + np.square(depth)) / self.velocity

    def depth_of_time(self, t_ns):
        """Depth (m) directly below the antenna of an arrival at ``t_ns``."""
        return (np.asarray(t_ns) - self.t_surface) * self.velocity / 2.0

    def trace(self, x: float, y: float, noise: bool = True) -> np.ndarray:
        """One trace (float32, ``samples`` long) with the antenna over ground point (x, y).
        ``noise=False`` gives the deterministic model (no surface roughness, no white noise)."""
        return self.traces(np.array([x], dtype=float), np.array([y], dtype=float), noise)[0]

    def traces(self, xs: np.ndarray, ys: np.ndarray, noise: bool = True) -> np.ndarray:
        """(k, samples) float32 traces at antenna ground points ``xs, ys``; identical to k calls of
        :meth:`trace` (same random draws in the same order)."""
        cfg = self.config
        f = cfg.centre_frequency_ghz
        k, m = len(xs), self.times.size
        draws = self.rng.standard_normal((k, 1 + m)) if noise else None
        rough = 1.0 + 0.05 * draws[:, 0] if noise else np.ones(k)
        out = (self.surface_reflectivity * rough)[:, None] * self._surface_wavelet[None, :]
        h = np.hypot(self._rx[None, :] - xs[:, None], self._ry[None, :] - ys[:, None])
        rows, cols = np.nonzero(h < cfg.max_offset_m)
        if rows.size:
            hn, dn = h[rows, cols], self._rd[cols]
            dist = np.sqrt(hn ** 2 + dn ** 2)
            theta = np.degrees(np.arctan2(hn, dn))
            amp = (self._ra[cols] * np.minimum(1.0, 0.1 / dist)
                   * np.exp(-2.0 * self.soil.gpr_attenuation * dist)
                   * np.exp(-(theta / cfg.beam_half_angle_deg) ** 2))
            arrival = self.t_surface + 2.0 * dist / self.velocity
            echoes = amp[:, None] * ricker(self.times[None, :] - arrival[:, None], f)
            for i, row in enumerate(rows.tolist()):   # in order, as np.add.at (cheaper for few)
                out[row] += echoes[i]
        if noise and self.soil.gpr_noise > 0.0:
            out += self.soil.gpr_noise * draws[:, 1:]
        return out.astype(np.float32)


# --------------------------------------------------------------------------------------- camera

@dataclass(frozen=True)
class CameraIntrinsics:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


def camera_intrinsics(robot: RobotGeometry) -> CameraIntrinsics:
    cam = robot.camera
    f = cam.focal_px
    return CameraIntrinsics(cam.width, cam.height, f, f, cam.width / 2.0, cam.height / 2.0)


_OBJECT_COLOURS = {'mine': (40, 80, 60), 'uxo': (70, 85, 95), 'surface': (40, 80, 60),
                   'clutter': (120, 125, 130)}


class CameraModel:
    """Renders the downward camera's view of a synthetic ground (see module docstring)."""

    def __init__(self, scenario: Scenario, robot: RobotGeometry, rng: np.random.Generator,
                 texture_resolution: float = 0.02, max_texture_pixels: int = 30_000_000,
                 detail_resolution: float = 0.002, detail_period: float = 1.0):
        cam = robot.camera
        if abs(cam.rpy[1] - math.pi / 2) > math.radians(1.0) or abs(cam.rpy[0]) > math.radians(1.0):
            raise ValueError(f'camera model needs a downward camera (rpy ≈ [0, pi/2, yaw]), '
                             f'got rpy {cam.rpy}')
        self.intrinsics = camera_intrinsics(robot)
        self.mount = cam.xyz
        self.height_above_ground = cam.xyz[2]
        xmin, ymin, xmax, ymax = scenario.bounds(margin=3.0)
        res = texture_resolution
        while (xmax - xmin) * (ymax - ymin) / res ** 2 > max_texture_pixels:
            res *= 1.25
        self.res = res
        self.x0, self.y1 = xmin, ymax
        nx, ny = int(math.ceil((xmax - xmin) / res)), int(math.ceil((ymax - ymin) / res))
        self.texture = self._make_texture(nx, ny, rng)
        # fine grain (sand, pebbles) from a small tile repeated every detail_period metres, added on
        # top of the coarse soil texture: sharp at the camera's ~1.6 mm/px without a huge texture
        self.detail_res = detail_resolution
        self.detail = self._make_detail(int(round(detail_period / detail_resolution)), rng)
        # 3 x 3 copies: the view (about 520 x 390 grain pixels) then always falls inside, so the
        # warp never takes OpenCV's slow wrapped-border path (2 ms of a 4 ms frame)
        self._detail_3x3 = np.tile(self.detail, (3, 3, 1))
        self.surface_objects = [o for o in scenario.objects if o.on_surface]

    @staticmethod
    def _noise(nx: int, ny: int, cells: float, rng: np.random.Generator) -> np.ndarray:
        """Smooth unit noise of ``nx`` x ``ny`` pixels with features ``cells`` pixels across."""
        small = rng.standard_normal((max(2, int(ny / cells)), max(2, int(nx / cells)))).astype(np.float32)
        return cv2.resize(small, (nx, ny), interpolation=cv2.INTER_CUBIC)

    def _make_texture(self, nx: int, ny: int, rng: np.random.Generator) -> np.ndarray:
        px = 1.0 / self.res  # pixels per metre
        soil = (0.5 * self._noise(nx, ny, 0.6 * px, rng) + 0.3 * self._noise(nx, ny, 0.12 * px, rng)
                + 0.2 * self._noise(nx, ny, max(0.04 * px, 1.5), rng))
        base = np.array([50, 85, 120], dtype=np.float32)  # brown soil, BGR (grain adds ~ +10)
        img = base[None, None, :] * (1.0 + 0.18 * soil[..., None])
        veg = self._noise(nx, ny, 0.8 * px, rng) + 0.4 * self._noise(nx, ny, 0.08 * px, rng)
        mask = np.clip((veg - 0.9) * 2.0, 0.0, 1.0)[..., None]
        shade = 1.0 + 0.25 * self._noise(nx, ny, max(0.04 * px, 1.5), rng)
        green = np.array([40, 110, 55], dtype=np.float32) * shade[..., None]
        img = img * (1.0 - mask) + green * mask
        return np.clip(img, 0, 255).astype(np.uint8)

    @staticmethod
    def _make_detail(n: int, rng: np.random.Generator) -> np.ndarray:
        """Tileable grain: 0..~25 brightness to add, BGR uint8 (n x n)."""
        def blur_wrapped(a: np.ndarray, sigma: float) -> np.ndarray:   # blur that stays tileable
            pad = int(4 * sigma) + 1
            big = cv2.copyMakeBorder(a, pad, pad, pad, pad, cv2.BORDER_WRAP)
            return cv2.GaussianBlur(big, (0, 0), sigma)[pad:-pad, pad:-pad]

        grain = blur_wrapped(rng.standard_normal((n, n)).astype(np.float32), 1.2)
        grain = grain / max(float(grain.std()), 1e-6)
        pebbles = blur_wrapped((rng.random((n, n)) < 0.002).astype(np.float32), 2.5) * 60.0
        tile = np.clip(10.0 + 5.0 * grain + np.minimum(pebbles, 1.0) * 15.0, 0, 40).astype(np.uint8)
        return cv2.merge([tile, tile, tile])

    def _image_to_world(self, pose: tuple[float, float, float]) -> np.ndarray:
        """2x3 affine matrix: image (u, v, 1) -> world (x, y)."""
        k = self.intrinsics
        z = self.height_above_ground
        px, py, yaw = pose
        c, s = math.cos(yaw), math.sin(yaw)
        # base_link: x_b = cam_x - (v - cy) z/f ; y_b = cam_y - (u - cx) z/f
        bx = np.array([0.0, -z / k.fy, self.mount[0] + k.cy * z / k.fy])
        by = np.array([-z / k.fx, 0.0, self.mount[1] + k.cx * z / k.fx])
        wx = c * bx - s * by
        wy = s * bx + c * by
        wx[2] += px
        wy[2] += py
        return np.vstack((wx, wy))

    def world_to_pixel(self, pose: tuple[float, float, float], xy) -> np.ndarray:
        """Project world ground points (n, 2) into the image (n, 2) as (u, v)."""
        m = self._image_to_world(pose)
        a, t = m[:, :2], m[:, 2]
        pts = np.atleast_2d(np.asarray(xy, dtype=float))
        return np.linalg.solve(a, (pts - t).T).T

    def footprint(self, pose: tuple[float, float, float]) -> np.ndarray:
        """(4, 2) world corners of the ground seen by the camera."""
        k = self.intrinsics
        m = self._image_to_world(pose)
        corners = np.array([[0, 0, 1], [k.width, 0, 1], [k.width, k.height, 1], [0, k.height, 1]], float)
        return corners @ m.T

    def render(self, pose: tuple[float, float, float]) -> np.ndarray:
        """BGR uint8 image (height, width, 3) seen at robot pose (x, y, yaw)."""
        k = self.intrinsics
        m = self._image_to_world(pose)
        to_tex = np.array([[1.0 / self.res, 0.0], [0.0, -1.0 / self.res]])
        mt = to_tex @ m
        mt[0, 2] -= self.x0 / self.res
        mt[1, 2] += self.y1 / self.res
        img = cv2.warpAffine(self.texture, mt, (k.width, k.height),
                             flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REFLECT)
        md = np.array([[1.0 / self.detail_res, 0.0], [0.0, -1.0 / self.detail_res]]) @ m
        n = np.array(self.detail.shape[1::-1], dtype=float)
        centre = md @ np.array([0.5 * k.width, 0.5 * k.height, 1.0])
        md[:, 2] += n - np.floor(centre / n) * n   # whole tile periods: the same grain, centred
        grain = cv2.warpAffine(self._detail_3x3, md, (k.width, k.height),
                               flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_WRAP)
        cv2.add(img, grain, dst=img)
        if self.surface_objects:
            self._draw_objects(img, pose)
        return img

    def _draw_objects(self, img: np.ndarray, pose: tuple[float, float, float]) -> None:
        k = self.intrinsics
        scale = k.fx / self.height_above_ground  # px per metre on the ground
        xy = np.array([[o.x, o.y] for o in self.surface_objects])
        uv = self.world_to_pixel(pose, xy)
        for obj, (u, v) in zip(self.surface_objects, uv):
            radius = 0.5 * obj.diameter_m * scale
            if u < -radius or v < -radius or u > k.width + radius or v > k.height + radius:
                continue
            colour = _OBJECT_COLOURS.get(obj.kind, (40, 80, 60))
            # image angle of the object's yaw: image up = robot forward (yaw), image right = -left
            ang = -math.degrees(math.radians(obj.yaw_deg) - pose[2]) - 90.0
            centre = (int(round(u)), int(round(v)))
            if obj.kind == 'uxo':
                axes = (max(1, int(round(radius))), max(1, int(round(radius / 3.5))))
            else:
                axes = (max(1, int(round(radius))), max(1, int(round(radius))))
            cv2.ellipse(img, centre, axes, ang, 0, 360, colour, -1, cv2.LINE_AA)
            cv2.ellipse(img, centre, axes, ang, 0, 360, (20, 30, 25), 2, cv2.LINE_AA)
            if obj.kind in ('mine', 'surface'):
                cv2.circle(img, centre, max(1, int(round(radius * 0.35))), (30, 55, 45), -1, cv2.LINE_AA)


# ----------------------------------------------------------------------------------------- GNSS

GNSS_SIGMA = {'rtk': 0.02, 'float': 0.5, 'single': 2.0}
GNSS_TAU_S = {'rtk': 10.0, 'float': 30.0, 'single': 60.0}
GNSS_QUALITY = {'rtk': 4, 'float': 5, 'single': 1, 'none': 0}


@dataclass(frozen=True)
class GnssFix:
    t: float
    x: float              # local metres (NaN without a fix)
    y: float
    lat: float            # degrees (NaN without a fix)
    lon: float
    alt: float            # metres above the ellipsoid
    mode: str             # rtk | float | single | none
    quality: int          # NMEA GGA fix quality: 4 RTK fixed, 5 RTK float, 1 single, 0 invalid
    sigma_h: float        # true horizontal std of the error (m)
    sigma_v: float
    satellites: int
    hdop: float

    @property
    def valid(self) -> bool:
        return self.mode != 'none'


class GnssModel:
    """GNSS antenna fixes with mode-dependent correlated error (see module docstring)."""

    def __init__(self, scenario: Scenario, rng: np.random.Generator, altitude: float = 100.0):
        self.frame = scenario.frame
        self.schedule = scenario.gnss
        self.rng = rng
        self.altitude = altitude
        self._z = np.zeros(3)   # unit-variance Gauss-Markov state (east, north, up)
        self.t_last: float | None = None

    def sample(self, t: float, x: float, y: float) -> GnssFix:
        mode = self.schedule.mode_at(t)
        dt = 0.0 if self.t_last is None else max(t - self.t_last, 0.0)
        self.t_last = t
        if mode == 'none':
            return GnssFix(t, math.nan, math.nan, math.nan, math.nan, math.nan, mode, 0,
                           math.inf, math.inf, int(self.rng.integers(0, 4)), 99.9)
        tau = GNSS_TAU_S[mode]
        a = math.exp(-dt / tau) if dt > 0 else 1.0
        n = self.rng.standard_normal(3)
        self._z = a * self._z + math.sqrt(max(1.0 - a * a, 0.0)) * n if dt > 0 else self._z
        sigma = GNSS_SIGMA[mode]
        # 90 % of the error variance correlated, 10 % white
        white = self.rng.standard_normal(3) * math.sqrt(0.1)
        err = sigma * (math.sqrt(0.9) * self._z + white)
        ex, ey, ez = err[0], err[1], 2.0 * err[2]
        mx, my = x + ex, y + ey
        lon, lat = self.frame.to_wgs84(mx, my)
        sats = {'rtk': 18, 'float': 14, 'single': 8}[mode] + int(self.rng.integers(-2, 3))
        hdop = {'rtk': 0.7, 'float': 1.0, 'single': 1.8}[mode]
        return GnssFix(t, float(mx), float(my), float(lat), float(lon), float(self.altitude + ez), mode,
                       GNSS_QUALITY[mode], sigma, 2.0 * sigma, sats, hdop)


# ------------------------------------------------------------------------------------------ IMU

@dataclass(frozen=True)
class ImuSample:
    t: float
    yaw: float               # AHRS heading, rad CCW from east
    gyro: tuple[float, float, float]    # rad/s, body frame
    accel: tuple[float, float, float]   # m/s², body frame, gravity included
    yaw_sigma: float
    gyro_sigma: float
    accel_sigma: float


class ImuModel:
    def __init__(self, rng: np.random.Generator, gyro_noise: float = 0.003, gyro_bias_walk: float = 0.0005,
                 accel_noise: float = 0.05, yaw_noise: float = 0.01, yaw_bias_std: float = 0.02):
        self.rng = rng
        self.gyro_noise, self.gyro_bias_walk = gyro_noise, gyro_bias_walk
        self.accel_noise, self.yaw_noise = accel_noise, yaw_noise
        self.yaw_bias = float(rng.normal(0.0, yaw_bias_std))
        self.yaw_sigma = math.hypot(yaw_noise, yaw_bias_std)
        self.gyro_bias = 0.0
        self.t_last: float | None = None
        self.v_last = 0.0

    def sample(self, t: float, yaw: float, v: float, w: float) -> ImuSample:
        dt = 0.0 if self.t_last is None else max(t - self.t_last, 0.0)
        self.t_last = t
        n = self.rng.standard_normal(7).tolist()
        self.gyro_bias += self.gyro_bias_walk * math.sqrt(dt) * n[0]
        ax = (v - self.v_last) / dt if dt > 0 else 0.0
        self.v_last = v
        gyro = (self.gyro_noise * n[1], self.gyro_noise * n[2], w + self.gyro_bias + self.gyro_noise * n[3])
        accel = (ax + self.accel_noise * n[4], v * w + self.accel_noise * n[5], 9.80665)
        heading = yaw + self.yaw_bias + self.yaw_noise * n[6]
        heading = math.atan2(math.sin(heading), math.cos(heading))
        return ImuSample(t, heading, gyro, accel, self.yaw_sigma, self.gyro_noise, self.accel_noise)
