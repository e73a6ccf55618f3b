"""The SoupBinTCP order-entry server on a real loopback socket.

Session behaviour (login accepted and rejected, heartbeats both ways, logout, silence) against
ouch-connect's client, an independent SoupBinTCP implementation (its OUCH Enter Order is not
the specification's, see PROTOCOLS.md, so orders go through a raw socket here, framed and
checked against the SoupBinTCP layout: 2-byte length counting the bytes after itself, type).
"""

import socket
import time

import pytest
from links_connect.callbacks import MemoryStoreCallback
from ouch_connect import CltManual

from tickwire.sim import itch
from tickwire.sim.exchange import Exchange, OrderEntryServer, serve_in_thread
from tickwire.sim.ouch import encode_enter_order

SESSION, USER, PASSWORD = "TWIRE00042", "tw", "secret"


@pytest.fixture
def running():
    exchange = Exchange(["AAPL"])
    for ref, price, shares in ((1, 1_000_000, 300), (2, 1_000_100, 400)):
        exchange.apply_market(itch.encode(b"A", stock_locate=1, timestamp=34_200_000_000_000,
                                          order_ref=ref, side=b"S", shares=shares,
                                          stock=b"AAPL", price=price))
    server = OrderEntryServer(exchange, session=SESSION, username=USER, password=PASSWORD,
                              heartbeat_interval=0.2, idle_timeout=3.0)
    with serve_in_thread(server):
        yield exchange, server


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def login_request(username=USER, password=PASSWORD, session="", sequence=1):
    return (username.ljust(6) + password.ljust(10) + session.ljust(10)
            + str(sequence).rjust(20)).encode()


def soup(kind, payload=b""):
    return (len(payload) + 1).to_bytes(2, "big") + kind + payload


def enter(number, side="B", quantity=500, price=1_000_100, tif="3", symbol="AAPL"):
    return encode_enter_order(user_ref_num=number, side=side, quantity=quantity, symbol=symbol,
                              price=price, time_in_force=tif, display="Y", capacity="P",
                              intermarket_sweep="N", cross_type="N", clordid=f"CL{number}")


class RawClient:
    """A SoupBinTCP client over a plain socket, reading packets one by one."""

    def __init__(self, server):
        self.sock = socket.create_connection((server.host, server.port), timeout=5)
        self.buffer = b""

    def send(self, data):
        self.sock.sendall(data)

    def packet(self):
        """The next (type, payload), or None when the server closed the connection."""
        while True:
            if len(self.buffer) >= 2:
                length = int.from_bytes(self.buffer[0:2], "big")
                if len(self.buffer) >= 2 + length:
                    kind, payload = self.buffer[2:3], self.buffer[3:2 + length]
                    self.buffer = self.buffer[2 + length:]
                    return kind, payload
            data = self.sock.recv(4096)
            if not data:
                assert self.buffer == b"", "the server closed inside a packet"
                return None
            self.buffer += data

    def data(self, count):
        """The next `count` sequenced messages, skipping heartbeats."""
        out = []
        while len(out) < count:
            kind, payload = self.packet()
            if kind == b"S":
                out.append(payload)
            else:
                assert kind == b"H", kind
        return out

    def close(self):
        self.sock.close()


def connect(server, **kwargs):
    store = MemoryStoreCallback(default_find_timeout=3.0)
    client = CltManual(f"{server.host}:{server.port}", store, name="clt")
    return store, client


def ouch_login(client, **fields):
    client.send({"LoginRequest": {"username": USER, "password": PASSWORD, "session_id": "",
                                  "sequence_number": "1"} | fields})


# Against ouch-connect ----------------------------------------------------------------------------

def test_login_heartbeats_logout(running):
    exchange, server = running
    store, client = connect(server)
    with client:
        ouch_login(client)
        accepted = store.find_recv("clt", {"LoginAccepted": {}})
        assert accepted.msg["LoginAccepted"] == {"session_id": SESSION, "sequence_number": "1"}
        # Sequence number 1 is the System Event Start of Day, as ouch-connect decodes it.
        event = store.find_recv("clt", {"SPayload": {}})
        assert event.msg["SPayload"]["SystemEvent"]["event_code"] == "START_OF_DAY"
        wait_for(lambda: server.counters["heartbeats_sent"] >= 3)
        assert store.find_recv("clt", {"HBeat": {}}) is not None
        for _ in range(3):
            client.send({"HBeat": {}})
        wait_for(lambda: server.counters["heartbeats_received"] == 3)
        client.send({"LogoutRequest": {}})
        wait_for(lambda: server.counters["logouts"] == 1)
    assert server.counters["timeouts"] == 0 and server.counters["malformed"] == 0


