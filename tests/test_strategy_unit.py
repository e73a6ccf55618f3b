"""Unit tier: the strategy engine in Amaranth's simulator, against `EngineModel`.

Every test runs the same script (host table writes and BookUpdates, each at a cycle) through
the gateware and the model and requires the same intents at the same cycles, the same counters
and the same alarms; then it checks the behaviour the rule names, on the model's output."""

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from tickwire.hdl.book.records import BookParameters
from tickwire.hdl.feed.events import Side
from tickwire.hdl.platform.device import describe_only
from tickwire.hdl.platform.registers import Block, RegisterBank, RegisterMap, bus_signature
from tickwire.hdl.strategy.engine import (
    EVENT_TAKER_LATENCY_CYCLES,
    STRATEGY_COUNTERS,
    StrategyEngine,
    StrategyMode,
)
from tickwire.hdl.strategy.pairs import PAIRS_LATENCY_CYCLES
from tickwire.hdl.strategy.records import OrderIntent, strategy_signature
from tickwire.hdl.strategy.taker import TAKER_LATENCY_CYCLES
from tickwire.sim.records import unpack
from tickwire.sim.strategy_model import BUY, SELL, EngineModel, spread
from tickwire.sim.strategy_run import run_strategy

P = BookParameters(symbols=16, locates=16)
PAIRS = 4
TAKER, PAIRS_MODE, OFF = StrategyMode.TAKER, StrategyMode.PAIRS, StrategyMode.OFF
EVENT = StrategyMode.TAKER_EVENT
TICK = 1 << 17          # one Price(4) unit of a mid, in spread units


def upd(slot, bid, ask, seq, *, bid_shares=100, ask_shares=100, locate=None):
    return dict(slot=slot, locate=100 + slot if locate is None else locate, bid_price=bid,
                bid_shares=bid_shares, ask_price=ask, ask_shares=ask_shares, sequence=seq)


def taker(cycle, slot, *, buy=0, sell=(1 << 32) - 1, quantity=10, cooldown=0, enable=1):
    return (cycle, "taker_params", dict(index=slot, enable=enable, buy_price=buy,
                                        sell_price=sell, quantity=quantity, cooldown=cooldown))


def select(cycle, slot, mode, pair=0, leg=0):
    return (cycle, "selection", dict(index=slot, mode=mode, pair=pair, leg=leg))


def pair(cycle, index, a, b, *, beta=1 << 16, offset=0, entry=10 * TICK, exit=2 * TICK,
         quantity=5, max_position=2, enable=1):
    return (cycle, "pair_params", dict(index=index, enable=enable, slot_a=a, slot_b=b,
                                       beta=beta, offset=offset, entry=entry, exit=exit,
                                       quantity=quantity, max_position=max_position))


def model_writes(writes):
    return [(c, port, d.get("index"), {k: v for k, v in d.items() if k != "index"})
            for c, port, d in writes]


def subscribe(cycle, locate, slot, enable=1):
    return (cycle, "subscribe", dict(locate=locate, slot=slot, enable=enable))


def add(side, price, seq, *, locate=5, shares=100, kind=1):
    """A BookEvent: side 0 a bid (buy order), 1 an ask."""
    return dict(kind=kind, side=side, locate=locate, price=price, shares=shares, sequence=seq,
                order_ref=seq)


def run_both(updates, writes, *, events=(), ready=None, queue_depth=16, cycles=None, extra=(),
             taker_delay=0):
    dut = StrategyEngine(P, pairs=PAIRS, queue_depth=queue_depth, taker_delay=taker_delay)
    end = cycles or max([c for c, _ in [*updates, *events]] + [c for c, *_ in writes]) + 40
    run = run_strategy(dut, updates, events=events, writes=list(writes) + list(extra),
                       ready=ready, cycles=end)
    model = EngineModel(queue_depth=queue_depth, taker_delay=taker_delay, locates=P.locates)
    expected = model.run(updates, model_writes(writes), events=events, ready=ready, cycles=end)
    assert run.intents == expected
    assert run.counters == model.counters
    assert run.alarms == model.alarms
    return expected, model


