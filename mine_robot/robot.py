"""Robot geometry from ``config/robot.yaml`` as frozen dataclasses.

This is the description every pure-layer algorithm uses (coil positions for georeferencing and
coverage, wheel contact patches for the swept-ground rule, nozzle reach for marking). The URDF
carries the same numbers for tf2; a test keeps the two in agreement.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from pathlib import Path

import numpy as np

from mine_robot.resources import read_yaml, resource

SAFETY_MARGIN = 0.03
"""Metres kept between a wheel contact patch and unswept ground in the geometric design rules."""


class RobotConfigError(ValueError):
    """robot.yaml is missing a field or has a value that makes no physical sense."""


@dataclass(frozen=True)
class Mount:
    frame: str
    xyz: tuple[float, float, float]
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class WheelGeometry:
    radius: float
    width: float
    wheelbase: float
    track: float
    contact_length: float

    def contact_centres(self) -> np.ndarray:
        """(4, 2) wheel contact centres in base_link: FL, FR, RL, RR."""
        hx, hy = self.wheelbase / 2.0, self.track / 2.0
        return np.array([[hx, hy], [hx, -hy], [-hx, hy], [-hx, -hy]])

    @property
    def names(self) -> tuple[str, ...]:
        return ('front_left', 'front_right', 'rear_left', 'rear_right')


@dataclass(frozen=True)
class MetalDetectorGeometry:
    frame: str
    xyz: tuple[float, float, float]
    coil_radius: float
    coil_height: float
    coil_y: tuple[float, ...]

    @property
    def coil_frames(self) -> tuple[str, ...]:
        return tuple(f'md_coil_{i}' for i in range(len(self.coil_y)))

    def coil_positions(self) -> np.ndarray:
        """(n, 2) coil centres in base_link (x forward, y left)."""
        return np.array([[self.xyz[0], self.xyz[1] + y] for y in self.coil_y])

    @property
    def swath_width(self) -> float:
        """Width of ground the array sweeps in one pass (outer coil edge to outer coil edge)."""
        return (max(self.coil_y) - min(self.coil_y)) + 2.0 * self.coil_radius


@dataclass(frozen=True)
class GprGeometry:
    """The GPR antenna array: the head mount ``frame``/``xyz`` (base_link) and one monostatic
    antenna (channel) per entry of ``channel_y``, offset across the head like the coils."""

    frame: str
    xyz: tuple[float, float, float]
    channel_y: tuple[float, ...] = (0.0,)
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def channels(self) -> int:
        return len(self.channel_y)

    def channel_positions(self) -> np.ndarray:
        """(n, 2) antenna centres in base_link (x forward, y left), channel 0 first."""
        return np.array([[self.xyz[0], self.xyz[1] + y] for y in self.channel_y])


@dataclass(frozen=True)
class CameraGeometry:
    frame: str
    optical_frame: str
    xyz: tuple[float, float, float]
    rpy: tuple[float, float, float]
    width: int
    height: int
    horizontal_fov: float

    @property
    def focal_px(self) -> float:
        return (self.width / 2.0) / math.tan(self.horizontal_fov / 2.0)


@dataclass(frozen=True)
class MarkerGeometry:
    frame: str
    slide_joint: str
    xyz: tuple[float, float, float]
    slide_limits: tuple[float, float]

    def reach(self, lateral: float) -> bool:
        """True when the slide can put the nozzle ``lateral`` metres left of base_link's x axis."""
        return self.slide_limits[0] <= lateral - self.xyz[1] <= self.slide_limits[1]


