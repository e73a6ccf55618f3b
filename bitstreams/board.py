"""Board top levels: the RGMII MAC and `TickToTrade` joined, with clocks, resets and LEDs.

`BoardCore` is what every board shares and what the board simulation runs: `Mac` (RGMII pins,
125 MHz transmit clocks) and `TickToTrade` in the core's ``sync`` domain, the MAC's client
streams wired straight to the core's (the MAC's asynchronous FIFOs are the clock domain
crossing and its 64-bit beats are the core's width, so nothing sits between them), the
`MdioMaster` that watches the PHY's link, and status outputs for LEDs. `Ecpix5Top` puts it on
the ECPIX-5: one EHXPLLL makes the 125 MHz transmit clock, the same 90 degrees later
(forwarded as TX_CLK, the PHY adds no transmit delay) and the core clock from the board's
100 MHz oscillator.
"""

from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    Elaboratable,
    Instance,
    Module,
    ResetSignal,
    Signal,
)
from amaranth.lib import cdc, io, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.net.mdio import MdioMaster
from tickwire.hdl.net.rgmii import Mac, rgmii_signature
from tickwire.hdl.platform.device import describe_only
from tickwire.hdl.platform.registers import Block, RegisterBank, RegisterMap
from tickwire.hdl.top import TickToTrade

from .mii import MiiMac, mii_signature

#: LED blink lengths, in core cycles as powers of two (0.27 s lit after a frame, 1.07 s per
#: heartbeat half period at the ECPIX-5's 31.25 MHz core clock).
ACTIVITY_BITS = 23
HEARTBEAT_BITS = 26

#: The ECPIX-5's LEDs: (LD number - 1, colour, `BoardCore` output).
LEDS = ((0, "g", "link"), (0, "b", "activity"), (1, "g", "armed"), (2, "r", "killed"),
        (3, "b", "heartbeat"))


class BoardTickToTrade(TickToTrade):
    """`TickToTrade` whose register map also has the board's MAC (``mac.counters``: frames,
    bad FCS, runts, PHY errors, bad preambles, receive FIFO overflows, frames sent,
    underruns) and then its MDIO master (``mdio.status``, ``mdio.bmsr``, ``mdio.counters``,
    ``mdio.request``, ``mdio.reply``), after every block of the core, so every core address
    stays where it is.

    The MAC and the MDIO master are not submodules of the core: the bank reaches their ports
    (in ``sync``) across the hierarchy. The bus width must not change (the control responder
    and the bus arbiter were sized with the core's map)."""

    def __init__(self, *, mac, mdio=None, identity=0, **top):
        super().__init__(identity=identity, **top)
        width = self.register_map.address_width
        blocks = [Block("mac", mac, mac.registers)]
        if mdio is not None:
            blocks.append(Block("mdio", mdio, mdio.registers))
        self.register_map = RegisterMap([*self.register_map.blocks, *blocks])
        if self.register_map.address_width != width:
            raise ValueError(f"the board's registers widen the register bus past {width} bits")
        describe_only(self.bank)        # the core's own bank, replaced before elaboration
        self.bank = RegisterBank(self.register_map, identity)


