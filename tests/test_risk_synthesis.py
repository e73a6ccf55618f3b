"""Hardware reality: the risk gate through yosys for the ECPIX-5's ECP5.

A reduced build (64 slots: the same circuit with smaller tables) is synthesised; the test
checks that nothing was optimised away: the per-slot tables and the reject log in block RAM,
the price * quantity partial products and the collar scaling in DSPs, the checks in LUTs.
Fmax comes from place and route in `make bench-hw` (``synth.ecp5.risk.*``)."""

from tickwire.bitstreams.synth import utilisation
from tickwire.hdl.risk.gate import RiskGate
from tickwire.hdl.risk.records import RiskParameters

REDUCED = RiskParameters(symbols=64)


def test_risk_gate_maps_to_block_ram_and_dsps():
    cells = utilisation(RiskGate(REDUCED), "risk_gate_64")
    # Six per-slot tables (the gate's state read twice: by intents and by the host engine),
    # wider than one block each, and the reject log.
    assert cells.brams >= 20
    # price * quantity (4), price * 10000, ask and bid scaling (4), the bucket products.
    assert cells.dsps >= 8
    assert cells.luts > 3000 and cells.ffs > 2000
