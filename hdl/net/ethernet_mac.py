"""A GMII-level Ethernet MAC core: one byte per cycle (1 Gb/s at 125 MHz), IEEE 802.3 clause 3/4.

`GmiiRx` finds the start frame delimiter, checks the FCS (CRC-32, clause 3.2.9), strips it, and
packs the frame into 64-bit `MacBeat` beats (cut-through: a beat leaves as soon as it is known
not to be the last). `GmiiTx` unpacks beats into bytes, sends preamble + SFD, pads to the minimum
frame size and appends the FCS, then keeps the minimum inter-frame gap (clause 4.4.2: 96 bit
times = 12 byte cycles). Both run in their own ``sync`` domain; `tickwire.hdl.net.rgmii.Mac` puts
them in the RGMII clock domains and crosses to the core's clock.
"""

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.net.mac import MacBeat
from tickwire.hdl.signals import wire

PREAMBLE_BYTE = 0x55
SFD_BYTE = 0xD5
PREAMBLE_LENGTH = 7           # bytes of 0x55 before the SFD (clause 3.2.1)
MIN_FRAME = 64                # bytes, FCS included (clause 4.4.2, minFrameSize)
MIN_PAYLOAD = MIN_FRAME - 4   # what the transmitter pads a client frame to
FCS_BYTES = 4
MIN_IFG = 12                  # byte times of idle between frames (clause 4.4.2, interPacketGap)

CRC_POLY = 0xEDB88320         # CRC-32, bit-reversed (bytes go LSB first on the wire)
CRC_INIT = 0xFFFFFFFF
#: The CRC register after a frame *and its FCS* went through it, when the FCS is right.
CRC_RESIDUE = 0xDEBB20E3


def _crc_matrix():
    """Each bit of the next CRC register as the set of current-register and data bits it is the
    XOR of (CRC-32 over one byte is linear over GF(2)): ``("c", i)`` and ``("d", j)``."""
    register = [{("c", i)} for i in range(32)]
    for j in range(8):
        feedback = register[0] ^ {("d", j)}
        shifted = [register[i + 1] for i in range(31)] + [set()]
        register = [shifted[i] ^ feedback if CRC_POLY >> i & 1 else shifted[i]
                    for i in range(32)]
    return register


_CRC_MATRIX = _crc_matrix()


def crc32_next(crc, byte):
    """The CRC-32 register (as a 32-bit Value) after `byte` (8 bits, LSB first on the wire)."""
    bits = []
    for terms in _CRC_MATRIX:
        parts = [crc[i] if kind == "c" else byte[i] for kind, i in sorted(terms)]
        bit = parts[0]
        for part in parts[1:]:
            bit = bit ^ part
        bits.append(bit)
    return Cat(*bits)


def gmii_rx_signature():
    """GMII receive signals, from the PHY's side (clause 35.2.2)."""
    return wiring.Signature({"rxd": Out(8), "rx_dv": Out(1), "rx_er": Out(1)})


def gmii_tx_signature():
    """GMII transmit signals, from the MAC's side."""
    return wiring.Signature({"txd": Out(8), "tx_en": Out(1), "tx_er": Out(1)})


class RxEvents(data.Struct):
    """One-cycle pulses, at most one frame's worth per cycle. Every frame with an SFD pulses
    ``frame``; a bad one pulses exactly one reason, in this order of precedence: ``rx_error``
    (the PHY signalled an error inside the frame), ``runt`` (shorter than 64 bytes with its
    FCS), ``bad_fcs``. ``bad_preamble``: carrier with no SFD, or a byte other than 0x55 before
    it (nothing is delivered)."""
    frame: 1
    bad_fcs: 1
    runt: 1
    rx_error: 1
    bad_preamble: 1


class _RxState(enum.Enum, shape=2):
    IDLE = 0
    PREAMBLE = 1
    DATA = 2
    DROP = 3


