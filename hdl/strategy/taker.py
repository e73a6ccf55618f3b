"""Threshold taker: per book slot, take the touch when it crosses a host-set price."""

from amaranth.hdl import Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tickwire.hdl.book.records import PRICE_BITS, BookParameters, update_layout
from tickwire.hdl.signals import wire
from tickwire.hdl.strategy.records import OrderIntent, Side, TimeInForce

#: Cycles from a BookUpdate valid at ``updates`` to the taker's intents valid.
TAKER_LATENCY_CYCLES = 2
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
    return data.StructLayout({"fired": 1, "price": unsigned(PRICE_BITS),
                              "deadline": unsigned(TIME_BITS)})


def _state_layout():
    return data.StructLayout({"epoch": unsigned(EPOCH_BITS), "buy": _side_memory(),
                              "sell": _side_memory()})


def _row_layout():
    return data.StructLayout({"epoch": unsigned(EPOCH_BITS), "params": TakerParams})


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

    Storage (block RAM, one row per slot): the parameters with the table's write count at their
    write (``epoch``, 32 bits) and the memory of both sides (fired, price, deadline = fire
    cycle + cooldown) with the epoch of the entry they were made under. A memory whose epoch
    is not its entry's is no memory: that is how a rewrite resets it without a second write
    port. Back-to-back updates of one slot see each other without a stall: the memory the
    update one ahead writes in the cycle this one's read is issued is forwarded to it, and
    what it would decide if that one fired (price differs, cooldown <= 1) is worked out a cycle
    early, so that the decision is a mux, not compares after a mux.

    Ports
    -----
    updates : In(BookUpdate stream, always ready)
    active : In(1): the engine routes the update presented the cycle before to the taker
    write : In(`taker_write_layout`): a table write (``write`` set for one cycle)
    buy, sell : Out(OrderIntent stream, always ready): one-cycle pulses
    fired, cooldown : Out(2): per side (bit 0 buy, bit 1 sell), the cycle before the intent
    one_sided : Out(1): likewise

    Latency: 2 cycles from an update valid at ``updates`` to its intents valid (the table read,
    then compare and decide into registers), one update per cycle sustained.
    """

    def __init__(self, parameters=None, **overrides):
        self.p = p = (parameters or BookParameters())._replace(**overrides).check()
        super().__init__({
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
        m.submodules.state = state = Memory(shape=_state_layout(), depth=p.symbols, init=[])
        prd, pwr = params.read_port(), params.write_port()
        srd, swr = state.read_port(), state.write_port()

        now = Signal(TIME_BITS)
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

        # --- stage 0: read the slot's row and memory ----------------------------------------
        u = self.updates
        m.d.comb += [prd.addr.eq(u.p.slot), srd.addr.eq(u.p.slot)]
        u1 = Signal(update_layout(p))
        v1 = Signal()
        m.d.sync += [u1.eq(u.p), v1.eq(u.valid)]
        # The update now in stage 1 (one ahead) and this one: same slot, and no write of the
        # slot between them (a write at the cycle the one ahead arrived separates them)?
        w_last = Signal()
        w_last_index = Signal(p.slot_bits)
        m.d.sync += [w_last.eq(w.write), w_last_index.eq(w.index)]
        chain = Signal()
        m.d.sync += chain.eq(v1 & (u.p.slot == u1.slot)
                             & ~(w_last & (w_last_index == u.p.slot)))
        # If the one ahead fires a side, may this one fire it again? (price differs, and one
        # cycle later is at least its cooldown): decided now, used if it did fire.
        after_fire = {}
        for side, price, ahead in (("buy", u.p.ask_price, u1.ask_price),
                                   ("sell", u.p.bid_price, u1.bid_price)):
            after_fire[side] = Signal(name=f"{side}_after_fire")
            m.d.sync += after_fire[side].eq((price != ahead) & (prd.data.params.cooldown <= 1))

        # --- stage 1: compare, decide, remember ---------------------------------------------
        last_fired = Signal(2)          # the sides the update one ahead fired
        last_state = Signal(_state_layout())
        mem = srd.data
        row = prd.data
        prm = row.params
        fresh = wire(m, mem.epoch == row.epoch, "fresh")
        go = wire(m, v1 & self.active & prm.enable, "go")
        chained = wire(m, chain & (last_fired != 0), "chained")

        new_state = Signal(_state_layout())
        m.d.comb += new_state.epoch.eq(row.epoch)
        fire = {}
        for bit, side, exists, price, wanted in (
                (0, "buy", u1.ask_shares != 0, u1.ask_price, u1.ask_price <= prm.buy_price),
                (1, "sell", u1.bid_shares != 0, u1.bid_price, u1.bid_price >= prm.sell_price)):
            memory = getattr(mem, side)
            eligible = wire(m, go & exists & wanted, f"{side}_eligible")
            allowed_mem = wire(m, ~(fresh & memory.fired)
                               | ((memory.price != price) & (now >= memory.deadline)),
                               f"{side}_allowed_mem")
            allowed = wire(m, Mux(chain & last_fired[bit], after_fire[side], allowed_mem),
                           f"{side}_allowed")
            fire[side] = wire(m, eligible & allowed, f"{side}_fire")
            m.d.comb += [self.fired[bit].eq(fire[side]),
                         self.cooldown[bit].eq(eligible & ~allowed)]
            kept = getattr(new_state, side)
            with m.If(fire[side]):
                m.d.comb += [kept.fired.eq(1), kept.price.eq(price),
                             kept.deadline.eq(now + prm.cooldown)]
            with m.Elif(chained):
                m.d.comb += kept.eq(getattr(last_state, side))
            with m.Elif(fresh):
                m.d.comb += kept.eq(memory)

            out = getattr(self, side)
            m.d.sync += [
                out.valid.eq(fire[side]),
                out.p.slot.eq(u1.slot), out.p.locate.eq(u1.locate),
                out.p.side.eq(Side.BUY if side == "buy" else Side.SELL),
                out.p.tif.eq(TimeInForce.IOC), out.p.strategy.eq(TAKER_STRATEGY_ID),
                out.p.quantity.eq(prm.quantity), out.p.price.eq(price),
                out.p.sequence.eq(u1.sequence), out.p.arrival.eq(0),
            ]
        m.d.comb += self.one_sided.eq(go & ((u1.bid_shares == 0) | (u1.ask_shares == 0)))

        written = Cat(fire["buy"], fire["sell"])
        m.d.comb += [swr.en.eq(written != 0), swr.addr.eq(u1.slot), swr.data.eq(new_state)]
        m.d.sync += [last_fired.eq(written), last_state.eq(new_state)]
        return m


__all__ = ["ThresholdTaker", "TakerParams", "TAKER_LATENCY_CYCLES", "table_write_layout",
           "taker_write_layout"]
