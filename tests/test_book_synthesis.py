"""Hardware reality: the order book through yosys and nextpnr for the ECPIX-5's ECP5.

Fmax is reported by `make bench` (`synth.ecp5.book.*`, the full default build), not asserted
here. This test places and routes a reduced build (the same circuit with fewer symbols,
levels and orders, so that it fits the test budget) and checks that the flow runs and that
nothing was optimised away: the order table, the level rows and the subscription map must be
in block RAM, and the level-change circuit in LUTs."""

import pytest

from tickwire.bitstreams.synth import TARGET_CLOCK_MHZ, synthesize
from tickwire.hdl.book.book import OrderBook
from tickwire.hdl.book.records import BookParameters

REDUCED = BookParameters(symbols=16, locates=1024, depth=3, visible=2, orders=2048, ways=4,
                         ref_bits=36, fifo_depth=16)


@pytest.mark.slow
def test_order_book_synthesises_and_is_not_optimised_away():
    result = synthesize(OrderBook(REDUCED), "order_book_reduced")
    assert result.target_mhz == TARGET_CLOCK_MHZ
    assert result.fmax_mhz > 0
    # 4 ways x 512 entries of 101 bits, the level rows, the subscription map
    assert result.brams >= 4 * 3 + 1
    assert result.luts > 3000 and result.ffs > 1000
