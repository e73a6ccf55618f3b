"""Threshold taker: per book slot, take the touch when it crosses a host-set price."""

from amaranth.hdl import Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tickwire.hdl.book.records import PRICE_BITS, BookParameters, update_layout
from tickwire.hdl.signals import wire
from tickwire.hdl.strategy.records import OrderIntent, Side, TimeInForce

#: Cycles from a BookUpdate valid at ``updates`` (book trigger) or an event valid at
#: ``events`` (event trigger) to the taker's intents valid.
TAKER_LATENCY_CYCLES = 3
#: The free-running cycle counter cooldowns are measured with (wraps after 20.8 days at
#: 156.25 MHz; the device is reset daily).
TIME_BITS = 48
#: Table rewrites are told apart by a per-table write counter stored with the entry (see
#: `ThresholdTaker`): 2**32 rewrites of one table alias.
EPOCH_BITS = 32
TAKER_STRATEGY_ID = 0


class TakerParams(data.Struct):
    """One slot of the taker's table. Prices are ITCH Price(4); ``cooldown`` is in cycles."""
    enable: 1
    buy_price: PRICE_BITS
    sell_price: PRICE_BITS
    quantity: 32
    cooldown: 32


def table_write_layout(index_bits, entry):
    """A host write of one table entry, as a `Strobe` port carries it: ``write`` (set for the one
    cycle the register bank pulses the port), ``index`` (the entry) and then the entry's own
    fields, flattened so that the host driver names them."""
    fields = {"write": unsigned(1), "index": unsigned(index_bits)}
    for name, field in data.Layout.cast(entry):
        fields[name] = field.shape
    return data.StructLayout(fields)


def written_entry(port, entry, index_bits):
    """The entry part of a `table_write_layout` port, as a view of `entry`."""
    return data.View(data.Layout.cast(entry), Value.cast(port)[1 + index_bits:])


def taker_write_layout(p):
    return table_write_layout(p.slot_bits, TakerParams)


def _side_memory():
    """The last fire of one side: under which entry (epoch), at what price, and the first
    cycle it may fire again."""
    return data.StructLayout({"epoch": unsigned(EPOCH_BITS), "price": unsigned(PRICE_BITS),
                              "deadline": unsigned(TIME_BITS)})


def event_input_layout(p):
    """What the event-triggered taker takes of a `BookEvent`, its slot already looked up:
    ``add`` is set for an Add (ITCH A or F) with non-zero shares, the only event that can
    make a new touch whose side the feed names (a Replace's side is only in the book)."""
    return data.StructLayout({"slot": unsigned(p.slot_bits), "locate": unsigned(16),
                              "side": Side, "add": unsigned(1),
                              "price": unsigned(PRICE_BITS), "sequence": unsigned(64)})


def _bbo_layout():
    """A slot's BBO as the last BookUpdate showed it (``*_ok``: that side has shares)."""
    return data.StructLayout({"bid": unsigned(PRICE_BITS), "ask": unsigned(PRICE_BITS),
                              "bid_ok": unsigned(1), "ask_ok": unsigned(1)})


def _row_layout():
    return data.StructLayout({"epoch": unsigned(EPOCH_BITS), "params": TakerParams})


def _at_least(a, b):
    """a >= b, as two half-width compares side by side (shorter carry chains)."""
    half = TIME_BITS // 2
    a_hi, b_hi = a[half:], b[half:]
    return (a_hi > b_hi) | ((a_hi == b_hi) & (a[:half] >= b[:half]))


