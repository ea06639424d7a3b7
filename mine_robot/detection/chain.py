"""The whole detection chain in one pure object: robot poses and raw sensor data in, fusion
targets out. The lockstep pipeline uses it directly; the ROS graph runs the same classes split
over the md_detector, gpr_detector, camera_detector and detection_fusion nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
import json
from pathlib import Path

import numpy as np
import yaml

from mine_robot.detection.camera import CameraConfig, CameraProcessor
from mine_robot.detection.gpr import GprConfig, GprProcessor
from mine_robot.detection.metal_detector import MetalDetectorConfig, MetalDetectorProcessor
from mine_robot.detection.types import Detection, DetectionError, PoseHistory
from mine_robot.fusion import FusionConfig, FusionEngine, Target, fusion_config_from_dict
from mine_robot.resources import resource
from mine_robot.robot import RobotGeometry


def _dataclass_kwargs(cls, params: dict) -> dict:
    names = set(cls.__dataclass_fields__)
    return {k: v for k, v in params.items() if k in names}


@dataclass(frozen=True)
class DetectionSettings:
    md: MetalDetectorConfig = field(default_factory=MetalDetectorConfig)
    gpr: GprConfig = field(default_factory=GprConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    fusion: FusionConfig | None = None


def load_detection_settings(path: str | Path | None = None, **gpr_overrides) -> DetectionSettings:
    """Read ``config/detection.yaml`` (the node parameter file) into the pure-layer configs."""
    path = Path(path) if path else resource('config', 'detection.yaml')
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DetectionError(f'cannot read detection config {path}: {exc}') from exc

    def params(node):
        return dict(((data.get(node) or {}).get('ros__parameters')) or {})

    fusion_params = params('detection_fusion')
    sensors = fusion_params.pop('sensors', None)
    if isinstance(sensors, str):
        try:
            sensors = json.loads(sensors)
        except json.JSONDecodeError as exc:
            raise DetectionError(f'{path}: detection_fusion.sensors is not valid JSON: {exc}') from exc
    fusion_params['sensors'] = sensors
    gpr = {**_dataclass_kwargs(GprConfig, params('gpr_detector')), **gpr_overrides}
    return DetectionSettings(
        md=MetalDetectorConfig(**_dataclass_kwargs(MetalDetectorConfig, params('md_detector'))),
        gpr=GprConfig(**gpr),
        camera=CameraConfig(**_dataclass_kwargs(CameraConfig, params('camera_detector'))),
        fusion=fusion_config_from_dict(fusion_params))


class DetectionChain:
    """Metal detector + GPR + camera processors sharing one pose history, feeding fusion."""

    def __init__(self, robot: RobotGeometry, settings: DetectionSettings | None = None):
        settings = settings or load_detection_settings()
        self.settings = settings
        self.poses = PoseHistory()
        self.md = MetalDetectorProcessor(robot, settings.md, self.poses)
        self.gpr = GprProcessor(robot, settings.gpr, self.poses)
        self.camera = CameraProcessor(robot, settings.camera, self.poses)
        self.fusion = FusionEngine(settings.fusion)
        self.detections: list[Detection] = []

    def add_pose(self, t: float, x: float, y: float, yaw: float) -> list[Target]:
        self.poses.add(t, x, y, yaw)
        return self.fusion.add_pose(t, x, y, yaw)

    def add_md(self, t: float, signals) -> None:
        self.md.add_sample(t, signals)

    def add_gpr(self, t: float, trace) -> None:
        """One GPR scan: (antennas, samples), or (samples,) for a one-antenna radar."""
        values = np.asarray(trace)
        if values.ndim == 2:
            self.gpr.add_scan(t, values)
        else:
            self.gpr.add_trace(t, values)

    def add_image(self, t: float, image) -> None:
        self.camera.add_image(t, image)

    def poll(self, flush: bool = False) -> list[Target]:
        """Run the detectors on what is ready; fuse; return the targets that changed."""
        dets = self.md.poll() + self.gpr.poll() + self.camera.poll()
        if flush:
            dets += self.md.flush() + self.gpr.flush()
        self.detections.extend(dets)
        return self.fusion.update(dets) if dets else []
