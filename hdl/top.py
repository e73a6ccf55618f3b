"""`TickToTrade`: the whole data path behind one register bank, MAC rx in, MAC tx out.

    rx ─► FeedHandler ─► BookControl (OrderBook) ─► StrategyEngine ─► RiskGate ─► OrderEncoder ─► tx
                   └──── raw events ───────────────────►┘     ▲
                                     BookUpdates ─────────────┘ (BBO for the price collar)

Every block declares its host registers beside its ports (its ``registers`` attribute); the
`RegisterMap` of all blocks gives the `RegisterBank` on the bus, the host driver's names and
the committed register map documents. A free-running cycle counter (`CycleCounter`) times
everything: the order encoder logs, per order, the cycle the triggering message's last byte
was at rx and the cycle its frame started at tx.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.book.control import BookControl
from tickwire.hdl.book.records import BookParameters
from tickwire.hdl.feed.handler import FEED_LATENCY_CYCLES, FeedHandler
from tickwire.hdl.net.mac import mac_rx_signature, mac_tx_signature
from tickwire.hdl.order.encoder import OrderEncoder
from tickwire.hdl.platform.registers import (
    Block,
    RegisterBank,
    RegisterMap,
    Status,
    bus_signature,
    connect_bank,
)
from tickwire.hdl.risk.gate import UPDATE_DELAY_CYCLES, RiskGate
from tickwire.hdl.risk.records import RiskParameters
from tickwire.hdl.strategy.engine import StrategyEngine
from tickwire.hdl.strategy.taker import TAKER_LATENCY_CYCLES

#: Cycles the intent path waits between the strategies and the risk gate, so that the gate's
#: collar reference already includes the BookUpdate an intent was decided on (the fastest
#: strategy, the taker, decides in `TAKER_LATENCY_CYCLES`).
ALIGNMENT_CYCLES = max(0, UPDATE_DELAY_CYCLES - TAKER_LATENCY_CYCLES)

#: Arrival stamps are kept for this many recent events, indexed by the low bits of their
#: MoldUDP64 sequence number: more than the book's input FIFO and pipeline can hold in flight.
ARRIVAL_BITS = 7

CYCLE_REGISTERS = (Status("now", "free-running cycle counter (64 bits, the MAC clock)"),)


class CycleCounter(wiring.Component):
    """A free-running 64-bit count of clock cycles since reset."""

    now: Out(64)

    def __init__(self):
        self.registers = CYCLE_REGISTERS
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.now.eq(self.now + 1)
        return m


class TickToTrade(wiring.Component):
    """Feed handler, order book, strategies, risk gate and order encoder, with a register bank.

    Parameters
    ----------
    identity : the design identity served at ``id.identity`` (see `tickwire.hdl.platform.device`)
    book : `BookParameters` of the order book; per-symbol tables downstream have one entry per
        book slot (``book.symbols``)
    feed : keyword arguments of `FeedHandler`

    Ports
    -----
    rx : In(MacBeat stream, always ready), the MAC client receive port
    tx : Out(MacBeat stream), the MAC client transmit port: order frames
    bus : In(register bus), see `tickwire.hdl.platform.registers`

    Latency, last byte of the triggering message at ``rx`` to the first byte of its order at
    ``tx``, with nothing queued: 15 cycles = feed handler 3 + book 5 + taker 3 + alignment
    `ALIGNMENT_CYCLES` 1 + risk gate 3 + order encoder 0 (pairs: 6 more). Measured by
    ``make bench`` (``t2t.*``) and by the encoder's own statistics.

    Arrival stamps are kept by the low `ARRIVAL_BITS` bits of the MoldUDP64 sequence number;
    with several feeds running at once, two feeds' messages with the same low bits within
    that window share a slot, and an order's logged arrival (used only for the latency
    statistics) may be the other message's.
    """

    def __init__(self, *, identity=0, book=None, feed=None):
        self.book_parameters = p = book or BookParameters()
        self.feed_parameters = dict(feed or {})
        self.feed = FeedHandler(**self.feed_parameters)
        self.book = BookControl(p)
        self.strategy = StrategyEngine(p)
        self.risk = RiskGate(RiskParameters(symbols=p.symbols), book=p)
        self.order = OrderEncoder(slots=p.symbols)
        self.clock = CycleCounter()
        self.register_map = RegisterMap([
            Block(name, component, component.registers) for name, component in (
                ("feed", self.feed), ("book", self.book), ("strategy", self.strategy),
                ("risk", self.risk), ("order", self.order), ("clock", self.clock))])
        self.bank = RegisterBank(self.register_map, identity)
        super().__init__({
            "rx": In(mac_rx_signature()),
            "tx": Out(mac_tx_signature()),
            "bus": In(bus_signature(self.register_map.address_width)),
        })

    def elaborate(self, platform):
        m = Module()
        feed, book, strategy, risk, order = (self.feed, self.book, self.strategy, self.risk,
                                             self.order)
        for name in ("feed", "book", "strategy", "risk", "order", "clock", "bank"):
            m.submodules[name] = getattr(self, name)
        now = self.clock.now

        wiring.connect(m, wiring.flipped(self.rx), feed.rx)
        wiring.connect(m, wiring.flipped(self.bus), self.bank.bus)
        connect_bank(m, self.bank, self.register_map)

        # Raw events to the book and to the strategies, BookUpdates to the strategies and the
        # risk gate: every sink is always ready, so one stream feeds several.
        m.d.comb += book.updates.ready.eq(1)
        for source, sinks in ((feed.events, (book.events, strategy.events)),
                              (book.updates, (strategy.updates, risk.updates))):
            for sink in sinks:
                if sink.payload.shape() != source.payload.shape():   # a silent re-slice
                    raise TypeError(f"{sink} takes {sink.payload.shape()}, not "
                                    f"{source.payload.shape()}")
                m.d.comb += [sink.valid.eq(source.valid), sink.payload.eq(source.payload)]

        # Arrival stamps: the cycle an event's last byte was at rx, by sequence number, put
        # into the intents on their way to the risk gate.
        m.submodules.arrivals = arrivals = memory.Memory(shape=64, depth=1 << ARRIVAL_BITS,
                                                         init=[])
        stamp_write = arrivals.write_port()
        stamp_read = arrivals.read_port(domain="comb")
        m.d.comb += [stamp_write.en.eq(feed.events.valid),
                     stamp_write.addr.eq(feed.events.payload.sequence[:ARRIVAL_BITS]),
                     stamp_write.data.eq(now - FEED_LATENCY_CYCLES),
                     stamp_read.addr.eq(strategy.intents.payload.sequence[:ARRIVAL_BITS])]
        # The risk gate's collar reference for a BookUpdate is ready UPDATE_DELAY_CYCLES after
        # it; intents that a strategy decides sooner are held until then (`ALIGNMENT_CYCLES`),
        # so that every intent is checked against the BBO it was decided on.
        m.d.comb += strategy.intents.ready.eq(1)
        valid, payload = strategy.intents.valid, Signal.like(strategy.intents.payload)
        m.d.comb += [payload.eq(strategy.intents.payload), payload.arrival.eq(stamp_read.data)]
        for stage in range(ALIGNMENT_CYCLES):
            held_valid = Signal(name=f"intent_valid_{stage}")
            held = Signal.like(payload, name=f"intent_{stage}")
            m.d.sync += [held_valid.eq(valid), held.eq(payload)]
            valid, payload = held_valid, held
        m.d.comb += [risk.intents.valid.eq(valid), risk.intents.payload.eq(payload)]

        wiring.connect(m, risk.orders, order.orders)
        m.d.comb += [order.kill.eq(risk.killed), order.now.eq(now)]
        wiring.connect(m, order.tx, wiring.flipped(self.tx))
        return m
