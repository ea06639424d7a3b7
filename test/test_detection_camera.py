"""Camera processing: surface objects found and georeferenced, soil and vegetation shading not."""

import math

import cv2
import numpy as np
import pytest

from mine_robot.detection.camera import CameraConfig, CameraProcessor
from mine_robot.detection.types import DetectionError
from mine_robot.resources import resource
from mine_robot.robot import load_robot
from mine_robot.sim.scenario import load_scenario
from mine_robot.sim.world import SimWorld, load_sim_config

ROBOT = load_robot()
CAM_X = ROBOT.camera.xyz[0]


def detect(image, pose, config: CameraConfig | None = None):
    proc = CameraProcessor(ROBOT, config)
    proc.add_pose(0.0, *pose)
    proc.add_pose(1.0, *pose)
    proc.add_image(0.5, image)
    return proc.poll()


@pytest.fixture(scope='module')
def default_camera():
    """The default field's camera as the sweep renders it (seed 0)."""
    scenario = load_scenario(resource('sim', 'scenarios', 'default.yaml'))
    return SimWorld(scenario, ROBOT, seed=0, config=load_sim_config()).sensors.camera


@pytest.mark.parametrize('yaw', [0.0, math.pi / 2, math.pi, -math.pi / 2])
@pytest.mark.parametrize('offset', [(0.0, 0.0), (0.15, -0.3), (-0.1, 0.3)])
def test_the_default_fields_surface_mine_is_found_where_it_lies(default_camera, yaw, offset):
    # S1 (PMA-2, 7 cm) at (8.3, 2.2) lies on dark soil: its body differs from the soil in hue more
    # than in lightness, so only its outline stands out (the detector used to miss it entirely)
    c, s = math.cos(yaw), math.sin(yaw)
    along, across = offset
    cx, cy = 8.3 - c * along + s * across, 2.2 - s * along - c * across   # camera centre
    pose = (cx - CAM_X * c, cy - CAM_X * s, yaw)
    dets = detect(default_camera.render(pose), pose)
    assert len(dets) == 1
    d = dets[0]
    assert math.hypot(d.x - 8.3, d.y - 2.2) < 0.02
    assert 0.05 < d.extra['diameter_m'] < 0.10 and d.extra['hazard_score'] == 1.0


def test_a_dark_shade_in_vegetation_is_not_an_object(default_camera):
    # a soft-edged dark patch inside vegetation at (0.6, 3.88) made a camera-only target in every
    # default sweep; without the edge-sharpness test it is still reported
    pose = (0.6, 3.88 - CAM_X, math.pi / 2)
    image = default_camera.render(pose)
    assert detect(image, pose) == []
    assert len(detect(image, pose, CameraConfig(min_edge_sharpness=0.0))) == 1


def _soil(seed=0):
    rng = np.random.default_rng(seed)
    img = np.empty((480, 640, 3), np.uint8)
    img[:] = (50, 85, 120)            # brown soil, BGR
    noise = rng.normal(0.0, 3.0, img.shape[:2])
    return np.clip(img + noise[..., None], 0, 255).astype(np.uint8)


def _pixel(u, v, pose):
    """Map position of image pixel (u, v) seen from ``pose``."""
    proc = CameraProcessor(ROBOT)
    bx, by = proc.pixel_to_base(u, v)
    c, s = math.cos(pose[2]), math.sin(pose[2])
    return pose[0] + c * bx - s * by, pose[1] + s * bx + c * by


def test_a_crisp_outline_is_an_object_and_a_soft_blob_is_not():
    pose = (1.0, 2.0, 0.3)
    img = _soil()
    # body as light as the soil around it, dark crisp rim: found, at its centre
    cv2.circle(img, (200, 240), 25, (60, 95, 85), -1, cv2.LINE_AA)
    cv2.circle(img, (200, 240), 25, (20, 30, 25), 2, cv2.LINE_AA)
    # a much darker patch of the same size with a blurred edge (shade): not an object
    shade = np.zeros(img.shape[:2], np.float32)
    cv2.circle(shade, (450, 240), 25, 1.0, -1)
    shade = cv2.GaussianBlur(shade, (0, 0), 12)[..., None]
    dark = np.array([22, 41, 26], np.float32)      # the sim's dark shade colour
    img = np.clip(img * (1.0 - shade) + dark * shade, 0, 255).astype(np.uint8)
    dets = detect(img, pose)
    assert len(dets) == 1
    x, y = _pixel(200, 240, pose)
    assert math.hypot(dets[0].x - x, dets[0].y - y) < 0.01
    # the blob is a strong lightness anomaly: only the edge test removes it
    assert len(detect(img, pose, CameraConfig(min_edge_sharpness=0.0))) == 2


def test_an_object_cut_by_the_image_edge_waits_for_a_whole_view():
    img = _soil()
    cv2.circle(img, (5, 240), 25, (20, 30, 25), -1, cv2.LINE_AA)
    assert detect(img, (0.0, 0.0, 0.0)) == []


def test_bad_images_and_config_are_refused_with_a_reason():
    proc = CameraProcessor(ROBOT)
    with pytest.raises(DetectionError, match='uint8'):
        proc.add_image(0.0, np.zeros((480, 640), np.uint8))
    assert proc.stats['rejected'] == 1
    with pytest.raises(DetectionError, match='min_edge_sharpness'):
        CameraConfig(min_edge_sharpness=-1.0)
