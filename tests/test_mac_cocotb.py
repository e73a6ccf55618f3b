"""Integration tier: the generated Verilog of the RGMII MAC in Verilator under cocotb, with
cocotbext-eth's RGMII source and sink as the PHY."""

import json
from pathlib import Path

from tickwire.hdl.net.rgmii import Mac
from tickwire.sim.cocotb_run import run_cocotb


def test_mac_verilog_under_cocotb_with_cocotbext_eth(tmp_path):
    figures = tmp_path / "figures.json"
    ran = run_cocotb(Mac(), "mac", "mac_bench", module_dir=Path(__file__).parent / "cocotb",
                     env={"MAC_FIGURES": str(figures)})
    assert ran == 3
    measured = json.loads(figures.read_text())
    print(measured)
