"""Pipeline hazards of the order book: events presented one per cycle (the book takes them as
fast as it can, the rest wait in its FIFO) that touch what the event ahead of them is still
changing: the same order, the same price level, the same book row (slot), the same hash set
and way of the order table. The Verilated book must stay equal to `BookModel` after every
burst: updates, counters, alarms and snapshots."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwire.hdl.book.records import BookParameters, set_index
from tickwire.sim.book_model import (
    ADD,
    CANCEL,
    DELETE,
    EXECUTE,
    EXECUTE_AT_PRICE,
    REPLACE,
    BookModel,
    event,
)
from tickwire.sim.book_run import VerilatedBook

# The property tier's build (one Verilated model for both files).
PROP = BookParameters(symbols=8, locates=32, depth=4, visible=3, orders=128, ways=4,
                      ref_bits=12, fifo_depth=16)
SUBSCRIBED = {1: 3, 2: 0, 3: 7, 4: 5, 5: 1}     # locate -> slot

BURST = 14          # events back to back: below the FIFO's depth at the slowest rate
DRAIN = 40


@pytest.fixture(scope="module")
def book():
    return VerilatedBook(PROP)


def fresh(book):
    book.power_on()
    model = BookModel(PROP)
    for locate, slot in SUBSCRIBED.items():
        book.subscribe(locate, slot)
        model.subscribe(locate, slot)
    return model, book.counters()


def colliding_refs(count, set_=0):
    """References that all hash to one set of `PROP` (so they compete for its ways)."""
    out, r = [], 1
    while len(out) < count:
        if set_index(PROP, r) == set_:
            out.append(r)
        r += 1
    return out


SAME_SET = colliding_refs(8)
FRESH_REFS = list(range(200, 4000, 37))


@st.composite
def hazard_stream(draw):
    """Bursts whose events mostly name the order, level or row the previous event changed."""
    focus = draw(st.sampled_from(["order", "level", "slot", "set", "mixed"]))
    locates = [1] if focus != "mixed" else [1, 3]
    prices = [1000] if focus == "level" else [990, 1000, 1010, 1020]
    refs = SAME_SET if focus == "set" else FRESH_REFS
    live = {}                       # ref -> (locate, side, price)
    used = set()
    events, gaps = [], []
    for _ in range(draw(st.integers(1, 4))):
        burst = draw(st.integers(1, BURST))
        for _ in range(burst):
            op = draw(st.sampled_from(["add", "add", "exec", "cancel", "delete", "replace",
                                       "stale"]))
            if focus == "order" and live and op == "add":
                op = draw(st.sampled_from(["exec", "replace", "cancel"]))
            if op == "add" or not live:
                locate = draw(st.sampled_from(locates))
                side = draw(st.integers(0, 1)) if focus != "level" else 0
                free = [r for r in refs if r not in live]
                ref = draw(st.sampled_from(free or refs))
                shares = draw(st.sampled_from([1, 100, 500, (1 << 32) - 200]))
                e = event(ADD, locate=locate, order_ref=ref, side=side, shares=shares,
                          price=draw(st.sampled_from(prices)))
                if ref not in live:
                    live[ref] = (locate, side, e["price"])
            elif op == "stale":                      # an order that just went
                ref = draw(st.sampled_from(sorted(used) or refs))
                e = event(DELETE, locate=draw(st.sampled_from(locates)), order_ref=ref)
                live.pop(ref, None)
            else:
                # The order the previous event touched, most of the time.
                last = events[-1]["order_ref"] if events else None
                last = events[-1]["new_ref"] if events and events[-1]["kind"] == REPLACE \
                    else last
                ref = last if last in live and draw(st.booleans()) else \
                    draw(st.sampled_from(sorted(live)))
                locate, side, price = live[ref]
                if op in ("exec", "cancel"):
                    kind = CANCEL if op == "cancel" else draw(st.sampled_from(
                        [EXECUTE, EXECUTE_AT_PRICE]))
                    e = event(kind, locate=locate, order_ref=ref,
                              shares=draw(st.sampled_from([1, 50, 100, 600])), price=price)
                elif op == "delete":
                    e = event(DELETE, locate=locate, order_ref=ref)
                    live.pop(ref)
                else:
                    free = [r for r in refs if r not in live and r != ref]
                    new_ref = draw(st.sampled_from((free or refs) + [ref]))
                    new_price = draw(st.sampled_from(prices))
                    e = event(REPLACE, locate=locate, order_ref=ref, new_ref=new_ref,
                              shares=draw(st.sampled_from([0, 40, 300])), price=new_price)
                    live.pop(ref)
                    if new_ref not in live and e["shares"]:
                        live[new_ref] = (locate, side, new_price)
            used.add(e["order_ref"])
            e["sequence"] = len(events) + 1
            events.append(e)
            gaps.append(draw(st.sampled_from([1, 1, 1, 1, 2, 3])))   # 3: issue after a gap
        gaps[-1] = DRAIN
    return events, gaps


def check(book, events, gaps):
    model, before = fresh(book)
    updates, _ = book.run(events, gaps)
    model.run(events)
    assert updates == model.updates
    after = book.counters()
    assert {k: after[k] - before[k] for k in after} == dict(model.counters)
    assert after["fifo_overflow"] == before["fifo_overflow"]
    assert book.alarms() == model.alarms
    for locate in sorted(SUBSCRIBED):
        assert book.snapshot(locate) == model.snapshot(locate)


@settings(max_examples=200, deadline=None)
@given(hazard_stream())
def test_back_to_back_events_on_what_the_event_ahead_is_changing(book, stream):
    check(book, *stream)


def test_replace_chain_on_one_order_one_per_cycle(book):
    """Each replace names the order the one before it created, in the same set."""
    refs = colliding_refs(BURST + 1)
    events = [event(ADD, locate=1, order_ref=refs[0], side=1, shares=100, price=1000)]
    for k in range(1, BURST):
        events.append(event(REPLACE, locate=1, order_ref=refs[k - 1], new_ref=refs[k],
                            shares=100 + k, price=1000 + 10 * (k % 3)))
    for k, e in enumerate(events, start=1):
        e["sequence"] = k
    check(book, events, [1] * (len(events) - 1) + [DRAIN])


def test_one_level_filled_and_emptied_one_per_cycle(book):
    """Adds then deletes at one price: each event changes the level the previous one did."""
    refs = list(range(1, 7))
    events = [event(ADD, locate=2, order_ref=r, side=0, shares=10 * r, price=500)
              for r in refs]
    events += [event(DELETE, locate=2, order_ref=r) for r in refs]
    events += [event(ADD, locate=2, order_ref=9, side=0, shares=1, price=500)]
    for k, e in enumerate(events, start=1):
        e["sequence"] = k
    check(book, events, [1] * (len(events) - 1) + [DRAIN])


LADDER = [1000, 1010, 1020, 1030, 1040, 1050]     # more prices than PROP stores: some hidden
HUGE = (1 << 32) - 60                              # two of these saturate a level


@st.composite
def replace_onto_its_own_side(draw):
    """A side of several levels (one or two orders each, some near saturation) and a hidden
    zone, then replaces, back to back, whose new order lands where their removal just acted:
    the level it emptied or reduced, a level moved up by the removal, the hidden zone's last
    order. The replace's add is compared against the side before the removal and corrected
    for it; this checks that correction."""
    side = draw(st.integers(0, 1))
    events, live, ref = [], [], 1
    for price in draw(st.lists(st.sampled_from(LADDER), min_size=4, max_size=6, unique=True)):
        for _ in range(draw(st.integers(1, 2))):
            shares = draw(st.sampled_from([1, 100, HUGE]))
            events.append(event(ADD, locate=1, order_ref=ref, side=side, shares=shares,
                                price=price))
            live.append(ref)
            ref += 1
    for _ in range(draw(st.integers(1, 3))):
        old = draw(st.sampled_from(live))
        live.remove(old)
        events.append(event(REPLACE, locate=1, order_ref=old, new_ref=ref,
                            shares=draw(st.sampled_from([1, 70, HUGE])),
                            price=draw(st.sampled_from([995, *LADDER, 1055]))))
        live.append(ref)
        ref += 1
    for price in draw(st.lists(st.sampled_from([995, *LADDER, 1055]), max_size=3)):
        events.append(event(ADD, locate=1, order_ref=ref, side=side, shares=5, price=price))
        ref += 1
    for k, e in enumerate(events, start=1):
        e["sequence"] = k
    return events, [1] * (len(events) - 1) + [DRAIN]


@settings(max_examples=150, deadline=None)
@given(replace_onto_its_own_side())
def test_replace_adds_where_its_removal_acted(book, stream):
    check(book, *stream)


def test_replace_of_the_last_hidden_order_to_a_worse_price(book):
    """The replace empties the hidden zone, then its add is worse than every stored level:
    the new order alone is hidden, at its own price (a later better add must still show)."""
    asks = [event(ADD, locate=1, order_ref=r, side=1, shares=10, price=1000 + 10 * r)
            for r in range(PROP.depth + 1)]                # the worst one hidden
    events = asks + [
        event(REPLACE, locate=1, order_ref=PROP.depth, new_ref=50, shares=7, price=1045),
        event(ADD, locate=1, order_ref=51, side=1, shares=3, price=990),
    ]
    for k, e in enumerate(events, start=1):
        e["sequence"] = k
    check(book, events, [1] * (len(events) - 1) + [DRAIN])
