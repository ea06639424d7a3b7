"""GNSS NMEA parsing via pynmea2: golden sentences, empty fields, bad input, fuzzing."""

import datetime as dt

from hypothesis import example, given, settings
from hypothesis import strategies as st
import pytest

from mine_robot.drivers import gnss_fix as gf
from mine_robot.drivers.protocols import ProtocolError, build_sentence, gnss

# The classic GGA example from the NMEA literature (checksum 47 is part of the published line).
CLASSIC_GGA = b'$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n'


def test_classic_gga():
    g = gnss.parse(CLASSIC_GGA)
    assert g.talker == 'GP'
    assert g.utc_time == 12 * 3600 + 35 * 60 + 19
    assert g.latitude == pytest.approx(48 + 7.038 / 60)
    assert g.longitude == pytest.approx(11 + 31.0 / 60)
    assert (g.quality, g.num_sats, g.hdop, g.altitude_msl, g.geoid_separation) == (1, 8, 0.9, 545.4, 46.9)
    assert g.dgps_age is None and g.station_id is None


def test_golden_builders():
    assert gnss.encode_gga(45296.25, 48.1173, 11.5166667, 4, 12, 0.9, 545.4, 46.9, 1.0, '0000') == (
        b'$GNGGA,123456.25,4807.0380000,N,01131.0000020,E,4,12,0.90,545.400,M,46.900,M,1.0,0000*69\r\n')
    assert gnss.encode_hdt(274.07) == b'$GNHDT,274.070,T*2D\r\n'
    assert gnss.encode_gst(45296.25, 0.5, 0.02, 0.01, 45.0, 0.015, 0.012, 0.03) == (
        b'$GNGST,123456.25,0.500,0.020,0.010,45.0,0.015,0.012,0.030*7A\r\n')


def test_builders_round_trip_through_pynmea2():
    rmc = gnss.parse(gnss.encode_rmc(dt.datetime(2024, 3, 23, 12, 35, 19), -33.5, -70.25, True, 1.2, 84.4))
    assert rmc == gnss.Rmc('GN', 45319.0, True, -33.5, -70.25, 1.2, 84.4, dt.date(2024, 3, 23))
    vtg = gnss.parse(gnss.encode_vtg(54.7, 1.0))
    assert vtg.course_true_deg == 54.7 and vtg.speed_kmh == pytest.approx(3.6)
    assert vtg.speed_knots == pytest.approx(1.944, abs=1e-3)
    gst = gnss.parse(gnss.encode_gst(10.0, 0.5, 0.02, 0.01, 45.0, 0.015, 0.012, 0.03, talker='GP'))
    assert (gst.sd_lat, gst.sd_lon, gst.sd_alt) == (0.015, 0.012, 0.03)
    assert gnss.parse(gnss.encode_hdt(1.5)).heading_deg == 1.5


def test_other_sentences_are_skipped_not_errors():
    gsv = build_sentence(['GPGSV', '3', '1', '11', '03', '03', '111', '00'])
    assert gnss.parse(gsv) == gnss.OtherSentence('GPGSV')
    assert gnss.parse(build_sentence(['PUBX', '00'])) == gnss.OtherSentence('PUBX')
    assert gf.GnssFixBuilder().update(gnss.OtherSentence('GPGSA'), 1.0) == []


def test_empty_fields_become_none_not_crashes():
    """An empty-field GGA crashed the most used ROS NMEA driver; here it is a no-fix message."""
    g = gnss.parse(b'$GPGGA,,,,,,0,,,,,,,,*66\r\n')
    assert g.quality == 0 and g.latitude is None and g.hdop is None and g.utc_time is None
    r = gnss.parse(build_sentence(['GPRMC', '', 'V', '', '', '', '', '', '', '', '', '', 'N']))
    assert not r.valid and r.latitude is None and r.date is None
    s = gnss.parse(build_sentence(['GPGST', '120000.00', '', '', '', '', '', '', '']))
    assert s.sd_lat is None and s.utc_time == 43200.0
    assert gnss.parse(build_sentence(['GPHDT', '', 'T'])).heading_deg is None
    assert gnss.parse(build_sentence(['GPVTG', '', 'T', '', 'M', '', 'N', '', 'K', 'N'])).speed_kmh is None


