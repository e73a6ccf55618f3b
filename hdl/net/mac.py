"""The MAC client boundary: 64-bit beats, like the AXI-Stream port of a 10G/25G MAC."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


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


class AxiStreamRx(wiring.Component):
    """Adapts a MAC's AXI-Stream receive port (``tdata``, ``tkeep``, ``tvalid``, ``tlast``, and
    ``tuser`` = bad frame on the last beat) to a `MacBeat` stream; ``first`` is derived.

    Latency: 0 cycles (combinational)."""

    def __init__(self):
        super().__init__({
            "tdata": In(64), "tkeep": In(8), "tvalid": In(1), "tlast": In(1), "tuser": In(1),
            "rx": Out(mac_rx_signature()),
        })

    def elaborate(self, platform):
        m = Module()
        in_frame = Signal()
        with m.If(self.tvalid):
            m.d.sync += in_frame.eq(~self.tlast)
        m.d.comb += [
            self.rx.valid.eq(self.tvalid),
            self.rx.p.data.eq(self.tdata), self.rx.p.keep.eq(self.tkeep),
            self.rx.p.first.eq(~in_frame), self.rx.p.last.eq(self.tlast),
            self.rx.p.bad.eq(self.tuser & self.tlast),
        ]
        return m


#: Transmit side: the MAC takes a beat when ``ready``; once a frame has started, its beats must
#: follow on consecutive cycles (a MAC underrun aborts the frame on the wire).
def mac_tx_signature():
    return stream.Signature(MacBeat)
