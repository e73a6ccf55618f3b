"""Sharing the MAC transmit port between frame sources."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.net.mac import mac_tx_signature
from tickwire.hdl.signals import or_all


class TxArbiter(wiring.Component):
    """N MAC transmit frame streams in, one out: fixed priority, whole frames.

    At a frame boundary the lowest-numbered input with a beat waiting gets the output (the
    order encoder is input 0, control replies input 1). The grant is then held until that
    frame's last beat has been taken, so beats of two frames never interleave; it is also held
    while a first beat waits for ``out.ready``, so a presented beat never changes before it is
    taken (AXI-Stream's rule). Sources must keep a started frame's beats consecutive (the MAC
    underruns otherwise); the arbiter adds no gap of its own.

    Ports
    -----
    inputs : In(mac_tx_signature()) x n, as ``i0``, ``i1``, ...
    out : Out(mac_tx_signature())

    Latency: 0 cycles: when no frame holds the output, a waiting beat of the chosen input is
    on ``out`` in the same cycle (``valid``, ``payload`` and ``ready`` pass through
    multiplexers, no register). The cost is a combinational path from every input's ``valid``
    to ``out`` and from ``out.ready`` back to the inputs' ``ready``.
    """

    def __init__(self, n=2):
        if n < 1:
            raise ValueError("at least one input")
        self.n = n
        super().__init__({**{f"i{k}": In(mac_tx_signature()) for k in range(n)},
                          "out": Out(mac_tx_signature())})

    @property
    def inputs(self):
        return [getattr(self, f"i{k}") for k in range(self.n)]

    def elaborate(self, platform):
        m = Module()
        inputs, out = self.inputs, self.out
        held = Signal()                          # a frame (or a waiting first beat) holds it
        owner = Signal(range(self.n))
        choice = Signal(range(self.n))
        for k in reversed(range(self.n)):        # lowest index wins
            with m.If(inputs[k].valid):
                m.d.comb += choice.eq(k)
        grant = Signal(range(self.n))
        m.d.comb += grant.eq(Mux(held, owner, choice))
        selected = [Signal(name=f"selected_{k}") for k in range(self.n)]
        m.d.comb += [s.eq(grant == k) for k, s in enumerate(selected)]
        m.d.comb += [
            out.valid.eq(or_all([i.valid & s for i, s in zip(inputs, selected, strict=True)])),
            out.p.as_value().eq(or_all([i.p.as_value() & s.replicate(len(i.p.as_value()))
                                        for i, s in zip(inputs, selected, strict=True)])),
        ]
        m.d.comb += [i.ready.eq(out.ready & s) for i, s in zip(inputs, selected, strict=True)]
        with m.If(out.valid):
            m.d.sync += [held.eq(~(out.ready & out.p.last)), owner.eq(grant)]
        return m
