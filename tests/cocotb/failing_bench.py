"""A cocotb test that must fail: proves `run_cocotb` reports failures."""

import cocotb


@cocotb.test()
async def always_fails(dut):
    assert dut.events__valid.value == 1, "deliberate failure"
