"""cocotb bench of the Verilated `MiiMac` (the Arty A7's 100 Mb/s MII), with cocotbext-eth's
`MiiSource` and `MiiSink` as the PHY; frames built with scapy, FCS checked with zlib."""

import random
import zlib

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, Timer
from cocotbext.eth import GmiiFrame, MiiSink, MiiSource
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tickwire.hdl.net.mac import MacBeat
from tickwire.sim import mac_model as ref
from tickwire.sim.records import pack, unpack


class TB:
    def __init__(self, dut):
        self.dut = dut
        cocotb.start_soon(Clock(dut.clk, 16, unit="ns").start())
        cocotb.start_soon(Clock(dut.mii__tx_clk, 40, unit="ns").start())
        cocotb.start_soon(self._rx_clock())
        self.source = MiiSource(dut.mii__rx_data, dut.mii__rx_er, dut.mii__rx_dv,
                                dut.mii__rx_clk, dut.rst)
        self.sink = MiiSink(dut.mii__tx_data, None, dut.mii__tx_en, dut.mii__tx_clk, dut.rst)
        self.beats = []
        dut.tx__valid.value = 0
        cocotb.start_soon(self._collect())

    async def _rx_clock(self):
        await Timer(13, unit="ns")
        cocotb.start_soon(Clock(self.dut.mii__rx_clk, 40, unit="ns").start())

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 8)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 8)

    async def _collect(self):
        while True:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            if int(self.dut.rx__valid.value):
                self.beats.append(unpack(MacBeat, int(self.dut.rx__payload.value)))

    async def send(self, frame):
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
        dut.tx__valid.value = 0


def scapy_frame(rng, length):
    payload = bytes(rng.randrange(256) for _ in range(length))
    return bytes(Ether(dst="01:00:5e:36:0c:6f", src="02:00:00:00:00:01")
                 / IP(dst="233.54.12.111", src="10.1.2.3") / UDP(sport=1, dport=2) / Raw(payload))


@cocotb.test()
async def mii_frames_in_arrive_byte_for_byte_bad_fcs_marked(dut):
    tb = TB(dut)
    await tb.reset()
    rng = random.Random(4)
    sent = [scapy_frame(rng, rng.choice([18, 19, 100, 333])).ljust(60, b"\0") for _ in range(8)]
    for frame in sent:
        await tb.source.send(GmiiFrame.from_payload(frame))
    bad = sent[0]
    await tb.source.send(GmiiFrame.from_raw_payload(bad + bytes(b ^ 0xFF for b in ref.fcs(bad))))
    await tb.source.wait()
    await ClockCycles(dut.clk, 100)
    assert ref.frames_from_beats(tb.beats) == [(f, False) for f in sent] + [(bad, True)]


@cocotb.test()
async def frames_from_the_core_leave_on_mii_padded_with_fcs(dut):
    tb = TB(dut)
    await tb.reset()
    rng = random.Random(8)
    frames = [bytes(rng.randrange(256) for _ in range(n)) for n in (1, 59, 60, 61, 200)]
    frames += [scapy_frame(rng, 40) for _ in range(3)]
    for frame in frames:
        await tb.send(frame)
    for frame in frames:
        got = await tb.sink.recv()
        assert bytes(got.get_preamble()) == ref.PREAMBLE
        assert got.check_fcs()
        assert bytes(got.get_payload()) == frame.ljust(60, b"\0")
        assert zlib.crc32(bytes(got.get_payload(strip_fcs=False))) == 0x2144DF1C
