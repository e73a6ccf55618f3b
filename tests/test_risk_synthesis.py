"""Hardware reality: the risk gate through yosys and nextpnr for the ECPIX-5's ECP5.

A reduced build (64 slots: the same circuit with smaller tables) is placed and routed; the
test checks that the flow runs and that nothing was optimised away: the per-slot tables and
the reject log in block RAM, the price * quantity partial products and the collar scaling in
DSPs, the checks in LUTs. Fmax is printed (run with ``-s``), not asserted: see the README."""

import pytest

from tickwire.bitstreams.synth import TARGET_CLOCK_MHZ, synthesize
from tickwire.hdl.risk.gate import RiskGate
from tickwire.hdl.risk.records import RiskParameters

REDUCED = RiskParameters(symbols=64)


@pytest.mark.slow
def test_risk_gate_synthesises_and_is_not_optimised_away():
    result = synthesize(RiskGate(REDUCED), "risk_gate_64")
    dsps = result.report["utilization"]["MULT18X18D"]["used"]
    print(f"risk gate, {REDUCED.symbols} slots: {result.fmax_mhz:.1f} MHz "
          f"(target {TARGET_CLOCK_MHZ}), {result.luts} LUT4, {result.ffs} FF, "
          f"{result.brams} DP16KD, {dsps} MULT18X18D")
    assert result.target_mhz == TARGET_CLOCK_MHZ
    assert result.fmax_mhz > 0
    # Six per-slot tables (the gate's state read twice: by intents and by the host engine),
    # wider than one block each, and the reject log.
    assert result.brams >= 20
    # price * quantity (4), price * 10000, ask and bid scaling (4), the bucket products.
    assert dsps >= 8
    assert result.luts > 3000 and result.ffs > 2000
