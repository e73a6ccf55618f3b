"""Integration tier: the generated Verilog of the feed path in Verilator under cocotb."""

from pathlib import Path

import pytest

from tickwire.hdl.feed.handler import AxiStreamFeedHandler
from tickwire.sim.cocotb_run import CocotbFailure, run_cocotb


def test_feed_handler_verilog_under_cocotb():
    ran = run_cocotb(AxiStreamFeedHandler(), "feed_axis", "feed_bench",
                     module_dir=Path(__file__).parent / "cocotb")
    assert ran == 3


def test_a_failing_cocotb_test_fails_the_caller():
    with pytest.raises(CocotbFailure, match="1 of 1 tests failed"):
        run_cocotb(AxiStreamFeedHandler(), "feed_axis", "failing_bench",
                   module_dir=Path(__file__).parent / "cocotb")
