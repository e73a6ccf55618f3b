"""Unit tier: the order book in Amaranth's simulator, against `BookModel` and `FullBook`."""

import pytest

from tickwire.hdl.book.book import BOOK_LATENCY_CYCLES, OrderBook
from tickwire.hdl.book.records import BookParameters
from tickwire.sim.book_flow import random_events
from tickwire.sim.book_model import (
    ADD,
    CANCEL,
    DELETE,
    EXECUTE,
    EXECUTE_AT_PRICE,
    REPLACE,
    BookModel,
    FullBook,
    event,
)
from tickwire.sim.book_run import run_book_sim

SMALL = BookParameters(symbols=4, locates=16, depth=4, visible=3, orders=16, ways=2,
                       ref_bits=10, fifo_depth=8)
LOC = 5


def run_both(events, *, subs=((LOC, 1),), gap=2, params=SMALL, snaps=(), tail=()):
    script = [("sub", loc, slot, True) for loc, slot in subs]
    script += [("event", e, gap) for e in events] + [("idle", 8)]
    script += [("snap", loc) for loc in snaps] + list(tail)
    run = run_book_sim(script, OrderBook(params))
    model = BookModel(params)
    for loc, slot in subs:
        model.subscribe(loc, slot)
    model.run(events)
    assert run.updates == model.updates
    assert run.counters == dict(model.counters)
    assert run.alarms == model.alarms
    assert run.snapshots[:len(snaps)] == [model.snapshot(loc) for loc in snaps]
    return run, model


def add(ref, price, shares=100, side=0, locate=LOC, **kw):
    return event(ADD, locate=locate, order_ref=ref, side=side, shares=shares, price=price, **kw)


def test_adds_executions_cancels_deletes_and_replace():
    events = [add(1, 1000), add(2, 1010, side=1, shares=50), add(3, 1005, shares=70),
              event(EXECUTE, locate=LOC, order_ref=3, shares=20),
              event(EXECUTE_AT_PRICE, locate=LOC, order_ref=2, shares=5, price=999),
              event(CANCEL, locate=LOC, order_ref=1, shares=40),
              event(REPLACE, locate=LOC, order_ref=1, new_ref=9, shares=10, price=1007),
              event(DELETE, locate=LOC, order_ref=3)]
    run, model = run_both(events, snaps=[LOC])
    assert run.updates[-1]["bid_price"] == 1007 and run.updates[-1]["ask_shares"] == 45
    assert run.snapshots[0]["bid"] == [(1007, 10, 1), (0, 0, 0), (0, 0, 0)]
    assert sum(run.counters[k] for k in run.counters if k not in ("events", "updates")) == 0


def test_latency_is_four_cycles_and_two_cycles_per_event():
    events = [add(k, 1000 + k) for k in range(1, 6)]
    run, _ = run_both(events, gap=1)
    first = 1 + 6            # the subscription and its idle cycles come first
    assert run.stamps[0] - first == BOOK_LATENCY_CYCLES
    assert [b - a for a, b in zip(run.stamps, run.stamps[1:], strict=False)] == [2, 2, 2, 2]


def test_a_replace_takes_one_more_cycle():
    events = [add(1, 1000), event(REPLACE, locate=LOC, order_ref=1, new_ref=2, shares=5,
                                  price=990)]
    run, _ = run_both(events, gap=3)
    assert run.stamps[1] - run.stamps[0] == 3 + 1


def test_emptying_the_top_brings_the_next_level_into_view():
    events = [add(k, 1000 - 10 * k) for k in range(1, 5)]       # four bids, depth 4
    events += [event(DELETE, locate=LOC, order_ref=k) for k in range(1, 4)]
    run, model = run_both(events)
    assert [u["bid_price"] for u in run.updates][-3:] == [980, 970, 960]
    assert run.updates[-1]["levels"][0] == (960, 100, 1)


def test_more_levels_than_the_build_holds_are_hidden_counted_and_flagged():
    events = [add(k, 1000 - 10 * k) for k in range(1, 8)]       # 7 bid levels, 4 stored
    events += [add(20, 1005)]                                    # pushes 960 into hiding
    events += [event(DELETE, locate=LOC, order_ref=k) for k in (20, 1, 2)]
    run, model = run_both(events)
    assert run.counters["level_overflow"] == 4 and run.alarms["capacity"] == 1
    # After three deletes only 970 and 980... are stored; hidden orders -> not complete.
    assert run.updates[-1]["complete"] & 1 == 0
    full = FullBook()
    for e in events:
        full.apply(e)
    shown = model.visible(LOC, 0)
    assert shown == full.top(LOC, 0)[:len(shown)]   # what is shown is exact
    for k in range(3, 8):                            # the hidden zone drains: complete again
        events.append(event(DELETE, locate=LOC, order_ref=k))
    run, model = run_both(events)
    assert run.updates[-1]["complete"] == 0b11