def test_taker_latency_is_three_cycles_and_pairs_nine():
    writes = [select(0, 1, TAKER), taker(1, 1, buy=1000), select(2, 2, PAIRS_MODE, 0, 0),
              select(3, 3, PAIRS_MODE, 0, 1), pair(4, 0, 2, 3)]
    updates = [(10, upd(1, 990, 1000, 1)), (20, upd(3, 1000, 1002, 2)),
               (30, upd(2, 1020, 1022, 3))]
    out, _ = run_both(updates, writes)
    assert out[0][0] - 10 == TAKER_LATENCY_CYCLES == 3
    assert [c - 30 for c, _ in out[1:]] == [PAIRS_LATENCY_CYCLES, PAIRS_LATENCY_CYCLES + 1]


def test_taker_takes_the_touch_when_it_crosses_the_thresholds():
    writes = [select(0, 1, TAKER), taker(1, 1, buy=1000, sell=1010, quantity=7)]
    updates = [(10, upd(1, 990, 1001, 1)),                     # neither
               (12, upd(1, 990, 1000, 2)),                     # buy at the ask
               (14, upd(1, 1010, 1020, 3)),                    # sell at the bid
               (16, upd(1, 1010, 999, 4, ask_shares=0)),       # no ask: no buy
               (18, upd(1, 1011, 999, 5, bid_shares=0)),       # no bid, ask 999: buy
               (20, upd(1, 1012, 998, 6))]                     # both, buy first
    out, model = run_both(updates, writes)
    got = [(i["sequence"], i["side"], i["price"], i["quantity"], i["strategy"], i["slot"],
            i["locate"], i["tif"]) for _, i in out]
    assert got == [(2, BUY, 1000, 7, 0, 1, 101, 1), (3, SELL, 1010, 7, 0, 1, 101, 1),
                   (5, BUY, 999, 7, 0, 1, 101, 1), (6, BUY, 998, 7, 0, 1, 101, 1),
                   (6, SELL, 1012, 7, 0, 1, 101, 1)]
    assert [c - 20 for c, _ in out][-2:] == [TAKER_LATENCY_CYCLES, TAKER_LATENCY_CYCLES + 1]
    assert model.counters["taker_one_sided"] == 2


def test_cooldown_one_level_fires_once_and_not_sooner_than_cooldown():
    writes = [select(0, 1, TAKER), taker(1, 1, buy=1000, cooldown=10)]
    updates = [(10, upd(1, 0, 1000, 1)),    # fires
               (11, upd(1, 0, 1000, 2)),    # same price: never
               (30, upd(1, 0, 1000, 3)),    # same price, long after: still not
               (31, upd(1, 0, 999, 4)),     # new price: fires (21 cycles after the last)
               (35, upd(1, 0, 998, 5)),     # new price but 4 < 10 cycles: no
               (40, upd(1, 0, 997, 6)),     # 9 cycles: no
               (41, upd(1, 0, 996, 7))]     # exactly 10: fires
    out, model = run_both(updates, writes)
    assert [i["sequence"] for _, i in out] == [1, 4, 7]
    assert model.counters["taker_cooldown"] == 4


def test_back_to_back_updates_of_one_slot_see_each_other():
    writes = [select(0, 1, TAKER), select(0 + 1, 2, TAKER), taker(2, 1, buy=1000, sell=1000),
              taker(3, 2, buy=1000)]
    prices = [1000, 1000, 999, 999, 1000, 998, 998, 997]
    updates = [(10 + k, upd(1 if k != 3 else 2, 1001, ask, k)) for k, ask in enumerate(prices)]
    out, model = run_both(updates, writes)
    buys = [(i["slot"], i["price"]) for _, i in out if i["side"] == BUY]
    assert buys == [(1, 1000), (1, 999), (2, 999), (1, 1000), (1, 998), (1, 997)]
    sells = [i for _, i in out if i["side"] == SELL]
    assert len(sells) == 1          # the bid stays at 1001 on slot 1: one sell only


