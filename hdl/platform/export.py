"""Exporting a `wiring.Component` to Verilog or RTLIL: the one place every flow goes through.

Amaranth 0.5's `convert()` refuses components whose signatures contain constant members (the
``ready`` of an always-ready stream, the ``valid`` of an always-valid one); these are left out
here. Port names are the member paths joined with ``__`` (``rx__payload``, ``events__valid``).
"""

from amaranth.back import rtlil, verilog
from amaranth.hdl import Const, ValueCastable
from amaranth.hdl._ir import PortDirection
from amaranth.lib import wiring


def component_ports(component):
    ports = {}
    for path, member, value in component.signature.flatten(component):
        if isinstance(value, ValueCastable):
            value = value.as_value()
        if isinstance(value, Const):
            continue
        direction = PortDirection.Input if member.flow == wiring.In else PortDirection.Output
        ports["__".join(map(str, path))] = (value, direction)
    return ports


def to_verilog(component, name):
    return verilog.convert(component, name=name, ports=component_ports(component),
                           emit_src=False)


def to_rtlil(component, name):
    return rtlil.convert(component, name=name, ports=component_ports(component), emit_src=False)
