"""Running the order book: in Amaranth's simulator (unit tier) and Verilated (properties, soak,
benchmark). Both take the same script of host operations and events and return the same
`BookRun`, so every tier compares against `tickwire.sim.book_model.BookModel` the same way."""

from typing import NamedTuple

from amaranth.lib import data

from tickwire.hdl.book.book import OrderBook
from tickwire.hdl.book.records import snapshot_layout, subscribe_layout, update_layout
from tickwire.hdl.feed.events import BookEvent

from .amaranth_sim import simulate
from .records import pack, unpack


class BookRun(NamedTuple):
    updates: list      # BookUpdate dicts, in order
    stamps: list       # per update: the cycle it was valid, counted from the run's start
    snapshots: list    # snapshot dicts, in request order
    counters: dict
    alarms: dict
    cycles: int


def event_value(e):
    names = {name for name, _ in data.Layout.cast(BookEvent)}
    return pack(BookEvent, {k: v for k, v in e.items() if k in names})


def subscribe_value(p, locate, slot, enable=True):
    return pack(subscribe_layout(p), dict(locate=locate, slot=slot, enable=int(enable)))


def _levels(items):
    items = [items[i] for i in sorted(items)] if isinstance(items, dict) else items
    return [(lv["price"], lv["shares"], lv["orders"]) for lv in items]


def decode_update(p, value):
    u = unpack(update_layout(p), value)
    u["levels"] = _levels(u["levels"])
    return u


def decode_snapshot(p, value):
    s = unpack(snapshot_layout(p), value)
    s["bid"], s["ask"] = _levels(s["bid"]), _levels(s["ask"])
    return s


def schedule(script):
    """Expand a script into per-cycle items. Script items: ("event", dict, gap) presents an
    event then `gap - 1` idle cycles; ("idle", n); ("sub", locate, slot, enable);
    ("snap", locate). Host items are preceded by enough idle cycles for the book to drain."""
    out = []
    for item in script:
        if item[0] == "event":
            out.append(("event", event_value(item[1])))
            out.extend([None] * (item[2] - 1))
        elif item[0] == "idle":
            out.extend([None] * item[1])
        else:
            out.append(item)
            out.extend([None] * 6)
    return out


def run_book_sim(script, dut=None, *, drain=12, vcd=None):
    """The script through an `OrderBook` in Amaranth's simulator."""
    dut = dut or OrderBook()
    p = dut.p
    cycles = schedule(script) + [None] * drain
    updates, stamps, snapshots, state = [], [], [], {}

    async def testbench(ctx):
        ctx.set(dut.updates.ready, 1)
        ctx.set(dut.snapshot.ready, 1)
        for cycle, item in enumerate(cycles):
            ctx.set(dut.events.valid, 0)
            ctx.set(dut.subscribe.valid, 0)
            ctx.set(dut.snapshot_request.valid, 0)
            if item is not None and item[0] == "event":
                ctx.set(dut.events.valid, 1)
                ctx.set(dut.events.payload.as_value(), item[1])
            elif item is not None and item[0] == "sub":
                ctx.set(dut.subscribe.valid, 1)
                ctx.set(dut.subscribe.payload.as_value(), subscribe_value(p, *item[1:]))
            elif item is not None and item[0] == "snap":
                ctx.set(dut.snapshot_request.valid, 1)
                ctx.set(dut.snapshot_request.payload, item[1])
            if item is not None and item[0] in ("sub", "snap"):
                port = dut.subscribe if item[0] == "sub" else dut.snapshot_request
                if not ctx.get(port.ready):
                    raise AssertionError(f"host request not taken at cycle {cycle}: book busy")
            await ctx.tick()
            if ctx.get(dut.updates.valid):
                updates.append(decode_update(p, ctx.get(dut.updates.payload.as_value())))
                stamps.append(cycle + 1)
            if ctx.get(dut.snapshot.valid):
                snapshots.append(decode_snapshot(p, ctx.get(dut.snapshot.payload.as_value())))
        state["counters"] = unpack(dut.counters.shape(), ctx.get(dut.counters.as_value()))
        state["alarms"] = unpack(dut.alarms.shape(), ctx.get(dut.alarms.as_value()))

    simulate(dut, testbench, vcd)
    return BookRun(updates, stamps, snapshots, state["counters"], state["alarms"], len(cycles))


class VerilatedBook:
    """An `OrderBook` Verilated with the batch harness: events in, updates and snapshots out."""

    def __init__(self, parameters=None, **overrides):
        from .verilated import StreamHarness

        self.dut = OrderBook(parameters, **overrides)
        self.p = self.dut.p
        self.harness = StreamHarness(self.dut, "order_book", "events", ["updates", "snapshot"])

    def power_on(self):
        """A new model instance: memories back at their initial (empty) contents."""
        self.harness.power_on()

    def _host(self, port, value):
        self.harness.set(f"{port}__payload", value)
        self.harness.set(f"{port}__valid", 1)
        if not self.harness.get(f"{port}__ready"):
            raise AssertionError(f"{port} not taken: the book is busy")
        got = self.harness.run([None])
        self.harness.set(f"{port}__valid", 0)
        return got

    def drain(self, cycles=16):
        return self.harness.run([None] * cycles)

    def subscribe(self, locate, slot, enable=True):
        self.drain()
        self._host("subscribe", subscribe_value(self.p, locate, slot, enable))

    def snapshot(self, locate):
        self.drain()
        self._host("snapshot_request", locate)
        _, snaps = self.drain(8)
        (value, _), = snaps
        return decode_snapshot(self.p, value)

    def counters(self):
        return unpack(self.dut.counters.shape(), self.harness.get("counters"))

    def alarms(self):
        return unpack(self.dut.alarms.shape(), self.harness.get("alarms"))

    def clear_alarms(self):
        self.harness.set("clear_alarms", 1)
        self.harness.run([None])
        self.harness.set("clear_alarms", 0)

    def run(self, events, gap=1, drain=16):
        """Present events every `gap` cycles (a list of ints per event gives each its own gap)
        and return (updates, stamps relative to the first presented cycle)."""
        gaps = gap if isinstance(gap, list) else [gap] * len(events)
        beats = []
        for e, g in zip(events, gaps, strict=True):
            beats.append(event_value(e))
            beats.extend([None] * (g - 1))
        base = self.harness.cycle
        taken = self._taken() + len(events)
        updates, _ = self.harness.run(beats + [None] * drain)
        while self._taken() < taken:               # a backlog in the FIFO: let it drain
            more, _ = self.harness.run([None] * (3 * (taken - self._taken()) + drain))
            updates += more
        more, _ = self.harness.run([None] * drain)  # and the last event's update come out
        updates += more
        return ([decode_update(self.p, v) for v, _ in updates],
                [c - base for _, c in updates])

    def _taken(self):
        counters = self.counters()
        return counters["events"] + counters["fifo_overflow"]
