"""Sensor and robot models of the built-in simulator, and the lockstep world."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mine_robot.robot import load_robot
from mine_robot.sim.kinematics import KinematicsConfig, SkidSteer, WheelOdometry
from mine_robot.sim.scenario import scenario_from_dict
from mine_robot.sim.sensors import (
    GNSS_SIGMA,
    CameraModel,
    GnssModel,
    GprModel,
    MetalDetectorModel,
    md_response,
    ricker,
)
from mine_robot.sim.world import SensorSuite, SimConfig, SimWorld


@pytest.fixture(scope='module')
def robot():
    return load_robot()


def make_scenario(objects, soil=None, gnss=None, size=6.0):
    data = {
        'name': 'unit',
        'datum': {'lat': 44.77, 'lon': 17.19},
        'area': {'search_area': [[0, 0], [size, 0], [size, size], [0, size]]},
        'soil': soil or {'md_ground_amplitude': 0.0, 'md_noise': 0.0, 'md_drift': 0.0,
                         'gpr_noise': 0.0, 'gpr_clutter_density': 0.0},
        'robot': {'x': 0.0, 'y': 0.0, 'yaw_deg': 0.0},
        'objects': objects,
    }
    if gnss:
        data['gnss'] = gnss
    return scenario_from_dict(data)


# ----------------------------------------------------------------------------- metal detector

@pytest.mark.parametrize(('mass', 'a', 'r'), [(1.0, 0.11, 0.18), (500.0, 0.11, 0.38), (3.0, 0.2, 0.0),
                                               (10.0, 0.11, 1.0)])
def test_md_response_is_the_issue_formula(mass, a, r):
    expected = mass * (a ** 2 / (a ** 2 + r ** 2)) ** 3
    assert md_response(mass, a, r) == pytest.approx(expected, rel=1e-12)


def test_md_model_equals_formula_at_given_geometries(robot):
    objs = [{'id': 'A', 'kind': 'mine', 'x': 2.0, 'y': 3.0, 'depth_m': 0.10, 'metal_g': 4.0},
            {'id': 'B', 'kind': 'uxo', 'x': 4.0, 'y': 3.0, 'depth_m': 0.30, 'metal_g': 200.0}]
    model = MetalDetectorModel(make_scenario(objs), robot, np.random.default_rng(0))
    a, h = robot.metal_detector.coil_radius, robot.metal_detector.coil_height
    coils = np.array([[2.0, 3.0], [2.1, 3.05], [3.0, 3.0], [4.0, 2.8]])
    got = model.sample(0.0, coils)  # noise, ground and drift are zero in this soil
    for (cx, cy), value in zip(coils, got):
        expected = sum(m * (a * a / (a * a + (cx - ox) ** 2 + (cy - oy) ** 2 + (h + d) ** 2)) ** 3
                       for ox, oy, d, m in ((2.0, 3.0, 0.10, 4.0), (4.0, 3.0, 0.30, 200.0)))
        assert value == pytest.approx(expected, rel=1e-9)


def test_md_response_falls_with_distance_and_depth(robot):
    shallow = make_scenario([{'id': 'A', 'kind': 'mine', 'x': 2, 'y': 2, 'depth_m': 0.05, 'metal_g': 5}])
    deep = make_scenario([{'id': 'A', 'kind': 'mine', 'x': 2, 'y': 2, 'depth_m': 0.25, 'metal_g': 5}])
    ms = MetalDetectorModel(shallow, robot, np.random.default_rng(0))
    md = MetalDetectorModel(deep, robot, np.random.default_rng(0))
    offsets = np.linspace(0.0, 0.6, 13)
    sig = ms.metal_signal(2.0 + offsets, np.full_like(offsets, 2.0))
    assert np.all(np.diff(sig) < 0)
    assert md.metal_signal([2.0], [2.0])[0] < 0.2 * ms.metal_signal([2.0], [2.0])[0]


def test_minimum_metal_mine_is_hard_but_possible(robot):
    """1 g at 10 cm under the default array: a few noise sigmas in a realistic soil, not more."""
    soil = {'md_ground_amplitude': 0.004, 'md_ground_correlation_m': 0.8, 'md_noise': 0.004,
            'md_drift': 0.0005, 'gpr_clutter_density': 0.0}
    sc = make_scenario([{'id': 'M', 'kind': 'mine', 'x': 3, 'y': 3, 'depth_m': 0.10, 'metal_g': 1.0}], soil)
    model = MetalDetectorModel(sc, robot, np.random.default_rng(3))
    peak = model.metal_signal([3.0], [3.0])[0]
    assert 0.015 < peak < 0.03
    snr = peak / soil['md_noise']
    assert 3.0 < snr < 10.0
    # the coil 0.22 m to the side barely sees it (so the array must really pass over it)
    assert model.metal_signal([3.0], [3.22])[0] < 0.15 * peak
    # noise statistics are as configured: far from the mine, std ≈ sqrt(noise² + ground²)
    xs = np.linspace(0.2, 1.5, 400)
    samples = np.array([model.sample(i * 0.02, np.array([[x, 0.5]]))[0] for i, x in enumerate(xs)])
    assert 0.002 < samples.std() < 0.012


def test_ground_field_is_spatially_correlated(robot):
    soil = {'md_ground_amplitude': 0.01, 'md_ground_correlation_m': 1.0, 'md_noise': 0.0, 'md_drift': 0.0}
    model = MetalDetectorModel(make_scenario([], soil, size=20), robot, np.random.default_rng(5))
    xs = np.linspace(0, 20, 4001)
    g = model.ground(xs, np.full_like(xs, 10.0))
    assert 0.005 < g.std() < 0.02
    step = int(0.1 / (xs[1] - xs[0]))
    near = np.corrcoef(g[:-step], g[step:])[0, 1]
    far_step = int(4.0 / (xs[1] - xs[0]))
    far = np.corrcoef(g[:-far_step], g[far_step:])[0, 1]
    assert near > 0.9 and abs(far) < 0.4


def test_ground_lookup_is_bilinear_and_both_paths_agree(robot):
    """The ground field read a few points at a time (plain floats, the per-sample path) equals the
    numpy path for many points bit for bit, and both are bilinear between the grid nodes."""
    soil = {'md_ground_amplitude': 0.01, 'md_ground_correlation_m': 0.5, 'md_noise': 0.0, 'md_drift': 0.0}
    ground = MetalDetectorModel(make_scenario([], soil, size=8), robot, np.random.default_rng(4)).ground
    pts = np.random.default_rng(1).uniform(-8.0, 16.0, (200, 2))    # many outside: clamped to the edge
    many = ground.at(pts.copy())
    few = np.concatenate([ground.at(pts[i:i + 5].copy()) for i in range(0, 200, 5)])
    assert np.array_equal(many, few)
    assert np.array_equal(ground(pts[:, 0], pts[:, 1]), many)
    g, res = ground.grid, ground.res
    for x, y in pts[:20]:
        gx = min(max((x - ground.x0) / res, 0.0), g.shape[1] - 1.001)
        gy = min(max((y - ground.y0) / res, 0.0), g.shape[0] - 1.001)
        ix, iy, fx, fy = int(gx), int(gy), gx - int(gx), gy - int(gy)
        expected = ((1 - fx) * (1 - fy) * g[iy, ix] + fx * (1 - fy) * g[iy, ix + 1]
                    + (1 - fx) * fy * g[iy + 1, ix] + fx * fy * g[iy + 1, ix + 1])
        assert ground.at(np.array([[x, y]]))[0] == pytest.approx(expected, abs=1e-12)


def test_md_batch_is_the_formula_plus_ground_and_equals_single_samples(robot):
    objs = [{'id': 'A', 'kind': 'mine', 'x': 2.0, 'y': 3.0, 'depth_m': 0.10, 'metal_g': 4.0},
            {'id': 'B', 'kind': 'uxo', 'x': 2.3, 'y': 2.8, 'depth_m': 0.30, 'metal_g': 200.0}]
    soil = {'md_ground_amplitude': 0.004, 'md_ground_correlation_m': 0.8, 'md_noise': 0.003,
            'md_drift': 0.001, 'gpr_clutter_density': 0.0}
    sc = make_scenario(objs, soil)
    a, h = robot.metal_detector.coil_radius, robot.metal_detector.coil_height
    coils = robot.metal_detector.coil_positions()
    ts = [0.02 * i for i in range(1, 7)]
    poses = [(1.5 + 0.05 * i, 2.9 + 0.01 * i, 0.3 - 0.2 * i) for i in range(6)]
    batch = SensorSuite.seeded(sc, robot, 5, SimConfig()).md_batch(ts, poses)
    single = SensorSuite.seeded(sc, robot, 5, SimConfig())
    quiet = SensorSuite.seeded(make_scenario(objs, {**soil, 'md_noise': 0.0, 'md_drift': 0.0}), robot, 5,
                               SimConfig())
    for t, (x, y, yaw), sample in zip(ts, poses, batch):
        c, s = math.cos(yaw), math.sin(yaw)
        expected_xy = [(x + c * px - s * py, y + s * px + c * py) for px, py in coils]
        assert np.allclose(sample.coil_xy, expected_xy, rtol=0, atol=1e-12)
        one = single.md_batch([t], [(x, y, yaw)])[0]
        assert np.array_equal(one.signal, sample.signal) and np.array_equal(one.coil_xy, sample.coil_xy)
        # without noise and drift: the issue formula plus the ground field, coil by coil
        got = quiet.md_batch([t], [(x, y, yaw)])[0].signal
        for (cx, cy), value in zip(expected_xy, got):
            metal = sum(m * (a * a / (a * a + (cx - ox) ** 2 + (cy - oy) ** 2 + (h + d) ** 2)) ** 3
                        for ox, oy, d, m in ((2.0, 3.0, 0.10, 4.0), (2.3, 2.8, 0.30, 200.0)))
            assert value == pytest.approx(metal + float(quiet.md.ground([cx], [cy])[0]), rel=1e-9, abs=1e-12)


# ------------------------------------------------------------------------------------------ GPR

def _bscan(model, xs, y):
    return np.array([model.trace(x, y, noise=False) for x in xs])


def test_gpr_hyperbola_apex_is_at_the_object(robot):
    sc = make_scenario([{'id': 'U', 'kind': 'uxo', 'x': 3.0, 'y': 2.0, 'depth_m': 0.25, 'metal_g': 300,
                         'diameter_m': 0.1}])
    model = GprModel(sc, robot, np.random.default_rng(0))
    xs = np.linspace(2.2, 3.8, 81)
    scan = _bscan(model, xs, 2.0)
    background = model.trace(0.2, 5.5, noise=False)
    diff = np.abs(scan - background[None, :])
    peak_time = model.times[diff.argmax(axis=1)]
    energy = diff.max(axis=1)
    apex = xs[energy.argmax()]
    assert apex == pytest.approx(3.0, abs=0.03)
    # arrival time follows the hyperbola t = t_surface + 2 sqrt(h² + d²) / v where the echo is strong
    strong = energy > 0.3 * energy.max()
    expected = model.two_way_time_ns(xs[strong] - 3.0, 0.25)
    dt_ns = model.times[1] - model.times[0]
    assert np.all(np.abs(peak_time[strong] - expected) < 0.2 + dt_ns)
    assert peak_time[strong].min() == pytest.approx(model.two_way_time_ns(0.0, 0.25), abs=0.2)
    assert model.depth_of_time(model.two_way_time_ns(0.0, 0.25)) == pytest.approx(0.25)


def test_gpr_plastic_mine_strong_small_fragment_weak(robot):
    sc = make_scenario([
        {'id': 'M', 'kind': 'mine', 'x': 1.0, 'y': 1.0, 'depth_m': 0.08, 'metal_g': 1.0, 'diameter_m': 0.09},
        {'id': 'F', 'kind': 'clutter', 'x': 4.0, 'y': 1.0, 'depth_m': 0.08, 'metal_g': 3.0,
         'diameter_m': 0.02}])
    gpr = GprModel(sc, robot, np.random.default_rng(0))
    md = MetalDetectorModel(sc, robot, np.random.default_rng(0))
    bg = gpr.trace(2.5, 4.0, noise=False)
    mine_echo = np.abs(gpr.trace(1.0, 1.0, noise=False) - bg).max()
    frag_echo = np.abs(gpr.trace(4.0, 1.0, noise=False) - bg).max()
    assert mine_echo > 4.0 * frag_echo
    assert md.metal_signal([4.0], [1.0])[0] > 2.0 * md.metal_signal([1.0], [1.0])[0]
    assert bg.shape == (512,) and bg.dtype == np.float32
    # the surface reflection is the strongest arrival, at t_surface
    assert gpr.times[np.abs(bg).argmax()] == pytest.approx(gpr.t_surface, abs=0.05)


def test_gpr_traces_are_the_sum_of_ricker_echoes_and_batches_equal_single_traces(robot):
    objs = [{'id': 'A', 'kind': 'mine', 'x': 2.0, 'y': 2.0, 'depth_m': 0.10, 'metal_g': 1.0,
             'diameter_m': 0.08},
            {'id': 'B', 'kind': 'mine', 'x': 2.3, 'y': 2.1, 'depth_m': 0.20, 'metal_g': 1.0,
             'diameter_m': 0.2}]
    soil = {'gpr_clutter_density': 2.0, 'gpr_noise': 0.002, 'gpr_attenuation': 2.0}
    sc = make_scenario(objs, soil)
    model = GprModel(sc, robot, np.random.default_rng(0))
    x, y = 2.1, 2.05
    cfg = model.config
    expected = model.surface_reflectivity * ricker(model.times - model.t_surface, cfg.centre_frequency_ghz)
    echoes = 0
    for rx, ry, rd, ra in zip(model._rx, model._ry, model._rd, model._ra):
        off = math.hypot(rx - x, ry - y)
        if off >= cfg.max_offset_m:
            continue
        echoes += 1
        dist = math.hypot(off, rd)
        amp = (ra * min(1.0, 0.1 / dist) * math.exp(-2.0 * sc.soil.gpr_attenuation * dist)
               * math.exp(-(math.degrees(math.atan2(off, rd)) / cfg.beam_half_angle_deg) ** 2))
        arrival = model.two_way_time_ns(off, rd)
        expected = expected + amp * ricker(model.times - arrival, cfg.centre_frequency_ghz)
    assert echoes >= 2
    assert np.allclose(model.trace(x, y, noise=False), expected, rtol=1e-5, atol=1e-7)
    # k traces in one call are the k single traces (same random draws in the same order)
    xs, ys = np.array([1.9, 2.0, 2.1, 2.2]), np.array([2.0, 2.05, 2.1, 2.0])
    batch = GprModel(sc, robot, np.random.default_rng(3)).traces(xs, ys)
    single = GprModel(sc, robot, np.random.default_rng(3))
    assert np.array_equal(batch, np.array([single.trace(a, b) for a, b in zip(xs, ys)]))


# --------------------------------------------------------------------------------------- camera

def test_camera_sees_only_surface_objects(robot):
    objs = [{'id': 'S', 'kind': 'surface', 'x': 2.0, 'y': 2.0, 'depth_m': 0.0, 'metal_g': 2,
             'diameter_m': 0.1},
            {'id': 'B', 'kind': 'mine', 'x': 4.0, 'y': 2.0, 'depth_m': 0.05, 'metal_g': 2, 'diameter_m': 0.1}]
    with_objects = CameraModel(make_scenario(objs), robot, np.random.default_rng(1))
    bare = CameraModel(make_scenario([objs[1]]), robot, np.random.default_rng(1))
    cam_x = robot.camera.xyz[0]
    over_surface = (2.0 - cam_x, 2.0, 0.0)
    over_buried = (4.0 - cam_x, 2.0, 0.0)
    img_s, img_s0 = with_objects.render(over_surface), bare.render(over_surface)
    diff = np.abs(img_s.astype(int) - img_s0.astype(int)).sum(axis=2) > 30
    assert img_s.shape == (480, 640, 3) and img_s.dtype == np.uint8
    # the object is drawn at the image centre with its true size: 0.1 m at ~1.6 mm/px -> ~62 px
    ys, xs = np.nonzero(diff)
    assert abs(xs.mean() - 320) < 3 and abs(ys.mean() - 240) < 3
    expected_px = 0.1 * with_objects.intrinsics.fx / robot.camera.xyz[2]
    assert xs.max() - xs.min() == pytest.approx(expected_px, rel=0.1)
    # a buried mine is invisible: the image equals the bare ground
    assert np.array_equal(with_objects.render(over_buried), bare.render(over_buried))


def test_camera_projection_orientation(robot):
    cam = CameraModel(make_scenario([]), robot, np.random.default_rng(0))
    pose = (1.0, 1.0, math.pi / 2)  # facing north
    cx = 1.0
    cy = 1.0 + robot.camera.xyz[0]
    u, v = cam.world_to_pixel(pose, [[cx, cy + 0.1], [cx + 0.1, cy]]).T
    assert v[0] < 240 and u[0] == pytest.approx(320, abs=1e-6)   # ahead -> image up
    assert u[1] > 320 and v[1] == pytest.approx(240, abs=1e-6)   # east = robot's right -> image right


# ------------------------------------------------------------------------------- GNSS, robot

def test_gnss_modes_noise_and_dropout():
    sc = make_scenario([], gnss={'mode': 'rtk', 'events': [
        {'start': 100, 'end': 400, 'mode': 'float'}, {'start': 400, 'end': 700, 'mode': 'single'},
        {'start': 700, 'end': 710, 'mode': 'none'}]})
    model = GnssModel(sc, np.random.default_rng(2))
    fixes = [model.sample(i * 0.1, 1.0, 2.0) for i in range(7200)]
    for mode, lo, hi in (('rtk', 0, 1000), ('float', 1000, 4000), ('single', 4000, 7000)):
        err = np.array([[f.x - 1.0, f.y - 2.0] for f in fixes[lo:hi]])
        assert all(f.mode == mode and f.sigma_h == GNSS_SIGMA[mode] for f in fixes[lo:hi])
        assert 0.4 * GNSS_SIGMA[mode] < err.std() < 2.0 * GNSS_SIGMA[mode]
    assert all(not f.valid and f.quality == 0 and math.isnan(f.lat) for f in fixes[7000:7100])
    assert fixes[7150].valid and fixes[50].quality == 4 and fixes[2000].quality == 5
    lon, lat = sc.frame.to_wgs84(fixes[10].x, fixes[10].y)
    assert fixes[10].lat == pytest.approx(lat) and fixes[10].lon == pytest.approx(lon)


def test_kinematics_limits_slip_and_odometry_drift(robot):
    cfg = KinematicsConfig(slip_noise=0.0)
    base = SkidSteer(robot, (0.0, 0.0, 0.0), cfg, np.random.default_rng(0))
    odom = WheelOdometry(cfg, np.random.default_rng(1))
    base.step(0.1, 5.0, 0.0)
    assert base.wheel_v == pytest.approx(robot.max_linear_accel * 0.1)  # acceleration limit
    for _ in range(200):
        base.step(0.05, 5.0, 0.0)
        odom.step(0.05, base.wheel_v, base.wheel_w)
    assert base.wheel_v == pytest.approx(robot.max_linear)               # speed limit
    assert base.body_v == pytest.approx(robot.max_linear * (1 - cfg.slip_linear))
    assert odom.pose.x > base.pose.x * 1.02                               # slip + scale -> over-reads
    base.step(0.05, float('nan'), 0.0)                                    # nonsense -> decelerate
    assert base.wheel_v < robot.max_linear


def test_world_lockstep_rates_and_determinism(robot):
    objs = [{'id': 'A', 'kind': 'mine', 'x': 1.5, 'y': 0.0, 'depth_m': 0.05, 'metal_g': 3.0}]
    soil = {'md_noise': 0.002, 'gpr_clutter_density': 0.5}
    runs = []
    for _ in range(2):
        world = SimWorld(make_scenario(objs, soil), robot, seed=11)
        steps = [world.step(0.1, 0.3, 0.05) for _ in range(20)]
        runs.append((world, steps))
    (w1, s1), (w2, s2) = runs
    md1 = np.array([s.signal for st in s1 for s in st.md])
    md2 = np.array([s.signal for st in s2 for s in st.md])
    assert md1.shape == (100, 5) and np.array_equal(md1, md2)
    assert w1.true_pose == w2.true_pose and w1.time == pytest.approx(2.0)
    kinds = ('md', 'gpr', 'camera', 'gnss', 'imu', 'odom')
    counts = {k: sum(len(getattr(st, k)) for st in s1) for k in kinds}
    assert counts == {'md': 100, 'gpr': 50, 'camera': 2, 'gnss': 20, 'imu': 100, 'odom': 100}
    stamps = [s.t for st in s1 for s in st.md]
    assert np.allclose(np.diff(stamps), 0.02)
    # a different seed changes the noise; switching the camera off does not change the detector
    other = SimWorld(make_scenario(objs, soil), robot, seed=12)
    assert not np.array_equal(np.array([s.signal for s in other.step(2.0, 0.3, 0.05).md]), md1)
    nocam = SimWorld(make_scenario(objs, soil), robot, seed=11, config=SimConfig(camera_rate=0.0))
    md3 = np.array([s.signal for _ in range(20) for s in nocam.step(0.1, 0.3, 0.05).md])
    assert np.array_equal(md3, md1)


def test_world_marks_land_at_true_nozzle_position(robot):
    world = SimWorld(make_scenario([]), robot, seed=0, config=SimConfig(camera_rate=0.0))
    world.set_pose(2.0, 3.0, math.pi / 2)
    mark = world.mark(slide=0.3, target_id='T1')
    nx, ny = robot.marker.xyz[:2]
    assert mark.x == pytest.approx(2.0 - (ny + 0.3)) and mark.y == pytest.approx(3.0 + nx)
    assert world.marks == [mark]
    clamped = world.mark(slide=5.0)
    assert clamped.x == pytest.approx(2.0 - (ny + robot.marker.slide_limits[1]))


def test_pacer_keeps_the_requested_rate_through_late_ticks_and_forgives_a_stall():
    from mine_robot.sim.world import Pacer
    step, rate = 0.04, 2.0
    pacer = Pacer(rate, step, wall=0.0, sim=0.0, max_catch_up=2)
    sim, wall, period = 0.0, 0.0, step / rate
    for k in range(1000):
        # every third tick comes half a period late, every tenth is skipped by a busy executor
        wall = (k + 1) * period + (0.5 * period if k % 3 == 0 else 0.0)
        if k % 10 == 9:
            continue
        sim += step * pacer.steps(wall, sim)
    assert sim == pytest.approx(rate * 1000 * period, abs=2 * step)   # one step per tick would lose 10 %
    # never ahead of the wall clock by more than half a step
    assert pacer.steps(wall - 0.5 * period, sim) <= 1
    # a 3 s stall: not replayed as a burst (at most one step now), the rate holds after it
    wall += 3.0
    assert pacer.steps(wall, sim) == 1
    sim += step
    assert pacer.steps(wall + period, sim) == 1
    with pytest.raises(ValueError):
        Pacer(0.0, step, 0.0, 0.0)


def test_world_resumes_a_recorded_run_where_it_stopped(robot, tmp_path):
    import json
    objs = [{'id': 'A', 'kind': 'mine', 'x': 1.5, 'y': 0.0, 'depth_m': 0.05, 'metal_g': 3.0}]
    config = SimConfig(camera_rate=0.0)
    first = SimWorld(make_scenario(objs), robot, seed=3, config=config)
    for _ in range(30):
        first.step(0.1, 0.3, 0.1)
    first.mark(target_id='T1')
    truth = json.loads(first.write_truth(tmp_path, time_base=1.7e9).read_text())

    again = SimWorld(make_scenario(objs), robot, seed=3, config=config)
    again.resume(truth, at_time=3.5)              # the mission recorded up to 3.5 s
    assert again.time == pytest.approx(3.5)
    assert again.true_pose == pytest.approx(first.true_pose, abs=1e-4)
    assert [(m.t, m.target_id) for m in again.marks] == [(first.marks[0].t, 'T1')]
    assert len(again.track) == len(first.track)
    step = again.step(0.1, 0.0, 0.0)
    # the sensors go on from now: no burst of samples for the time before the resume
    assert [round(s.t, 3) for s in step.md] == [3.52, 3.54, 3.56, 3.58, 3.6]
    assert again.track[-1][0] > 3.5
    # the clock never runs backwards: a truth file newer than the records sets it
    later = SimWorld(make_scenario(objs), robot, seed=3, config=config)
    later.resume(truth, at_time=1.0)
    assert later.time == pytest.approx(first.track[-1][0])
    with pytest.raises(ValueError, match='seed'):
        SimWorld(make_scenario(objs), robot, seed=4, config=config).resume(truth)
    with pytest.raises(ValueError, match='no usable track'):
        SimWorld(make_scenario(objs), robot, seed=3, config=config).resume({**truth, 'track': []})


def test_truth_journal_keeps_the_rows_between_two_writes_of_the_truth_file(tmp_path):
    from mine_robot.sim.world import TruthJournal
    path = tmp_path / 'sim_truth.journal'
    journal = TruthJournal(path)
    journal.append([(1.0, 0.0, 0.0, 0.0), (1.04, 0.01, 0.0, 0.0)])
    journal.append([(1.08, 0.02, 0.0, 0.0)])
    with path.open('a') as f:
        f.write('[1.12, 0.03, 0.0')                 # the row a SIGKILL tore in half
    assert [r[0] for r in TruthJournal.read(path, after_t=1.0)] == [1.04, 1.08]
    journal.clear()                                 # the rows are in sim_truth.json now
    journal.append([(2.0, 1.0, 1.0, 0.5)])
    journal.close()
    assert TruthJournal.read(path, after_t=0.0) == [[2.0, 1.0, 1.0, 0.5]]
    assert TruthJournal.read(tmp_path / 'missing.journal', after_t=0.0) == []
