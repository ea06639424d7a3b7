"""QoS profiles chosen on purpose (STYLE.md): sensor streams best effort, detections/targets/
commands reliable, plans/areas/e-stop latched (transient local, depth 1)."""

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

SENSOR = qos_profile_sensor_data
# a sensor stream whose consumer must see every sample (the detectors): best effort like SENSOR
# (compatible with every sensor publisher) but a deep reader queue, so a burst that arrives while
# the detector is busy waits instead of being dropped (depth 5 lost 3 % of the metal detector's
# samples in a 2x-real-time sweep, 21 % when the machine was saturated)
SENSOR_QUEUE = QoSProfile(depth=200, reliability=ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST)
