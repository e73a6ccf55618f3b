"""Integration tier: the board top level (`BoardCore`: the RGMII MAC and the tick-to-trade core,
with the ECPIX-5 build's parameters) as Verilog in Verilator under cocotb, at the board's clocks,
with cocotbext-eth's RGMII PHY models on its pins (tests/cocotb/board_bench.py): market data in,
order frames out, and the host driver over the UDP control channel on the same pins."""

from pathlib import Path

from tickwire.bitstreams.board import BoardCore
from tickwire.bitstreams.ecpix5 import ECPIX5_PARAMETERS, core_mhz
from tickwire.bitstreams.plan import top_parameters
from tickwire.sim.cocotb_run import run_cocotb

IDENTITY = 0x0123_4567_89AB_CDEF
TOKEN = bytes(range(0xA0, 0xB0))


def test_board_top_under_cocotb_rgmii_in_orders_out_control_answered():
    core = BoardCore(identity=IDENTITY, top=top_parameters(ECPIX5_PARAMETERS, TOKEN))
    ran = run_cocotb(core, "board_core", "board_bench", module_dir=Path(__file__).parent / "cocotb",
                     env={"TICKWIRE_IDENTITY": f"{IDENTITY:016x}", "TICKWIRE_TOKEN": TOKEN.hex(),
                          "CORE_NS": f"{1000 / core_mhz(ECPIX5_PARAMETERS):g}"})
    assert ran == 3
