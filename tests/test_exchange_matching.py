"""The exchange's matching against a brute-force oracle written here: random market flows and
our IOC/Day orders and cancels; every fill in price-time priority, every share accounted for.

The oracle keeps one flat list of resting orders and, for each fill, scans all of them for the
best crossing one (best price, then earliest arrival). What the exchange publishes back into
the feed is read with itchfeed (an independent ITCH 5.0 decoder) and compared with what the
oracle says it must publish.
"""

import itertools

import hypothesis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itch.messages import messages as itchfeed

from tickwire.sim import itch
from tickwire.sim.exchange import EventKind, Exchange
from tickwire.sim.ouch import encode_enter_order
from tickwire.sim.scenario import DEFAULT_SYMBOLS, order_flow

SESSION = "TEST000001"
BASE = 2**35
SELL_SIDES = {"B": "B", "S": "S", "T": "S", "E": "S"}


def enter(number, side="B", quantity=100, symbol="AAPL", price=1_000_000, tif="3",
          display="Y", capacity="P", sweep="N", cross="N"):
    return encode_enter_order(user_ref_num=number, side=side, quantity=quantity, symbol=symbol,
                              price=price, time_in_force=tif, display=display,
                              capacity=capacity, intermarket_sweep=sweep, cross_type=cross,
                              clordid=f"C{number}")


def cancel(number, quantity):
    return b"X" + number.to_bytes(4, "big") + quantity.to_bytes(4, "big")


def market(kind, **fields):
    return itch.encode(kind, stock_locate=1, timestamp=fields.pop("timestamp", 1), **fields)


def published(exchange_or_messages):
    """What the exchange published, as itchfeed reads it: (type, ref, shares, match/price)."""
    out, messages = [], exchange_or_messages
    if isinstance(messages, Exchange):
        messages = messages.published()
    for message in messages:
        parsed = itchfeed[message[0:1]](message)
        ref = parsed.order_reference_number
        if message[0:1] == b"E":
            out.append(("E", ref, parsed.executed_shares, parsed.match_number))
        elif message[0:1] == b"A":
            out.append(("A", ref, parsed.buy_sell_indicator.decode(), parsed.shares,
                        parsed.price))
        elif message[0:1] == b"X":
            out.append(("X", ref, parsed.cancelled_shares))
        else:
            out.append(("D", ref))
    return out


class Oracle:
    """Brute force: a flat list of resting orders, scanned whole for every fill."""

    def __init__(self):
        self.resting, self.arrival = [], itertools.count()
        self.match = itertools.count(BASE)
        self.filled, self.cancelled, self.expected = {}, {}, []

    def _take(self, side, price, shares, ours_only):
        fills = []
        while shares:
            crossing = [o for o in self.resting if o["side"] != side
                        and (o["price"] <= price if side == "B" else o["price"] >= price)
                        and (o["ours"] or not ours_only)]
            if not crossing:
                break
            best = min(crossing, key=lambda o: (o["price"] if side == "B" else -o["price"],
                                                o["arrival"]))
            take = min(shares, best["shares"])
            best["shares"] -= take
            shares -= take
            if best["shares"] == 0:
                self.resting.remove(best)
            fills.append((best, take))
        return fills, shares

    def market_add(self, ref, side, price, shares):
        fills, left = self._take(side, price, shares, ours_only=True)
        for resting, take in fills:
            match = next(self.match)
            self.filled[resting["ref"]] += take
            self.expected += [("E", resting["ref"], take, match), ("E", ref, take, match)]
        if left:
            self.resting.append(dict(ref=ref, side=side, price=price, shares=left,
                                     arrival=next(self.arrival), ours=False))

    def market_remove(self, ref):
        self.resting = [o for o in self.resting if o["ref"] != ref]

    def market_reduce(self, ref, shares=None):
        for order in self.resting:
            if order["ref"] == ref:
                order["shares"] -= order["shares"] if shares is None else min(shares,
                                                                              order["shares"])
                if order["shares"] == 0:
                    self.resting.remove(order)
                return

    def ours(self, ref, side, price, quantity, tif):
        side = SELL_SIDES[side]
        self.filled[ref], self.cancelled[ref] = 0, 0
        fills, left = self._take(side, price, quantity, ours_only=False)
        for resting, take in fills:
            match = next(self.match)
            self.filled[ref] += take
            if resting["ours"]:
                self.filled[resting["ref"]] += take
            self.expected.append(("E", resting["ref"], take, match))
        if left and tif == "3":
            self.cancelled[ref] += left
        elif left:
            self.resting.append(dict(ref=ref, side=side, price=price, shares=left,
                                     arrival=next(self.arrival), ours=True))
            self.expected.append(("A", ref, side, left, price))

    def cancel(self, ref, intended):
        for order in self.resting:
            if order["ref"] == ref and order["ours"] and intended < order["shares"]:
                self.cancelled[ref] += order["shares"] - intended
                self.expected.append(("X", ref, order["shares"] - intended) if intended
                                     else ("D", ref))
                order["shares"] = intended
                if intended == 0:
                    self.resting.remove(order)


