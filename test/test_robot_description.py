"""URDF validity and agreement with config/robot.yaml."""

import math
from pathlib import Path
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import transforms3d
import yaml

from mine_robot.robot import RobotConfigError, load_robot, robot_from_dict

REPO = Path(__file__).resolve().parent.parent
URDF = REPO / 'urdf' / 'mine_robot.urdf'


def _joints():
    root = ET.parse(URDF).getroot()
    joints = {}
    for j in root.findall('joint'):
        origin = j.find('origin')
        xyz = [float(v) for v in origin.get('xyz', '0 0 0').split()] if origin is not None else [0, 0, 0]
        rpy = [float(v) for v in origin.get('rpy', '0 0 0').split()] if origin is not None else [0, 0, 0]
        joints[j.find('child').get('link')] = (j.find('parent').get('link'), np.array(xyz), rpy, j)
    return root, joints


def _in_base(joints, link):
    """4x4 transform base_link <- link, joints at zero position."""
    tf = np.eye(4)
    while link != 'base_link':
        parent, xyz, rpy, _ = joints[link]
        local = np.eye(4)
        local[:3, :3] = transforms3d.euler.euler2mat(*rpy, 'sxyz')
        local[:3, 3] = xyz
        tf = local @ tf
        link = parent
    return tf


@pytest.mark.skipif(shutil.which('check_urdf') is None,
                    reason='check_urdf missing: scripts/setup.sh installs liburdfdom-tools as root')
def test_check_urdf_accepts():
    result = subprocess.run(['check_urdf', str(URDF)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Successfully Parsed XML' in result.stdout


def test_required_frames_present_with_physics():
    root, joints = _joints()
    links = {link.get('name'): link for link in root.findall('link')}
    required = ['base_link', 'md_array', 'gpr_antenna', 'camera_link', 'camera_optical',
                'gnss_antenna', 'imu_link', 'marker_nozzle',
                *[f'{w}_wheel' for w in ('front_left', 'front_right', 'rear_left', 'rear_right')]]
    for name in required:
        assert name in links, name
    for name, link in links.items():
        if link.find('visual') is not None:
            assert link.find('collision') is not None, f'{name} has a visual but no collision'
            mass = float(link.find('inertial/mass').get('value'))
            assert mass > 0, name


def test_urdf_matches_robot_yaml():
    robot = load_robot()
    _, joints = _joints()
    md = robot.metal_detector
    for frame, (x, y) in zip(md.coil_frames, md.coil_positions()):
        tf = _in_base(joints, frame)
        assert np.allclose(tf[:3, 3], [x, y, md.xyz[2]], atol=1e-6), frame
    for name, (x, y) in zip(robot.wheels.names, robot.wheels.contact_centres()):
        tf = _in_base(joints, f'{name}_wheel')
        assert np.allclose(tf[:3, 3], [x, y, robot.wheels.radius], atol=1e-6), name
    for mount in (robot.gpr, robot.gnss, robot.imu):
        assert np.allclose(_in_base(joints, mount.frame)[:3, 3], mount.xyz, atol=1e-6), mount.frame
    cam = _in_base(joints, robot.camera.frame)
    assert np.allclose(cam[:3, 3], robot.camera.xyz, atol=1e-6)
    # camera looks straight down: optical z axis (viewing direction) is -z of base_link
    optical = _in_base(joints, robot.camera.optical_frame)
    assert np.allclose(optical[:3, 2], [0, 0, -1], atol=1e-6)
    assert np.allclose(_in_base(joints, robot.marker.frame)[:3, 3], robot.marker.xyz, atol=1e-6)
    slide = joints['marker_carriage'][3]
    assert slide.get('type') == 'prismatic'
    limit = slide.find('limit')
    assert (float(limit.get('lower')), float(limit.get('upper'))) == robot.marker.slide_limits
    wheel = ET.parse(URDF).getroot().find("link[@name='front_left_wheel']/collision/geometry/cylinder")
    assert math.isclose(float(wheel.get('radius')), robot.wheels.radius)


def test_geometry_supports_safe_sweeping():
    robot = load_robot()
    assert robot.swath_width == pytest.approx(1.10)
    outer_track = robot.wheels.track + robot.wheels.width
    assert robot.swath_width > outer_track
    assert robot.metal_detector.xyz[0] > robot.wheels.wheelbase / 2
    patches = robot.wheel_patches()
    assert patches.shape == (4, 4, 2)
    assert np.abs(patches[..., 1]).max() == pytest.approx(outer_track / 2)
    assert robot.marker.reach(0.5) and not robot.marker.reach(0.6)


def test_bad_robot_config_is_rejected_with_reason():
    data = yaml.safe_load((REPO / 'config' / 'robot.yaml').read_text())
    data['robot']['metal_detector']['coil_y'] = [0.1, -0.1]
    with pytest.raises(RobotConfigError, match='wider than the wheel track'):
        robot_from_dict(data)
    data = yaml.safe_load((REPO / 'config' / 'robot.yaml').read_text())
    data['robot']['wheels']['radius'] = -1
    with pytest.raises(RobotConfigError, match='wheels.radius must be > 0'):
        robot_from_dict(data)
    data = yaml.safe_load((REPO / 'config' / 'robot.yaml').read_text())
    del data['robot']['gpr']
    with pytest.raises(RobotConfigError, match='missing section'):
        robot_from_dict(data)


def test_point_turn_and_backup_stay_on_one_swept_lane():
    """The geometric rules the planner's turn primitive relies on (see mine_robot.robot)."""
    robot = load_robot()
    half = robot.swath_width / 2
    assert robot.wheel_turn_radius == pytest.approx(np.hypot(0.33, 0.33))
    assert robot.turn_clearance > 0.05
    # after a 90 deg turn and the backup, the coils' near edge is back inside the swept lane ...
    md = robot.metal_detector
    assert md.xyz[0] - md.coil_radius - robot.post_turn_backup < half
    # ... and the rear wheels are still on it
    assert robot.wheel_reach[0] + robot.post_turn_backup < half


def test_geometry_rules_reject_unsafe_designs():
    data = yaml.safe_load((REPO / 'config' / 'robot.yaml').read_text())
    data['robot']['wheels']['wheelbase'] = 0.70     # patches at x = +-0.43: circle 0.54 m
    with pytest.raises(RobotConfigError, match='point-turn circle'):
        robot_from_dict(data)
    data = yaml.safe_load((REPO / 'config' / 'robot.yaml').read_text())
    data['robot']['metal_detector']['xyz'] = [1.2, 0.0, 0.08]
    with pytest.raises(RobotConfigError, match='too far ahead'):
        robot_from_dict(data)
