"""Integration tier: the generated Verilog of the RGMII MAC in Verilator under cocotb, with
cocotbext-eth's RGMII source and sink as the PHY."""

import json
from pathlib import Path

from tickwire.hdl.net.rgmii import RX_LATENCY_NS, TX_LATENCY_NS, Mac
from tickwire.sim.cocotb_run import run_cocotb


def test_mac_verilog_under_cocotb_with_cocotbext_eth(tmp_path):
    figures = tmp_path / "figures.json"
    ran = run_cocotb(Mac(), "mac", "mac_bench", module_dir=Path(__file__).parent / "cocotb",
                     env={"MAC_FIGURES": str(figures)})
    assert ran == 3
    measured = json.loads(figures.read_text())
    for name, (low, high) in (("rx_latency_ns", RX_LATENCY_NS), ("tx_latency_ns", TX_LATENCY_NS)):
        values = measured[name]
        print(f"{name}: {min(values):.1f} to {max(values):.1f} over {len(values)} frames")
        assert low - 0.05 <= min(values) and max(values) <= high + 0.05, (name, values)
