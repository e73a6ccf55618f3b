"""The exchange's OUCH 5.0 messages against the specification's field tables, transcribed
here from the Nasdaq OUCH 5.0 Order Entry Specification (April 2023): 2.3 Cancel Order
Request, 3.1 System Event, 3.2 Order Accepted, 3.4 Order Canceled, 3.6 Order Executed,
3.8 Rejected. Each row: name, offset, length, type ("a" alpha, "u" unsigned, "p" price)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickwire.sim.exchange import messages as m

SPEC = {
    b"S": [("type", 0, 1, "a"), ("timestamp", 1, 8, "u"), ("event_code", 9, 1, "a")],
    b"A": [("type", 0, 1, "a"), ("timestamp", 1, 8, "u"), ("user_ref_num", 9, 4, "u"),
           ("side", 13, 1, "a"), ("quantity", 14, 4, "u"), ("symbol", 18, 8, "a"),
           ("price", 26, 8, "p"), ("time_in_force", 34, 1, "a"), ("display", 35, 1, "a"),
           ("order_reference_number", 36, 8, "u"), ("capacity", 44, 1, "a"),
           ("intermarket_sweep", 45, 1, "a"), ("cross_type", 46, 1, "a"),
           ("order_state", 47, 1, "a"), ("clordid", 48, 14, "a"),
           ("appendage_length", 62, 2, "u")],
    b"E": [("type", 0, 1, "a"), ("timestamp", 1, 8, "u"), ("user_ref_num", 9, 4, "u"),
           ("quantity", 13, 4, "u"), ("price", 17, 8, "p"), ("liquidity_flag", 25, 1, "a"),
           ("match_number", 26, 8, "u"), ("appendage_length", 34, 2, "u")],
    b"C": [("type", 0, 1, "a"), ("timestamp", 1, 8, "u"), ("user_ref_num", 9, 4, "u"),
           ("quantity", 13, 4, "u"), ("reason", 17, 1, "a"), ("appendage_length", 18, 2, "u")],
    b"J": [("type", 0, 1, "a"), ("timestamp", 1, 8, "u"), ("user_ref_num", 9, 4, "u"),
           ("reason", 13, 2, "u"), ("clordid", 15, 14, "a"), ("appendage_length", 29, 2, "u")],
}
LENGTHS = {b"S": 10, b"A": 64, b"E": 36, b"C": 20, b"J": 31}


@st.composite
def outbound(draw):
    kind = draw(st.sampled_from(sorted(SPEC)))
    values = {}
    for name, _, length, kind_ in SPEC[kind][1:]:
        if name == "appendage_length":
            continue
        if kind_ == "a":
            values[name] = draw(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1,
                                        max_size=length))
        elif kind_ == "p":
            values[name] = draw(st.integers(-(2**63), 2**63 - 1))
        else:
            values[name] = draw(st.integers(0, 2 ** (8 * length) - 1))
    return kind, values


@given(outbound())
def test_outbound_layout_matches_the_spec_table(case):
    kind, values = case
    message = m.encode(kind, **values)
    assert len(message) == LENGTHS[kind]
    for name, offset, length, type_ in SPEC[kind]:
        raw = message[offset:offset + length]
        if name == "type":
            assert raw == kind
        elif name == "appendage_length":
            assert raw == bytes(2)
        elif type_ == "a":
            assert raw == values[name].encode().ljust(length, b" ")
        else:
            assert int.from_bytes(raw, "big", signed=type_ == "p") == values[name]
    decoded = m.decode(message)
    assert {k: (v.decode().rstrip() if isinstance(v, bytes) else v)
            for k, v in decoded.items() if k not in ("type", "appendage_length")} == values


def test_cancel_order_request():
    body = b"X" + (7).to_bytes(4, "big") + (300).to_bytes(4, "big")
    assert m.decode_cancel_order(body) == {"user_ref_num": 7, "quantity": 300}
    assert m.decode_cancel_order(body + bytes(2)) == {"user_ref_num": 7, "quantity": 300}
    # A UserRefIdx TagValue appendage (Appendix B: length 2, tag 28, value 1).
    assert m.decode_cancel_order(body + b"\x00\x03" + bytes([2, 28, 1]))["quantity"] == 300


@pytest.mark.parametrize("message", [
    b"X" + bytes(7),                    # cut off
    b"X" + bytes(9),                    # half an appendage length
    b"X" + bytes(8) + b"\x00\x05\x00",  # appendage shorter than declared
    b"Y" + bytes(8),                    # not a cancel
])
def test_cancel_order_request_refused(message):
    with pytest.raises(m.OuchError):
        m.decode_cancel_order(message)


@pytest.mark.parametrize("call, error", [
    (lambda: m.encode(b"C", timestamp=0, user_ref_num=1, quantity=1), "missing"),
    (lambda: m.encode(b"S", timestamp=0, event_code="S", colour=1), "unknown"),
    (lambda: m.encode(b"J", timestamp=0, user_ref_num=1, reason=1, clordid="X" * 15), "longer"),
    (lambda: m.decode(b"Q" + bytes(20)), "unknown OUCH outbound type"),
    (lambda: m.decode(b"A" + bytes(20)), "cut off"),
])
def test_bad_input_is_refused(call, error):
    with pytest.raises(m.OuchError, match=error):
        call()
