"""The pre-trade risk gate: `OrderIntent`s in, orders (or counted, logged rejects) out."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tickwire.hdl.book.records import BookParameters, update_layout
from tickwire.hdl.counters import count, counter_layout
from tickwire.hdl.feed.events import Side
from tickwire.hdl.platform.registers import Config, Counters, Fifo, Status, Strobe
from tickwire.hdl.risk.records import (
    BPS_BITS,
    CAP_BITS,
    COLLAR_SCALE,
    REASONS,
    RISK_COUNTERS,
    ROOM_BITS,
    TIME_BITS,
    TOTAL_BITS,
    Alarms,
    AutoKillConfig,
    KillReason,
    LimitsEntry,
    RejectReason,
    RejectRecord,
    RiskParameters,
    ThrottleConfig,
    fill_layout,
    limits_write_layout,
    position_write_layout,
    read_request_layout,
    readback_layout,
)
from tickwire.hdl.signals import wire
from tickwire.hdl.strategy.records import OrderIntent

__all__ = ["RiskGate", "RejectReason", "KillReason", "RiskParameters", "RISK_REGISTERS",
           "RISK_LATENCY_CYCLES", "KILL_BOUND_CYCLES", "UPDATE_DELAY_CYCLES", "HOST_OP_CYCLES"]

#: Cycles from an intent valid at ``intents`` to its order valid at ``orders``.
RISK_LATENCY_CYCLES = 3
#: ``orders.valid`` is low from this many cycles after the cycle the ``kill`` strobe is high.
KILL_BOUND_CYCLES = 1
#: A BookUpdate valid in cycle u is the collar reference of intents valid from cycle u + 4.
UPDATE_DELAY_CYCLES = 4
#: Cycles the host engine spends per queued host operation.
HOST_OP_CYCLES = 4

#: The host's view of `RiskGate`'s ports (see `tickwire.hdl.platform.registers`).
RISK_REGISTERS = (
    Config("armed", "write 1 to arm: nothing passes while 0 (the reset value)"),
    Strobe("kill", "write 1: set the kill switch (nothing passes until `clear_kill`)"),
    Strobe("clear_kill", "write 1: clear the kill switch and its reason"),
    Status("killed", "1 while the kill switch is set"),
    Status("kill_reason", "why the kill switch was set: HOST or REJECT_RATE"),
    Config("slot_throttle", "per-slot order-rate bucket: one token per `interval` cycles, "
           "`burst` tokens"),
    Config("global_throttle", "gate-wide order-rate bucket: one token per `interval` cycles, "
           "`burst` tokens"),
    Config("auto_kill", "kill after `rejects` rejects within one window of `window` cycles "
           "(`rejects` 0: never)"),
    Strobe("limits", "write a slot's limits (`write` 1): enabled, max quantity, max notional, "
           "collar, position limit"),
    Strobe("fill", "post a fill and/or release (`write` 1): open -= filled + released, "
           "position +-= filled"),
    Strobe("set_position", "set a slot's position (`write` 1), e.g. at start of day"),
    Strobe("read_request", "`read` 1: read a slot's position and open quantities into "
           "`readback`"),
    Status("readback", "the last `read_request`'s answer; `count` moves on each answer"),
    Strobe("clear_alarms", "write 1: clear the sticky alarms"),
    Status("alarms", "sticky alarms: killed, log_overflow, host_overflow, order_lost"),
    Counters("counters", "32-bit wrapping counters: intents, passes, one per reject reason, "
             "losses"),
    Fifo("rejects", "every reject: the intent and the reason; an entry lost to a full FIFO is "
         "counted in `risk.counters.log_overflow`", overflow="counters.log_overflow"),
)


class _Op(enum.Enum, shape=2):
    LIMITS = 0
    FILL = 1
    POSITION = 2
    READ = 3


def _op_layout(p):
    return data.StructLayout({
        "kind": _Op, "index": unsigned(p.slot_bits),
        "args": data.UnionLayout({
            "limits": LimitsEntry,
            "fill": data.StructLayout({"side": Side, "filled": unsigned(32),
                                       "released": unsigned(32)}),
            "position": signed(TOTAL_BITS)})})


_STATE = data.StructLayout({"sent_buy": unsigned(TOTAL_BITS), "sent_sell": unsigned(TOTAL_BITS),
                            "tat": unsigned(TIME_BITS)})
_ACCOUNT = data.StructLayout({"position": signed(TOTAL_BITS), "done_buy": unsigned(TOTAL_BITS),
                              "done_sell": unsigned(TOTAL_BITS),
                              "limit": unsigned(TOTAL_BITS)})
_ROOMS = data.StructLayout({"buy": signed(ROOM_BITS), "sell": signed(ROOM_BITS)})
_CHECKS = data.StructLayout({"enabled": 1, "max_quantity": unsigned(32),
                             "max_notional": unsigned(64), "collar_bps": unsigned(BPS_BITS)})
_REFS = data.StructLayout({"bps": unsigned(BPS_BITS), "bid_ok": 1, "ask_ok": 1,
                           "buy_cap": unsigned(CAP_BITS), "sell_floor": unsigned(CAP_BITS)})


def _late(m, name, value):
    """`value`, registered: checks computed in P1 are used in P2."""
    sig = Signal(value.shape(), name=name)
    m.d.sync += sig.eq(value)
    return sig


def _at_most(m, name, a, b):
    """``a <= b`` (unsigned), for the next cycle: ``a + ~b = a - b - 1`` is negative, through
    `_nonnegative` (two short carry chains, no equality trees, after block RAM)."""
    width = max(len(a), len(b)) + 2
    x, y = Signal(signed(width), name=f"{name}_a"), Signal(signed(width), name=f"{name}_b")
    m.d.comb += [x.eq(a), y.eq(b)]
    return ~_nonnegative(m, name, x, ~y, width)


def _nonnegative_sum(m, name, early, late, width):
    """Whether a sum of signed terms is >= 0, for the next cycle. Terms are (sign, value)
    pairs, `early` ones (from registers) and `late` ones (from block RAM): carry-save adders
    reduce the early terms to two, then take in each late term with one more LUT level; the
    final addition is split in halves (carry select), the halves' carries and signs are
    registered and chosen in the next cycle. Everything is `width`-bit two's complement (wide
    enough for the true sum)."""
    constant, vectors = 0, []
    for k, (sign, value) in enumerate(early + late):
        term = wire(m, value, f"{name}_t{k}", signed(width))
        if sign < 0:                   # -t = ~t + 1
            term, constant = wire(m, ~term, f"{name}_i{k}", signed(width)), constant + 1
        vectors.append(term)
    level = [0]

    def compress(a, b, c):
        s = wire(m, a ^ b ^ c, f"{name}_s{level[0]}", signed(width), keep=True)
        k = wire(m, ((a & b) | (a & c) | (b & c)) << 1, f"{name}_k{level[0]}", signed(width),
                 keep=True)
        level[0] += 1
        return [s, k]

    pool = [Const(constant, signed(width))] + vectors[:len(early)]
    while len(pool) > 2:
        pool = compress(*pool[:3]) + pool[3:]
    for term in vectors[len(early):]:
        pool = compress(*pool, term)
    return _nonnegative(m, name, *pool, width)


def _nonnegative(m, name, x, y, width):
    """``x + y >= 0`` (`width`-bit two's complement), for the next cycle: the addition split
    in halves (carry select), the low half's carry and both high-half signs registered."""
    h = width // 2
    carry = _late(m, f"{name}_carry", (x[:h] + y[:h])[h])
    sign0 = _late(m, f"{name}_sign0", (x[h:] + y[h:])[width - h - 1])
    sign1 = _late(m, f"{name}_sign1", (Cat(1, x[h:]) + Cat(1, y[h:]))[width - h])
    return ~Mux(carry, sign1, sign0)


def _room_left(m, name, room, sent, less, width):
    """``room - sent + less >= 0`` for the next cycle, with `room` and `sent` straight from
    block RAM (or a register) and `less` (minus the quantity) from a register: one level of
    carry-save adders, then `_nonnegative`."""
    a, b, c = (Signal(signed(width), name=f"{name}_{n}") for n in ("room", "sent", "less"))
    m.d.comb += [a.eq(room), b.eq(sent), c.eq(less)]
    b = ~b                                # -sent = ~sent + 1: the 1 is the carry vector's bit 0
    # Kept: one LUT3 per bit between the block RAM and the carry chains (left to itself,
    # yosys shares the XORs between the checks and puts three LUT levels there).
    x = wire(m, a ^ b ^ c, f"{name}_x", signed(width), keep=True)
    y = wire(m, Cat(1, ((a & b) | (a & c) | (b & c))[:width - 1]), f"{name}_y", signed(width),
             keep=True)
    return _nonnegative(m, name, x, y, width)


class RiskGate(wiring.Component):
    """Pre-trade risk checks on every `OrderIntent`, one per cycle, never stalling.

    Checks, in order (the first that fails is the reject's `RejectReason`): the gate is armed;
    the kill switch is clear; the slot exists; the slot's symbol is enabled; 0 < quantity <=
    max quantity; price * quantity <= max notional (64 bits, price in ITCH Price(4)); the price
    collar: a buy at most ``collar_bps`` basis points above the best ask, a sell at most
    ``collar_bps`` below the best bid, compared exactly as ``10000 * price <= ask * (10000 +
    bps)`` and ``10000 * price >= bid * (10000 - min(bps, 10000))`` (no BBO on that side, or
    a collar changed since the side's last BookUpdate: rejected, no reference); the
    worst-case position: buy ``position + open_buy + quantity <= position_limit``, sell
    ``-position + open_sell + quantity <= position_limit``; the slot's and then the gate's
    order-rate buckets; and finally the order encoder's ``ready``. An intent that passes
    everything becomes an order, adds its quantity to the slot's open buy or sell quantity
    and takes a token from both buckets.

    Tables (block RAM, one entry per book slot): limits (host), collar references (from
    BookUpdates), sent quantities and bucket times (the gate's), and the account (position,
    filled + released per side, position limit: the host's). Each table has one writer, so
    host fills never compete with intents for a write port: the gate keeps ``sent`` (the sum
    of quantities it passed), the host side keeps ``done`` (filled + released) and from it
    ``room = position_limit - position + done_buy`` (and ``+ position + done_sell`` for
    sells); the position check is ``sent + quantity <= room`` and ``open = sent - done``.
    Back-to-back intents on one slot see each other: the state written for an order is
    forwarded to the intent behind it (no stall).

    Order-rate buckets are token buckets in their virtual-scheduling (GCRA) form: a bucket of
    ``burst`` tokens refilled continuously at one per ``interval`` cycles is a theoretical
    arrival time ``tat``; an order at cycle ``t`` conforms iff ``tat <= t + (burst - 1) *
    interval``, and then ``tat = max(tat, t) + interval``. ``burst`` 0 passes nothing;
    ``interval`` 0 does not limit the rate (once a ``tat`` left in the future by an earlier
    configuration has passed). Per-slot buckets share one configuration.

    Host operations (``limits``, ``fill``, ``set_position``, ``read_request`` strobes) queue
    (``host_depth`` entries) for one engine that reads, updates and writes the host's tables,
    one operation per 4 cycles (`HOST_OP_CYCLES`); an operation arriving at a full queue (or
    two strobes in one cycle, which the register bank never does) is counted
    (``host_overflow``) and alarmed. A strobed operation is seen by intents valid from 5
    cycles after the strobe when the queue is empty. New limits, including the collar, take
    effect for the slot then; the collar references of a slot whose ``collar_bps`` changed
    are refused (``NO_REFERENCE``) until its next BookUpdate.

    Kill switch: set by the ``kill`` strobe (it rejects the intent deciding in the strobe's
    cycle already) or by the reject rate (``auto_kill.rejects`` rejects, not counting
    NOT_ARMED and KILLED, within one window of ``auto_kill.window`` cycles; windows are
    consecutive), cleared only by ``clear_kill``. ``killed`` is high from the cycle after the
    strobe, and `KILL_BOUND_CYCLES`: ``orders.valid`` is low from the cycle after the strobe
    on. A rate kill rejects intents from 2 cycles after the reject that reached the count.

    ``book``: the `BookParameters` of the book whose BookUpdates the gate reads (their layout
    depends on them); by default the default book with ``parameters.symbols`` slots.

    Ports
    -----
    intents : In(OrderIntent stream, always ready)
    updates : In(BookUpdate stream, always ready): each slot's best bid and ask (a side with
        zero shares has no BBO) become that slot's collar references `UPDATE_DELAY_CYCLES`
        later (``ask * (10000 + bps)`` and ``bid * (10000 - bps)``, multiplied in a pipeline).
    orders : Out(OrderIntent stream): ``valid`` and ``payload`` are registered; ``ready`` is
        read in the decision cycle, one cycle before the order is valid (an intent that finds
        it low is rejected, NOT_READY): the encoder must not drop ``ready`` in the cycle after
        it was high, unless it took an order in it (an order presented while ``ready`` is low
        is counted ``orders_lost`` and alarmed, never silently dropped).
    killed : Out(1), level: the order encoder starts no frame while it is high.
    armed, slot_throttle, global_throttle, auto_kill : In (configuration)
    kill, clear_kill, clear_alarms : In(1) strobes; kill_reason : Out(KillReason)
    limits, fill, set_position, read_request : In (strobes, see `records`);
        readback : Out(`records.readback_layout`)
    rejects : Out(stream of `RejectRecord`): a FIFO of ``log_depth`` entries to the host;
        a reject arriving at a full FIFO is counted (``log_overflow``) and alarmed.
    counters : Out(one 32-bit counter per name in `records.RISK_COUNTERS`); every intent is
        counted in ``intents`` and in exactly one of ``passes`` and the reasons.
    alarms : Out(Alarms)

    Latency: 3 cycles (`RISK_LATENCY_CYCLES`) from an intent valid at ``intents`` to its
    order valid at ``orders``, in three stages: P0, the intent's cycle: the tables are read
    and price * quantity is multiplied into four 16x16 partial products (DSPs), price * 10000
    too; P1: every check is one comparison against what came out of block RAM (the collar
    references were precomputed from BookUpdates, the position room by the host engine), the
    long ones split in halves, all registered; the checks on state that the intent ahead (then
    in P2) may change, position and buckets, are made for both of its outcomes; P2: the
    decision, from registers only (the outcomes chosen, the reason's priority, ``ready``,
    ``armed``, the kill switch), the order registered. Two cycles (decision right after block
    RAM) were measured at 102 MHz on the ECP5: block RAM clock-to-out and routing take half
    of the 6.4 ns, a 50-bit comparison and the decision's fan-out the rest. Counters lag the
    decision by 2 cycles, the reject log by 1.

    Timing: below the 156.25 MHz target on the LFE5UM5G-85F (nextpnr out of context, 1024
    slots, 54 DP16KD, 14 MULT18X18D, 9.9k LUT4, 6.1k FF): 133.0 MHz (seed 1), 145.0 (seed 2). The
    worst path is P1's position check: block RAM clock-to-out (1.4 ns) and 2-3.5 ns of
    routing, yosys's read-first emulation mux (the host engine may write the slot read in the
    same cycle), the carry-save level, a 27-bit carry chain. Seed 1 measured 138.8 MHz with
    three LUT levels of shared XORs there, 149.4 once the carry-save outputs were kept (one
    LUT per bit): the worst path was then a bucket reference, ``now + 2 + tau - interval``
    in three chained adders, now one carry chain per register (counters for now + k, d -
    interval a cycle early); with that, seed 1 placed the position check worse again (133.0).
    Next steps: the block RAMs' output registers with the checks moved a stage later (a fourth
    cycle), or the host tables' same-cycle collisions handled in the gate (a write delayed
    while an intent reads its slot), so that yosys need not emulate read-first.

    Timing of what an intent valid in cycle c sees: host operations written (by the engine)
    before cycle c, that is strobed by cycle c - 5 with an empty queue; BookUpdates valid by
    cycle c - `UPDATE_DELAY_CYCLES`; order-rate configuration of cycle c - 1; ``armed``,
    ``kill``, the kill switch and ``ready`` of its decision cycle c + 2. In `TickToTrade`,
    an intent of the book-triggered taker is therefore checked against the BBO it was decided
    on, and an intent of the event-triggered taker against the BBO before its event: the
    BookUpdates that had reached the strategy engine when the taker read its BBO table, the
    same BBO the taker compared the event with.
    """

    def __init__(self, parameters=None, *, book=None, **overrides):
        self.p = p = (parameters or RiskParameters())._replace(**overrides).check()
        self.registers = RISK_REGISTERS
        # The BookUpdate layout depends on the book's parameters (visible levels, counts).
        book = book or BookParameters(symbols=p.symbols)
        if book.symbols != p.symbols:
            raise ValueError(f"the book has {book.symbols} slots, the gate {p.symbols}")
        super().__init__({
            "intents": In(stream.Signature(OrderIntent, always_ready=True)),
            "updates": In(stream.Signature(update_layout(book), always_ready=True)),
            "orders": Out(stream.Signature(OrderIntent)),
            "killed": Out(1),
            "armed": In(1),
            "kill": In(1),
            "clear_kill": In(1),
            "kill_reason": Out(KillReason),
            "slot_throttle": In(ThrottleConfig),
            "global_throttle": In(ThrottleConfig),
            "auto_kill": In(AutoKillConfig),
            "limits": In(limits_write_layout(p)),
            "fill": In(fill_layout(p)),
            "set_position": In(position_write_layout(p)),
            "read_request": In(read_request_layout(p)),
            "readback": Out(readback_layout(p)),
            "rejects": Out(stream.Signature(RejectRecord)),
            "counters": Out(counter_layout(RISK_COUNTERS)),
            "alarms": Out(Alarms),
            "clear_alarms": In(1),
        })

    def elaborate(self, platform):
        p = self.p
        m = Module()
        hits = {name: Signal(name=f"hit_{name}") for name in RISK_COUNTERS}

        now = Signal(TIME_BITS, reset_less=True)   # bucket times in block RAM outlive a reset
        m.d.sync += now.eq(now + 1)
        # now + k kept as counters of their own, so that no sum below starts with a carry
        # chain from `now` (equal to it until the count wraps: 14 years).
        ahead = {k: Signal(TIME_BITS, reset_less=True, init=k, name=f"now_plus{k}")
                 for k in (1, 2, 3)}
        m.d.sync += [a.eq(a + 1) for a in ahead.values()]

        # --- tables -------------------------------------------------------------------------
        def table(name, shape):
            mem = Memory(shape=shape, depth=p.symbols, init=[])
            m.submodules[name] = mem
            return mem

        checks_mem = table("checks", _CHECKS)
        collar_mem = table("collar", unsigned(BPS_BITS))
        refs_mem = table("refs", _REFS)
        state_mem = table("state", _STATE)
        account_mem = table("account", _ACCOUNT)
        rooms_mem = table("rooms", _ROOMS)
        checks_rd, checks_wr = checks_mem.read_port(), checks_mem.write_port()
        collar_rd, collar_wr = collar_mem.read_port(), collar_mem.write_port()
        refs_rd, refs_wr = refs_mem.read_port(), refs_mem.write_port()
        state_rd, state_wr = state_mem.read_port(), state_mem.write_port()
        state_host_rd = state_mem.read_port()
        account_rd, account_wr = account_mem.read_port(), account_mem.write_port()
        rooms_rd, rooms_wr = rooms_mem.read_port(), rooms_mem.write_port()

        # --- order-rate bucket references, registered ---------------------------------------
        def bucket(name, config):
            """Registered references of one bucket, for the intent deciding in cycle d (its
            checks are made in d - 1): all from the configuration of cycle d - 3."""
            def reg(shape, value, suffix, init=0):
                sig = Signal(shape, name=f"{name}_{suffix}", init=init)
                m.d.sync += sig.eq(value)
                return sig
            tau = reg(TIME_BITS, Mux(config.burst == 0, 0,
                                     (config.burst - 1) * config.interval), "tau")
            interval1 = reg(32, config.interval, "interval1")
            interval2 = reg(32, interval1, "interval2")
            interval3 = reg(32, interval2, "interval3")
            empty1 = reg(1, config.burst == 0, "empty1", init=1)
            empty2 = reg(1, empty1, "empty2", init=1)
            # In cycle d - 1: d + tau; and with the interval of the decision before (d - 1),
            # d + tau - interval and interval <= tau + 1.
            # One carry chain each: d - interval (a cycle early, from the counter now + 3 and
            # the interval before), then plus tau; interval <= tau + 1 as interval - 1 <= tau.
            limit = reg(TIME_BITS, ahead[2] + tau, "limit")
            less = reg(signed(TIME_BITS + 2), ahead[3] - interval1, "less")
            limit_less = reg(TIME_BITS + 1, less + tau, "limit_less")
            interval_less = reg(signed(33), interval1 - 1, "interval_less")
            again = reg(1, interval_less <= tau, "again")
            # In cycle d: d + interval.
            restart = reg(TIME_BITS, ahead[1] + interval2, "restart")
            return dict(empty=empty2, limit=limit, limit_less=limit_less, again=again,
                        interval=interval3, restart=restart)

        slot_bucket = bucket("slot", self.slot_throttle)
        glob_bucket = bucket("glob", self.global_throttle)
        glob_tat = Signal(TIME_BITS)

        def conforms(name, tat, b, after_pass):
            """``tat`` conforms in the decision cycle (for the next cycle); with `after_pass`,
            after an order passed in the cycle before (which moved ``tat`` to ``max(tat,
            d - 1) + interval``)."""
            if after_pass:
                return (_late(m, f"{name}_ok", ~b["empty"] & b["again"])
                        & _at_most(m, name, tat, b["limit_less"]))
            return _late(m, f"{name}_ok", ~b["empty"]) & _at_most(m, name, tat, b["limit"])

        # --- P0: the intent's cycle: tables read, partial products --------------------------
        i = self.intents
        s1_valid, s2_valid = Signal(), Signal()
        s1, s2 = Signal(OrderIntent), Signal(OrderIntent)
        s1_bad_slot = Signal()
        slot_in = i.payload.slot[:p.slot_bits]
        m.d.sync += [s1_valid.eq(i.valid), s1.eq(i.payload),
                     s1_bad_slot.eq(i.payload.slot[p.slot_bits:] != 0),
                     s2_valid.eq(s1_valid), s2.eq(s1)]
        for port in (checks_rd, refs_rd, state_rd, rooms_rd):
            m.d.comb += port.addr.eq(slot_in)
        price_in, qty_in = i.payload.price, i.payload.quantity
        ll, lh, hl, hh = (Signal(32, name=n) for n in ("pq_ll", "pq_lh", "pq_hl", "pq_hh"))
        price_scaled = Signal(CAP_BITS)
        m.d.sync += [ll.eq(price_in[:16] * qty_in[:16]), lh.eq(price_in[:16] * qty_in[16:]),
                     hl.eq(price_in[16:] * qty_in[:16]), hh.eq(price_in[16:] * qty_in[16:]),
                     price_scaled.eq(price_in * COLLAR_SCALE)]
        # The intent ahead (in P1 now, deciding while this one is in P1) on the same slot; the
        # quantity the two would hold open together on this one's side.
        same_ahead = Signal()
        less, less_pair = Signal(signed(34)), Signal(signed(34))   # -quantity, -both
        ahead_adds = s1_valid & (s1.slot[:p.slot_bits] == slot_in)
        m.d.sync += [same_ahead.eq(ahead_adds), less.eq(-qty_in),
                     less_pair.eq(-(qty_in + Mux(ahead_adds & (s1.side == i.payload.side),
                                                 s1.quantity, 0)))]
        # The state written by the intent deciding now (two ahead), for this one's P1.
        passed = Signal()
        last_state = Signal(_STATE)
        forward = Signal()
        m.d.sync += forward.eq(passed & (s2.slot[:p.slot_bits] == slot_in))

        # --- P1: every check that needs a table, one comparison each, registered ------------
        lim = checks_rd.data
        refs = refs_rd.data
        rooms = rooms_rd.data
        base = Signal(_STATE)
        m.d.comb += base.eq(Mux(forward, last_state.as_value(), state_rd.data.as_value()))
        buy1 = wire(m, s1.side == Side.BUY, "buy1")
        qty1 = s1.quantity
        buy2 = wire(m, s2.side == Side.BUY, "buy2")
        early = {
            RejectReason.BAD_SLOT: _late(m, "bad_slot", s1_bad_slot),
            RejectReason.DISABLED: _late(m, "disabled", ~lim.enabled),
            RejectReason.QUANTITY: _late(m, "no_quantity", qty1 == 0)
                | ~_at_most(m, "quantity", qty1, lim.max_quantity),
            RejectReason.NOTIONAL: ~_nonnegative_sum(
                m, "notional", [(-1, Cat(ll, hh)), (-1, lh << 16), (-1, hl << 16)],
                [(1, lim.max_notional)], 67),
            RejectReason.NO_REFERENCE: _late(m, "no_reference", Mux(
                buy1, ~refs.ask_ok, ~refs.bid_ok) | (refs.bps != lim.collar_bps)),
            RejectReason.COLLAR: Mux(buy2, ~_at_most(m, "buy_cap", price_scaled, refs.buy_cap),
                                     ~_at_most(m, "sell_floor", refs.sell_floor, price_scaled)),
        }
        checked = {r: wire(m, v, f"fail_{r.name.lower()}") for r, v in early.items()}
        # Checks on state the intent ahead may change: both outcomes, chosen in P2.
        spec = {}
        position = {}           # (side, forwarded, outcome) -> the check for the next cycle
        for side, (rooms_side, sent_side) in enumerate((("buy", "sent_buy"),
                                                        ("sell", "sent_sell"))):
            for forwarded, source in enumerate((state_rd.data, last_state)):
                for outcome in (0, 1):
                    position[side, forwarded, outcome] = _room_left(
                        m, f"position{side}{forwarded}{outcome}",
                        getattr(rooms, rooms_side), getattr(source, sent_side),
                        less_pair if outcome else less, ROOM_BITS + 2)
        forward2 = _late(m, "forward2", forward)
        for outcome in (0, 1):
            ok = {side: Mux(forward2, position[side, 1, outcome], position[side, 0, outcome])
                  for side in (0, 1)}
            spec[RejectReason.POSITION, outcome] = ~Mux(buy2, ok[0], ok[1])
            spec[RejectReason.SLOT_THROTTLE, outcome] = ~conforms(
                f"slot_tat{outcome}", base.tat, slot_bucket, outcome)
            spec[RejectReason.GLOBAL_THROTTLE, outcome] = ~conforms(
                f"glob_tat{outcome}", glob_tat, glob_bucket, outcome)
        fails_if = {key: wire(m, v, f"fail_{key[0].name.lower()}_{key[1]}")
                    for key, v in spec.items()}
        s2_same, s2_base = Signal(), Signal(_STATE)
        m.d.sync += [s2_same.eq(same_ahead), s2_base.eq(base)]

        # --- P2: the decision, from registers -------------------------------------------------
        killed = self.killed
        kill_now = Signal()
        ahead_passed = Signal()              # the intent decided in the cycle before passed
        m.d.sync += ahead_passed.eq(passed)
        on_slot = wire(m, ahead_passed & s2_same, "on_slot")
        fails = {
            RejectReason.NOT_ARMED: ~self.armed,
            RejectReason.KILLED: killed | self.kill,
            **checked,
            RejectReason.POSITION: Mux(on_slot, fails_if[RejectReason.POSITION, 1],
                                       fails_if[RejectReason.POSITION, 0]),
            RejectReason.SLOT_THROTTLE: Mux(on_slot, fails_if[RejectReason.SLOT_THROTTLE, 1],
                                            fails_if[RejectReason.SLOT_THROTTLE, 0]),
            RejectReason.GLOBAL_THROTTLE: Mux(ahead_passed,
                                              fails_if[RejectReason.GLOBAL_THROTTLE, 1],
                                              fails_if[RejectReason.GLOBAL_THROTTLE, 0]),
            RejectReason.NOT_READY: ~self.orders.ready,
        }
        fail = {r: wire(m, fails[r], f"fails_{r.name.lower()}") for r in REASONS}
        m.d.comb += passed.eq(s2_valid & ~Cat(*fail.values()).any())
        reason = Signal(RejectReason)
        for r in reversed(REASONS):
            with m.If(fail[r]):
                m.d.comb += reason.eq(r)
        rejected = wire(m, s2_valid & ~passed, "rejected")

        # The order, registered.
        m.d.sync += [self.orders.valid.eq(passed), self.orders.payload.eq(s2)]

        # The slot's state after this intent (written if it passed, and forwarded): from the
        # state after the intent ahead, or from the one read in P1, both computed, then chosen.
        qty2 = s2.quantity
        candidates = []
        for k, state in enumerate((s2_base, last_state)):
            cand = Signal(_STATE, name=f"next_state{k}")
            m.d.comb += [
                cand.sent_buy.eq(state.sent_buy + Mux(buy2, qty2, 0)),
                cand.sent_sell.eq(state.sent_sell + Mux(buy2, 0, qty2)),
                cand.tat.eq(Mux(state.tat > now, state.tat + slot_bucket["interval"],
                                slot_bucket["restart"])),
            ]
            candidates.append(cand)
        new_state = Signal(_STATE)
        m.d.comb += [
            new_state.eq(Mux(on_slot, candidates[1].as_value(), candidates[0].as_value())),
            state_wr.addr.eq(s2.slot[:p.slot_bits]), state_wr.data.eq(new_state),
            state_wr.en.eq(passed),
        ]
        m.d.sync += last_state.eq(new_state)
        with m.If(passed):
            m.d.sync += glob_tat.eq(Mux(glob_tat > now, glob_tat + glob_bucket["interval"],
                                        glob_bucket["restart"]))

        # --- reject log (after P2) -----------------------------------------------------------
        m.submodules.log = log = fifo.SyncFIFOBuffered(width=RejectRecord.as_shape().size,
                                                       depth=p.log_depth)
        entry = Signal(RejectRecord)
        log_valid = Signal()
        m.d.sync += [log_valid.eq(rejected), entry.intent.eq(s2), entry.reason.eq(reason)]
        m.d.comb += [log.w_data.eq(entry), log.w_en.eq(log_valid),
                     hits["log_overflow"].eq(log_valid & ~log.w_rdy),
                     self.rejects.valid.eq(log.r_rdy), self.rejects.payload.eq(log.r_data),
                     log.r_en.eq(self.rejects.ready)]

        # --- kill switch ----------------------------------------------------------------------
        storm = Signal()       # a reject that counts toward the reject-rate kill
        m.d.sync += storm.eq(rejected & ~fail[RejectReason.NOT_ARMED]
                             & ~fail[RejectReason.KILLED])
        window_left = Signal(32)
        window_end = Signal(init=1)      # window_left == 0, registered: a new window starts
        window_count = Signal(16)
        config = self.auto_kill
        next_left = wire(m, Mux(window_left != 0, window_left - 1,
                                Mux(config.window == 0, 0, config.window - 1)), "next_left")
        m.d.sync += [window_left.eq(next_left), window_end.eq(next_left == 0)]
        in_window = wire(m, Mux(window_end, 0, window_count) + storm, "in_window",
                         unsigned(17))
        m.d.sync += window_count.eq(Mux(in_window >= config.rejects, config.rejects, in_window))
        # The kill decision without the adder: compare the count (and the count plus one).
        reach = wire(m, Mux(window_end, Mux(storm, config.rejects <= 1, 0),
                            Mux(storm, window_count + 1 >= config.rejects,
                                window_count >= config.rejects)), "reach")
        m.d.comb += kill_now.eq(self.kill | ((config.rejects != 0) & reach))
        with m.If(kill_now):
            m.d.sync += killed.eq(1)
            with m.If(~killed):
                m.d.sync += self.kill_reason.eq(Mux(self.kill, KillReason.HOST,
                                                    KillReason.REJECT_RATE))
        with m.Elif(self.clear_kill):
            m.d.sync += [killed.eq(0), self.kill_reason.eq(KillReason.NONE)]

        # --- collar references from BookUpdates -----------------------------------------------
        u = self.updates
        m.d.comb += collar_rd.addr.eq(u.payload.slot)
        u1_valid, u2_valid, u3_valid = Signal(), Signal(), Signal()
        u1_slot, u2_slot, u3_slot = (Signal(p.slot_bits, name=f"u{k}_slot") for k in (1, 2, 3))
        u1_bid, u1_ask = Signal(32), Signal(32)
        u1_ok, u2_ok, u3_ok = Signal(2), Signal(2), Signal(2)
        u2_bid, u2_ask = Signal(32), Signal(32)
        u2_up, u2_down = Signal(BPS_BITS + 1), Signal(BPS_BITS)
        u2_bps, u3_bps = Signal(BPS_BITS), Signal(BPS_BITS)
        ask_lo, ask_hi = Signal(31), Signal(31)
        bid_lo, bid_hi = Signal(30), Signal(30)
        up = u.payload
        m.d.sync += [
            u1_valid.eq(u.valid), u1_slot.eq(up.slot), u1_bid.eq(up.bid_price),
            u1_ask.eq(up.ask_price), u1_ok.eq(Cat(up.bid_shares != 0, up.ask_shares != 0)),
            u2_valid.eq(u1_valid), u2_slot.eq(u1_slot), u2_bid.eq(u1_bid), u2_ask.eq(u1_ask),
            u2_ok.eq(u1_ok), u2_up.eq(COLLAR_SCALE + collar_rd.data),
            u2_down.eq(Mux(collar_rd.data >= COLLAR_SCALE, 0, COLLAR_SCALE - collar_rd.data)),
            u2_bps.eq(collar_rd.data),
            u3_valid.eq(u2_valid), u3_slot.eq(u2_slot), u3_ok.eq(u2_ok), u3_bps.eq(u2_bps),
            ask_lo.eq(u2_ask[:16] * u2_up), ask_hi.eq(u2_ask[16:] * u2_up),
            bid_lo.eq(u2_bid[:16] * u2_down), bid_hi.eq(u2_bid[16:] * u2_down),
        ]
        m.d.comb += [
            refs_wr.en.eq(u3_valid), refs_wr.addr.eq(u3_slot),
            refs_wr.data.bps.eq(u3_bps), refs_wr.data.bid_ok.eq(u3_ok[0]),
            refs_wr.data.ask_ok.eq(u3_ok[1]),
            refs_wr.data.buy_cap.eq(ask_lo + (ask_hi << 16)),
            refs_wr.data.sell_floor.eq(bid_lo + (bid_hi << 16)),
        ]

        # --- host operations ------------------------------------------------------------------
        op_shape = _op_layout(p)
        m.submodules.host_queue = hq = fifo.SyncFIFO(width=op_shape.size, depth=p.host_depth)
        incoming = Signal(op_shape)
        strobes = [
            (self.fill.write, _Op.FILL, lambda o: [
                o.index.eq(self.fill.index), o.args.fill.side.eq(self.fill.side),
                o.args.fill.filled.eq(self.fill.filled),
                o.args.fill.released.eq(self.fill.released)]),
            (self.limits.write, _Op.LIMITS, lambda o: [
                o.index.eq(self.limits.index), o.args.limits.eq(self.limits.entry)]),
            (self.set_position.write, _Op.POSITION, lambda o: [
                o.index.eq(self.set_position.index),
                o.args.position.eq(self.set_position.position)]),
            (self.read_request.read, _Op.READ, lambda o: [
                o.index.eq(self.read_request.index)]),
        ]
        extra = []
        for k, (valid, kind, fields) in enumerate(strobes):
            others = [v for v, _, _ in strobes[:k]]
            first = valid & ~Cat(*others).any() if others else valid
            with m.If(first):
                m.d.comb += [incoming.kind.eq(kind), *fields(incoming)]
            if others:
                extra.append(valid & Cat(*others).any())
        any_op = Cat(*(v for v, _, _ in strobes)).any()
        m.d.comb += [hq.w_data.eq(incoming), hq.w_en.eq(any_op),
                     hits["host_overflow"].eq((any_op & ~hq.w_rdy) | Cat(*extra).any())]

        op = Signal(op_shape)
        raw, acct = Signal(_ACCOUNT), Signal(_ACCOUNT)
        raw_sent = Signal(_STATE)
        readback = self.readback
        with m.FSM(name="host"):
            with m.State("IDLE"):
                head = data.View(op_shape, hq.r_data)
                m.d.comb += [account_rd.addr.eq(head.index), state_host_rd.addr.eq(head.index)]
                with m.If(hq.r_rdy):
                    m.d.comb += hq.r_en.eq(1)
                    m.d.sync += op.eq(head)
                    m.next = "READ"
            with m.State("READ"):           # block RAM out, registered
                m.d.sync += [raw.eq(account_rd.data), raw_sent.eq(state_host_rd.data)]
                m.next = "UPDATE"
            with m.State("UPDATE"):
                a = raw
                sent = raw_sent
                m.d.sync += acct.eq(a)
                f = op.args.fill
                with m.Switch(op.kind):
                    with m.Case(_Op.LIMITS):
                        m.d.sync += acct.limit.eq(op.args.limits.position_limit)
                    with m.Case(_Op.FILL):
                        done = f.filled + f.released
                        with m.If(f.side == Side.BUY):
                            m.d.sync += [acct.done_buy.eq(a.done_buy + done),
                                         acct.position.eq(a.position + f.filled)]
                        with m.Else():
                            m.d.sync += [acct.done_sell.eq(a.done_sell + done),
                                         acct.position.eq(a.position - f.filled)]
                    with m.Case(_Op.POSITION):
                        m.d.sync += acct.position.eq(op.args.position)
                    with m.Case(_Op.READ):
                        m.d.sync += [
                            readback.index.eq(op.index), readback.count.eq(readback.count + 1),
                            readback.position.eq(a.position),
                            readback.open_buy.eq(sent.sent_buy - a.done_buy),
                            readback.open_sell.eq(sent.sent_sell - a.done_sell)]
                m.next = "WRITE"
            with m.State("WRITE"):
                writes = op.kind != _Op.READ
                limits = op.args.limits
                m.d.comb += [
                    account_wr.addr.eq(op.index), account_wr.data.eq(acct),
                    account_wr.en.eq(writes),
                    rooms_wr.addr.eq(op.index), rooms_wr.en.eq(writes),
                    rooms_wr.data.buy.eq(acct.limit - acct.position + acct.done_buy),
                    rooms_wr.data.sell.eq(acct.limit + acct.position + acct.done_sell),
                    checks_wr.addr.eq(op.index), checks_wr.en.eq(op.kind == _Op.LIMITS),
                    checks_wr.data.enabled.eq(limits.enabled),
                    checks_wr.data.max_quantity.eq(limits.max_quantity),
                    checks_wr.data.max_notional.eq(limits.max_notional),
                    checks_wr.data.collar_bps.eq(limits.collar_bps),
                    collar_wr.addr.eq(op.index), collar_wr.en.eq(op.kind == _Op.LIMITS),
                    collar_wr.data.eq(limits.collar_bps),
                ]
                m.next = "IDLE"

        # --- counters and alarms --------------------------------------------------------------
        m.d.comb += [hits["intents"].eq(s2_valid), hits["passes"].eq(passed),
                     hits["orders_lost"].eq(self.orders.valid & ~self.orders.ready)]
        for r in REASONS:
            m.d.comb += hits[r.name.lower()].eq(rejected & (reason == r))
        for name in RISK_COUNTERS:
            count(m, self.counters, name, hits[name])
        alarms = self.alarms
        with m.If(self.clear_alarms):
            m.d.sync += alarms.eq(0)
        for name, hit in (("killed", kill_now), ("log_overflow", hits["log_overflow"]),
                          ("host_overflow", hits["host_overflow"]),
                          ("order_lost", hits["orders_lost"])):
            with m.If(hit):
                m.d.sync += getattr(alarms, name).eq(1)
        return m
