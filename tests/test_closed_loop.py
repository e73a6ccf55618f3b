"""The closed loop end to end: the simulated exchange's feed into the Verilated TickToTrade, its
order frames over the host's SoupBinTCP session to the exchange, the OUCH replies into the
host's positions. The oracles are the exchange's own execution log (`Exchange.events`), scapy's
view of the order frames, and P&L recomputed here from the exchange's executions as cash plus
position at the mark (no lot matching)."""

import collections
from decimal import Decimal

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from tickwire.sim import closed_loop, itch
from tickwire.sim.closed_loop import LoopError, default_configuration, run_closed_loop
from tickwire.sim.exchange import EventKind
from tickwire.sim.scenario import order_flow
from tickwire.sim.t2t_run import TEST_PARAMETERS, VerilatedTop

_top = {}
LOGIN_BYTES = 2 + 1 + 46            # SoupBinTCP login request
HEARTBEAT_BYTES = 3
ORDER_BYTES = 50                    # SoupBinTCP U + OUCH Enter Order
ISN = 1_000_000                     # OrderSession's default


def top():
    if "top" not in _top:
        _top["top"] = VerilatedTop(**TEST_PARAMETERS)
    return _top["top"]


@pytest.fixture(scope="module")
def loop():
    return run_closed_loop(6000, seed=2026, top=top())


KINDS = {EventKind.ACCEPTED: "A", EventKind.EXECUTED: "E", EventKind.CANCELED: "C",
         EventKind.REJECTED: "J"}


def test_the_loop_trades(loop):
    summary = loop.summary()
    assert summary["orders"] > 10 and summary["fills"] > 10
    assert summary["orders"] == loop.server_counters["ouch_messages"] == loop.session["forwarded"]
    assert summary["accepted"] + summary["rejected"] == summary["orders"]
    assert summary["risk_rejects"].get("position", 0) > 0       # the default limit binds
    assert summary["acknowledged"] == {"ok": True, "problems": []}
    assert summary["hardware_latency_agrees"]
    assert summary["gap_messages"] == 0 and loop.session["ended"]
    # Orders reach the exchange after their trigger, within its packet (see below).
    assert 0 <= min(loop.lags) and summary["exchange_lag_messages"]["max"] < 60
    # Our executions are in the feed the gateware read: an Order Executed of the exchange's
    # own reference range (2**35 up) or of the market order we took.
    matches = {e.match_number for e in loop.events if e.kind is EventKind.EXECUTED}
    published = {itch.decode(m)["match_number"] for m in loop.feed if m[:1] == b"E"}
    assert matches <= published


def test_the_host_received_what_the_exchange_did(loop):
    replies = [r for r in loop.replies if r["type"] != "S"]
    assert len(replies) == len(loop.events)
    for reply, event in zip(replies, loop.events, strict=True):
        assert (reply["type"], reply["user_ref_num"]) == (KINDS[event.kind], event.user_ref_num)
        if event.kind is EventKind.ACCEPTED:
            assert (reply["clordid"], reply["symbol"], reply["side"], reply["quantity"],
                    reply["price"], reply["order_reference_number"]) == (
                event.cl_ord_id, event.symbol, event.side, event.order_quantity, event.price,
                event.order_id)
        elif event.kind is EventKind.EXECUTED:
            assert (reply["quantity"], reply["price"], reply["match_number"]) == (
                event.last_quantity, event.last_price, event.match_number)
        elif event.kind is EventKind.CANCELED:
            assert reply["reason"] == event.reason
        else:
            assert f"0x{reply['reason']:04X}" == event.reason
    assert [r["type"] for r in loop.replies if r["type"] == "S"] == ["S", "S"]   # start, end


def test_pnl_is_cash_plus_position_at_the_mark(loop):
    cash, position = {}, {}
    for event in loop.events:
        if event.kind is EventKind.EXECUTED:
            signed = event.last_quantity if event.side == "B" else -event.last_quantity
            position[event.symbol] = position.get(event.symbol, 0) + signed
            cash[event.symbol] = cash.get(event.symbol, 0) - signed * event.last_price
    assert cash
    total = Decimal(0)
    for symbol in cash:
        expected = (cash[symbol] + position[symbol] * loop.marks[symbol]) / 10_000
        assert loop.positions.pnl(symbol).total == expected
        assert loop.positions.position(symbol) == position[symbol]
        total += expected
    assert loop.positions.pnl().total == total
    assert Decimal(loop.summary()["pnl"]["total"]) == total


def test_the_drop_copy_reconciles_with_the_log_and_ouch(loop):
    """The FIX drop copy (QuickFIX both ends) brought one report per exchange event, and the
    host's reconciliation of the order log, the OUCH replies and the drop copy is clean; the
    P&L kept from the drop copy alone is the one kept from OUCH."""
    assert sorted(r.exec_id for r in loop.reports) == sorted(e.event_id for e in loop.events)
    recon = loop.summary()["reconciliation"]
    assert recon["ok"] and recon["matched"] == recon["orders"] == len(loop.orders())
    assert recon["drop_copy_reports"] == len(loop.events)
    assert Decimal(recon["drop_copy_pnl"]) == loop.positions.pnl().total


