"""The FIX 4.4 drop copy, both ends.

The exchange's acceptor (sim/dropcopy.py) is read by simplefix, a parser we did not write,
speaking FIX by hand over a socket, and checked field by field against PROTOCOLS.md's table.
The host's initiator (host/dropcopy.py) runs against that acceptor (QuickFIX, a peer engine)
through a loopback relay that loses, repeats and cuts: every report must be stored once."""

import datetime
import re
import socket
import sqlite3
import threading
import time
from decimal import Decimal

import pytest
import simplefix
from hypothesis import given
from hypothesis import strategies as st

from tickwire.host.dropcopy import DropCopyClient, ExecutionReport, parse_price
from tickwire.host.positions import Positions
from tickwire.host.store import ExecutionStore
from tickwire.sim.dropcopy import DropCopyAcceptor, execution_report, fix_price
from tickwire.sim.exchange.events import EventKind, OrderEvent

DATE = datetime.date(2026, 1, 2)
SOH = b"\x01"


def lifecycle(urn, *, side="B", qty=100, price=1_234_500, fills=(), end=None, symbol="AAPL",
              session="S1", time_ns=34_200_000_000_000):
    """The events of one order: accepted, `fills` [(qty, price)], then `end` (canceled) or
    None; ``side="J"`` for an order rejected outright."""
    common = dict(session=session, user_ref_num=urn, cl_ord_id=f"ALPHA {urn:08X}",
                  symbol=symbol, order_quantity=qty, price=price, time_in_force="0")
    if side == "J":
        return [OrderEvent(EventKind.REJECTED, time_ns, order_id=0, side="B", reason="3",
                           **common)]
    order_id = 1000 + urn
    events = [OrderEvent(EventKind.ACCEPTED, time_ns, order_id=order_id, side=side,
                         leaves_quantity=qty, **common)]
    done = 0
    for k, (q, p) in enumerate(fills):
        done += q
        events.append(OrderEvent(EventKind.EXECUTED, time_ns + k + 1, order_id=order_id,
                                 side=side, last_quantity=q, last_price=p,
                                 match_number=urn * 100 + k, cumulative_quantity=done,
                                 leaves_quantity=qty - done, **common))
    if end:
        events.append(OrderEvent(EventKind.CANCELED, time_ns + 123_456_789, order_id=order_id,
                                 side=side, cumulative_quantity=done, leaves_quantity=0,
                                 reason="I", **common))
    return events


def day():
    return (lifecycle(1, fills=[(40, 1_234_400), (60, 1_234_500)])
            + lifecycle(2, side="S", qty=50, price=1_240_000, fills=[(20, 1_240_000)], end=True)
            + lifecycle(3, side="J")
            + lifecycle(4, side="T", qty=30, price=999_900, symbol="MSFT", end=True)
            + lifecycle(5, qty=10, price=1_000_001, symbol="MSFT", fills=[(10, 1_000_001)]))


def wait_until(predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)


# The acceptor read by simplefix ----------------------------------------------------------------

def _fix(pairs):
    m = simplefix.FixMessage()
    for tag, value in pairs:
        m.append_pair(tag, value, header=tag in (8, 35, 34, 49, 52, 56))
    return m.encode()


