"""Converting between Amaranth layouts and plain Python dicts (for models, tests and hosts)."""

from amaranth.hdl import Shape
from amaranth.lib import data


def _layout(shape):
    return shape if isinstance(shape, data.Layout) else data.Layout.cast(shape)


def unpack(shape, value):
    """An integer holding a struct's bits -> {field: int} (nested structs become dicts)."""
    out = {}
    for name, field in _layout(shape):
        raw = (value >> field.offset) & ((1 << field.width) - 1)
        if isinstance(field.shape, data.Layout) or (
                isinstance(field.shape, type) and issubclass(field.shape, data.Struct)):
            out[name] = unpack(field.shape, raw)
        else:
            out[name] = raw
    return out


def pack(shape, values):
    """{field: int or enum member} -> an integer; missing fields are zero."""
    layout, result = _layout(shape), 0
    for name, value in values.items():
        field = layout[name]
        if isinstance(value, dict):
            value = pack(field.shape, value)
        value = int(getattr(value, "value", value))
        if not 0 <= value < 1 << field.width:
            raise ValueError(f"{name}={value} does not fit in {field.width} bits")
        result |= value << field.offset
    return result


def width(shape):
    return Shape.cast(shape).width
