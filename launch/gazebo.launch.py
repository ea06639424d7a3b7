"""The stack against Gazebo (Harmonic, via ros_gz): physics, IMU, NavSat and camera from Gazebo;
metal detector and GPR from sim_sensors, computed from the scenario and the pose Gazebo reports.

    ros2 launch mine_robot gazebo.launch.py scenario:=default
    ros2 launch mine_robot gazebo.launch.py scenario:=default gui:=false      # headless (CI)

Starts gz sim with a world whose visible objects match the scenario (generated at launch unless
world:= is given), spawns urdf/mine_robot.urdf at the scenario's start pose, bridges the topics of
config/gz_bridge.yaml, and runs the mine_robot stack on sim time. A second robot in the same
world: start_gazebo:=false robot_name:=robot2 namespace:=robot2 bridge_clock:=false.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    passed = [
        ('scenario', 'default', 'scenario (packaged name or YAML path): start pose, world objects, '
                                'and the buried objects sim_sensors senses'),
        ('namespace', '', 'ROS namespace for every node of this robot'),
        ('area_file', '', 'search area GeoJSON (empty: from config, or the scenario\'s area)'),
        ('output_dir', '', 'mission output folder (empty: from config/mission.yaml)'),
        ('teleop', 'none', 'none | joy | keyboard: add manual control above autonomy'),
        ('autonomy', 'true', 'run the autonomy stack; false: mux and safety monitor only'),
        ('params_file', '', 'optional parameter file applied after config/ (node-keyed or /**-keyed)'),
        ('log_level', 'info', 'log level of every node (debug, info, warn, error)'),
    ]
    own = [
        ('world', '', 'world SDF to load (empty: generate one from the scenario at launch)'),
        ('gui', 'true', 'show the Gazebo GUI (false: server only, headless rendering for the camera)'),
        ('start_gazebo', 'true', 'start gz sim (false: join a running world, e.g. for a second robot)'),
        ('robot_name', 'mine_robot', 'Gazebo model name; must differ per robot in one world'),
        ('spawn_z', '0.02', 'height above ground at which the robot is spawned, metres'),
        ('bridge_clock', 'true', 'bridge /clock from Gazebo (false for every robot after the first)'),
        ('bridge_config', PathJoinSubstitution([FindPackageShare('mine_robot'), 'config', 'gz_bridge.yaml']),
         'ros_gz_bridge topic list (Gazebo topics under /model/mine_robot/, rewritten for robot_name)'),
    ]

    def gazebo(context):
        import os
        import tempfile
        import xml.etree.ElementTree as ET

        from mine_robot import launch_support as ls
        from mine_robot.sim.gazebo_world import write_world
        from mine_robot.sim.scenario import load_scenario

        def arg(name):
            return LaunchConfiguration(name).perform(context)

        namespace = arg('namespace').strip('/')
        robot_name = arg('robot_name')
        scenario = load_scenario(arg('scenario'))
        workdir = tempfile.mkdtemp(prefix=f'mine_robot_gz_{robot_name}_')
        world = arg('world') or str(write_world(scenario, os.path.join(workdir, 'world.sdf')))
        world_name = ET.parse(world).getroot().find('world').get('name')
        bridge_config = os.path.join(workdir, 'gz_bridge.yaml')
        with open(bridge_config, 'w') as handle:
            handle.write(ls.gz_bridge_config(arg('bridge_config'), robot_name,
                                             clock=arg('bridge_clock').lower() == 'true'))
        actions = []
        if arg('start_gazebo').lower() == 'true':
            gz_args = f'{world} -r' + ('' if arg('gui').lower() == 'true' else ' -s --headless-rendering')
            actions.append(IncludeLaunchDescription(
                PythonLaunchDescriptionSource(
                    PathJoinSubstitution([FindPackageShare('ros_gz_sim'), 'launch', 'gz_sim.launch.py'])),
                launch_arguments=[('gz_args', gz_args), ('on_exit_shutdown', 'true')]))
        start = scenario.robot_start
        actions.append(Node(
            package='ros_gz_sim', executable='create', name='spawn_robot', namespace=namespace,
            output='screen',
            arguments=['-world', world_name, '-name', robot_name, '-topic', 'robot_description',
                       '-x', f'{start.x:.4f}', '-y', f'{start.y:.4f}', '-z', arg('spawn_z'),
                       '-Y', f'{start.yaw:.6f}']))
        actions.append(Node(
            package='ros_gz_bridge', executable='parameter_bridge', name='gz_bridge',
            namespace=namespace, output='screen',
            parameters=[{'config_file': bridge_config, 'use_sim_time': True}]))
        return actions

    stack = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare('mine_robot'), 'launch', 'stack.launch.py'])),
        launch_arguments=[
            *[(name, LaunchConfiguration(name)) for name, _d, _h in passed],
            ('gz_model', LaunchConfiguration('robot_name')),
            ('simulator', 'gazebo'), ('use_sim_time', 'true'), ('drivers', 'false'),
            ('publish_robot_state', 'true'),
        ])
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=help_text)
          for name, default, help_text in passed + own],
        OpaqueFunction(function=gazebo),
        stack,
    ])
