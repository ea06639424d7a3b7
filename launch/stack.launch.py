"""The mine_robot ROS graph, configurable: the one place where node actions are built.

robot.launch.py, sim.launch.py, gazebo.launch.py and teleop.launch.py include this file and
choose which groups run. It can also be used directly, e.g.
``ros2 launch mine_robot stack.launch.py drivers:=true teleop:=joy``.

Every node reads its section of the node-keyed file in config/ (mine_robot.launch_support.NODE_CONFIG),
then ``params_file`` (optional, node-keyed or ``/**``-keyed), then the launch-argument overrides.
Sections are resolved here and passed as dicts, so they apply under any namespace: two robots
run side by side with ``namespace:=robot1`` and ``namespace:=robot2``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from mine_robot import launch_support as ls

ARGUMENTS = [
    ('namespace', '', 'ROS namespace for every node (one per robot when several share a graph)'),
    ('use_sim_time', 'false', 'use /clock (true with a simulator) instead of the wall clock'),
    ('config_dir', PathJoinSubstitution([FindPackageShare('mine_robot'), 'config']),
     'folder holding the node-keyed parameter files (planner.yaml, sim.yaml, control.yaml, ...)'),
    ('params_file', '', 'optional extra parameter file applied after config_dir (node-keyed or /**)'),
    ('urdf', PathJoinSubstitution([FindPackageShare('mine_robot'), 'urdf', 'mine_robot.urdf']),
     'robot description for robot_state_publisher'),
    ('publish_robot_state', 'true', 'run robot_state_publisher with the URDF (true/false)'),
    ('autonomy', 'true',
     'run the autonomy stack (localization, planner, follower, detection, fusion, marking, mission); '
     'false runs only the twist mux and the safety monitor'),
    ('drivers', 'false', 'run the device drivers (metal detector, GNSS, GPR, camera, marker)'),
    ('simulator', 'none',
     'none | builtin (sim_world + sim_sensors) | gazebo (sim_sensors on the Gazebo pose)'),
    ('teleop', 'none', 'none | joy | keyboard: add a teleoperation node feeding the twist mux'),
    ('scenario', 'default', 'simulation scenario: a packaged name (sim/scenarios/<name>.yaml) or a path'),
    ('virtual_devices', 'false',
     'builtin simulator only: expose the devices as virtual serial ports and run the real drivers on them'),
    ('area_file', '', 'search area GeoJSON for the planner and mission manager (empty: from config)'),
    ('datum_lat', '', 'map origin latitude (empty: the scenario\'s datum, else the area file\'s frame)'),
    ('datum_lon', '', 'map origin longitude (empty: the scenario\'s datum, else the area file\'s frame)'),
    ('real_time_factor', '', 'builtin simulator: sim seconds per wall second (empty: config/sim.yaml)'),
    ('seed', '', 'simulator random seed (empty: config/sim.yaml)'),
    ('output_dir', '', 'mission output folder (empty: from config/mission.yaml)'),
    ('md_port', '', 'metal detector serial port or pyserial URL (empty: from config/drivers.yaml)'),
    ('gnss_port', '', 'GNSS receiver serial port or pyserial URL (empty: from config/drivers.yaml)'),
    ('gpr_port', '', 'GPR serial port or pyserial URL (empty: from config/drivers.yaml)'),
    ('marker_port', '', 'marking actuator serial port or pyserial URL (empty: from config/drivers.yaml)'),
    ('camera_source', '', 'camera device index, video file, stream URL or image folder (empty: from config)'),
    ('keyboard_prefix', 'xterm -e', 'command prefix that gives keyboard_teleop a terminal of its own'),
    ('gz_model', 'mine_robot',
     'Gazebo model name of this robot (its Gazebo topics are /model/<gz_model>/...)'),
    ('log_level', 'info', 'log level of every node (debug, info, warn, error)'),
    ('respawn', 'true', 'restart a node that exits, after 2 s (the mission manager then resumes the '
     'interrupted mission from its mission.db)'),
]


def generate_launch_description():
    def nodes(context):
        def arg(name):
            return LaunchConfiguration(name).perform(context)

        plan = ls.GraphPlan.from_arguments({name: arg(name) for name, _d, _h in ARGUMENTS})
        actions = []
        for spec in plan.nodes():
            actions.append(Node(
                package='mine_robot', executable=spec.executable, name=spec.executable,
                namespace=plan.namespace, output='screen', emulate_tty=True,
                parameters=[spec.parameters], remappings=spec.remappings,
                prefix=spec.prefix or None, respawn=plan.respawn,
                respawn_delay=2.0 if plan.respawn else 0.0,
                ros_arguments=['--log-level', plan.log_level]))
        if plan.publish_robot_state:
            actions.append(Node(
                package='robot_state_publisher', executable='robot_state_publisher',
                name='robot_state_publisher', namespace=plan.namespace, output='screen',
                parameters=[plan.robot_state_parameters()], remappings=plan.common_remappings(),
                ros_arguments=['--log-level', plan.log_level]))
        return actions

    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=help_text)
          for name, default, help_text in ARGUMENTS],
        OpaqueFunction(function=nodes),
    ])
