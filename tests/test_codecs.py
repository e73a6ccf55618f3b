"""The Python codecs against independent implementations: itchfeed (ITCH 5.0) and scapy."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itch.messages import messages as itchfeed_messages
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from tickwire.hdl.feed.itch_format import MESSAGES
from tickwire.sim import itch
from tickwire.sim import moldudp64 as mold
from tickwire.sim.frames import ip, udp_frame


@st.composite
def itch_message(draw, types=tuple(MESSAGES)):
    spec = MESSAGES[draw(st.sampled_from(types))]
    values = {}
    for field in spec.fields[1:]:
        if field.kind in ("a", "c"):
            values[field.name] = draw(st.binary(min_size=field.length, max_size=field.length)
                                      .filter(lambda b: b.isascii()))
        else:
            values[field.name] = draw(st.integers(0, (1 << (8 * field.length)) - 1))
    return spec, values


@given(itch_message())
def test_itch_layout_matches_itchfeed(case):
    """Every field sits where itchfeed's own struct format says it does."""
    spec, values = case
    message = itch.encode(spec.type, **values)
    theirs = itchfeed_messages[spec.type]
    assert theirs.message_size == spec.length == len(message)
    unpacked = struct.unpack(theirs.message_format, message[1:])
    timestamp = values["timestamp"]
    ours = [values["stock_locate"], values["tracking_number"], timestamp >> 32,
            timestamp & 0xFFFFFFFF]
    ours += [values[f.name] for f in spec.fields[4:]]
    assert list(unpacked) == ours


@given(itch_message())
def test_itch_round_trip(case):
    spec, values = case
    assert itch.decode(itch.encode(spec.type, **values)) == {"message_type": spec.type, **values}


def test_itch_named_fields_agree_with_itchfeed():
    message = itch.encode(b"U", stock_locate=12, timestamp=34_200_000_000_123,
                          original_ref=77, new_ref=78, shares=300, price=1_234_500)
    theirs = itchfeed_messages[b"U"](message)
    assert (theirs.stock_locate, theirs.timestamp) == (12, 34_200_000_000_123)
    assert (theirs.order_reference_number, theirs.new_order_reference_number) == (77, 78)
    assert (theirs.shares, theirs.price) == (300, 1_234_500)


@pytest.mark.parametrize("call, error", [
    (lambda: itch.encode(b"Z"), "unknown ITCH message type"),
    (lambda: itch.encode(b"A", shares=1 << 32), "does not fit"),
    (lambda: itch.encode(b"A", stock=b"TOOLONGSYM"), "longer than 8"),
    (lambda: itch.encode(b"A", colour=1), "has no field"),
    (lambda: itch.decode(itch.encode(b"A")[:-1]), "must be 36 bytes"),
])
def test_itch_refuses_bad_input(call, error):
    with pytest.raises(itch.ItchError, match=error):
        call()


@given(st.lists(st.binary(min_size=1, max_size=60), max_size=20), st.integers(0, 2**64 - 1))
def test_mold_round_trip(messages, sequence):
    packet = mold.encode_packet("SESSION", sequence, messages)
    decoded = mold.decode_packet(packet)
    assert decoded == mold.MoldPacket(b"SESSION   ", sequence, len(messages), tuple(messages))


@pytest.mark.parametrize("payload, error", [
    (b"S" * 19, "header cut off"),
    (mold.encode_packet("S", 1, [b"abc"])[:-1], "runs past"),
    (mold.encode_packet("S", 1, [b"abc"], count=2), "fewer messages"),
    (mold.encode_packet("S", 1, [b"abc"], count=0), "after the declared"),
    (mold.encode_packet("S", 1, [b"abc"], count=2) + b"\x00", "length cut off"),
])
def test_mold_refuses_malformed(payload, error):
    with pytest.raises(ValueError, match=error):
        mold.decode_packet(payload)


@given(payload=st.binary(min_size=0, max_size=300), vlan=st.none() | st.integers(1, 4094),
       options=st.integers(0, 10), ident=st.integers(0, 65535))
def test_frame_builder_matches_scapy(payload, vlan, options, ident):
    frame = udp_frame(payload, dst_ip=ip("233.54.12.111"), dst_port=26477, src_port=40000,
                      src_ip=ip("10.0.0.1"), vlan=vlan, ip_options=b"\x01" * (4 * options),
                      identification=ident)
    eth = Ether(dst="01:00:5e:36:0c:6f", src="02:00:00:00:00:01")
    layer3 = IP(src="10.0.0.1", dst="233.54.12.111", id=ident, options=b"\x01" * (4 * options))
    packet = (eth / Dot1Q(vlan=vlan) / layer3 if vlan is not None else eth / layer3)
    theirs = bytes(packet / UDP(sport=40000, dport=26477) / Raw(payload)).ljust(60, b"\0")
    assert frame == theirs
