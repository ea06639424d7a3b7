"""GNSS receiver: NMEA 0183 sentences GGA, RMC, GST, VTG and HDT (any talker: GP, GN, GL, GA, GB).

``parse`` checks the envelope and checksum strictly (a sentence without ``*HH`` is rejected),
lets pynmea2 identify and split the sentence, then converts every field itself: an empty field
becomes ``None`` (receivers without a fix send empty latitude/longitude; that must not crash
anything), a present field out of its range is a :class:`ProtocolError`.

The ``encode_*`` builders produce the exact sentences a receiver sends (used by the simulator's
virtual receiver and by the tests). Turning sentences into a fix with covariance is
:mod:`mine_robot.drivers.gnss_fix`.
"""

from __future__ import annotations

from dataclasses import dataclass
import datetime as dt
import math

import pynmea2

from mine_robot.drivers.framing import LineFramer
from mine_robot.drivers.protocols import ProtocolError, build_sentence, parse_float, parse_int, split_sentence

SENTENCES = ('GGA', 'RMC', 'GST', 'VTG', 'HDT')
TALKERS = ('GP', 'GN', 'GL', 'GA', 'GB', 'BD', 'GQ', 'GI')
NMEA_MAX_LINE = 120
"""NMEA 0183 allows 82 characters; receivers with high-precision fields exceed that, so 120."""


@dataclass(frozen=True)
class Gga:
    talker: str
    utc_time: float | None          # seconds since 00:00 UTC
    latitude: float | None          # degrees, north positive
    longitude: float | None         # degrees, east positive
    quality: int                    # GGA fix quality 0..8 (see docs/protocols.md)
    num_sats: int | None
    hdop: float | None
    altitude_msl: float | None      # m above mean sea level (geoid)
    geoid_separation: float | None  # m, ellipsoid height = altitude_msl + geoid_separation
    dgps_age: float | None
    station_id: str | None


@dataclass(frozen=True)
class Rmc:
    talker: str
    utc_time: float | None
    valid: bool
    latitude: float | None
    longitude: float | None
    speed_knots: float | None
    course_deg: float | None
    date: dt.date | None


@dataclass(frozen=True)
class Gst:
    talker: str
    utc_time: float | None
    rms: float | None
    sd_major: float | None
    sd_minor: float | None
    orientation_deg: float | None
    sd_lat: float | None            # m
    sd_lon: float | None            # m
    sd_alt: float | None            # m


@dataclass(frozen=True)
class Vtg:
    talker: str
    course_true_deg: float | None
    course_mag_deg: float | None
    speed_knots: float | None
    speed_kmh: float | None
    mode: str | None


@dataclass(frozen=True)
class Hdt:
    talker: str
    heading_deg: float | None


@dataclass(frozen=True)
class OtherSentence:
    """A well-formed sentence the driver does not use (GSV, GSA, proprietary $P...): skipped, not
    a bad frame — receivers send many of them."""
    address: str


NmeaMessage = Gga | Rmc | Gst | Vtg | Hdt | OtherSentence


def parse(frame: bytes) -> NmeaMessage:
    """Parse one NMEA sentence into Gga/Rmc/Gst/Vtg/Hdt (OtherSentence for well-formed sentences of
    other types); ProtocolError for anything malformed."""
    fields = split_sentence(frame, max_length=NMEA_MAX_LINE)
    address = fields[0]
    if not (address.isascii() and address.isalnum() and address.isupper() and 2 <= len(address) <= 10):
        raise ProtocolError(f'malformed NMEA address {address[:12]!r}')
    if len(address) != 5 or address[2:] not in SENTENCES:
        return OtherSentence(address)
    try:
        msg = pynmea2.parse(frame.rstrip(b'\r\n').decode('ascii'), check=True)
    except ValueError as exc:   # pynmea2.ParseError and its subclasses derive from ValueError
        raise ProtocolError(f'{address}: {exc}') from None
    raw = msg.data
    kind = address[2:]
    return _BUILDERS[kind](msg.talker, raw)


def _get(raw: list[str], i: int) -> str | None:
    return raw[i] if i < len(raw) and raw[i] != '' else None


def _float(raw, i, name, lo=-math.inf, hi=math.inf) -> float | None:
    text = _get(raw, i)
    return None if text is None else parse_float(text, name, lo, hi)


