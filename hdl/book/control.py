"""The order book as the host sees it: `OrderBook` plus register declarations.

`OrderBook` takes host requests (subscriptions, snapshot requests) as streams that it serves
between events. The register bank writes a value in one cycle, so `BookControl` queues those
writes in small FIFOs in front of the book; a write that finds its queue full is lost, counted
(``host_overflow``) and raises the book's ``overflow`` alarm. Snapshots come back through a
host FIFO register.
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.counters import count
from tickwire.hdl.feed.itch import event_signature
from tickwire.hdl.platform.registers import Constant, Counters, Fifo, Status, Strobe

from .book import OrderBook
from .records import BOOK_COUNTERS, Alarms, snapshot_layout, subscribe_layout, update_layout


def book_registers(p):
    """The book's registers: its build parameters, then its host ports."""
    return tuple(Constant(name, doc, value=getattr(p, name)) for name, doc in (
        ("symbols", "books held (subscription slots 0..symbols-1)"),
        ("locates", "stock locates the subscription map can name (0..locates-1)"),
        ("depth", "price levels stored per symbol and side"),
        ("visible", "levels shown on BookUpdates and snapshots"),
        ("orders", "order-table capacity"))) + BOOK_PORT_REGISTERS


BOOK_PORT_REGISTERS = (
    Strobe("subscribe", "map `locate` to book `slot` and clear that book (`enable` 1), or "
           "unmap the locate (`enable` 0); `write` must be 1"),
    Strobe("snapshot_request", "`write` 1: queue a snapshot of `locate`'s visible levels"),
    Fifo("snapshot", "snapshots requested through `snapshot_request`, in order",
         overflow="counters.host_overflow"),
    Strobe("clear_alarms", "write 1: clear the sticky alarms"),
    Status("alarms", "sticky alarms: integrity, capacity, overflow"),
    Counters("counters", "32-bit wrapping counter per reason (see `BOOK_COUNTERS`)"),
)

HOST_QUEUE_DEPTH = 4


def subscribe_write_layout(p):
    return data.StructLayout({"write": 1, **{n: f.shape for n, f in subscribe_layout(p)}})


SNAPSHOT_WRITE = data.StructLayout({"write": 1, "locate": unsigned(16)})


class BookControl(wiring.Component):
    """`OrderBook` with host requests queued from the register bank.

    Ports
    -----
    events : In(BookEvent stream, always ready), updates : Out(BookUpdate stream): the book's
    subscribe : In(subscription write, pulsed by the bank), snapshot_request : In(locate write)
    snapshot : Out(snapshot stream, drained by the host)
    counters : Out(the book's counters and ``host_overflow``), alarms : Out(Alarms),
    clear_alarms : In(1)

    Latency: the book's (`OrderBook`); a host request reaches the book the cycle after it is
    written, and is served between events.
    """

    def __init__(self, parameters=None, **overrides):
        self.book = OrderBook(parameters, **overrides)
        p = self.p = self.book.p
        self.registers = book_registers(p)
        counters = {name: unsigned(32) for name in BOOK_COUNTERS}
        counters["host_overflow"] = unsigned(32)
        super().__init__({
            "events": In(event_signature()),
            "updates": Out(stream.Signature(update_layout(p))),
            "subscribe": In(subscribe_write_layout(p)),
            "snapshot_request": In(SNAPSHOT_WRITE),
            "snapshot": Out(stream.Signature(snapshot_layout(p))),
            "counters": Out(data.StructLayout(counters)),
            "alarms": Out(Alarms),
            "clear_alarms": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.book = book = self.book
        wiring.connect(m, wiring.flipped(self.events), book.events)
        wiring.connect(m, book.updates, wiring.flipped(self.updates))
        wiring.connect(m, book.snapshot, wiring.flipped(self.snapshot))

        lost = []
        for name, write, target, value in (
                ("subscribe", self.subscribe, book.subscribe,
                 self.subscribe.as_value()[1:]),
                ("snapshot", self.snapshot_request, book.snapshot_request,
                 self.snapshot_request.locate)):
            queue = fifo.SyncFIFOBuffered(width=len(value), depth=HOST_QUEUE_DEPTH)
            m.submodules[f"{name}_queue"] = queue
            m.d.comb += [queue.w_data.eq(value), queue.w_en.eq(write.write),
                         target.valid.eq(queue.r_rdy), target.payload.eq(queue.r_data),
                         queue.r_en.eq(target.ready)]
            lost.append(write.write & ~queue.w_rdy)

        host_lost = Signal()
        m.d.comb += host_lost.eq(lost[0] | lost[1])
        count(m, self.counters, "host_overflow", *lost)
        for name in BOOK_COUNTERS:
            m.d.comb += getattr(self.counters, name).eq(getattr(book.counters, name))
        overflow_seen = Signal()
        with m.If(host_lost):
            m.d.sync += overflow_seen.eq(1)
        with m.If(self.clear_alarms):
            m.d.sync += overflow_seen.eq(0)
        m.d.comb += [self.alarms.eq(book.alarms), self.alarms.overflow.eq(
            book.alarms.overflow | overflow_seen), book.clear_alarms.eq(self.clear_alarms)]
        return m
