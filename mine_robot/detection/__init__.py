"""Sensor processing (pure): metal-detector array, GPR B-scans and downward camera images in,
georeferenced :class:`~mine_robot.detection.types.Detection` objects out."""
