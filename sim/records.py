"""Converting between Amaranth layouts and plain Python dicts (for models, tests and hosts)."""

import functools

from amaranth.hdl import Shape
from amaranth.lib import data


def _layout(shape):
    return shape if isinstance(shape, data.Layout) else data.Layout.cast(shape)


@functools.cache
def _fields(shape):
    """(name, offset, mask, nested layout or None) for each field of a layout."""
    out = []
    for name, field in _layout(shape):
        nested = field.shape if isinstance(field.shape, data.Layout) or (
            isinstance(field.shape, type) and issubclass(field.shape, data.Struct)) else None
        out.append((name, field.offset, (1 << field.width) - 1, nested))
    return tuple(out)


def unpack(shape, value):
    """An integer holding a struct's bits -> {field: int} (nested structs become dicts)."""
    out = {}
    for name, offset, mask, nested in _fields(shape):
        raw = (value >> offset) & mask
        out[name] = raw if nested is None else unpack(nested, raw)
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
