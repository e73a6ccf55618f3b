"""Running any strategy (a component with `strategy_signature`) in Amaranth's simulator.

`run_strategy` presents BookUpdates, BookEvents and writes to any other input port (the
host's table writes), each at the cycle given, and returns the intents with the cycle each was
valid and taken at ``intents``. It knows nothing of the shipped strategies: a new strategy is
tested the same way, against its own model.
"""

from typing import NamedTuple

from amaranth.hdl import Shape
from amaranth.lib import data

from tickwire.hdl.feed.events import BookEvent
from tickwire.hdl.strategy.records import OrderIntent

from .amaranth_sim import simulate
from .records import unpack


class StrategyRun(NamedTuple):
    intents: list      # (cycle, OrderIntent dict), in the order they left
    counters: dict     # the ``counters`` port at the end, if the strategy has one
    alarms: dict       # the ``alarms`` port at the end, if the strategy has one
    cycles: int


def encode(shape, values):
    """{field: int, enum member or nested dict} -> the bits of `shape`. Missing fields are
    zero; negative numbers are written in two's complement (signed fields)."""
    layout = data.Layout.cast(shape)
    result = 0
    for name, value in values.items():
        field = layout[name]
        if isinstance(value, dict):
            value = encode(field.shape, value)
        value = int(getattr(value, "value", value))
        width = field.width
        if value < 0 and Shape.cast(field.shape).signed:
            value += 1 << width
        if not 0 <= value < 1 << width:
            raise ValueError(f"{name}={value} does not fit in {width} bits")
        result |= value << field.offset
    return result


def run_strategy(dut, updates=(), *, events=(), writes=(), config=None, cycles=None, ready=None,
                 drain=32, vcd=None):
    """Run `dut` (anything with `strategy_signature`) and collect its intents.

    updates : [(cycle, BookUpdate dict)], at most one per cycle
    events : [(cycle, BookEvent dict)], at most one per cycle
    writes : [(cycle, port name, value)]: the value (a dict of the port's fields, or an int) is
        on the port for that one cycle and zero otherwise, as the register bank drives a
        `Strobe`; a dict for a layout with a ``write`` field gets ``write=1`` unless given
    config : {port name: value}: held on the port for the whole run (a `Config` register)
    cycles : cycles to run (default: `drain` cycles past the last input)
    ready : ready(cycle) -> bool for the consumer of ``intents`` (default: always ready)
    """
    update_shape = dut.signature.members["updates"].signature.members["payload"].shape
    schedule = {}

    def at(cycle, key, value):
        slot = schedule.setdefault(cycle, {})
        if key in slot:
            raise ValueError(f"two inputs on {key} at cycle {cycle}")
        slot[key] = value

    for cycle, u in updates:
        at(cycle, "updates", encode(update_shape, u) if isinstance(u, dict) else u)
    for cycle, e in events:
        at(cycle, "events", encode(BookEvent, e) if isinstance(e, dict) else e)
    ports = set()
    for cycle, port, value in writes:
        shape = dut.signature.members[port].shape
        if isinstance(value, dict):
            if "write" in {name for name, _ in data.Layout.cast(shape)} and "write" not in value:
                value = {"write": 1, **value}
            value = encode(shape, value)
        at(cycle, port, value)
        ports.add(port)
    end = cycles if cycles is not None else max(schedule, default=0) + drain
    intents, state = [], {}
    has = dut.signature.members

    held = {}
    for port, value in (config or {}).items():
        shape = dut.signature.members[port].shape
        held[port] = encode(shape, value) if isinstance(value, dict) else value

    async def testbench(ctx):
        for port, value in held.items():
            ctx.set(_value(getattr(dut, port)), value)
        for cycle in range(end):
            inputs = schedule.get(cycle, {})
            ctx.set(dut.updates.valid, "updates" in inputs)
            if "updates" in inputs:
                ctx.set(dut.updates.payload.as_value(), inputs["updates"])
            ctx.set(dut.events.valid, "events" in inputs)
            if "events" in inputs:
                ctx.set(dut.events.payload.as_value(), inputs["events"])
            for port in ports:
                ctx.set(_value(getattr(dut, port)), inputs.get(port, 0))
            taking = 1 if ready is None else int(bool(ready(cycle)))
            ctx.set(dut.intents.ready, taking)
            if taking and ctx.get(dut.intents.valid):
                intents.append((cycle, unpack(OrderIntent,
                                              ctx.get(dut.intents.payload.as_value()))))
            await ctx.tick()
        for name in ("counters", "alarms"):
            if name in has:
                port = getattr(dut, name)
                state[name] = unpack(has[name].shape, ctx.get(_value(port)))

    simulate(dut, testbench, vcd)
    return StrategyRun(intents, state.get("counters"), state.get("alarms"), end)


def _value(port):
    return port.as_value() if hasattr(port, "as_value") else port