@pytest.mark.parametrize('line, message', [
    (CLASSIC_GGA.replace(b'*47', b'*48'), 'checksum mismatch'),
    (CLASSIC_GGA[:40], 'checksum'),                                              # truncated
    (CLASSIC_GGA.replace(b'*47\r\n', b'\r\n'), 'checksum'),                      # no checksum at all
    (build_sentence(['GPGGA', '123519', '9107.038', 'N', '01131.000', 'E', 1, 8, 0.9, 545.4, 'M', 46.9,
                     'M', '', '']), 'exceeds 90'),                               # latitude > 90
    (build_sentence(['GPGGA', '123519', '4807.038', 'Q', '01131.000', 'E', 1, 8, 0.9, 545.4, 'M', 46.9,
                     'M', '', '']), 'hemisphere'),
    (build_sentence(['GPGGA', '123519', '4807.038', '', '01131.000', 'E', 1, 8, 0.9, 545.4, 'M', 46.9,
                     'M', '', '']), 'both be present'),                         # half-empty lat
    (build_sentence(['GPGGA', '126519', '4807.038', 'N', '01131.000', 'E', 1, 8, 0.9, 545.4, 'M', 46.9,
                     'M', '', '']), 'time of day'),
    (build_sentence(['GPGGA', '123519', '4807.038', 'N', '01131.000', 'E', 9, 8, 0.9, 545.4, 'M', 46.9,
                     'M', '', '']), 'quality'),
    (build_sentence(['GPGGA', '123519', '4807.038', 'N', '01131.000', 'E', 1, 8, -0.9, 545.4, 'M', 46.9,
                     'M', '', '']), 'hdop'),
    (build_sentence(['GPGST', '120000', '1', '1', '1', '400', '1', '1', '1']), 'orientation'),
    (build_sentence(['GPRMC', '123519', 'A', '4807.038', 'N', '01131.000', 'E', '1', '1', '320394', '', '']),
     'date'),
    (build_sentence(['GPHDT', 'abc', 'T']), 'HDT heading'),
    (build_sentence(['GP GGA', '1']), 'malformed NMEA address'),
    (build_sentence(['GPGGA']), None),
    (b'$GPGGA,' + b'1' * 200 + b'*00', 'exceeds'),                                 # overlong
    (bytes(range(256)), None),                                                     # random bytes
])
def test_bad_sentences(line, message):
    with pytest.raises(ProtocolError) as err:
        gnss.parse(line)
    if message:
        assert message in str(err.value)


lat = st.floats(-89.9999, 89.9999)
lon = st.floats(-179.9999, 179.9999)


@settings(max_examples=200, deadline=None)
@given(t=st.floats(0, 86399.99), la=lat, lo=lon, q=st.integers(0, 8), sats=st.integers(0, 40),
       hdop=st.floats(0, 50), alt=st.floats(-400, 9000), talker=st.sampled_from(gnss.TALKERS))
def test_gga_round_trip(t, la, lo, q, sats, hdop, alt, talker):
    g = gnss.parse(gnss.encode_gga(t, la, lo, q, sats, hdop, alt, 10.0, talker=talker))
    assert g.talker == talker and g.quality == q and g.num_sats == sats
    assert g.latitude == pytest.approx(la, abs=1e-8) and g.longitude == pytest.approx(lo, abs=1e-8)
    assert g.altitude_msl == pytest.approx(alt, abs=1e-3) and g.hdop == pytest.approx(hdop, abs=0.006)
    assert (g.utc_time - t) % 86400 == pytest.approx(0, abs=0.006) or abs(g.utc_time - t) < 0.006


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=150))
@example(b'$GPGGA*56')
@example(b'$GPGGA,,,,,,,,,,,,,,*56')
@example(b'$GPRMC,,,,,,,,,,,,*67')
def test_fuzz_bytes(data):
    try:
        gnss.parse(data)
    except ProtocolError:
        pass


field = st.text(alphabet='0123456789.-NSEWAVTMK', max_size=12)


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(['GPGGA', 'GNRMC', 'GPGST', 'GPVTG', 'GPHDT']),
       fields=st.lists(field, max_size=16))
@example(kind='GPGGA', fields=['', '4807.038', 'N', '', ''])
@example(kind='GPRMC', fields=['', 'A', '', '', '', '', '', '', '000000'])
@example(kind='GPGGA', fields=['.', '.', 'N'])
@example(kind='GNRMC', fields=['', '', '', '', '', '', '', '', '310299'])
def test_fuzz_valid_checksum_random_fields(kind, fields):
    """Sentences that pass the checksum but carry arbitrary field text: parse or ProtocolError."""
    try:
        gnss.parse(build_sentence([kind, *fields]))
    except ProtocolError:
        pass


