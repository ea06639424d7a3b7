"""From NMEA sentences to fixes: status mapping, covariance (GST or HDOP fallback), time reference.

Pure: ``GnssFixBuilder.update(message, t)`` takes parsed sentences with their arrival time and
returns the outputs due (a :class:`Fix` per GGA, a :class:`TimeRef` per valid RMC). The node turns
them into NavSatFix / TimeReference. The mapping is specified in docs/protocols.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import datetime as dt
from enum import IntEnum

from mine_robot.drivers.protocols.gnss import Gga, Gst, Hdt, NmeaMessage, Rmc, Vtg

# NavSatStatus / NavSatFix constants (same numbers as sensor_msgs; the pure layer has no ROS)
STATUS_NO_FIX, STATUS_FIX, STATUS_SBAS_FIX, STATUS_GBAS_FIX = -1, 0, 1, 2
SERVICE_GPS, SERVICE_GLONASS, SERVICE_COMPASS, SERVICE_GALILEO = 1, 2, 4, 8
COV_UNKNOWN, COV_APPROXIMATED, COV_DIAGONAL_KNOWN, COV_KNOWN = 0, 1, 2, 3


class FixQuality(IntEnum):
    """GGA field 6."""
    INVALID = 0
    SINGLE = 1
    DGPS = 2
    PPS = 3
    RTK_FIXED = 4
    RTK_FLOAT = 5
    ESTIMATED = 6
    MANUAL = 7
    SIMULATION = 8


STATUS_OF_QUALITY = {
    FixQuality.INVALID: STATUS_NO_FIX, FixQuality.SINGLE: STATUS_FIX, FixQuality.DGPS: STATUS_SBAS_FIX,
    FixQuality.PPS: STATUS_FIX, FixQuality.RTK_FIXED: STATUS_GBAS_FIX, FixQuality.RTK_FLOAT: STATUS_GBAS_FIX,
    FixQuality.ESTIMATED: STATUS_NO_FIX, FixQuality.MANUAL: STATUS_NO_FIX, FixQuality.SIMULATION: STATUS_FIX,
}
SERVICE_OF_TALKER = {'GP': SERVICE_GPS, 'GL': SERVICE_GLONASS, 'GA': SERVICE_GALILEO, 'GB': SERVICE_COMPASS,
                     'BD': SERVICE_COMPASS}


@dataclass(frozen=True)
class GnssConfig:
    gst_max_age: float = 1.5           # s between a GST's and a GGA's UTC time for the GST to apply
    uere: dict = field(default_factory=lambda: {
        'SINGLE': 4.0, 'PPS': 3.0, 'DGPS': 0.7, 'RTK_FLOAT': 0.3, 'RTK_FIXED': 0.02, 'SIMULATION': 1.0})
    """User equivalent range error (m, 1 sigma) per fix quality, for the HDOP fallback."""
    vertical_factor: float = 2.0        # sigma_v = factor * sigma_h in the HDOP fallback
    service: int = 0                    # NavSatStatus.service for talker GN (multi-constellation)

    def __post_init__(self):
        if self.gst_max_age <= 0 or self.vertical_factor <= 0:
            raise ValueError('gst_max_age and vertical_factor must be positive')
        for name, value in self.uere.items():
            if name not in FixQuality.__members__ or not value > 0:
                raise ValueError(f'uere.{name} = {value!r}: need a FixQuality name and a positive value')


@dataclass(frozen=True)
class Fix:
    t: float                          # host arrival time (monotonic, as given)
    utc_time: float | None
    latitude: float                   # nan when there is no position
    longitude: float
    altitude: float                   # ellipsoid height (m); nan when unknown
    quality: FixQuality
    status: int
    service: int
    covariance: tuple[float, ...]     # 9 values, ENU m^2
    covariance_type: int
    num_sats: int | None
    hdop: float | None


@dataclass(frozen=True)
class TimeRef:
    t: float
    utc: float                        # POSIX seconds (UTC)


NAN = float('nan')


class GnssFixBuilder:
    def __init__(self, config: GnssConfig | None = None):
        self.config = config or GnssConfig()
        self.last_gst: Gst | None = None
        self.heading_deg: float | None = None
        self.course_deg: float | None = None
        self.speed_mps: float | None = None
        self.last_quality: FixQuality | None = None

    def update(self, msg: NmeaMessage, t: float) -> list[Fix | TimeRef]:
        if isinstance(msg, Gga):
            return [self._fix(msg, t)]
        if isinstance(msg, Gst):
            self.last_gst = msg
        elif isinstance(msg, Rmc):
            if msg.valid and msg.date is not None and msg.utc_time is not None:
                midnight = dt.datetime.combine(msg.date, dt.time(), tzinfo=dt.UTC).timestamp()
                return [TimeRef(t, midnight + msg.utc_time)]
        elif isinstance(msg, Vtg):
            self.course_deg = msg.course_true_deg
            if msg.speed_kmh is not None:
                self.speed_mps = msg.speed_kmh / 3.6
            elif msg.speed_knots is not None:
                self.speed_mps = msg.speed_knots * 1852.0 / 3600.0
        elif isinstance(msg, Hdt):
            self.heading_deg = msg.heading_deg
        return []

    def _fix(self, g: Gga, t: float) -> Fix:
        quality = FixQuality(g.quality)
        has_position = g.latitude is not None and g.longitude is not None
        if not has_position:
            quality = FixQuality.INVALID
        self.last_quality = quality
        status = STATUS_OF_QUALITY[quality]
        service = SERVICE_OF_TALKER.get(g.talker, self.config.service)
        altitude = NAN if g.altitude_msl is None else g.altitude_msl + (g.geoid_separation or 0.0)
        cov, cov_type = self._covariance(g, quality)
        return Fix(t, g.utc_time, g.latitude if has_position else NAN, g.longitude if has_position else NAN,
                   altitude, quality, status, service, cov, cov_type, g.num_sats, g.hdop)

    def _covariance(self, g: Gga, quality: FixQuality) -> tuple[tuple[float, ...], int]:
        zero = (0.0,) * 9
        if status_is_no_fix(quality):
            return zero, COV_UNKNOWN
        s = self.last_gst
        if (s is not None and s.sd_lat is not None and s.sd_lon is not None and s.sd_alt is not None
                and s.utc_time is not None and g.utc_time is not None
                and _utc_gap(s.utc_time, g.utc_time) <= self.config.gst_max_age):
            return _diag(s.sd_lon, s.sd_lat, s.sd_alt), COV_DIAGONAL_KNOWN
        uere = self.config.uere.get(quality.name)
        if g.hdop is not None and uere is not None:
            sigma_h = g.hdop * uere
            return _diag(sigma_h, sigma_h, self.config.vertical_factor * sigma_h), COV_APPROXIMATED
        return zero, COV_UNKNOWN


def status_is_no_fix(quality: FixQuality) -> bool:
    return STATUS_OF_QUALITY[quality] == STATUS_NO_FIX


def _utc_gap(a: float, b: float) -> float:
    gap = abs(a - b) % 86400.0
    return min(gap, 86400.0 - gap)       # across midnight


def _diag(east: float, north: float, up: float) -> tuple[float, ...]:
    return (east ** 2, 0.0, 0.0, 0.0, north ** 2, 0.0, 0.0, 0.0, up ** 2)
