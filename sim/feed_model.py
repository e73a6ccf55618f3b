"""Reference model of the feed path: frame -> `BookEvent`s and `FeedNotice`s, with counters.

This is the executable specification the gateware is tested against. It mirrors the
gateware's decision points (when a drop reason becomes known) but is written from the
protocol documents, byte by byte, with no knowledge of beats except where the policy
depends on them (the bad-frame flag only reaches the beat it arrives in).
"""

from collections import Counter
from typing import NamedTuple

from tickwire.hdl.feed.events import BookEventKind, NoticeKind, Side
from tickwire.hdl.feed.itch import ITCH_COUNTERS
from tickwire.hdl.feed.itch import counter_name as itch_counter_name
from tickwire.hdl.feed.itch_format import BOOK_TYPES, MESSAGES, MIN_LENGTH
from tickwire.hdl.feed.moldudp64 import MOLD_COUNTERS
from tickwire.hdl.net import headers as h
from tickwire.hdl.net.udp_rx import UDP_COUNTERS

from . import moldudp64 as mold
from .frames import ones_complement_sum

BEAT_BYTES = 8



def notice(**fields):
    """A FeedNotice dict; fields a notice kind does not use are zero, as in the gateware."""
    return dict(kind=0, feed=0, code=0, locate=0, timestamp=0, sequence=0, value=0) | fields


class FilterEntry(NamedTuple):
    group: int
    port: int
    feed: int
    line: int  # 0 = A, 1 = B
    enable: bool = True


class Payload(NamedTuple):
    data: bytes
    frame_offset: int   # frame byte offset of the first payload byte
    feed: int
    line: int
    bad_beat: int | None  # payload byte offset where the bad-flagged last beat starts


def _be(frame, base, field):
    return int.from_bytes(frame[base + field.offset:base + field.offset + field.length], "big")


