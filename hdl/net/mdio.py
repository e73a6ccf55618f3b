"""An IEEE 802.3 clause 22 MDIO management master that watches the PHY's link (22.2.4, 22.3.4).

Frame format (22.2.4.5, Table 22-12), MSB first, one bit per MDC period::

    PRE (32 ones) | ST 01 | OP 10 read, 01 write | PHYAD (5) | REGAD (5) | TA | DATA (16) | IDLE

In a read, TA is ``Z0``: the master releases MDIO for both bits and the PHY drives the second
one to 0 and then the data. In a write the master drives TA ``10`` and the data. IDLE is
high-impedance (a pull-up holds the line at one, so no PHY reads as all ones).

Timing (22.3.4): MDC period at least 400 ns (2.5 MHz), high and low at least 160 ns; the PHY
samples MDIO at the rising edge of MDC (10 ns setup and hold) and drives it 0 to 300 ns after
the rising edge; the master samples it at the rising edge.
"""

import math

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import cdc, data, enum, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.platform.registers import Counters, Status, Strobe

PREAMBLE_BITS = 32
FRAME_BITS = 64          # PRE + ST + OP + PHYAD + REGAD + TA + DATA
IDLE_BITS = 1            # released after each frame: the PHY lets go of the line after its
                         # last data bit (up to 300 ns late) before the next preamble is driven
ST, OP_READ, OP_WRITE = 0b01, 0b10, 0b01
TA_WRITE = 0b10
TA_POSITION = PREAMBLE_BITS + 2 + 2 + 5 + 5   # the turnaround's first bit: 46

MDC_MAX_MHZ = 2.5
PHY_DELAY_NS = 300       # the PHY's output delay after the rising edge, at most (22.3.4)
SYNC_STAGES = 2          # MDIO is asynchronous to the core clock where it comes back in
MARGIN_NS = 40           # pads and board traces, both ways

# Registers (22.2.4) and their bits
BMCR, BMSR, ANAR, ANLPAR, GBCR, GBSR = 0, 1, 4, 5, 9, 10
#: The registers read in turn: the status (link) and what resolves the speed.
POLL = (BMSR, BMCR, ANAR, ANLPAR, GBCR, GBSR)
BMSR_LINK = 2            # 1.2, latching low (22.2.4.2.13)
BMSR_AN_COMPLETE = 5     # 1.5
BMSR_EXTENDED_STATUS = 8  # 1.8: registers 9, 10 and 15 exist (1000BASE-T)
BMCR_SPEED_LSB, BMCR_AN_ENABLE, BMCR_SPEED_MSB = 13, 12, 6


class Speed(enum.Enum, shape=2):
    """The link's speed: autonegotiated (the highest common ability, 28B.3) or forced (BMCR
    0.13 and 0.6); UNKNOWN without link or before autonegotiation completes."""
    UNKNOWN = 0
    M10 = 1
    M100 = 2
    M1000 = 3


class MdioStatus(data.Struct):
    link: 1          # the last BMSR read had 1.2 set: the link was up throughout the poll period
    present: 1       # a PHY answers at phy_address
    speed: Speed
    phy_address: 5


class MdioCounters(data.Struct):
    frames: unsigned(32)       # MDIO frames completed
    link_losses: unsigned(32)  # BMSR reads with 1.2 clear after one with it set (latched: a
                               # drop between two reads counts even if the link came back)


class MdioRequest(data.Struct):
    start: 1         # 1 starts the access (a strobe's other writes are ignored)
    write: 1
    phy_address: 5
    register: 5
    data: 16


class MdioReply(data.Struct):
    data: 16         # what a read returned (a write leaves it)
    pending: 1       # the request has not finished yet


