"""Integration tier: the tick-to-trade top level's generated Verilog in Verilator under cocotb,
programmed through the host driver, fed scapy-built frames, its order frames checked by scapy
and an OUCH 5.0 table written from the specification (tests/cocotb/t2t_bench.py)."""

from pathlib import Path

from tickwire.hdl.platform.device import DEVICE_NAME, build_device
from tickwire.sim.cocotb_run import run_cocotb
from tickwire.sim.t2t_run import TEST_PARAMETERS


def test_tick_to_trade_verilog_under_cocotb():
    device = build_device(**TEST_PARAMETERS)
    ran = run_cocotb(device, DEVICE_NAME, "t2t_bench", module_dir=Path(__file__).parent / "cocotb",
                     env={"TICKWIRE_IDENTITY": f"{device.bank.identity:016x}"})
    assert ran == 2
