"""The strategy engine: routes each book slot to a strategy and merges their intents."""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tickwire.hdl.book.control import subscribe_write_layout
from tickwire.hdl.book.records import BookParameters
from tickwire.hdl.counters import count, counter_layout
from tickwire.hdl.feed.events import BookEventKind
from tickwire.hdl.platform.registers import Counters, Status, Strobe
from tickwire.hdl.signals import wire
from tickwire.hdl.strategy.pairs import (
    PAIRS_LATENCY_CYCLES,
    PairsMeanReversion,
    pair_write_layout,
)
from tickwire.hdl.strategy.records import OrderIntent, strategy_signature
from tickwire.hdl.strategy.taker import (
    TAKER_LATENCY_CYCLES,
    ThresholdTaker,
    event_input_layout,
    table_write_layout,
    taker_write_layout,
    written_entry,
)

#: Intents the output queue holds (a power of two, at least 4).
QUEUE_DEPTH = 16
#: Cycles from a BookEvent valid at ``events`` to its slot known (the subscription map read,
#: then registered: block RAM out straight into the taker's table addresses, through the
#: map's bank select, placed at 125 MHz on the ECP5).
EVENT_LOOKUP_CYCLES = 2
#: Cycles from a BookEvent valid at ``events`` to the event taker's intent valid at
#: ``intents`` (with an empty queue).
EVENT_TAKER_LATENCY_CYCLES = EVENT_LOOKUP_CYCLES + TAKER_LATENCY_CYCLES

#: One counter per reason; each counts one per occurrence.
STRATEGY_COUNTERS = (
    "updates",               # BookUpdates taken
    "taker_fired",           # taker intents (one per side fired; both triggers)
    "taker_cooldown",        # a taker side eligible but refused: same price or within cooldown
    #                          (both triggers)
    "taker_one_sided",       # updates of an enabled taker slot whose book is not two-sided
    "pairs_fired",           # pair trades decided (two intents each)
    "pairs_one_sided",       # updates of a pair leg while a leg has no two-sided BBO
    "pairs_position_limit",  # pair entry signals refused at the position limit
    "intents",               # intents that left at ``intents``
    "intents_lost",          # intents the output queue had no room for
)


class StrategyMode(enum.Enum, shape=2):
    OFF = 0
    TAKER = 1          # threshold taker on BookUpdates
    PAIRS = 2
    TAKER_EVENT = 3    # threshold taker on the raw Add events (see `ThresholdTaker`)


def selection_layout(pairs):
    """A slot's routing: a strategy, and for PAIRS, which pair and which leg (0 A, 1 B)."""
    return data.StructLayout({"mode": StrategyMode, "pair": unsigned(max(1, (pairs - 1)
                                                                         .bit_length())),
                              "leg": unsigned(1)})


class Alarms(data.Struct):
    """Sticky until the host writes ``clear_alarms``."""
    lost: 1             # an intent was lost: the output could not take it
    position_limit: 1   # a pair reached its position limit and refused a signal


#: The host's view of `StrategyEngine`'s ports (see `tickwire.hdl.platform.registers`).
STRATEGY_REGISTERS = (
    Strobe("selection", "route a book slot: write=1, index=slot, mode (OFF/TAKER/PAIRS/"
           "TAKER_EVENT), pair, leg (0 A, 1 B); applies to updates after the write"),
    Strobe("taker_params", "threshold taker entry: write=1, index=slot, enable, buy_price, "
           "sell_price (Price(4)), quantity, cooldown (cycles); resets the slot's fire memory"),
    Strobe("pair_params", "pairs entry: write=1, index=pair, enable, slot_a, slot_b, beta "
           "(16.16), offset (two's complement), entry, exit (doubled Price(4) << 16), "
           "quantity, max_position; resets the pair's position"),
    Strobe("clear_alarms", "write 1: clear the sticky alarms"),
    Status("alarms", "sticky alarms: lost (an intent was lost), position_limit"),
    Counters("counters", "32-bit wrapping event counter"),
)


