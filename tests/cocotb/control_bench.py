"""cocotb bench of the Verilated `ControlResponder` behind AXI-Stream MAC ports.

cocotbext-axi drives ``s_axis`` (received frames, with ``tvalid`` gaps inside them in one
test) and drains ``m_axis`` (replies) with random pauses; a register file in Python answers
the bus. Requests come from the host codec inside scapy-built frames, with attacks mixed in;
every reply is parsed by scapy and compared with the reference model's (`ControlEndpoint`
behind `ControlFrameModel`), and so are the bus writes, the register contents and the
counters."""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from tickwire.hdl.counters import counter_layout
from tickwire.hdl.net.control import CONTROL_COUNTERS
from tickwire.host.udp_control import READ, WRITE, Operation, encode
from tickwire.sim.control_run import Board, Frame, check_reply, model_replies, request_frame
from tickwire.sim.records import unpack


def board():
    p = json.loads(os.environ["CONTROL_BOARD"])
    return Board(p["mac"], p["ip"], p["port"], p["host_ip"], bytes.fromhex(p["token"])), \
        p["address_width"]


class TB:
    def __init__(self, dut, seed):
        self.dut = dut
        self.board, self.address_width = board()
        self.rng = random.Random(seed)
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk,
                                      dut.rst)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        self.words = {a: self.rng.randrange(1 << 32) for a in range(0, 1 << self.address_width,
                                                                     3)}
        self.initial = dict(self.words)
        self.writes = []
        cocotb.start_soon(Clock(dut.clk, 6.4, unit="ns").start())
        cocotb.start_soon(self.register_file())

    def pauses(self, ready):
        while True:
            yield self.rng.random() >= ready

    async def reset(self, ready):
        d = self.dut
        d.rst.value = 1
        for name in ("board_mac", "board_ip", "control_port", "host_ip", "token"):
            getattr(d, name).value = 0
        d.bus__r_data.value = 0
        self.sink.set_pause_generator(self.pauses(ready))
        await ClockCycles(d.clk, 4)
        d.rst.value = 0
        await ClockCycles(d.clk, 2)

    async def register_file(self):
        d = self.dut
        while True:
            await RisingEdge(d.clk)
            address = int(d.bus__addr.value)
            if d.bus__w_stb.value:
                self.words[address] = int(d.bus__w_data.value)
                self.writes.append((address, int(d.bus__w_data.value)))
            if d.bus__r_stb.value:
                d.bus__r_data.value = self.words.get(address, 0)

    def counters(self):
        return unpack(counter_layout(CONTROL_COUNTERS), int(self.dut.counters.value))

    async def run(self, groups):
        """Send each group back to back, then wait for the replies the model expects."""
        frames, replies = [], []
        for group in groups:
            frames += group
            expected, _, _ = model_replies(frames, self.board, self.initial,
                                           self.address_width)
            for frame in group:
                await self.source.send(AxiStreamFrame(frame.data, tuser=int(frame.bad)))
            await self.source.wait()
            while len(replies) < len(expected):
                reply = await with_timeout(self.sink.recv(), 200, "us")
                replies.append(bytes(reply.tdata))
            await ClockCycles(self.dut.clk, 40)
        assert self.sink.empty()
        return frames, replies


def random_groups(tb, n):
    b, rng = tb.board, tb.rng
    last_id, previous, groups = 0, None, []

    def operations():
        count = rng.choice([1, 2, 3, 8, 64])
        return [Operation(rng.choice([READ, WRITE]),
                          rng.choice([rng.randrange(8), rng.randrange(1 << 24)]),
                          rng.randrange(1 << 32)) for _ in range(count)]

    for _ in range(n):
        group = []
        for _ in range(rng.choice([1, 1, 2])):
            kind = rng.choice(["new", "new", "new", "retransmit", "stale", "token", "source",
                               "port", "fcs", "short", "tagged"])
            if kind == "retransmit" and previous:
                group.append(previous)
                continue
            request_id = last_id + rng.randrange(1, 1 << 20)
            if kind == "stale":
                request_id = rng.randrange(last_id + 1)
            token = bytes(rng.randrange(256) for _ in range(16)) if kind == "token" else b.token
            payload = encode(request_id, operations(), token)
            if kind == "short":
                payload = payload[:rng.randrange(len(payload))]
            args = {"src_port": rng.randrange(1, 1 << 16)}
            if kind == "source":
                args["src_ip"] = b.host_ip + 1
            if kind == "port":
                args["dst_port"] = b.port + 1
            if kind == "tagged":
                args["vlan"] = rng.randrange(1 << 16)
                args["options"] = rng.randrange(4)
            frame = Frame(request_frame(payload, b, **args), bad=kind == "fcs")
            if kind in ("new", "tagged"):
                last_id, previous = request_id, frame
            group.append(frame)
        groups.append(group)
    return groups


async def check(tb, groups):
    frames, replies = await tb.run(groups)
    expected, bus, counters = model_replies(frames, tb.board, tb.initial, tb.address_width)
    assert len(replies) == len(expected)
    for frame, reply in zip(replies, expected, strict=True):
        check_reply(frame, reply, tb.board)
    assert tb.writes == bus.writes
    assert tb.words == bus.words
    assert tb.counters() == counters | {"busy": 0}
    return len(replies)


@cocotb.test()
async def random_requests_and_attacks_match_the_model(dut):
    tb = TB(dut, seed=int(os.environ.get("CONTROL_SEED", "1")))
    await tb.reset(ready=0.6)
    tb.source.set_pause_generator(tb.pauses(0.85))      # tvalid gaps inside frames too
    answered = await check(tb, random_groups(tb, 60))
    assert answered > 15


@cocotb.test()
async def back_to_back_requests_at_full_rate(dut):
    tb = TB(dut, seed=7)
    await tb.reset(ready=1.0)
    b = tb.board
    groups = [[Frame(request_frame(encode(10 * g + i + 1, [Operation(WRITE, i, g),
                                                          Operation(READ, i)] * (1 + 15 * i),
                                          b.token), b)) for i in range(2)]
              for g in range(5)]
    assert await check(tb, groups) == 10