class GmiiRx(wiring.Component):
    """GMII receiver: preamble and SFD stripped, FCS checked and stripped, bytes packed in beats.

    The PHY cannot be stalled: ``beats`` has no back-pressure. Bytes go through a 4-byte delay
    line, so that the FCS (the last 4 bytes before ``rx_dv`` falls) never reaches the client.
    A full beat leaves when the next payload byte arrives; the frame's last beat leaves in the
    first cycle with ``rx_dv`` low, with ``bad`` set for a wrong FCS, a runt (under 64 bytes, FCS
    included), or ``rx_er`` seen while ``rx_dv`` was high. A frame of 4 bytes or fewer after its
    SFD has no payload: nothing is delivered, it is only counted.

    Ports
    -----
    gmii : In(gmii_rx_signature())
    beats : Out(MacBeat stream, always ready), from registers and ``gmii`` through logic, not
        registered here: the FIFO that takes the beats registers them
    events : Out(RxEvents), one-cycle pulses, the cycle after the frame's last beat

    Latency: 0 cycles: a frame's last beat is on ``beats`` in the first cycle with ``rx_dv``
    low after it (the cycle after its last FCS byte).
    """

    def __init__(self):
        super().__init__({
            "gmii": In(gmii_rx_signature()),
            "beats": Out(stream.Signature(MacBeat, always_ready=True)),
            "events": Out(RxEvents),
        })

    def elaborate(self, platform):
        m = Module()
        rxd, dv, er = self.gmii.rxd, self.gmii.rx_dv, self.gmii.rx_er
        state = Signal(_RxState)
        crc = Signal(32, init=CRC_INIT)
        length = Signal(range(MIN_FRAME + 1))     # bytes after the SFD, saturating at 64
        error = Signal()
        # The FCS check of the bytes so far, registered beside ``crc`` so that no 32-bit
        # compare sits between ``crc`` and the last beat (the receive FIFO's write)
        fcs_ok = Signal()
        delay = Signal(8 * FCS_BYTES)             # oldest byte in [0:8]
        acc = Signal(64)
        lanes = Signal(range(9))
        first = Signal()
        beats, ev = self.beats, self.events

        m.d.sync += ev.eq(0)

        crc_after = wire(m, crc32_next(crc, rxd), "crc_after")

        with m.Switch(state):
            with m.Case(_RxState.IDLE, _RxState.PREAMBLE):
                with m.If(dv):
                    with m.If(rxd == SFD_BYTE):
                        m.d.sync += [state.eq(_RxState.DATA), crc.eq(CRC_INIT), length.eq(0),
                                     error.eq(er), lanes.eq(0), acc.eq(0), first.eq(1),
                                     fcs_ok.eq(0)]
                    with m.Elif((rxd == PREAMBLE_BYTE) & ~er):
                        m.d.sync += state.eq(_RxState.PREAMBLE)
                    with m.Else():
                        m.d.sync += [state.eq(_RxState.DROP), ev.bad_preamble.eq(1)]
                with m.Elif(state == _RxState.PREAMBLE):
                    m.d.sync += [state.eq(_RxState.IDLE), ev.bad_preamble.eq(1)]

            with m.Case(_RxState.DATA):
                with m.If(dv):
                    m.d.sync += [crc.eq(crc_after), delay.eq(Cat(delay[8:], rxd)),
                                 error.eq(error | er), fcs_ok.eq(crc_after == CRC_RESIDUE)]
                    with m.If(length != MIN_FRAME):
                        m.d.sync += length.eq(length + 1)
                    with m.If(length >= FCS_BYTES):
                        byte = delay[:8]
                        with m.If(lanes == 8):
                            m.d.comb += [
                                beats.valid.eq(1), beats.p.data.eq(acc), beats.p.keep.eq(0xFF),
                                beats.p.first.eq(first), beats.p.last.eq(0), beats.p.bad.eq(0),
                            ]
                            m.d.sync += [first.eq(0), acc.eq(byte), lanes.eq(1)]
                        with m.Else():
                            m.d.sync += [acc.word_select(lanes[:3], 8).eq(byte),
                                         lanes.eq(lanes + 1)]
                with m.Else():
                    m.d.sync += state.eq(_RxState.IDLE)
                    runt = length < MIN_FRAME
                    bad_fcs = ~fcs_ok
                    keep = Signal(8)
                    for k in range(8):
                        m.d.comb += keep[k].eq(lanes > k)
                    with m.If(length > FCS_BYTES):
                        m.d.comb += [
                            beats.valid.eq(1), beats.p.data.eq(acc), beats.p.keep.eq(keep),
                            beats.p.first.eq(first), beats.p.last.eq(1),
                            beats.p.bad.eq(error | runt | bad_fcs),
                        ]
                    m.d.sync += [
                        ev.frame.eq(1),
                        ev.rx_error.eq(error),
                        ev.runt.eq(~error & runt),
                        ev.bad_fcs.eq(~error & ~runt & bad_fcs),
                    ]

            with m.Case(_RxState.DROP):
                with m.If(~dv):
                    m.d.sync += state.eq(_RxState.IDLE)
        return m


