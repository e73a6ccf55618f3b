"""A 1 Gb/s Ethernet MAC for an RGMII PHY (the ECPIX-5's), with 64-bit `MacBeat` client ports.

RGMII (RGMII v2.0, HP 4/2002) carries GMII's byte per 125 MHz cycle as 4 bits on each clock
edge: bits 3:0 (and DV on ``ctl``) on the rising edge, bits 7:4 (and DV xor ER) on the falling
edge. Clock domains of `Mac`:

- ``sync``: the core's clock (156.25 MHz in the tick-to-trade build); ``rx`` and ``tx``.
- ``rgmii_rx``: the PHY's receive clock ``rx_clk``, created here; `GmiiRx` runs in it.
- ``rgmii_tx``: a local 125 MHz clock given on ``clk125`` (from a PLL); `GmiiTx` runs in it.
- ``rgmii_tx90``: ``clk125_90``, the same clock 90 degrees later (2 ns), forwarded as
  ``tx_clk`` so that the PHY samples each nibble in the middle of its 4 ns. With
  ``tx_clock="aligned"`` the forwarded clock is ``clk125`` itself, for a PHY configured to add
  that delay itself (RGMII-ID), and ``clk125_90`` is not a port.

Receive data are sampled on the edges of ``rx_clk`` as it arrives: the PHY must delay its
receive clock by about 2 ns (RGMII-ID receive delay, the usual PHY default); there is no input
delay element on the FPGA side. The RGMII domains are reset by the core's reset, synchronised
into each.
"""

from amaranth.hdl import Cat, ClockDomain, ClockSignal, DomainRenamer, Module, ResetSignal, Signal
from amaranth.lib import cdc, fifo, io, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.counters import count
from tickwire.hdl.net.ethernet_mac import (
    MAC_RX_COUNTERS,
    MAC_TX_COUNTERS,
    GmiiRx,
    GmiiTx,
    gmii_rx_signature,
    gmii_tx_signature,
    mac_counter_layout,
)
from tickwire.hdl.net.mac import MacBeat, mac_rx_signature, mac_tx_signature
from tickwire.hdl.platform.registers import Counters

BEAT_BITS = MacBeat.as_shape().size

#: Latency bounds in ns over all clock phases, 156.25 MHz core and 125 MHz RGMII clocks (see
#: `Mac`); the tests check the measured latencies fall within them.
RX_LATENCY_NS = (4 * 8.0 + 6.4, 4 * 8.0 + 2 * 6.4)
TX_LATENCY_NS = (4 * 8.0, 5 * 8.0)

#: The host's view of `Mac`'s ports (see `tickwire.hdl.platform.device`).
MAC_REGISTERS = (
    Counters("counters", "32-bit wrapping MAC event counter (rx: every frame with an SFD, then "
             "one reason per bad frame; frames dropped or cut by a full receive FIFO; tx: "
             "frames sent whole, frames aborted by an underrun)"),
)


def rgmii_signature():
    """The RGMII pins, from the MAC's side."""
    return wiring.Signature({
        "rx_clk": In(1), "rxd": In(4), "rx_ctl": In(1),
        "tx_clk": Out(1), "txd": Out(4), "tx_ctl": Out(1),
    })


