"""Event counters: one 32-bit wrapping register per named reason, readable by the host."""

from amaranth.hdl import Signal, unsigned
from amaranth.lib import data


def counter_layout(names):
    return data.StructLayout({name: unsigned(32) for name in names})


def count(m, counters, name, *conditions):
    """Count `conditions` into `counters.<name>` (each true condition adds one: events from
    different packets may meet in one cycle). Conditions are registered first, so that no
    decision logic drives a 32-bit adder in the same cycle: counters lag events by one cycle."""
    counter = getattr(counters, name)
    hits = [Signal(name=f"count_{name}") for _ in conditions]
    m.d.sync += [hit.eq(condition) for hit, condition in zip(hits, conditions, strict=True)]
    if len(hits) == 1:
        with m.If(hits[0]):
            m.d.sync += counter.eq(counter + 1)
    else:
        m.d.sync += counter.eq(counter + sum(hits))
