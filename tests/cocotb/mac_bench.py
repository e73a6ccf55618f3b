"""cocotb bench of the Verilated `Mac` (RGMII pins, 64-bit MacBeat client ports).

The PHY side is cocotbext-eth's `RgmiiSource` (receive) and `RgmiiSink` (transmit), which we did
not write; frames are built with scapy and checked with zlib's CRC. Clocks: core 156.25 MHz,
RGMII receive 125 MHz (its own phase), transmit 125 MHz plus the same 2 ns later for TX_CLK.
Measured latencies go to the JSON file named by MAC_FIGURES, for the pytest side to check.
"""

import json
import os
import random
import zlib

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_time
from cocotbext.eth import GmiiFrame, RgmiiSink, RgmiiSource
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from tickwire.hdl.net.ethernet_mac import mac_counter_layout
from tickwire.hdl.net.mac import MacBeat
from tickwire.sim import mac_model as ref
from tickwire.sim.records import pack, unpack

CORE_NS = 6.4
RGMII_NS = 8


class TB:
    def __init__(self, dut, core_ns=CORE_NS):
        self.dut = dut
        self.core_ns = core_ns
        cocotb.start_soon(Clock(dut.clk, core_ns, unit="ns").start())
        cocotb.start_soon(Clock(dut.clk125, RGMII_NS, unit="ns").start())
        cocotb.start_soon(self._late_clocks())
        self.source = RgmiiSource(dut.rgmii__rxd, dut.rgmii__rx_ctl, dut.rgmii__rx_clk, dut.rst)
        self.sink = RgmiiSink(dut.rgmii__txd, dut.rgmii__tx_ctl, dut.rgmii__tx_clk, dut.rst)
        self.beats = []          # (MacBeat dict, sim time in ns of the core edge it showed at)
        self.rx_dv_ends = []     # time of the last rising rx_clk edge sampling DV of each frame
        self.tx_starts = []      # time of the clk125 edge launching each frame's first nibble
        self.tx_ends = []        # time of the clk125 edge launching the first idle after one
        self.taken = []          # time of the core edge taking each tx frame's first beat
        dut.tx__valid.value = 0
        dut.tx__payload.value = 0
        cocotb.start_soon(self._collect_rx())
        cocotb.start_soon(self._watch_rx_dv())
        cocotb.start_soon(self._watch_tx_ctl())

    async def _late_clocks(self):
        await Timer(2, unit="ns")
        cocotb.start_soon(Clock(self.dut.clk125_90, RGMII_NS, unit="ns").start())
        await Timer(1.3, unit="ns")   # the PHY's receive clock: unrelated phase
        cocotb.start_soon(Clock(self.dut.rgmii__rx_clk, RGMII_NS, unit="ns").start())

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 8)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 8)

    async def _collect_rx(self):
        while True:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            if int(self.dut.rx__valid.value):
                beat = unpack(MacBeat, int(self.dut.rx__payload.value))
                self.beats.append((beat, get_sim_time("ns")))

    async def _watch_rx_dv(self):
        high, last = False, None
        while True:
            await FallingEdge(self.dut.rgmii__rx_clk)
            await ReadOnly()
            # what the source drives now is sampled at the next rising edge, 4 ns later
            dv = int(self.dut.rgmii__rx_ctl.value)
            if high and not dv:
                self.rx_dv_ends.append(last)
            if dv:
                last = get_sim_time("ns") + RGMII_NS / 2
            high = bool(dv)

    async def _watch_tx_ctl(self):
        high = False
        while True:
            await RisingEdge(self.dut.clk125)
            await ReadOnly()
            ctl = int(self.dut.rgmii__tx_ctl.value)
            if ctl and not high:
                self.tx_starts.append(get_sim_time("ns"))
            if high and not ctl:
                self.tx_ends.append(get_sim_time("ns"))
            high = bool(ctl)

    async def send(self, frame):
        """Offer a frame at tx, beat after beat (the contract: no gaps inside a frame)."""
        dut = self.dut
        for beat in ref.beats_of(frame):
            dut.tx__payload.value = pack(MacBeat, beat)
            dut.tx__valid.value = 1
            while True:
                await ReadOnly()
                ready = int(dut.tx__ready.value)
                await RisingEdge(dut.clk)
                if ready:
                    break
            if beat["first"]:
                self.taken.append(get_sim_time("ns"))
        dut.tx__valid.value = 0

    def counters(self):
        return unpack(mac_counter_layout(), int(self.dut.counters.value))

    def frames(self):
        return ref.frames_from_beats([b for b, _ in self.beats])

    async def settle(self, cycles=200):
        await self.source.wait()
        await ClockCycles(self.dut.clk, cycles)


def scapy_frame(rng, payload_length, vlan=None):
    eth = Ether(dst="01:00:5e:36:0c:6f", src="02:00:00:00:00:01")
    ip = IP(dst="233.54.12.111", src="10.1.2.3", id=rng.randrange(65536))
    layers = eth / Dot1Q(vlan=vlan) / ip if vlan else eth / ip
    payload = bytes(rng.randrange(256) for _ in range(payload_length))
    return bytes(layers / UDP(sport=40000, dport=26477) / Raw(payload))