class ThresholdTaker(wiring.Component):
    """Takes liquidity at the touch when a book slot's best price crosses a host-set threshold.

    Rule (per update of a slot the engine routes here, ``active``, whose entry has ``enable``):

    - **buy** IOC at ``ask_price`` when the ask exists (``ask_shares != 0``) and
      ``ask_price <= buy_price``; **sell** IOC at ``bid_price`` when the bid exists and
      ``bid_price >= sell_price``; both may fire on one update (buy first). The quantity is the
      entry's ``quantity``, the strategy id 0, the sequence the update's.
    - Cooldown, per side: after the side fired at price p on the update arriving at cycle t0,
      it fires again only for an update arriving at cycle t with a price different from p *and*
      ``t - t0 >= cooldown``; a side that is eligible but refused by this rule is counted
      (``cooldown`` pulse). With ``cooldown = 0`` only the price rule remains.
    - Writing a slot's entry resets that slot's memory of past fires (both sides).
    - An update of an enabled slot whose book is not two-sided pulses ``one_sided`` (once).

    Timing of host writes: a write presented at cycle w applies to updates arriving at cycles
    after w (an update arriving at w still sees the old entry and memory).

    Storage (block RAM, one row per slot, three tables): the parameters with the table's write
    count at their write (``epoch``, 32 bits); and per side the last fire (epoch of the entry
    it was made under, price, deadline = fire cycle + cooldown), written only when the side
    fires. A memory whose epoch is not its entry's is no memory: that is how a rewrite resets
    it without a second write port.

    Pipeline: stage 0 reads the three tables; stage 1 makes every compare straight from the
    block RAM outputs (thresholds; price and deadline against the memory as read, and against
    the fire written while the read was issued, forwarded from a register; and, for the case
    the update one ahead fires the side, "price differs and cooldown <= 1"), those after
    block RAM on 16-bit pieces registered apart (short carry chains and equality trees: the
    event-triggered build's placement put block RAM outputs 2 ns of routing away); stage 2
    combines them, decides with a mux and writes the memory; the intents are registered. So
    back-to-back updates of one slot see each other without a stall.

    **Event trigger** (``trigger="event"``): the same rule, table and memories, decided on the
    raw event instead of the settled book. Per event at ``events`` (an Add, its slot already
    looked up) of a slot routed here: **buy** IOC at the event's price when it is a sell-side
    Add that makes a new best ask (the slot's last BookUpdate showed an ask above the price)
    and the price is ``<= buy_price``; **sell** likewise for a buy-side Add making a new best
    bid at ``>= sell_price``; then the cooldown rule above. A side the last BookUpdate showed
    empty does not fire: the risk gate's collar reference for the intent is that same
    BookUpdate (see `TickToTrade`), and with no BBO on the side it would reject it
    (NO_REFERENCE). The best ask falls, and
    the best bid rises, only through such an Add (or a Replace, whose side the feed does not
    carry: left to the book trigger), so "ask <= buy_price" first becomes true on one: the
    event trigger fires there without waiting for the book. It does not fire where the book
    trigger also fires on a touch that *rises* into the band (a level removed, uncovering
    the next one), on a Replace, or on a refire at an unchanged touch after the cooldown.
    "Last BookUpdate": the latest one of the slot presented at ``updates`` at least one cycle
    before the event reached the taker; updates still in the book's pipeline or FIFO are not
    seen, so under bursts the reference can be stale (the cooldown memory still refuses a
    second fire at the same price). The book may still refuse the Add (duplicate reference,
    full order set): the taker does not know. ``one_sided`` never pulses.

    Ports
    -----
    updates : In(BookUpdate stream, always ready): the trigger (book), or the slots' BBOs
        (event: written to a table, one per cycle)
    events : In(`event_input_layout` stream, always ready), event trigger only
    active : In(1): the engine routes the update (event) presented the cycle before to the
        taker
    write : In(`taker_write_layout`): a table write (``write`` set for one cycle)
    buy, sell : Out(OrderIntent stream, always ready): one-cycle pulses
    fired, cooldown : Out(2): per side (bit 0 buy, bit 1 sell), the cycle before the intent
    one_sided : Out(1): likewise

    Latency: 3 cycles from an update (event) valid at ``updates`` (``events``) to its intents
    valid (read, compare, decide), one per cycle sustained. Two cycles (compare and decide in
    the cycle after the read) were built and measured first: 111-113 MHz on the ECP5, the
    block RAM output and its routing taking half of the 6.4 ns of 156.25 MHz.
    """

    def __init__(self, parameters=None, *, trigger="book", **overrides):
        self.p = p = (parameters or BookParameters())._replace(**overrides).check()
        if trigger not in ("book", "event"):
            raise ValueError(f"trigger must be 'book' or 'event', not {trigger!r}")
        self.trigger = trigger
        events = ({"events": In(stream.Signature(event_input_layout(p), always_ready=True))}
                  if trigger == "event" else {})
        super().__init__({
            **events,
            "updates": In(stream.Signature(update_layout(p), always_ready=True)),
            "active": In(1),
            "write": In(taker_write_layout(p)),
            "buy": Out(stream.Signature(OrderIntent, always_ready=True)),
            "sell": Out(stream.Signature(OrderIntent, always_ready=True)),
            "fired": Out(2),
            "cooldown": Out(2),
            "one_sided": Out(1),
        })

    def elaborate(self, platform):
        p = self.p
        m = Module()
        m.submodules.params = params = Memory(shape=_row_layout(), depth=p.symbols, init=[])
        prd, pwr = params.read_port(), params.write_port()
        memories = {}
        for side in ("buy", "sell"):
            mem = Memory(shape=_side_memory(), depth=p.symbols, init=[])
            m.submodules[f"{side}_memory"] = mem
            memories[side] = (mem.read_port(), mem.write_port())

        now = Signal(TIME_BITS)         # cycles, as seen in stage 1
        m.d.sync += now.eq(now + 1)

        # --- host writes: a new epoch per write ---------------------------------------------
        # Not reset: block RAM keeps its contents over a reset, and a restarted count would
        # make memories of before the reset look current.
        epoch = Signal(EPOCH_BITS, reset_less=True)
        w = self.write
        with m.If(w.write):
            m.d.comb += [pwr.en.eq(1), pwr.addr.eq(w.index), pwr.data.epoch.eq(epoch + 1),
                         pwr.data.params.eq(written_entry(w, TakerParams, p.slot_bits))]
            m.d.sync += epoch.eq(epoch + 1)

        # --- stage 0: read the slot's entry and both sides' memories ------------------------
        event = self.trigger == "event"
        u = self.events if event else self.updates
        shape = event_input_layout(p) if event else update_layout(p)
        m.d.comb += prd.addr.eq(u.p.slot)
        for rd, _ in memories.values():
            m.d.comb += rd.addr.eq(u.p.slot)
        u1 = Signal(shape)
        v1 = Signal()
        m.d.sync += [u1.eq(u.p), v1.eq(u.valid)]
        if event:
            # The slots' BBOs from the BookUpdates, read beside the entry.
            m.submodules.bbo = bbo_mem = Memory(shape=_bbo_layout(), depth=p.symbols, init=[])
            brd, bwr = bbo_mem.read_port(), bbo_mem.write_port()
            b = self.updates.p
            m.d.comb += [brd.addr.eq(u.p.slot), bwr.en.eq(self.updates.valid),
                         bwr.addr.eq(b.slot), bwr.data.bid.eq(b.bid_price),
                         bwr.data.ask.eq(b.ask_price), bwr.data.bid_ok.eq(b.bid_shares != 0),
                         bwr.data.ask_ok.eq(b.ask_shares != 0)]
            bbo = brd.data

        # --- stage 1: every compare, against the memory as read and against the writes not
        # in it (the update two ahead wrote as this one's read was issued: in `last_*` now;
        # the update one ahead may write this cycle: what would follow is decided here) ------
        row = prd.data
        prm = row.params
        u2 = Signal(shape)
        v2 = Signal()
        small_cooldown2 = Signal()      # cooldown <= 1: the next cycle may fire again
        go = wire(m, v1 & self.active & prm.enable, "go")
        one_sided2 = Signal()
        m.d.sync += [u2.eq(u1), v2.eq(v1), small_cooldown2.eq(prm.cooldown <= 1)]
        if not event:
            m.d.sync += one_sided2.eq(go & ((u1.bid_shares == 0) | (u1.ask_shares == 0)))
        # The update one ahead: same slot, and no write of the slot in the cycle it arrived
        # (the writes of the last two cycles kept by index: no epoch compare on this path).
        writes = [(Signal(name=f"write{n}_valid"), Signal(p.slot_bits, name=f"write{n}_index"))
                  for n in (1, 2)]
        m.d.sync += [writes[0][0].eq(w.write), writes[0][1].eq(w.index),
                     writes[1][0].eq(writes[0][0]), writes[1][1].eq(writes[0][1])]
        rewritten = writes[1][0] & (writes[1][1] == u1.slot)
        ahead_same = Signal()
        m.d.sync += ahead_same.eq(v2 & (u2.slot == u1.slot) & ~rewritten)
        last_slot = Signal(p.slot_bits)
        fired = []
        if event:
            # A new touch: an Add on the side, better than the BBO the book last showed. The
            # compare with the BBO (block RAM out) is made in halves, combined in stage 2.
            half = PRICE_BITS // 2
            hi, lo = u1.price[half:], u1.price[:half]
            sides = (
                (0, "buy", (u1.add & (u1.side == Side.SELL), bbo.ask_ok, hi < bbo.ask[half:],
                            hi == bbo.ask[half:], lo < bbo.ask[:half]),
                 u1.price, u2.price, (u1.price, prm.buy_price)),
                (1, "sell", (u1.add & (u1.side == Side.BUY), bbo.bid_ok, hi > bbo.bid[half:],
                             hi == bbo.bid[half:], lo > bbo.bid[:half]),
                 u1.price, u2.price, (prm.sell_price, u1.price)))
        else:
            sides = (
                (0, "buy", u1.ask_shares != 0, u1.ask_price, u2.ask_price,
                 (u1.ask_price, prm.buy_price)),
                (1, "sell", u1.bid_shares != 0, u1.bid_price, u2.bid_price,
                 (prm.sell_price, u1.bid_price)))
        for bit, side, exists, price, ahead_price, wanted in sides:
            rd, wr = memories[side]
            last_written = Signal(name=f"{side}_last_written")
            last = Signal(_side_memory(), name=f"{side}_last")

            # Against the block RAM: the tests registered apart, each on 16-bit pieces (short
            # carry chains and equality trees after the block RAM), combined in stage 2.
            def piece(value, k):
                return value[16 * k:16 * (k + 1)]

            deadline, stored = rd.data.deadline, rd.data
            raw = {"current": [piece(stored.epoch, k) == piece(row.epoch, k) for k in (0, 1)],
                   "differs": [piece(stored.price, k) != piece(price, k) for k in (0, 1)],
                   "later": [piece(now, 2) > piece(deadline, 2),
                             piece(now, 2) == piece(deadline, 2),
                             piece(now, 1) > piece(deadline, 1),
                             piece(now, 1) == piece(deadline, 1),
                             piece(now, 0) >= piece(deadline, 0)]}
            reg = {}
            for name, values in raw.items():
                reg[name] = [Signal(name=f"{side}_memory_{name}{k}") for k in range(len(values))]
                m.d.sync += [t.eq(v) for t, v in zip(reg[name], values, strict=True)]
            # Against the fire written as the read was issued (a register), but the entry's
            # epoch is block RAM out: that compare on 16-bit pieces too.
            last_tests = [Signal(name=f"{side}_last_{n}")
                          for n in ("current0", "current1", "differs", "later")]
            m.d.sync += [t.eq(v) for t, v in zip(last_tests, (
                *(piece(last.epoch, k) == piece(row.epoch, k) for k in (0, 1)),
                last.price != price, _at_least(now, last.deadline)), strict=True)]
            two_ahead = last_written & (last_slot == u1.slot)
            # The threshold (a <= b, block RAM out) in registered halves.
            a, b = wanted
            wanted2 = [Signal(name=f"{side}_wanted_{n}") for n in ("high", "same", "low")]
            m.d.sync += [t.eq(v) for t, v in zip(wanted2, (
                piece(a, 1) < piece(b, 1), piece(a, 1) == piece(b, 1),
                piece(a, 0) <= piece(b, 0)), strict=True)]
            eligible = wanted2[0] | (wanted2[1] & wanted2[2])
            if event:
                side_ok, *touch = exists
                touch2 = [Signal(name=f"{side}_touch_{n}")
                          for n in ("ok", "better_high", "same_high", "better_low")]
                m.d.sync += [t.eq(v) for t, v in zip(touch2, touch, strict=True)]
                ok2, better_high2, same_high2, better_low2 = touch2
                exists = side_ok
                eligible &= ok2 & (better_high2 | (same_high2 & better_low2))
            pre2 = Signal(name=f"{side}_eligible_pre2")
            eligible2 = wire(m, pre2 & eligible, f"{side}_eligible2")
            two_ahead2 = Signal(name=f"{side}_two_ahead2")
            after_ahead2 = Signal(name=f"{side}_after_ahead2")
            entry2 = Signal(_side_memory(), name=f"{side}_entry2")
            m.d.sync += [
                pre2.eq(go & exists),
                two_ahead2.eq(two_ahead),
                after_ahead2.eq((price != ahead_price) & small_cooldown2),
                entry2.epoch.eq(row.epoch), entry2.price.eq(price),
                entry2.deadline.eq(now + prm.cooldown),
            ]

            # --- stage 2: decide (the update one ahead fired this side: `last_written`) ----
            current = reg["current"][0] & reg["current"][1]
            differs2 = reg["differs"][0] | reg["differs"][1]
            high_later, high_same, mid_later, mid_same, low_later = reg["later"]
            later2 = high_later | (high_same & (mid_later | (mid_same & low_later)))
            known_lo, known_hi, differs_l, later_l = last_tests
            allowed_last2 = ~(known_lo & known_hi) | (differs_l & later_l)
            allowed2 = Mux(two_ahead2, allowed_last2, ~current | (differs2 & later2))
            fire = wire(m, eligible2 & Mux(ahead_same & last_written, after_ahead2, allowed2),
                        f"{side}_fire")
            fired.append(fire)
            m.d.comb += [self.fired[bit].eq(fire), self.cooldown[bit].eq(eligible2 & ~fire),
                         wr.en.eq(fire), wr.addr.eq(u2.slot), wr.data.eq(entry2)]
            m.d.sync += [last_written.eq(fire), last.eq(entry2)]
            out = getattr(self, side)
            m.d.sync += [
                out.valid.eq(fire),
                out.p.slot.eq(u2.slot), out.p.locate.eq(u2.locate),
                out.p.side.eq(Side.BUY if side == "buy" else Side.SELL),
                out.p.tif.eq(TimeInForce.IOC), out.p.strategy.eq(TAKER_STRATEGY_ID),
                out.p.price.eq(entry2.price), out.p.sequence.eq(u2.sequence),
                out.p.arrival.eq(0),
            ]
        quantity2 = Signal(32)
        m.d.sync += [quantity2.eq(prm.quantity), last_slot.eq(u2.slot)]
        m.d.sync += [self.buy.p.quantity.eq(quantity2), self.sell.p.quantity.eq(quantity2)]
        m.d.comb += self.one_sided.eq(one_sided2)
        return m


__all__ = ["ThresholdTaker", "TakerParams", "TAKER_LATENCY_CYCLES", "event_input_layout",
           "table_write_layout", "taker_write_layout"]