def _time(text: str | None, name: str) -> float | None:
    if text is None:
        return None
    if len(text) < 6 or not text[:6].isdigit():
        raise ProtocolError(f'{name}: {text!r} is not hhmmss[.ss]')
    hh, mm = int(text[:2]), int(text[2:4])
    ss = parse_float(text[4:], name, 0.0, 60.999)
    if hh > 23 or mm > 59:
        raise ProtocolError(f'{name}: {text!r} is not a valid time of day')
    return hh * 3600.0 + mm * 60.0 + ss


def _angle(raw, i, name, degree_digits, limit) -> float | None:
    text, hemi = _get(raw, i), _get(raw, i + 1)
    if text is None and hemi is None:
        return None
    if text is None or hemi is None:
        raise ProtocolError(f'{name}: value and hemisphere must both be present or both empty')
    if len(text) < degree_digits + 2 or not text[:degree_digits].isdigit():
        raise ProtocolError(f'{name}: {text!r} is not {"d" * degree_digits}mm.mmm')
    minutes = parse_float(text[degree_digits:], name, 0.0, 59.99999999999)
    value = int(text[:degree_digits]) + minutes / 60.0
    if value > limit:
        raise ProtocolError(f'{name}: {value:.6f} degrees exceeds {limit}')
    positive, negative = ('N', 'S') if degree_digits == 2 else ('E', 'W')
    if hemi not in (positive, negative):
        raise ProtocolError(f'{name}: hemisphere {hemi!r} is not {positive} or {negative}')
    return value if hemi == positive else -value


def _gga(talker, raw) -> Gga:
    quality_text = _get(raw, 5)
    quality = 0 if quality_text is None else parse_int(quality_text, 'GGA quality', 0, 8)
    sats = _get(raw, 6)
    station = _get(raw, 13)
    return Gga(talker, _time(_get(raw, 0), 'GGA time'), _angle(raw, 1, 'GGA latitude', 2, 90.0),
               _angle(raw, 3, 'GGA longitude', 3, 180.0), quality,
               None if sats is None else parse_int(sats, 'GGA satellites', 0, 99),
               _float(raw, 7, 'GGA hdop', 0.0, 99.99),
               _float(raw, 8, 'GGA altitude', -1000.0, 20000.0),
               _float(raw, 10, 'GGA geoid separation', -200.0, 200.0),
               _float(raw, 12, 'GGA dgps age', 0.0, 9999.0), station)


def _rmc(talker, raw) -> Rmc:
    status = _get(raw, 1)
    if status not in (None, 'A', 'V'):
        raise ProtocolError(f'RMC status {status!r} is not A or V')
    date_text = _get(raw, 8)
    date = None
    if date_text is not None:
        if len(date_text) != 6 or not date_text.isdigit():
            raise ProtocolError(f'RMC date {date_text!r} is not ddmmyy')
        try:
            date = dt.date(2000 + int(date_text[4:]), int(date_text[2:4]), int(date_text[:2]))
        except ValueError as exc:
            raise ProtocolError(f'RMC date {date_text!r}: {exc}') from None
    return Rmc(talker, _time(_get(raw, 0), 'RMC time'), status == 'A',
               _angle(raw, 2, 'RMC latitude', 2, 90.0), _angle(raw, 4, 'RMC longitude', 3, 180.0),
               _float(raw, 6, 'RMC speed', 0.0, 9999.0), _float(raw, 7, 'RMC course', 0.0, 360.0), date)


def _gst(talker, raw) -> Gst:
    sd = [_float(raw, i, f'GST field {i + 1}', 0.0, 1.0e6) for i in (1, 2, 3)]
    return Gst(talker, _time(_get(raw, 0), 'GST time'), *sd,
               _float(raw, 4, 'GST orientation', 0.0, 360.0),
               *[_float(raw, i, f'GST field {i + 1}', 0.0, 1.0e6) for i in (5, 6, 7)])


def _vtg(talker, raw) -> Vtg:
    return Vtg(talker, _float(raw, 0, 'VTG true course', 0.0, 360.0),
               _float(raw, 2, 'VTG magnetic course', 0.0, 360.0),
               _float(raw, 4, 'VTG speed knots', 0.0, 9999.0), _float(raw, 6, 'VTG speed km/h', 0.0, 99999.0),
               _get(raw, 8))


def _hdt(talker, raw) -> Hdt:
    return Hdt(talker, _float(raw, 0, 'HDT heading', 0.0, 360.0))