def test_rewriting_a_slot_resets_its_memory_from_the_next_cycle():
    writes = [select(0, 1, TAKER), taker(1, 1, buy=1000),
              taker(20, 1, buy=1000),           # the update at 20 still sees the old memory
              taker(30, 1, buy=1000)]
    updates = [(10, upd(1, 0, 1000, 1)), (20, upd(1, 0, 1000, 2)), (21, upd(1, 0, 1000, 3)),
               (29, upd(1, 0, 1000, 4)), (30, upd(1, 0, 1000, 5)), (31, upd(1, 0, 1000, 6))]
    out, _ = run_both(updates, writes)
    assert [i["sequence"] for _, i in out] == [1, 3, 6]


def test_selection_off_and_disabled_entries_never_fire():
    writes = [select(0, 1, TAKER), taker(1, 1, buy=1000, enable=0), select(2, 2, OFF),
              taker(3, 2, buy=1000), select(4, 3, TAKER), taker(5, 3, buy=1000),
              select(15, 3, OFF)]
    updates = [(10, upd(1, 0, 900, 1)), (11, upd(2, 0, 900, 2)), (12, upd(3, 0, 900, 3)),
               (15, upd(3, 0, 899, 4)), (16, upd(3, 0, 898, 5))]
    out, model = run_both(updates, writes)
    assert [i["sequence"] for _, i in out] == [3, 4]
    assert model.counters["updates"] == 5


def pairs_setup(**kw):
    return [select(0, 4, PAIRS_MODE, 1, 0), select(1, 9, PAIRS_MODE, 1, 1),
            pair(2, 1, 4, 9, **kw)]


def test_pairs_enter_both_ways_stop_at_the_limit_and_exit():
    writes = pairs_setup(max_position=2)
    updates = [(10, upd(9, 1000, 1002, 1)),            # only leg B known: one-sided
               (12, upd(4, 1020, 1022, 2)),            # spread +40 ticks: sell A, buy B
               (14, upd(4, 1020, 1022, 3)),            # again: position -2
               (16, upd(4, 1020, 1022, 4)),            # at the limit: refused
               (18, upd(9, 1020, 1022, 5)),            # spread 0 <= exit: back to -1
               (20, upd(4, 1000, 1002, 6)),            # spread -40: buy A, sell B: 0
               (22, upd(4, 1000, 1002, 7)),            # +1
               (24, upd(4, 1000, 1002, 8)),            # +2
               (26, upd(4, 1000, 1002, 9)),            # limit
               (28, upd(4, 1021, 1021, 10))]           # spread 0: back to +1
    out, model = run_both(updates, writes)
    legs = [(i["sequence"], i["slot"], i["side"], i["price"]) for _, i in out]
    assert legs == [(2, 4, SELL, 1020), (2, 9, BUY, 1002), (3, 4, SELL, 1020), (3, 9, BUY, 1002),
                    (5, 4, BUY, 1022), (5, 9, SELL, 1020), (6, 4, BUY, 1002), (6, 9, SELL, 1020),
                    (7, 4, BUY, 1002), (7, 9, SELL, 1020), (8, 4, BUY, 1002), (8, 9, SELL, 1020),
                    (10, 4, SELL, 1021), (10, 9, BUY, 1022)]
    assert all(i["quantity"] == 5 and i["strategy"] == 1 for _, i in out)
    assert all(b[0] == a[0] + 1 for a, b in zip(out[::2], out[1::2], strict=True))
    assert model.counters["pairs_position_limit"] == 2 and model.alarms["position_limit"]
    assert model.counters["pairs_one_sided"] == 1 and model.counters["pairs_fired"] == 7


def test_pairs_spread_uses_beta_offset_and_the_stored_leg():
    beta = (3 << 16) // 2 + 123            # 1.5019 in 16.16
    a, b = (1500, 1504), (1000, 1001)
    s = spread(dict(beta=beta, offset=-7 * TICK), a, b)
    writes = pairs_setup(beta=beta, offset=-7 * TICK, entry=abs(s) - 1, exit=0)
    writes += [pair(40, 1, 4, 9, beta=beta, offset=-7 * TICK, entry=abs(s), exit=0)]
    updates = [(10, upd(9, *b, 1)), (11, upd(4, *a, 2)),       # |s| > entry: a trade
               (50, upd(4, *a, 3))]                            # |s| == entry: none
    out, _ = run_both(updates, writes)
    assert [i["sequence"] for _, i in out] == [2, 2]
    assert out[0][1]["side"] == (SELL if s > 0 else BUY)


