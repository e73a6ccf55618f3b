"""ITCH 5.0 message codec derived from `tickwire.hdl.feed.itch_format.MESSAGES`."""

from tickwire.hdl.feed.itch_format import MESSAGES


class ItchError(ValueError):
    pass


def encode(message_type, **values):
    """Encode one ITCH 5.0 message. Unnamed fields are zero (numbers) or spaces (text)."""
    spec = MESSAGES.get(message_type)
    if spec is None:
        raise ItchError(f"unknown ITCH message type {message_type!r}")
    unknown = set(values) - {f.name for f in spec.fields}
    if unknown:
        raise ItchError(f"ITCH {message_type!r} has no field(s) {sorted(unknown)}")
    out = bytearray(spec.length)
    out[0:1] = message_type
    for field in spec.fields[1:]:
        value = values.get(field.name)
        span = slice(field.offset, field.offset + field.length)
        if field.kind in ("a", "c"):
            text = b" " * field.length if value is None else value
            if isinstance(text, str):
                text = text.encode("ascii")
            if len(text) > field.length:
                raise ItchError(f"{field.name}: {text!r} is longer than {field.length} bytes")
            out[span] = text.ljust(field.length, b" ")
        else:
            value = 0 if value is None else int(value)
            if not 0 <= value < 1 << (8 * field.length):
                raise ItchError(f"{field.name}: {value} does not fit in {field.length} bytes")
            out[span] = value.to_bytes(field.length, "big")
    return bytes(out)


def decode(message):
    """Decode one ITCH 5.0 message into a dict of its fields (text fields as bytes)."""
    spec = MESSAGES.get(bytes(message[0:1]))
    if spec is None:
        raise ItchError(f"unknown ITCH message type {bytes(message[0:1])!r}")
    if len(message) != spec.length:
        raise ItchError(f"ITCH {spec.type!r} must be {spec.length} bytes, got {len(message)}")
    result = {}
    for field in spec.fields:
        raw = bytes(message[field.offset:field.offset + field.length])
        result[field.name] = raw if field.kind in ("a", "c") else int.from_bytes(raw, "big")
    return result


def split_blocks(data):
    """Split a Nasdaq daily-file style stream of (2-byte length, message) blocks."""
    offset = 0
    while offset < len(data):
        if offset + 2 > len(data):
            raise ItchError(f"length field cut off at byte {offset}")
        length = int.from_bytes(data[offset:offset + 2], "big")
        if length == 0 or offset + 2 + length > len(data):
            raise ItchError(f"bad block length {length} at byte {offset}")
        yield bytes(data[offset + 2:offset + 2 + length])
        offset += 2 + length
