"""The device: what the host talks to, `tickwire.hdl.top.TickToTrade` carrying its identity.

The design identity (``id.identity``) is the first 64 bits of a SHA-256 over everything the
device's netlist is made from: the source of every gateware module (``tickwire.hdl``), the
Amaranth version that elaborates it and the build parameters. Any change to the gateware, the
register map or the parameters changes it, and the host refuses a device whose identity is not
the one it was built against. (Hashing the sources rather than the netlist gives the same
guarantee without elaborating the design, which takes most of a minute for the default build.)

The device's Verilog is cached under that identity, so that tools and tests that simulate it
convert it once per gateware change, not once per process.
"""

import functools
import hashlib
from importlib.metadata import version
from pathlib import Path

from amaranth.hdl import Elaboratable

from .export import to_verilog

DEVICE_NAME = "tickwire_device"
HDL_ROOT = Path(__file__).resolve().parent.parent


def _top(**parameters):
    from tickwire.hdl.top import TickToTrade  # the top imports every block: import it late

    return TickToTrade(**parameters)


@functools.cache
def _source_digest():
    h = hashlib.sha256(f"amaranth {version('amaranth')}\n".encode())
    for path in sorted(HDL_ROOT.rglob("*.py")):
        h.update(str(path.relative_to(HDL_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.digest()


def _key(parameters):
    return tuple(sorted(parameters.items()))


@functools.cache
def _identity(key):
    h = hashlib.sha256(_source_digest() + repr(key).encode())
    return int.from_bytes(h.digest()[:8], "big")


def describe_only(component):
    """Mark a component built only to be described (its register map, its signature) as used,
    so that Amaranth does not warn that it was never elaborated."""
    seen, todo = set(), [component]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or not isinstance(obj, Elaboratable):
            continue
        seen.add(id(obj))
        obj._MustUse__used = True
        todo.extend(vars(obj).values())
    return component


def device_register_map(**parameters):
    """The register map of the device, without elaborating anything."""
    return describe_only(_top(**parameters)).register_map


def design_identity(**parameters):
    """The identity of the device built with these `TickToTrade` parameters."""
    return _identity(_key(parameters))


def build_device(**parameters):
    """The device top level carrying its own design identity."""
    return _top(identity=design_identity(**parameters), **parameters)


def device_verilog(**parameters):
    """(the device, its Verilog): the Verilog converted once per identity and cached."""
    from tickwire.sim.toolchain import cache_dir, locked

    device = build_device(**parameters)
    folder = cache_dir("verilog", f"{device.bank.identity:016x}")
    source = folder / f"{DEVICE_NAME}.v"
    with locked(folder):
        if not source.exists():
            source.write_text(to_verilog(device, DEVICE_NAME))
        else:
            describe_only(device)
    return device, source.read_text()
