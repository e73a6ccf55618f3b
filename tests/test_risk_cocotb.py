"""Integration tier: the generated Verilog of the risk gate in Verilator under cocotb, driven
by a random scenario and checked against `RiskModel` (see `cocotb/risk_bench.py`)."""

import json
from pathlib import Path

from tickwire.hdl.risk.gate import RiskGate
from tickwire.hdl.risk.records import RiskParameters
from tickwire.sim.cocotb_run import run_cocotb

COCOTB_RISK = RiskParameters(symbols=64, log_depth=1024, host_depth=16)


def test_risk_gate_verilog_under_cocotb():
    ran = run_cocotb(RiskGate(COCOTB_RISK), "risk_gate_tb", "risk_bench",
                     module_dir=Path(__file__).parent / "cocotb",
                     env={"RISK_PARAMS": json.dumps(COCOTB_RISK._asdict()), "RISK_SEED": "7",
                          "RISK_CYCLES": "2000"})
    assert ran == 1
