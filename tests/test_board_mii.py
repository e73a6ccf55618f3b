"""The Arty A7's MII MAC (`tickwire.bitstreams.mii.MiiMac`) in Verilator under cocotb against
cocotbext-eth's MII PHY models (tests/cocotb/mii_bench.py)."""

from pathlib import Path

from tickwire.bitstreams.mii import MiiMac
from tickwire.sim.cocotb_run import run_cocotb


def test_mii_mac_under_cocotb_with_cocotbext_eth():
    ran = run_cocotb(MiiMac(), "mii_mac", "mii_bench", module_dir=Path(__file__).parent / "cocotb")
    assert ran == 2