def test_pairs_ignore_an_update_the_pair_does_not_name_and_one_sided_legs():
    writes = pairs_setup() + [select(3, 5, PAIRS_MODE, 1, 0)]   # slot 5 claims leg A of 1
    updates = [(10, upd(9, 1000, 1002, 1)), (12, upd(5, 1050, 1052, 2)),
               (14, upd(4, 1050, 1052, 3, ask_shares=0)), (16, upd(4, 1050, 1052, 4))]
    out, model = run_both(updates, writes)
    assert [i["sequence"] for _, i in out] == [4, 4]
    assert model.counters["pairs_one_sided"] == 2


def test_back_to_back_pair_updates_see_the_position():
    writes = pairs_setup(max_position=3)
    updates = [(10, upd(9, 1000, 1002, 1))] + [(11 + k, upd(4, 1030, 1032, 2 + k))
                                               for k in range(5)]
    out, model = run_both(updates, writes)
    assert [i["sequence"] for _, i in out][::2] == [2, 3, 4]
    assert model.counters["pairs_position_limit"] == 2


def test_a_full_queue_counts_and_alarms_lost_intents_and_clear_alarms_clears():
    writes = [select(k, k, TAKER) for k in range(1, 4)]
    writes += [taker(3 + k, k, buy=1000, sell=1000) for k in range(1, 4)]
    updates = [(10 + k, upd(1 + k % 3, 1000 + k, 1000 - k, k)) for k in range(12)]
    closed = set(range(0, 40))
    out, model = run_both(updates, writes, ready=lambda c: c not in closed, queue_depth=8,
                          cycles=80)
    assert model.counters["intents_lost"] == 24 - 8 and model.alarms["lost"] == 1
    assert len(out) == 8 and out[0][0] == 40
    dut = StrategyEngine(P, pairs=PAIRS, queue_depth=8)
    run = run_strategy(dut, updates, writes=writes + [(70, "clear_alarms", 1)],
                       ready=lambda c: c not in closed, cycles=80)
    assert run.alarms == {"lost": 0, "position_limit": 0}
    assert run.counters["intents_lost"] == 16


