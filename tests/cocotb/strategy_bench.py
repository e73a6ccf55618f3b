"""cocotb bench of the Verilated strategy engine (the generated Verilog, its own port names).

Random scripts (`random_scenario`: routing, subscriptions, taker and pair tables, bursts of BBO
updates and raw events for the event taker, table rewrites mid-stream, a consumer that stalls)
are driven at the ports cycle by cycle; the intents taken at ``intents`` (with their cycles), the
counters and the alarms must equal `EngineModel`'s.
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from tickwire.hdl.book.records import BookParameters
from tickwire.hdl.feed.events import BookEvent
from tickwire.hdl.platform.device import describe_only
from tickwire.hdl.strategy.engine import StrategyEngine
from tickwire.hdl.strategy.records import OrderIntent
from tickwire.sim.records import unpack
from tickwire.sim.strategy_model import EngineModel, random_scenario, table_writes
from tickwire.sim.strategy_run import encode


def config():
    c = json.loads(os.environ["STRATEGY_PARAMS"])
    p = BookParameters(**c["book"])
    return p, c


async def run_script(dut, engine, writes, updates, events, closed, end):
    update_shape = engine.signature.members["updates"].signature.members["payload"].shape
    ports = ("subscribe", "selection", "taker_params", "pair_params")
    shapes = {port: engine.signature.members[port].shape for port in ports}
    per_cycle = {}
    for cycle, u in updates:
        per_cycle.setdefault(cycle, {})["updates"] = encode(update_shape, u)
    for cycle, e in events:
        per_cycle.setdefault(cycle, {})["events"] = encode(BookEvent, e)
    for cycle, port, value in writes:
        per_cycle.setdefault(cycle, {})[port] = encode(shapes[port], {"write": 1, **value})
    intents = []
    for cycle in range(end):
        now = per_cycle.get(cycle, {})
        dut.updates__valid.value = int("updates" in now)
        dut.updates__payload.value = now.get("updates", 0)
        dut.events__valid.value = int("events" in now)
        dut.events__payload.value = now.get("events", 0)
        for port in ports:
            getattr(dut, port).value = now.get(port, 0)
        dut.intents__ready.value = int(cycle not in closed)
        await ReadOnly()
        if dut.intents__valid.value and cycle not in closed:
            intents.append((cycle, unpack(OrderIntent, int(dut.intents__payload.value))))
        await RisingEdge(dut.clk)
    return intents


@cocotb.test()
async def a_random_script_matches_the_model(dut):
    """One script per simulator run: block RAM (the last BBO of each slot) is not cleared by
    reset, and the model starts empty, as the Verilated model does."""
    p, c = config()
    cocotb.start_soon(Clock(dut.clk, 6.4, unit="ns").start())
    engine = describe_only(StrategyEngine(p, pairs=c["pairs"], queue_depth=c["queue_depth"],
                                          taker_delay=c["taker_delay"]))
    dut.rst.value = 1
    dut.clear_alarms.value = 0
    dut.updates__valid.value = 0
    dut.events__valid.value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    writes, updates, events, closed = random_scenario(
        random.Random(c["seed"]), slots=c["slots"], pairs=c["pairs"], updates=c["updates"],
        locates=p.locates)
    end = max(cy for cy, *_ in writes + updates + events) + 80
    got = await run_script(dut, engine, writes, updates, events, closed, end)
    model = EngineModel(queue_depth=c["queue_depth"], taker_delay=c["taker_delay"],
                        locates=p.locates)
    fired = [0]
    evaluate = model.evaluate_event

    def counted(*args):
        out = evaluate(*args)
        fired[0] += len(out)
        return out
    model.evaluate_event = counted
    expected = model.run(updates, table_writes(writes), events=events,
                         ready=lambda cy: cy not in closed, cycles=end)
    for k, (mine, theirs) in enumerate(zip(got, expected, strict=False)):
        assert mine == theirs, (k, mine, theirs)
    assert len(got) == len(expected)
    await RisingEdge(dut.clk)
    await ReadOnly()
    counters = unpack(engine.counters.shape(), int(dut.counters.value))
    alarms = unpack(engine.alarms.shape(), int(dut.alarms.value))
    assert counters == model.counters
    assert alarms == model.alarms
    assert len(got) > 100 and counters["pairs_fired"] > 0 and counters["taker_fired"] > 0
    assert fired[0] > 0           # the event taker fired