prices = st.integers(0, 8).map(lambda k: 1_000_000 + 100 * k)
operation = st.one_of(
    st.tuples(st.just("add"), st.sampled_from("BS"), prices, st.integers(1, 9).map(100 .__mul__)),
    st.tuples(st.just("reduce"), st.integers(0, 50), st.one_of(st.none(), st.integers(1, 500)),
              st.booleans()),
    st.tuples(st.just("replace"), st.integers(0, 50), prices, st.integers(1, 900)),
    st.tuples(st.just("order"), st.sampled_from("BSTE"), prices, st.integers(1, 1500),
              st.sampled_from("03")),
    st.tuples(st.just("cancel"), st.integers(0, 50), st.integers(0, 400)),
)


def replay(feed):
    """A strict book from the feed alone (itchfeed decodes it): every reference must be known
    and no order may lose more shares than it has."""
    live = {}
    for message in feed:
        kind, parsed = message[0:1], itchfeed[message[0:1]](message)
        if kind not in b"AFECXDU":
            continue
        if kind in b"AF":
            assert parsed.order_reference_number not in live
            live[parsed.order_reference_number] = [parsed.buy_sell_indicator.decode(),
                                                   parsed.price, parsed.shares]
        elif kind == b"U":
            side = live.pop(parsed.order_reference_number)[0]
            live[parsed.new_order_reference_number] = [side, parsed.price, parsed.shares]
        else:
            order = live[parsed.order_reference_number]
            order[2] -= (order[2] if kind == b"D" else parsed.cancelled_shares if kind == b"X"
                         else parsed.executed_shares)
            assert order[2] >= 0
            if order[2] == 0:
                del live[parsed.order_reference_number]
    return {ref: tuple(v) for ref, v in live.items()}


