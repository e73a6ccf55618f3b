"""cocotb bench of the Verilated risk gate (the generated Verilog, its own port names).

A random scenario (`tickwire.sim.risk_run.random_script`: limits, positions and BBOs for every
slot, then intents in bursts on a few hot slots, BookUpdates, fills, reads, kills and
readiness) is driven cycle by cycle; the orders with the cycle each is valid, the kill switch
in every cycle, the readbacks, the counters, the alarms and the drained reject log must equal
`RiskModel`'s."""

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from tickwire.hdl.risk.gate import RiskGate
from tickwire.hdl.risk.records import RejectReason, RejectRecord, RiskParameters
from tickwire.hdl.strategy.records import OrderIntent
from tickwire.sim.records import unpack
from tickwire.sim.risk_model import RiskModel
from tickwire.sim.risk_run import Encoder, decode_readback, random_script

STROBES = ("limits", "fill", "set_position", "read_request")


def params():
    return RiskParameters(**json.loads(os.environ["RISK_PARAMS"]))


def drive(dut, enc, c):
    dut.intents__valid.value = int(c.intent is not None)
    if c.intent is not None:
        dut.intents__payload.value = enc.intent(c.intent)
    dut.updates__valid.value = int(c.update is not None)
    if c.update is not None:
        dut.updates__payload.value = enc.update_value(c.update)
    dut.orders__ready.value = c.ready
    dut.armed.value = c.armed
    dut.kill.value = c.kill
    dut.clear_kill.value = c.clear_kill
    dut.clear_alarms.value = c.clear_alarms
    dut.slot_throttle.value = enc.throttle(c.slot_throttle)
    dut.global_throttle.value = enc.throttle(c.global_throttle)
    dut.auto_kill.value = enc.auto_kill(c.auto_kill)
    for name in STROBES:
        value = getattr(c, name)
        getattr(dut, name).value = 0 if value is None else getattr(enc, name)(value)


@cocotb.test()
async def random_scenario_matches_the_model(dut):
    p = params()
    seed = int(os.environ.get("RISK_SEED", "1"))
    script, _ = random_script(seed, p, cycles=int(os.environ.get("RISK_CYCLES", "1500")))
    cycles = script.cycles
    enc = Encoder(p)
    cocotb.start_soon(Clock(dut.clk, 6.4, unit="ns").start())
    dut.rst.value = 1
    dut.rejects__ready.value = 0
    drive(dut, enc, script._cycle())
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    orders, killed, readbacks, last_count = [], [0], [], 0
    for x, c in enumerate(cycles):
        drive(dut, enc, c)
        await RisingEdge(dut.clk)
        await ReadOnly()
        if dut.orders__valid.value:
            orders.append((x + 1, unpack(OrderIntent, int(dut.orders__payload.value))))
        killed.append(int(dut.killed.value))
        readback, count = decode_readback(p, int(dut.readback.value))
        if count != last_count:
            readbacks.append((x + 1, readback))
            last_count = count
        await FallingEdge(dut.clk)
    killed.pop()
    gate = RiskGate(p)
    gate._MustUse__used = True
    counters = unpack(gate.counters.shape(), int(dut.counters.value))
    alarms = unpack(gate.alarms.shape(), int(dut.alarms.value))
    kill_reason = int(dut.kill_reason.value)
    for name in STROBES:
        getattr(dut, name).value = 0
    dut.intents__valid.value = 0
    dut.updates__valid.value = 0
    log = []
    dut.rejects__ready.value = 1           # (in the second half of a cycle: see the loop)
    for _ in range(p.log_depth + 4):
        if dut.rejects__valid.value:       # the head, taken at the next rising edge
            record = unpack(RejectRecord, int(dut.rejects__payload.value))
            log.append((record["intent"], RejectReason(record["reason"])))
        await RisingEdge(dut.clk)
        await FallingEdge(dut.clk)

    model = RiskModel(p).run(cycles)
    assert len(model.orders) > 100 and len(model.log) > 100
    assert orders == model.orders
    assert killed == model.killed_trace
    assert readbacks == model.readbacks
    assert counters == model.counters
    assert alarms == model.alarms
    assert kill_reason == model.kill_reason.value
    assert len(log) == len(model.log)
    for k, (got, want) in enumerate(zip(log, model.log, strict=True)):
        assert got == want, (k, got, want)
