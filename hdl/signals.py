"""Small elaboration helpers."""

from amaranth.hdl import Signal


def wire(m, value, name, shape=None, *, keep=False):
    """A named combinational signal driven by `value`.

    Amaranth does not share a Python expression used in several places: each use is expanded
    again. Naming a value once keeps the netlist linear and the waveforms readable. With
    `keep`, yosys keeps the net: a boundary the LUT mapper cannot merge across."""
    signal = Signal(shape if shape is not None else value.shape(), name=name,
                    attrs={"keep": 1} if keep else {})
    m.d.comb += signal.eq(value)
    return signal


def or_all(values):
    """The OR of `values` (for AND-OR selects: each value already masked by its condition)."""
    result = values[0]
    for value in values[1:]:
        result = result | value
    return result
