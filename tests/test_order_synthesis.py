"""Hardware reality: the order encoder (default build) through yosys and nextpnr for the
ECPIX-5's ECP5: the flow runs, nothing was optimised away, and the clock is reported.

Fmax is printed (``-s`` shows it), not asserted: placement varies with the seed and the
tool versions, and `make bench` is where the figures are recorded."""

import pytest

from tickwire.bitstreams.synth import TARGET_CLOCK_MHZ, synthesize
from tickwire.hdl.order.encoder import OrderEncoder


@pytest.mark.slow
def test_order_encoder_synthesises_and_is_not_optimised_away():
    result = synthesize(OrderEncoder(), "order_encoder")
    print(f"order encoder: {result.fmax_mhz:.1f} MHz (target {result.target_mhz}), "
          f"{result.luts} LUT4, {result.ffs} FF, {result.brams} DP16KD")
    assert result.target_mhz == TARGET_CLOCK_MHZ
    assert result.fmax_mhz > 0
    # symbol table (1024 x 80 bits: 5 blocks of 1024 x 18) and log FIFO (512 x 367 bits:
    # 11 blocks of 512 x 36) in block RAM; 16 as built today
    assert result.brams >= 12
    # frame registers, template copy, checksum trees, statistics, counters
    assert result.luts > 2000 and result.ffs > 4000