def test_every_logged_order_is_an_exchange_order(loop):
    answers = {e.user_ref_num: e for e in loop.events
               if e.kind in (EventKind.ACCEPTED, EventKind.REJECTED)}
    sent = [e for e in loop.log if e["sent"]]
    assert sorted(answers) == [e["user_ref_num"] for e in sent]
    for entry in sent:
        event = answers[entry["user_ref_num"]]
        assert (event.cl_ord_id, event.order_quantity, event.price, event.symbol, event.side) == (
            f"{loop.clordid_prefix}{entry['user_ref_num']:08X}", entry["quantity"],
            entry["price"], loop.symbols[entry["slot"]], "BS"[entry["side"]])


def stream_heartbeats(loop):
    """Checks the order frames with scapy as one TCP stream from the host's login on; returns
    how many heartbeats (3 bytes each) the host sent between the first and last order."""
    sent = [e for e in loop.log if e["sent"]]
    assert len(loop.order_frames) == len(sent)
    expected = (ISN + 1 + LOGIN_BYTES) % 2**32
    heartbeats = acks = 0
    for entry, frame in zip(sent, loop.order_frames, strict=True):
        packet = Ether(frame.data)
        rebuilt = Ether(frame.data)
        del rebuilt[IP].chksum, rebuilt[TCP].chksum
        rebuilt = Ether(bytes(rebuilt))
        assert (packet[IP].chksum, packet[TCP].chksum) == (rebuilt[IP].chksum,
                                                           rebuilt[TCP].chksum)
        assert packet[IP].src == packet[IP].dst == "127.0.0.1"
        assert packet[TCP].flags == "PA" and packet[TCP].window == 65_535
        payload = bytes(packet[TCP].payload)
        assert len(payload) == ORDER_BYTES and payload[2:4] == b"UO"
        assert int.from_bytes(payload[4:8], "big") == entry["user_ref_num"]
        # Between two orders only the host's heartbeats (3 bytes each) may take sequence space.
        skipped = (packet[TCP].seq - expected) % 2**32
        assert skipped % HEARTBEAT_BYTES == 0 and packet[TCP].seq == entry["tcp_sequence"]
        heartbeats += skipped // HEARTBEAT_BYTES
        assert packet[TCP].ack >= acks           # acknowledges more as replies arrive
        acks = packet[TCP].ack
        expected = (packet[TCP].seq + len(payload)) % 2**32
    assert [e["user_ref_num"] for e in sent] == list(range(1, len(sent) + 1))
    assert len({(Ether(f.data)[TCP].sport, Ether(f.data)[TCP].dport)
                for f in loop.order_frames}) == 1
    return heartbeats


def test_order_frames_are_one_tcp_stream_by_scapy(loop):
    # (Heartbeats go by wall time: a loaded machine may send some; they are checked below.)
    assert stream_heartbeats(loop) <= loop.session["heartbeats_sent"]


def test_heartbeats_between_orders_keep_the_stream_continuous():
    """A heartbeat after every round: the host holds the gateware, sends R, loads the new
    sequence number; the frames skip exactly those bytes and the exchange counts them."""
    loop = run_closed_loop(2000, seed=7, top=top(), heartbeat_interval=0.0, drop_copy=False)
    between = stream_heartbeats(loop)
    assert 0 < between <= loop.session["heartbeats_sent"]
    assert loop.server_counters["heartbeats_received"] >= between
    assert loop.summary()["acknowledged"]["ok"]


def test_an_exchange_halt_shows_as_exchange_rejects():
    """The exchange halts AAPL after its directory; the gateware only reports the halt to the
    host (a notice) and keeps trading it, and the exchange refuses those orders (reason
    0x0007, halted)."""
    flow = order_flow(3000, seed=2026)
    at = next(i for i, m in enumerate(flow) if m[:1] == b"H" and m[11:19] == b"AAPL    ") + 1
    fields = {k: v for k, v in itch.decode(flow[at - 1]).items() if k != "message_type"}
    flow.insert(at, itch.encode(b"H", **fields | {"trading_state": b"H"}))
    config = default_configuration(flow, band=0.01)
    result = run_closed_loop(flow=flow, top=top(), configs=[("halt.toml", config)],
                             drop_copy=False)
    summary = result.summary()
    aapl = [e for e in result.log if e["sent"] and result.symbols[e["slot"]] == "AAPL"]
    assert aapl and summary["exchange_rejects"] == {"0x0007": len(aapl)}
    assert summary["rejected"] == len(aapl) and summary["acknowledged"]["ok"]
    assert all(r["symbol"] != "AAPL" for r in summary["pnl"]["by_symbol"])


def test_a_host_send_the_gateware_was_not_told_of_is_caught(monkeypatch):
    """The host sends a heartbeat but does not load the new sequence number: the next order
    frame is not the one the host's TCP state calls for, and the loop stops on it."""
    async def careless(self):
        self.session.heartbeat()

    monkeypatch.setattr(closed_loop._Host, "keep_session", careless)
    with pytest.raises(LoopError, match="differs from the encoder model's"):
        run_closed_loop(3000, seed=2026, top=top(), drop_copy=False)


