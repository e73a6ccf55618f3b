"""Frames and checks shared by the feed-path tests."""

from tickwire.hdl.feed.events import NoticeKind
from tickwire.sim import itch
from tickwire.sim import moldudp64 as mold
from tickwire.sim.feed_model import FeedModel, FilterEntry
from tickwire.sim.feed_run import Frame
from tickwire.sim.frames import ipv4_checksum, udp_frame
from tickwire.sim.scenario import FEED_GROUP_A, FEED_GROUP_B, FEED_PORT

FILTERS = [FilterEntry(FEED_GROUP_A, FEED_PORT, 0, 0), FilterEntry(FEED_GROUP_B, FEED_PORT, 0, 1),
           FilterEntry(FEED_GROUP_A, FEED_PORT + 1, 1, 0)]
SESSION = b"TEST000001"
SEQUENCING = (NoticeKind.GAP.value, NoticeKind.END_OF_SESSION.value)


def add(ref, locate=1, side=b"B", shares=100, price=1_000_000):
    return itch.encode(b"A", stock_locate=locate, timestamp=ref, order_ref=ref, side=side,
                       shares=shares, stock=b"TEST", price=price)


def packet_frame(messages, sequence, *, session=SESSION, count=None, line=0, vlan=None,
                 options=0, port=FEED_PORT, bad=False, idle_after=6):
    payload = mold.encode_packet(session, sequence, messages, count=count)
    group = (FEED_GROUP_A, FEED_GROUP_B)[line]
    return Frame(udp_frame(payload, dst_ip=group, dst_port=port, vlan=vlan,
                           ip_options=b"\x01" * options), bad=bad, idle_after=idle_after)


def patch_ip(frame, offset, value, length=1, fix_checksum=True, ip_start=14):
    """Overwrite IP header bytes [offset, offset+length) and recompute the header checksum."""
    data = bytearray(frame.data)
    data[ip_start + offset:ip_start + offset + length] = value.to_bytes(length, "big")
    if fix_checksum:
        ihl = 4 * max(data[ip_start] & 0xF, 5)
        data[ip_start + 10:ip_start + 12] = b"\0\0"
        header = bytes(data[ip_start:ip_start + ihl])
        data[ip_start + 10:ip_start + 12] = ipv4_checksum(header).to_bytes(2, "big")
    return frame._replace(data=bytes(data))


def model_of(frames, filters=FILTERS, recover=0):
    model = FeedModel(filters)
    model.recover = [bool(recover >> f & 1) for f in range(model.feeds)]
    for frame in frames:
        model.receive_frame(frame.data, frame.bad)
    return model


def assert_matches_model(run, frames, filters=FILTERS, counters_before=None, recover=0):
    """The gateware's outputs equal the reference model's, stream by stream."""
    model = model_of(frames, filters, recover)
    assert run.events == model.events
    assert [n for n in run.notices if n["kind"] in SEQUENCING] == model.sequencing
    assert [n for n in run.notices if n["kind"] not in SEQUENCING] == model.control
    for group in ("udp", "mold", "itch"):
        counters = run.counters[group]
        if counters_before is not None:
            counters = {k: v - counters_before[group][k] for k, v in counters.items()}
        assert counters == dict(getattr(model, group)), group
    return model