def test_pair_legs_are_never_split_by_a_full_queue():
    writes = pairs_setup(max_position=20) + [select(3, 1, TAKER), taker(4, 1, buy=1000)]
    updates = [(10, upd(9, 1000, 1002, 1))]
    updates += [(11 + k, upd(4, 1030, 1032, 2 + k)) for k in range(4)]
    updates += [(15 + k, upd(1, 0, 1000 - k, 10 + k)) for k in range(12)]
    out, model = run_both(updates, writes, ready=lambda c: c > 60 or c % 5 == 0,
                          queue_depth=8, cycles=100)
    pairs = [i for _, i in out if i["strategy"] == 1]
    assert len(pairs) % 2 == 0 and model.counters["intents_lost"] > 0
    assert [p["slot"] for p in pairs] == [4, 9] * (len(pairs) // 2)


def test_register_declarations_resolve_to_a_map():
    engine = describe_only(StrategyEngine(P, pairs=PAIRS))
    regs = RegisterMap([Block("strategy", engine, engine.registers)])
    taker_reg = regs["strategy.taker_params"]
    assert taker_reg.kind == "strobe" and taker_reg.access == "wo"
    assert [f.name for f in taker_reg.fields] == ["write", "index", "enable", "buy_price",
                                                  "sell_price", "quantity", "cooldown"]
    assert [f.name for f in regs["strategy.pair_params"].fields][:4] == [
        "write", "index", "enable", "slot_a"]
    assert regs["strategy.selection"].fields[2].enum == {"OFF": 0, "TAKER": 1, "PAIRS": 2,
                                                         "TAKER_EVENT": 3}
    assert {f"strategy.counters.{name}" for name in STRATEGY_COUNTERS} <= set(regs.by_name)
    assert regs["strategy.alarms"].kind == "status"


@pytest.mark.parametrize("symbols", [16, 1024])
def test_tables_are_sized_by_the_book(symbols):
    engine = describe_only(StrategyEngine(BookParameters(symbols=symbols), pairs=PAIRS))
    assert engine.taker.p.symbols == symbols
    assert engine.signature.members["selection"].shape.size == 1 + (symbols - 1).bit_length() \
        + 2 + 2 + 1


def test_a_side_fired_one_cycle_before_is_kept_when_the_other_side_fires():
    writes = [select(0, 1, TAKER), taker(1, 1, buy=1000, sell=1000)]
    updates = [(10, upd(1, 990, 1000, 1)),      # buy at 1000
               (11, upd(1, 1001, 1000, 2)),     # sell at 1001; the buy is still remembered
               (15, upd(1, 990, 1000, 3)),      # buy at 1000 again: never
               (16, upd(1, 1001, 1000, 4))]     # sell at 1001 again: never
    out, _ = run_both(updates, writes)
    assert [(i["sequence"], i["side"]) for _, i in out] == [(1, BUY), (2, SELL)]


class BankedEngine(wiring.Component):
    """The engine behind a register bank, as a device top level wires it."""

    def __init__(self):
        self.engine = StrategyEngine(P, pairs=PAIRS)
        self.map = RegisterMap([Block("strategy", self.engine, self.engine.registers)])
        self.bank = RegisterBank(self.map)
        members = {"bus": In(bus_signature(self.map.address_width))}
        for name in ("updates", "events", "intents"):
            members[name] = self.engine.signature.members[name]
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self.engine
        m.submodules.bank = bank = self.bank
        wiring.connect(m, wiring.flipped(self.bus), bank.bus)
        wiring.connect(m, wiring.flipped(self.updates), engine.updates)
        wiring.connect(m, wiring.flipped(self.events), engine.events)
        wiring.connect(m, engine.intents, wiring.flipped(self.intents))
        for bank_port, (_, port, flow, _, _) in self.map.ports.items():
            ours, theirs = getattr(bank, bank_port), getattr(engine, port)
            m.d.comb += theirs.eq(ours) if flow == In else ours.eq(theirs)
        return m


def test_tables_written_through_the_register_bank_take_effect():
    from tickwire.host.device import _encode
    from tickwire.sim.amaranth_sim import simulate
    from tickwire.sim.strategy_run import encode

    dut = BankedEngine()
    regs = dut.map
    script = [("strategy.selection", dict(write=1, index=2, mode="TAKER")),
              ("strategy.taker_params", dict(write=1, index=2, enable=1, buy_price=1000,
                                             sell_price=5000, quantity=9, cooldown=0))]
    shape = dut.signature.members["updates"].signature.members["payload"].shape
    got = []

    async def testbench(ctx):
        for name, fields in script:
            register = regs[name]
            value = _encode(register, fields)
            for k in range(register.words):
                ctx.set(dut.bus.addr, register.address + k)
                ctx.set(dut.bus.w_data, (value >> (32 * k)) & 0xFFFFFFFF)
                ctx.set(dut.bus.w_stb, 1)
                await ctx.tick()
            ctx.set(dut.bus.w_stb, 0)
            await ctx.tick()
        ctx.set(dut.intents.ready, 1)
        ctx.set(dut.updates.payload.as_value(), encode(shape, upd(2, 900, 999, 77)))
        ctx.set(dut.updates.valid, 1)
        await ctx.tick()
        ctx.set(dut.updates.valid, 0)
        for _ in range(4):
            if ctx.get(dut.intents.valid):
                got.append(unpack(OrderIntent, ctx.get(dut.intents.payload.as_value())))
            await ctx.tick()

    simulate(dut, testbench)
    assert [(i["slot"], i["side"], i["price"], i["quantity"], i["sequence"]) for i in got] == [
        (2, BUY, 999, 9, 77)]
    assert regs["strategy.taker_params"].words == 5


class AskBelow(wiring.Component):
    """A user's strategy, as small as one can be: buy 1 at the ask of any update whose ask is
    below a host-set threshold, or of any BookEvent add on the sell side below it (held until
    taken; while one is held, the next is ignored)."""

    def __init__(self, p):
        self.p = p
        super().__init__({**strategy_signature(p).members, "threshold": In(32)})

    def elaborate(self, platform):
        m = Module()
        u, e, out = self.updates, self.events, self.intents
        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)
        with m.If(~out.valid | out.ready):
            with m.If(u.valid & (u.p.ask_shares != 0) & (u.p.ask_price < self.threshold)):
                m.d.sync += [out.valid.eq(1), out.p.slot.eq(u.p.slot), out.p.quantity.eq(1),
                             out.p.price.eq(u.p.ask_price), out.p.sequence.eq(u.p.sequence),
                             out.p.strategy.eq(7)]
            with m.Elif(e.valid & (e.p.side == Side.SELL) & (e.p.price < self.threshold)):
                m.d.sync += [out.valid.eq(1), out.p.slot.eq(0), out.p.quantity.eq(1),
                             out.p.price.eq(e.p.price), out.p.sequence.eq(e.p.sequence),
                             out.p.strategy.eq(7)]
        return m