def itch_counts(counters):
    return {name.removeprefix("feed.counters.itch."): value for name, value in counters.items()
            if name.startswith("feed.counters.itch.") and value}


def test_loss_on_both_lines_is_recovered_by_re_request():
    """A fifth of the packets lost on each line: every message lost on both is re-requested
    from the exchange's re-request server and delivered once. Oracles: the exchange's feed
    (its length, its message types against the gateware's ITCH counters), the re-request
    server's own count, and the exchange's books against the gateware's snapshots."""
    from tickwire.hdl.feed.itch import counter_name

    loop = run_closed_loop(3000, seed=2026, top=top(), loss=(0.2, 0.2))
    summary, recovery = loop.summary(), loop.recovery
    assert recovery["gap_notices"] > 0 and recovery["held_packets"] > 0
    assert recovery["messages"] == recovery["resent_by_exchange"] > 0
    assert summary["gap_messages"] == 0
    assert loop.counters["feed.counters.mold.messages"] == len(loop.feed)
    kinds = collections.Counter(counter_name(m[:1]) for m in loop.feed)
    assert itch_counts(loop.counters) == dict(kinds)
    assert summary["books_match_exchange"] is True, summary["book_mismatches"]
    assert summary["acknowledged"]["ok"] and summary["reconciliation"]["ok"]
    assert summary["hardware_latency_agrees"]


def test_without_recovery_a_loss_on_both_lines_is_lost():
    """The same run with the recovery bit clear: the feed handler skips each gap (its GAP
    notice), so messages are missing and the books part from the exchange's."""
    loop = run_closed_loop(3000, seed=2026, top=top(), loss=(0.2, 0.2), recover=False,
                           drop_copy=False)
    summary = loop.summary()
    assert summary["gap_messages"] > 0 and summary["recovery"]["rerequests"] == 0
    assert summary["books_match_exchange"] is False


def _book_from_feed(feed):
    """Resting orders by reference, in time priority, from the ITCH messages alone."""
    book = {}
    for message in feed:
        kind = message[:1]
        if kind not in b"AFECXDU":
            continue
        fields = itch.decode(message)
        if kind in b"AF":
            book[fields["order_ref"]] = [fields["stock"].decode().strip(), fields["side"],
                                         fields["price"], fields["shares"]]
        elif kind == b"U":
            symbol, side, _, _ = book.pop(fields["original_ref"])
            book[fields["new_ref"]] = [symbol, side, fields["price"], fields["shares"]]
        elif kind == b"D":
            book.pop(fields["order_ref"], None)
        else:
            ref = fields["order_ref"]
            book[ref][3] -= fields["cancelled_shares" if kind == b"X" else "executed_shares"]
            if book[ref][3] <= 0:
                del book[ref]
    return book


def _take(book, symbol, side, price, quantity):
    """What an IOC takes from `book` in price-time priority: [(price, shares)] per order."""
    wanted = b"S" if side == 0 else b"B"
    crossing = [(ref, o) for ref, o in book.items() if o[0] == symbol and o[1] == wanted
                and (o[2] <= price if side == 0 else o[2] >= price)]
    crossing.sort(key=lambda item: item[1][2] if side == 0 else -item[1][2])   # stable: time
    fills = []
    for ref, order in crossing:
        if not quantity:
            break
        shares = min(quantity, order[3])
        fills.append((order[2], shares))
        quantity -= shares
        order[3] -= shares
        if not order[3]:
            del book[ref]
    return fills


def test_each_ioc_meets_the_book_of_its_triggering_packet(loop):
    """The exchange takes each order after exactly the packets the device had received when
    the order left MAC tx: the one holding its trigger. What it executed is what an
    independent book, built from the ITCH feed up to that packet, offered the IOC."""
    ends = {}
    for frame in loop.feed_frames:
        first = int.from_bytes(frame.data[52:60], "big")
        count = int.from_bytes(frame.data[60:62], "big")
        for sequence in range(first, first + count if count != 0xFFFF else first):
            ends[sequence] = first + count - 1
    executions = {}
    for event in loop.events:
        if event.kind is EventKind.EXECUTED:
            executions.setdefault(event.user_ref_num, []).append((event.last_price,
                                                                   event.last_quantity))
    batches = {}
    for entry, lag in zip(loop.orders(), loop.lags, strict=True):
        published = entry["sequence"] + lag
        assert published == ends[entry["sequence"]]         # the trigger's packet, no later
        batches.setdefault(published, []).append(entry)
    filled = 0
    for published, entries in batches.items():
        book = _book_from_feed(loop.feed[:published])
        for entry in entries:
            fills = _take(book, loop.symbols[entry["slot"]], entry["side"], entry["price"],
                          entry["quantity"])
            assert executions.get(entry["user_ref_num"], []) == fills, entry
            filled += bool(fills)
    assert filled > 10
