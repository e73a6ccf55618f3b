"""Integration tier: the generated Verilog of `ControlResponder` in Verilator under cocotb,
behind AXI-Stream MAC ports, against the reference model (bench: cocotb/control_bench.py)."""

import json
from pathlib import Path

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.net.control import ControlResponder
from tickwire.hdl.net.mac import AxiStreamRx
from tickwire.sim.cocotb_run import run_cocotb

BOARD = {"mac": 0x02AABBCCDDEE, "ip": 0x0A000002, "port": 7000, "host_ip": 0x0A000001,
         "token": "f0e1d2c3b4a5968778695a4b3c2d1e0f", "address_width": 9}


class AxiStreamControlResponder(wiring.Component):
    """`ControlResponder` with its MAC streams as AXI-Stream (``s_axis_*`` in, ``m_axis_*``
    out, ``tuser`` = bad frame), for cocotbext-axi."""

    def __init__(self, **parameters):
        self.core = ControlResponder(**parameters)
        members = {n: m for n, m in self.core.signature.members.items() if n not in ("rx", "tx")}
        super().__init__({
            "s_axis_tdata": In(64), "s_axis_tkeep": In(8), "s_axis_tvalid": In(1),
            "s_axis_tlast": In(1), "s_axis_tuser": In(1), "s_axis_tready": Out(1),
            "m_axis_tdata": Out(64), "m_axis_tkeep": Out(8), "m_axis_tvalid": Out(1),
            "m_axis_tlast": Out(1), "m_axis_tuser": Out(1), "m_axis_tready": In(1),
            **members,
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.axis = axis = AxiStreamRx()
        m.submodules.core = core = self.core
        m.d.comb += [axis.tdata.eq(self.s_axis_tdata), axis.tkeep.eq(self.s_axis_tkeep),
                     axis.tvalid.eq(self.s_axis_tvalid), axis.tlast.eq(self.s_axis_tlast),
                     axis.tuser.eq(self.s_axis_tuser), self.s_axis_tready.eq(1)]
        wiring.connect(m, axis.rx, core.rx)
        tx = core.tx
        m.d.comb += [self.m_axis_tdata.eq(tx.p.data), self.m_axis_tkeep.eq(tx.p.keep),
                     self.m_axis_tvalid.eq(tx.valid), self.m_axis_tlast.eq(tx.p.last),
                     self.m_axis_tuser.eq(tx.p.bad), tx.ready.eq(self.m_axis_tready)]
        bus = core.bus
        m.d.comb += [self.bus.addr.eq(bus.addr), self.bus.r_stb.eq(bus.r_stb),
                     self.bus.w_stb.eq(bus.w_stb), self.bus.w_data.eq(bus.w_data),
                     bus.r_data.eq(self.bus.r_data)]
        for name in ("board_mac", "board_ip", "control_port", "host_ip", "token"):
            m.d.comb += getattr(core, name).eq(getattr(self, name))
        m.d.comb += self.counters.eq(core.counters)
        return m


def test_control_responder_verilog_under_cocotb():
    dut = AxiStreamControlResponder(
        address_width=BOARD["address_width"], mac=BOARD["mac"], ip=BOARD["ip"],
        port=BOARD["port"], host_ip=BOARD["host_ip"], token=bytes.fromhex(BOARD["token"]))
    ran = run_cocotb(dut, "control_axis", "control_bench",
                     module_dir=Path(__file__).parent / "cocotb",
                     env={"CONTROL_BOARD": json.dumps(BOARD)})
    assert ran == 2
