"""The Arty A7-35T (XC7A35TICSG324-1L) build tree, for Vivado, prepared without running it.

The Arty's PHY (TI DP83848J) is 100 Mb/s MII, so the board top uses `MiiMac` (same client
ports as the RGMII MAC) in place of `Mac`. A PLLE2_BASE makes the core clock (50 MHz) and the
PHY's 25 MHz reference (``eth_clk25``, forwarded through an ODDR) from the 100 MHz oscillator.
`write_tree` writes Amaranth's build plan (Verilog, XDC constraints, the Vivado Tcl script and
``build_tickwire.sh``) both as files and as a deterministic zip archive, with a manifest giving
the design identity (the same two-step plan digest as the ECPIX-5's) and the parameters; run
``sh build_tickwire.sh`` there with Vivado on the PATH to get ``tickwire.bit``.
"""

import json
from pathlib import Path

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib import cdc, io

from tickwire.sim.toolchain import cache_dir

from .manifest import FORMAT, IDENTITY_SCHEME
from .plan import (
    CONTROL_PARAMETERS,
    control_token,
    identified_plan,
    register_map_json,
    token_digest,
    top_parameters,
)

BOARD = "arty"
NAME = "tickwire"
ARTY_PARAMETERS = {
    "symbols": 4, "locates": 256, "depth": 4, "visible": 2, "orders": 512, "ways": 4,
    "ref_bits": 36, "fifo_depth": 64,
    "feeds": 2, "filter_entries": 4, "notice_depth": 64,
    **CONTROL_PARAMETERS,
    "core_div": 16,     # PLLE2 VCO 800 MHz / 16 = 50 MHz
}


class ArtyTop(Elaboratable):
    """The Arty A7 top level: PLLE2, `BoardCore` with `MiiMac`, LEDs LD4..LD7: frame received
    in the last 0.17 s, armed, kill switch, heartbeat."""

    def __init__(self, *, identity=0, top=None, core_div=16):
        if not 8 <= core_div <= 128:
            raise ValueError(f"core_div {core_div} out of 8..128")
        self.identity, self.top, self.core_div = identity, dict(top or {}), core_div

    def elaborate(self, platform):
        from .board import BoardCore

        m = Module()
        m.submodules.clk100 = clk100 = io.Buffer("i", platform.request("clk100", 0, dir="-"))
        m.submodules.button = button = io.Buffer("i", platform.request("rst", 0, dir="-"))
        core_clk, ref_clk, feedback, locked = Signal(), Signal(), Signal(), Signal()
        m.submodules.pll = Instance(
            "PLLE2_BASE", p_CLKIN1_PERIOD=10.0, p_DIVCLK_DIVIDE=1, p_CLKFBOUT_MULT=8,
            p_CLKOUT0_DIVIDE=self.core_div, p_CLKOUT1_DIVIDE=32,
            i_CLKIN1=clk100.i, i_CLKFBIN=feedback, o_CLKFBOUT=feedback, i_RST=0, i_PWRDWN=0,
            o_CLKOUT0=core_clk, o_CLKOUT1=ref_clk, o_LOCKED=locked)
        m.domains.sync = ClockDomain()
        m.domains.eth_ref = ClockDomain(reset_less=True)
        m.d.comb += [ClockSignal("sync").eq(core_clk), ClockSignal("eth_ref").eq(ref_clk)]
        m.submodules.reset = cdc.ResetSynchronizer(~locked | button.i, domain="sync")

        m.submodules.eth_clk25 = clk25 = io.DDRBuffer(
            "o", platform.request("eth_clk25", 0, dir="-"), o_domain="eth_ref")
        m.d.comb += [clk25.o[0].eq(1), clk25.o[1].eq(0)]
        pins = platform.request("eth_mii", 0, dir="-")
        m.submodules.core = core = BoardCore(identity=self.identity, top=self.top, phy="mii")
        mii = core.mii
        for name, direction in (("rx_clk", "i"), ("rx_dv", "i"), ("rx_er", "i"),
                                ("rx_data", "i"), ("tx_clk", "i"), ("tx_en", "o"),
                                ("tx_data", "o"), ("rst", "o"), ("mdc", "o"), ("mdio", "io")):
            m.submodules[f"mii_{name}"] = buffer = io.Buffer(direction, getattr(pins, name))
            if direction == "i":
                m.d.comb += getattr(mii, name).eq(buffer.i)
            elif name in ("tx_en", "tx_data"):
                m.d.comb += buffer.o.eq(getattr(mii, name))
            # rst (inverted by the platform), mdc, mdio: left at 0 (PHY running, MDIO idle)
            if name.endswith("_clk"):
                platform.add_clock_constraint(buffer.i, 25e6)
        m.d.comb += [core.bus.r_stb.eq(0), core.bus.w_stb.eq(0)]
        for n, status in enumerate((core.activity, core.armed, core.killed, core.heartbeat)):
            m.submodules[f"led{n}"] = led = io.Buffer("o", platform.request("led", n, dir="-"))
            m.d.comb += led.o.eq(status)
        return m


def _platform():
    from amaranth_boards.arty_a7 import ArtyA7_35Platform
    return ArtyA7_35Platform()


def prepare(parameters, identity, token=bytes(16)):
    top = ArtyTop(identity=identity, top=top_parameters(parameters, token),
                  core_div=parameters["core_div"])
    return _platform().prepare(top, name=NAME, emit_src=False)


def write_tree(overrides=None, *, root=None):
    """Write the identified build plan to ``build/boards/arty/<identity>/`` (or `root`/<identity>):
    the files, ``tickwire-arty.zip`` (`BuildPlan.archive`) and ``manifest.json``."""
    parameters = {**ARTY_PARAMETERS, **dict(overrides or {})}
    top_parameters(parameters)
    base = cache_dir("boards", BOARD) if root is None else Path(root)
    token = control_token(base)
    identity, plan = identified_plan(lambda ident: prepare(parameters, ident, token))
    folder = base / f"{identity:016x}"
    plan.extract(folder)
    plan.archive(folder / f"{NAME}-{BOARD}.zip")
    manifest = {"format": FORMAT, "board": BOARD, "identity": f"{identity:016x}",
                "identity_scheme": IDENTITY_SCHEME, "parameters": parameters,
                "core_clock_mhz": 800 / parameters["core_div"],
                "bitstream": {"file": f"{NAME}.bit", "sha256": None},
                "fmax": {}, "utilisation": {}, "tools": {}, "build_seconds": None, "seed": None,
                "control_token_sha256": token_digest(token)}
    (folder / "registers.json").write_text(register_map_json(parameters))
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return folder