_BUILDERS = {'GGA': _gga, 'RMC': _rmc, 'GST': _gst, 'VTG': _vtg, 'HDT': _hdt}


# ---------------------------------------------------------------- encoders (receiver side)

def _fmt_time(seconds_of_day: float) -> str:
    centis = int(round(seconds_of_day * 100.0)) % (86400 * 100)
    hh, rem = divmod(centis, 360000)
    mm, rem = divmod(rem, 6000)
    return f'{hh:02d}{mm:02d}{rem // 100:02d}.{rem % 100:02d}'


def _fmt_angle(value: float | None, degree_digits: int, hemis: str) -> tuple[str, str]:
    if value is None:
        return '', ''
    hemi = hemis[0] if value >= 0 else hemis[1]
    value = abs(value)
    deg = int(value)
    minutes = round((value - deg) * 60.0, 7)
    if minutes >= 60.0:
        deg, minutes = deg + 1, 0.0
    return f'{deg:0{degree_digits}d}{minutes:010.7f}', hemi


def _opt(value: float | None, fmt: str) -> str:
    return '' if value is None else format(value, fmt)


def encode_gga(utc_time: float | None, latitude: float | None, longitude: float | None, quality: int,
               num_sats: int | None = None, hdop: float | None = None, altitude_msl: float | None = None,
               geoid_separation: float | None = None, dgps_age: float | None = None,
               station_id: str | None = None, talker: str = 'GN') -> bytes:
    lat, ns = _fmt_angle(latitude, 2, 'NS')
    lon, ew = _fmt_angle(longitude, 3, 'EW')
    return build_sentence([
        f'{talker}GGA', '' if utc_time is None else _fmt_time(utc_time), lat, ns, lon, ew, int(quality),
        '' if num_sats is None else f'{num_sats:02d}', _opt(hdop, '.2f'), _opt(altitude_msl, '.3f'),
        '' if altitude_msl is None else 'M', _opt(geoid_separation, '.3f'),
        '' if geoid_separation is None else 'M', _opt(dgps_age, '.1f'), station_id or ''])


def encode_rmc(utc: dt.datetime, latitude: float | None, longitude: float | None, valid: bool = True,
               speed_knots: float | None = None, course_deg: float | None = None,
               talker: str = 'GN') -> bytes:
    lat, ns = _fmt_angle(latitude, 2, 'NS')
    lon, ew = _fmt_angle(longitude, 3, 'EW')
    seconds = utc.hour * 3600 + utc.minute * 60 + utc.second + utc.microsecond * 1e-6
    return build_sentence([
        f'{talker}RMC', _fmt_time(seconds), 'A' if valid else 'V', lat, ns, lon, ew,
        _opt(speed_knots, '.3f'), _opt(course_deg, '.2f'), utc.strftime('%d%m%y'), '', '',
        'D' if valid else 'N'])


def encode_gst(utc_time: float, rms: float | None, sd_major: float | None, sd_minor: float | None,
               orientation_deg: float | None, sd_lat: float | None, sd_lon: float | None,
               sd_alt: float | None, talker: str = 'GN') -> bytes:
    return build_sentence([f'{talker}GST', _fmt_time(utc_time), _opt(rms, '.3f'), _opt(sd_major, '.3f'),
                           _opt(sd_minor, '.3f'), _opt(orientation_deg, '.1f'), _opt(sd_lat, '.3f'),
                           _opt(sd_lon, '.3f'), _opt(sd_alt, '.3f')])


def encode_vtg(course_true_deg: float | None, speed_mps: float | None, course_mag_deg: float | None = None,
               mode: str = 'D', talker: str = 'GN') -> bytes:
    knots = None if speed_mps is None else speed_mps * 3600.0 / 1852.0
    kmh = None if speed_mps is None else speed_mps * 3.6
    return build_sentence([f'{talker}VTG', _opt(course_true_deg, '.2f'), 'T', _opt(course_mag_deg, '.2f'),
                           'M', _opt(knots, '.3f'), 'N', _opt(kmh, '.3f'), 'K', mode])


def encode_hdt(heading_deg: float | None, talker: str = 'GN') -> bytes:
    return build_sentence([f'{talker}HDT', _opt(heading_deg, '.3f'), 'T'])


def make_framer() -> LineFramer:
    """The framer for this device's byte stream (one line per message)."""
    return LineFramer(NMEA_MAX_LINE)
