"""A 100 Mb/s Ethernet MAC for an MII PHY (the Arty A7's TI DP83848J), with the same 64-bit
`MacBeat` client ports as the RGMII `tickwire.hdl.net.rgmii.Mac`.

MII (IEEE 802.3 clause 22) carries a byte as two nibbles, low nibble first, one per cycle of a
25 MHz clock that the PHY drives in both directions (``rx_clk``, ``tx_clk``); the MAC samples
and launches on the rising edge. The GMII-level `GmiiRx` and `GmiiTx` (one byte per enabled
cycle) run here with a clock enable that is high once per byte: the receive side pairs nibbles
into bytes (reset to the low nibble whenever ``rx_dv`` falls), the transmit side takes a byte
every other ``tx_clk`` cycle and sends its two nibbles. Asynchronous FIFOs cross to the core's
``sync`` domain as in `Mac`; counters are not kept here.
"""

from amaranth.hdl import (
    Cat,
    ClockDomain,
    ClockSignal,
    DomainRenamer,
    EnableInserter,
    Module,
    ResetSignal,
    Signal,
)
from amaranth.lib import cdc, fifo, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.net.ethernet_mac import GmiiRx, GmiiTx
from tickwire.hdl.net.mac import MacBeat, mac_rx_signature, mac_tx_signature
from tickwire.hdl.net.rgmii import _RxOverflowGuard

BEAT_BITS = MacBeat.as_shape().size


def mii_signature():
    """The MII pins, from the MAC's side (the PHY drives both clocks)."""
    return wiring.Signature({
        "rx_clk": In(1), "rx_dv": In(1), "rx_er": In(1), "rx_data": In(4),
        "tx_clk": In(1), "tx_en": Out(1), "tx_data": Out(4),
    })


class MiiMac(wiring.Component):
    """MII pins <-> `MacBeat` streams in ``sync`` (rx always ready, tx cut-through: a frame
    starts on the wire once its first beat has crossed; any core clock above 1.6 MHz keeps up).

    Ports
    -----
    mii : Out(mii_signature())
    rx : Out(MacBeat stream, always ready), FCS stripped, ``bad`` on a bad last beat
    tx : In(MacBeat stream), padded and FCS appended
    """

    def __init__(self, *, tx_depth=256, rx_depth=16):
        self.tx_depth, self.rx_depth = tx_depth, rx_depth
        super().__init__({"mii": Out(mii_signature()), "rx": Out(mac_rx_signature()),
                          "tx": In(mac_tx_signature())})

    def elaborate(self, platform):
        m = Module()
        pins = self.mii
        m.domains.mii_rx = ClockDomain(local=True)
        m.domains.mii_tx = ClockDomain(local=True)
        m.d.comb += [ClockSignal("mii_rx").eq(pins.rx_clk), ClockSignal("mii_tx").eq(pins.tx_clk)]
        m.submodules.rx_reset = cdc.ResetSynchronizer(ResetSignal("sync"), domain="mii_rx")
        m.submodules.tx_reset = cdc.ResetSynchronizer(ResetSignal("sync"), domain="mii_tx")

        # Receive: nibbles -> bytes (a strobe per byte; idle bytes while rx_dv is low) -> GmiiRx
        dv, er, data = Signal(), Signal(), Signal(4)
        m.d.mii_rx += [dv.eq(pins.rx_dv), er.eq(pins.rx_er), data.eq(pins.rx_data)]
        high = Signal()                # the next nibble is a byte's high one
        low, low_er = Signal(4), Signal()
        byte, byte_dv, byte_er, strobe = Signal(8), Signal(), Signal(), Signal()
        m.d.mii_rx += strobe.eq(0)
        with m.If(dv):
            m.d.mii_rx += high.eq(~high)
            with m.If(high):
                m.d.mii_rx += [byte.eq(Cat(low, data)), byte_dv.eq(1), byte_er.eq(low_er | er),
                               strobe.eq(1)]
            with m.Else():
                m.d.mii_rx += [low.eq(data), low_er.eq(er)]
        with m.Else():
            m.d.mii_rx += [high.eq(0), byte_dv.eq(0), byte_er.eq(0), strobe.eq(1)]

        m.submodules.gmii_rx = gmii_rx = EnableInserter({"mii_rx": strobe})(
            DomainRenamer("mii_rx")(GmiiRx()))
        m.d.comb += [gmii_rx.gmii.rxd.eq(byte), gmii_rx.gmii.rx_dv.eq(byte_dv),
                     gmii_rx.gmii.rx_er.eq(byte_er)]
        m.submodules.rx_guard = guard = DomainRenamer("mii_rx")(_RxOverflowGuard())
        m.submodules.rx_fifo = rx_fifo = fifo.AsyncFIFO(
            width=BEAT_BITS, depth=self.rx_depth, w_domain="mii_rx", r_domain="sync")
        m.d.comb += [
            # GmiiRx's beats are combinational: one per enabled cycle only
            guard.beat.eq(gmii_rx.beats.p), guard.valid.eq(gmii_rx.beats.valid & strobe),
            rx_fifo.w_data.eq(guard.w_data), rx_fifo.w_en.eq(guard.w_en),
            guard.w_rdy.eq(rx_fifo.w_rdy),
            self.rx.valid.eq(rx_fifo.r_rdy), self.rx.payload.eq(rx_fifo.r_data),
            rx_fifo.r_en.eq(rx_fifo.r_rdy),
        ]

        # Transmit: tx -> AsyncFIFO (+ frame start tokens) -> GmiiTx (every other cycle) -> nibbles
        m.submodules.tx_fifo = tx_fifo = fifo.AsyncFIFO(
            width=BEAT_BITS, depth=self.tx_depth, w_domain="sync", r_domain="mii_tx")
        m.submodules.tx_starts = starts = fifo.AsyncFIFO(
            width=1, depth=self.tx_depth, w_domain="sync", r_domain="mii_tx")
        tx = self.tx
        taken = tx.valid & tx.ready
        m.d.comb += [tx.ready.eq(tx_fifo.w_rdy & starts.w_rdy), tx_fifo.w_data.eq(tx.payload),
                     tx_fifo.w_en.eq(taken), starts.w_en.eq(taken & tx.p.first)]

        second = Signal()              # the cycle of a byte's high nibble
        m.d.mii_tx += second.eq(~second)
        m.submodules.gmii_tx = gmii_tx = EnableInserter({"mii_tx": ~second})(
            DomainRenamer("mii_tx")(GmiiTx()))
        head = MacBeat(tx_fifo.r_data)
        popped = gmii_tx.beats.valid & gmii_tx.beats.ready & ~second
        m.d.comb += [
            gmii_tx.beats.valid.eq(tx_fifo.r_rdy & (~head.first | starts.r_rdy)),
            gmii_tx.beats.payload.eq(head),
            tx_fifo.r_en.eq(popped), starts.r_en.eq(popped & head.first),
        ]
        held = Signal(4)
        with m.If(~second):
            m.d.mii_tx += [pins.tx_data.eq(gmii_tx.gmii.txd[:4]), held.eq(gmii_tx.gmii.txd[4:]),
                           pins.tx_en.eq(gmii_tx.gmii.tx_en & ~gmii_tx.gmii.tx_er)]
        with m.Else():
            m.d.mii_tx += pins.tx_data.eq(held)
        return m
