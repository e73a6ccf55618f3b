"""`TickToTrade`: the whole data path behind one register bank, MAC rx in, MAC tx out.

  rx ┬► FeedHandler ─► BookControl ─► StrategyEngine ─► RiskGate ─► OrderEncoder ┬► TxArbiter ─► tx
     │         └── raw events ─────────►┘        ▲                               │ orders first
     │                    BookUpdates ───────────┘ (BBO for the price collar)    │
     └► ControlResponder (the UDP control channel) ─── replies ─────────────────┘
           └─ bus ─► BusArbiter ◄─ bus (the host port: PCIe BAR, simulator)
                         └─► RegisterBank

Every block declares its host registers beside its ports (its ``registers`` attribute); the
`RegisterMap` of all blocks gives the `RegisterBank` on the bus, the host driver's names and
the committed register map documents. The bank has two masters: the host port ``bus`` and
the UDP control channel (`tickwire.hdl.net.control`), which locks the bus for each request's
operations (``bus_busy``). A free-running cycle counter (`CycleCounter`) times
everything: the order encoder logs, per order, the cycle the triggering message's last byte
was at rx and the cycle its frame started at tx.
"""

from types import SimpleNamespace

from amaranth.hdl import Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.book.control import BookControl
from tickwire.hdl.book.records import BookParameters
from tickwire.hdl.feed.handler import FEED_LATENCY_CYCLES, FeedHandler
from tickwire.hdl.net.control import (
    CONTROL_REGISTERS,
    ControlDefaults,
    ControlResponder,
    control_signature,
)
from tickwire.hdl.net.mac import mac_rx_signature, mac_tx_signature
from tickwire.hdl.net.tx_arbiter import TxArbiter
from tickwire.hdl.order.encoder import OrderEncoder
from tickwire.hdl.platform.bus_arbiter import BUS_REGISTERS, BusArbiter, bus_arbiter_signature
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

