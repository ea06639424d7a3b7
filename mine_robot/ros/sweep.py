"""``mine-robot sweep --sim [SCENARIO] -o OUT``: a whole autonomous sweep, one command.

Starts the built-in simulator and the complete ROS graph (drivers on virtual serial devices,
localization, planner, follower, twist mux, safety monitor, detection, fusion, marking, mission
manager) as separate processes (mine_robot.ros.graph), starts the mission through its
``mission/start`` service, shows progress from ``mission/status``, and when the mission is
complete scores the output folder with the simulator's judge (``judge.json``).

Exit status: 0 when the mission completed, 1 when it faulted, was aborted, timed out or a node
died (the node's last log lines are printed), 130 on Ctrl-C (the mission is aborted first, so
its records and exports are written).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
import json
import math
import os
from pathlib import Path
import random
import shutil
import signal
import sys
import threading
import time

import yaml

from mine_robot.launch_support import GraphPlan, LaunchConfigError
from mine_robot.resources import resource

FINAL_STATES = ('complete', 'aborted', 'fault')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--sim', nargs='?', const='default', metavar='SCENARIO',
                        help='run against the built-in simulator; SCENARIO is a packaged name '
                             '(mine-robot scenario list) or a YAML path (default: "default")')
    parser.add_argument('-o', '--output', default='out/sweep', help='output folder (default: out/sweep)')
    parser.add_argument('--rate', type=float, default=2.5,
                        help='simulated seconds per wall second (default 2.5; the graph needs about '
                             '1.7 cores at 2.5x: lower it on a slower machine)')
    parser.add_argument('--seed', type=int, default=0, help='simulator random seed (default 0)')
    parser.add_argument('--no-virtual-devices', action='store_true',
                        help='publish simulated sensors directly instead of through virtual serial '
                             'devices and the real drivers')
    parser.add_argument('--timeout', type=float, default=900.0,
                        help='wall-clock limit in seconds (default 900); the mission is aborted after it')
    parser.add_argument('--domain-id', type=int, default=None,
                        help='ROS_DOMAIN_ID for the graph (default: $ROS_DOMAIN_ID, else a random one)')
    parser.add_argument('--fresh', action='store_true',
                        help='delete an existing output folder first instead of resuming its mission')
    parser.add_argument('--log-level', default='warn', choices=('debug', 'info', 'warn', 'error'),
                        help='log level of the nodes (logs in OUTPUT/logs/)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar, only the summary')
    parser.add_argument('--respawn', type=int, default=3, metavar='N',
                        help='restart a node that dies, at most N times each (default 3; 0: a dead '
                             'node ends the sweep); the mission manager resumes from mission.db')
    parser.add_argument('--lockstep', action='store_true',
                        help='run the same mission without ROS, as fast as the machine allows, on one '
                             'simulated clock (mine_robot.mission.lockstep; always a fresh output '
                             'folder; --rate, --domain-id and --no-virtual-devices do not apply)')
    parser.add_argument('--set', action='append', default=[], metavar='NODE.PARAM=VALUE',
                        help='with --lockstep: override a node parameter, e.g. '
                             'safety_monitor.hazard_enabled=true (YAML value; repeatable)')


@dataclass
class Progress:
    """The latest mission/status, and the latest diagnostics values per status name."""

    status: dict | None = None
    diagnostics: dict = field(default_factory=dict)


def dds_profile_env(environ) -> dict[str, str]:
    """The Fast DDS profile for the sweep graph (``config/fastdds_sim.xml``: an 8 MB shared-memory
    segment, so 921 kB camera images go through shared memory instead of lossy UDP fragments),
    unless the user already chose a profile file."""
    if environ.get('FASTDDS_DEFAULT_PROFILES_FILE') or environ.get('FASTRTPS_DEFAULT_PROFILES_FILE'):
        return {}
    return {'FASTDDS_DEFAULT_PROFILES_FILE': str(resource('config', 'fastdds_sim.xml'))}


def sensor_data_delivery(diagnostics: dict, gpr_channels: int = 1) -> list[dict]:
    """What share of the simulated sensor data reached the detectors, from the nodes' last
    diagnostics: per stream (metal detector samples, GPR antenna traces = scans x antennas, camera
    images) ``used`` (processed by the detector), ``before_pose`` (arrived before the first pose:
    start-up, not lost on the way), ``produced`` (made by sim_sensors) and ``per_sim_s``. Where the
    stream's serial driver reports (virtual devices), also ``received`` (frames it decoded) and
    ``serial_lost`` (frames its sequence numbers say the line dropped): what the simulator wrote
    before the driver had opened the device, ``produced - received - serial_lost``, is start-up
    too. A stream whose counters are missing is left out."""
    sim = diagnostics.get('sim_sensors') or {}
    out = []
    antennas = max(1, int(gpr_channels))
    for stream, unit, node, used_key, sim_key, factor, driver in (
            ('metal detector', 'samples', 'md_detector', 'samples', 'md_samples', 1, 'metal_detector_driver'),
            ('GPR', 'traces', 'gpr_detector', 'traces', 'gpr_samples', antennas, 'gpr_driver'),
            ('camera', 'images', 'camera_detector', 'images', 'camera_samples', 1, None)):
        node_diag = diagnostics.get(node) or {}
        try:
            used = int(float(node_diag[used_key]))
            produced = int(float(sim[sim_key])) * factor
            before_pose = int(float(node_diag.get('dropped_no_pose', 0)))
            sim_time = float(sim.get('sim_time', 0.0))
        except (KeyError, TypeError, ValueError):
            continue
        if produced <= 0:
            continue
        entry = {'stream': stream, 'unit': unit, 'used': used, 'before_pose': before_pose,
                 'produced': produced, 'per_sim_s': produced / sim_time if sim_time > 0 else 0.0}
        drv = (diagnostics.get(driver) or {}) if driver else {}
        try:
            entry['received'] = int(float(drv['frames']))
            entry['serial_lost'] = int(float(drv.get('lost_messages', 0)))
        except (KeyError, TypeError, ValueError):
            pass
        out.append(entry)
    return out


def _expected(d: dict) -> int:
    """What should have reached the detector: produced, less what the simulator wrote before the
    driver opened the device (when the driver reports)."""
    if 'received' in d:
        return min(d['produced'], d['received'] + d['serial_lost'])
    return d['produced']


def lossy_streams(delivery: list[dict], rate: float) -> list[str]:
    """Metal detector / GPR streams that lost data on the way: more than 2 % of what they should
    have delivered (:func:`_expected`), beyond what arrived before the first pose and the up to one
    second (wall) by which the counters of two nodes' diagnostics differ."""
    lossy = []
    for d in delivery:
        if d['stream'] == 'camera':
            continue
        expected = _expected(d)
        lost = expected - d['used'] - d['before_pose']
        if lost > 0.02 * expected + 1.5 * max(rate, 1.0) * d['per_sim_s']:
            lossy.append(d['stream'])
    return lossy