MDIO_REGISTERS = (
    Status("status", "link (the last BMSR read's 1.2, which latches low), present (a PHY "
           "answers: BMSR neither 0xFFFF nor 0), speed, the PHY address polled"),
    Status("bmsr", "the last Basic Mode Status Register value read (register 1)"),
    Counters("counters", "MDIO frames completed; link losses seen (32-bit wrapping)"),
    Strobe("request", "write {start 1, write, phy_address, register, data}: one MDIO access "
           "between two polls (ignored while reply.pending)"),
    Status("reply", "the request's result: data (reads), pending until it is done"),
)


def settle_cycles(half_period):
    """Core cycles after MDC rises within which the PHY's next bit must reach the pin for the
    master to read it (see `MdioMaster`)."""
    return 2 * half_period - SYNC_STAGES - 1


def mdc_half_period(clock_mhz):
    """The fewest core cycles per MDC half period at `clock_mhz` (see `MdioMaster`)."""
    period_ns = 1000 / clock_mhz
    by_rate = math.ceil(1000 / MDC_MAX_MHZ / 2 / period_ns)
    by_delay = math.ceil(((PHY_DELAY_NS + MARGIN_NS) / period_ns + SYNC_STAGES + 1) / 2)
    return max(by_rate, by_delay, 2)


def check_parameters(clock_mhz=None, half_period=None, phy_address=None):
    """`MdioMaster`'s half period from its parameters, or a `ValueError` saying what is wrong."""
    if half_period is None:
        if clock_mhz is None:
            raise ValueError("give clock_mhz or half_period")
        half_period = mdc_half_period(clock_mhz)
    elif clock_mhz is not None and half_period < mdc_half_period(clock_mhz):
        raise ValueError(f"half_period {half_period} at {clock_mhz} MHz is below "
                         f"{mdc_half_period(clock_mhz)}: MDC above {MDC_MAX_MHZ} MHz or "
                         f"sampling inside the PHY's {PHY_DELAY_NS} ns output delay")
    if half_period < 2:
        raise ValueError(f"half_period must be at least 2, not {half_period}")
    if phy_address is not None and not 0 <= phy_address < 32:
        raise ValueError(f"phy_address must be 0..31 or None (scan), not {phy_address}")
    return half_period


def resolve_speed(bmcr, bmsr, anar, anlpar, gbcr, gbsr):
    """`Speed` from the standard registers (Amaranth values): forced by BMCR, or the
    highest ability both ends advertise (28B.3: 1000BASE-T FD, HD (40.5.1.2, registers 9 and
    10), 100BASE-TX FD, 100BASE-T4, 100BASE-TX HD, 10BASE-T FD, HD (28.2.1.2))."""
    gigabit = bmsr[BMSR_EXTENDED_STATUS] & ((gbcr[9] & gbsr[11]) | (gbcr[8] & gbsr[10]))
    common = anar & anlpar
    fast = common[9] | common[8] | common[7]
    ten = common[6] | common[5]
    negotiated = Mux(~bmsr[BMSR_AN_COMPLETE], Speed.UNKNOWN,
                     Mux(gigabit, Speed.M1000, Mux(fast, Speed.M100,
                                                   Mux(ten, Speed.M10, Speed.UNKNOWN))))
    forced = Mux(bmcr[BMCR_SPEED_MSB], Mux(bmcr[BMCR_SPEED_LSB], Speed.UNKNOWN, Speed.M1000),
                 Mux(bmcr[BMCR_SPEED_LSB], Speed.M100, Speed.M10))
    return Mux(bmcr[BMCR_AN_ENABLE], negotiated, forced)


