"""Building and running a cocotb/Verilator test of an Amaranth component.

The Verilog comes from `tickwire.hdl.platform.export`; the Verilator build is cached by a hash
of it (plus the Verilator and cocotb versions), and reused across test runs. A failing cocotb
test fails the caller (pytest or not): the results file is read and checked here.
"""

import os
import sys
from pathlib import Path

from tickwire.hdl.platform.export import to_verilog

from .toolchain import (
    VERILATOR_MAKE_VARIABLES,
    apply_verilator_env,
    cache_dir,
    digest,
    locked,
    verilator_version,
)

BUILD_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style"]


class CocotbFailure(AssertionError):
    pass


def run_cocotb(component, toplevel, test_module, *, module_dir, testcase=None, env=None):
    """Run the cocotb tests in `test_module` (a module in `module_dir`) against `component`."""
    import cocotb
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    apply_verilator_env()
    os.environ["MAKEFLAGS"] = " ".join(VERILATOR_MAKE_VARIABLES)
    verilog = to_verilog(component, toplevel)
    build_dir = cache_dir("cocotb", digest(verilog, verilator_version(), cocotb.__version__,
                                           BUILD_ARGS, VERILATOR_MAKE_VARIABLES))
    source = build_dir / f"{toplevel}.v"
    runner = get_runner("verilator")
    with locked(build_dir):
        if not (build_dir / "built").exists():
            source.write_text(verilog)
            runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=build_dir,
                         build_args=BUILD_ARGS, log_file=build_dir / "build.log")
            (build_dir / "built").touch()
        else:
            runner.build_dir = build_dir
    test_dir = Path(cache_dir("cocotb-runs", digest(toplevel, test_module, testcase, os.getpid())))
    if str(module_dir) not in sys.path:   # the runner passes sys.path on as PYTHONPATH
        sys.path.insert(0, str(module_dir))
    results = test_dir / "results.xml"
    results.unlink(missing_ok=True)
    try:
        runner.test(hdl_toplevel=toplevel, hdl_toplevel_lang="verilog", test_module=test_module,
                    testcase=testcase, build_dir=build_dir, test_dir=test_dir,
                    extra_env=dict(env or {}), results_xml=str(results),
                    log_file=test_dir / "test.log")
    except SystemExit:
        pass   # the runner exits on failures outside some pytest set-ups: judge by the results
    log = (test_dir / "test.log").read_text()[-6000:] if (test_dir / "test.log").exists() else ""
    if not results.exists():
        raise CocotbFailure(f"cocotb: the simulation of {test_module} ended abnormally\n{log}")
    total, failed = get_results(results)
    if total == 0 or failed:
        raise CocotbFailure(f"cocotb: {failed} of {total} tests failed in {test_module}\n{log}")
    return total
