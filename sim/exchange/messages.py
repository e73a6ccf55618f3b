"""OUCH 5.0 messages the exchange reads and writes, beside the Enter Order of `tickwire.sim.ouch`.

Tables from the Nasdaq OUCH 5.0 Order Entry Specification (April 2023): section 2.3 "Type X -
Cancel Order Request" (inbound), section 3.1 "Type S - System Event", 3.2 "Type A - Order
Accepted", 3.4 "Type C - Order Canceled", 3.6 "Type E - Order Executed", 3.8 "Type J -
Rejected" (outbound); Appendix C (cancel reasons), D (reject reasons), E (liquidity flags).
Numbers are big-endian binary, alpha fields left-justified and space padded (section 1.2).
Canceled and Rejected carry the appendage length only when the inbound message did; the
exchange always writes it (Enter Order always has one), empty.
"""

from tickwire.hdl.net.headers import Field

__all__ = ["ACCEPTED", "CANCEL_ORDER", "CANCELED", "EXECUTED", "MESSAGES", "OuchError",
           "REJECTED", "Reject", "SYSTEM_EVENT", "decode", "decode_cancel_order", "encode"]


class OuchError(ValueError):
    pass


class Reject:
    """Appendix D reject reasons the exchange gives."""
    INVALID_DISPLAY = 0x0003
    HALTED = 0x0007
    ISO_NOT_ALLOWED = 0x0008
    INVALID_SIDE = 0x0009
    OTHER = 0x000F
    INVALID_QUANTITY = 0x0013
    INVALID_CROSS_ORDER = 0x0014
    INVALID_SYMBOL = 0x0017
    INVALID_PRICE = 0x001D


#: Appendix C cancel reasons and Appendix E liquidity flags the exchange gives.
CANCEL_IOC, CANCEL_USER, CANCEL_CLOSED = b"I", b"U", b"E"
LIQUIDITY_ADDED, LIQUIDITY_REMOVED = b"A", b"R"
#: Section 2.1: quantity must be below 1,000,000; section 1.2: the largest limit price.
MAX_QUANTITY = 999_999
MAX_PRICE = 1_999_999_900


def _table(*fields):
    return {name: Field(offset, length) for name, offset, length in fields}


SYSTEM_EVENT = _table(("type", 0, 1), ("timestamp", 1, 8), ("event_code", 9, 1))
ACCEPTED = _table(
    ("type", 0, 1), ("timestamp", 1, 8), ("user_ref_num", 9, 4), ("side", 13, 1),
    ("quantity", 14, 4), ("symbol", 18, 8), ("price", 26, 8), ("time_in_force", 34, 1),
    ("display", 35, 1), ("order_reference_number", 36, 8), ("capacity", 44, 1),
    ("intermarket_sweep", 45, 1), ("cross_type", 46, 1), ("order_state", 47, 1),
    ("clordid", 48, 14), ("appendage_length", 62, 2))
EXECUTED = _table(
    ("type", 0, 1), ("timestamp", 1, 8), ("user_ref_num", 9, 4), ("quantity", 13, 4),
    ("price", 17, 8), ("liquidity_flag", 25, 1), ("match_number", 26, 8),
    ("appendage_length", 34, 2))
CANCELED = _table(
    ("type", 0, 1), ("timestamp", 1, 8), ("user_ref_num", 9, 4), ("quantity", 13, 4),
    ("reason", 17, 1), ("appendage_length", 18, 2))
REJECTED = _table(
    ("type", 0, 1), ("timestamp", 1, 8), ("user_ref_num", 9, 4), ("reason", 13, 2),
    ("clordid", 15, 14), ("appendage_length", 29, 2))
#: Inbound; the appendage length is optional on this message (section 2.3).
CANCEL_ORDER = _table(("type", 0, 1), ("user_ref_num", 1, 4), ("quantity", 5, 4),
                      ("appendage_length", 9, 2))

MESSAGES = {b"S": SYSTEM_EVENT, b"A": ACCEPTED, b"E": EXECUTED, b"C": CANCELED,
            b"J": REJECTED}
_ALPHA = {"type", "side", "symbol", "time_in_force", "display", "capacity",
          "intermarket_sweep", "cross_type", "order_state", "clordid", "event_code",
          "liquidity_flag", "reason"}
_NUMERIC_REASON = {b"J"}          # Rejected's reason is a 2-byte number, Canceled's a letter
_SIGNED = {"price"}


def _is_alpha(kind, name):
    return name in _ALPHA and not (name == "reason" and kind in _NUMERIC_REASON)


def _length(table):
    return max(f.offset + f.length for f in table.values())


def encode(kind, **values):
    """One outbound message of type `kind` (b"A", ...). Every field but ``type`` and
    ``appendage_length`` (written as 0) must be given; alpha values are str or bytes."""
    table = MESSAGES[kind]
    missing = set(table) - set(values) - {"type", "appendage_length"}
    extra = set(values) - set(table)
    if missing or extra:
        raise OuchError(f"OUCH {kind!r}: missing {sorted(missing)}, unknown {sorted(extra)}")
    out = bytearray(_length(table))
    out[0:1] = kind
    for name, value in values.items():
        field = table[name]
        if _is_alpha(kind, name):
            text = value.encode("ascii") if isinstance(value, str) else bytes(value)
            if len(text) > field.length:
                raise OuchError(f"{name}: {text!r} is longer than {field.length} bytes")
            raw = text.ljust(field.length, b" ")
        else:
            raw = int(value).to_bytes(field.length, "big", signed=name in _SIGNED)
        out[field.offset:field.offset + field.length] = raw
    return bytes(out)


def decode(message):
    """An outbound message's fields by name (alpha as bytes, numbers as ints)."""
    table = MESSAGES.get(bytes(message[0:1]))
    if table is None:
        raise OuchError(f"unknown OUCH outbound type {bytes(message[0:1])!r}")
    kind = bytes(message[0:1])
    if len(message) < _length(table):
        raise OuchError(f"OUCH {kind!r} cut off: {len(message)} bytes")
    out = {}
    for name, field in table.items():
        raw = bytes(message[field.offset:field.offset + field.length])
        out[name] = raw if _is_alpha(kind, name) else int.from_bytes(
            raw, "big", signed=name in _SIGNED)
    return out


def decode_cancel_order(message):
    """A Cancel Order Request: ``user_ref_num`` and ``quantity`` (the intended order size).
    Raises OuchError on a wrong length."""
    message = bytes(message)
    if message[0:1] != b"X" or len(message) < 9 or len(message) == 10:
        raise OuchError(f"Cancel Order Request of {len(message)} bytes")
    if len(message) > 9:
        appendage = int.from_bytes(message[9:11], "big")
        if len(message) != 11 + appendage:
            raise OuchError("Cancel Order appendage length does not match the message length")
    return {"user_ref_num": int.from_bytes(message[1:5], "big"),
            "quantity": int.from_bytes(message[5:9], "big")}
