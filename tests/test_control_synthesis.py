"""Hardware reality: `ControlResponder` and `TxArbiter` through yosys for the ECPIX-5's ECP5:
the request slots and the saved reply in block RAM, the parser and the reply builder in LUTs,
nothing optimised away. Fmax comes from place and route in `make bench-hw`
(``synth.ecp5.control.*``)."""

from tickwire.bitstreams.synth import utilisation
from tickwire.hdl.net.control import ControlResponder
from tickwire.hdl.net.tx_arbiter import TxArbiter


def responder():
    return ControlResponder(12, mac=0x02AABBCCDDEE, ip=0x0A000002, port=7000,
                            host_ip=0x0A000001, token=bytes(range(16)))


def test_control_responder_maps_to_block_ram_and_logic():
    cells = utilisation(responder(), "control_responder")
    # 2 x 64 request words and 64 reply words of 64 bits: at least 2 blocks each
    assert cells.brams >= 4
    assert cells.luts > 1500 and cells.ffs > 1000


def test_tx_arbiter_is_logic():
    assert utilisation(TxArbiter(2), "tx_arbiter").luts > 70
