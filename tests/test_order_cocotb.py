"""Integration tier: the generated Verilog of the order encoder in Verilator under cocotb."""

import json
from pathlib import Path

from tickwire.hdl.order.encoder import AxiStreamOrderEncoder
from tickwire.sim.cocotb_run import run_cocotb

PARAMETERS = dict(slots=8, queue_depth=4, log_depth=128)


def test_order_encoder_verilog_under_cocotb():
    ran = run_cocotb(AxiStreamOrderEncoder(**PARAMETERS), "order_axis", "order_bench",
                     module_dir=Path(__file__).parent / "cocotb",
                     env={"ORDER_PARAMS": json.dumps({"seed": 5})})
    assert ran == 3
