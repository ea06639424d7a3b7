"""Manual driving only: joystick or keyboard teleop, the twist mux and the safety monitor.

    ros2 launch mine_robot teleop.launch.py device:=joy
    ros2 launch mine_robot teleop.launch.py device:=keyboard keyboard_prefix:='gnome-terminal --'

The joystick node reads sensor_msgs/Joy on joy (start the joy package's joy_node next to it).
Every command still passes the mux and the safety monitor (e-stop, watchdogs, speed limits).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    arguments = [
        ('device', 'joy', 'joy (sensor_msgs/Joy, dead-man button) or keyboard (a terminal)'),
        ('keyboard_prefix', 'xterm -e', 'command prefix that gives keyboard_teleop a terminal'),
        ('namespace', '', 'ROS namespace of the robot to drive'),
        ('use_sim_time', 'false', 'true when driving a simulated robot'),
        ('params_file', '', 'optional parameter file applied after config/ (node-keyed or /**-keyed)'),
        ('log_level', 'info', 'log level of every node (debug, info, warn, error)'),
    ]
    passed = [(name, LaunchConfiguration(name)) for name, _d, _h in arguments if name != 'device']
    stack = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare('mine_robot'), 'launch', 'stack.launch.py'])),
        launch_arguments=[
            *passed, ('teleop', LaunchConfiguration('device')),
            ('autonomy', 'false'), ('drivers', 'false'), ('simulator', 'none'),
            ('publish_robot_state', 'false'),
        ])
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=help_text)
          for name, default, help_text in arguments],
        stack,
    ])
