"""Hardware reality: `ControlResponder` (and `TxArbiter`) through yosys and nextpnr for the
ECPIX-5's ECP5, out of context. Fmax is reported, not asserted (target 156.25 MHz); the check
is that the flow runs and nothing was optimised away: the request slots and the saved reply in
block RAM, the parser and the reply builder in LUTs."""

import pytest

from tickwire.bitstreams.synth import TARGET_CLOCK_MHZ, synthesize
from tickwire.hdl.net.control import ControlResponder
from tickwire.hdl.net.tx_arbiter import TxArbiter


@pytest.mark.slow
def test_control_responder_synthesises_and_is_not_optimised_away():
    result = synthesize(ControlResponder(12, mac=0x02AABBCCDDEE, ip=0x0A000002, port=7000,
                                         host_ip=0x0A000001, token=bytes(range(16))),
                        "control_responder")
    print(f"ControlResponder: {result.fmax_mhz:.1f} MHz (target {result.target_mhz}), "
          f"{result.luts} LUT4, {result.ffs} FF, {result.brams} DP16KD")
    assert result.target_mhz == TARGET_CLOCK_MHZ
    assert result.fmax_mhz > 0
    # 2 x 64 request words and 64 reply words of 64 bits: at least 2 blocks each
    assert result.brams >= 4
    assert result.luts > 1500 and result.ffs > 1000


@pytest.mark.slow
def test_tx_arbiter_synthesises():
    result = synthesize(TxArbiter(2), "tx_arbiter")
    print(f"TxArbiter(2): {result.fmax_mhz:.1f} MHz, {result.luts} LUT4, {result.ffs} FF")
    assert result.fmax_mhz > 0 and result.luts > 70
