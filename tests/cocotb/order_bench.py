"""cocotb bench of the Verilated order encoder (AXI-Stream MAC port, `AxiStreamOrderEncoder`).

A cocotbext-axi sink takes the frames (with a pause generator for MAC back-pressure); each
frame is read by scapy (checksums recomputed by scapy) and its OUCH payload decoded from the
specification's table; the order log is checked against the reference model."""

import itertools
import json
import os
import random
import sys
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamSink

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # tests/: shared checks
from test_order_model import check_order_frame  # noqa: E402

from tickwire.hdl.order.encoder import OrderLogEntry  # noqa: E402
from tickwire.hdl.strategy.records import OrderIntent  # noqa: E402
from tickwire.sim.order_run import (  # noqa: E402
    histogram_value,
    load_value,
    session_value,
    symbol_value,
    template_value,
)
from tickwire.sim.ouch import EncoderModel, Template  # noqa: E402
from tickwire.sim.records import pack, unpack  # noqa: E402

SYMBOLS = {0: b"AAPL", 1: b"MSFT", 2: b"QQQ", 3: b"SPY", 7: b"ZVZZT"}


def params():
    return json.loads(os.environ.get("ORDER_PARAMS", "{}"))


class TB:
    def __init__(self, dut, template):
        self.dut, self.template = dut, template
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        self.cycle = 0
        self.log, self.first_beats, self.offered, self.gaps = [], [], {}, 0
        self.kill_cycles = set()
        cocotb.start_soon(Clock(dut.clk, 6.4, unit="ns").start())

    async def reset(self, sequence, user_ref):
        d = self.dut
        d.rst.value = 1
        for name in ("orders__valid", "kill", "hold", "clear_latency", "symbol",
                     "load_sequence", "load_user_ref", "now"):
            getattr(d, name).value = 0
        d.log__ready.value = 1
        d.template.value = template_value(self.template)
        d.session.value = session_value(self.template)
        d.histogram_bins.value = histogram_value(0, 0)
        await ClockCycles(d.clk, 3)
        d.rst.value = 0
        for slot, symbol in SYMBOLS.items():
            d.symbol.value = symbol_value(slot, symbol)
            await RisingEdge(d.clk)
        d.symbol.value = 0
        d.load_sequence.value = load_value(sequence)
        d.load_user_ref.value = load_value(user_ref)
        await RisingEdge(d.clk)
        d.load_sequence.value = 0
        d.load_user_ref.value = 0
        await ClockCycles(d.clk, 12)
        cocotb.start_soon(self.monitor())

    async def monitor(self):
        """Cycle count on ``now``, the log, first beats and gaps inside frames."""
        d = self.dut
        in_frame = False
        while True:
            d.now.value = self.cycle
            await ReadOnly()
            valid = int(d.m_axis_tvalid.value)
            if valid and not in_frame:
                self.first_beats.append(self.cycle)
                in_frame = True
            elif in_frame and not valid:
                self.gaps += 1
            if valid and int(d.m_axis_tready.value) and int(d.m_axis_tlast.value):
                in_frame = False
            if int(d.log__valid.value):
                self.log.append(unpack(OrderLogEntry, int(d.log__payload.value)))
            if int(d.kill.value):
                self.kill_cycles.add(self.cycle)
            await RisingEdge(d.clk)
            self.cycle += 1

    async def send(self, intent):
        """Offer an intent at ``orders`` until it is taken; returns the cycle it was offered."""
        d = self.dut
        d.orders__payload.value = pack(OrderIntent, intent)
        d.orders__valid.value = 1
        offered = None
        while True:
            await ReadOnly()   # the monitor has counted this cycle by now
            offered = self.cycle if offered is None else offered
            taken = int(d.orders__ready.value)
            await RisingEdge(d.clk)
            if taken:
                break
        d.orders__valid.value = 0
        return offered


def random_intent(rng, k):
    return dict(slot=rng.choice(sorted(SYMBOLS)), locate=rng.randrange(1 << 16),
                side=rng.randrange(2), tif=rng.randrange(2), strategy=rng.randrange(16),
                quantity=rng.randrange(1, 1_000_000), price=rng.randrange(1 << 32),
                sequence=90_000 + k, arrival=0)


