"""Running the risk gate in Amaranth's simulator from a list of `risk_model.Cycle`s, with
outputs in the shape `RiskModel` gives them, so that every tier compares the same way."""

from typing import NamedTuple

from amaranth.lib import data

from tickwire.hdl.book.records import BookParameters, update_layout
from tickwire.hdl.risk.gate import RiskGate
from tickwire.hdl.risk.records import (
    TOTAL_BITS,
    AutoKillConfig,
    RejectReason,
    RejectRecord,
    ThrottleConfig,
    fill_layout,
    limits_write_layout,
    position_write_layout,
    read_request_layout,
    readback_layout,
)
from tickwire.hdl.strategy.records import OrderIntent

from .amaranth_sim import simulate
from .records import pack, unpack

INTENT_FIELDS = tuple(name for name, _ in data.Layout.cast(OrderIntent))


def intent(**fields):
    """An OrderIntent dict with every field (zero unless given)."""
    return {name: int(fields.get(name, 0)) for name in INTENT_FIELDS}


class GateRun(NamedTuple):
    orders: list       # (cycle valid at orders, intent dict)
    log: list          # (intent dict, RejectReason) in FIFO order
    counters: dict
    alarms: dict
    killed: list       # killed, per cycle
    kill_reason: int
    readbacks: list    # (cycle visible, dict)


def _twos(value, bits):
    return value & ((1 << bits) - 1)


def _signed(value, bits):
    return value - (1 << bits) if value >> (bits - 1) else value


class Encoder:
    """Packs a `Cycle`'s inputs into the gate's port values."""

    def __init__(self, p):
        self.p = p
        self.update = update_layout(BookParameters(symbols=p.symbols))

    def intent(self, value):
        return pack(OrderIntent, value)

    def update_value(self, u):
        return pack(self.update, {k: u[k] for k in ("slot", "bid_price", "bid_shares",
                                                    "ask_price", "ask_shares") if k in u})

    def throttle(self, value):
        return pack(ThrottleConfig, {"interval": value[0], "burst": value[1]})

    def auto_kill(self, value):
        return pack(AutoKillConfig, {"rejects": value[0], "window": value[1]})

    def limits(self, v):
        entry = {k: v[k] for k in ("enabled", "max_quantity", "max_notional", "collar_bps",
                                   "position_limit")}
        return pack(limits_write_layout(self.p), {"write": 1, "index": v["index"],
                                                  "entry": entry})

    def fill(self, v):
        return pack(fill_layout(self.p), {"write": 1, **v})

    def set_position(self, v):
        return pack(position_write_layout(self.p), {
            "write": 1, "index": v["index"], "position": _twos(v["position"], TOTAL_BITS)})

    def read_request(self, index):
        return pack(read_request_layout(self.p), {"read": 1, "index": index})


def decode_readback(p, value):
    r = unpack(readback_layout(p), value)
    return {"index": r["index"], "position": _signed(r["position"], TOTAL_BITS),
            "open_buy": _signed(r["open_buy"], TOTAL_BITS + 1),
            "open_sell": _signed(r["open_sell"], TOTAL_BITS + 1)}, r["count"]


def run_gate_sim(cycles, dut=None, *, vcd=None):
    """`cycles` (a list of `Cycle`) through a `RiskGate` in Amaranth's simulator. The reject
    log is drained after the last cycle."""
    dut = dut or RiskGate()
    p = dut.p
    enc = Encoder(p)
    out = {"orders": [], "readbacks": [], "killed": [0], "log": []}
    strobes = ("limits", "fill", "set_position", "read_request")

    async def testbench(ctx):
        last_count = 0
        for x, c in enumerate(cycles):
            ctx.set(dut.intents.valid, c.intent is not None)
            if c.intent is not None:
                ctx.set(dut.intents.payload.as_value(), enc.intent(c.intent))
            ctx.set(dut.updates.valid, c.update is not None)
            if c.update is not None:
                ctx.set(dut.updates.payload.as_value(), enc.update_value(c.update))
            ctx.set(dut.orders.ready, c.ready)
            ctx.set(dut.armed, c.armed)
            ctx.set(dut.kill, c.kill)
            ctx.set(dut.clear_kill, c.clear_kill)
            ctx.set(dut.clear_alarms, c.clear_alarms)
            ctx.set(dut.slot_throttle.as_value(), enc.throttle(c.slot_throttle))
            ctx.set(dut.global_throttle.as_value(), enc.throttle(c.global_throttle))
            ctx.set(dut.auto_kill.as_value(), enc.auto_kill(c.auto_kill))
            for name in strobes:
                value = getattr(c, name)
                port = getattr(dut, name).as_value()
                ctx.set(port, 0 if value is None else getattr(enc, name)(value))
            await ctx.tick()
            if ctx.get(dut.orders.valid):
                out["orders"].append((x + 1, unpack(OrderIntent,
                                                    ctx.get(dut.orders.payload.as_value()))))
            out["killed"].append(ctx.get(dut.killed))
            readback, count = decode_readback(p, ctx.get(dut.readback.as_value()))
            if count != last_count:
                out["readbacks"].append((x + 1, readback))
                last_count = count
        out["killed"].pop()
        out["counters"] = unpack(dut.counters.shape(), ctx.get(dut.counters.as_value()))
        out["alarms"] = unpack(dut.alarms.shape(), ctx.get(dut.alarms.as_value()))
        out["kill_reason"] = ctx.get(dut.kill_reason.as_value())
        for name in strobes:
            ctx.set(getattr(dut, name).as_value(), 0)
        ctx.set(dut.intents.valid, 0)
        ctx.set(dut.updates.valid, 0)
        ctx.set(dut.rejects.ready, 1)
        for _ in range(p.log_depth + 4):
            if ctx.get(dut.rejects.valid):
                record = unpack(RejectRecord, ctx.get(dut.rejects.payload.as_value()))
                out["log"].append((record["intent"], RejectReason(record["reason"])))
            await ctx.tick()

    simulate(dut, testbench, vcd)
    return GateRun(out["orders"], out["log"], out["counters"], out["alarms"], out["killed"],
                   out["kill_reason"], out["readbacks"])


