"""The MAC client boundary: 64-bit beats, like the AXI-Stream port of a 10G/25G MAC."""

from amaranth.lib import data, stream


class MacBeat(data.Struct):
    """One beat of a frame. Byte ``i`` of the beat (``data[8*i:8*i+8]``) is the ``i``-th byte on
    the wire; ``keep`` marks valid bytes (contiguous from lane 0; partial only on the last beat);
    ``bad`` is meaningful on the last beat only (FCS error, MAC abort)."""
    data: 64
    keep: 8
    first: 1
    last: 1
    bad: 1


#: Receive side: a MAC cannot be stalled, so the stream has no back-pressure.
def mac_rx_signature():
    return stream.Signature(MacBeat, always_ready=True)


BEAT_BYTES = 8
