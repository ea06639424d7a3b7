"""The whole stack against the built-in simulator (sim_world + sim_sensors), on sim time.

    ros2 launch mine_robot sim.launch.py scenario:=default
    ros2 launch mine_robot sim.launch.py scenario:=/path/to/field.yaml virtual_devices:=true

With virtual_devices:=true the simulator exposes the metal detector, GNSS, GPR and marker as
virtual serial devices (pty pairs) and the real drivers read them, end to end. namespace:=robot1
gives the robot (and its simulated world and clock) a namespace of its own.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ('scenario', 'default', 'scenario: a packaged name (sim/scenarios/<name>.yaml) or a YAML path'),
    ('virtual_devices', 'false', 'run the real serial drivers against virtual devices of the simulator'),
    ('real_time_factor', '', 'sim seconds per wall second (empty: config/sim.yaml); >1 runs faster'),
    ('seed', '', 'simulator random seed (empty: config/sim.yaml); same seed, same run'),
    ('namespace', '', 'ROS namespace for every node of this simulated robot'),
    ('use_sim_time', 'true',
     'follow the simulator\'s /clock (keep true: the simulator runs faster than real time)'),
    ('area_file', '', 'search area GeoJSON (empty: from config, or the scenario\'s area)'),
    ('output_dir', '', 'mission output folder (empty: from config/mission.yaml)'),
    ('teleop', 'none', 'none | joy | keyboard: add manual control above autonomy'),
    ('autonomy', 'true', 'run the autonomy stack; false: simulator, mux and safety monitor only'),
    ('params_file', '', 'optional parameter file applied after config/ (node-keyed or /**-keyed)'),
    ('publish_robot_state', 'true', 'run robot_state_publisher with urdf/mine_robot.urdf'),
    ('log_level', 'info', 'log level of every node (debug, info, warn, error)'),
    ('respawn', 'true', 'restart a node that exits, after 2 s (the mission manager resumes its mission)'),
]


def generate_launch_description():
    stack = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare('mine_robot'), 'launch', 'stack.launch.py'])),
        launch_arguments=[
            *[(name, LaunchConfiguration(name)) for name, _d, _h in ARGUMENTS],
            ('simulator', 'builtin'), ('drivers', 'false'),
        ])
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=help_text)
          for name, default, help_text in ARGUMENTS],
        stack,
    ])