#: Cycles the book-triggered taker's intents wait in the strategy engine (``taker_delay``), so
#: that the risk gate's collar reference already includes the BookUpdate an intent was decided
#: on (the taker decides in `TAKER_LATENCY_CYCLES`). The event-triggered taker's intents do
#: not wait: their collar reference is the BBO before their event.
ALIGNMENT_CYCLES = max(0, UPDATE_DELAY_CYCLES - TAKER_LATENCY_CYCLES)
# The event taker compares an Add, EVENT_LOOKUP_CYCLES after it arrived, with the BookUpdates
# valid before then; its intent reaches the gate TAKER_LATENCY_CYCLES later, when the gate's
# collar reference holds the BookUpdates valid UPDATE_DELAY_CYCLES before: the same ones.
if TAKER_LATENCY_CYCLES + 1 != UPDATE_DELAY_CYCLES:
    raise ImportError("the event taker's BBO and the risk gate's collar reference differ")

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
    control : `ControlDefaults` of the UDP control channel (its reset values)

    Ports
    -----
    rx : In(MacBeat stream, always ready), the MAC client receive port
    tx : Out(MacBeat stream), the MAC client transmit port: order frames, and control replies
        between them (orders first, whole frames: a reply never delays an order by more than
        the rest of a reply frame already started)
    bus : In(register bus), see `tickwire.hdl.platform.registers`: the host port (PCIe BAR,
        the simulator); tie its strobes to 0 on a board with no such port
    bus_busy : Out(1), high while a control request holds the bus: a host-port master waits
        for it to be low before each access (an access made anyway is dropped and counted in
        ``bus.counters.refused``)

    Latency, last byte of the triggering message at ``rx`` to the first byte of its order at
    ``tx``, with nothing queued: event-triggered taker (TAKER_EVENT) 11 cycles = feed handler
    3 + subscription lookup 2 + taker 3 + risk gate 3 + order encoder 0; book-triggered taker
    15 cycles = feed handler 3 + book 5 + taker 3 + alignment `ALIGNMENT_CYCLES` 1 + risk gate
    3 + order encoder 0 (pairs: 6 more than that). Measured by ``make bench`` (``t2t.*``) and
    by the encoder's own statistics.

    The strategy engine's copy of the subscription map is written with the book's own
    subscription strobes (the same cycle the bank pulses them; the book applies them once its
    pipeline is empty): subscribe before arming.

    Arrival stamps are kept by the low `ARRIVAL_BITS` bits of the MoldUDP64 sequence number;
    with several feeds running at once, two feeds' messages with the same low bits within
    that window share a slot, and an order's logged arrival (used only for the latency
    statistics) may be the other message's.
    """

    def __init__(self, *, identity=0, book=None, feed=None, control=None):
        self.book_parameters = p = book or BookParameters()
        self.feed_parameters = dict(feed or {})
        self.control_defaults = c = ControlDefaults(*(control or ControlDefaults()))
        self.feed = FeedHandler(**self.feed_parameters)
        self.book = BookControl(p)
        self.strategy = StrategyEngine(p, taker_delay=ALIGNMENT_CYCLES)
        self.risk = RiskGate(RiskParameters(symbols=p.symbols), book=p)
        self.order = OrderEncoder(slots=p.symbols)
        self.clock = CycleCounter()
        blocks = [("feed", self.feed), ("book", self.book), ("strategy", self.strategy),
                  ("risk", self.risk), ("order", self.order), ("clock", self.clock)]

        def register_map(control, bus):
            return RegisterMap([Block(name, component, component.registers)
                                for name, component in (*blocks, ("control", control),
                                                        ("bus", bus))])
        # The responder and the arbiter are sized by the map they are part of: size it with
        # stand-ins first (only their signatures matter, and only their bus ports depend on
        # the width).
        width = register_map(
            SimpleNamespace(signature=control_signature(24), registers=CONTROL_REGISTERS),
            SimpleNamespace(signature=bus_arbiter_signature(24), registers=BUS_REGISTERS),
        ).address_width
        self.control = ControlResponder(width, mac=c.mac, ip=c.ip, port=c.port,
                                        host_ip=c.host_ip, token=c.token)
        self.bus_arbiter = BusArbiter(width)
        self.register_map = register_map(self.control, self.bus_arbiter)
        self.bank = RegisterBank(self.register_map, identity)
        self.tx_arbiter = TxArbiter(2)
        super().__init__({
            "rx": In(mac_rx_signature()),
            "tx": Out(mac_tx_signature()),
            "bus": In(bus_signature(width)),
            "bus_busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        feed, book, strategy, risk, order = (self.feed, self.book, self.strategy, self.risk,
                                             self.order)
        for name in ("feed", "book", "strategy", "risk", "order", "clock", "control",
                     "bus_arbiter", "bank", "tx_arbiter"):
            m.submodules[name] = getattr(self, name)
        now = self.clock.now

        # Every received frame to the feed handler and to the control responder (both
        # always ready); the responder masters the bank beside the host port.
        for sink in (feed.rx, self.control.rx):
            m.d.comb += [sink.valid.eq(self.rx.valid), sink.payload.eq(self.rx.payload)]
        arbiter = self.bus_arbiter
        wiring.connect(m, wiring.flipped(self.bus), arbiter.host)
        wiring.connect(m, self.control.bus, arbiter.control)
        m.d.comb += [arbiter.lock.eq(self.control.bus_lock), self.bus_busy.eq(arbiter.busy)]
        wiring.connect(m, arbiter.out, self.bank.bus)
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
        # The strategy engine holds the book taker's intents for the risk gate's collar
        # reference (`ALIGNMENT_CYCLES`); the book's subscriptions go to its own map too.
        m.d.comb += [strategy.intents.ready.eq(1), strategy.subscribe.eq(book.subscribe)]
        payload = Signal.like(strategy.intents.payload)
        m.d.comb += [payload.eq(strategy.intents.payload), payload.arrival.eq(stamp_read.data)]
        m.d.comb += [risk.intents.valid.eq(strategy.intents.valid),
                     risk.intents.payload.eq(payload)]

        wiring.connect(m, risk.orders, order.orders)
        m.d.comb += [order.kill.eq(risk.killed), order.now.eq(now)]
        wiring.connect(m, order.tx, self.tx_arbiter.i0)
        wiring.connect(m, self.control.tx, self.tx_arbiter.i1)
        wiring.connect(m, self.tx_arbiter.out, wiring.flipped(self.tx))
        return m