class MdioMaster(wiring.Component):
    """Clause 22 MDIO master: polls the PHY's status for ever, and runs the host's accesses.

    It reads `POLL` in turn (BMSR, then BMCR, ANAR, ANLPAR, 1000BASE-T control and status, for
    the speed) while a PHY is present, and only BMSR while none is. A BMSR of 0xFFFF (nobody
    drives the pulled-up line) or 0 (a line held low) means no PHY. With ``phy_address=None``
    it scans: BMSR at addresses 0, 1, ... 31, 0, ... until one answers, then polls that one
    (and scans again from 0 if it stops answering).

    ``link`` is BMSR bit 1.2 of the last read. That bit latches low (22.2.4.2.13): it reads 0
    if the link failed at any time since the previous read, and reading it releases the
    latch. So ``link`` is 1 when the link was up throughout the last poll period: a flap
    shorter than a poll period shows as one period of no link (and one ``link_losses``).

    MDC is ``half_period`` core cycles low then as many high. The master changes MDIO as MDC
    falls (half a period of setup and hold around the PHY's rising-edge sample) and, at the
    core edge that raises MDC, takes the output of the `SYNC_STAGES`-flop synchroniser: the
    pin as it was `SYNC_STAGES` + 1 cycles before. So the PHY's bit, which it drives up to
    300 ns after the previous rising edge, must be on the pin within `settle_cycles` =
    2 x ``half_period`` - `SYNC_STAGES` - 1 core cycles of it. `mdc_half_period` gives the
    smallest half period that keeps both MDC at most 2.5 MHz and that window at least 300 ns
    + `MARGIN_NS`: 7 cycles at 31.25 MHz (MDC 2.23 MHz, window 352 ns), 32 at 156.25 MHz.

    Parameters
    ----------
    clock_mhz : the core clock, to derive ``half_period``; or
    half_period : core cycles per MDC half period (checked against ``clock_mhz`` if both)
    phy_address : 0..31, or None to scan

    Ports
    -----
    mdc, mdio_o, mdio_oe : Out(1), to the pins (MDIO tri-state: driven when ``mdio_oe``)
    mdio_i : In(1), the MDIO pin (asynchronous: synchronised here)
    status : Out(`MdioStatus`); bmsr : Out(16); counters : Out(`MdioCounters`)
    request : In(`MdioRequest`), a strobe: one read or write of any PHY register, run after
        the frame in progress, ahead of the poll; reply : Out(`MdioReply`)

    Cycle costs: a frame is (64 + `IDLE_BITS`) MDC periods = 130 x ``half_period`` core
    cycles (910 at 31.25 MHz: 29.1 us). One poll period, between two BMSR reads, is
    len(`POLL`) = 6 frames, 780 x ``half_period`` = 5,460 core cycles (174.7 us) with a PHY
    present (plus one frame per host request), one frame without. ``status`` and ``bmsr``
    change one cycle after the rising MDC edge that samples a read's last data bit. A scan
    finds the PHY at address n after n + 1 frames.
    """

    def __init__(self, *, clock_mhz=None, half_period=None, phy_address=None):
        half_period = check_parameters(clock_mhz, half_period, phy_address)
        self.half_period = half_period
        self.phy_address = phy_address
        self.registers = MDIO_REGISTERS
        super().__init__({
            "mdc": Out(1), "mdio_o": Out(1), "mdio_oe": Out(1), "mdio_i": In(1),
            "status": Out(MdioStatus), "bmsr": Out(16), "counters": Out(MdioCounters),
            "request": In(MdioRequest), "reply": Out(MdioReply),
        })

    @property
    def frame_cycles(self):
        return 2 * self.half_period * (FRAME_BITS + IDLE_BITS)

    @property
    def poll_cycles(self):
        return len(POLL) * self.frame_cycles

    def elaborate(self, platform):
        m = Module()
        line = Signal()
        m.submodules.sync = cdc.FFSynchronizer(self.mdio_i, line, init=1, stages=SYNC_STAGES)

        total = FRAME_BITS + IDLE_BITS
        count = Signal(range(2 * self.half_period))
        position = Signal(range(total))                  # the bit of the frame on the line
        bits = Signal(total)                             # to send, MSB next
        shift_in = Signal(16)
        sampled = Cat(line, shift_in[:15])               # the data, as the last bit comes in

        phy_address = Signal(5, init=self.phy_address or 0)
        step = Signal(range(len(POLL)))
        registers = {reg: Signal(16, name=f"reg{reg}", init=0x1000 if reg == BMCR else 0)
                     for reg in POLL}
        bmsr = registers[BMSR]
        present = Signal()
        pending = Signal()
        request = Signal(MdioRequest)
        # the frame on the line: a host request, or the poll's
        is_request = Signal()
        register = Signal(5)
        write = Signal()

        link = present & bmsr[BMSR_LINK]
        with m.If(self.request.start & ~pending):
            m.d.sync += [pending.eq(1), request.eq(self.request)]

        poll_register = Signal(5)
        with m.Switch(step):
            for index, reg in enumerate(POLL):
                with m.Case(index):
                    m.d.comb += poll_register.eq(reg)

        m.d.sync += count.eq(Mux(count == 2 * self.half_period - 1, 0, count + 1))
        with m.If(count == 0):                            # MDC falls: the next bit goes out
            m.d.sync += self.mdc.eq(0)
            with m.If(position == 0):                     # a new frame: pick and load it
                address = Mux(pending, request.phy_address, phy_address)
                reg = Mux(pending, request.register, poll_register)
                op = Mux(pending & request.write, OP_WRITE, OP_READ)
                ta = Mux(pending & request.write, TA_WRITE, 0)
                payload = Mux(pending & request.write, request.data, 0)
                frame = Cat(Const(0, IDLE_BITS), payload, ta, reg, address, op, Const(ST, 2),
                            Const((1 << PREAMBLE_BITS) - 1, PREAMBLE_BITS))
                m.d.sync += [self.mdio_o.eq(frame[-1]), self.mdio_oe.eq(1),
                             bits.eq(frame << 1),
                             is_request.eq(pending), register.eq(reg),
                             write.eq(pending & request.write)]
            with m.Else():
                # the master lets go for a read's turnaround and data, and after the frame
                m.d.sync += [self.mdio_o.eq(bits[-1]), bits.eq(bits << 1),
                             self.mdio_oe.eq((position < TA_POSITION)
                                             | (write & (position < FRAME_BITS)))]

        with m.If(count == self.half_period):             # MDC rises: sample, next position
            m.d.sync += [self.mdc.eq(1), shift_in.eq(sampled),
                         position.eq(Mux(position == total - 1, 0, position + 1))]
            with m.If(position == FRAME_BITS - 1):        # the last data bit: the frame's done
                m.d.sync += self.counters.frames.eq(self.counters.frames + 1)
                with m.If(is_request):
                    m.d.sync += pending.eq(0)
                    with m.If(~write):
                        m.d.sync += self.reply.data.eq(sampled)
                with m.Elif(register == BMSR):
                    answers = (sampled != 0xFFFF) & (sampled != 0)
                    m.d.sync += [present.eq(answers), bmsr.eq(sampled),
                                 step.eq(answers)]        # on to BMCR, or BMSR again
                    with m.If(link & ~(answers & sampled[BMSR_LINK])):
                        m.d.sync += self.counters.link_losses.eq(self.counters.link_losses + 1)
                    if self.phy_address is None:          # scan: next address, or from 0
                        with m.If(~answers):
                            m.d.sync += phy_address.eq(Mux(present, 0, phy_address + 1))
                with m.Else():
                    for reg in POLL[1:]:
                        with m.If(register == reg):
                            m.d.sync += registers[reg].eq(sampled)
                    m.d.sync += step.eq(Mux(step == len(POLL) - 1, 0, step + 1))

        speed = resolve_speed(*(registers[reg] for reg in (BMCR, BMSR, ANAR, ANLPAR, GBCR, GBSR)))
        m.d.comb += [self.status.link.eq(link), self.status.present.eq(present),
                     self.status.speed.eq(Mux(link, speed, Speed.UNKNOWN)),
                     self.status.phy_address.eq(phy_address), self.bmsr.eq(bmsr),
                     self.reply.pending.eq(pending)]
        return m
