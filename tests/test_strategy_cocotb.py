"""Integration tier: the generated Verilog of the strategy engine in Verilator under cocotb,
against `EngineModel` (see tests/cocotb/strategy_bench.py)."""

import json
from pathlib import Path

import pytest

from tickwire.hdl.book.records import BookParameters
from tickwire.hdl.strategy.engine import StrategyEngine
from tickwire.sim.cocotb_run import run_cocotb

BOOK = BookParameters(symbols=64, locates=64)
CONFIG = dict(book=BOOK._asdict(), pairs=8, queue_depth=8, slots=8, updates=4000)


@pytest.mark.parametrize(("seed", "taker_delay"), [(1, 0), (2, 1)])
def test_strategy_engine_verilog_under_cocotb(seed, taker_delay):
    ran = run_cocotb(StrategyEngine(BOOK, pairs=CONFIG["pairs"],
                                    queue_depth=CONFIG["queue_depth"], taker_delay=taker_delay),
                     "strategy_engine_tb", "strategy_bench",
                     module_dir=Path(__file__).parent / "cocotb",
                     env={"STRATEGY_PARAMS": json.dumps(CONFIG | {"seed": seed,
                                                                   "taker_delay": taker_delay})})
    assert ran == 1
