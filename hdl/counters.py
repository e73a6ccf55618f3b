"""Event counters: one 32-bit wrapping register per named reason, readable by the host."""

from amaranth.hdl import Signal, unsigned
from amaranth.lib import data


def counter_layout(names):
    return data.StructLayout({name: unsigned(32) for name in names})


def count(m, counters, name, condition):
    """Count `condition` into `counters.<name>`. The condition is registered first, so that no
    decision logic drives a 32-bit adder in the same cycle: counters lag events by one cycle."""
    counter = getattr(counters, name)
    hit = Signal(name=f"count_{name}")
    m.d.sync += hit.eq(condition)
    with m.If(hit):
        m.d.sync += counter.eq(counter + 1)
