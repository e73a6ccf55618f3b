"""The order frame reference model against things tickwire did not write: scapy's view of the
Ethernet/IPv4/TCP layers (with its own checksums) and the OUCH 5.0 specification's table.

`scapy_view` and `check_order_frame` are shared with the gateware tests and the cocotb bench."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from tickwire.sim.ouch import (
    EncoderModel,
    Template,
    clordid,
    decode_enter_order,
    decode_soupbin,
    encode_enter_order,
    order_frame,
    soupbin_unsequenced,
)

#: OUCH 5.0 (April 2023) section 2.1, "Type O - Enter Order": (name, offset, length) as printed.
SPEC_ENTER_ORDER = [
    ("Type", 0, 1), ("UserRefNum", 1, 4), ("Side", 5, 1), ("Quantity", 6, 4),
    ("Symbol", 10, 8), ("Price", 18, 8), ("Time In Force", 26, 1), ("Display", 27, 1),
    ("Capacity", 28, 1), ("InterMarket Sweep Eligibility", 29, 1), ("CrossType", 30, 1),
    ("ClOrdID", 31, 14), ("Appendage Length", 45, 2), ("Optional Appendage", 47, None),
]


def scapy_view(frame):
    """scapy's reading of an order frame, with the IPv4 and TCP checksums scapy computes for
    the same headers and payload (the frame's own fields cleared and rebuilt)."""
    packet = Ether(frame)
    rebuilt = packet.copy()
    del rebuilt[IP].chksum
    del rebuilt[TCP].chksum
    again = Ether(bytes(rebuilt))
    return packet, again[IP].chksum, again[TCP].chksum


def check_order_frame(frame, template, symbol, *, side, quantity, price, tif, tcp_sequence,
                      user_ref_num, ip_id):
    """Everything a receiver would check, from scapy and the spec's table; returns the
    decoded Enter Order."""
    assert len(frame) == 104
    packet, ip_checksum, tcp_checksum = scapy_view(frame)
    eth, ip, tcp = packet[Ether], packet[IP], packet[TCP]
    assert eth.dst == _mac(template.dst_mac) and eth.src == _mac(template.src_mac)
    assert eth.type == 0x0800
    assert (ip.version, ip.ihl, ip.tos, ip.len) == (4, 5, 0, 90)
    assert ip.flags == "DF" and ip.frag == 0
    assert (ip.ttl, ip.proto, ip.id) == (template.ttl, 6, ip_id)
    assert ip.src == _ip(template.src_ip) and ip.dst == _ip(template.dst_ip)
    assert ip.chksum == ip_checksum, "IPv4 header checksum"
    assert (tcp.sport, tcp.dport) == (template.src_port, template.dst_port)
    assert (tcp.seq, tcp.ack, tcp.window) == (tcp_sequence, template.ack, template.window)
    assert tcp.dataofs == 5 and tcp.flags == "PA" and tcp.urgptr == 0
    assert tcp.chksum == tcp_checksum, "TCP checksum"
    payload = bytes(tcp.payload)
    assert len(payload) == 50
    [(kind, message)] = decode_soupbin(payload)
    assert kind == b"U"
    order = decode_enter_order(message)
    assert order["user_ref_num"] == user_ref_num
    assert order["side"] == (b"S" if side else b"B")
    assert order["quantity"] == quantity and order["price"] == price
    assert order["symbol"] == symbol.ljust(8, b" ")
    assert order["time_in_force"] == (b"3" if tif else b"0")
    assert order["display"] == template.display and order["capacity"] == template.capacity
    assert order["intermarket_sweep"] == template.intermarket_sweep
    assert order["cross_type"] == template.cross_type
    assert order["clordid"] == template.clordid_prefix + f"{user_ref_num:08X}".encode()
    assert order["appendage_length"] == 0 and order["appendage"] == b""
    return order


def _mac(value):
    return ":".join(f"{b:02x}" for b in value.to_bytes(6, "big"))


def _ip(value):
    return ".".join(str(b) for b in value.to_bytes(4, "big"))


def test_enter_order_layout_is_the_specifications():
    from tickwire.hdl.order.formats import ENTER_ORDER, ENTER_ORDER_LENGTH
    ours = [(field.offset, field.length) for field in ENTER_ORDER.values()]
    assert ours == [(offset, length) for _, offset, length in SPEC_ENTER_ORDER[:-1]]
    assert ENTER_ORDER_LENGTH == SPEC_ENTER_ORDER[-1][1]
    # contiguous: each field starts where the previous ended
    for (_, offset, length), (_, following, _) in itertools.pairwise(SPEC_ENTER_ORDER):
        assert offset + length == following


def test_enter_order_round_trips_and_pads_alpha_fields():
    message = encode_enter_order(user_ref_num=7, side="S", quantity=300, symbol="MSFT",
                                 price=4_123_400, time_in_force="3", display="Y",
                                 capacity="A", intermarket_sweep="N", cross_type="N",
                                 clordid="ABC")
    assert len(message) == 47 and message[:1] == b"O"
    decoded = decode_enter_order(message)
    assert decoded["symbol"] == b"MSFT    " and decoded["clordid"] == b"ABC" + b" " * 11
    assert decoded["price"] == 4_123_400 and decoded["quantity"] == 300
    with pytest.raises(ValueError):
        decode_enter_order(b"U" + message[1:])
    with pytest.raises(ValueError):
        decode_enter_order(message[:-1])


def test_soupbin_length_counts_type_and_message():
    packet = soupbin_unsequenced(b"x" * 47)
    assert packet[:3] == b"\x00\x30U"
    assert decode_soupbin(packet + packet) == [(b"U", b"x" * 47)] * 2


def test_clordid_rule_is_unique_and_fourteen_characters():
    ids = {clordid(b"TWIRE1", n) for n in range(1, 5000)}
    assert len(ids) == 4999 and all(len(i) == 14 and i.isalnum() for i in ids)
    assert clordid(b"AB", 0xBEEF) == b"AB    0000BEEF"


templates = st.builds(
    Template,
    dst_mac=st.integers(0, (1 << 48) - 1), src_mac=st.integers(0, (1 << 48) - 1),
    src_ip=st.integers(1, (1 << 32) - 1), dst_ip=st.integers(1, (1 << 32) - 1),
    src_port=st.integers(1, 65535), dst_port=st.integers(1, 65535),
    ttl=st.integers(1, 255), display=st.sampled_from([b"Y", b"N", b"A"]),
    capacity=st.sampled_from([b"A", b"P", b"R", b"O"]),
    intermarket_sweep=st.sampled_from([b"Y", b"N"]),
    cross_type=st.sampled_from([b"N", b"O", b"C"]),
    clordid_prefix=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=6, max_size=6)
    .map(str.encode),
    ack=st.integers(0, (1 << 32) - 1), window=st.integers(0, 65535))