class BoardCore(wiring.Component):
    """`Mac` + `TickToTrade` in the core's ``sync`` domain.

    Parameters
    ----------
    identity : the design identity the register bank serves
    top : keyword arguments of `TickToTrade` (``book``, ``feed``, ``control``)
    pins : the RGMII pins from the platform (``eth_rgmii``, ``dir="-"``), or None for the
        simulation, where they are the ``rgmii`` port and the DDR registers are generic logic
    phy : ``"rgmii"`` (`Mac`, 1 Gb/s) or ``"mii"`` (`MiiMac`, 100 Mb/s, pins always a port)
    core_mhz : the core clock, for the MDIO master's MDC divider (RGMII only; the default,
        the fastest core clock, suits any slower one: MDC only gets slower)
    phy_address : the PHY's MDIO address, or None to scan 0..31 for it (RGMII only)

    Ports
    -----
    rgmii : Out(rgmii_signature()), RGMII without ``pins``; mii : Out(mii_signature()), MII
    clk125, clk125_90 : In(1), RGMII only: the transmit clock and the same 90 degrees later
    bus : In(register bus) of the core (`BoardTickToTrade` with RGMII: the MAC's counters and
        the MDIO master's registers are in its map as ``mac.*`` and ``mdio.*``), for a board
        with a host bus (PCIe) and for tests; a board without one ties its strobes to 0 (the
        UDP control channel is its host port)
    mdc, mdio_o, mdio_oe : Out(1); mdio_i : In(1), RGMII only: the PHY's management pins
        (`MdioMaster`; MDIO driven when ``mdio_oe``)
    link : Out(1), RGMII only: the PHY reports the link up (`MdioMaster`'s ``status.link``)
    bus_busy : Out(1), `TickToTrade`'s: a control request holds the bus
    activity : Out(1), high for 2**`ACTIVITY_BITS` cycles after each frame received
    armed, killed : Out(1), the risk gate's
    heartbeat : Out(1), toggles every 2**(`HEARTBEAT_BITS` - 1) cycles: the core clock runs
    """

    def __init__(self, *, identity=0, top=None, pins=None, phy="rgmii", core_mhz=156.25,
                 phy_address=None):
        members = {"activity": Out(1), "armed": Out(1), "killed": Out(1), "heartbeat": Out(1),
                   "bus_busy": Out(1)}
        self.mdio = None
        if phy == "rgmii":
            self.mac = Mac(pins=pins)
            self.mdio = MdioMaster(clock_mhz=core_mhz, phy_address=phy_address)
            self.t2t = BoardTickToTrade(mac=self.mac, mdio=self.mdio, identity=identity,
                                        **dict(top or {}))
            members.update({"clk125": In(1), "clk125_90": In(1), "mdc": Out(1),
                            "mdio_o": Out(1), "mdio_oe": Out(1), "mdio_i": In(1),
                            "link": Out(1)})
            if pins is None:
                members["rgmii"] = Out(rgmii_signature())
        elif phy == "mii":
            self.mac = MiiMac()     # keeps no counters
            self.t2t = TickToTrade(identity=identity, **dict(top or {}))
            members["mii"] = Out(mii_signature())
        else:
            raise ValueError(f"phy must be 'rgmii' or 'mii', not {phy!r}")
        members["bus"] = In(self.t2t.bus.signature.flip())
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mac = mac = self.mac
        m.submodules.t2t = t2t = self.t2t
        for pins in ("rgmii", "mii"):
            if pins in self.signature.members:
                wiring.connect(m, wiring.flipped(getattr(self, pins)), getattr(mac, pins))
        if "clk125" in self.signature.members:
            m.d.comb += [mac.clk125.eq(self.clk125), mac.clk125_90.eq(self.clk125_90)]
        if self.mdio is not None:
            m.submodules.mdio = mdio = self.mdio
            m.d.comb += [self.mdc.eq(mdio.mdc), self.mdio_o.eq(mdio.mdio_o),
                         self.mdio_oe.eq(mdio.mdio_oe), mdio.mdio_i.eq(self.mdio_i),
                         self.link.eq(mdio.status.link)]
        wiring.connect(m, mac.rx, t2t.rx)
        wiring.connect(m, t2t.tx, mac.tx)
        wiring.connect(m, wiring.flipped(self.bus), t2t.bus)
        m.d.comb += self.bus_busy.eq(t2t.bus_busy)

        since_frame = Signal(ACTIVITY_BITS + 1, init=1 << ACTIVITY_BITS)
        with m.If(mac.rx.valid & mac.rx.p.last):
            m.d.sync += since_frame.eq(0)
        with m.Elif(~since_frame[-1]):
            m.d.sync += since_frame.eq(since_frame + 1)
        beat = Signal(HEARTBEAT_BITS)
        m.d.sync += beat.eq(beat + 1)
        m.d.comb += [self.activity.eq(~since_frame[-1]), self.heartbeat.eq(beat[-1]),
                     self.armed.eq(t2t.risk.armed), self.killed.eq(t2t.risk.killed)]
        return m


class Ecp5Pll(Elaboratable):
    """One EHXPLLL: from `clki_mhz`, ``clk125`` (CLKOP, also the feedback), ``clk125_90``
    (CLKOS, 90 degrees later) and ``core`` (CLKOS2, VCO / `core_div`).

    VCO = 625 MHz (range 400-800): CLKOP = clki / `clki_div` x 5 = 125 MHz, CLKOP_DIV = 5. Phase
    settings follow ecppll's convention (CPHASE = 2 + whole VCO cycles of delay, FPHASE in
    eighths of one): 90 degrees of 125 MHz is 1.25 VCO cycles."""

    VCO_MHZ = 625.0

    def __init__(self, *, clki_mhz=100.0, core_div=10):
        if clki_mhz * 5 / self._clki_div(clki_mhz) != 125.0:
            raise ValueError(f"no 125 MHz from {clki_mhz} MHz with this PLL set-up")
        if not 5 <= core_div <= 128:
            raise ValueError(f"core_div {core_div} out of 5..128")
        self.clki_mhz = clki_mhz
        self.core_div = core_div
        self.clki = Signal()
        self.clk125, self.clk125_90, self.core, self.locked = Signal(), Signal(), Signal(), Signal()

    @staticmethod
    def _clki_div(clki_mhz):
        return round(clki_mhz / 25)      # 25 MHz at the phase detector

    @property
    def core_mhz(self):
        return self.VCO_MHZ / self.core_div

    def parameters(self):
        """The EHXPLLL's divider and phase parameters."""
        return {
            "CLKI_DIV": self._clki_div(self.clki_mhz), "FEEDBK_PATH": "CLKOP", "CLKFB_DIV": 5,
            "CLKOP_DIV": 5, "CLKOP_CPHASE": 2, "CLKOP_FPHASE": 0,
            "CLKOS_DIV": 5, "CLKOS_CPHASE": 3, "CLKOS_FPHASE": 2,
            "CLKOS2_DIV": self.core_div, "CLKOS2_CPHASE": 2, "CLKOS2_FPHASE": 0,
        }

    def elaborate(self, platform):
        m = Module()
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=str(self.clki_mhz), a_FREQUENCY_PIN_CLKOP="125",
            a_FREQUENCY_PIN_CLKOS="125", a_FREQUENCY_PIN_CLKOS2=f"{self.core_mhz:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD", p_CLKOP_ENABLE="ENABLED",
            p_CLKOS_ENABLE="ENABLED", p_CLKOS2_ENABLE="ENABLED",
            **{f"p_{name}": value for name, value in self.parameters().items()},
            i_CLKI=self.clki, i_CLKFB=self.clk125, i_RST=0, i_STDBY=0, i_PHASESEL0=0,
            i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0,
            i_ENCLKOP=0,
            o_CLKOP=self.clk125, o_CLKOS=self.clk125_90, o_CLKOS2=self.core, o_LOCK=self.locked)
        return m