@pytest.mark.parametrize("fields, reason, counter", [
    (dict(password="wrong"), "NOT_AUTHORIZED", "logins_rejected_A"),
    (dict(username="nobody"), "NOT_AUTHORIZED", "logins_rejected_A"),
    (dict(session_id="OTHERSESS1"), "SESSION_NOT_AVAILABLE", "logins_rejected_S"),
])
def test_login_rejected(running, fields, reason, counter):
    _, server = running
    store, client = connect(server)
    with client:
        ouch_login(client, **fields)
        rejected = store.find_recv("clt", {"LoginRejected": {}})
        assert rejected.msg["LoginRejected"]["reason"] == reason
    assert server.counters[counter] == 1 and server.counters["logins_accepted"] == 0


def test_one_client_at_a_time_and_silence_ends_the_session(running):
    _, server = running
    first_store, first = connect(server)
    with first:
        ouch_login(first)
        assert first_store.find_recv("clt", {"LoginAccepted": {}}) is not None
        second_store, second = connect(server)
        with second:
            ouch_login(second)
            rejected = second_store.find_recv("clt", {"LoginRejected": {}})
            assert rejected.msg["LoginRejected"]["reason"] == "SESSION_NOT_AVAILABLE"
        # The first client never sends a heartbeat: idle_timeout later the server drops it.
        wait_for(lambda: server.counters["timeouts"] == 1)
    # The session is free again.
    store, client = connect(server)
    with client:
        ouch_login(client)
        assert store.find_recv("clt", {"LoginAccepted": {}}) is not None


def test_ouch_connect_enter_order_is_refused_not_misread(running):
    """ouch-connect puts a 9-byte symbol in its Enter Order: the exchange refuses the message
    (counted) rather than reading shifted fields, and the session goes on."""
    exchange, server = running
    store, client = connect(server)
    with client:
        ouch_login(client)
        assert store.find_recv("clt", {"LoginAccepted": {}}) is not None
        client.send({"UPayload": {"EnterOrder": {
            "user_ref_number": 1, "side": "BUY", "quantity": 100, "symbol": "AAPL",
            "price": 100.0, "time_in_force": "IMMEDIATE_OR_CANCEL", "display": "VISIBLE",
            "capacity": "AGENCY", "int_mkt_sweep_eligibility": "NOT_ELIGIBLE",
            "cross_type": "CONTINUOUS_MARKET", "clt_order_id": "1", "appendages": {}}}})
        wait_for(lambda: server.counters["bad_ouch"] == 1)
        client.send({"HBeat": {}})
        wait_for(lambda: server.counters["heartbeats_received"] == 1)
    assert exchange.events == []


# Raw socket: orders, replay, framing -----------------------------------------------------------

def test_orders_over_the_session_and_replay(running):
    exchange, server = running
    client = RawClient(server)
    client.send(soup(b"L", login_request()))
    assert client.packet() == (b"A", SESSION.encode() + b"1".rjust(20))
    # Two orders in one write; the IOC takes 300 at 100.0000 and 400 at 100.0100.
    client.send(soup(b"U", enter(1, quantity=800)) + soup(b"U", enter(2, quantity=0)))
    messages = client.data(6)
    assert [msg[0:1] for msg in messages] == [b"S", b"A", b"E", b"E", b"C", b"J"]
    fills = [(int.from_bytes(e[13:17], "big"), int.from_bytes(e[17:25], "big"), e[25:26])
             for e in messages[2:4]]
    assert fills == [(300, 1_000_000, b"R"), (400, 1_000_100, b"R")]
    assert (int.from_bytes(messages[4][13:17], "big"), messages[4][17:18]) == (100, b"I")
    assert int.from_bytes(messages[5][13:15], "big") == 0x0013       # invalid quantity
    client.send(soup(b"O"))
    assert [p for p in iter(client.packet, None) if p[0] != b"H"] == []
    client.close()
    # Log in again from sequence number 3: messages 3 to 6 again, identical.
    wait_for(lambda: server.counters["closed"] == 1)
    client = RawClient(server)
    client.send(soup(b"L", login_request(session=SESSION, sequence=3)))
    assert client.packet() == (b"A", SESSION.encode() + b"3".rjust(20))
    assert client.data(4) == messages[2:]
    client.close()
    wait_for(lambda: server.counters["closed"] == 2)
    # Sequence number 0: nothing replayed, the next message is number 7.
    client = RawClient(server)
    client.send(soup(b"L", login_request(sequence=0)))
    assert client.packet() == (b"A", SESSION.encode() + b"7".rjust(20))
    client.send(soup(b"U", enter(3, quantity=100, price=1_000_200)))
    assert [m[0:1] for m in client.data(2)] == [b"A", b"C"]          # the book is empty now
    client.close()


