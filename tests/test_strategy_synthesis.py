"""Hardware reality: the strategy engine through yosys for the ECPIX-5's ECP5.

A reduced build (64 slots, 16 pairs: the same circuit with smaller tables) is synthesised;
the test checks that nothing was optimised away: the per-slot tables (routing, both takers'
parameters and memory, last BBO, the event taker's subscription map) in block RAM, beta x mid
in four DSP multipliers, the decision logic in LUTs. Fmax comes from place and route in
`make bench-hw` (``synth.ecp5.strategy.*``); the README records it."""

from tickwire.bitstreams.synth import utilisation
from tickwire.hdl.book.records import BookParameters
from tickwire.hdl.strategy.engine import StrategyEngine

REDUCED = BookParameters(symbols=64)


def test_strategy_engine_maps_to_block_ram_and_dsps():
    cells = utilisation(StrategyEngine(REDUCED, pairs=16), "strategy_engine_reduced")
    assert cells.dsps >= 4
    # routing 1, taker parameters (166 bits) 10 and memory (194 bits) 11, BBOs (81 bits) 5
    # (18-bit wide DP16KD), the pair table and positions may go to LUT RAM at 16 entries; the
    # event taker has its own parameters, memory and BBO table, and the subscription map
    # (16,384 locates): 38 in all at the time of writing
    assert cells.brams >= 30
    assert cells.luts > 1500 and cells.ffs > 2000
