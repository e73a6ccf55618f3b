"""Hardware reality: the order encoder (default build) through yosys for the ECPIX-5's ECP5:
nothing was optimised away. Fmax comes from place and route in `make bench-hw`
(``synth.ecp5.order.*``)."""

from tickwire.bitstreams.synth import utilisation
from tickwire.hdl.order.encoder import OrderEncoder


def test_order_encoder_maps_to_block_ram_and_logic():
    cells = utilisation(OrderEncoder(), "order_encoder")
    # symbol table (1024 x 80 bits: 5 blocks of 1024 x 18) and log FIFO (512 x 367 bits:
    # 11 blocks of 512 x 36) in block RAM; 16 as built today
    assert cells.brams >= 12
    # frame registers, template copy, checksum trees, statistics, counters
    assert cells.luts > 2000 and cells.ffs > 4000