@dataclass(frozen=True)
class RobotGeometry:
    name: str
    drive: str
    min_turn_radius: float
    body_length: float
    body_width: float
    body_height: float
    body_clearance: float
    mass: float
    wheels: WheelGeometry
    max_linear: float
    max_angular: float
    max_linear_accel: float
    max_angular_accel: float
    metal_detector: MetalDetectorGeometry
    gpr: GprGeometry
    camera: CameraGeometry
    gnss: Mount
    imu: Mount
    marker: MarkerGeometry

    @property
    def swath_width(self) -> float:
        return self.metal_detector.swath_width

    @property
    def wheel_turn_radius(self) -> float:
        """Radius of the circle the wheel contact patches sweep in a point turn about base_link."""
        return float(np.linalg.norm(self.wheel_patches().reshape(-1, 2), axis=1).max())

    @property
    def wheel_reach(self) -> tuple[float, float]:
        """(forward, lateral) extent of the wheel contact patches from base_link (metres)."""
        corners = np.abs(self.wheel_patches().reshape(-1, 2))
        return float(corners[:, 0].max()), float(corners[:, 1].max())

    @property
    def turn_clearance(self) -> float:
        """Margin between the point-turn wheel circle and the detector half-swath."""
        return self.swath_width / 2.0 - self.wheel_turn_radius

    @property
    def post_turn_backup(self) -> float:
        """Reverse distance after a 90 degree point turn inside a swept lane.

        After turning, the ground between the lane's swept edge (half a swath from the turn point)
        and the near edge of the coils (``md_x - coil_radius``) has not been swept; backing up at
        least that gap lets the coils sweep it before the wheels roll forward onto it. Backing up
        more than ``half swath - wheel reach`` would put the rear wheels off the other side of the
        lane. The backup sits in that interval with 2/5 of the slack on the coil side and 3/5 on
        the wheel side (4 and 6 cm for the default robot): the coil side absorbs cross-track
        error, the wheel side also the safety monitor's braking prediction (about 1.5 cm).
        """
        gap = self.backup_gap
        slack = self.swath_width / 2.0 - self.wheel_reach[0] - gap
        return gap + 0.4 * slack

    @property
    def backup_gap(self) -> float:
        """Unswept gap between a lane's edge and the coils' near edge after a 90 degree turn (m)."""
        md = self.metal_detector
        return max(0.0, md.xyz[0] - md.coil_radius - self.swath_width / 2.0)

    def footprint(self) -> np.ndarray:
        """(4, 2) corners of the body+wheel outline in base_link, counter-clockwise."""
        hx = self.body_length / 2.0
        hy = max(self.body_width, self.wheels.track + self.wheels.width) / 2.0
        return np.array([[hx, hy], [-hx, hy], [-hx, -hy], [hx, -hy]])

    def wheel_patches(self) -> np.ndarray:
        """(4, 4, 2) wheel contact rectangles in base_link (one CCW rectangle per wheel)."""
        hl, hw = self.wheels.contact_length / 2.0, self.wheels.width / 2.0
        corners = np.array([[hl, hw], [-hl, hw], [-hl, -hw], [hl, -hw]])
        return self.wheels.contact_centres()[:, None, :] + corners[None, :, :]