class RgmiiAdapter(wiring.Component):
    """RGMII pins <-> GMII signals, in the ``rgmii_rx`` (receive) and ``rgmii_tx`` (transmit)
    domains; ``tx_clk`` is forwarded from ``tx_clk_domain``.

    Two implementations of the double data rate registers, with the same timing (that of
    `amaranth.lib.io.DDRBuffer`: input and output latency 1 cycle):

    - ``pins`` given (the object ``platform.request("eth_rgmii", 0, dir="-")`` returns, with
      ``rx_clk``, ``rx_ctrl``, ``rx_data``, ``tx_clk``, ``tx_ctrl``, ``tx_data``, the names of
      amaranth-boards' ECPIX-5 resource; its PHY reset and MDIO are left to the top): one
      `io.DDRBuffer` per pin group, so that the platform puts the FPGA's own DDR registers
      (IDDRX1F/ODDRX1F on the ECP5) in the I/O cells, where their timing to the pin is fixed.
      This needs a platform at elaboration. The ECP5's primitives have pipeline stages of
      their own (two in ODDRX1F: Amaranth delays its output enable by 2 cycles to match), so
      on the board the latency through the pins is longer than the generic model's by those
      stages: the figures of `Mac` are the generic model's, to be measured on hardware.
    - no ``pins``: the pins are ports of this component (``rgmii``) and the DDR registers are
      generic logic that Amaranth's simulator and Verilator run: a rising-edge and a
      falling-edge flip-flop per input bit, re-registered on the rising edge; per output bit, a
      rising-edge and a falling-edge flip-flop whose XOR is the pin (each edge's flop is loaded
      with the wanted value XOR the other one), so no clock is in the data path. The forwarded
      ``tx_clk`` is the clock itself. `DDRBuffer` cannot be used here: it has no
      implementation without a platform, and its simulation port does not support DDR.

    Ports
    -----
    rgmii : Out(rgmii_signature()), only without ``pins``
    rx_clk : Out(1), the receive clock (to clock ``rgmii_rx``)
    gmii_rx : Out(gmii_rx_signature()), in ``rgmii_rx``: rx_er is DV xor the falling-edge ctl
    gmii_tx : In(gmii_tx_signature()), in ``rgmii_tx``

    Latency: 1 ``rgmii_rx`` cycle from the rising edge sampling a byte's low nibble to that byte
    on ``gmii_rx``; 1 ``rgmii_tx`` cycle from a byte on ``gmii_tx`` to its low nibble on the pins.
    """

    def __init__(self, pins=None, *, tx_clk_domain="rgmii_tx90"):
        self._pins = pins
        self._tx_clk_domain = tx_clk_domain
        members = {
            "rx_clk": Out(1),
            "gmii_rx": Out(gmii_rx_signature()),
            "gmii_tx": In(gmii_tx_signature()),
        }
        if pins is None:
            members["rgmii"] = Out(rgmii_signature())
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        rx_i = [(Signal(4, name="rxd_rise"), Signal(name="rx_ctl_rise")),
                (Signal(4, name="rxd_fall"), Signal(name="rx_ctl_fall"))]
        tx = self.gmii_tx
        tx_o = [(tx.txd[:4], tx.tx_en), (tx.txd[4:], tx.tx_en ^ tx.tx_er)]

        if self._pins is not None:
            pins = self._pins
            m.submodules.rx_clk_buffer = rx_clk = io.Buffer("i", pins.rx_clk)
            m.d.comb += self.rx_clk.eq(rx_clk.i)
            m.submodules.rxd_ddr = rxd = io.DDRBuffer("i", pins.rx_data, i_domain="rgmii_rx")
            m.submodules.rx_ctl_ddr = rx_ctl = io.DDRBuffer("i", pins.rx_ctrl,
                                                            i_domain="rgmii_rx")
            m.submodules.txd_ddr = txd = io.DDRBuffer("o", pins.tx_data, o_domain="rgmii_tx")
            m.submodules.tx_ctl_ddr = tx_ctl = io.DDRBuffer("o", pins.tx_ctrl,
                                                            o_domain="rgmii_tx")
            m.submodules.tx_clk_ddr = tx_clk = io.DDRBuffer("o", pins.tx_clk,
                                                            o_domain=self._tx_clk_domain)
            for edge in (0, 1):
                m.d.comb += [rx_i[edge][0].eq(rxd.i[edge]), rx_i[edge][1].eq(rx_ctl.i[edge]),
                             txd.o[edge].eq(tx_o[edge][0]), tx_ctl.o[edge].eq(tx_o[edge][1])]
            m.d.comb += [tx_clk.o[0].eq(1), tx_clk.o[1].eq(0)]
        else:
            pins = self.rgmii
            m.d.comb += self.rx_clk.eq(pins.rx_clk)
            m.domains.rgmii_rx_fall = ClockDomain(clk_edge="neg", reset_less=True, local=True)
            m.domains.rgmii_tx_fall = ClockDomain(clk_edge="neg", reset_less=True, local=True)
            m.d.comb += [ClockSignal("rgmii_rx_fall").eq(ClockSignal("rgmii_rx")),
                         ClockSignal("rgmii_tx_fall").eq(ClockSignal("rgmii_tx")),
                         pins.tx_clk.eq(ClockSignal(self._tx_clk_domain))]
            rise = Signal(5, name="rx_sample_rise")
            fall = Signal(5, name="rx_sample_fall")
            m.d.rgmii_rx += rise.eq(Cat(pins.rxd, pins.rx_ctl))
            m.d.rgmii_rx_fall += fall.eq(Cat(pins.rxd, pins.rx_ctl))
            for edge, sample in ((0, rise), (1, fall)):
                m.d.rgmii_rx += [rx_i[edge][0].eq(sample[:4]), rx_i[edge][1].eq(sample[4])]
            for name, (o0, o1) in (("txd", (tx_o[0][0], tx_o[1][0])),
                                   ("tx_ctl", (tx_o[0][1], tx_o[1][1]))):
                width = len(o0)
                on_rise = Signal(width, name=f"{name}_rise")
                on_fall = Signal(width, name=f"{name}_fall")
                late = Signal(width, name=f"{name}_late")   # o[1], held for the falling edge
                m.d.rgmii_tx += [on_rise.eq(o0 ^ on_fall), late.eq(o1)]
                m.d.rgmii_tx_fall += on_fall.eq(late ^ on_rise)
                m.d.comb += getattr(pins, name).eq(on_rise ^ on_fall)

        m.d.comb += [
            self.gmii_rx.rxd.eq(Cat(rx_i[0][0], rx_i[1][0])),
            self.gmii_rx.rx_dv.eq(rx_i[0][1]),
            self.gmii_rx.rx_er.eq(rx_i[0][1] ^ rx_i[1][1]),
        ]
        return m


