"""Reconciliation (host/reconcile.py) on a session made by code we did not write here: the
encoder's reference model sends the orders (order log), the simulated exchange matches them
(OUCH replies, decoded by its codec; order events), and the drop copy reports go through the
acceptor's ExecutionReport and back through the host's parser. A clean session gives no
alarm; each fault, injected in one record, gives its alarm and no other."""

import dataclasses
import datetime
import json
import time

import pytest

from tickwire.host.dropcopy import DropCopyClient, ExecutionReport
from tickwire.host.positions import Positions
from tickwire.host.reconcile import clordid, reconcile
from tickwire.host.store import ExecutionStore
from tickwire.sim import itch
from tickwire.sim import ouch as sim_ouch
from tickwire.sim.dropcopy import DropCopyAcceptor, execution_report
from tickwire.sim.exchange import Exchange
from tickwire.sim.exchange import messages as ouch_messages

SESSION, PREFIX, SYMBOLS = "TWIRE00001", "TWIRE1", ["AAPL", "ZZZZ"]
BUY, SELL, DAY, IOC = 0, 1, 0, 1


def session():
    """(log entries, OUCH replies, drop copy reports) of a small trading session."""
    return exchange_session()[:3]


def exchange_session():
    """`session` and the exchange's order events."""
    exchange = Exchange(["AAPL"])
    for ref, side, price, shares in ((1, b"S", 1_000_000, 300), (2, b"S", 1_000_100, 400),
                                     (3, b"B", 999_900, 200)):
        exchange.apply_market(itch.encode(b"A", stock_locate=1, timestamp=34_200_000_000_000,
                                          order_ref=ref, side=side, shares=shares,
                                          stock=b"AAPL", price=price))
    exchange.open_session(SESSION)
    encoder = sim_ouch.EncoderModel(sim_ouch.Template(clordid_prefix=PREFIX.encode()), SYMBOLS)
    log = []
    for intent in (dict(slot=0, side=BUY, quantity=100, price=1_000_000, tif=IOC),   # fills
                   dict(slot=0, side=BUY, quantity=500, price=1_000_100, tif=IOC),   # 2 fills
                   dict(slot=0, side=SELL, quantity=50, price=999_900, tif=DAY),     # fills
                   dict(slot=0, side=BUY, quantity=70, price=990_000, tif=DAY),      # rests
                   dict(slot=1, side=BUY, quantity=10, price=500_000, tif=DAY)):     # rejected
        frame, entry = encoder.send(intent)
        exchange.submit(SESSION, frame[57:])
        log.append(entry)
    log.append(encoder.flush(dict(slot=0, side=BUY, quantity=5, price=1, tif=DAY)))
    exchange.end_of_day()
    replies = [ouch_messages.decode(m) for m in exchange.stream(SESSION)]
    date = datetime.date(2026, 1, 2)
    reports = [ExecutionReport.from_fix(execution_report(e, avg_px=0, date=date))
               for e in exchange.events]
    return log, replies, reports, exchange.events


def run(log, replies, reports):
    return reconcile(log, replies, reports, clordid_prefix=PREFIX,
                     symbols=dict(enumerate(SYMBOLS)))


def kinds(result):
    return sorted(a.kind for a in result.alarms)


def test_a_clean_session_matches_every_order():
    log, replies, reports = session()
    kinds_seen = {r["type"] for r in replies}
    assert {b"A", b"E", b"C", b"J"} <= kinds_seen          # the session exercises them all
    result = run(log, replies, reports)
    assert result.alarms == []
    assert (result.orders, result.flushed, result.matched) == (5, 1, 5)
    assert result.reports == len(reports) and result.ouch_messages == len(replies) - 2
    assert json.loads(result.to_json())["counts"] == {}


def test_clordid_is_the_encoders():
    assert clordid(PREFIX, 0x1A2B).encode() == sim_ouch.clordid(PREFIX.encode(), 0x1A2B)
    assert clordid("AB", 1) == "AB    00000001"
    with pytest.raises(ValueError, match="longer than 6"):
        clordid("TOOLONG", 1)


def drop(items, predicate):
    index = next(i for i, x in enumerate(items) if predicate(x))
    return items[:index] + items[index + 1:], items[index]


def test_an_order_never_acknowledged():
    log, replies, reports = session()           # order 4 lost before the exchange
    replies = [r for r in replies if r.get("user_ref_num") != 4]
    result = run(log, replies, [r for r in reports if r.cl_ord_id != clordid(PREFIX, 4)])
    assert kinds(result) == ["unacknowledged"] and result.alarms[0].user_ref_num == 4
    assert result.matched == 4


def test_a_fill_not_in_the_order_log():
    log, replies, reports = session()
    trade = next(r for r in reports if r.exec_type == "F")
    stray = dataclasses.replace(trade, exec_id="X-stray", cl_ord_id=clordid(PREFIX, 99))
    result = run(log, replies, reports + [stray])
    assert kinds(result) == ["fill_not_in_log"] and result.alarms[0].cl_ord_id.endswith("63")