def delivery_text(d: dict) -> str:
    """'metal detector 99.1 % of 31990 samples (301 before its driver connected)'"""
    expected = _expected(d)
    notes = []
    if d['produced'] > expected:
        notes.append(f"{d['produced'] - expected} before its driver connected")
    if d.get('serial_lost'):
        notes.append(f"{d['serial_lost']} lost on the serial line")
    # the counters come from each node's last diagnostics, up to a second apart: a detector's
    # count can be a little ahead of the simulator's (100.1 %); that is all of it
    share = min(1.0, d['used'] / max(expected, 1))
    text = f"{d['stream']} {100 * share:.1f} % of {expected} {d['unit']}"
    return text + (f" ({', '.join(notes)})" if notes else '')


def _domain_id(arg: int | None) -> int:
    if arg is not None:
        return arg
    env = os.environ.get('ROS_DOMAIN_ID', '').strip()
    return int(env) if env.isdigit() else random.SystemRandom().randint(1, 100)


def _graph_plan(args: argparse.Namespace, out: Path, work: Path, time_base: float,
                resume: dict) -> GraphPlan:
    overrides = work / 'sweep_overrides.yaml'
    device_dir = str(work / 'devices')
    overrides.write_text(yaml.safe_dump({
        # the clock starts once every node is up (_start_world)
        'sim_world': {'ros__parameters': {'truth_output_dir': str(out), 'device_dir': device_dir,
                                          'time_base': time_base, 'start_paused': True, **resume}},
        'sim_sensors': {'ros__parameters': {'device_dir': device_dir}},
        'mission_manager': {'ros__parameters': {'autostart': False, 'time_base': time_base}},
        # a restarted graph takes the standing robot's heading from the last estimate
        'localization': {'ros__parameters': {'pose_file': str(work / 'localization_pose.json')}},
    }))
    return GraphPlan.from_arguments({
        'simulator': 'builtin', 'scenario': args.sim, 'use_sim_time': 'true',
        'virtual_devices': 'false' if args.no_virtual_devices else 'true',
        'config_dir': str(resource('config')), 'params_file': str(overrides),
        'urdf': str(resource('urdf', 'mine_robot.urdf')), 'publish_robot_state': 'false',
        'output_dir': str(out), 'real_time_factor': str(args.rate), 'seed': str(args.seed),
        'log_level': args.log_level,
    })


