"""Hardware reality: the RGMII MAC through yosys and nextpnr for the ECPIX-5's ECP5.

Out of context, with the generic DDR model (the board build puts IDDRX1F/ODDRX1F in the I/O
cells instead). nextpnr constrains every clock to the core's 156.25 MHz; the RGMII domains need
125 MHz. Fmax per clock is printed (run with -s) for the report, not asserted."""

import pytest

from tickwire.bitstreams.synth import synthesize
from tickwire.hdl.net.rgmii import Mac


@pytest.mark.slow
def test_mac_synthesises_and_is_not_optimised_away():
    result = synthesize(Mac(), "rgmii_mac")
    for clock, figures in sorted(result.report["fmax"].items()):
        print(f"{clock}: {figures['achieved']:.1f} MHz (constraint {figures['constraint']:.1f})")
    print(f"LUT4 {result.luts}, FF {result.ffs}, DP16KD {result.brams}")
    assert result.fmax_mhz > 0
    assert len(result.report["fmax"]) >= 3      # core, rx_clk, clk125 (and clk125_90)
    # two CRC-32s, the byte lanes, eight 32-bit counters, two asynchronous FIFOs
    assert result.luts > 800 and result.ffs > 700
    assert result.brams >= 2                     # the 256-beat transmit FIFO