class TxEvents(data.Struct):
    """One-cycle pulses: ``frame`` for each frame sent whole; ``underrun`` for a frame aborted
    because its next beat was not there in time (sent with ``tx_er``, so the link partner drops
    it)."""
    frame: 1
    underrun: 1


class _TxState(enum.Enum, shape=3):
    IDLE = 0
    PREAMBLE = 1
    DATA = 2
    PAD = 3
    FCS = 4
    ABORT = 5
    DISCARD = 6
    GAP = 7


class GmiiTx(wiring.Component):
    """GMII transmitter: preamble + SFD, the frame's bytes, zero padding to 60 bytes, the FCS,
    then at least 12 idle byte cycles before the next preamble.

    A frame starts when a beat with ``first`` is valid. Its beats are taken one per 8 byte
    cycles (fewer for a partial last beat), the first while the SFD goes out; each must be valid
    when the previous one is used up. If it is not, the frame is aborted: one byte with
    ``tx_er`` ends it, its remaining beats are taken and dropped, and ``underrun`` pulses. A beat
    without ``first`` outside a frame is dropped. ``keep`` must be contiguous from lane 0 and not
    empty.

    Ports
    -----
    beats : In(MacBeat stream)
    gmii : Out(gmii_tx_signature()), from registers and ``beats`` through logic, not
        registered here: the RGMII output registers come next
    events : Out(TxEvents), one-cycle pulses

    Latency: 0 cycles: the first preamble byte is on ``gmii`` in the cycle a ``first`` beat is
    valid (the MAC idle, out of its gap).
    """

    def __init__(self):
        super().__init__({
            "beats": In(stream.Signature(MacBeat)),
            "gmii": Out(gmii_tx_signature()),
            "events": Out(TxEvents),
        })

    def elaborate(self, platform):
        m = Module()
        beats, gmii, ev = self.beats, self.gmii, self.events
        state = Signal(_TxState)
        count = Signal(range(MIN_IFG + 1))      # preamble, FCS and gap byte counter
        beat = Signal(MacBeat)
        index = Signal(3)
        last_index = Signal(3)
        sent = Signal(range(MIN_PAYLOAD + 1))   # data bytes sent, saturating at 60
        crc = Signal(32, init=CRC_INIT)
        fcs = Signal(32)

        m.d.sync += ev.eq(0)

        def take_beat():
            m.d.comb += beats.ready.eq(1)
            m.d.sync += [beat.eq(beats.p), index.eq(0),
                         last_index.eq(sum(beats.p.keep[k] for k in range(8)) - 1)]

        # The beat's data shift down a byte per byte sent (no byte-select multiplexer between
        # ``index`` and the CRC); ``index`` only counts to the last lane
        byte = wire(m, beat.data[:8], "tx_byte")
        with m.Switch(state):
            with m.Case(_TxState.IDLE):
                with m.If(beats.valid & beats.p.first):
                    m.d.sync += [state.eq(_TxState.PREAMBLE), count.eq(1)]
                    m.d.comb += [gmii.txd.eq(PREAMBLE_BYTE), gmii.tx_en.eq(1)]
                with m.Elif(beats.valid):
                    m.d.comb += beats.ready.eq(1)    # a stray beat: not a frame's start

            with m.Case(_TxState.PREAMBLE):
                m.d.sync += count.eq(count + 1)
                m.d.comb += gmii.tx_en.eq(1)
                with m.If(count == PREAMBLE_LENGTH):
                    m.d.comb += gmii.txd.eq(SFD_BYTE)
                    m.d.sync += [state.eq(_TxState.DATA), crc.eq(CRC_INIT), sent.eq(0)]
                    take_beat()
                with m.Else():
                    m.d.comb += gmii.txd.eq(PREAMBLE_BYTE)

            with m.Case(_TxState.DATA, _TxState.PAD):
                value = wire(m, (state == _TxState.DATA).replicate(8) & byte, "tx_value")
                crc_after = wire(m, crc32_next(crc, value), "tx_crc_after")
                m.d.comb += [gmii.txd.eq(value), gmii.tx_en.eq(1)]
                m.d.sync += [crc.eq(crc_after), index.eq(index + 1),
                             beat.data.eq(beat.data >> 8)]
                with m.If(sent != MIN_PAYLOAD):
                    m.d.sync += sent.eq(sent + 1)
                frame_done = Signal()
                with m.If(state == _TxState.PAD):
                    m.d.comb += frame_done.eq(sent == MIN_PAYLOAD - 1)
                with m.Elif(index == last_index):
                    with m.If(beat.last):
                        with m.If(sent >= MIN_PAYLOAD - 1):
                            m.d.comb += frame_done.eq(1)
                        with m.Else():
                            m.d.sync += state.eq(_TxState.PAD)
                    with m.Elif(beats.valid):
                        take_beat()
                    with m.Else():
                        m.d.sync += state.eq(_TxState.ABORT)
                with m.If(frame_done):
                    m.d.sync += [state.eq(_TxState.FCS), count.eq(0), fcs.eq(~crc_after)]

            with m.Case(_TxState.FCS):
                m.d.comb += [gmii.txd.eq(fcs[:8]), gmii.tx_en.eq(1)]
                m.d.sync += [fcs.eq(fcs >> 8), count.eq(count + 1)]
                with m.If(count == FCS_BYTES - 1):
                    m.d.sync += [state.eq(_TxState.GAP), count.eq(1), ev.frame.eq(1)]

            with m.Case(_TxState.ABORT):
                m.d.comb += [gmii.tx_en.eq(1), gmii.tx_er.eq(1)]
                m.d.sync += [ev.underrun.eq(1), state.eq(_TxState.DISCARD)]

            with m.Case(_TxState.DISCARD):
                m.d.comb += beats.ready.eq(1)
                with m.If(beats.valid & beats.p.last):
                    m.d.sync += [state.eq(_TxState.GAP), count.eq(1)]

            with m.Case(_TxState.GAP):
                m.d.sync += count.eq(count + 1)
                with m.If(count == MIN_IFG):
                    m.d.sync += state.eq(_TxState.IDLE)
        return m


MAC_RX_COUNTERS = ("rx_frames", "rx_bad_fcs", "rx_runts", "rx_errors", "rx_bad_preamble",
                   "rx_overflows")
MAC_TX_COUNTERS = ("tx_frames", "tx_underruns")
MAC_COUNTERS = MAC_RX_COUNTERS + MAC_TX_COUNTERS


def mac_counter_layout():
    return data.StructLayout({name: unsigned(32) for name in MAC_COUNTERS})
