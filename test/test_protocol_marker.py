"""Marker command/acknowledge protocol: golden lines, bad input, fuzzing."""

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from mine_robot.drivers.protocols import ProtocolError, build_sentence
from mine_robot.drivers.protocols import marker as mk


def test_golden_commands():
    line = mk.encode_fire(3, 17, 400, -250)
    assert line == b'$MKC,3,FIRE,17,400,-250*6A\r\n'
    assert mk.parse_command(line) == mk.MarkerCommand(3, 'FIRE', '17', 400, -250)
    assert mk.parse_command(mk.encode_fire(4, 'T-12', 50)).target_id == 'T-12'
    assert mk.parse_command(mk.encode_status_request(4)) == mk.MarkerCommand(4, 'STATUS')
    assert mk.parse_command(mk.encode_set_level(5, 100)) == mk.MarkerCommand(5, 'LEVEL', level=100)
    assert mk.parse_command(mk.encode_clear(6)) == mk.MarkerCommand(6, 'CLEAR')


def test_golden_device_messages():
    assert mk.encode_ack(3) == b'$MKA,3,OK*70\r\n'
    assert mk.parse(b'$MKA,3,OK*70\r\n') == mk.MarkerAck(3, True)
    assert mk.encode_ack(4, False, mk.AckError.EMPTY, 'empty') == b'$MKA,4,ERR,2,empty*71\r\n'
    assert mk.parse(b'$MKA,4,ERR,2,empty*71\r\n') == mk.MarkerAck(4, False, 2, 'empty')
    assert mk.encode_done(3, 17, 402, -250) == b'$MKD,3,17,402,-250*5B\r\n'
    assert mk.parse(b'$MKD,3,17,402,-250*5B\r\n') == mk.MarkerDone(3, '17', 402, -250)
    assert mk.parse(b'$MKS,IDLE,80,0,5*5C\r\n') == mk.MarkerStatus('IDLE', 80, 0, 5)
    assert mk.parse(mk.encode_fault(mk.Fault.VALVE, 'valve open')) == mk.MarkerFault(1, 'valve open')


@pytest.mark.parametrize('line, message', [
    (b'$MKA,3,OK*71\r\n', 'checksum'),
    (b'$MKA,3,O', 'checksum'),                                                     # truncated
    (build_sentence(['MKA', 70000, 'OK']), 'cmd_id'),                              # out of range
    (build_sentence(['MKA', 3, 'ERR', 2]), 'expected'),
    (build_sentence(['MKS', 'SLEEPING', 1, 0, 0]), 'state'),
    (build_sentence(['MKS', 'IDLE', 101, 0, 0]), 'level'),                          # level > 100
    (build_sentence(['MKS', 'IDLE', '', 0, 0]), 'level'),                           # empty field
    (build_sentence(['MKD', 3, 17, 400]), 'expected 5'),
    (build_sentence(['MKD', 3, 'bad target!', 400, 0]), 'target'),
    (build_sentence(['MKF', 0, 'none']), 'code'),
    (build_sentence(['MKZ']), 'unknown'),
    (b'\x00\x01\x02', None),
])
def test_bad_device_lines(line, message):
    with pytest.raises(ProtocolError) as err:
        mk.parse(line)
    if message:
        assert message in str(err.value)


@pytest.mark.parametrize('line, message', [
    (build_sentence(['MKC', 1, 'FIRE', 17, 0, 0]), 'duration_ms'),
    (build_sentence(['MKC', 1, 'FIRE', 17, 20000, 0]), 'duration_ms'),
    (build_sentence(['MKC', 1, 'FIRE', 17, 200, 5000]), 'slide_mm'),
    (build_sentence(['MKC', 1, 'FIRE', '', 200, 0]), 'target'),
    (build_sentence(['MKC', 1, 'FIRE', 17, 200]), 'expected 6'),
    (build_sentence(['MKC', 1, 'LEVEL', 101]), 'level'),
    (build_sentence(['MKC', 1, 'SELFDESTRUCT']), 'unknown'),
    (build_sentence(['MKA', 1, 'OK']), 'not an MKC'),
])
def test_bad_commands(line, message):
    with pytest.raises(ProtocolError, match=message):
        mk.parse_command(line)


def test_encoder_refuses_invalid_commands():
    with pytest.raises(ValueError, match='duration_ms'):
        mk.encode_fire(1, 2, 0)
    with pytest.raises(ValueError, match='target_id'):
        mk.encode_fire(1, 'has space', 100)
    with pytest.raises(ValueError, match='slide_mm'):
        mk.encode_fire(1, 2, 100, 9999)
    with pytest.raises(ValueError, match='cmd_id'):
        mk.encode_fire(70000, 2, 100)


@settings(max_examples=200, deadline=None)
@given(cmd_id=st.integers(0, mk.MAX_CMD_ID), target=st.from_regex(mk.TARGET_PATTERN, fullmatch=True),
       duration=st.integers(*mk.DURATION_RANGE_MS), slide=st.integers(*mk.SLIDE_RANGE_MM))
def test_fire_round_trip(cmd_id, target, duration, slide):
    assert mk.parse_command(mk.encode_fire(cmd_id, target, duration, slide)) == mk.MarkerCommand(
        cmd_id, 'FIRE', target, duration, slide)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80), code=st.integers(1, 99))
def test_free_text_cannot_break_framing(text, code):
    msg = mk.parse(mk.encode_fault(code, text))
    assert msg.code == code and ',' not in msg.text and '*' not in msg.text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_random_bytes(data):
    for parse in (mk.parse, mk.parse_command):
        try:
            parse(data)
        except ProtocolError:
            pass
