"""Metal-detector line protocol: golden lines, bad input, hypothesis round trips and fuzzing."""

from hypothesis import example, given, settings
from hypothesis import strategies as st
import pytest

from mine_robot.drivers.protocols import ProtocolError, build_sentence, nmea_checksum, split_sentence
from mine_robot.drivers.protocols import metal_detector as md

GOLDEN = b'$MDS,42,1000500,5,12.50,-3.25,0.00,7.00,1234.50,0005*43\r\n'


def test_golden_sample_encode_and_parse():
    assert md.encode_sample(42, 1000500, [12.5, -3.25, -0.001, 7, 1234.5], status=0x0005) == GOLDEN
    s = md.parse(GOLDEN)
    assert s == md.MdSample(42, 1000500, (12.5, -3.25, 0.0, 7.0, 1234.5), 5)
    assert s.device_time == pytest.approx(1.0005)
    assert md.MdStatus(s.status) == md.MdStatus.SATURATED | md.MdStatus.GROUND_BALANCING


def test_status_word_is_optional():
    line = md.encode_sample(1, 2, [1, 2, 3, 4, 5])
    assert line == b'$MDS,1,2,5,1.00,2.00,3.00,4.00,5.00*73\r\n'
    assert md.parse(line).status is None
    assert md.parse(line.rstrip(b'\r\n')).values == (1, 2, 3, 4, 5)   # terminator optional


def test_checksum_is_xor_of_body():
    assert nmea_checksum(b'MDA,7,OK') == 0x7B
    assert md.encode_ack(7) == b'$MDA,7,OK*7B\r\n'


def test_golden_commands_and_acks():
    assert md.encode_sensitivity(7, 80) == b'$MDC,7,SENS,80*52\r\n'
    assert md.encode_ground_balance(8) == b'$MDC,8,GB*77\r\n'
    assert md.parse_command(b'$MDC,7,SENS,80*52\r\n') == md.MdCommand(7, 'SENS', 80)
    assert md.parse_command(md.encode_rate(9, 1000)) == md.MdCommand(9, 'RATE', 1000)
    assert md.parse(md.encode_ack(8, False, 'busy, try later')) == md.MdAck(8, False, 'busy_ try later')
    assert md.parse(b'$MDA,7,OK*7B') == md.MdAck(7, True)


@pytest.mark.parametrize('line, message', [
    (GOLDEN.replace(b'*43', b'*44'), 'checksum mismatch'),                       # wrong checksum
    (GOLDEN[:30], 'no "*HH" checksum'),                                          # truncated line
    (b'$MDS,42,1000500,5,1.0,2.0*00', None),                                     # too few coils
    (build_sentence(['MDS', 1, 2, 5, 1, 2, 3, 4, 5, '0001', 'extra']), 'coil count says 5'),
    (build_sentence(['MDS', 1, 2, 5, 1, 2, 'nan', 4, 5]), 'coil 2'),              # not a number
    (build_sentence(['MDS', 1, 2, 5, 1, 2, 'inf', 4, 5]), 'coil 2'),
    (build_sentence(['MDS', 1, 2, 5, 1, 2, '2e7', 4, 5]), 'outside'),            # out-of-range value
    (build_sentence(['MDS', -1, 2, 5, 1, 2, 3, 4, 5]), 'seq'),                   # negative seq
    (build_sentence(['MDS', 2 ** 32, 2, 5, 1, 2, 3, 4, 5]), 'seq'),              # seq beyond uint32
    (build_sentence(['MDS', 1, 2, 0]), 'at least 5'),
    (build_sentence(['MDS', 1, 2, 17] + [0] * 17), 'coil count'),                # too many coils
    (build_sentence(['MDS', 1, 2, 5, 1, 2, 3, 4, 5, 'XYZ1']), 'status'),         # bad status hex
    (build_sentence(['MDS', 1, 2, 5, 1, 2, 3, 4, 5, '10000']), 'status'),        # status > 16 bit
    (build_sentence(['MDS', '1_0', 2, 5, 1, 2, 3, 4, 5]), 'seq'),                # python-only syntax
    (build_sentence(['MDS', '', 2, 5, 1, 2, 3, 4, 5]), 'seq'),                   # empty field
    (build_sentence(['MDX', 1]), 'unknown'),
    (build_sentence(['MDA', 1, 'MAYBE']), 'MDA'),
    (b'MDS,1,2,5,1,2,3,4,5*00', 'does not start'),
    (b'$' + b'1,' * 300 + b'*00', 'exceeds'),                                      # overlong
    (b'$MDS,1\x00,2*00', None),                                                   # control bytes
    (b'\xff\xfe\x00garbage', None),                                               # random bytes
])
def test_bad_lines_raise_protocol_error(line, message):
    with pytest.raises(ProtocolError) as err:
        md.parse(line)
    if message:
        assert message in str(err.value)


def test_bad_commands_rejected_both_ways():
    with pytest.raises(ValueError):
        md.encode_sensitivity(1, 101)
    with pytest.raises(ProtocolError, match='SENS value'):
        md.parse_command(build_sentence(['MDC', 1, 'SENS', 101]))
    with pytest.raises(ProtocolError, match='unknown command'):
        md.parse_command(build_sentence(['MDC', 1, 'BOOM']))
    with pytest.raises(ProtocolError, match='no value'):
        md.parse_command(build_sentence(['MDC', 1, 'GB', 3]))


coil_values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(seq=st.integers(0, 2 ** 32 - 1), t=st.integers(0, 2 ** 64 - 1),
       values=st.lists(coil_values, min_size=1, max_size=md.MAX_COILS),
       status=st.none() | st.integers(0, 0xFFFF))
def test_round_trip(seq, t, values, status):
    sample = md.parse(md.encode_sample(seq, t, values, status))
    assert (sample.seq, sample.device_time_us, sample.status) == (seq, t, status)
    assert sample.values == pytest.approx(values, abs=0.0051)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
@example(b'$*00')
@example(b'$MDS*00')
@example(b'$MDS,,,,*00')
def test_fuzz_random_bytes_only_raise_protocol_error(data):
    try:
        md.parse(data)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(pos=st.integers(0, len(GOLDEN) - 3), byte=st.integers(0, 255))
def test_fuzz_single_byte_corruption_is_detected_or_harmless(pos, byte):
    corrupted = GOLDEN[:pos] + bytes([byte]) + GOLDEN[pos + 1:]
    try:
        result = md.parse(corrupted)
    except ProtocolError:
        return
    # A single-byte change that still parses must have left the line unchanged (XOR catches it)
    assert corrupted == GOLDEN and result == md.parse(GOLDEN)


def test_split_sentence_rejects_lowercase_garbage_checksum():
    with pytest.raises(ProtocolError):
        split_sentence(b'$MDA,7,OK*zz')


def test_expected_coil_count_enforced_when_given():
    line = md.encode_sample(3, 4, [1, 2, 3, 4])
    assert len(md.parse(line).values) == 4
    with pytest.raises(ProtocolError, match='4 coil values, expected 5'):
        md.parse(line, coils=5)
    assert md.parse(md.encode_ack(1), coils=5) == md.MdAck(1, True)