def test_partial_reads(running):
    exchange, server = running
    client = RawClient(server)
    stream = soup(b"L", login_request()) + soup(b"U", enter(1, quantity=100)) + soup(b"R")
    for byte in stream:
        client.send(bytes([byte]))
        time.sleep(0.001)
    assert client.packet()[0] == b"A"
    assert [m[0:1] for m in client.data(3)] == [b"S", b"A", b"E"]
    wait_for(lambda: server.counters["heartbeats_received"] == 1)
    client.close()


@pytest.mark.parametrize("stream, error", [
    (soup(b"L", login_request()) + b"\x00\x00", b"packet length 0"),
    (soup(b"L", login_request()) + b"\xff\xff" + bytes(10), b"packet length 65535"),
    (soup(b"L", login_request()) + soup(b"Q"), b"unexpected packet type"),
    (soup(b"L", login_request()) + soup(b"L", login_request()), b"unexpected packet type"),
    (soup(b"R"), b"expected a login request"),
    (soup(b"L", login_request()[:-1]), b"login request of 45 bytes"),
    (soup(b"L", login_request()[:-3] + b"x12"), b"is not a number"),
])
def test_malformed_packets_end_the_connection(running, stream, error):
    _, server = running
    client = RawClient(server)
    client.send(stream)
    packets = [p for p in iter(client.packet, None) if p[0] not in (b"A", b"S", b"H")]
    assert len(packets) == 1 and packets[0][0] == b"+" and error in packets[0][1]
    assert server.counters["malformed"] == 1
    client.close()


def test_truncated_packet_and_unknown_ouch(running):
    exchange, server = running
    client = RawClient(server)
    client.send(soup(b"L", login_request()) + soup(b"U", b"Z" + bytes(10))
                + soup(b"U", enter(1)[:-5]))
    assert client.packet()[0] == b"A"
    wait_for(lambda: server.counters["bad_ouch"] == 2)
    client.send(soup(b"U", enter(2))[:20])
    client.sock.shutdown(socket.SHUT_WR)
    wait_for(lambda: server.counters["truncated"] == 1)
    client.close()
    assert exchange.events == []


def test_end_of_session(running):
    exchange, server = running
    client = RawClient(server)
    client.send(soup(b"L", login_request()))
    assert client.packet()[0] == b"A"
    exchange.end_of_day()
    server.end_session()
    packets = [p for p in iter(client.packet, None) if p[0] != b"H"]
    end_of_day = b"S" + (34_200_000_000_000).to_bytes(8, "big") + b"E"
    assert packets == [(b"S", exchange.stream(SESSION)[0]), (b"S", end_of_day), (b"Z", b"")]
    client.close()
    client = RawClient(server)
    client.send(soup(b"L", login_request()))
    assert client.packet() == (b"J", b"S")
    client.close()


def test_server_defaults_follow_the_spec():
    server = OrderEntryServer(Exchange(["AAPL"]))
    assert (server.heartbeat_interval, server.idle_timeout) == (1.0, 15.0)
    with pytest.raises(ValueError):
        OrderEntryServer(Exchange(["AAPL"]), session="ELEVENCHARS")


def test_the_exchange_outlives_its_server():
    """A client still connected when the servers stop; afterwards the flow goes on and hits
    our resting order: the exchange keeps working with nobody to wake."""
    exchange = Exchange(["AAPL"])
    server = OrderEntryServer(exchange, session=SESSION, username=USER, password=PASSWORD)
    with serve_in_thread(server):
        client = RawClient(server)
        client.send(soup(b"L", login_request()) + soup(b"U", enter(1, "B", 100, tif="0")))
        assert client.packet()[0] == b"A"
        assert [m[0:1] for m in client.data(2)] == [b"S", b"A"]
    assert server.counters["closed"] == 1
    client.close()
    exchange.apply_market(itch.encode(b"A", stock_locate=1, order_ref=1, side=b"S", shares=100,
                                      stock=b"AAPL", price=1_000_000))
    assert exchange.stream(SESSION)[-1][0:1] == b"E"
