"""cocotb bench of the Verilated order book (the generated Verilog, its own port names).

ITCH 5.0 messages of the default scenario are decoded by the independent `itchfeed` parser
(not tickwire's) into book events and driven at ``events`` in bursts; every BookUpdate is
checked against `FullBook` after the event it names (by sequence number), and at the end a
snapshot of every locate is read back and checked the same way."""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from itch.messages import messages as itchfeed_messages

from tickwire.hdl.book.records import BookParameters, snapshot_layout, update_layout
from tickwire.hdl.feed.events import BookEvent
from tickwire.sim.book_model import (
    ADD,
    CANCEL,
    DELETE,
    EXECUTE,
    EXECUTE_AT_PRICE,
    REPLACE,
    FullBook,
    event,
)
from tickwire.sim.records import pack, unpack
from tickwire.sim.scenario import DEFAULT_SYMBOLS, order_flow


def params():
    return BookParameters(**json.loads(os.environ["BOOK_PARAMS"]))


def itchfeed_events(messages):
    """Book events from itchfeed's reading of the message bytes."""
    out = []
    for sequence, raw in enumerate(messages, start=1):
        t = raw[0:1]
        if t not in b"AFECXDU":
            continue
        m = itchfeed_messages[t](raw)
        common = dict(locate=m.stock_locate, timestamp=m.timestamp, sequence=sequence)
        if t in b"AF":
            e = event(ADD, order_ref=m.order_reference_number, shares=m.shares, price=m.price,
                      side=int(m.buy_sell_indicator == b"S"), **common)
        elif t in b"EC":
            e = event(EXECUTE if t == b"E" else EXECUTE_AT_PRICE, shares=m.executed_shares,
                      order_ref=m.order_reference_number, **common)
        elif t == b"X":
            e = event(CANCEL, order_ref=m.order_reference_number, shares=m.cancelled_shares,
                      **common)
        elif t == b"D":
            e = event(DELETE, order_ref=m.order_reference_number, **common)
        else:
            e = event(REPLACE, order_ref=m.order_reference_number,
                      new_ref=m.new_order_reference_number, shares=m.shares, price=m.price,
                      **common)
        out.append(e)
    return out


def levels(value):
    return [(value[i]["price"], value[i]["shares"], value[i]["orders"])
            for i in sorted(value)]


def padded(top, n):
    return (top + [(0, 0, 0)] * n)[:n]


class TB:
    def __init__(self, dut):
        self.dut, self.p = dut, params()
        self.updates, self.snapshots = [], []
        cocotb.start_soon(Clock(dut.clk, 6.4, unit="ns").start())
        cocotb.start_soon(self.collect())

    async def reset(self):
        d = self.dut
        d.rst.value = 1
        for name in ("events__valid", "subscribe__valid", "snapshot_request__valid",
                     "clear_alarms"):
            getattr(d, name).value = 0
        d.updates__ready.value = 1
        d.snapshot__ready.value = 1
        await ClockCycles(d.clk, 3)
        d.rst.value = 0
        await ClockCycles(d.clk, 2)

    async def collect(self):
        d = self.dut
        while True:
            await RisingEdge(d.clk)
            if d.updates__valid.value and d.updates__ready.value:
                self.updates.append(unpack(update_layout(self.p), int(d.updates__payload.value)))
            if d.snapshot__valid.value:
                self.snapshots.append(unpack(snapshot_layout(self.p),
                                             int(d.snapshot__payload.value)))

    async def host(self, port, value):
        d = self.dut
        getattr(d, f"{port}__payload").value = value
        getattr(d, f"{port}__valid").value = 1
        while True:
            await RisingEdge(d.clk)
            if getattr(d, f"{port}__ready").value:
                break
        getattr(d, f"{port}__valid").value = 0

    async def subscribe(self, locate, slot):
        await self.host("subscribe", pack(
            self.dut_subscribe_layout(), dict(locate=locate, slot=slot, enable=1)))

    def dut_subscribe_layout(self):
        from tickwire.hdl.book.records import subscribe_layout
        return subscribe_layout(self.p)


@cocotb.test()
async def itchfeed_events_keep_the_book_exact(dut):
    tb = TB(dut)
    await tb.reset()
    locates = range(1, len(DEFAULT_SYMBOLS) + 1)
    for locate in locates:
        await tb.subscribe(locate, locate)
    events = itchfeed_events(order_flow(3000, seed=21))
    rng = random.Random(5)
    truth, after = FullBook(), {}
    for e in events:
        truth.apply(e)
        after[e["sequence"]] = {(loc, side): truth.top(loc, side, tb.p.visible)
                                for loc in (e["locate"],) for side in (0, 1)}
    for e in events:                  # bursts of back-to-back events, then pauses
        dut.events__payload.value = pack(BookEvent, {k: v for k, v in e.items()
                                                     if k != "new_ref" or v})
        dut.events__valid.value = 1
        await RisingEdge(dut.clk)
        dut.events__valid.value = 0
        if rng.random() < 0.3:
            await ClockCycles(dut.clk, rng.randrange(1, 8))
    await ClockCycles(dut.clk, 3 * len(events) // 2 + 50)
    assert len(tb.updates) > 500
    for u in tb.updates:
        books = after[u["sequence"]]
        bid, ask = books[(u["locate"], 0)], books[(u["locate"], 1)]
        side = bid if u["side"] == 0 else ask
        assert levels(u["levels"]) == padded(side, tb.p.visible), u["sequence"]
        assert (u["bid_price"], u["bid_shares"]) == (bid[0][:2] if bid else (0, 0))
        assert (u["ask_price"], u["ask_shares"]) == (ask[0][:2] if ask else (0, 0))
        assert u["complete"] == 0b11
    for locate in locates:
        await tb.host("snapshot_request", locate)
        await ClockCycles(dut.clk, 6)
    for locate, snap in zip(locates, tb.snapshots, strict=True):
        assert snap["locate"] == locate and snap["subscribed"] == 1
        assert levels(snap["bid"]) == padded(truth.top(locate, 0), tb.p.visible)
        assert levels(snap["ask"]) == padded(truth.top(locate, 1), tb.p.visible)
    from tickwire.hdl.book.book import OrderBook
    counters = unpack(OrderBook(tb.p).counters.shape(), int(dut.counters.value))
    assert counters["events"] == len(events)
    assert counters["updates"] == len(tb.updates)
    assert all(v == 0 for k, v in counters.items() if k not in ("events", "updates"))
