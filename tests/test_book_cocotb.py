"""Integration tier: the generated Verilog of the order book in Verilator under cocotb."""

import json
from pathlib import Path

from tickwire.hdl.book.book import OrderBook
from tickwire.hdl.book.records import BookParameters
from tickwire.sim.cocotb_run import run_cocotb

# Small enough to build quickly under cocotb, large enough for the scenario to fit exactly.
COCOTB_BOOK = BookParameters(symbols=16, locates=64, depth=48, visible=4, orders=8192, ways=4,
                             ref_bits=24, fifo_depth=64)


def test_order_book_verilog_under_cocotb():
    ran = run_cocotb(OrderBook(COCOTB_BOOK), "order_book_tb", "book_bench",
                     module_dir=Path(__file__).parent / "cocotb",
                     env={"BOOK_PARAMS": json.dumps(COCOTB_BOOK._asdict())})
    assert ran == 1
