"""Small elaboration helpers."""

from amaranth.hdl import Signal


def wire(m, value, name, shape=None):
    """A named combinational signal driven by `value`.

    Amaranth does not share a Python expression used in several places: each use is expanded
    again. Naming a value once keeps the netlist linear and the waveforms readable."""
    signal = Signal(shape if shape is not None else value.shape(), name=name)
    m.d.comb += signal.eq(value)
    return signal