class Script:
    """Builds a list of `Cycle`s: configuration persists from cycle to cycle until changed,
    strobes and stream items are for one cycle."""

    CONFIG = ("armed", "slot_throttle", "global_throttle", "auto_kill")

    def __init__(self, **config):
        from .risk_model import Cycle

        self._cycle = Cycle
        self.config = {"armed": 1, "slot_throttle": (0, 1), "global_throttle": (0, 1),
                       "auto_kill": (0, 0)}
        self.config.update(config)
        self.cycles = []

    @property
    def now(self):
        return len(self.cycles)

    def add(self, **items):
        config = {k: items.pop(k) for k in self.CONFIG if k in items}
        self.config.update(config)
        self.cycles.append(self._cycle(**self.config, **items))
        return len(self.cycles) - 1

    def idle(self, n=1):
        for _ in range(n):
            self.add()
        return self

    def set(self, **config):
        self.config.update(config)
        return self

    def limits(self, index, *, enabled=1, max_quantity=1000, max_notional=10**12,
               collar_bps=100, position_limit=10000, wait=4):
        at = self.add(limits=dict(index=index, enabled=enabled, max_quantity=max_quantity,
                                  max_notional=max_notional, collar_bps=collar_bps,
                                  position_limit=position_limit))
        self.idle(wait)
        return at

    def update(self, slot, bid, ask, *, bid_shares=100, ask_shares=100, wait=4):
        at = self.add(update=dict(slot=slot, bid_price=bid, bid_shares=bid_shares,
                                  ask_price=ask, ask_shares=ask_shares))
        self.idle(wait)
        return at

    def intent(self, slot, side, price, quantity, **more):
        items = {k: more.pop(k) for k in list(more) if k in (
            "ready", "kill", "clear_kill", "update", "fill", "limits", "set_position",
            "read_request", "clear_alarms", *self.CONFIG)}
        return self.add(intent=intent(slot=slot, side=side, price=price, quantity=quantity,
                                      **more), **items)


def random_script(seed, p, cycles=1500):
    """A random scenario for `p`: limits, positions and BBOs for every slot, then `cycles`
    cycles of intents (many back to back on few slots), BookUpdates, fills, reads, kills,
    clears and readiness. Returns (script, first stream cycle)."""
    import random

    rng = random.Random(seed)
    s = Script(armed=0, slot_throttle=(rng.choice([0, 2, 5]), rng.choice([2, 8, 40])),
               global_throttle=(rng.choice([0, 1]), rng.choice([4, 50])),
               auto_kill=(rng.choice([0, 20]), 64))
    s.idle(2)
    bbo = {}
    for slot in range(p.symbols):
        s.limits(slot, enabled=int(rng.random() < 0.9),
                 max_quantity=rng.choice([100, 1000]), max_notional=rng.choice([10**6, 10**8]),
                 collar_bps=rng.choice([0, 50, 200]),
                 position_limit=rng.choice([100, 500, 5000]), wait=3)
        if rng.random() < 0.5:
            s.add(set_position=dict(index=slot, position=rng.randint(-200, 200)))
            s.idle(3)
        bid = 10000 + 10 * rng.randint(-5, 0)
        bbo[slot] = (bid, bid + 10 * rng.randint(1, 3))
        s.update(slot, *bbo[slot], wait=0)
    s.idle(6)
    s.set(armed=1)
    start = s.now
    hot = [rng.randrange(p.symbols) for _ in range(3)]
    host_free, sequence = 0, 1
    for _ in range(cycles):
        items = {}
        if rng.random() < 0.8:
            slot = rng.choice(hot) if rng.random() < 0.6 else rng.randrange(p.symbols + 2)
            ref = bbo.get(slot % p.symbols)
            side = rng.randint(0, 1)
            price = ref[side ^ 1] + rng.choice([-20, 0, 0, 5, 30, 300])
            items["intent"] = intent(slot=slot, side=side, price=price, sequence=sequence,
                                     quantity=rng.choice([0, 1, 10, 50, 100, 200, 2000]),
                                     locate=slot + 100, strategy=rng.randrange(16),
                                     tif=rng.randint(0, 1), arrival=rng.getrandbits(64))
            sequence += 1
        if rng.random() < 0.1:
            slot = rng.randrange(p.symbols)
            bid = 10000 + 10 * rng.randint(-5, 0)
            bbo[slot] = (bid, bid + 10 * rng.randint(1, 3))
            items["update"] = dict(slot=slot, bid_price=bbo[slot][0], ask_price=bbo[slot][1],
                                   bid_shares=rng.choice([0, 7, 7, 7]),
                                   ask_shares=rng.choice([0, 7, 7, 7]))
        if s.now >= host_free and rng.random() < 0.15:
            slot = rng.choice(hot + [rng.randrange(p.symbols)])
            if rng.random() < 0.8:
                items["fill"] = dict(index=slot, side=rng.randint(0, 1),
                                     filled=rng.choice([0, 10, 100]),
                                     released=rng.choice([0, 50, 200]))
            else:
                items["read_request"] = slot
            host_free = s.now + 4
        roll = rng.random()
        if roll < 0.003:
            items["kill"] = 1
        elif roll < 0.03:
            items["clear_kill"] = 1
        if rng.random() < 0.05:
            items["ready"] = 0
        s.add(**items)
    s.idle(10)
    return s, start
