"""Hardware reality: the feed path through yosys and nextpnr for the ECPIX-5's ECP5.

Fmax is reported by `make bench`, not asserted here: this checks that the flow runs and that
the design was not optimised away (a component with no used outputs synthesises to nothing).
"""

import pytest

from tickwire.bitstreams.synth import TARGET_CLOCK_MHZ, synthesize
from tickwire.hdl.feed.handler import FeedHandler


@pytest.mark.slow
def test_feed_path_synthesises_and_is_not_optimised_away():
    result = synthesize(FeedHandler(), "feed_handler")
    assert result.target_mhz == TARGET_CLOCK_MHZ
    assert result.report["fmax"]["clk"]["constraint"] == pytest.approx(TARGET_CLOCK_MHZ)
    assert result.fmax_mhz > 0
    assert result.luts > 3000 and result.ffs > 3000       # decoders, counters, sequencer
    assert result.brams >= 1                              # the host notice FIFO