class FeedModel:
    def __init__(self, filters, feeds=4):
        self.filters = list(filters)
        self.feeds = feeds
        self.udp = Counter({k: 0 for k in UDP_COUNTERS})
        self.mold = Counter({k: 0 for k in MOLD_COUNTERS})
        self.itch = Counter({k: 0 for k in ITCH_COUNTERS})
        self.session = [None] * feeds
        self.ended = [False] * feeds
        self.expected = [1] * feeds
        self.recover = [False] * feeds     # host's recovery bit per feed
        self.recover_to = [0] * feeds      # sequence number after the last held packet
        self.holding = [False] * feeds     # a packet held, nothing delivered since
        self.events = []
        self.sequencing = []   # GAP / END_OF_SESSION notices, in order
        self.control = []      # notices from ITCH messages, in order

    def resync(self, feed):
        self.session[feed], self.ended[feed], self.expected[feed] = None, False, 1
        self.recover_to[feed], self.holding[feed] = 0, False

    # --- Ethernet / IPv4 / UDP -----------------------------------------------------------
    def receive_frame(self, frame, bad=False):
        payload = self._udp(bytes(frame), bad)
        if payload is not None:
            self._mold(payload)

    def _udp(self, frame, bad):
        c = self.udp
        c["frames"] += 1
        if bad:
            c["bad_frames"] += 1
        if len(frame) < h.ETHERNET_LENGTH:
            c["truncated"] += 1
            return None
        ip = h.ETHERNET_LENGTH
        ethertype = _be(frame, 0, h.ETHERNET["ethertype"])
        if ethertype == h.ETHERTYPE_VLAN:
            if len(frame) < h.ETHERNET_LENGTH + h.VLAN_LENGTH:
                c["truncated"] += 1
                return None
            ethertype = _be(frame, h.ETHERNET_LENGTH, h.VLAN["ethertype"])
            ip += h.VLAN_LENGTH
        if ethertype != h.ETHERTYPE_IPV4:
            c["not_ipv4"] += 1
            return None
        if len(frame) <= ip:
            c["truncated"] += 1
            return None
        version, ihl = frame[ip] >> 4, frame[ip] & 0xF
        udp = ip + 4 * max(ihl, 5)
        if len(frame) < udp + h.UDP_LENGTH:   # the decision needs the whole UDP header
            c["truncated"] += 1
            return None
        total = _be(frame, ip, h.IPV4["total_length"])
        if version != 4 or ihl < 5 or total < 4 * ihl + h.UDP_LENGTH:
            c["ip_header_errors"] += 1
            return None
        if ones_complement_sum(frame[ip:udp]) != 0xFFFF:
            c["ip_checksum_errors"] += 1
            return None
        fragment = _be(frame, ip, h.IPV4["flags_fragment"])
        if fragment & (h.IP_MORE_FRAGMENTS | h.IP_FRAGMENT_OFFSET_MASK):
            c["ip_fragments"] += 1
            return None
        if frame[ip + h.IPV4["protocol"].offset] != h.IP_PROTOCOL_UDP:
            c["not_udp"] += 1
            return None
        udp_length = _be(frame, udp, h.UDP["length"])
        if udp_length <= h.UDP_LENGTH or udp_length > total - 4 * ihl:
            c["udp_length_errors"] += 1
            return None
        group, port = _be(frame, ip, h.IPV4["dst"]), _be(frame, udp, h.UDP["dst_port"])
        entry = next((f for f in self.filters
                      if f.enable and f.group == group and f.port == port), None)
        if entry is None:
            c["unmatched"] += 1
            return None
        c["accepted"] += 1
        start, end = udp + h.UDP_LENGTH, udp + udp_length
        if len(frame) < end:
            c["truncated"] += 1
            end = len(frame)
        last_beat = (end - 1) // BEAT_BYTES
        bad_beat = None
        if bad and last_beat == (len(frame) - 1) // BEAT_BYTES:
            bad_beat = max(last_beat * BEAT_BYTES - start, 0)
        return Payload(frame[start:end], start, entry.feed, entry.line, bad_beat)

    # --- MoldUDP64 -----------------------------------------------------------------------
    def _mold(self, p):
        c, f, data = self.mold, p.feed, p.data
        c["packets"] += 1
        if len(data) < mold.HEADER_LENGTH:
            c["truncated"] += 1
            return
        if p.bad_beat is not None and mold.HEADER_LENGTH - 1 >= p.bad_beat:
            c["corrupt"] += 1
            return
        session, sequence = data[0:10], int.from_bytes(data[10:18], "big")
        count = int.from_bytes(data[18:20], "big")
        fresh = self.session[f] is None or (self.ended[f] and session != self.session[f])
        if not fresh and self.ended[f]:
            c["after_end"] += 1
            return
        if not fresh and session != self.session[f]:
            c["wrong_session"] += 1
            return
        base = 1 if fresh else self.expected[f]
        if fresh:
            self.recover_to[f] = 0
        recovering = not fresh and self.holding[f]
        self.session[f], self.ended[f] = session, False
        # Recovery on: a packet beyond the expected number is held (nothing delivered).
        held = sequence > base and self.recover[f]
        if not held:
            self.expected[f] = max(base, sequence)
        else:
            c["held_packets"] += 1
            self.recover_to[f] = sequence + (0 if count == mold.END_OF_SESSION_COUNT else count)
            self.holding[f] = True
        if sequence > base and not (held and recovering):
            c["gaps"] += 1
            self.sequencing.append(notice(kind=NoticeKind.GAP.value, feed=f, sequence=base,
                                        value=sequence - base))
        skip = max(0, base - sequence)
        wanted = count
        if held:
            wanted = 0 if count == mold.END_OF_SESSION_COUNT else count
            if count == mold.HEARTBEAT_COUNT:
                c["heartbeats"] += 1
        elif count == mold.END_OF_SESSION_COUNT:
            self.ended[f], wanted = True, 0
            c["end_of_session"] += 1
            self.sequencing.append(notice(kind=NoticeKind.END_OF_SESSION.value, feed=f,
                                        sequence=sequence))
        elif count == mold.HEARTBEAT_COUNT:
            c["heartbeats"] += 1
        elif skip >= count:
            c["duplicate_packets"] += 1
        position, k = mold.HEADER_LENGTH, 0
        while position < len(data):
            if position + 2 > len(data):
                c["truncated"] += 1
                return
            length = int.from_bytes(data[position:position + 2], "big")
            if length < MIN_LENGTH:
                c["bad_length"] += 1
                return
            end = position + 2 + length
            if end > len(data):
                c["truncated"] += 1
                return
            if k >= wanted:
                c["count_mismatch"] += 1
                return
            if p.bad_beat is not None and end - 1 >= p.bad_beat:
                c["corrupt"] += 1
                return
            if held:
                pass
            elif k >= skip:
                c["messages"] += 1
                self.holding[f] = False
                self.expected[f] = sequence + k + 1
                self._itch(data[position + 2:end], sequence + k, f)
            else:
                c["duplicate_messages"] += 1
            k, position = k + 1, end
        if k < wanted:
            c["count_mismatch"] += 1

    # --- ITCH 5.0 ------------------------------------------------------------------------
    def _itch(self, message, sequence, feed):
        spec = MESSAGES.get(message[0:1])
        if spec is None:
            self.itch["unknown"] += 1
            return
        values = None
        if len(message) == spec.length:
            values = {fl.name: int.from_bytes(message[fl.offset:fl.offset + fl.length], "big")
                      for fl in spec.fields}
        if values is None or (spec.type in b"AF" and values["side"] not in b"BS"):
            self.itch["bad_message"] += 1
            self.control.append(notice(kind=NoticeKind.BAD_MESSAGE.value, feed=feed,
                                     sequence=sequence, code=message[0], value=len(message)))
            return
        self.itch[itch_counter_name(spec.type)] += 1
        common = dict(feed=feed, sequence=sequence, locate=values["stock_locate"],
                      timestamp=values["timestamp"])
        t = spec.type
        if t in BOOK_TYPES:
            event = dict(kind=0, side=0, printable=0, shares=0, price=0, order_ref=0, new_ref=0,
                         **common)
            if t in b"AF":
                event.update(kind=BookEventKind.ADD.value, order_ref=values["order_ref"],
                             side=(Side.SELL if values["side"] == ord("S") else Side.BUY).value,
                             shares=values["shares"], price=values["price"])
            elif t == b"E":
                event.update(kind=BookEventKind.EXECUTE.value, order_ref=values["order_ref"],
                             shares=values["executed_shares"])
            elif t == b"C":
                event.update(kind=BookEventKind.EXECUTE_AT_PRICE.value,
                             order_ref=values["order_ref"], shares=values["executed_shares"],
                             price=values["execution_price"],
                             printable=int(values["printable"] == ord("Y")))
            elif t == b"X":
                event.update(kind=BookEventKind.CANCEL.value, order_ref=values["order_ref"],
                             shares=values["cancelled_shares"])
            elif t == b"D":
                event.update(kind=BookEventKind.DELETE.value, order_ref=values["order_ref"])
            elif t == b"U":
                event.update(kind=BookEventKind.REPLACE.value, order_ref=values["original_ref"],
                             new_ref=values["new_ref"], shares=values["shares"],
                             price=values["price"])
            self.events.append(event)
        elif t == b"S":
            self.control.append(notice(kind=NoticeKind.SYSTEM_EVENT.value,
                                     code=values["event_code"], **common))
        elif t == b"R":
            self.control.append(notice(kind=NoticeKind.STOCK_DIRECTORY.value, value=values["stock"],
                                     code=values["market_category"], **common))
        elif t == b"H":
            self.control.append(notice(kind=NoticeKind.TRADING_ACTION.value, value=values["stock"],
                                     code=values["trading_state"], **common))
