"""Built-in simulator: scenarios (ground truth), robot kinematics, sensor models, the deterministic
lockstep world, virtual serial devices and the judge. Pure Python (numpy, OpenCV, shapely); the
ROS adapters are ``mine_robot.nodes.sim_world`` and ``mine_robot.nodes.sim_sensors``."""