def record(name, values):
    path = os.environ.get("MAC_FIGURES")
    if not path:
        return
    figures = json.loads(open(path).read()) if os.path.exists(path) else {}
    figures[name] = values
    with open(path, "w") as out:
        json.dump(figures, out)


@cocotb.test()
async def scapy_frames_back_to_back_arrive_byte_for_byte(dut):
    tb = TB(dut)
    await tb.reset()
    rng = random.Random(5)
    sent = []
    for index in range(40):
        length = rng.choice([0, 1, 18, 19, 25, 100, rng.randrange(0, 1400)])
        frame = scapy_frame(rng, length, vlan=rng.choice([None, 100]))
        frame = frame.ljust(60, b"\0")   # what a sender's MAC pads to
        sent.append(frame)
        await tb.source.send(GmiiFrame.from_payload(frame))
        if index % 10 == 9:
            await tb.source.wait()
            tb.source.ifg = rng.choice([12, 13, 40])
    await tb.settle()
    assert tb.frames() == [(f, False) for f in sent]
    counters = tb.counters()
    assert counters["rx_frames"] == len(sent)
    assert sum(counters.values()) == len(sent), counters

    # latency: last rising rx_clk edge of each frame (its last FCS byte) -> its last beat
    ends = [t for beat, t in tb.beats if beat["last"]]
    latencies = [end - dv for dv, end in zip(tb.rx_dv_ends, ends, strict=True)]
    record("rx_latency_ns", latencies)
    assert all(0 < ns < 60 for ns in latencies), latencies


@cocotb.test()
async def bad_fcs_runts_and_rx_errors_are_marked_and_counted(dut):
    tb = TB(dut)
    await tb.reset()
    rng = random.Random(9)
    good = scapy_frame(rng, 80)
    short = scapy_frame(rng, 0)[:40]
    cases = [
        (GmiiFrame.from_payload(good), (good, False)),
        (GmiiFrame.from_raw_payload(good + bytes([b ^ 0xFF for b in ref.fcs(good)])),
         (good, True)),                                              # bad FCS
        (GmiiFrame.from_raw_payload(short + ref.fcs(short)), (short, True)),   # runt, good FCS
        (GmiiFrame.from_payload(good), (good, False)),
    ]
    errored = GmiiFrame.from_payload(good)
    errored.error = [0] * len(errored.data)
    errored.error[30] = 1                                            # rx error mid-frame
    cases.append((errored, (good, True)))
    cases.append((GmiiFrame.from_payload(good), (good, False)))
    for frame, _ in cases:
        await tb.source.send(frame)
    await tb.settle()
    assert tb.frames() == [expected for _, expected in cases]
    counters = tb.counters()
    assert counters["rx_frames"] == 6
    assert (counters["rx_bad_fcs"], counters["rx_runts"], counters["rx_errors"]) == (1, 1, 1)


@cocotb.test()
async def frames_from_the_core_leave_padded_with_a_valid_fcs(dut):
    tb = TB(dut)
    await tb.reset()
    rng = random.Random(3)
    frames = [bytes(rng.randrange(256) for _ in range(n))
              for n in [1, 14, 59, 60, 61, 64, 65, 100, 333, 1500]]
    frames += [scapy_frame(rng, rng.randrange(0, 300)) for _ in range(10)]
    for frame in frames:
        await tb.send(frame)
    received = []
    for _ in frames:
        received.append(await tb.sink.recv())
    for frame, got in zip(frames, received, strict=True):
        assert got.error is None
        assert bytes(got.get_preamble()) == ref.PREAMBLE
        assert got.check_fcs()
        assert bytes(got.get_payload()) == frame.ljust(60, b"\0")
        assert zlib.crc32(bytes(got.get_payload(strip_fcs=False))) == 0x2144DF1C
    # the core offers frames back to back: the wire shows the minimum gap between them
    gaps = [(start - end) / RGMII_NS
            for end, start in zip(tb.tx_ends, tb.tx_starts[1:], strict=False)]
    assert all(gap == ref.MIN_IFG for gap in gaps), gaps
    await ClockCycles(dut.clk, 50)
    assert tb.counters()["tx_frames"] == len(frames)
    assert tb.counters()["tx_underruns"] == 0

    # latency: the first beat taken -> the first preamble nibble, on an idle MAC
    latencies = []
    for _ in range(12):
        await ClockCycles(dut.clk, rng.randrange(30, 40))
        before = len(tb.tx_starts)
        await tb.send(scapy_frame(rng, 20))
        while len(tb.tx_starts) == before:
            await RisingEdge(dut.clk125)
        latencies.append(tb.tx_starts[-1] - tb.taken[-1])
        await tb.sink.recv()
    record("tx_latency_ns", latencies)
    assert all(0 < ns < 80 for ns in latencies), latencies