def _bank_layout():
    """An intent as queued: without ``arrival`` (strategies leave it zero)."""
    return data.StructLayout({name: field.shape for name, field in data.Layout.cast(OrderIntent)
                              if name != "arrival"})


class StrategyEngine(wiring.Component):
    """The strategies of `TickToTrade`: `ThresholdTaker` (on BookUpdates, and a second one on
    the raw events) and `PairsMeanReversion` behind one `strategy_signature`, each book slot
    routed to one of them by a host table.

    Routing: a block-RAM table of one entry per slot (`selection_layout`: OFF, TAKER,
    TAKER_EVENT, or PAIRS with the pair and the leg), read the cycle an update arrives; a write
    presented at cycle w applies to updates arriving after w (as the strategies' own tables
    do). Both takers take every ``taker_params`` write (one table each, same contents).

    Events: an Add (ITCH A or F) with non-zero shares at ``events`` looks up its slot in a
    copy of the book's subscription map (``locates`` entries; written through ``subscribe``,
    which `TickToTrade` drives with the book's own subscription writes; a write at cycle w
    applies to events arriving after w), then goes to the event-triggered taker
    `EVENT_LOOKUP_CYCLES` after it arrived, which reads the routing there: an event arriving
    at e is evaluated against routing and taker writes made before e + `EVENT_LOOKUP_CYCLES`.
    Other events, and Adds of locates not subscribed or out of range, are ignored.

    Merging: the event taker offers at most one intent per cycle (an Add has one side), the
    book taker up to two (buy, then sell), the pairs strategy two legs together. They go into
    one queue of ``queue_depth`` intents, in this order each cycle: event taker, taker buy,
    taker sell, then both pair legs or neither (a pair is never split); an intent finds room
    if the queue as it was at the start of the cycle, plus those taken before it in the
    cycle, holds fewer than ``queue_depth``. An intent without room is lost, counted
    (``intents_lost``) and alarmed (``lost``): never silently. The queue's head, which may be
    an intent offered this very cycle (the queue is bypassed when empty), is valid at
    ``intents`` and leaves when ``ready``; so the two legs of a pair leave on consecutive
    cycles when the consumer is ready. The queue is a LUT RAM of one entry per cycle that took
    anything (the five lanes as they are and the mask of those taken: no data mux on the
    write path), so that five intents can be taken in one cycle.

    ``taker_delay`` holds the book taker's intents that many cycles more before the queue
    (`TickToTrade` sets it so that the risk gate's collar reference already holds the
    BookUpdate they were decided on); the event taker's are not held (their collar
    reference is the BBO before their event).

    Ports
    -----
    updates : In(BookUpdate stream, always ready)
    events : In(BookEvent stream, always ready): for the event taker
    intents : Out(OrderIntent stream)
    subscribe : In(the book's subscription write: write, locate, slot, enable)
    selection : In(`table_write_layout` of `selection_layout`), Strobe
    taker_params : In(`taker.taker_write_layout`), Strobe
    pair_params : In(`pairs.pair_write_layout`), Strobe
    counters : Out(one 32-bit counter per name in `STRATEGY_COUNTERS`)
    alarms : Out(Alarms), clear_alarms : In(1)

    ``registers`` declares them for the register bank (`STRATEGY_REGISTERS`).

    Latency, to intent valid at ``intents`` with an empty queue: event taker 5 cycles from the
    event valid at ``events`` (`EVENT_TAKER_LATENCY_CYCLES`: lookup 2, taker 3); book taker 3
    + ``taker_delay`` cycles from the update valid at ``updates`` (both sides: the sell a
    cycle later), pairs 9 cycles (legs at 9 and 10). One update and one event per cycle
    sustained, any mix of slots; nothing stalls.

    Timing (LFE5UM5G-85F, nextpnr out of context, default build: 1024 slots, 16,384 locates,
    64 pairs; seed 1): 143.7 MHz, 7.7k LUT4, 8.1k FF, 78 DP16KD, 4 MULT18X18D (131.4 MHz
    before the pairs strategy's position read was registered out of its block RAM, 152 MHz
    before the event taker, with 39 DP16KD). The event taker's tables (the subscription map,
    ``locates`` x (1 + slot bits); a second taker table set; the BBO table) double the block
    RAM, which spreads the placement: every worst path now leaves a block RAM 1.4-2.3 ns of
    routing away (clock-to-out 1.4 ns) into a 16-bit compare registered at once, the event
    taker's side memory into its deadline compare (7.0 ns, 4.7 of them routing). Part of each
    is yosys's read-first emulation (a write-data register and a mux after the block RAM read,
    because the table's write may hit the address read in the same cycle), which the takers'
    and the pairs' memories do not need: their collisions are forwarded from registers. Already
    off the critical path: the map's output registered before it addresses the taker's tables
    (125.3 MHz without), the queue's ``valid`` from its level instead of its LUT-RAM read
    (129.7), the compares after block RAM on registered 16-bit pieces (133.7), the pairs
    position read a cycle earlier and registered (131.4 -> 142.0), the taker's epoch compare
    against its forwarded fire in pieces (144.3).
    """

    def __init__(self, parameters=None, *, pairs=64, queue_depth=QUEUE_DEPTH, taker_delay=0,
                 **overrides):
        self.p = p = (parameters or BookParameters())._replace(**overrides).check()
        if queue_depth < 4 or queue_depth & (queue_depth - 1):
            raise ValueError("queue_depth must be a power of two and at least 4")
        if taker_delay < 0:
            raise ValueError("taker_delay must be >= 0")
        self.pairs, self.queue_depth, self.taker_delay = pairs, queue_depth, taker_delay
        self.pair_bits = max(1, (pairs - 1).bit_length())
        self.registers = STRATEGY_REGISTERS
        self.taker = ThresholdTaker(p)
        self.event_taker = ThresholdTaker(p, trigger="event")
        self.pair_strategy = PairsMeanReversion(p, pairs=pairs)
        members = dict(strategy_signature(p).members)
        members.update({
            "subscribe": In(subscribe_write_layout(p)),
            "selection": In(table_write_layout(p.slot_bits, selection_layout(pairs))),
            "taker_params": In(taker_write_layout(p)),
            "pair_params": In(pair_write_layout(p, pairs)),
            "counters": Out(counter_layout(STRATEGY_COUNTERS)),
            "alarms": Out(Alarms),
            "clear_alarms": In(1),
        })
        super().__init__(members)

    def elaborate(self, platform):
        p = self.p
        m = Module()
        m.submodules.taker = taker = self.taker
        m.submodules.event_taker = fast = self.event_taker
        m.submodules.pairs = pairs = self.pair_strategy
        hits = {}

        # --- routing ------------------------------------------------------------------------
        sel_shape = selection_layout(self.pairs)
        m.submodules.routes = routes = Memory(shape=sel_shape, depth=p.symbols, init=[])
        rrd, erd, rwr = routes.read_port(), routes.read_port(), routes.write_port()
        s = self.selection
        m.d.comb += [rwr.en.eq(s.write), rwr.addr.eq(s.index),
                     rwr.data.eq(written_entry(s, sel_shape, p.slot_bits))]
        u = self.updates
        m.d.comb += rrd.addr.eq(u.p.slot)
        route = rrd.data
        m.d.comb += [
            taker.updates.valid.eq(u.valid), taker.updates.payload.eq(u.payload),
            pairs.updates.valid.eq(u.valid), pairs.updates.payload.eq(u.payload),
            fast.updates.valid.eq(u.valid), fast.updates.payload.eq(u.payload),
            taker.active.eq(route.mode == StrategyMode.TAKER),
            pairs.route.active.eq(route.mode == StrategyMode.PAIRS),
            pairs.route.pair.eq(route.pair), pairs.route.leg.eq(route.leg),
            taker.write.eq(self.taker_params), fast.write.eq(self.taker_params),
            pairs.write.eq(self.pair_params),
        ]

        # --- events: the subscription map, then the event taker -----------------------------
        entry = data.StructLayout({"valid": 1, "slot": unsigned(p.slot_bits)})
        m.submodules.subscriptions = subs = Memory(shape=entry, depth=p.locates, init=[])
        srd, swr = subs.read_port(), subs.write_port()
        sub = self.subscribe
        m.d.comb += [swr.en.eq(sub.write & (sub.locate[p.locate_bits:] == 0)),
                     swr.addr.eq(sub.locate[:p.locate_bits]),
                     swr.data.valid.eq(sub.enable), swr.data.slot.eq(sub.slot)]
        ev = self.events
        e1 = Signal(event_input_layout(p))
        e1_add = Signal()
        m.d.comb += srd.addr.eq(ev.p.locate[:p.locate_bits])
        m.d.sync += [
            e1_add.eq(ev.valid & (ev.p.kind == BookEventKind.ADD) & (ev.p.shares != 0)
                      & (ev.p.locate[p.locate_bits:] == 0)),
            e1.locate.eq(ev.p.locate), e1.side.eq(ev.p.side), e1.price.eq(ev.p.price),
            e1.sequence.eq(ev.p.sequence),
        ]
        e2 = Signal(event_input_layout(p))
        e2_add = Signal()
        m.d.sync += [e2.eq(e1), e2.slot.eq(srd.data.slot), e2.add.eq(1),
                     e2_add.eq(e1_add & srd.data.valid)]
        m.d.comb += [
            fast.events.valid.eq(e2_add), fast.events.p.eq(e2),
            erd.addr.eq(e2.slot),
            fast.active.eq(erd.data.mode == StrategyMode.TAKER_EVENT),
        ]

        # The book taker's intents, held `taker_delay` cycles.
        book_lanes = [taker.buy, taker.sell]
        for stage in range(self.taker_delay):
            held = []
            for k, lane in enumerate(book_lanes):
                v = Signal(name=f"taker{k}_valid_{stage}")
                d = Signal(OrderIntent, name=f"taker{k}_{stage}")
                m.d.sync += [v.eq(lane.valid), d.eq(lane.p)]
                held.append((v, d))
            book_lanes = [_Lane(v, d) for v, d in held]
        # The event taker: one side per event, one lane.
        fast_lane = _Lane(wire(m, fast.buy.valid | fast.sell.valid, "event_valid"),
                          Signal(OrderIntent, name="event_intent"))
        m.d.comb += fast_lane.p.eq(Mux(fast.buy.valid, fast.buy.p.as_value(),
                                       fast.sell.p.as_value()))

        # --- the output queue ---------------------------------------------------------------
        # One entry per cycle that took anything: the five lanes as they are (no data mux on
        # the write path) and the mask of those taken. The head entry's intents leave in lane
        # order; `consumed` marks those gone. Room is counted in intents (`level`), and every
        # entry holds at least one, so `queue_depth` entries suffice.
        depth = self.queue_depth
        shape = _bank_layout()
        lanes = [fast_lane, *book_lanes, pairs.leg_a, pairs.leg_b]
        n_lanes = len(lanes)
        group = data.StructLayout({"lanes": data.ArrayLayout(shape, n_lanes),
                                   "mask": n_lanes})
        m.submodules.queue = queue = Memory(shape=group, depth=depth, init=[])
        rd, wr = queue.read_port(domain="comb"), queue.write_port()
        level = Signal(range(depth + 1))
        wptr = Signal(range(depth))
        rptr = Signal(range(depth))
        consumed = Signal(n_lanes)

        # room[k]: the queue has room for k more (registered, from the next level).
        room = {k: Signal(name=f"room{k}", init=1) for k in range(1, n_lanes + 1)}
        rooms = Array([Signal(name="room0", init=1), *room.values()])
        takes, before = [], []
        for name, lane in (("take_event", fast_lane), ("take_buy", book_lanes[0]),
                           ("take_sell", book_lanes[1])):
            so_far = sum(before) if before else 0
            take = wire(m, lane.valid & rooms[so_far + 1], name)
            takes.append(take)
            before.append(take)
        take_pair = wire(m, pairs.leg_a.valid & rooms[sum(before) + 2], "take_pair")
        takes += [take_pair, take_pair]
        mask = wire(m, Cat(*takes), "mask")
        taken = wire(m, sum(before) + 2 * take_pair, "taken", unsigned(3))
        arriving = Signal(group)
        for n, lane in enumerate(lanes):
            m.d.comb += [getattr(arriving.lanes[n], name).eq(getattr(lane.p, name))
                         for name, _ in shape]
        m.d.comb += [arriving.mask.eq(mask), wr.en.eq(mask != 0), wr.addr.eq(wptr),
                     wr.data.eq(arriving), rd.addr.eq(rptr)]

        head = Signal(group)
        m.d.comb += head.eq(Mux(level != 0, rd.data.as_value(), arriving.as_value()))
        left = wire(m, head.mask & ~consumed, "left")
        first = Signal(n_lanes)
        for n in reversed(range(n_lanes)):
            with m.If(left[n]):
                m.d.comb += first.eq(1 << n)
        out = self.intents
        shown = Signal(shape)
        for n in range(n_lanes):
            with m.If(first[n]):
                m.d.comb += shown.eq(head.lanes[n])
        # The head entry always holds an intent not yet consumed (an entry leaves with its
        # last one), so ``valid`` needs no queue read: the room flags' path starts at `level`.
        m.d.comb += [out.valid.eq((level != 0) | (mask != 0)), out.p.arrival.eq(0)]
        m.d.comb += [getattr(out.p, name).eq(getattr(shown, name)) for name, _ in shape]
        pop = wire(m, out.valid & out.ready, "pop")
        with m.If(pop):
            with m.If((left & ~first) == 0):
                m.d.sync += [rptr.eq(rptr + 1), consumed.eq(0)]
            with m.Else():
                m.d.sync += consumed.eq(consumed | first)
        following = wire(m, level + taken - pop, "following", unsigned(len(level)))
        m.d.sync += [level.eq(following), wptr.eq(wptr + (mask != 0))]
        m.d.sync += [room[k].eq(following <= depth - k) for k in room]

        # --- counters and alarms ------------------------------------------------------------
        count(m, self.counters, "updates", u.valid)
        count(m, self.counters, "taker_fired", taker.fired[0], taker.fired[1], fast.fired[0],
              fast.fired[1])
        count(m, self.counters, "taker_cooldown", taker.cooldown[0], taker.cooldown[1],
              fast.cooldown[0], fast.cooldown[1])
        count(m, self.counters, "taker_one_sided", taker.one_sided)
        count(m, self.counters, "pairs_fired", pairs.fired)
        count(m, self.counters, "pairs_one_sided", pairs.one_sided)
        count(m, self.counters, "pairs_position_limit", pairs.position_limit)
        count(m, self.counters, "intents", pop)
        lost = [lane.valid & ~take for lane, take in zip(lanes, takes, strict=True)]
        count(m, self.counters, "intents_lost", *lost)
        hits["lost"] = Cat(*lost).any()
        alarms = self.alarms
        with m.If(self.clear_alarms):
            m.d.sync += alarms.eq(0)
        with m.If(hits["lost"]):
            m.d.sync += alarms.lost.eq(1)
        with m.If(pairs.position_limit):
            m.d.sync += alarms.position_limit.eq(1)
        return m


class _Lane:
    """An intent source as the queue sees it: ``valid`` and the payload ``p``."""

    def __init__(self, valid, p):
        self.valid, self.p = valid, p


__all__ = ["StrategyEngine", "StrategyMode", "STRATEGY_COUNTERS", "STRATEGY_REGISTERS",
           "QUEUE_DEPTH", "TAKER_LATENCY_CYCLES", "PAIRS_LATENCY_CYCLES",
           "EVENT_LOOKUP_CYCLES", "EVENT_TAKER_LATENCY_CYCLES", "selection_layout"]
