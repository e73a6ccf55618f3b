"""Pairs mean reversion: trade two books' spread back toward its mean."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tickwire.hdl.book.records import PRICE_BITS, BookParameters, update_layout
from tickwire.hdl.signals import wire
from tickwire.hdl.strategy.records import OrderIntent, Side, TimeInForce
from tickwire.hdl.strategy.taker import EPOCH_BITS, table_write_layout, written_entry

#: Cycles from a BookUpdate valid at ``updates`` to its two intents valid.
PAIRS_LATENCY_CYCLES = 9
PAIRS_STRATEGY_ID = 1
FRACTION_BITS = 16     # beta and the spread's units
#: Signed units; |position| <= max_position <= 127. Narrow on purpose: the position loop's
#: zero tests sit on the one-cycle path (16 bits: 145 MHz in the default build).
POSITION_BITS = 8
WIDE = 72              # signed arithmetic of the spread: every intermediate fits exactly


def pair_params_layout(p):
    """One pair. ``beta``: unsigned 16.16 fixed point. ``offset`` (two's complement), ``entry``
    and ``exit``: in spread units, doubled Price(4) with 16 fractional bits (one Price(4) unit of
    a mid is 2**17). ``max_position``: units (one unit = ``quantity`` of each leg), at most
    127."""
    return data.StructLayout({
        "enable": unsigned(1), "slot_a": unsigned(p.slot_bits), "slot_b": unsigned(p.slot_bits),
        "beta": unsigned(32), "offset": signed(64), "entry": unsigned(48),
        "exit": unsigned(48), "quantity": unsigned(32),
        "max_position": unsigned(POSITION_BITS - 1)})


def pair_write_layout(p, pairs):
    return table_write_layout(_bits(pairs), pair_params_layout(p))


def route_layout(pairs):
    """Where the engine routes an update: to the pairs strategy (``active``), pair, leg."""
    return data.StructLayout({"active": 1, "pair": unsigned(_bits(pairs)), "leg": 1})


def _bits(n):
    return max(1, (n - 1).bit_length())


def _bbo_layout():
    return data.StructLayout({"bid": unsigned(PRICE_BITS), "ask": unsigned(PRICE_BITS),
                              "two_sided": 1, "locate": unsigned(16)})


class PairsMeanReversion(wiring.Component):
    """Pairs mean reversion over a table of ``pairs`` pairs (leg A slot, leg B slot).

    Rule, for an update of slot s that the engine routes to leg L of pair k (``route``), when
    pair k is enabled and its leg-L slot is s (otherwise the update is ignored):

    - both legs need a two-sided BBO: leg s from this update, the other leg from the latest
      update of its slot (every update of every slot is remembered, routed or not); otherwise
      no order (``one_sided`` pulse);
    - ``spread = (bidA + askA) * 2**16 - beta * (bidB + askB) - offset``: doubled mids (no
      halving), beta unsigned 16.16, so the spread is in doubled Price(4) units with 16
      fractional bits, as the host writes ``offset``, ``entry`` and ``exit``;
    - ``spread > entry`` and ``position > -max_position``: sell A at its bid, buy B at its ask,
      position -= 1; ``spread < -entry`` and ``position < max_position``: buy A at its ask, sell
      B at its bid, position += 1 (refused at the limit: ``position_limit`` pulse);
      otherwise ``|spread| <= exit`` and ``position != 0``: one unit back toward 0;
    - both intents (IOC, ``quantity`` each, strategy id 1, the update's sequence) are valid in
      the same cycle, leg A on ``leg_a``; the engine sends them on consecutive cycles.
    - the position counts trades decided (IOC intents, filled or not); writing a pair's entry
      resets its position to 0. Writes apply to updates arriving after the write's cycle.

    Pipeline (stage n is cycle n after the update): 0 route read (engine); 1 pair entry read,
    the update's BBO stored; 2 the other leg's BBO read; 3 doubled mids; 4 beta x mid as four
    18x18 products (DSP) and ``mid_a * 2**16 - offset``; 5 two partial sums and the four
    thresholds (``spread > entry`` is ``beta*mid_b < mid_a*2**16 - offset - entry``, and so on);
    5 also reads the position; 6 the product, the position registered out of the block RAM
    (with the write of the update three ahead, which the read missed); 7 the compares, the
    position merged with the write of two updates before; 8 decide and write the position,
    forwarded to the next update of the pair (a one-cycle loop of zero tests and +-1: the room
    left to sell and to buy is kept with the position); 9 intents valid (each leg's price
    chosen from its registered bid and ask). Updates of one pair may come back to back.

    Ports
    -----
    updates : In(BookUpdate stream, always ready)
    route : In(`route_layout`): the engine's routing of the update presented the cycle before
    write : In(`pair_write_layout`): a table write (``write`` set for one cycle)
    leg_a, leg_b : Out(OrderIntent stream, always ready): one-cycle pulses, together
    fired, one_sided, position_limit : Out(1): pulses, the cycle before the intents

    Latency: 9 cycles from an update valid at ``updates`` to its intents valid; one update per
    cycle sustained.
    """

    def __init__(self, parameters=None, *, pairs=64, **overrides):
        self.p = p = (parameters or BookParameters())._replace(**overrides).check()
        self.pairs = pairs
        super().__init__({
            "updates": In(stream.Signature(update_layout(p), always_ready=True)),
            "route": In(route_layout(pairs)),
            "write": In(pair_write_layout(p, pairs)),
            "leg_a": Out(stream.Signature(OrderIntent, always_ready=True)),
            "leg_b": Out(stream.Signature(OrderIntent, always_ready=True)),
            "fired": Out(1),
            "one_sided": Out(1),
            "position_limit": Out(1),
        })

    def elaborate(self, platform):
        p, pb = self.p, _bits(self.pairs)
        m = Module()
        row_shape = data.StructLayout({"epoch": unsigned(EPOCH_BITS),
                                       "params": pair_params_layout(p)})
        # The position, and the room left to sell (position + max) and to buy (max -
        # position): the limit tests are zero tests, off the carry chains.
        pos_shape = data.StructLayout({"epoch": unsigned(EPOCH_BITS),
                                       "position": signed(POSITION_BITS),
                                       "room_sell": unsigned(POSITION_BITS),
                                       "room_buy": unsigned(POSITION_BITS)})
        m.submodules.table = table = Memory(shape=row_shape, depth=self.pairs, init=[])
        m.submodules.bbo = bbo = Memory(shape=_bbo_layout(), depth=p.symbols, init=[])
        m.submodules.positions = positions = Memory(shape=pos_shape, depth=self.pairs, init=[])
        trd, twr = table.read_port(), table.write_port()
        brd, bwr = bbo.read_port(), bbo.write_port()
        qrd, qwr = positions.read_port(), positions.write_port()

        # --- host writes: delayed one cycle, so that a write at cycle w is not seen by the
        # update arriving at w (its entry is read at w + 1) -----------------------------------
        epoch = Signal(EPOCH_BITS, reset_less=True)     # not reset: see ThresholdTaker
        w = self.write
        w_row = Signal(row_shape)
        w_index, w_en = Signal(pb), Signal()
        m.d.sync += [w_en.eq(w.write), w_index.eq(w.index), w_row.epoch.eq(epoch + 1),
                     w_row.params.eq(written_entry(w, pair_params_layout(p), pb))]
        with m.If(w.write):
            m.d.sync += epoch.eq(epoch + 1)
        m.d.comb += [twr.en.eq(w_en), twr.addr.eq(w_index), twr.data.eq(w_row)]

        def stage(name, shape, value):
            s = Signal(shape, name=name)
            m.d.sync += s.eq(value)
            return s

        # --- 0 ------------------------------------------------------------------------------
        u = self.updates
        u1 = stage("u1", update_layout(p), u.p)
        v1 = stage("v1", 1, u.valid)

        # --- 1: the entry is read; the update's BBO is stored --------------------------------
        r = self.route
        m.d.comb += [
            trd.addr.eq(r.pair),
            bwr.en.eq(v1), bwr.addr.eq(u1.slot), bwr.data.bid.eq(u1.bid_price),
            bwr.data.ask.eq(u1.ask_price), bwr.data.locate.eq(u1.locate),
            bwr.data.two_sided.eq((u1.bid_shares != 0) & (u1.ask_shares != 0)),
        ]
        own = Signal(_bbo_layout())
        m.d.comb += own.eq(bwr.data)
        own2 = stage("own2", _bbo_layout(), own)
        slot2 = stage("slot2", p.slot_bits, u1.slot)
        seq2 = stage("seq2", 64, u1.sequence)
        v2 = stage("v2", 1, v1 & r.active)
        leg2 = stage("leg2", 1, r.leg)
        pair2 = stage("pair2", pb, r.pair)

        # --- 2: the other leg's BBO is read -------------------------------------------------
        row = trd.data
        prm = row.params
        other = Mux(leg2, prm.slot_a, prm.slot_b)
        m.d.comb += brd.addr.eq(other)
        # Whether the update's slot is the routed leg's: both compared, chosen in stage 3.
        go3 = stage("go3", 1, v2 & prm.enable)
        is_a3 = stage("is_a3", 1, prm.slot_a == slot2)
        is_b3 = stage("is_b3", 1, prm.slot_b == slot2)
        row3 = stage("row3", row_shape, row)
        own3 = stage("own3", _bbo_layout(), own2)
        leg3 = stage("leg3", 1, leg2)
        pair3 = stage("pair3", pb, pair2)
        seq3 = stage("seq3", 64, seq2)

        # --- 3: doubled mids ----------------------------------------------------------------
        theirs = brd.data
        a = Signal(_bbo_layout())
        b = Signal(_bbo_layout())
        m.d.comb += [a.eq(Mux(leg3, theirs.as_value(), own3.as_value())),
                     b.eq(Mux(leg3, own3.as_value(), theirs.as_value()))]
        v4 = stage("v4", 1, go3 & Mux(leg3, is_b3, is_a3))
        two4 = stage("two4", 1, a.two_sided & b.two_sided)
        a4 = stage("a4", _bbo_layout(), a)
        b4 = stage("b4", _bbo_layout(), b)
        mid_a4 = stage("mid_a4", PRICE_BITS + 1, a.bid + a.ask)
        mid_b4 = stage("mid_b4", PRICE_BITS + 1, b.bid + b.ask)
        row4 = stage("row4", row_shape, row3)
        pair4 = stage("pair4", pb, pair3)
        seq4 = stage("seq4", 64, seq3)

        last_written = Signal()     # the position written the cycle before (stage 8)
        last_pair = Signal(pb)
        last_pos = Signal(pos_shape)

        # --- 4: beta x mid_b as four 18x18 products; mid_a * 2**16 - offset ------------------
        prm4 = row4.params
        beta = prm4.beta
        bl, bh = beta[:18], beta[18:]
        ml, mh = mid_b4[:18], mid_b4[18:]
        p0 = stage("p0", 36, bl * ml)
        p1 = stage("p1", 36, bl * mh)
        p2 = stage("p2", 36, bh * ml)
        p3 = stage("p3", 36, bh * mh)
        x5 = stage("x5", signed(WIDE), (mid_a4 << FRACTION_BITS) - prm4.offset)
        carry = {}
        for name, value, shape in (("v", v4, 1), ("two", two4, 1), ("a", a4, _bbo_layout()),
                                   ("b", b4, _bbo_layout()), ("row", row4, row_shape),
                                   ("pair", pair4, pb), ("seq", seq4, 64)):
            carry[name] = stage(f"{name}5", shape, value)

        # --- 5: partial sums, thresholds; the position is read ------------------------------
        m.d.comb += qrd.addr.eq(carry["pair"])
        prm5 = carry["row"].params
        low6 = stage("low6", 72, Cat(p0, p3))                 # p0 + p3 * 2**36 (no overlap)
        mid6 = stage("mid6", 37, p1 + p2)
        short6 = stage("short6", signed(WIDE), x5 - prm5.entry)   # spread > entry: P < this
        long6 = stage("long6", signed(WIDE), x5 + prm5.entry)     # spread < -entry: P > this
        near_lo6 = stage("near_lo6", signed(WIDE), x5 - prm5.exit)
        near_hi6 = stage("near_hi6", signed(WIDE), x5 + prm5.exit)
        for name in list(carry):
            carry[name] = stage(f"{name}6", carry[name].shape(), carry[name])

        # --- 6: the product; the position read registered as it leaves the block RAM, and
        # the write it missed (made as the read was issued, by the update three ahead) -------
        stored7 = stage("stored7", pos_shape, qrd.data)
        pair6 = carry["pair"]
        missed7 = stage("missed7", 1, last_written & (last_pair == pair6))
        missed_pos7 = stage("missed_pos7", pos_shape, last_pos)
        missed_current7 = stage("missed_current7", 1, last_pos.epoch == carry["row"].epoch)
        product7 = stage("product7", signed(WIDE), low6 + (mid6 << 18))
        thresholds7 = [stage(f"{s.name}_7", signed(WIDE), s)
                       for s in (short6, long6, near_lo6, near_hi6)]
        for name in list(carry):
            carry[name] = stage(f"{name}7", carry[name].shape(), carry[name])

        # --- 7: compares; the position as of two updates before (the write of the update
        # then in stage 8 is forwarded in stage 8), all from registers ------------------------
        short_t, long_t, near_lo, near_hi = thresholds7
        short8 = stage("short8", 1, product7 < short_t)
        long8 = stage("long8", 1, product7 > long_t)
        near8 = stage("near8", 1, (product7 >= near_lo) & (product7 <= near_hi))
        pair7, row7 = carry["pair"], carry["row"]
        forwarded = wire(m, last_written & (last_pair == pair7), "forwarded")
        read = Signal(pos_shape)
        m.d.comb += read.eq(Mux(forwarded, last_pos.as_value(),
                                Mux(missed7, missed_pos7.as_value(), stored7.as_value())))
        current = wire(m, Mux(forwarded, last_pos.epoch == row7.epoch,   # compare, then mux
                              Mux(missed7, missed_current7, stored7.epoch == row7.epoch)),
                       "current")
        reset = Signal(pos_shape)
        m.d.comb += [reset.epoch.eq(row7.epoch), reset.room_sell.eq(row7.params.max_position),
                     reset.room_buy.eq(row7.params.max_position)]
        known8 = stage("known8", pos_shape, Mux(current, read.as_value(), reset.as_value()))
        for name in list(carry):
            carry[name] = stage(f"{name}8", carry[name].shape(), carry[name])
        pair8, row8 = carry["pair"], carry["row"]
        # Is the update now in stage 7 the next one of the same pair, under the same entry?
        # (compared in stage 7 with the update one ahead, in stage 8)
        same8 = stage("same8", 1, pair8 == pair7)
        same_epoch8 = stage("same_epoch8", 1, row8.epoch == row7.epoch)
        reset8 = stage("reset8", pos_shape, reset)

        # --- 8: decide; the position is written (one-cycle loop: zero tests and +-1) --------
        v8, two8, a8, b8, seq8 = carry["v"], carry["two"], carry["a"], carry["b"], carry["seq"]
        prm8 = row8.params
        state = Signal(pos_shape)
        with m.If(last_written & same8):
            m.d.comb += state.eq(Mux(same_epoch8, last_pos.as_value(), reset8.as_value()))
        with m.Else():
            m.d.comb += state.eq(known8)
        position = state.position
        can_sell = wire(m, state.room_sell != 0, "can_sell")
        can_buy = wire(m, state.room_buy != 0, "can_buy")
        flat = wire(m, position == 0, "flat")
        go = wire(m, v8 & two8, "go")
        neither = wire(m, ~short8 & ~long8 & near8 & ~flat, "closing")
        sell_a = wire(m, go & ((short8 & can_sell) | (neither & ~position[-1])), "sell_a")
        buy_a = wire(m, go & ((~short8 & long8 & can_buy) | (neither & position[-1])), "buy_a")
        fire = wire(m, sell_a | buy_a, "fire")
        m.d.comb += [
            self.fired.eq(fire), self.one_sided.eq(v8 & ~two8),
            self.position_limit.eq(go & ((short8 & ~can_sell) | (~short8 & long8 & ~can_buy))),
        ]
        new_pos = Signal(pos_shape)
        m.d.comb += [
            new_pos.epoch.eq(row8.epoch),
            new_pos.position.eq(Mux(sell_a, position - 1, position + 1)),
            new_pos.room_sell.eq(Mux(sell_a, state.room_sell - 1, state.room_sell + 1)),
            new_pos.room_buy.eq(Mux(sell_a, state.room_buy + 1, state.room_buy - 1)),
        ]
        m.d.comb += [qwr.en.eq(fire), qwr.addr.eq(pair8), qwr.data.eq(new_pos)]
        m.d.sync += [last_written.eq(fire), last_pair.eq(pair8), last_pos.eq(new_pos)]

        # --- 9: the intents, from registers (the decision drives two bits, not the prices) --
        buys_a = stage("buys_a9", 1, buy_a)
        for port, leg, slot, buys in ((self.leg_a, a8, prm8.slot_a, buys_a),
                                      (self.leg_b, b8, prm8.slot_b, ~buys_a)):
            held = stage(f"held_{'a' if leg is a8 else 'b'}9", _bbo_layout(), leg)
            m.d.sync += [
                port.valid.eq(fire),
                port.p.slot.eq(slot), port.p.tif.eq(TimeInForce.IOC),
                port.p.strategy.eq(PAIRS_STRATEGY_ID), port.p.quantity.eq(prm8.quantity),
                port.p.sequence.eq(seq8), port.p.arrival.eq(0),
            ]
            m.d.comb += [
                port.p.locate.eq(held.locate),
                port.p.side.eq(Mux(buys, Side.BUY, Side.SELL)),
                port.p.price.eq(Mux(buys, held.ask, held.bid)),
            ]
        return m


__all__ = ["PairsMeanReversion", "PAIRS_LATENCY_CYCLES", "pair_params_layout",
           "pair_write_layout", "route_layout"]