class RawInitiator:
    """A FIX 4.4 initiator by hand: simplefix encodes our Logon and parses what comes back."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.parser = simplefix.FixParser()
        self.raw = []
        now = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]
        self.sock.sendall(_fix([(8, "FIX.4.4"), (35, "A"), (34, "1"), (49, "TICKWIRE"),
                                (52, now), (56, "TWEXCH"), (98, "0"), (108, "30")]))

    def receive(self):
        while True:
            message = self.parser.get_message()
            if message is not None:
                return message
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the acceptor closed the connection")
            self.raw.append(data)
            self.parser.append_buffer(data)

    def close(self):
        self.sock.close()


def checksum_ok(frame):
    body, trailer = frame.rsplit(b"10=", 1)
    return int(trailer[:3]) == sum(body) % 256


# PROTOCOLS.md: 150 ExecType (0 new, 4 canceled, 8 rejected, F trade), 54 Side (1 buy, 2
# sell, 5 sell short), 39 OrdStatus (FIX 4.4: 0 new, 1 partially filled, 2 filled, 4 canceled,
# 8 rejected).
EXEC_TYPE = {"accepted": b"0", "canceled": b"4", "rejected": b"8", "executed": b"F"}
SIDE = {"B": b"1", "S": b"2", "T": b"5"}


def expected_status(event):
    if event.kind is EventKind.EXECUTED:
        return b"2" if event.leaves_quantity == 0 else b"1"
    return {"accepted": b"0", "canceled": b"4", "rejected": b"8"}[event.kind.value]


def test_acceptor_reports_match_the_protocol_table(tmp_path):
    events = day()
    with DropCopyAcceptor(tmp_path, trade_date=DATE) as exchange:
        peer = RawInitiator(exchange.port)
        try:
            logon = peer.receive()
            assert logon.get(35) == b"A" and logon.get(49) == b"TWEXCH"
            exchange.wait_logged_on()
            for event in events:
                exchange.send(event)
            reports = [peer.receive() for _ in events]
        finally:
            peer.close()
    frames = re.findall(rb"8=FIX\.4\.4\x01.*?\x0110=\d{3}\x01", b"".join(peer.raw), re.S)
    assert len(frames) == len(events) + 1 and all(checksum_ok(f) for f in frames)
    averages = {}
    for seq, (event, m) in enumerate(zip(events, reports, strict=True), start=2):
        assert (m.get(8), m.get(35), m.get(34)) == (b"FIX.4.4", b"8", str(seq).encode())
        assert m.get(11).decode() == event.cl_ord_id
        assert m.get(37) == (str(event.order_id).encode() if event.order_id else b"NONE")
        assert m.get(17).decode() == event.event_id
        assert m.get(150) == EXEC_TYPE[event.kind.value]
        assert m.get(39) == expected_status(event)
        assert m.get(55).decode() == event.symbol
        assert m.get(54) == SIDE[event.side]
        assert int(m.get(38)) == event.order_quantity
        assert Decimal(m.get(44).decode()) == Decimal(event.price) / 10000
        assert int(m.get(32)) == event.last_quantity
        assert Decimal(m.get(31).decode()) == Decimal(event.last_price) / 10000
        assert int(m.get(14)) == event.cumulative_quantity
        assert int(m.get(151)) == event.leaves_quantity
        if event.kind is EventKind.EXECUTED:
            averages.setdefault(event.cl_ord_id, []).append((event.last_quantity,
                                                             event.last_price))
            assert m.get(527) == str(event.match_number).encode()
        fills = averages.get(event.cl_ord_id, [])
        if fills:
            value = sum(q * Decimal(p) / 10000 for q, p in fills)
            assert abs(Decimal(m.get(6).decode()) - value / sum(q for q, _ in fills)) < \
                Decimal("0.000001")
        else:
            assert Decimal(m.get(6).decode()) == 0
        assert m.get(60) == (b"20260102-09:30:00.123456" if event.kind is EventKind.CANCELED
                             else b"20260102-09:30:00.000000")


def test_execution_report_refuses_what_it_cannot_say():
    event = lifecycle(1)[0]
    with pytest.raises(ValueError, match="side 'X'"):
        execution_report(OrderEvent(**{**event.__dict__, "side": "X"}), avg_px=0, date=DATE)
    with pytest.raises(TypeError, match="OrderEvent"):
        execution_report({"kind": "accepted"}, avg_px=0, date=DATE)


def test_prices_parse_exactly_or_not_at_all():
    assert parse_price("123.45") == 1_234_500 and parse_price("0.0001") == 1
    for bad in ("1.00001", "abc", "-1"):
        with pytest.raises(ValueError, match="tag 44"):
            parse_price(bad)


@given(st.integers(0, 2**32 - 1))
def test_prices_survive_the_round_trip(price):
    text = fix_price(price)
    assert Decimal(text) == Decimal(price) / 10000 and parse_price(text) == price


def test_an_acceptor_that_cannot_listen_says_so(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        acceptor = DropCopyAcceptor(tmp_path, port=taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="did not start"):
            acceptor.start()


# The initiator against the acceptor, through a relay that misbehaves -------------------------

FRAME = re.compile(rb"8=FIX.*?\x0110=\d{3}\x01", re.S)


class Relay:
    """A loopback TCP relay host <-> exchange. Each exchange -> host FIX message passes through
    ``self.rewrite(frame) -> [frames]`` (drop it: [], repeat it: [it, other]); ``cut()``
    closes the current connection (the host reconnects through the relay)."""

    def __init__(self, exchange_port):
        self.exchange_port = exchange_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.rewrite = lambda frame: [frame]
        self.sockets = []
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                host, _ = self.server.accept()
            except OSError:
                return
            exchange = socket.create_connection(("127.0.0.1", self.exchange_port))
            self.sockets += [host, exchange]
            self.connections += 1
            threading.Thread(target=self._pump, args=(host, exchange, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(exchange, host, True), daemon=True).start()

    def _pump(self, source, sink, framed):
        buffer = b""
        try:
            while data := source.recv(65536):
                if not framed:
                    sink.sendall(data)
                    continue
                buffer += data
                while match := FRAME.search(buffer):
                    buffer = buffer[match.end():]
                    for frame in self.rewrite(match.group()):
                        sink.sendall(frame)
        except OSError:
            pass
        for s in (source, sink):
            s.close()

    def cut(self):
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.sockets = []

    def close(self):
        self.server.close()
        self.cut()


@pytest.fixture
def exchange(tmp_path):
    with DropCopyAcceptor(tmp_path / "exchange", trade_date=DATE) as acceptor:
        yield acceptor


@pytest.fixture
def relay(exchange):
    relay = Relay(exchange.port)
    yield relay
    relay.close()


def client(tmp_path, store, port, received):
    return DropCopyClient(tmp_path / "host", store, port=port, heartbeat=1, reconnect=1,
                          on_report=received.append)


def check_stored_once(store, events, received):
    ids = [r.exec_id for _, r in store.reports()]
    assert sorted(ids) == sorted(e.event_id for e in events)
    assert [r.exec_id for r in received] == ids


def expected_positions(events):
    out = {}
    for e in events:
        if e.kind is EventKind.EXECUTED:
            out[e.symbol] = out.get(e.symbol, 0) + (1 if e.side == "B" else -1) * e.last_quantity
    return out


def test_reports_arrive_once_with_their_fields(tmp_path, exchange):
    store, received, events = ExecutionStore(tmp_path / "x.sqlite"), [], day()
    with client(tmp_path, store, exchange.port, received) as host:
        host.wait_logged_on()
        for event in events:
            exchange.send(event)
        wait_until(lambda: len(received) == len(events), what="every report")
        time.sleep(1.2)                 # a heartbeat each way: the session stays up
        assert host.logged_on and host.stats["heartbeats_received"] >= 1
    check_stored_once(store, events, received)
    by_id = {r.exec_id: r for r in received}
    for e in events:
        r = by_id[e.event_id]
        assert (r.cl_ord_id, r.symbol, r.order_qty, r.price, r.last_qty, r.last_px,
                r.cum_qty, r.leaves_qty) == (e.cl_ord_id, e.symbol, e.order_quantity, e.price,
                                             e.last_quantity, e.last_price,
                                             e.cumulative_quantity, e.leaves_quantity)
    assert host.stats["duplicates"] == 0 and host.stats["rejects_sent"] == 0
    assert host.errors == []


def test_disconnect_mid_session_loses_nothing(tmp_path, exchange, relay):
    store, received, events = ExecutionStore(":memory:"), [], day()
    half = len(events) // 2
    with client(tmp_path, store, relay.port, received) as host:
        host.wait_logged_on()
        for event in events[:half]:
            exchange.send(event)
        wait_until(lambda: len(received) == half)
        relay.cut()
        wait_until(lambda: not exchange.logged_on, what="the exchange to see the drop")
        for event in events[half:]:
            exchange.send(event)          # stored by QuickFIX, resent after the logon
        wait_until(lambda: len(received) == len(events), what="the reports sent while down")
    assert relay.connections == 2
    check_stored_once(store, events, received)
    assert host.stats["duplicates"] == 0 and host.stats["poss_dup"] >= len(events) - half


def test_sequence_gap_is_resent_and_counted_once(tmp_path, exchange, relay):
    store, received, events = ExecutionStore(":memory:"), [], day()
    lost = events[2].event_id.encode()
    dropped = []

    def lose_once(frame):
        if b"\x0117=" + lost + SOH in frame and not dropped:
            dropped.append(frame)
            return []
        return [frame]

    relay.rewrite = lose_once
    with client(tmp_path, store, relay.port, received) as host:
        host.wait_logged_on()
        for event in events:
            exchange.send(event)
        wait_until(lambda: len(received) == len(events), what="the lost report's resend")
        assert host.stats["resend_requests_sent"] >= 1
    assert dropped and relay.connections == 1
    check_stored_once(store, events, received)
    resent = next(r for r in received if r.exec_id == lost.decode())
    assert resent.poss_dup


def test_a_silent_exchange_is_tested_then_dropped_and_the_session_recovers(tmp_path, exchange,
                                                                           relay):
    store, received, events = ExecutionStore(":memory:"), [], day()
    silent = threading.Event()
    relay.rewrite = lambda frame: [] if silent.is_set() else [frame]
    with client(tmp_path, store, relay.port, received) as host:
        host.wait_logged_on()
        exchange.send(events[0])
        wait_until(lambda: len(received) == 1)
        silent.set()                      # heartbeats and answers swallowed
        wait_until(lambda: host.stats["test_requests_sent"] >= 1, what="a TestRequest")
        wait_until(lambda: not host.logged_on, what="the host to give up on the exchange")
        silent.clear()
        for event in events[1:]:
            exchange.send(event)
        wait_until(lambda: len(received) == len(events), what="the session to recover")
    assert relay.connections >= 2
    check_stored_once(store, events, received)


def with_poss_dup(frame):
    """The same message again as a session-level replay: 43=Y and 122 OrigSendingTime."""
    message = simplefix.FixParser()
    message.append_buffer(frame)
    m = message.get_message()
    copy = simplefix.FixMessage()
    for tag, value in m:                 # tags as ints
        if tag in (9, 10):
            continue
        copy.append_pair(tag, value, header=tag in (8, 35, 34, 49, 52, 56))
        if tag == 52:
            copy.append_pair(43, "Y", header=True)
            copy.append_pair(122, value, header=True)
    return copy.encode()


def test_duplicated_reports_are_counted_once(tmp_path, exchange, relay):
    store, received, events = ExecutionStore(":memory:"), [], day()
    relay.rewrite = lambda f: [f, with_poss_dup(f)] if b"\x0135=8\x01" in f and \
        b"\x0143=Y\x01" not in f else [f]
    with client(tmp_path, store, relay.port, received) as host:
        host.wait_logged_on()
        for event in events:
            exchange.send(event)
        for event in events[:3]:
            exchange.send(event, poss_resend=True)     # the exchange repeats, 97=Y
        wait_until(lambda: host.stats["duplicates"] == 3, what="the repeats")
        time.sleep(0.2)
    check_stored_once(store, events, received)
    assert host.stats["poss_resend"] == 3 and relay.connections == 1
    assert host.stats["rejects_sent"] == 0


class FailingOnce(ExecutionStore):
    """A store whose disk fails once, on the report `exec_id`."""

    def __init__(self, exec_id):
        super().__init__(":memory:")
        self.exec_id, self.failed = exec_id, False

    def add(self, report):
        if report.exec_id == self.exec_id and not self.failed:
            self.failed = True
            raise sqlite3.OperationalError("disk I/O error")
        return super().add(report)


def test_a_report_the_store_failed_to_commit_is_asked_for_again(tmp_path, exchange):
    events, received = day(), []
    store = FailingOnce(events[3].event_id)
    with client(tmp_path, store, exchange.port, received) as host:
        host.wait_logged_on()
        for event in events:
            exchange.send(event)
        wait_until(lambda: len(received) == len(events), what="the failed report again")
        assert host.stats["store_failures"] == 1 and host.stats["resend_requests_sent"] >= 1
    assert store.failed and "disk I/O error" in host.errors[0]
    assert sorted(r.exec_id for _, r in store.reports()) == sorted(e.event_id for e in events)


def test_host_restart_resumes_from_the_store(tmp_path, exchange):
    path, events = tmp_path / "executions.sqlite", day()
    first, received = ExecutionStore(path), []
    live = Positions()
    with client(tmp_path, first, exchange.port, received) as host:
        host.wait_logged_on()
        for event in events[:6]:
            exchange.send(event)
        wait_until(lambda: len(received) == 6)
        for r in received:
            live.apply(r)
        expected_seq = host.next_target_seq
        host.stop(logout=False)           # a crash, as the exchange sees it
    first.close()
    for event in events[6:]:
        exchange.send(event)              # while the host is down

    second, again = ExecutionStore(path), []
    replayed = Positions()
    for _, r in second.reports():
        replayed.apply(r)
    assert replayed.snapshot() == live.snapshot()
    with client(tmp_path, second, exchange.port, again) as host:
        assert host.next_target_seq >= expected_seq       # from the FileStore, not 1
        host.wait_logged_on()
        wait_until(lambda: len(second) == len(events), what="the reports sent while down")
    assert [r.exec_id for r in again] == [e.event_id for e in events[6:]]
    check_stored_once(second, events, received + again)
    for r in again:
        replayed.apply(r)
    assert {s: replayed.position(s) for s in ("AAPL", "MSFT")} == \
        {s: expected_positions(events).get(s, 0) for s in ("AAPL", "MSFT")}


def test_store_keeps_one_row_per_exec_id(tmp_path):
    store = ExecutionStore(tmp_path / "s.sqlite")
    r = ExecutionReport("E1", "C1", "1", "F", "2", "AAPL", "1", 10, 5, 10, 5, 10, 0, "0.0005",
                        "", match_id="7", poss_dup=True)
    assert store.add(r) and not store.add(r)
    assert store.reports() == [(1, r)] and store.reports(after=1) == []