class _RxOverflowGuard(wiring.Component):
    """Writes received beats into the receive FIFO; never delivers half a frame unmarked.

    If the FIFO is full at a frame's first beat, the frame is dropped whole. If it fills in the
    middle of a frame, the rest is dropped and a last beat with ``bad`` set (one byte kept) is
    written as soon as there is room, ending the frame for the client; frames arriving before
    that room appears are dropped whole. Each frame dropped or cut pulses ``overflow`` once.
    """

    def __init__(self):
        super().__init__({
            "beat": In(MacBeat), "valid": In(1),
            "w_data": Out(BEAT_BITS), "w_en": Out(1), "w_rdy": In(1),
            "overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        dropping = Signal()     # the rest of the current frame goes nowhere
        unfinished = Signal()   # a cut frame still needs its bad last beat
        beat = self.beat
        m.d.comb += self.w_data.eq(beat)
        with m.If(self.valid):
            with m.If(dropping):
                m.d.sync += dropping.eq(~beat.last)
            with m.Elif(unfinished | ~self.w_rdy):
                m.d.comb += self.overflow.eq(1)
                m.d.sync += [dropping.eq(~beat.last),
                             unfinished.eq(unfinished | ~beat.first)]
            with m.Else():
                m.d.comb += self.w_en.eq(1)
        with m.Elif(unfinished & self.w_rdy):
            end = MacBeat.const({"keep": 1, "last": 1, "bad": 1})
            m.d.comb += [self.w_en.eq(1), self.w_data.eq(end)]
            m.d.sync += unfinished.eq(0)
        return m


class Mac(wiring.Component):
    """1 Gb/s Ethernet MAC on RGMII: `GmiiRx` and `GmiiTx` in the RGMII clock domains, asynchronous
    FIFOs to and from the core's 64-bit `MacBeat` streams in ``sync``.

    Receive is cut-through and never back-pressures the PHY: beats cross an `AsyncFIFO` that
    ``rx`` (always ready) drains every cycle. Should the FIFO be full (a core clock far slower
    than 125/8 MHz, or held in reset), the frame is dropped, or cut and ended with a bad last
    beat, and counted in ``rx_overflows``.

    Transmit takes beats into an `AsyncFIFO` (``tx_depth`` beats) and starts a frame on the wire
    only once it may not underrun (a beat outside a frame without ``first`` is dropped):

    - ``store_and_forward=False`` (default, cut-through): the frame starts when its first beat
      has crossed. `mac_tx_signature` requires a frame's beats on consecutive core cycles, so the
      rest follows at 8 bytes per core cycle, while the wire takes 8 bytes per 64 ns and the
      preamble and SFD alone last 64 ns: no underrun with any core clock above 15.6 MHz. A
      client that breaks the contract gets an aborted frame (sent with TX_ER), counted in
      ``tx_underruns``.
    - ``store_and_forward=True``: the frame starts when its last beat has crossed (or when the
      FIFO is full, for a frame longer than it). Never underruns, whatever the client does, at
      the cost of one core cycle per beat of latency.

    Ports
    -----
    rgmii : Out(rgmii_signature()), the PHY pins, when no ``pins`` are given (simulation)
    clk125 : In(1), the transmit clock; clk125_90 : In(1), the same 90 degrees later
        (``tx_clock="shifted"`` only)
    rx : Out(MacBeat stream, always ready), in ``sync``; FCS stripped, ``bad`` on the last beat
    tx : In(MacBeat stream), in ``sync``; padded, FCS appended by the MAC
    counters : Out(rx_frames, rx_bad_fcs, rx_runts, rx_errors, rx_bad_preamble, rx_overflows,
        tx_frames, tx_underruns), 32-bit wrapping, in ``sync``, a few cycles behind the wire

    Latency (156.25 MHz core clock, 125 MHz RGMII clocks; measured in
    tests/test_mac_cocotb.py under Verilator and by `tickwire.sim.mac_bench.mac_figures`):

    - receive, from the rising ``rx_clk`` edge that samples the low nibble of a frame's last
      FCS byte to the core edge after which its last beat is on ``rx``: 4 ``rgmii_rx`` cycles
      (the DDR input register; the register in the fabric; the next byte time, with DV low,
      when `GmiiRx` puts out the last beat; the FIFO write) then the FIFO's 2-stage
      synchroniser, 1 to 2 core cycles by phase: 38.4 to 44.8 ns (`RX_LATENCY_NS`), 7 core
      cycles at worst.
    - transmit (cut-through, MAC idle), from the core edge that takes a frame's first beat to
      the ``clk125`` edge that launches its first preamble nibble: the synchroniser (2 edges),
      the register stage after the FIFO (1; `GmiiTx` puts out the first preamble byte in the
      cycle the staged beat shows), the register in the fabric (1) and the DDR output register
      (1): 4 to 5 ``rgmii_tx`` cycles, 32 to 40 ns (`TX_LATENCY_NS`), 6 core cycles at worst. Store-and-forward adds one core cycle per
      further beat of the frame.
    """

    def __init__(self, *, pins=None, tx_clock="shifted", store_and_forward=False, tx_depth=256,
                 rx_depth=16):
        if tx_clock not in ("shifted", "aligned"):
            raise ValueError(f"tx_clock must be 'shifted' or 'aligned', not {tx_clock!r}")
        self._pins = pins
        self._tx_clock = tx_clock
        self.store_and_forward = store_and_forward
        self.tx_depth = tx_depth
        self.rx_depth = rx_depth
        self.registers = MAC_REGISTERS
        members = {
            "clk125": In(1),
            "rx": Out(mac_rx_signature()),
            "tx": In(mac_tx_signature()),
            "counters": Out(mac_counter_layout()),
        }
        if tx_clock == "shifted":
            members["clk125_90"] = In(1)
        if pins is None:
            members["rgmii"] = Out(rgmii_signature())
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        tx_clk_domain = "rgmii_tx90" if self._tx_clock == "shifted" else "rgmii_tx"
        m.submodules.phy = phy = RgmiiAdapter(self._pins, tx_clk_domain=tx_clk_domain)
        if self._pins is None:
            wiring.connect(m, wiring.flipped(self.rgmii), phy.rgmii)

        m.domains.rgmii_rx = ClockDomain(local=True)
        m.domains.rgmii_tx = ClockDomain(local=True)
        m.d.comb += [ClockSignal("rgmii_rx").eq(phy.rx_clk),
                     ClockSignal("rgmii_tx").eq(self.clk125)]
        m.submodules.rx_reset = cdc.ResetSynchronizer(ResetSignal("sync"), domain="rgmii_rx")
        m.submodules.tx_reset = cdc.ResetSynchronizer(ResetSignal("sync"), domain="rgmii_tx")
        if self._tx_clock == "shifted":
            m.domains.rgmii_tx90 = ClockDomain(local=True, reset_less=True)
            m.d.comb += ClockSignal("rgmii_tx90").eq(self.clk125_90)

        # Receive: PHY -> register -> GmiiRx -> guard -> AsyncFIFO -> rx. The DDR input
        # registers sit in the I/O cells, spread along the bank: the register in the fabric
        # keeps that route out of GmiiRx's logic (one more rgmii_rx cycle of latency).
        m.submodules.gmii_rx = gmii_rx = DomainRenamer("rgmii_rx")(GmiiRx())
        for name in ("rxd", "rx_dv", "rx_er"):
            m.d.rgmii_rx += getattr(gmii_rx.gmii, name).eq(getattr(phy.gmii_rx, name))
        m.submodules.rx_guard = guard = DomainRenamer("rgmii_rx")(_RxOverflowGuard())
        m.submodules.rx_fifo = rx_fifo = fifo.AsyncFIFO(
            width=BEAT_BITS, depth=self.rx_depth, w_domain="rgmii_rx", r_domain="sync")
        m.d.comb += [
            guard.beat.eq(gmii_rx.beats.p), guard.valid.eq(gmii_rx.beats.valid),
            rx_fifo.w_data.eq(guard.w_data), rx_fifo.w_en.eq(guard.w_en),
            guard.w_rdy.eq(rx_fifo.w_rdy),
            self.rx.valid.eq(rx_fifo.r_rdy), self.rx.payload.eq(rx_fifo.r_data),
            rx_fifo.r_en.eq(rx_fifo.r_rdy),
        ]

        # Transmit: tx -> AsyncFIFO (+ frame start tokens, store-and-forward) -> GmiiTx -> PHY
        m.submodules.tx_fifo = tx_fifo = fifo.AsyncFIFO(
            width=BEAT_BITS, depth=self.tx_depth, w_domain="sync", r_domain="rgmii_tx")
        tx = self.tx
        in_frame = Signal()   # a frame's first beat was taken, not yet its last
        taken = tx.valid & tx.ready
        # A beat outside a frame without ``first`` is dropped here (not written), so that every
        # frame in the FIFO begins at a first beat and the read side can tell a frame's start by
        # position alone
        kept = taken & (in_frame | tx.p.first)
        m.d.comb += [tx_fifo.w_data.eq(tx.payload), tx_fifo.w_en.eq(kept)]
        with m.If(kept):
            m.d.sync += in_frame.eq(~tx.p.last)

        # A register stage between the FIFO and GmiiTx: GmiiTx sits by the pins, the FIFO by its
        # block RAM, and a path from the FIFO's level through GmiiTx's ``ready`` back to the
        # read address crossed the die twice and missed 125 MHz on the board. Now the read side
        # decides from registers and the FIFO's level only: the stage takes a beat when it is
        # empty (a beat is 8 byte times on the wire, so one every other cycle is ample), and
        # `at_start` (the previous beat read was a last) stands for the head's ``first``.
        m.submodules.gmii_tx = gmii_tx = DomainRenamer("rgmii_tx")(GmiiTx())
        head = MacBeat(tx_fifo.r_data)
        staged = Signal(MacBeat)
        staged_valid = Signal()
        at_start = Signal(init=1)
        if self.store_and_forward:
            # A start token per frame, written when its last beat is (or when the FIFO is full)
            m.submodules.tx_starts = starts = fifo.AsyncFIFO(
                width=1, depth=self.tx_depth, w_domain="sync", r_domain="rgmii_tx")
            started = Signal()    # the current frame's token was written
            start = (kept & tx.p.last & ~(in_frame & started)) | \
                    (in_frame & ~started & ~tx_fifo.w_rdy)
            with m.If(kept):
                m.d.sync += started.eq(0)
            with m.If(start & ~(kept & tx.p.last)):
                m.d.sync += started.eq(1)
            m.d.comb += [tx.ready.eq(tx_fifo.w_rdy & starts.w_rdy), starts.w_en.eq(start)]
            may_start = starts.r_rdy
        else:
            # Cut-through: a frame starts as soon as its first beat has crossed
            m.d.comb += tx.ready.eq(tx_fifo.w_rdy)
            may_start = 1
        pull = tx_fifo.r_rdy & ~staged_valid & (~at_start | may_start)
        m.d.comb += [tx_fifo.r_en.eq(pull),
                     gmii_tx.beats.valid.eq(staged_valid), gmii_tx.beats.payload.eq(staged)]
        if self.store_and_forward:
            m.d.comb += starts.r_en.eq(pull & at_start)
        # The stage's 65 data registers load while it is empty, enabled by a register: were they
        # enabled by `pull`, its LUT would be placed by them, across the die from the read
        # pointer it also drives (a fresh-clone build missed 125 MHz so: 121.8 MHz)
        with m.If(~staged_valid):
            m.d.rgmii_tx += [staged.eq(head), staged.first.eq(at_start)]
        with m.If(pull):
            m.d.rgmii_tx += [staged_valid.eq(1), at_start.eq(head.last)]
        with m.Elif(gmii_tx.beats.ready):
            m.d.rgmii_tx += staged_valid.eq(0)
        # GmiiTx's outputs are logic (its state, the stage's valid in IDLE): registered here in
        # the fabric, so the route to the output DDR registers, spread along the bank, is all
        # a path holds (one more rgmii_tx cycle of latency)
        for name in ("txd", "tx_en", "tx_er"):
            m.d.rgmii_tx += getattr(phy.gmii_tx, name).eq(getattr(gmii_tx.gmii, name))

        # Counters: events cross to the core's domain one pulse at a time (each at most once a
        # frame, and frames are at least 72 cycles apart).
        events = {
            "rx_frames": gmii_rx.events.frame, "rx_bad_fcs": gmii_rx.events.bad_fcs,
            "rx_runts": gmii_rx.events.runt, "rx_errors": gmii_rx.events.rx_error,
            "rx_bad_preamble": gmii_rx.events.bad_preamble, "rx_overflows": guard.overflow,
            "tx_frames": gmii_tx.events.frame, "tx_underruns": gmii_tx.events.underrun,
        }
        for name in MAC_RX_COUNTERS + MAC_TX_COUNTERS:
            domain = "rgmii_rx" if name in MAC_RX_COUNTERS else "rgmii_tx"
            m.submodules[f"{name}_cdc"] = pulse = cdc.PulseSynchronizer(
                i_domain=domain, o_domain="sync")
            m.d.comb += pulse.i.eq(events[name])
            count(m, self.counters, name, pulse.o)
        return m