@settings(max_examples=150, deadline=None)
@given(st.lists(operation, max_size=60))
def test_matching_against_brute_force(operations):
    """The scenario side never names a share twice in its own view (as `order_flow` does not);
    the exchange must keep the published feed consistent when our trades took shares first."""
    exchange, oracle = Exchange(["AAPL"]), Oracle()
    exchange.open_session(SESSION)
    scenario, our_refs, next_market, number = {}, [], 1, 0     # scenario: its view of shares
    feed, ours, taken = [], [], set()
    for op in operations:
        message = None
        if op[0] == "add":
            _, side, price, shares = op
            message = market(b"A", order_ref=next_market, side=side.encode(), shares=shares,
                             stock=b"AAPL", price=price)
            oracle.market_add(next_market, side, price, shares)
            scenario[next_market] = [side, shares]
            next_market += 1
        elif op[0] == "reduce" and scenario:
            # Half the time, one our trades touched: the case the feed must be kept right in.
            touched = [ref for ref in sorted(scenario) if ref in taken] if op[3] else []
            refs = touched or sorted(scenario)
            ref = refs[op[1] % len(refs)]
            shares = scenario[ref][1] if op[2] is None else min(op[2], scenario[ref][1])
            message = (market(b"D", order_ref=ref) if op[2] is None
                       else market(b"E", order_ref=ref, executed_shares=shares, match_number=1))
            oracle.market_reduce(ref, shares)
            scenario[ref][1] -= shares
            if not scenario[ref][1]:
                del scenario[ref]
        elif op[0] == "replace" and scenario:
            ref = sorted(scenario)[op[1] % len(scenario)]
            message = market(b"U", original_ref=ref, new_ref=next_market, price=op[2],
                             shares=op[3])
            side = scenario.pop(ref)[0]
            oracle.market_remove(ref)
            oracle.market_add(next_market, side, op[2], op[3])
            scenario[next_market] = [side, op[3]]
            next_market += 1
        elif op[0] == "order":
            _, side, price, quantity, tif = op
            number += 1
            exchange.submit(SESSION, enter(number, side, quantity, price=price, tif=tif))
            our_refs.append((number, BASE + number - 1))
            oracle.ours(BASE + number - 1, side, price, quantity, tif)
        elif op[0] == "cancel" and our_refs:
            user_ref_num, ref = our_refs[op[1] % len(our_refs)]
            exchange.submit(SESSION, cancel(user_ref_num, op[2]))
            oracle.cancel(ref, op[2])
        if message is not None:
            feed += exchange.apply_market(message)
        out = exchange.published()
        feed += out
        ours += out
        taken.update(e[1] for e in published(out) if e[0] == "E")
    for name in ("market_cut", "market_dropped", "market_replace_to_add"):
        if exchange.counters[name]:
            hypothesis.event(name)
    hypothesis.target(float(sum(exchange.counters[name] for name in ("market_cut", "market_dropped",
                                                          "market_replace_to_add"))))
    assert published(ours) == oracle.expected
    resting = {o.ref: o.shares for o in exchange.resting("AAPL")}
    assert resting == {o["ref"]: o["shares"] for o in oracle.resting}
    # The feed alone rebuilds the exchange's book: no share named twice, none missing.
    assert replay(feed) == {o.ref: (o.side, o.price, o.shares)
                            for o in exchange.resting("AAPL")}
    # No share lost or made: executed + cancelled + resting == ordered, for each order of ours.
    executed, cancelled = {}, {}
    for event in exchange.events:
        if event.kind is EventKind.EXECUTED:
            executed[event.order_id] = executed.get(event.order_id, 0) + event.last_quantity
        if event.kind is EventKind.CANCELED:
            cancelled[event.order_id] = (event.order_quantity - event.cumulative_quantity
                                         - event.leaves_quantity)
    for event in exchange.events:
        if event.kind is EventKind.ACCEPTED:
            ref = event.order_id
            assert executed.get(ref, 0) == oracle.filled[ref]
            assert cancelled.get(ref, 0) == oracle.cancelled[ref]
            assert (executed.get(ref, 0) + cancelled.get(ref, 0) + resting.get(ref, 0)
                    == event.order_quantity)


def test_ioc_takes_the_best_prices_first_then_time():
    exchange = Exchange(["AAPL"])
    exchange.open_session(SESSION)
    for ref, price, shares in ((1, 1_000_200, 300), (2, 1_000_100, 200), (3, 1_000_100, 400),
                               (4, 1_000_300, 500)):
        exchange.apply_market(market(b"A", order_ref=ref, side=b"S", shares=shares,
                                     stock=b"AAPL", price=price))
    exchange.submit(SESSION, enter(1, "B", 1000, price=1_000_200))
    assert published(exchange) == [("E", 2, 200, BASE), ("E", 3, 400, BASE + 1),
                                   ("E", 1, 300, BASE + 2)]
    kinds = [(e.kind, e.last_quantity, e.last_price) for e in exchange.events]
    assert kinds == [(EventKind.ACCEPTED, 0, 0), (EventKind.EXECUTED, 200, 1_000_100),
                     (EventKind.EXECUTED, 400, 1_000_100), (EventKind.EXECUTED, 300, 1_000_200),
                     (EventKind.CANCELED, 0, 0)]
    assert exchange.events[-1].reason == "I" and exchange.events[-1].leaves_quantity == 0


