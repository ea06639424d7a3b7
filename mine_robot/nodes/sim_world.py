"""``sim_world``: the built-in simulator's robot — skid-steer motion driven by ``cmd_vel``, wheel
odometry, IMU, GNSS, ground truth and ``/clock``.

Each tick (``step`` s of sim time, every ``step / real_time_factor`` s of wall time) it advances
the lockstep :class:`mine_robot.sim.world.SimWorld` with the latest ``cmd_vel`` (zero after
``cmd_vel_timeout`` s of silence) and publishes ``/clock``, ``sim/ground_truth`` (true pose in
``map``, for ``sim_sensors`` and tools) and the samples that fell due: ``odom``, ``imu/data``,
``gnss/fix``. The metal detector, GPR and camera come from ``sim_sensors``. With
``truth_output_dir`` set it writes ``sim_truth.json`` (true track and marks) for the judge, every
5 s and at once after each mark; with ``resume_truth`` it continues the run recorded there (a
sweep restarted after a crash: same track, marks and clock, the robot where it was). With
``start_paused`` the clock stands still (``/clock`` repeats the start time, nothing moves) until
``sim_world/run`` (std_srvs/Trigger) is called: ``mine-robot sweep`` starts the world so once every
node of its graph is up, so the robot does not start driving while a dozen node processes are
still importing on a 2-core machine (a sweep whose first transit ran in that storm oscillated off
its path, out of the search area, and faulted).
With ``virtual_devices`` the GNSS (NMEA) and the marker are pty serial devices
(``mine_robot.sim.virtual_devices``); a mark fired through the marker lands at the nozzle's true
position.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import math
from pathlib import Path
import sys
import time

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import Imu, NavSatFix
from std_srvs.srv import Trigger

from mine_robot.nodes import _sim_common as conv
from mine_robot.robot import RobotConfigError, load_robot
from mine_robot.ros import qos
from mine_robot.ros.conversions import sec_to_stamp
from mine_robot.ros.diagnostics import OK, WARN, Diagnostics
from mine_robot.ros.params import ConfigError, declare
from mine_robot.sim.kinematics import KinematicsConfig
from mine_robot.sim.scenario import ScenarioError, load_scenario
from mine_robot.sim.world import Pacer, SimConfig, SimWorld, TruthJournal

# steps one late timer callback may take to catch up with the wall clock (x real_time_factor)
MAX_CATCH_UP = 2


@dataclass(frozen=True)
class SimWorldSettings:
    scenario: str
    seed: int
    robot_config: str
    real_time_factor: float
    step: float
    cmd_vel_timeout: float
    map_frame: str
    odom_frame: str
    base_frame: str
    truth_output_dir: str
    time_base: float
    resume_truth: bool
    resume_time: float
    virtual_devices: bool
    publish_direct: bool
    device_dir: str
    start_paused: bool
    sim: SimConfig


def declare_settings(node: Node) -> SimWorldSettings:
    d = KinematicsConfig()
    kin = {}
    for name, desc, rng in (
            ('slip_linear', 'fraction of wheel speed lost to slip', (0.0, 0.9)),
            ('slip_angular', 'fraction of wheel turn rate lost to scrub', (0.0, 0.9)),
            ('slip_noise', 'std of the slip variation (fraction)', (0.0, 0.5)),
            ('odom_scale_error', 'wheel odometry over-read (fraction)', (0.0, 0.5)),
            ('odom_yaw_rate_bias', 'odometric turn-rate bias (rad/s)', (-0.5, 0.5)),
            ('odom_noise_linear', 'odometric speed noise (m/s)', (0.0, 1.0)),
            ('odom_noise_angular', 'odometric turn-rate noise (rad/s)', (0.0, 1.0))):
        kin[name] = declare(node, f'kinematics.{name}', getattr(d, name), desc, range=rng)
    rates = {name: declare(node, name, default, f'{what} rate (Hz, sim time; 0 = off)', range=(0.0, 1000.0))
             for name, default, what in (('gnss_rate', 10.0, 'GNSS fix'), ('imu_rate', 50.0, 'IMU'),
                                         ('odom_rate', 50.0, 'wheel odometry'))}
    try:
        sim = SimConfig(md_rate=0.0, gpr_rate=0.0, camera_rate=0.0,
                        gnss_altitude=declare(node, 'gnss_altitude', 100.0, 'antenna altitude (m)',
                                              range=(-500.0, 9000.0)),
                        kinematics=KinematicsConfig(**kin), **rates)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return SimWorldSettings(
        scenario=declare(node, 'scenario', 'default', 'scenario: packaged name or YAML path',
                         read_only=True),
        seed=declare(node, 'seed', 0, 'random seed (same seed, same run)', range=(0, 2 ** 31 - 1),
                     read_only=True),
        robot_config=declare(node, 'robot_config', '', 'robot.yaml (empty: package default)',
                             read_only=True),
        real_time_factor=declare(node, 'real_time_factor', 1.0, 'sim seconds per wall second',
                                 range=(0.01, 200.0)),
        step=declare(node, 'step', 0.04, 'sim seconds per tick (clock period)', range=(0.001, 0.1)),
        cmd_vel_timeout=declare(node, 'cmd_vel_timeout', 0.5, 'stop after this silence (s, sim)',
                                range=(0.01, 60.0)),
        map_frame=declare(node, 'map_frame', 'map', 'frame of the ground truth'),
        odom_frame=declare(node, 'odom_frame', 'odom', 'frame of wheel odometry'),
        base_frame=declare(node, 'base_frame', 'base_link', 'robot body frame'),
        truth_output_dir=declare(node, 'truth_output_dir', '', 'write sim_truth.json here (empty: off)'),
        time_base=declare(node, 'time_base', 0.0, 'POSIX seconds of sim time 0 (for the judge)'),
        resume_truth=declare(node, 'resume_truth', False,
                             'continue the run in truth_output_dir/sim_truth.json (same scenario and '
                             'seed): its track and marks, the robot at its last pose, the clock going on',
                             read_only=True),
        resume_time=declare(node, 'resume_time', 0.0,
                            'with resume_truth: start the clock no earlier than this (s, sim; the '
                            "mission records' latest time)", range=(0.0, 1e9), read_only=True),
        virtual_devices=declare(node, 'virtual_devices', False, 'GNSS and marker as pty devices',
                                read_only=True),
        publish_direct=declare(node, 'publish_direct', True,
                               'also publish the GNSS data directly (false when the real drivers '
                               'read the virtual devices and publish the same topics)', read_only=True),
        device_dir=declare(node, 'device_dir', '/tmp/mine_robot_sim', 'where the device links go',
                           read_only=True),
        start_paused=declare(node, 'start_paused', False,
                             'hold the clock at its start time until sim_world/run is called',
                             read_only=True),
        sim=sim)


class SimWorldNode(Node):
    def __init__(self, **kwargs):
        super().__init__('sim_world', **kwargs)
        self.settings = s = declare_settings(self)
        try:
            self.scenario = load_scenario(s.scenario)
            self.robot = load_robot(s.robot_config or None)
        except (ScenarioError, RobotConfigError) as exc:
            raise ConfigError(str(exc)) from exc
        self.world = SimWorld(self.scenario, self.robot, seed=s.seed, config=s.sim)
        if s.resume_truth and s.truth_output_dir:
            self._resume(Path(s.truth_output_dir) / 'sim_truth.json', s.resume_time)
        self._marks_written = len(self.world.marks)
        self._journal = None
        if s.truth_output_dir:
            self._journal = TruthJournal(Path(s.truth_output_dir) / 'sim_truth.journal')
            self._journaled = len(self.world.track)
            self.write_truth()      # the resumed (or new) run's truth, then its journal from here
        self.cmd = (0.0, 0.0)
        self.cmd_time = -math.inf
        self.clock_pub = self.create_publisher(ClockMsg, '/clock', 10)
        self.truth_pub = self.create_publisher(Odometry, 'sim/ground_truth', qos.RELIABLE)
        self.odom_pub = self.create_publisher(Odometry, 'odom', qos.SENSOR)
        self.imu_pub = self.create_publisher(Imu, 'imu/data', qos.SENSOR)
        self.fix_pub = self.create_publisher(NavSatFix, 'gnss/fix', qos.SENSOR)
        self.create_subscription(Twist, 'cmd_vel', self._on_cmd, qos.RELIABLE)
        self.diag = Diagnostics(self, hardware_id='builtin-sim')
        self.devices = None
        if s.virtual_devices:
            from mine_robot.sim.virtual_devices import WorldDevices
            self.devices = WorldDevices(self.world, s.device_dir, s.time_base)
            self.get_logger().info(f'virtual devices: {self.devices.links()}')
        self._anchor_clock()
        self._last_truth_write = time.monotonic()
        self.running = not s.start_paused
        self.create_service(Trigger, '~/run', self._on_run)
        self.publish_clock()
        if not self.running:
            self.diag.update(OK, 'paused: the clock starts when sim_world/run is called',
                             {'sim_time': round(self.world.time, 2), 'paused': True}, force=True)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.timer = self.create_timer(s.step / s.real_time_factor, self._tick, clock=steady)
        self.get_logger().info(
            f'scenario {self.scenario.name!r} ({len(self.scenario.objects)} objects), seed {s.seed}, '
            f'{s.real_time_factor:g}x real time, step {s.step} s')

    def _resume(self, path: Path, at_time: float) -> None:
        """Continue the run recorded in ``path`` (a restart of the sweep after a crash); a missing
        or unusable file starts the scenario afresh, with the reason in the log."""
        if not path.is_file():
            self.get_logger().info(f'resume_truth: no {path}: starting the scenario afresh')
            return
        try:
            truth = json.loads(path.read_text())
            track = truth.get('track') or []
            last_t = float(track[-1][0]) if track else -math.inf
            # rows the kill kept out of sim_truth.json: the journal written every tick
            truth['track'] = track + TruthJournal.read(path.with_suffix('.journal'), last_t)
            self.world.resume(truth, at_time if at_time > 0 else None)
        except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
            # JSONDecodeError is a ValueError
            self.get_logger().error(f'cannot resume from {path} ({exc}): starting the scenario afresh')
            return
        x, y, yaw = self.world.true_pose
        self.get_logger().info(f'resumed {path} at t={self.world.time:.2f} s, robot at ({x:.2f}, '
                               f'{y:.2f}, {math.degrees(yaw):.0f} deg), {len(self.world.marks)} marks')

    def _on_cmd(self, msg: Twist) -> None:
        v, w = float(msg.linear.x), float(msg.angular.z)
        if not (math.isfinite(v) and math.isfinite(w)):
            self.get_logger().warn('ignoring non-finite cmd_vel', throttle_duration_sec=5.0)
            return
        self.cmd = (v, w)
        self.cmd_time = self.world.time

    def publish_clock(self) -> None:
        self.clock_pub.publish(ClockMsg(clock=sec_to_stamp(self.world.time)))

    def _anchor_clock(self) -> None:
        """Simulated time runs from here: now on the wall clock is the world's current time."""
        self._wall_start, self._sim_start = time.monotonic(), self.world.time
        self._pacer = Pacer(self.settings.real_time_factor, self.settings.step, self._wall_start,
                            self._sim_start, MAX_CATCH_UP)

    def _on_run(self, _request, response):
        if self.running:
            response.success, response.message = True, f'already running (t={self.world.time:.2f} s)'
            return response
        self._anchor_clock()
        self.running = True
        response.success, response.message = True, f'clock running from t={self.world.time:.2f} s'
        self.get_logger().info(response.message)
        return response

    def _tick(self) -> None:
        """Advance the simulation to where the wall clock says it should be (``Pacer``): late timer
        callbacks no longer cost simulated time (the default sweep ran at 1.92x of 2x)."""
        if not self.context.ok():      # shutting down (Ctrl-C): publishers are already invalid
            return
        if not self.running:
            self.publish_clock()
            return
        for _ in range(self._pacer.steps(time.monotonic(), self.world.time)):
            self._advance()

    def _advance(self) -> None:
        s = self.settings
        fresh = self.world.time - self.cmd_time <= s.cmd_vel_timeout
        v, w = self.cmd if fresh else (0.0, 0.0)
        step = self.world.step(s.step, v, w)
        if self.devices is not None:
            self.devices.service(step)
        if len(self.world.marks) != self._marks_written:
            self.write_truth()        # a mark is on disk at once: a crash must not lose it
        elif self._journal is not None:
            self._journal.append(self.world.track[self._journaled:])
            self._journaled = len(self.world.track)
        self.publish_clock()
        x, y, yaw = step.true_pose
        base = self.world.base
        self.truth_pub.publish(conv.odometry(step.t, s.map_frame, s.base_frame, x, y, yaw,
                                             base.body_v, base.body_w))
        for o in step.odom:
            self.odom_pub.publish(conv.odometry(o.t, s.odom_frame, s.base_frame, o.x, o.y, o.yaw, o.v, o.w,
                                                pose_sigma=(0.05, 0.05), twist_sigma=(0.03, 0.05)))
        for sample in step.imu:
            self.imu_pub.publish(conv.imu(sample, self.robot.imu.frame))
        if s.publish_direct:
            for fix in step.gnss:
                self.fix_pub.publish(conv.navsat_fix(fix, self.robot.gnss.frame))
        self._report(step.gnss[-1].mode if step.gnss else None)

    def _report(self, gnss_mode: str | None) -> None:
        now = time.monotonic()
        if self.settings.truth_output_dir and now - self._last_truth_write > 5.0:
            self.write_truth()
        wall = now - self._wall_start
        achieved = (self.world.time - self._sim_start) / wall if wall > 0 else 0.0
        wanted = self.settings.real_time_factor
        level = OK if wall < 3.0 or achieved >= 0.8 * wanted else WARN
        msg = 'running' if level == OK else f'falling behind: {achieved:.1f}x of {wanted:g}x real time'
        values = {'sim_time': round(self.world.time, 2), 'real_time_factor': round(achieved, 2),
                  'marks': len(self.world.marks)}
        if gnss_mode:
            values['gnss_mode'] = gnss_mode
        self.diag.update(level, msg, values)

    def write_truth(self) -> None:
        self._last_truth_write = time.monotonic()
        self._marks_written = len(self.world.marks)
        if self._journal is None:
            return
        try:
            self.world.write_truth(self.settings.truth_output_dir, self.settings.time_base)
            self._journal.clear()
            self._journaled = len(self.world.track)
        except OSError as exc:
            self.get_logger().error(f'cannot write sim_truth.json: {exc}', throttle_duration_sec=10.0)

    def close(self) -> None:
        self.timer.cancel()
        if self.devices is not None:
            self.devices.close()
        if self._journal is not None:
            self.write_truth()
            self._journal.close()


def main(args=None):
    from mine_robot.ros.runner import run_node
    sys.exit(run_node(SimWorldNode, args))


if __name__ == '__main__':
    main()
