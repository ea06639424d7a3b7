"""Conversions between ROS messages and the plain data of the pure layer.

PointCloud2 is the carrier for coil signals, detections and targets (DESIGN.md §5): every field
is FLOAT32 except where a dtype is given, and the cloud is unorganised (height 1).
"""

from __future__ import annotations

from collections.abc import Mapping

from builtin_interfaces.msg import Time
import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

_TO_ROS = {np.dtype(np.float32): PointField.FLOAT32, np.dtype(np.float64): PointField.FLOAT64,
           np.dtype(np.int32): PointField.INT32, np.dtype(np.uint32): PointField.UINT32,
           np.dtype(np.uint8): PointField.UINT8, np.dtype(np.int8): PointField.INT8,
           np.dtype(np.int16): PointField.INT16, np.dtype(np.uint16): PointField.UINT16}
_FROM_ROS = {v: k for k, v in _TO_ROS.items()}


def stamp_to_sec(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def sec_to_stamp(t: float) -> Time:
    sec = int(np.floor(t))
    nanosec = min(int(round((t - sec) * 1e9)), 999_999_999)
    return Time(sec=sec, nanosec=nanosec)


def fields_to_cloud(fields: Mapping[str, np.ndarray], frame_id: str, stamp: float | Time,
                    dtypes: Mapping[str, np.dtype] | None = None) -> PointCloud2:
    """Pack equal-length 1-D arrays into an unorganised PointCloud2 (float32 unless ``dtypes``)."""
    dtypes = dtypes or {}
    names = list(fields)
    lengths = {len(np.atleast_1d(fields[n])) for n in names}
    if len(lengths) > 1:
        raise ValueError(f'point fields have different lengths: {lengths}')
    count = lengths.pop() if lengths else 0
    dtype = np.dtype([(n, np.dtype(dtypes.get(n, np.float32))) for n in names])
    data = np.zeros(count, dtype=dtype)
    for n in names:
        data[n] = np.atleast_1d(fields[n])
    msg = PointCloud2()
    msg.header = Header(frame_id=frame_id,
                        stamp=stamp if isinstance(stamp, Time) else sec_to_stamp(stamp))
    msg.height, msg.width = 1, count
    msg.fields = [PointField(name=n, offset=dtype.fields[n][1], datatype=_TO_ROS[dtype.fields[n][0]],
                             count=1) for n in names]
    msg.is_bigendian = False
    msg.point_step = dtype.itemsize
    msg.row_step = dtype.itemsize * count
    msg.is_dense = True
    msg.data = data.tobytes()
    return msg


def cloud_to_fields(msg: PointCloud2) -> dict[str, np.ndarray]:
    """Unpack a PointCloud2 into a dict of 1-D arrays, one per field."""
    dtype = np.dtype({'names': [f.name for f in msg.fields],
                      'formats': [_FROM_ROS[f.datatype] for f in msg.fields],
                      'offsets': [f.offset for f in msg.fields],
                      'itemsize': msg.point_step})
    count = msg.width * msg.height
    data = np.frombuffer(bytes(msg.data), dtype=dtype, count=count)
    return {f.name: np.array(data[f.name]) for f in msg.fields}
