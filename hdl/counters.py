"""Event counters: one 32-bit wrapping register per named reason, readable by the host."""

from amaranth.hdl import unsigned
from amaranth.lib import data


def counter_layout(names):
    return data.StructLayout({name: unsigned(32) for name in names})


def count(m, counters, name, condition):
    counter = getattr(counters, name)
    with m.If(condition):
        m.d.sync += counter.eq(counter + 1)