def _vec(value, n: int, field: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise RobotConfigError(f'robot.{field}: expected {n} numbers, got {value!r}') from exc
    if len(out) != n:
        raise RobotConfigError(f'robot.{field}: expected {n} numbers, got {len(out)}')
    return out


def _positive(value, field: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise RobotConfigError(f'robot.{field}: expected a number, got {value!r}') from exc
    if not math.isfinite(number) or number <= 0.0:
        raise RobotConfigError(f'robot.{field} must be > 0, got {value!r}')
    return number


def robot_from_dict(data: dict) -> RobotGeometry:
    """Build and validate a RobotGeometry from the parsed YAML (``{'robot': {...}}``)."""
    try:
        r = data['robot']
        body, wheels, limits = r['body'], r['wheels'], r['speed_limits']
        md, gpr, cam, gnss, imu, marker = (r['metal_detector'], r['gpr'], r['camera'], r['gnss'],
                                           r['imu'], r['marker'])
    except (KeyError, TypeError) as exc:
        raise RobotConfigError(f'robot.yaml is missing section {exc}') from exc
    drive = str(r.get('drive', 'skid_steer'))
    if drive not in ('skid_steer', 'ackermann'):
        raise RobotConfigError(f"robot.drive must be 'skid_steer' or 'ackermann', got {drive!r}")
    min_turn_radius = float(r.get('min_turn_radius', 0.0))
    if drive == 'ackermann' and min_turn_radius <= 0.0:
        raise RobotConfigError('robot.min_turn_radius must be > 0 for an ackermann robot')
    coil_y = _vec(md['coil_y'], len(md['coil_y']), 'metal_detector.coil_y')
    channel_y = gpr.get('channel_y', [0.0]) if isinstance(gpr, dict) else [0.0]
    if not isinstance(channel_y, (list, tuple)) or not 1 <= len(channel_y) <= 64:
        raise RobotConfigError(f'robot.gpr.channel_y must list 1..64 antenna offsets, got {channel_y!r}')
    channel_y = _vec(channel_y, len(channel_y), 'gpr.channel_y')
    if len(set(channel_y)) != len(channel_y):
        raise RobotConfigError(f'robot.gpr.channel_y has two antennas at the same offset: {channel_y}')
    if not coil_y:
        raise RobotConfigError('robot.metal_detector.coil_y must list at least one coil')
    geom = RobotGeometry(
        name=str(r.get('name', 'mine_robot')),
        drive=drive,
        min_turn_radius=min_turn_radius,
        body_length=_positive(body['length'], 'body.length'),
        body_width=_positive(body['width'], 'body.width'),
        body_height=_positive(body['height'], 'body.height'),
        body_clearance=_positive(body['clearance'], 'body.clearance'),
        mass=_positive(body['mass'], 'body.mass'),
        wheels=WheelGeometry(
            radius=_positive(wheels['radius'], 'wheels.radius'),
            width=_positive(wheels['width'], 'wheels.width'),
            wheelbase=_positive(wheels['wheelbase'], 'wheels.wheelbase'),
            track=_positive(wheels['track'], 'wheels.track'),
            contact_length=_positive(wheels['contact_length'], 'wheels.contact_length')),
        max_linear=_positive(limits['linear'], 'speed_limits.linear'),
        max_angular=_positive(limits['angular'], 'speed_limits.angular'),
        max_linear_accel=_positive(limits['linear_accel'], 'speed_limits.linear_accel'),
        max_angular_accel=_positive(limits['angular_accel'], 'speed_limits.angular_accel'),
        metal_detector=MetalDetectorGeometry(
            frame=str(md['frame']), xyz=_vec(md['xyz'], 3, 'metal_detector.xyz'),
            coil_radius=_positive(md['coil_radius'], 'metal_detector.coil_radius'),
            coil_height=_positive(md['coil_height'], 'metal_detector.coil_height'),
            coil_y=coil_y),
        gpr=GprGeometry(str(gpr['frame']), _vec(gpr['xyz'], 3, 'gpr.xyz'), channel_y),
        camera=CameraGeometry(
            frame=str(cam['frame']), optical_frame=str(cam['optical_frame']),
            xyz=_vec(cam['xyz'], 3, 'camera.xyz'), rpy=_vec(cam['rpy'], 3, 'camera.rpy'),
            width=int(cam['width']), height=int(cam['height']),
            horizontal_fov=_positive(cam['horizontal_fov'], 'camera.horizontal_fov')),
        gnss=Mount(str(gnss['frame']), _vec(gnss['xyz'], 3, 'gnss.xyz')),
        imu=Mount(str(imu['frame']), _vec(imu['xyz'], 3, 'imu.xyz')),
        marker=MarkerGeometry(
            frame=str(marker['frame']), slide_joint=str(marker['slide_joint']),
            xyz=_vec(marker['xyz'], 3, 'marker.xyz'),
            slide_limits=_vec(marker['slide_limits'], 2, 'marker.slide_limits')),
    )
    if geom.swath_width <= geom.wheels.track + geom.wheels.width:
        raise RobotConfigError(
            f'detector swath ({geom.swath_width:.2f} m) must be wider than the wheel track '
            f'({geom.wheels.track + geom.wheels.width:.2f} m outer) so wheels roll on swept ground')
    if geom.metal_detector.xyz[0] <= geom.wheels.wheelbase / 2.0:
        raise RobotConfigError('the metal detector must be mounted ahead of the front wheels')
    if geom.turn_clearance < SAFETY_MARGIN:
        raise RobotConfigError(
            f'wheel point-turn circle (radius {geom.wheel_turn_radius:.3f} m) must stay at least '
            f'{SAFETY_MARGIN} m inside the detector half-swath ({geom.swath_width / 2:.3f} m), so '
            'a point turn on one swept lane keeps every wheel on swept ground')
    slack = geom.swath_width / 2.0 - geom.wheel_reach[0] - geom.backup_gap
    if slack < 2 * SAFETY_MARGIN:
        raise RobotConfigError(
            f'the detector head is too far ahead (x = {geom.metal_detector.xyz[0]} m): after a '
            f'point turn the robot must back up {geom.backup_gap:.2f} m so the coils sweep the gap, '
            f'which leaves its rear wheels only {slack:.3f} m inside the swept lane (need '
            f'{2 * SAFETY_MARGIN:.2f} m)')
    return geom


def load_robot(path: str | Path | None = None) -> RobotGeometry:
    """Load robot geometry from ``path`` (default: the package's config/robot.yaml)."""
    path = Path(path) if path else resource('config', 'robot.yaml')
    return robot_from_dict(read_yaml(path, RobotConfigError, 'robot config'))