def test_the_runner_drives_any_strategy_with_the_signature():
    updates = [(5, upd(2, 90, 99, 1)), (6, upd(3, 90, 100, 2)), (7, upd(4, 90, 50, 3)),
               (8, upd(5, 90, 60, 4))]
    events = [(12, dict(kind=1, side=1, price=42, shares=10, sequence=9)),
              (13, dict(kind=1, side=0, price=42, shares=10, sequence=10))]
    run = run_strategy(AskBelow(P), updates, events=events,
                       config={"threshold": 100},
                       ready=lambda c: c != 8, cycles=30)
    assert [(c, i["price"], i["sequence"], i["strategy"]) for c, i in run.intents] == [
        (6, 99, 1, 7), (8 + 1, 50, 3, 7), (13, 42, 9, 7)]
    assert run.counters is None and run.alarms is None


def test_a_rewrite_between_back_to_back_updates_resets_the_memory():
    writes = [select(0, 1, TAKER), taker(1, 1, buy=1000, cooldown=5),
              taker(20, 1, buy=1000, cooldown=5),
              taker(31, 1, buy=1000, cooldown=5)]
    updates = [(20, upd(1, 0, 999, 1)),       # fires; the rewrite at 20 comes after it
               (21, upd(1, 0, 999, 2)),       # next cycle, same price: fires (memory reset)
               (30, upd(1, 0, 998, 3)),       # fires
               (31, upd(1, 0, 997, 4)),       # within cooldown: refused
               (32, upd(1, 0, 997, 5))]       # the rewrite at 31 reset it: fires
    out, _ = run_both(updates, writes)
    assert [i["sequence"] for _, i in out] == [1, 2, 3, 5]


def event_setup(**kw):
    return [subscribe(0, 5, 1), select(1, 1, EVENT), taker(2, 1, **kw)]


def test_event_taker_fires_on_an_add_making_a_new_touch_in_five_cycles():
    writes = event_setup(buy=1000, sell=1010, quantity=7)
    updates = [(10, upd(1, 990, 1005, 1, locate=5))]
    events = [(20, add(1, 1003, 2)),              # new best ask, above the threshold
              (22, add(1, 1000, 3)),              # new best ask at the threshold: buy
              (24, add(1, 1000, 4)),              # same price again: the memory refuses
              (26, add(0, 1012, 5)),              # new best bid above 1010: sell
              (28, add(0, 1011, 6, shares=0)),    # no shares: ignored
              (30, add(0, 1020, 7, kind=5)),      # a Delete: ignored
              (32, add(0, 1020, 8, locate=6)),    # not subscribed: ignored
              (34, add(1, 1005, 9)),              # at the BBO's ask: not a new touch
              (36, add(0, 990, 10))]              # at the BBO's bid: not a new touch
    out, model = run_both(updates, events=events, writes=writes)
    assert [(c, i["sequence"], i["side"], i["price"], i["quantity"], i["slot"], i["locate"])
            for c, i in out] == [(22 + EVENT_TAKER_LATENCY_CYCLES, 3, BUY, 1000, 7, 1, 5),
                                 (26 + EVENT_TAKER_LATENCY_CYCLES, 5, SELL, 1012, 7, 1, 5)]
    assert EVENT_TAKER_LATENCY_CYCLES == 5
    assert model.counters["taker_fired"] == 2 and model.counters["taker_cooldown"] == 1
    assert model.counters["taker_one_sided"] == 0


