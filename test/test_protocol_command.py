"""Command/ack client: acknowledgement, refusal, timeout with retries, send failures (sim time)."""

import pytest

from mine_robot.drivers.command import CommandClient, CommandResult
from mine_robot.drivers.protocols import marker as mk


class Wire:
    """The bytes the client put on the line (a list, as a device's receive buffer would hold)."""

    def __init__(self, fail=False):
        self.sent, self.fail = [], fail

    def __call__(self, data):
        if self.fail:
            raise OSError('port unplugged')
        self.sent.append(data)


def test_ack_resolves_first_attempt():
    wire = Wire()
    client = CommandClient(wire, ack_timeout=0.5, retries=2)
    cmd_id = client.next_id()
    future = client.submit(cmd_id, mk.encode_fire(cmd_id, 'T1', 300), now=10.0)
    assert wire.sent == [mk.encode_fire(cmd_id, 'T1', 300)] and client.pending == 1
    client.poll(10.4)
    assert not future.done()
    assert client.on_ack(cmd_id, True, now=10.45)
    assert future.result(0) == CommandResult(cmd_id, True, 1, '', 0, pytest.approx(0.45))
    assert not client.on_ack(cmd_id, True, now=10.5) and client.stale_acks == 1   # duplicate ack


def test_lost_acks_retry_with_same_bytes_then_fail():
    wire = Wire()
    client = CommandClient(wire, ack_timeout=0.5, retries=2)
    future = client.submit(7, mk.encode_fire(7, 'T2', 300), now=0.0)
    for t in (0.49, 0.5, 0.9, 1.0, 1.4):
        client.poll(t)
    assert len(wire.sent) == 3 and len(set(wire.sent)) == 1      # same id re-sent: device de-dups
    assert not future.done()
    client.poll(1.5)
    result = future.result(0)
    assert not result.ok and result.attempts == 3
    assert result.detail == 'no acknowledgement after 3 attempts (0.5 s each)'
    assert (client.sent, client.resent, client.failed, client.pending) == (1, 2, 1, 0)


def test_ack_after_a_retry_succeeds():
    wire = Wire()
    client = CommandClient(wire, ack_timeout=0.2, retries=3)
    future = client.submit(1, b'x', now=0.0)
    client.poll(0.2)
    client.on_ack(1, True, now=0.25)
    assert future.result(0).ok and future.result(0).attempts == 2


def test_refusal_ends_immediately_with_code():
    client = CommandClient(Wire(), ack_timeout=0.2, retries=3)
    future = client.submit(2, b'x', now=0.0)
    client.on_ack(2, False, now=0.05, detail='empty', code=mk.AckError.EMPTY)
    result = future.result(0)
    assert not result.ok and result.code == 2 and result.detail == 'empty' and client.refused == 1


def test_send_failures_count_as_attempts_and_fail_in_bounded_time():
    wire = Wire(fail=True)
    client = CommandClient(wire, ack_timeout=0.1, retries=1)
    future = client.submit(3, b'x', now=0.0)
    client.poll(0.1)
    client.poll(0.2)
    result = future.result(0)
    assert result.attempts == 2 and result.detail.endswith('last send failed: port unplugged')


def test_ids_skip_in_flight_and_wrap():
    client = CommandClient(Wire(), id_modulus=4)
    ids = [client.next_id() for _ in range(3)]
    assert ids == [1, 2, 3]
    client.submit(0, b'a', 0.0)
    assert client.next_id() == 1
    with pytest.raises(ValueError, match='already in flight'):
        client.submit(0, b'b', 0.0)
    client.cancel_all('shutting down', 1.0)
    assert client.pending == 0
