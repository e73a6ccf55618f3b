"""Hardware reality: the strategy engine through yosys and nextpnr for the ECPIX-5's ECP5.

A reduced build (64 slots, 16 pairs: the same circuit with smaller tables) is placed and
routed; the test checks that nothing was optimised away: the per-slot tables (routing, taker
parameters and memory, last BBO) in block RAM, beta x mid in four DSP multipliers, the
decision logic in LUTs. The Fmax it reaches is printed (run with -s) and recorded in the
report, not asserted (the target is 156.25 MHz)."""

import pytest

from tickwire.bitstreams.synth import TARGET_CLOCK_MHZ, synthesize
from tickwire.hdl.book.records import BookParameters
from tickwire.hdl.strategy.engine import StrategyEngine

REDUCED = BookParameters(symbols=64)


@pytest.mark.slow
def test_strategy_engine_synthesises_and_is_not_optimised_away():
    result = synthesize(StrategyEngine(REDUCED, pairs=16), "strategy_engine_reduced")
    used = {bel: v["used"] for bel, v in result.report["utilization"].items()}
    print(f"strategy engine (64 slots, 16 pairs): {result.fmax_mhz:.1f} MHz, "
          f"{result.luts} LUT4, {result.ffs} FF, {result.brams} DP16KD, "
          f"{used.get('MULT18X18D', 0)} MULT18X18D")
    assert result.target_mhz == TARGET_CLOCK_MHZ
    assert result.fmax_mhz > 0
    assert used.get("MULT18X18D", 0) >= 4
    # routing 1, taker parameters (166 bits) 10 and memory (194 bits) 11, BBOs (81 bits) 5
    # (18-bit wide DP16KD), the pair table and positions may go to LUT RAM at 16 entries
    assert result.brams >= 12
    assert result.luts > 3000 and result.ffs > 2000