def test_event_taker_compares_with_the_last_update_before_it():
    writes = event_setup(buy=1010)
    # An event arriving at e is evaluated at e + 2: it sees the updates of e + 1 and before.
    events = [(21, add(1, 1000, 2)),     # the update of 20 (ask 999) is seen: no touch
              (29, add(1, 1001, 4)),     # the update of 30 (ask 1002) is seen: buy
              (39, add(1, 1000, 6)),     # the update of 41 (ask 999) is not: buy
              (50, add(1, 1009, 8)),     # no ask shown at all: no collar reference, no buy
              (60, add(0, 991, 9))]      # a new best bid is not a sell below its threshold
    updates = [(20, upd(1, 990, 999, 1, locate=5)), (30, upd(1, 990, 1002, 3, locate=5)),
               (41, upd(1, 990, 999, 5, locate=5)), (45, upd(1, 990, 1020, 7, locate=5,
                                                             ask_shares=0))]
    out, _ = run_both(updates, events=events, writes=writes)
    assert [i["sequence"] for _, i in out] == [4, 6]


def test_event_taker_routing_subscription_and_cooldown():
    writes = [subscribe(0, 5, 1), subscribe(0 + 1, 7, 2), select(2, 1, EVENT),
              select(3, 2, TAKER), taker(4, 1, buy=1000, cooldown=6), taker(5, 2, buy=1000),
              subscribe(40, 5, 1, enable=0),          # events from 41 on: not subscribed
              subscribe(50, 5, 3), select(50, 3, EVENT), taker(50, 3, buy=2000)]
    events = [(10, add(1, 999, 1)),                # fires
              (12, add(1, 998, 2)),                # within the cooldown of 6
              (16, add(1, 997, 3)),                # 6 cycles later: fires
              (20, add(1, 900, 4, locate=7)),      # slot 2 runs the book taker: not here
              (40, add(1, 996, 5)),                # the unsubscription is at 40: fires
              (41, add(1, 995, 6)),                # unsubscribed: ignored
              (50, add(1, 1500, 7)),               # the map write at 50 is not seen yet
              (51, add(1, 1500, 8))]               # now slot 3 with buy 2000: fires
    updates = [(8, upd(1, 900, 1100, 0, locate=5)), (45, upd(3, 900, 1600, 0, locate=5))]
    out, model = run_both(updates, events=events, writes=writes)
    assert [(i["sequence"], i["slot"]) for _, i in out] == [(1, 1), (3, 1), (5, 1), (8, 3)]
    assert model.counters["taker_cooldown"] == 1


def test_event_taker_back_to_back_events_of_one_slot_see_each_other():
    writes = event_setup(buy=1000, sell=1000, cooldown=0)
    prices = [1000, 1000, 999, 999, 1000, 998, 998, 997]
    events = [(10 + k, add(1, p, k)) for k, p in enumerate(prices)]
    events += [(30 + k, add(0, p, 10 + k)) for k, p in enumerate([1001, 1002, 1002])]
    out, _ = run_both([(8, upd(1, 990, 1005, 0, locate=5))], events=events, writes=writes)
    assert [(i["side"], i["price"]) for _, i in out] == [
        (BUY, 1000), (BUY, 999), (BUY, 1000), (BUY, 998), (BUY, 997), (SELL, 1001),
        (SELL, 1002)]


def test_book_taker_delay_and_the_lane_order_of_both_takers():
    writes = [subscribe(0, 5, 1), select(1, 1, EVENT), select(2, 2, TAKER),
              taker(3, 1, buy=1000), taker(4, 2, buy=1000, sell=900)]
    # The update of 10 (+ 3 + 1) and the event of 9 (+ 5) offer in the same cycle.
    updates = [(5, upd(1, 900, 1000, 0, locate=5)), (10, upd(2, 950, 990, 1))]
    events = [(9, add(1, 980, 2))]
    out, _ = run_both(updates, events=events, writes=writes, taker_delay=1)
    assert [(c, i["sequence"], i["side"]) for c, i in out] == [(14, 2, BUY), (15, 1, BUY),
                                                               (16, 1, SELL)]
