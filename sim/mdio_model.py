"""A clause 22 PHY's management interface (IEEE 802.3 22.2.4), for testing MDIO masters.

Written from the standard, not from `tickwire.hdl.net.mdio`: the PHY samples MDIO at each rising
edge of MDC; a frame is a preamble of ones (at least 32), ST ``01``, OP (``10`` read, ``01``
write), PHYAD, REGAD, the turnaround (``Z0`` in a read: the PHY drives the second bit to 0; the
master drives ``10`` in a write) and 16 data bits, MSB first. In a read addressed to it the PHY
drives each bit `delay` clock cycles after the rising edge that ended the previous one (the
standard allows 0 to 300 ns) and lets go of the line after the last. Unaddressed, or absent,
it never drives: the line's pull-up makes the master read all ones.

BMSR (register 1) bit 2, link status, latches low (22.2.4.2.13): once the link fails it reads
0 until it has been read, and then shows the current state.

`Clause22Phy.step` is called once per clock cycle with the master's MDC and MDIO outputs and
returns the line, which the caller feeds back to the master's MDIO input. Every frame seen is
decoded into `frames` (a `Frame` each), every breach of the protocol into `errors`.
"""

import dataclasses

PREAMBLE = 32
BMSR, LINK_BIT = 1, 2


@dataclasses.dataclass
class Frame:
    preamble: int          # consecutive ones the master drove before ST
    st: int
    op: int
    phy_address: int
    register: int
    ta: tuple = ()         # the two turnaround bits as on the line
    ta_driven: tuple = ()  # whether the master drove each
    data: int = 0          # as on the line
    data_driven: tuple = ()  # whether the master drove each data bit
    answered: bool = False  # this PHY answered (a read of its address)
    capture_cycle: int = 0  # when the PHY took the value it sends (reads)
    end_cycle: int = 0     # the rising edge of the last data bit


class Clause22Phy:
    """A PHY at `address` (None: no PHY at all) with a register file (`registers`, register
    number -> 16-bit value, absent ones read 0)."""

    def __init__(self, address=0, registers=None, *, delay=0, link=False):
        if address is not None and not 0 <= address < 32:
            raise ValueError(f"PHY address must be 0..31, not {address}")
        self.address = address
        self.registers = dict(registers or {})
        self.delay = delay
        self.link = link
        self.latched_low = False
        self.frames, self.errors = [], []
        self.rises, self.falls, self.master_changes = [], [], []
        self.oe, self.o = False, 1
        self.cycle = 0
        self._mdc = 0
        self._master = (0, 0)
        self._scheduled = []      # (cycle, oe, o)
        self._ones = 0            # consecutive driven ones
        self._frame = None
        self._bits = []           # bits of the frame after ST
        self._send = []

    def set_link(self, up):
        if self.link and not up:
            self.latched_low = True
        self.link = up

    def read(self, register):
        if register == BMSR:
            value = self.registers.get(BMSR, 0) & ~(1 << LINK_BIT)
            return value | (self.link and not self.latched_low) << LINK_BIT
        return self.registers.get(register, 0)

    def step(self, mdc, master_oe, master_o):
        for due in [s for s in self._scheduled if s[0] <= self.cycle]:
            self._scheduled.remove(due)
            self.oe, self.o = due[1], due[2]
        if (master_oe, master_o) != self._master:
            self.master_changes.append(self.cycle)
            self._master = (master_oe, master_o)
        if master_oe and self.oe:
            self.errors.append(f"cycle {self.cycle}: both the master and the PHY drive MDIO")
        line = master_o if master_oe else self.o if self.oe else 1
        if mdc and not self._mdc:
            self.rises.append(self.cycle)
            self._rise(line, bool(master_oe))
        elif self._mdc and not mdc:
            self.falls.append(self.cycle)
        self._mdc = mdc
        self.cycle += 1
        return line

    def _schedule(self, oe, o):
        self._scheduled.append((self.cycle + self.delay, oe, o))

    def _rise(self, bit, driven):
        if self._send:                       # a read of ours in progress: the next bit
            self._schedule(True, self._send.pop(0))
        elif self.oe or any(s[1] for s in self._scheduled):
            self._schedule(False, 1)         # that was the last: let go
        if self._frame is None:
            if bit and driven:
                self._ones += 1
            elif not bit:
                if self._ones >= PREAMBLE:
                    self._frame = Frame(self._ones, 0, 0, 0, 0)
                    self._bits = [0]
                elif self._ones:
                    self.errors.append(f"cycle {self.cycle}: ST after {self._ones} ones")
                self._ones = 0
            return
        frame, bits = self._frame, self._bits
        bits.append(bit)
        if len(bits) == 2:
            frame.st = bits[0] << 1 | bits[1]
            if frame.st != 0b01:
                self.errors.append(f"cycle {self.cycle}: ST {frame.st:02b}, not 01")
                self._frame = None
        elif len(bits) == 14:                # ST, OP, PHYAD, REGAD
            frame.op = _number(bits[2:4])
            frame.phy_address = _number(bits[4:9])
            frame.register = _number(bits[9:14])
            if frame.op not in (0b10, 0b01):
                self.errors.append(f"cycle {self.cycle}: OP {frame.op:02b}")
            if frame.op == 0b10 and frame.phy_address == self.address:
                frame.answered, frame.capture_cycle = True, self.cycle
                value = self.read(frame.register)
                if frame.register == BMSR:
                    self.latched_low = False     # reading releases the latch
                self._send = [0] + [value >> (15 - i) & 1 for i in range(16)]
            self._driven = []
        if len(bits) > 14:
            self._driven.append(driven)
        if len(bits) == 16:                  # the turnaround
            frame.ta, frame.ta_driven = tuple(bits[14:16]), tuple(self._driven)
        elif len(bits) == 32:                # the data's last bit
            frame.data = _number(bits[16:32])
            frame.data_driven = tuple(self._driven[2:])
            frame.end_cycle = self.cycle
            if frame.op == 0b01 and frame.phy_address == self.address:
                self.registers[frame.register] = frame.data
            self.frames.append(frame)
            self._frame = None


def _number(bits):
    value = 0
    for bit in bits:
        value = value << 1 | bit
    return value
