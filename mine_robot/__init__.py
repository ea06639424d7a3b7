"""mine_robot: an open robotic clearance platform for humanitarian mine action.

Everything in this package except ``mine_robot.nodes`` and ``mine_robot.ros`` is plain Python
(numpy, shapely, pyproj, OpenCV, pyserial) and can be used and tested without ROS.
"""

__version__ = '0.1.0'
