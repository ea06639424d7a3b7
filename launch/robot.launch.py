"""Real hardware: device drivers, localization, safety, twist mux, lane follower, detection, fusion,
marking, mission manager, robot_state_publisher with the URDF, and joystick teleop.

    ros2 launch mine_robot robot.launch.py md_port:=/dev/ttyUSB0 gnss_port:=/dev/ttyACM0 \\
        gpr_port:=/dev/ttyUSB1 marker_port:=/dev/ttyUSB2 camera_source:=0 area_file:=/data/field.geojson

Ports left empty come from config/drivers.yaml. Add namespace:=robot1 to run a second robot in
the same ROS graph.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ('namespace', '', 'ROS namespace for every node of this robot'),
    ('md_port', '', 'metal detector serial port or pyserial URL (empty: config/drivers.yaml)'),
    ('gnss_port', '', 'GNSS receiver serial port or pyserial URL (empty: config/drivers.yaml)'),
    ('gpr_port', '', 'GPR serial port or pyserial URL (empty: config/drivers.yaml)'),
    ('marker_port', '', 'marking actuator serial port or pyserial URL (empty: config/drivers.yaml)'),
    ('camera_source', '', 'camera device index, video file, stream URL or image folder (empty: config)'),
    ('area_file', '', 'search area GeoJSON (empty: from config/planner.yaml and config/mission.yaml)'),
    ('output_dir', '', 'mission output folder (empty: from config/mission.yaml)'),
    ('datum_lat', '', 'map origin latitude, degrees (empty: the area file\'s frame, else config)'),
    ('datum_lon', '', 'map origin longitude, degrees (empty: the area file\'s frame, else config)'),
    ('teleop', 'joy', 'none | joy | keyboard: the operator\'s manual control, always above autonomy'),
    ('params_file', '', 'optional parameter file applied after config/ (node-keyed or /**-keyed)'),
    ('use_sim_time', 'false', 'use /clock instead of the wall clock (false on the robot)'),
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
            ('drivers', 'true'), ('simulator', 'none'), ('autonomy', 'true'),
        ])
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=help_text)
          for name, default, help_text in ARGUMENTS],
        stack,
    ])