BAD_INPUT = {
    "unknown reference": ([event(EXECUTE, locate=LOC, order_ref=77, shares=5)], "unknown_ref",
                          "integrity"),
    "delete unknown": ([event(DELETE, locate=LOC, order_ref=77)], "unknown_ref", "integrity"),
    "over-execution": ([event(EXECUTE, locate=LOC, order_ref=1, shares=101)], "over_execution",
                       "integrity"),
    "replace of a missing order": ([event(REPLACE, locate=LOC, order_ref=77, new_ref=78,
                                          shares=5, price=1)], "unknown_ref", "integrity"),
    "duplicate add": ([add(1, 1200)], "duplicate_ref", "integrity"),
    "zero shares": ([add(9, 1200, shares=0)], "bad_shares", "integrity"),
    "reference out of range": ([add(1 << 10, 1200)], "ref_out_of_range", "capacity"),
    "replace to an out-of-range reference": ([event(REPLACE, locate=LOC, order_ref=1,
                                                    new_ref=1 << 12, shares=5, price=1)],
                                             "ref_out_of_range", "capacity"),
    "full set": ([add(r, 1200) for r in (8, 19)], "table_full", "capacity"),  # set of 1
    "level saturated": ([add(9, 1000, shares=(1 << 32) - 100)], "level_saturated",
                        "capacity"),
    "locate mismatch": ([event(DELETE, locate=6, order_ref=1)], "locate_mismatch",
                        "integrity"),
    "unsubscribed locate": ([add(9, 1000, locate=7)], "unsubscribed", None),
    "locate beyond the map": ([add(9, 1000, locate=300)], "unsubscribed", None),
}


@pytest.mark.parametrize("name", BAD_INPUT)
def test_bad_input_is_counted_alarmed_and_the_book_stays_exact(name):
    bad, counter, alarm = BAD_INPUT[name]
    before = [add(1, 1000), add(2, 1010, side=1)]
    after = [add(11, 1001), event(EXECUTE, locate=LOC, order_ref=2, shares=30),
             add(13, 1009, side=1)]
    events = before + bad + after
    run, model = run_both(events, subs=((LOC, 1), (6, 2)), snaps=[LOC])
    assert run.counters[counter] >= 1
    if alarm:
        assert run.alarms[alarm] == 1
    # The rest of the book is exact: it equals the unlimited book given the same input,
    # where what the build refused for capacity is what the unlimited book does not get.
    refused = {"reference out of range": [], "full set": [add(8, 1200)],
               "level saturated": [], "locate mismatch": [],
               "replace to an out-of-range reference": [event(DELETE, locate=LOC,
                                                              order_ref=1)]}
    full = FullBook()
    for e in before + refused.get(name, bad) + after:
        full.apply(e)
    snap = run.snapshots[0]
    assert snap["complete"] == 0b11
    assert snap["bid"] == (full.top(LOC, 0) + [(0, 0, 0)] * 3)[:3]
    assert snap["ask"] == (full.top(LOC, 1) + [(0, 0, 0)] * 3)[:3]


def test_fifo_overflow_is_counted_and_alarmed():
    events = [add(k, 1000 + k % 3) for k in range(1, 40)]
    script = [("sub", LOC, 1, True)] + [("event", e, 1) for e in events] + [("idle", 100)]
    run = run_book_sim(script, OrderBook(SMALL))
    assert run.counters["fifo_overflow"] > 0 and run.alarms["overflow"] == 1
    assert run.counters["events"] + run.counters["fifo_overflow"] == len(events)


def test_unsubscribe_and_resubscribe_clear_the_book():
    events = [add(1, 1000), add(2, 1001)]
    tail = [("sub", LOC, 1, False), ("snap", LOC), ("sub", LOC, 2, True), ("snap", LOC)]
    run, _ = run_both(events, tail=tail)
    assert run.snapshots[0]["subscribed"] == 0 and run.snapshots[1]["subscribed"] == 1
    assert run.snapshots[1]["bid"][0] == (0, 0, 0)


def test_random_stream_matches_the_model_and_the_full_book():
    params = BookParameters(symbols=8, locates=16, depth=6, visible=4, orders=256, ways=4,
                            ref_bits=16, fifo_depth=16)
    events = random_events(400, seed=5, locates=(1, 2, 3), bad=0.05, unsubscribed=(9,))
    run, model = run_both(events, subs=((1, 0), (2, 5), (3, 7)), gap=3, params=params,
                          snaps=[1, 2, 3, 9])
    assert len(run.updates) > 200