def _sim_resume(out: Path) -> tuple[float, dict]:
    """(time_base, sim_world resume parameters) for a sweep into ``out``. A folder that holds a
    mission database and the simulator's ``sim_truth.json`` (a sweep stopped by a crash or Ctrl-C)
    is continued: the simulator resumes its true track, marks and clock from the truth file, no
    earlier than the mission's latest record, on the same time base, so the judge scores the whole
    run. Otherwise sim time 0 is now (UTC): the truth and the exports agree."""
    from mine_robot.mission.records import latest_time
    fresh = round(time.time(), 3), {}
    truth = out / 'sim_truth.json'
    if not ((out / 'mission.db').is_file() and truth.is_file()):
        return fresh
    try:
        time_base = float(json.loads(truth.read_text())['time_base'])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f'warning: cannot continue the simulation in {truth} ({exc}): the simulator starts '
              'afresh', file=sys.stderr)
        return fresh
    if not (math.isfinite(time_base) and time_base > 0):
        return fresh
    return time_base, {'resume_truth': True, 'resume_time': latest_time(out / 'mission.db') or 0.0}


def _bar(status: dict, sim_t: float | None, wall: float, width: int = 24) -> str:
    pct = float(status.get('percent_covered', 0.0))
    filled = int(round(width * min(pct, 100.0) / 100.0))
    eta = status.get('eta_s') or 0.0
    speed = f' {sim_t / wall:.1f}x' if sim_t and wall > 5.0 else ''     # a few seconds in: steady
    return (f"[{'#' * filled}{'.' * (width - filled)}] {pct:5.1f}% covered | "
            f"lanes {status.get('lanes_done', 0)}/{status.get('lanes_total', 0)} | "
            f"hazards {status.get('hazards_found', 0)} found, {status.get('targets_marked', 0)} marked | "
            f"{status.get('state', '?')} | ETA {int(eta // 60)}m{int(eta % 60):02d}s (sim){speed}")