@pytest.mark.parametrize("field, value", [("last_qty", 1), ("last_px", 1_000_001)])
def test_a_trade_report_contradicting_ouch(field, value):
    log, replies, reports = session()
    index = next(i for i, r in enumerate(reports) if r.exec_type == "F")
    reports[index] = dataclasses.replace(reports[index], **{field: value})
    result = run(log, replies, reports)
    assert kinds(result) == ["contradicts_ouch"]


def test_trades_without_match_numbers_pair_in_order():
    log, replies, reports = session()
    bare = [dataclasses.replace(r, match_id="") for r in reports]
    assert run(log, replies, bare).alarms == []
    two = [i for i, r in enumerate(bare) if r.exec_type == "F" and r.cl_ord_id.endswith("02")]
    bare[two[0]], bare[two[1]] = bare[two[1]], bare[two[0]]     # in the wrong order
    assert kinds(run(log, replies, bare)) == ["contradicts_ouch", "contradicts_ouch"]


def test_missing_and_unexpected_drop_copy_reports():
    log, replies, reports = session()
    fewer, trade = drop(reports, lambda r: r.exec_type == "F")
    assert kinds(run(log, replies, fewer)) == ["missing_report"]
    ghost = dataclasses.replace(trade, exec_id="X-ghost", match_id="424242")
    assert kinds(run(log, replies, reports + [ghost])) == ["report_without_ouch"]
    canceled = [i for i, r in enumerate(reports) if r.exec_type == "4"][0]
    reports[canceled] = dataclasses.replace(reports[canceled], cum_qty=1)
    assert kinds(run(log, replies, reports)) == ["contradicts_ouch"]


def test_replies_contradicting_the_log():
    log, replies, reports = session()
    accepted = next(i for i, r in enumerate(replies) if r["type"] == b"A")
    replies[accepted] = dict(replies[accepted], quantity=replies[accepted]["quantity"] + 1)
    result = run(log, replies, reports)
    # OUCH Accepted differs from the log, and so from the drop copy's new report.
    assert kinds(result) == ["contradicts_log", "contradicts_ouch"]
    log, replies, reports = session()
    new = next(i for i, r in enumerate(reports) if r.exec_type == "0")
    reports[new] = dataclasses.replace(reports[new], symbol="MSFT")
    assert kinds(run(log, replies, reports)) == ["contradicts_log"]


def test_overfill_and_a_price_through_the_limit():
    log, replies, reports = session()
    first = next(i for i, r in enumerate(replies) if r["type"] == b"E")
    e = replies[first]
    extra = dict(e, match_number=e["match_number"] + 10**6, quantity=10_000)
    result = reconcile(log, replies + [extra], reports, clordid_prefix=PREFIX)
    assert kinds(result) == ["missing_report", "overfill"]
    replies[first] = dict(e, price=e["price"] + 1)      # a buy above its limit
    assert "through_limit" in kinds(run(log, replies, reports))


def test_ouch_for_an_order_the_log_never_sent_and_bad_logs():
    log, replies, reports = session()
    stray = dict(next(r for r in replies if r["type"] == b"A"), user_ref_num=77)
    assert kinds(run(log, replies + [stray], reports)) == ["not_in_log"]
    with pytest.raises(ValueError, match="twice"):
        run(log + [log[0]], replies, reports)


def test_log_entries_as_the_device_drains_them():
    log, replies, reports = session()
    drained = [dict(sent=int(e.sent), user_ref_num=e.user_ref_num, **e.intent) for e in log]
    assert run(drained, replies, reports).alarms == []


def test_the_session_through_the_live_drop_copy(tmp_path):
    """The exchange's events over FIX (QuickFIX both ends) into the store: reconciliation is
    clean, positions are the executions' net, and the risk updates return every logged
    order's open quantity (filled + released = quantity sent, per slot and side)."""
    log, replies, _, events = exchange_session()
    store = ExecutionStore(tmp_path / "executions.sqlite")
    with DropCopyAcceptor(tmp_path / "exchange") as acceptor:
        with DropCopyClient(tmp_path / "host", store, port=acceptor.port, heartbeat=1,
                            reconnect=1) as host:
            host.wait_logged_on()
            for event in events:
                acceptor.send(event)
            deadline = time.monotonic() + 15
            while len(store) < len(events) and time.monotonic() < deadline:
                time.sleep(0.01)
    stored = [r for _, r in store.reports()]
    assert len(stored) == len(events)
    assert run(log, replies, stored).alarms == []
    positions, open_returned = Positions(), {}
    for report in stored:
        for u in positions.apply(report):
            open_returned[u.symbol, u.side] = open_returned.get((u.symbol, u.side), 0) + \
                u.filled + u.released
    sent = {}
    for e in log:
        if e.sent:
            key = SYMBOLS[e.intent["slot"]], e.intent["side"]
            sent[key] = sent.get(key, 0) + e.intent["quantity"]
    assert open_returned == sent
    net = sum((-1 if r["user_ref_num"] == 3 else 1) * r["quantity"]
              for r in replies if r["type"] == b"E")
    assert positions.position("AAPL") == net == 100 + 500 - 50
