"""Driving the feed path with frames and collecting what it produced, in any simulator.

`FeedRun` is what every harness returns (Amaranth's simulator here, Verilator in
`tickwire.sim.verilated`), so that tests and benchmarks compare them all with the reference
model the same way.
"""

from typing import NamedTuple

from tickwire.hdl.feed.events import BookEvent, FeedNotice
from tickwire.hdl.net import headers as h
from tickwire.hdl.net.mac import MacBeat
from tickwire.hdl.net.udp_rx import FilterEntry as FilterLayout

from .frames import beats
from .records import pack, unpack, width


class Frame(NamedTuple):
    data: bytes
    bad: bool = False
    idle_after: int = 0   # idle cycles after the frame (0 = back to back)


class FeedRun(NamedTuple):
    events: list          # BookEvent dicts, in order
    notices: list         # FeedNotice dicts, in order
    counters: dict        # {"udp": {...}, "mold": {...}, "itch": {...}, "notice_overflow": n}
    latencies: list       # per event: cycles from its message's last byte at rx to valid
    cycles: int           # cycles the frames took at rx (beats + idle)
    beats: int            # beats presented


def filters_value(entries, count=8):
    """The `filters` input of `FeedHandler` for a list of `feed_model.FilterEntry`."""
    if len(entries) > count:
        raise ValueError(f"{len(entries)} filter entries, the gateware holds {count}")
    size = width(FilterLayout)
    return sum(pack(FilterLayout, e._asdict() | {"enable": int(e.enable)}) << (i * size)
               for i, e in enumerate(entries))


def schedule(frames):
    """Per-cycle MacBeat values (None = idle), and for each frame its first cycle."""
    layout = MacBeat.as_shape()
    at = {name: layout[name].offset for name in ("keep", "first", "last", "bad")}
    cycles, starts = [], []
    for frame in frames:
        starts.append(len(cycles))
        for data, keep, first, last, bad in beats(frame.data, frame.bad):
            cycles.append(data | keep << at["keep"] | first << at["first"]
                          | last << at["last"] | bad << at["bad"])
        cycles.extend([None] * frame.idle_after)
    return cycles, starts


def message_ends(frame):
    """(group, port, sequence, offset of the message's last byte) for each MoldUDP64 message a
    frame carries, parsed leniently; used only to time events, never to decide anything."""
    data = frame
    try:
        ip = h.ETHERNET_LENGTH
        if int.from_bytes(data[12:14], "big") == h.ETHERTYPE_VLAN:
            ip += h.VLAN_LENGTH
        udp = ip + 4 * (data[ip] & 0xF)
        group = int.from_bytes(data[ip + 16:ip + 20], "big")
        port = int.from_bytes(data[udp + 2:udp + 4], "big")
        payload = udp + h.UDP_LENGTH
        sequence = int.from_bytes(data[payload + 10:payload + 18], "big")
        position, out = payload + 20, []
        while position + 2 <= len(data):
            length = int.from_bytes(data[position:position + 2], "big")
            if length == 0 or position + 2 + length > len(data):
                break
            out.append((group, port, sequence + len(out), position + 1 + length))
            position += 2 + length
        return out
    except IndexError:
        return []


def event_latencies(frames, starts, filters, events):
    """For each event, cycles from its message's last byte at rx to the event's valid cycle."""
    feed_of = {(f.group, f.port): f.feed for f in filters if f.enable}
    presented = {}
    for frame, start in zip(frames, starts, strict=True):
        for group, port, sequence, end in message_ends(frame.data):
            feed = feed_of.get((group, port))
            if feed is not None:
                presented.setdefault((feed, sequence), []).append(start + end // 8)
    out = []
    for event, cycle in events:
        times = [t for t in presented.get((event["feed"], event["sequence"]), ()) if t <= cycle]
        out.append(cycle - max(times) if times else None)
    return out


def decode_outputs(event_words, notice_words, counters_value, counters_layout):
    return ([unpack(BookEvent, w) for w in event_words],
            [unpack(FeedNotice, w) for w in notice_words],
            unpack(counters_layout, counters_value))