def check_log_and_frames(tb, frames, intents, sequence, user_ref):
    model = EncoderModel(tb.template, SYMBOLS, tcp_sequence=sequence, user_ref_num=user_ref)
    assert [e["sequence"] for e in tb.log] == [i["sequence"] for i in intents]
    frames = iter(frames)
    sent = 0
    for entry, intent in zip(tb.log, intents, strict=True):
        if not entry["sent"]:
            flushed = model.flush(intent)
            assert (entry["user_ref_num"], entry["tcp_sequence"], entry["length"]) == \
                (flushed.user_ref_num, flushed.tcp_sequence, 0)
            continue
        ip_id = model.ip_id
        expected, logged = model.send(intent)
        frame = next(frames)
        assert frame == expected
        check_order_frame(frame, tb.template, SYMBOLS[intent["slot"]], side=intent["side"],
                          quantity=intent["quantity"], price=intent["price"],
                          tif=intent["tif"], tcp_sequence=logged.tcp_sequence,
                          user_ref_num=logged.user_ref_num, ip_id=ip_id)
        assert (entry["user_ref_num"], entry["tcp_sequence"], entry["length"]) == \
            (logged.user_ref_num, logged.tcp_sequence, 50)
        sent += 1
    assert next(frames, None) is None
    return sent


@cocotb.test()
async def random_orders_under_back_pressure_read_right_in_scapy(dut):
    rng = random.Random(params().get("seed", 5))
    template = Template(ack=0x89ABCDEF, window=4321, src_port=51000, ttl=9)
    tb = TB(dut, template)
    tb.sink.set_pause_generator(itertools.cycle([0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]))
    sequence, user_ref = 0xFFFFFE00, 77
    await tb.reset(sequence, user_ref)
    intents = [random_intent(rng, k) for k in range(60)]
    for k, intent in enumerate(intents):
        await tb.send(intent)
        if k % 7 == 6:
            await ClockCycles(dut.clk, rng.randrange(1, 40))
    frames = [bytes((await tb.sink.recv()).tdata) for _ in intents]
    await ClockCycles(dut.clk, 20)
    assert check_log_and_frames(tb, frames, intents, sequence, user_ref) == 60
    assert tb.gaps == 0, "beats of a frame follow without a gap"
    assert int(dut.next_user_ref.value) == user_ref + 60
    assert int(dut.next_sequence.value) == (sequence + 50 * 60) % 2**32


@cocotb.test()
async def idle_encoder_presents_the_first_beat_the_cycle_an_order_arrives(dut):
    tb = TB(dut, Template())
    await tb.reset(1000, 1)
    rng = random.Random(3)
    offered = []
    intents = [random_intent(rng, k) for k in range(20)]
    for intent in intents:
        await ClockCycles(dut.clk, 30)
        offered.append(await tb.send(intent))
    frames = [bytes((await tb.sink.recv()).tdata) for _ in intents]
    await ClockCycles(dut.clk, 20)
    check_log_and_frames(tb, frames, intents, 1000, 1)
    assert tb.first_beats == offered, "0 cycles from orders.valid to the first beat"
    assert [e["at"] for e in tb.log] == offered


@cocotb.test()
async def kill_flushes_the_queue_and_the_frame_on_the_wire_completes(dut):
    tb = TB(dut, Template())
    await tb.reset(0, 1)
    rng = random.Random(11)
    intents = [random_intent(rng, k) for k in range(4)]
    for intent in intents:
        await tb.send(intent)
    dut.kill.value = 1
    kill_at = tb.cycle
    await ClockCycles(dut.clk, 30)
    dut.kill.value = 0
    frames = []
    while not tb.sink.empty():
        frames.append(bytes(tb.sink.recv_nowait().tdata))
    await ClockCycles(dut.clk, 5)
    sent = check_log_and_frames(tb, frames, intents, 0, 1)
    assert 1 <= sent < len(intents)
    assert all(first < kill_at for first in tb.first_beats)
    assert int(dut.counters.value) >> 64 & 0xFFFFFFFF == len(intents) - sent   # flushed