@pytest.mark.parametrize("fields, reason", [
    (dict(symbol="ZZZZ"), 0x0017),
    (dict(quantity=0), 0x0013),
    (dict(quantity=1_000_000), 0x0013),
    (dict(price=0), 0x001D),
    (dict(price=-100), 0x001D),
    (dict(price=2_000_000_000), 0x001D),
    (dict(side="X"), 0x0009),
    (dict(tif="5"), 0x000F),
    (dict(tif="Q"), 0x000F),
    (dict(display="Q"), 0x0003),
    (dict(sweep="Y"), 0x0008),
    (dict(cross="O"), 0x0014),
    (dict(capacity="Z"), 0x000F),
])
def test_rejections(fields, reason):
    exchange = Exchange(["AAPL"])
    exchange.open_session(SESSION)
    values = dict(number=1) | fields
    if values.get("price", 0) < 0:
        message = bytearray(enter(**values | {"price": 0}))
        message[18:26] = values["price"].to_bytes(8, "big", signed=True)
        message = bytes(message)
    else:
        message = enter(**values)
    exchange.submit(SESSION, message)
    [event] = exchange.events
    assert event.kind is EventKind.REJECTED and event.reason == f"0x{reason:04X}"
    assert event.order_id == 0 and published(exchange) == []
    rejected = exchange.stream(SESSION)[-1]
    assert rejected[0:1] == b"J" and int.from_bytes(rejected[13:15], "big") == reason


def test_halted_symbol_rejects_and_resumes():
    exchange = Exchange(["AAPL"])
    exchange.open_session(SESSION)
    exchange.apply_market(market(b"H", stock=b"AAPL", trading_state=b"H"))
    exchange.submit(SESSION, enter(1))
    exchange.apply_market(market(b"H", stock=b"AAPL", trading_state=b"T"))
    exchange.submit(SESSION, enter(2))
    assert [(e.kind, e.reason) for e in exchange.events] == [
        (EventKind.REJECTED, "0x0007"), (EventKind.ACCEPTED, ""), (EventKind.CANCELED, "I")]


def test_user_ref_num_must_increase():
    """Section 1.2: an Enter Order whose UserRefNum is not above the last one is taken for a
    retransmission and ignored."""
    exchange = Exchange(["AAPL"])
    exchange.open_session(SESSION)
    for number in (5, 5, 3, 6):
        exchange.submit(SESSION, enter(number))
    accepted = [e.user_ref_num for e in exchange.events if e.kind is EventKind.ACCEPTED]
    assert accepted == [5, 6] and exchange.counters["stale_user_ref_num"] == 2


def test_hidden_day_order_rests_unpublished_and_trades():
    exchange = Exchange(["AAPL"])
    exchange.open_session(SESSION)
    exchange.submit(SESSION, enter(1, "B", 500, price=1_000_000, tif="0", display="N"))
    assert published(exchange) == []
    exchange.apply_market(market(b"A", order_ref=9, side=b"S", shares=200, stock=b"AAPL",
                                 price=999_900))
    # Only the market order, which the feed shows, is reduced in the feed.
    assert published(exchange) == [("E", 9, 200, BASE)]
    [fill] = [e for e in exchange.events if e.kind is EventKind.EXECUTED]
    assert (fill.last_quantity, fill.last_price, fill.leaves_quantity) == (200, 1_000_000, 300)
    executed = exchange.stream(SESSION)[-1]
    assert executed[0:1] == b"E" and executed[25:26] == b"A"      # liquidity flag: added