class Ecpix5Top(Elaboratable):
    """The ECPIX-5 (LFE5UM5G-85F) bitstream's top level.

    The core runs at the PLL's CLKOS2, held in reset until the PLL locks and while the reset
    button is pressed; that reset is distributed on a global network (a DCCA). The PHY's
    reset is released at configuration and it runs on its strapped defaults
    (autonegotiation, RGMII receive clock delay); `MdioMaster` (MDC
    2.23 MHz at the 31.25 MHz core clock) scans MDIO addresses 0..31 for it, since the
    board's strap is not in the platform file, then polls its status for the link, and the
    host reads the result as ``mdio.status`` and ``mdio.bmsr``. LEDs (active low on the
    board, inverted by the platform): LD1 green, the PHY's link is up (MDIO), and blue, a
    frame received in the last 0.27 s (so cyan: link and traffic); LD2 green, armed; LD3 red,
    the kill switch; LD4 blue, the heartbeat (the core clock runs)."""

    def __init__(self, *, identity=0, top=None, core_div=10):
        self.identity = identity
        self.top = dict(top or {})
        self.pll = Ecp5Pll(clki_mhz=100.0, core_div=core_div)

    def elaborate(self, platform):
        m = Module()
        m.submodules.pll = pll = self.pll
        m.submodules.clk100 = clk100 = io.Buffer("i", platform.request("clk100", 0, dir="-"))
        m.submodules.button = button = io.Buffer("i", platform.request("rst", 0, dir="-"))
        m.d.comb += pll.clki.eq(clk100.i)

        m.domains.sync = ClockDomain()
        m.domains.reset = ClockDomain()     # only the reset synchroniser's
        m.d.comb += [ClockSignal("sync").eq(pll.core), ClockSignal("reset").eq(pll.core)]
        m.submodules.reset = cdc.ResetSynchronizer(~pll.locked | button.i, domain="reset")
        # The core's reset reaches nearly every flip-flop (30k LSR inputs): on a global
        # network it takes no fabric routing (as fabric, it was the most congested net).
        m.submodules.reset_global = Instance("DCCA", i_CLKI=ResetSignal("reset"), i_CE=1,
                                             o_CLKO=ResetSignal("sync"))

        pins = platform.request("eth_rgmii", 0, dir="-")
        m.submodules.phy_reset = phy_reset = io.Buffer("o", pins.rst)
        m.submodules.mdc = mdc = io.Buffer("o", pins.mdc)
        m.submodules.mdio = mdio = io.Buffer("io", pins.mdio)
        m.d.comb += phy_reset.o.eq(0)

        m.submodules.core = core = BoardCore(identity=self.identity, top=self.top, pins=pins,
                                             core_mhz=self.pll.core_mhz)
        m.d.comb += [core.clk125.eq(pll.clk125), core.clk125_90.eq(pll.clk125_90),
                     core.bus.r_stb.eq(0), core.bus.w_stb.eq(0),
                     mdc.o.eq(core.mdc), mdio.o.eq(core.mdio_o), mdio.oe.eq(core.mdio_oe),
                     core.mdio_i.eq(mdio.i)]

        leds = {n: platform.request("rgb_led", n, dir="-") for n in {n for n, _, _ in LEDS}}
        for n, colour, status in LEDS:
            m.submodules[f"led{n}{colour}"] = buffer = io.Buffer("o", getattr(leds[n], colour))
            m.d.comb += buffer.o.eq(getattr(core, status))
        return m