def run(args: argparse.Namespace) -> int:
    if args.sim is None:
        print('error: pip-mode sweeps run against the built-in simulator: use --sim [SCENARIO].\n'
              'On the real robot start the graph with `ros2 launch mine_robot robot.launch.py` and '
              'call the mission/start service (README: "With ROS 2 installed").', file=sys.stderr)
        return 2
    if not (0.1 <= args.rate <= 50.0):
        print(f'error: --rate {args.rate} must be between 0.1 and 50', file=sys.stderr)
        return 2
    out = Path(args.output).resolve()
    if args.lockstep:
        return _run_lockstep(args, out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / 'run'
    work.mkdir(exist_ok=True)
    time_base, resume = _sim_resume(out)
    try:
        plan = _graph_plan(args, out, work, time_base, resume)
        scenario = plan.scenario()
    except LaunchConfigError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    domain = _domain_id(args.domain_id)
    # this process joins the same graph: same domain, discovery on this machine only
    os.environ['ROS_DOMAIN_ID'] = str(domain)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ.update(dds_profile_env(os.environ))
    from mine_robot.ros.graph import Graph
    graph = Graph(plan, work, domain_id=domain, log_level=args.log_level)
    graph.max_restarts = max(0, args.respawn)
    say = (lambda *a: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    say(f'mine-robot sweep: scenario {scenario.name!r}, {len(graph.nodes)} nodes '
        f'(ROS_DOMAIN_ID={domain}), output {out}')
    if resume:
        say(f"the simulator continues the run in {out / 'sim_truth.json'} (its track and marks; the "
            f"clock from {resume['resume_time']:.1f} s or its last record)")
    t0 = time.monotonic()
    # SIGTERM/SIGHUP (a `timeout`, a closed terminal, a service manager) end the sweep like
    # Ctrl-C: the mission is aborted, its records and exports written, the graph stopped
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    code, final, diagnostics = 130, None, {}
    try:
        graph.start()
        code, final, diagnostics = _supervise(graph, args, say, t0)
    except KeyboardInterrupt:
        print('\ninterrupted while starting the graph', file=sys.stderr)
    finally:
        graph.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if final is not None:
        (out / 'mission_status.json').write_text(json.dumps(final, indent=1))
    result = _judge(scenario, out, say) if code == 0 else None
    _summary(out, final, result, time.monotonic() - t0, graph, code)
    _report_delivery(sensor_data_delivery(diagnostics, _gpr_channels()), args.rate, work)
    return code


def _gpr_channels() -> int:
    """Antennas of the packaged robot's GPR array (the simulated robot the sweep runs)."""
    from mine_robot.robot import load_robot
    return int(load_robot().gpr.channels)


def _report_delivery(delivery: list[dict], rate: float, work: Path) -> None:
    """Print how much sensor data reached the detectors; warn when the graph lost data (the
    machine did not keep up at this --rate: detection results are degraded, not comparable)."""
    if not delivery:
        return
    (work / 'sensor_data.json').write_text(json.dumps(delivery, indent=1))
    print('  sensor data used by the detectors: ' + ', '.join(delivery_text(d) for d in delivery))
    lost = lossy_streams(delivery, rate)
    if lost:
        print(f"  warning: the graph lost {' and '.join(lost)} data (the machine did not keep up at "
              f'--rate {rate:g}): detection results are degraded; run with a lower --rate')


def _overrides(items: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition('=')
        node, dot, param = key.partition('.')
        if not (sep and dot and node and param):
            raise ValueError(f'--set {item!r}: expected NODE.PARAM=VALUE')
        out.setdefault(node, {})[param] = yaml.safe_load(value)
    return out


def _run_lockstep(args: argparse.Namespace, out: Path) -> int:
    """The mission in lockstep (no ROS): same classes and configs, one process."""
    from mine_robot.launch_support import LaunchConfigError
    from mine_robot.mission.lockstep import FINAL, MissionRun
    say = (lambda *a: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        run = MissionRun(args.sim, out, seed=args.seed, overrides=_overrides(args.set))
    except (LaunchConfigError, ValueError, OSError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    say(f'mine-robot sweep --lockstep: scenario {run.scenario.name!r}, output {out}')
    t0 = last = time.monotonic()
    try:
        run.start()
        while run.state not in FINAL:
            run.step()
            if time.monotonic() - last >= 2.0:
                last = time.monotonic()
                status = run.mission.progress()
                say(_bar(status, run.time, last - t0))
            if time.monotonic() - t0 > args.timeout:
                run.mission.abort(run.time, f'wall-clock timeout of {args.timeout:.0f} s')
    except KeyboardInterrupt:
        run.mission.abort(run.time, 'interrupted')
    result = run.finish(time.monotonic() - t0)
    final = {**result.status, 'state': result.state}
    (out / 'mission_status.json').write_text(json.dumps(final, indent=1))
    code = 0 if result.state == 'complete' else 1
    _summary(out, final, result.judge if code == 0 else None, result.wall_time, None, code)
    print(f'  lockstep: {result.sim_time:.0f} s simulated in {result.wall_time:.0f} s wall '
          f'({result.sim_time / max(result.wall_time, 1e-9):.1f}x)')
    return code


def _interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _supervise(graph, args, say, t0: float) -> tuple[int, dict | None, dict]:
    """Start the mission and follow it to a final state. Returns (exit code, last status, the
    last diagnostics values per status name)."""
    from diagnostic_msgs.msg import DiagnosticArray
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from std_msgs.msg import String
    from std_srvs.srv import Trigger

    from mine_robot.ros import qos
    from mine_robot.ros.testing import call_service

    progress = Progress()
    sim_clock = {'t': None, 't0': None, 'w0': None}    # latest stamp; first stamp and its wall time
    lock = threading.Lock()
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=rclpy.SignalHandlerOptions.NO)
    node = rclpy.create_node('sweep_supervisor', context=context)

    def on_status(msg: String) -> None:
        try:
            status = json.loads(msg.data)
        except json.JSONDecodeError:
            return
        with lock:
            progress.status = status
            if isinstance(status.get('stamp'), (int, float)):
                sim_clock['t'] = float(status['stamp'])
                if sim_clock['t0'] is None:     # a resumed run's clock does not start at 0
                    sim_clock['t0'], sim_clock['w0'] = sim_clock['t'], time.monotonic()

    def on_diagnostics(msg) -> None:
        with lock:
            for st in msg.status:
                progress.diagnostics[st.name] = {kv.key: kv.value for kv in st.values}

    node.create_subscription(String, 'mission/status', on_status, qos.LATCHED)
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, 50)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def spin():
        try:
            executor.spin()
        except ExternalShutdownException:
            pass

    spinner = threading.Thread(target=spin, name='sweep-supervisor')
    spinner.start()
    tty = sys.stderr.isatty() and not args.quiet
    last_line = 0.0
    code, final = 1, None
    try:
        # wait for the mission manager, failing fast if a node dies during start-up
        deadline = time.monotonic() + 90.0
        _start_world(node, graph, deadline, say)
        started = False
        while not started:
            _check_alive(graph)
            if time.monotonic() > deadline:
                raise TimeoutError('the mission manager did not come up within 90 s '
                                   f'(see {graph.log_dir}/mission_manager.log)')
            try:
                response = call_service(node, Trigger, 'mission/start', timeout=5.0)
            except TimeoutError:
                continue
            if not response.success and 'already running' in response.message:
                # either the manager found this folder's mission interrupted and resumed it by
                # itself (resume_on_start), or an earlier start request of ours, answered too late,
                # started it: the mission's own status says which; either way it is the one to follow
                started = True
                resumed = None
                until = time.monotonic() + 5.0
                while resumed is None and time.monotonic() < until:
                    with lock:
                        latest = progress.status or {}
                    if latest.get('state', 'idle') != 'idle':
                        resumed = latest.get('resumed')
                    time.sleep(0.1)
                if resumed is False:
                    say('mission started (the answer to the start request came late; the manager '
                        f'reports: {response.message})')
                else:
                    say(f'mission resumed from {Path(args.output) / "mission.db"} (the mission '
                        f'manager resumed it: {response.message})')
                continue
            if not response.success:
                # the planner may not have published yet: the manager says so; retry briefly
                retry = ('plan' in response.message.lower() or 'clock is not running' in response.message)
                if retry and time.monotonic() < deadline:
                    time.sleep(1.0)
                    continue
                print(f'\nerror: mission/start refused: {response.message}', file=sys.stderr)
                return 1, None
            started = True
            say(f'mission started: {response.message}')
        while True:
            time.sleep(0.25)
            _check_alive(graph)
            with lock:
                status = progress.status
            wall = time.monotonic() - t0
            if status is not None:
                with lock:
                    t_now, t_first, w_first = sim_clock['t'], sim_clock['t0'], sim_clock['w0']
                line = _bar(status, None if t_now is None else t_now - t_first,
                            time.monotonic() - w_first if w_first is not None else wall)
                if tty:
                    print('\r' + line[:shutil.get_terminal_size((120, 20)).columns - 1],
                          end='', file=sys.stderr, flush=True)
                elif not args.quiet and time.monotonic() - last_line > 15.0:
                    print(line, file=sys.stderr, flush=True)
                    last_line = time.monotonic()
                if status.get('state') in FINAL_STATES:
                    final = status
                    code = 0 if status['state'] == 'complete' else 1
                    break
            if wall > args.timeout:
                print(f'\nerror: wall-clock limit of {args.timeout:.0f} s reached: aborting the mission',
                      file=sys.stderr)
                _abort(node, call_service, Trigger)
                final = _wait_final(progress, lock, 30.0) or status
                break
        if tty:
            print(file=sys.stderr)
        if final is not None and final.get('state') == 'complete':
            _wait_for_file(Path(args.output).resolve() / 'report.json', 60.0, graph)
    except KeyboardInterrupt:
        print('\ninterrupted: aborting the mission (records and exports are kept)', file=sys.stderr)
        _abort(node, call_service, Trigger)
        final = _wait_final(progress, lock, 20.0)
        code = 130
    except (NodeDiedError, TimeoutError) as exc:
        print(f'\nerror: {exc}', file=sys.stderr)
        with lock:
            final = progress.status
        code = 1
    finally:
        executor.shutdown(timeout_sec=2.0)
        spinner.join(timeout=5.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    with lock:
        diagnostics = dict(progress.diagnostics)
    return code, final, diagnostics


class NodeDiedError(RuntimeError):
    pass


def _check_alive(graph) -> None:
    """A node that died is restarted (``--respawn`` times at most, as launch_ros ``respawn``);
    one that keeps dying ends the sweep with its last log lines."""
    restarted, dead = graph.respawn(graph.max_restarts)
    for what in restarted:
        print(f'\nnode {what} died and was restarted (log {graph.log_dir})', file=sys.stderr, flush=True)
    if dead:
        node = dead[0]
        raise NodeDiedError(f'node {node.name} exited with code {node.process.returncode} after '
                            f'{node.restarts} restart(s); last log lines ({node.log_file}):\n{node.tail()}')


def _abort(node, call_service, trigger_type) -> None:
    try:
        response = call_service(node, trigger_type, 'mission/abort', timeout=5.0)
        print(f'mission/abort: {response.message}', file=sys.stderr)
    except TimeoutError as exc:
        print(f'mission/abort failed: {exc}', file=sys.stderr)


def _start_world(node, graph, deadline: float, say) -> None:
    """Start the simulator's clock (``sim_world/run``) once every node of the graph is on the ROS
    graph: until then nothing moves, so the robot does not drive while node processes are still
    importing (on this 2-core machine that storm lasts seconds; a first transit driven in it
    oscillated 0.6 m off its path and out of the search area). A node that is still missing after
    ``deadline`` is named and the world is started anyway (the mission may still run without it)."""
    from std_srvs.srv import Trigger

    from mine_robot.ros.testing import call_service
    expected = set(graph.nodes)
    missing = expected
    while time.monotonic() < deadline:
        _check_alive(graph)
        missing = expected - {name for name, _ns in node.get_node_names_and_namespaces()}
        if not missing:
            break
        time.sleep(0.2)
    if missing:
        say(f"starting the simulator's clock without {', '.join(sorted(missing))} (not on the ROS "
            f'graph in time; see {graph.log_dir}/)')
    while True:
        _check_alive(graph)
        try:
            response = call_service(node, Trigger, 'sim_world/run', timeout=5.0)
        except TimeoutError as exc:
            if time.monotonic() > deadline:
                raise TimeoutError('sim_world/run not answered in time '
                                   f'(see {graph.log_dir}/sim_world.log)') from exc
            continue
        say(f'simulator: {response.message}')
        return


def _wait_final(progress: Progress, lock, timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with lock:
            status = progress.status
        if status is not None and status.get('state') in FINAL_STATES:
            return status
        time.sleep(0.2)
    with lock:
        return progress.status


def _wait_for_file(path: Path, timeout: float, graph) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        _check_alive(graph)
        time.sleep(0.2)


def _judge(scenario, out: Path, say) -> dict | None:
    from mine_robot.robot import load_robot
    from mine_robot.sim.judge import JudgeError, judge_folder
    try:
        result = judge_folder(scenario, out, load_robot())
    except (JudgeError, OSError, ValueError) as exc:
        say(f'judge: cannot score {out}: {exc}')
        return None
    return result


def _mark_notes(judge: dict) -> str:
    n = judge.get('superseded_marks') or 0
    mh = judge.get('marking_error_per_hazard_m') or {}
    extra = judge.get('extra_marks_near_hazards') or 0
    return (f"; per marked hazard max {mh.get('max')} m" + (f', {n} superseded by a later mark' if n else '')
            + (f', {extra} extra beside a marked hazard' if extra else ''))


def _summary(out: Path, final: dict | None, judge: dict | None, wall: float, graph, code: int) -> None:
    state = final.get('state') if final else 'unknown'
    print(f'\nsweep {state} in {wall:.0f} s wall time -> {out}')
    if final:
        print(f"  covered {final.get('percent_covered', 0):.1f}% | lanes {final.get('lanes_done')}/"
              f"{final.get('lanes_total')} | re-sweeps {final.get('resweeps')} | detections "
              f"{final.get('detections')} | targets {final.get('targets_found')} "
              f"(hazards {final.get('hazards_found')}) | marked {final.get('targets_marked')}, "
              f"failed marks {final.get('marks_failed')}")
        for fault in final.get('faults') or []:
            print(f'  fault: {fault}')
    if judge:
        me = judge.get('marking_error_m') or {}

        def pct(v):
            return 'n/a' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{100 * v:.1f}%'
        print(f"  judge: PD {pct(judge.get('pd'))} ({judge.get('detected')}/{judge.get('hazards')}), "
              f"false alarms {judge.get('false_alarms')} ({judge.get('false_alarms_per_m2')}/m²), "
              f"coverage {pct(judge.get('coverage_fraction'))}, marks {me.get('count')} "
              f"(error max {me.get('max')} m{_mark_notes(judge)}), wheel passes over undetected hazards "
              f"{judge.get('wheel_passes_over_undetected_hazards')}, over known hazards "
              f"{judge.get('wheel_passes_over_known_hazards')}")
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    print(f"  files: {', '.join(files)}")
    if code != 0 and graph is not None:
        print(f'  node logs: {graph.log_dir}/')