# ---------------------------------------------------------------- fix building (gnss_fix)


def _gga(q=4, hdop=0.8, t=43200.0, talker='GN', lat=-1.25, lon=36.75):
    return gnss.parse(gnss.encode_gga(t, lat, lon, q, 14, hdop, 1600.0, -12.5, talker=talker))


@pytest.mark.parametrize('quality, status', [
    (0, gf.STATUS_NO_FIX), (1, gf.STATUS_FIX), (2, gf.STATUS_SBAS_FIX), (3, gf.STATUS_FIX),
    (4, gf.STATUS_GBAS_FIX), (5, gf.STATUS_GBAS_FIX), (6, gf.STATUS_NO_FIX), (7, gf.STATUS_NO_FIX),
    (8, gf.STATUS_FIX)])
def test_quality_maps_to_status_honestly(quality, status):
    fix = gf.GnssFixBuilder().update(_gga(q=quality), 1.0)[0]
    assert fix.status == status and fix.quality == quality


def test_covariance_from_gst_when_fresh_else_hdop_fallback():
    b = gf.GnssFixBuilder()
    fix = b.update(_gga(q=4, hdop=0.8), 1.0)[0]
    assert fix.covariance_type == gf.COV_APPROXIMATED
    assert fix.covariance[0] == pytest.approx((0.8 * 0.02) ** 2)
    assert fix.covariance[8] == pytest.approx((2 * 0.8 * 0.02) ** 2)
    assert fix.altitude == pytest.approx(1600.0 - 12.5)               # ellipsoid height
    assert fix.latitude == pytest.approx(-1.25) and fix.service == 0  # GN: constellations unknown
    b.update(gnss.parse(gnss.encode_gst(43199.95, 0.3, 0.02, 0.01, 10.0, 0.012, 0.010, 0.025)), 1.0)
    fix = b.update(_gga(t=43200.0), 1.05)[0]
    assert fix.covariance_type == gf.COV_DIAGONAL_KNOWN
    assert fix.covariance == pytest.approx((0.010 ** 2, 0, 0, 0, 0.012 ** 2, 0, 0, 0, 0.025 ** 2))
    stale = b.update(_gga(t=43210.0), 11.0)[0]                       # GST 10 s old: fall back
    assert stale.covariance_type == gf.COV_APPROXIMATED
    single = gf.GnssFixBuilder().update(_gga(q=1, hdop=1.5, talker='GP'), 1.0)[0]
    assert single.covariance[0] == pytest.approx((1.5 * 4.0) ** 2) and single.service == gf.SERVICE_GPS


def test_no_position_is_no_fix_with_nan_and_unknown_covariance():
    fix = gf.GnssFixBuilder().update(gnss.parse(b'$GPGGA,,,,,,1,,,,,,,,*67\r\n'), 1.0)[0]
    assert fix.status == gf.STATUS_NO_FIX and fix.quality == gf.FixQuality.INVALID
    assert fix.latitude != fix.latitude and fix.covariance_type == gf.COV_UNKNOWN


def test_time_reference_from_valid_rmc_only():
    b = gf.GnssFixBuilder()
    ref = b.update(gnss.parse(gnss.encode_rmc(dt.datetime(2025, 6, 1, 8, 30, 15, 500000), 1.0, 2.0)), 7.0)
    assert ref == [gf.TimeRef(7.0, dt.datetime(2025, 6, 1, 8, 30, 15, 500000, tzinfo=dt.UTC).timestamp())]
    assert b.update(gnss.parse(gnss.encode_rmc(dt.datetime(2025, 6, 1), None, None, valid=False)), 8.0) == []
    b.update(gnss.parse(gnss.encode_hdt(91.5)), 8.0)
    b.update(gnss.parse(gnss.encode_vtg(10.0, 2.0)), 8.0)
    assert b.heading_deg == 91.5 and b.speed_mps == pytest.approx(2.0)


def test_config_validation():
    with pytest.raises(ValueError, match='uere.BOGUS'):
        gf.GnssConfig(uere={'BOGUS': 1.0})
