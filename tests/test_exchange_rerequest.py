"""The MoldUDP64 re-request server over a raw loopback UDP socket; answers read with
`tickwire.sim.moldudp64.decode_packet` (the strict decoder the feed tests use)."""

import socket

import pytest

from tickwire.sim import moldudp64 as mold
from tickwire.sim.exchange import RerequestServer, serve_in_thread
from tickwire.sim.scenario import order_flow

SESSION = b"20261122A1"


@pytest.fixture(scope="module")
def history():
    return order_flow(500, seed=3)


@pytest.fixture
def ask(history):
    server = RerequestServer(SESSION, history, max_payload=1400)
    with serve_in_thread(server), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)

        def send(request, answered=True):
            sock.sendto(request, (server.host, server.port))
            if not answered:
                # The server answers in order: a probe after an ignored request proves the
                # ignored one was not answered.
                sock.sendto(mold.request(SESSION, 1, 1), (server.host, server.port))
            packet = mold.decode_packet(sock.recv(2048))
            if not answered:
                assert (packet.sequence, packet.count) == (1, 1)
                return None
            return packet

        send.server = server
        yield send


def test_answers_from_the_history(ask, history):
    packet = ask(mold.request(SESSION, 10, 5))
    assert packet.session == SESSION and packet.sequence == 10
    assert list(packet.messages) == history[9:14]
    assert ask.server.counters["messages_resent"] == 5


def test_a_large_request_is_answered_with_what_fits(ask, history):
    packet = ask(mold.request(SESSION, 1, 400))
    wire = mold.encode_packet(SESSION, 1, packet.messages)
    assert 0 < packet.count < 400 and len(wire) <= 1400
    assert list(packet.messages) == history[:packet.count]
    # One more message would not have fitted.
    assert len(wire) + 2 + len(history[packet.count]) > 1400


def test_past_the_end(ask, history):
    packet = ask(mold.request(SESSION, 498, 10))
    assert packet.sequence == 498 and list(packet.messages) == history[497:]
    assert ask(mold.request(SESSION, 501, 10), answered=False) is None
    assert ask.server.counters["past_end"] == 2


def test_history_grows_while_serving(ask, history):
    history.append(b"S" + bytes(10) + b"C")
    try:
        assert ask(mold.request(SESSION, 501, 1)).messages == (history[500],)
    finally:
        history.pop()


@pytest.mark.parametrize("request_, counter", [
    (mold.request(b"OTHERSESS1", 1, 1), "wrong_session"),
    (mold.request(SESSION, 0, 1), "malformed"),
    (mold.request(SESSION, 1, 0), "malformed"),
    (mold.request(SESSION, 1, 1)[:-1], "malformed"),
    (mold.request(SESSION, 1, 1) + b"\x00", "malformed"),
    (b"", "malformed"),
])
def test_bad_requests_are_ignored_and_counted(ask, request_, counter):
    assert ask(request_, answered=False) is None
    assert ask.server.counters[counter] == 1
    assert ask.server.counters["requests"] == 2
