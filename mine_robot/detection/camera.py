"""Downward camera: surface-laid mines and UXO in the image -> georeferenced detections.

Classical pipeline (OpenCV): the soil and vegetation texture is smooth at the scale of an object,
so a large median blur estimates the local background; pixels whose colour differs from it by more
than ``contrast_threshold`` (Lab distance) form candidate blobs, cleaned by a morphological
opening. Blobs whose equivalent diameter on the ground is in ``[min_diameter_m, max_diameter_m]``
become detections, with shape features (ellipse axis ratio -> ``elongated`` for UXO-like bodies)
and colour features: a saturated-green/brown-olive body scores as a hazard, a bright grey metal
body as debris (``hazard_score``). Pixels map to the ground through the pinhole model with the
intrinsics and mount of ``config/robot.yaml`` (camera looking straight down; image up = robot
forward, image right = robot right) and the robot pose at the image timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import cv2
import numpy as np

from mine_robot.detection.types import Detection, DetectionError, PoseHistory, body_to_map
from mine_robot.robot import RobotGeometry


@dataclass(frozen=True)
class CameraConfig:
    min_diameter_m: float = 0.04
    max_diameter_m: float = 0.6
    contrast_threshold: float = 30.0   # |lightness difference| from the local background (Lab L)
    min_solidity: float = 0.8          # blob area / convex hull area
    # Manufactured bodies have crisp outlines, soil and vegetation shading does not: mean lightness
    # gradient (per pixel of the reduced image) across the blob's boundary over its mean lightness
    # contrast. A dark shade inside vegetation (0.2) made a camera-only target in every default
    # sweep; surface mines drawn at their true size score 0.5 and more. 0 = off.
    min_edge_sharpness: float = 0.35
    vegetation_green: float = 22.0     # pixels with G - R above this are vegetation
    soil_red: float = 12.0             # pixels with R - G above this are soil
    background_px: int = 151           # median-blur window for the background (odd)
    downscale: int = 4                 # work on a reduced image (speed)
    elongation: float = 2.2            # axis ratio above which a body is 'elongated'
    position_sigma_m: float = 0.02
    sensor: str = 'camera'

    def __post_init__(self):
        if not 0 < self.min_diameter_m < self.max_diameter_m:
            raise DetectionError('camera config: need 0 < min_diameter_m < max_diameter_m')
        if self.min_edge_sharpness < 0:
            raise DetectionError('camera config: min_edge_sharpness must be >= 0')
        if self.contrast_threshold <= 0 or self.downscale < 1:
            raise DetectionError('camera config: contrast_threshold must be > 0 and downscale >= 1')


class CameraProcessor:
    def __init__(self, robot: RobotGeometry, config: CameraConfig | None = None,
                 poses: PoseHistory | None = None):
        self.config = config or CameraConfig()
        cam = robot.camera
        self.width, self.height = cam.width, cam.height
        self.f = cam.focal_px
        self.mount = cam.xyz
        self.poses = poses if poses is not None else PoseHistory()
        self._pending: list[tuple[float, np.ndarray]] = []
        self._next_id = 1
        self.stats = {'received': 0, 'images': 0, 'rejected': 0, 'dropped_no_pose': 0, 'detections': 0}

    def add_pose(self, t, x, y, yaw) -> None:
        self.poses.add(t, x, y, yaw)

    def add_image(self, t: float, image) -> None:
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            self.stats['rejected'] += 1
            raise DetectionError(f'camera image must be HxWx3 uint8 BGR, got {img.shape} {img.dtype}')
        self.stats['received'] += 1
        self._pending.append((float(t), img))

    def pixel_to_base(self, u, v) -> np.ndarray:
        """Image pixel(s) -> ground point(s) in base_link (x forward, y left)."""
        z = self.mount[2]
        u, v = np.asarray(u, float), np.asarray(v, float)
        bx = self.mount[0] - (v - self.height / 2.0) * z / self.f
        by = self.mount[1] - (u - self.width / 2.0) * z / self.f
        return np.stack([bx, by], axis=-1)

    def poll(self) -> list[Detection]:
        out, keep = [], []
        for t, img in self._pending:
            if self.poses.covers(t, tolerance=0.05):
                out += self._process(t, img, self.poses.at(t, tolerance=0.05))
            elif not len(self.poses) or t > self.poses.latest_time:
                keep.append((t, img))
            else:
                self.stats['dropped_no_pose'] += 1      # no pose close enough to georeference it
        self._pending = keep
        self.stats['detections'] += len(out)
        return out

    def _process(self, t: float, img: np.ndarray, pose: np.ndarray) -> list[Detection]:
        cfg = self.config
        self.stats['images'] += 1
        ds = cfg.downscale
        small = cv2.resize(img, (img.shape[1] // ds, img.shape[0] // ds), interpolation=cv2.INTER_AREA)
        lab = cv2.cvtColor(small, cv2.COLOR_BGR2LAB).astype(np.float32)
        k = max(3, (cfg.background_px // ds) | 1)
        background = cv2.medianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2LAB), min(k, 255)).astype(np.float32)
        diff = np.linalg.norm(lab - background, axis=2)
        # objects differ from the local background in lightness (dark painted bodies, bright bare
        # metal); vegetation and soil texture mostly differ in hue, which is not used here
        dl = lab[..., 0] - background[..., 0]
        b, g, r = (small[..., k].astype(np.float32) for k in range(3))
        vegetation = (g - r) > cfg.vegetation_green
        # bare soil is red-brown (R well above G); painted bodies and bare metal are not
        soil_hue = (r - g) > cfg.soil_red
        mask = ((np.abs(dl) > cfg.contrast_threshold) & ~vegetation & ~soil_hue).astype(np.uint8)
        # a body close in lightness to its background shows only its dark outline (and centre):
        # close the outline and fill it, so the body counts whole instead of as a ring that the
        # opening below erases (the default field's surface PMA-2 on dark soil: never detected)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(mask, contours, -1, 1, cv2.FILLED)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask)
        gradient = None
        metres_per_px = self.mount[2] / self.f * ds
        dets = []
        for i in range(1, count):
            area_px = stats[i, cv2.CC_STAT_AREA]
            diameter = 2.0 * math.sqrt(area_px / math.pi) * metres_per_px
            if not cfg.min_diameter_m <= diameter <= cfg.max_diameter_m:
                continue
            x0, y0, w, h = (stats[i, cv2.CC_STAT_LEFT], stats[i, cv2.CC_STAT_TOP],
                            stats[i, cv2.CC_STAT_WIDTH], stats[i, cv2.CC_STAT_HEIGHT])
            if x0 == 0 or y0 == 0 or x0 + w >= small.shape[1] or y0 + h >= small.shape[0]:
                continue   # cut by the image edge: wait for a frame that sees it whole
            blob = labels == i
            hull = cv2.convexHull(np.column_stack(np.nonzero(blob))[:, ::-1].astype(np.int32))
            if area_px < cfg.min_solidity * max(cv2.contourArea(hull), 1.0):
                continue   # ragged: texture, not a manufactured body
            contrast_l = abs(float(dl[blob].mean()))
            if cfg.min_edge_sharpness > 0:
                if gradient is None:
                    light = lab[..., 0]
                    gradient = np.hypot(cv2.Sobel(light, cv2.CV_32F, 1, 0, ksize=3),
                                        cv2.Sobel(light, cv2.CV_32F, 0, 1, ksize=3)) / 8.0
                b8 = blob.astype(np.uint8)
                kernel = np.ones((3, 3), np.uint8)
                boundary = (cv2.dilate(b8, kernel) - cv2.erode(b8, kernel)) > 0
                if float(gradient[boundary].mean()) < cfg.min_edge_sharpness * max(contrast_l, 1e-6):
                    continue   # soft-edged: shading, not a body
            pts = np.column_stack(np.nonzero(blob))[:, ::-1].astype(np.float32)
            ratio = 1.0
            if len(pts) >= 5:
                (_c, axes, _a) = cv2.fitEllipse(pts)
                ratio = max(axes) / max(min(axes), 1e-6)
            mean_bgr = small[blob].mean(axis=0)
            sat = float(np.ptp(mean_bgr))
            grey = float(mean_bgr.mean())
            # debris in the simulator and in the field is mostly bright, unpainted metal
            hazard_score = 0.0 if (float(dl[blob].mean()) > 0 and sat < 25) else 1.0
            del grey
            u, v = (centroids[i] + 0.5) * ds - 0.5
            ground = body_to_map(pose, self.pixel_to_base(u, v)[None, :])[0]
            contrast = float(diff[blob].mean())
            dets.append(Detection(
                t=t, x=float(ground[0]), y=float(ground[1]), depth=0.0,
                confidence=float(min(1.0, contrast / (2 * cfg.contrast_threshold))), strength=contrast,
                sensor=cfg.sensor, id=self._next_id, sigma=cfg.position_sigma_m,
                extra={'diameter_m': diameter, 'axis_ratio': ratio, 'hazard_score': hazard_score,
                       "bgr": [float(v) for v in mean_bgr], "dl": float(dl[blob].mean()),
                       'shape': 'elongated' if ratio >= cfg.elongation else 'round'}))
            self._next_id += 1
        return dets