def test_end_of_day_cancels_resting_day_orders():
    exchange = Exchange(["AAPL"])
    exchange.open_session(SESSION)
    exchange.submit(SESSION, enter(1, "S", 300, price=1_000_000, tif="0"))
    exchange.end_of_day()
    assert published(exchange) == [("A", BASE, "S", 300, 1_000_000), ("D", BASE)]
    assert exchange.events[-1].reason == "T" and exchange.resting("AAPL") == []
    assert exchange.stream(SESSION)[-1] == b"S" + bytes(8) + b"E"      # End of Day, time 0


def test_scenario_flow_builds_the_book_the_feed_shows():
    """After the default scenario's flow, the exchange's books hold exactly the orders a
    replay of the same flow through a plain dictionary leaves (itchfeed decodes the flow)."""
    flow = order_flow(6000, seed=7)
    exchange = Exchange(DEFAULT_SYMBOLS)
    live = {}
    for message in flow:
        exchange.apply_market(message)
        kind = message[0:1]
        if kind not in b"AFECXDU":
            continue
        parsed = itchfeed[kind](message)
        ref = parsed.order_reference_number
        if kind in b"AF":
            live[ref] = [parsed.stock.decode().strip(), parsed.buy_sell_indicator.decode(),
                         parsed.price, parsed.shares]
        elif kind in b"EC":
            live[ref][3] -= parsed.executed_shares
        elif kind == b"X":
            live[ref][3] -= parsed.cancelled_shares
        elif kind == b"D":
            live[ref][3] = 0
        else:
            symbol, side = live[ref][0:2]
            live[ref][3] = 0
            live[parsed.new_order_reference_number] = [symbol, side, parsed.price, parsed.shares]
    expected = {ref: tuple(v) for ref, v in live.items() if v[3] > 0}
    ours = {o.ref: (symbol, o.side, o.price, o.shares)
            for symbol in DEFAULT_SYMBOLS for o in exchange.resting(symbol)}
    assert ours == expected and len(ours) > 100
    assert exchange.counters["market_unknown_ref"] == 0
    assert exchange.time_ns == itchfeed[flow[-1][0:1]](flow[-1]).timestamp


def test_feed_never_names_a_share_twice():
    """Our IOC took 300 of market order 1 (500) and all of order 2: the scenario's later
    execution of 400 on order 1 is cut to 200, its delete of order 2 dropped, and its replace
    of order 2 turned into an Add Order."""
    exchange = Exchange(["AAPL"])
    exchange.open_session(SESSION)
    for ref, price, shares in ((2, 999_900, 100), (1, 1_000_000, 500), (3, 1_000_000, 100)):
        exchange.apply_market(market(b"A", order_ref=ref, side=b"S", shares=shares,
                                     stock=b"AAPL", price=price))
    exchange.submit(SESSION, enter(1, "B", 400, price=1_000_000))
    assert published(exchange) == [("E", 2, 100, BASE), ("E", 1, 300, BASE + 1)]
    cut = exchange.apply_market(market(b"E", order_ref=1, executed_shares=400, match_number=7))
    assert published(cut) == [("E", 1, 200, 7)]
    assert exchange.apply_market(market(b"X", order_ref=1, cancelled_shares=100)) == []
    replaced = exchange.apply_market(market(b"U", timestamp=5, original_ref=2, new_ref=4,
                                            shares=600, price=1_000_100))
    assert published(replaced) == [("A", 4, "S", 600, 1_000_100)]
    untouched = market(b"X", order_ref=3, cancelled_shares=50)
    assert exchange.apply_market(untouched) == [untouched]
    assert exchange.counters["market_cut"] == 1 and exchange.counters["market_dropped"] == 1
    assert {o.ref: o.shares for o in exchange.resting("AAPL")} == {3: 50, 4: 600}