symbols = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=8).map(str.encode)


@given(template=templates, symbol=symbols, side=st.integers(0, 1), tif=st.integers(0, 1),
       quantity=st.integers(0, (1 << 32) - 1), price=st.integers(0, (1 << 32) - 1),
       tcp_sequence=st.integers(0, (1 << 32) - 1), user_ref_num=st.integers(0, (1 << 32) - 1),
       ip_id=st.integers(0, 65535))
def test_model_frames_read_right_in_scapy_and_the_spec_table(template, symbol, **fields):
    frame = order_frame(template=template, symbol=symbol, **fields)
    check_order_frame(frame, template, symbol, **fields)


def test_model_session_state_advances_per_sent_order_only():
    template = Template()
    model = EncoderModel(template, {3: b"AAPL"}, tcp_sequence=0xFFFFFFE0, user_ref_num=9)
    intent = dict(slot=3, locate=1, side=0, tif=0, strategy=0, quantity=100, price=1_000_000,
                  sequence=5, arrival=0)
    flushed = model.flush(intent)
    assert not flushed.sent and flushed.length == 0
    sent = [model.send(intent) for _ in range(3)]
    assert [e.user_ref_num for _, e in sent] == [9, 10, 11]
    assert [e.tcp_sequence for _, e in sent] == [0xFFFFFFE0, 0x12, 0x44]   # wraps modulo 2**32
    for n, (frame, entry) in enumerate(sent):
        check_order_frame(frame, template, b"AAPL", side=0, quantity=100, price=1_000_000,
                          tif=0, tcp_sequence=entry.tcp_sequence,
                          user_ref_num=entry.user_ref_num, ip_id=n)
