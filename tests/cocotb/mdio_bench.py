"""cocotb bench of the Verilated `MdioMaster` (built for the ECPIX-5's 31.25 MHz core clock,
scanning for its PHY) against the clause 22 PHY model (`tickwire.sim.mdio_model`), stepped on
each core clock cycle with the PHY's 300 ns output delay. Ports are the packed structs of
`tickwire.hdl.net.mdio`, decoded with the same layouts."""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from tickwire.hdl.net.mdio import MdioCounters, MdioReply, MdioRequest, MdioStatus, Speed
from tickwire.sim.mdio_model import Clause22Phy
from tickwire.sim.records import pack, unpack

CLOCK_NS = 32                          # 31.25 MHz
DELAY = -(-300 // CLOCK_NS)            # the PHY's output delay, 300 ns rounded up
ADDRESS = 9
REGISTERS = {0: 0x1140, 1: 0x796D, 2: 0x001C, 3: 0xC915, 4: 0x01E1, 5: 0xC5E1, 9: 0x0200,
             10: 0x3C00}


class TB:
    def __init__(self, dut, phy):
        self.dut, self.phy = dut, phy
        dut.mdio_i.value = 1
        dut.request.value = 0
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        cocotb.start_soon(self._wire())

    async def _wire(self):
        dut = self.dut
        while True:
            await FallingEdge(dut.clk)       # outputs settled since the rising edge
            dut.mdio_i.value = self.phy.step(int(dut.mdc.value), int(dut.mdio_oe.value),
                                             int(dut.mdio_o.value))

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0

    def status(self):
        return unpack(MdioStatus, int(self.dut.status.value))

    def counters(self):
        return unpack(MdioCounters, int(self.dut.counters.value))

    async def frames(self, n):
        """Wait until the PHY has seen `n` frames in all, and the master has taken the last."""
        while len(self.phy.frames) < n:
            await FallingEdge(self.dut.clk)
        await ClockCycles(self.dut.clk, 4)

    def check_format(self):
        assert self.phy.errors == []
        for frame in self.phy.frames:
            assert frame.preamble == 32 and frame.st == 0b01
            if frame.op == 0b10:
                assert frame.ta_driven == (False, False) and not any(frame.data_driven)
            else:
                assert frame.op == 0b01 and frame.ta == (1, 0) and all(frame.data_driven)


@cocotb.test()
async def scan_finds_the_phy_then_link_and_speed_follow_it(dut):
    phy = Clause22Phy(ADDRESS, REGISTERS, delay=DELAY, link=True)
    tb = TB(dut, phy)
    await tb.reset()
    await tb.frames(ADDRESS + 1)
    assert [f.phy_address for f in phy.frames] == list(range(ADDRESS + 1))
    assert {f.data for f in phy.frames[:ADDRESS]} == {0xFFFF}
    status = tb.status()
    assert status["present"] == 1 and status["link"] == 1 and status["phy_address"] == ADDRESS
    await tb.frames(ADDRESS + 1 + 6)       # one poll: the speed registers
    assert [f.register for f in phy.frames[ADDRESS:]] == [1, 0, 4, 5, 9, 10, 1]
    assert tb.status()["speed"] == Speed.M1000.value
    assert int(dut.bmsr.value) == 0x796D
    phy.set_link(False)
    phy.set_link(True)                     # a flap between two reads: latched low
    await tb.frames(ADDRESS + 1 + 12)
    assert tb.status()["link"] == 0
    await tb.frames(ADDRESS + 1 + 18)
    assert tb.status()["link"] == 1
    bmsr_reads = phy.frames[ADDRESS::6]
    assert [(f.register, f.data & 4) for f in bmsr_reads] == [(1, 4), (1, 4), (1, 0), (1, 4)]
    tb.check_format()
    assert tb.counters() == {"frames": len(phy.frames), "link_losses": 1}


@cocotb.test()
async def host_writes_and_reads_a_phy_register(dut):
    phy = Clause22Phy(0, REGISTERS, delay=DELAY, link=False)
    tb = TB(dut, phy)
    await tb.reset()
    await tb.frames(1)
    assert tb.status()["link"] == 0 and tb.status()["present"] == 1
    for request in ({"write": 1, "register": 31, "data": 0x0A43},
                    {"write": 0, "register": 31, "data": 0}):
        dut.request.value = pack(MdioRequest, {"start": 1, "phy_address": 0, **request})
        await RisingEdge(dut.clk)           # the one edge that sees the strobe
        dut.request.value = 0
        await ClockCycles(dut.clk, 2)
        assert unpack(MdioReply, int(dut.reply.value))["pending"] == 1
        while unpack(MdioReply, int(dut.reply.value))["pending"]:
            await FallingEdge(dut.clk)
    assert phy.registers[31] == 0x0A43
    assert unpack(MdioReply, int(dut.reply.value))["data"] == 0x0A43
    assert [(f.register, f.op) for f in phy.frames[-2:]] == [(31, 0b01), (31, 0b10)]
    tb.check_format()
