"""Property tier: random event streams through the Verilated order book.

After every event the BookUpdate stream, and at the end the counters, alarms and a snapshot
of every locate, must equal `BookModel`'s; and the model's visible levels must equal the
unlimited `FullBook`'s top levels (exactly when the side is complete, as a prefix when some
levels are hidden) for as long as nothing was refused for capacity."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwire.hdl.book.records import BookParameters
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
from tickwire.sim.book_run import VerilatedBook

PROP = BookParameters(symbols=8, locates=32, depth=4, visible=3, orders=128, ways=4,
                      ref_bits=12, fifo_depth=16)
SUBSCRIBED = {1: 3, 2: 0, 3: 7, 4: 5, 5: 1}     # locate -> slot
LOCATES = [1, 2, 3, 4, 5, 6, 40]                 # 6 is not subscribed, 40 is beyond the map
CAPACITY = ("table_full", "ref_out_of_range", "level_saturated")


@pytest.fixture(scope="module")
def book():
    book = VerilatedBook(PROP)
    return book


def fresh(book):
    """A powered-on book with the subscriptions made."""
    book.power_on()
    for locate, slot in SUBSCRIBED.items():
        book.subscribe(locate, slot)
    model = BookModel(PROP)
    for locate, slot in SUBSCRIBED.items():
        model.subscribe(locate, slot)
    return model, book.counters()


@st.composite
def streams(draw):
    """Intents interpreted against the live book, so that most events make sense and the
    rest are bad on purpose."""
    full, events, next_ref = FullBook(), [], 1
    dead = []
    for _ in range(draw(st.integers(1, 120))):
        op = draw(st.sampled_from(["add"] * 5 + ["exec", "cancel", "delete", "replace",
                                                  "clear_top", "bad"]))
        live = sorted(full.orders)
        locate = draw(st.sampled_from(LOCATES[:5] * 4 + LOCATES[5:]))
        if op == "add" or not live:
            side = draw(st.integers(0, 1))
            price = 1000 + 10 * draw(st.integers(-6, 6))
            shares = draw(st.sampled_from([1, 100, 250, 999, (1 << 32) - 1]))
            if dead and draw(st.integers(0, 9)) == 0:
                ref = dead.pop()                                  # reused after delete
            else:
                ref = next_ref
                next_ref += draw(st.sampled_from([1, 1, 1, 2, 32, 300]))
            new = [event(ADD, locate=locate, order_ref=ref, side=side, shares=shares,
                         price=price)]
        elif op == "clear_top":
            located = [(r, o) for r, o in full.orders.items() if o[0] in SUBSCRIBED]
            if not located:
                continue
            loc, side = located[0][1][0], located[0][1][1]
            top = full.top(loc, side, 1)[0][0]
            new = [event(DELETE, locate=loc, order_ref=r) for r, o in full.orders.items()
                   if o[0] == loc and o[1] == side and o[2] == top]
        elif op == "bad":
            ref = draw(st.sampled_from([next_ref + 1000, 4095, 4096, 1 << 40]))
            kind = draw(st.sampled_from([EXECUTE, DELETE, REPLACE, CANCEL]))
            new = [event(kind, locate=locate, order_ref=ref, new_ref=next_ref, shares=5,
                         price=990)]
        else:
            ref = draw(st.sampled_from(live))
            loc, side, price, remaining = full.orders[ref]
            if op in ("exec", "cancel"):
                kind = EXECUTE if op == "cancel" else draw(st.sampled_from(
                    [EXECUTE, EXECUTE_AT_PRICE]))
                kind = CANCEL if op == "cancel" else kind
                shares = draw(st.sampled_from([1, remaining, min(remaining + 1, (1 << 32) - 1),
                                               max(1, remaining // 2)]))
                new = [event(kind, locate=loc, order_ref=ref, shares=shares, price=price)]
            elif op == "delete":
                new = [event(DELETE, locate=loc, order_ref=ref)]
            else:
                across = 1000 + 10 * draw(st.integers(-6, 6))     # may cross the spread
                new_ref = draw(st.sampled_from([next_ref, next_ref, ref, 4096]))
                next_ref += 1
                new = [event(REPLACE, locate=loc, order_ref=ref, new_ref=new_ref,
                             shares=draw(st.sampled_from([0, 50, 300])), price=across)]
        for e in new:
            if e["kind"] in (DELETE, EXECUTE, CANCEL) and e["order_ref"] in full.orders:
                dead.append(e["order_ref"])
            full.apply(e)
            events.append(e)
    gaps, backlog = [], 0
    for _ in events:                       # bursts, bounded so that the FIFO never overflows
        gap = draw(st.sampled_from([1, 1, 2, 3, 3, 5]))
        if backlog + 3 - gap > 3 * (PROP.fifo_depth - 4):
            gap = 3
        backlog = max(0, backlog + 3 - gap)
        gaps.append(gap)
    return events, gaps


def check_model_against_full(model, events):
    full = FullBook()        # given what the book is given: subscribed locates, and events
    for e in events:         # naming orders of their own locate (others count a mismatch)
        model.apply(e)
        order = full.orders.get(e["order_ref"])
        if e["locate"] in SUBSCRIBED and (e["kind"] == ADD or order is None
                                          or order[0] == e["locate"]):
            full.apply(e)
        if not any(model.counters[c] for c in CAPACITY) and e["locate"] in SUBSCRIBED:
            for side in (0, 1):
                shown = model.visible(e["locate"], side)
                top = full.top(e["locate"], side, PROP.visible)
                assert shown == top[:len(shown)]
                if model.complete(e["locate"], side):
                    assert shown == top


@settings(max_examples=250)
@given(streams())
def test_random_streams_match_the_model(book, stream):
    events, gaps = stream
    model, before = fresh(book)
    updates, _ = book.run(events, gaps)
    check_model_against_full(model, events)
    assert updates == model.updates
    after = book.counters()
    assert {k: after[k] - before[k] for k in after} == dict(model.counters)
    assert book.alarms() == model.alarms
    for locate in sorted(set(LOCATES) | set(SUBSCRIBED)):
        assert book.snapshot(locate) == model.snapshot(locate)
