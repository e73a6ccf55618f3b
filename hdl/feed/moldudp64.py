"""MoldUDP64 receive: session and sequence tracking, A/B arbitration, message de-framing."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.counters import count, counter_layout
from tickwire.hdl.feed.events import FeedNotice, NoticeKind
from tickwire.hdl.feed.itch_format import DECODED_BYTES, MIN_LENGTH
from tickwire.hdl.net.mac import BEAT_BYTES
from tickwire.hdl.net.udp_rx import payload_signature
from tickwire.hdl.signals import wire

HEADER_LENGTH = 20          # session 10, sequence 8, count 2 (MoldUDP64 1.00, section 2)
END_OF_SESSION = 0xFFFF
MOLD_COUNTERS = ("packets", "messages", "heartbeats", "end_of_session", "gaps",
                 "duplicate_packets", "duplicate_messages", "wrong_session", "after_end",
                 "truncated", "bad_length", "count_mismatch", "corrupt")
_FRAMING_ERRORS = ("truncated", "bad_length", "count_mismatch", "corrupt")


class MoldMessage(data.Struct):
    """One de-framed message: its first `DECODED_BYTES` bytes (byte j at bits 8j..8j+7; bytes
    at or past `length` are not defined), its length and its MoldUDP64 sequence number."""
    data: 8 * DECODED_BYTES
    length: 16
    sequence: 64
    feed: 3
    line: 1


def message_signature():
    return stream.Signature(MoldMessage, always_ready=True)


def notice_signature():
    return stream.Signature(FeedNotice, always_ready=True)


class _Framing(enum.Enum, shape=3):
    IDLE = 0      # between packets, or the rest of a packet is being dropped
    HEADER = 1    # inside the 20-byte MoldUDP64 header
    BODY = 2      # inside a message
    NEXT = 3      # a message ended on a beat boundary: its successor's length is at lane 0
    LEN_LO = 4    # a length field straddles beats: its high byte is in `len_hi`


class MoldUdp64Receiver(wiring.Component):
    """De-frames MoldUDP64 packets into sequenced messages, one arbitrated stream per feed.

    Per feed: the session is learned from the first packet (or the first after an end of
    session, or after ``resync``); packets of another session are dropped. The next expected
    sequence number starts at 1. A packet's message ``k`` carries sequence ``seq + k``; it is
    delivered only if that number has not been delivered yet, so with lines A and B tagged to
    one feed, the first copy of every message wins and later copies are dropped, and a loss on
    one line that the other line covers is no gap. A packet whose first sequence number is
    beyond the expected one raises a `GAP` notice (first missing, count) and moves on; count 0
    is a heartbeat (it can reveal a gap too); count 0xFFFF ends the session (`END_OF_SESSION`).

    Nothing malformed is half-used: a message length below the shortest ITCH message (zero
    included), a length field or message running past the payload, more messages than the
    count or fewer, or a message ending in a beat flagged ``bad``: the packet is dropped from
    that point, counted, and the expected sequence number stays at the first message not
    delivered (so the other line's copy can still fill it).

    Messages may start at any byte lane. The de-framer handles one 64-bit beat per cycle; as a
    message and its length field take at least 14 bytes, at most one message ends per beat.

    Ports
    -----
    payload : In(PayloadBeat stream, always ready)
    messages : Out(MoldMessage stream, always ready)
    notices : Out(FeedNotice stream, always ready): GAP and END_OF_SESSION
    resync : In(feeds): forget the session and sequence of a feed (strobe per feed)
    next_sequence : Out(per feed, the next sequence number expected)
    counters : Out(one 32-bit counter per name in MOLD_COUNTERS)

    Latency: 1 cycle from the beat holding a message's last byte to the message.
    """

    def __init__(self, feeds=4):
        self.feeds = feeds
        super().__init__({
            "payload": In(payload_signature()),
            "messages": Out(message_signature()),
            "notices": Out(notice_signature()),
            "resync": In(feeds),
            "next_sequence": Out(data.ArrayLayout(64, feeds)),
            "counters": Out(counter_layout(MOLD_COUNTERS)),
        })

    def elaborate(self, platform):
        m = Module()
        beat, valid = self.payload.p, self.payload.valid
        lanes = [beat.data[8 * i:8 * i + 8] for i in range(BEAT_BYTES)]

        # Valid byte range of this beat: [first_lane, end_lane).
        first_lane = Signal(3)
        end_lane = Signal(4)
        for i in reversed(range(BEAT_BYTES)):
            with m.If(beat.keep[i]):
                m.d.comb += first_lane.eq(i)
        for i in range(BEAT_BYTES):
            with m.If(beat.keep[i]):
                m.d.comb += end_lane.eq(i + 1)

        # --- Framing state, with `first` restarting it -------------------------------------
        framing_reg = Signal(_Framing)
        boundary_reg = Signal(17)   # distance from this beat's lane 0 to the current item's end
        rotation_reg = Signal(3)    # lane of the current item's first byte
        item_beat_reg = Signal(3)   # index of this beat within the current item (saturates)
        len_hi = Signal(8)
        length_reg = Signal(16)
        index = Signal(16)          # messages completed in this packet

        framing = wire(m, Mux(beat.first, _Framing.HEADER, framing_reg), "framing", _Framing)
        boundary = wire(m, Mux(beat.first, first_lane + HEADER_LENGTH, boundary_reg), "boundary")
        rotation = wire(m, Mux(beat.first, first_lane, rotation_reg), "rotation")
        item_beat = wire(m, Mux(beat.first, 0, item_beat_reg), "item_beat")

        in_item = valid & ((framing == _Framing.HEADER) | (framing == _Framing.BODY))
        ends_here = in_item & (boundary <= BEAT_BYTES)
        complete = wire(m, ends_here & (boundary <= end_lane), "complete")
        header_done = complete & (framing == _Framing.HEADER)
        message_done = complete & (framing == _Framing.BODY)
        item_cut = in_item & beat.last & (boundary > end_lane)

        # The next length field: right after an item that ended in this beat, or at lane 0.
        at_next = valid & (framing == _Framing.NEXT)
        length_at = wire(m, Mux(at_next, 0, boundary), "length_at")
        length_due = complete | at_next
        clean_end = length_due & beat.last & (length_at >= end_lane)
        length_here = length_due & ~clean_end & (length_at <= 6) & (length_at + 1 < end_lane)
        length_split = length_due & ~clean_end & (length_at == 7) & ~beat.last
        length_cut = length_due & ~clean_end & ~length_here & ~length_split & beat.last
        next_at_boundary = complete & ~clean_end & (boundary == BEAT_BYTES)
        lo_here = valid & (framing == _Framing.LEN_LO)

        lane_at = Array(lanes)
        length = wire(m, Mux(lo_here, Cat(lanes[0], len_hi),
                             Cat(lane_at[(length_at + 1)[0:3]], lane_at[length_at[0:3]])),
                      "length")
        body_at = wire(m, Mux(lo_here, 1, length_at + 2), "body_at")
        new_item = (length_here | lo_here)
        length_bad = new_item & (length < MIN_LENGTH)
        starts_item = wire(m, new_item & ~length_bad, "starts_item")
        starts_now = starts_item & (body_at < BEAT_BYTES)
        new_rotation = body_at[0:3]

        # --- Message buffer: one register file, written through two rotators ---------------
        # The item ending in this beat is read out through `rotated_old`; a new item starting
        # in the same beat writes its first bytes through `rotated_new`.
        buffer = Signal(8 * DECODED_BYTES)
        rotated_old = [wire(m, lane_at[(k + rotation)[0:3]], f"rot_old{k}") for k in range(8)]
        rotated_new = [wire(m, lane_at[(k + new_rotation)[0:3]], f"rot_new{k}") for k in range(8)]
        item_bytes = []
        for j in range(DECODED_BYTES):
            word, k = divmod(j, BEAT_BYTES)
            old_write = in_item & Mux(k < BEAT_BYTES - rotation, item_beat == word,
                                      item_beat == word + 1)
            new_write = starts_now & (word == 0) & (k < BEAT_BYTES - new_rotation)
            stored = buffer[8 * j:8 * j + 8]
            current = wire(m, Mux(old_write, rotated_old[k], stored), f"item_byte{j}")
            item_bytes.append(current)
            m.d.sync += stored.eq(Mux(new_write, rotated_new[k], current))
        item = Cat(*item_bytes)

        def big_endian(offset, size):
            return Cat(*reversed(item_bytes[offset:offset + size]))

        # --- Packet header and sequencing decision ------------------------------------------
        hdr_session = Signal(80)
        hdr_sequence = Signal(64)
        hdr_count = Signal(16)
        feed = Signal(range(self.feeds))
        line = Signal()
        decide = Signal()            # the cycle after the header completed
        header_bad = header_done & beat.last & beat.bad
        m.d.sync += decide.eq(header_done & ~header_bad)
        count_now = big_endian(18, 2)
        with m.If(header_done):
            m.d.sync += [hdr_session.eq(item[0:80]), hdr_sequence.eq(big_endian(10, 8)),
                         hdr_count.eq(count_now)]
        with m.If(valid & beat.first):
            m.d.sync += [feed.eq(beat.feed), line.eq(beat.line)]

        session = Array(Signal(80, name=f"session{f}") for f in range(self.feeds))
        session_valid = Signal(self.feeds)
        ended = Signal(self.feeds)
        expected = Array(Signal(64, name=f"expected{f}", init=1) for f in range(self.feeds))
        for f in range(self.feeds):
            m.d.comb += self.next_sequence[f].eq(expected[f])

        same_session = hdr_session == session[feed]
        fresh = ~session_valid.bit_select(feed, 1) | (ended.bit_select(feed, 1) & ~same_session)
        session_ok = wire(m, fresh | (same_session & ~ended.bit_select(feed, 1)), "session_ok")
        base = wire(m, Mux(fresh, 1, expected[feed]), "base")
        behind = wire(m, base - hdr_sequence, "behind", 65)   # negative (bit 64): a gap
        gap = behind[64]
        skip = wire(m, Mux(gap, 0, Mux(behind[16:64].any(), 0xFFFF, behind[0:16])), "skip")
        end_of_session = hdr_count == END_OF_SESSION
        wanted_reg = Signal(16)

        packet_ok_reg = Signal()
        skip_reg = Signal(16)
        packet_ok = wire(m, Mux(decide, session_ok, packet_ok_reg), "packet_ok")
        first_new = wire(m, Mux(decide, skip, skip_reg), "first_new")
        wanted = wire(m, Mux(header_done, Mux(count_now == END_OF_SESSION, 0, count_now),
                             wanted_reg), "wanted")
        rejected = decide & ~session_ok

        with m.If(header_done):
            m.d.sync += wanted_reg.eq(wanted)
        with m.If(decide):
            m.d.sync += [packet_ok_reg.eq(session_ok), skip_reg.eq(skip)]
            with m.If(session_ok):
                m.d.sync += [session[feed].eq(hdr_session),
                             session_valid.bit_select(feed, 1).eq(1),
                             ended.bit_select(feed, 1).eq(end_of_session),
                             expected[feed].eq(Mux(gap, hdr_sequence, base))]
        count(m, self.counters, "wrong_session", rejected & ~ended.bit_select(feed, 1))
        count(m, self.counters, "after_end",
              rejected & ended.bit_select(feed, 1) & same_session)
        accepted = decide & session_ok
        count(m, self.counters, "gaps", accepted & gap)
        count(m, self.counters, "end_of_session", accepted & end_of_session)
        count(m, self.counters, "heartbeats", accepted & (hdr_count == 0))
        count(m, self.counters, "duplicate_packets",
              accepted & (hdr_count != 0) & ~end_of_session & (skip >= hdr_count))

        # --- Messages ------------------------------------------------------------------------
        message_sequence = Signal(64)
        with m.If(header_done):
            m.d.sync += message_sequence.eq(big_endian(10, 8))
        excess = message_done & (index >= wanted)
        messages_seen = Mux(header_done, 0, index) + message_done
        corrupt = complete & beat.last & beat.bad & (header_done | ~excess)
        delivered = message_done & ~excess & ~corrupt & packet_ok
        fresh_message = delivered & (index >= first_new)
        with m.If(message_done):
            m.d.sync += [index.eq(index + 1), message_sequence.eq(message_sequence + 1)]
        with m.If(header_done):
            m.d.sync += index.eq(0)
        with m.If(fresh_message):
            m.d.sync += expected[feed].eq(message_sequence + 1)
        count(m, self.counters, "messages", fresh_message)
        count(m, self.counters, "duplicate_messages", delivered & ~fresh_message)

        out = self.messages
        m.d.sync += out.valid.eq(fresh_message)
        with m.If(message_done):
            m.d.sync += [out.p.data.eq(item), out.p.length.eq(length_reg),
                         out.p.sequence.eq(message_sequence), out.p.feed.eq(feed),
                         out.p.line.eq(line)]

        # --- Resync (host) ---------------------------------------------------------------------
        for f in range(self.feeds):
            with m.If(self.resync[f]):
                m.d.sync += [session_valid[f].eq(0), ended[f].eq(0), expected[f].eq(1)]

        # --- Framing errors: counted one cycle late so that a packet refused by the session
        # check (decided the cycle after its header) counts as that refusal only.
        errors_now = {
            "truncated": item_cut | length_cut | (starts_item & beat.last),
            "bad_length": length_bad,
            "count_mismatch": excess | (clean_end & ~corrupt & (messages_seen != wanted)),
            "corrupt": corrupt,
        }
        errors = Signal(len(_FRAMING_ERRORS))
        m.d.sync += errors.eq(Cat(*(errors_now[n] & ~rejected for n in _FRAMING_ERRORS)))
        for i, name in enumerate(_FRAMING_ERRORS):
            count(m, self.counters, name, errors[i] & ~rejected)
        stop = Cat(*errors_now.values()).any() | rejected

        # --- Framing state update ------------------------------------------------------------
        with m.If(valid):
            m.d.sync += item_beat_reg.eq(Mux(item_beat == 7, 7, item_beat + 1))
            with m.If(stop | clean_end):
                m.d.sync += framing_reg.eq(_Framing.IDLE)
            with m.Elif(starts_item):
                m.d.sync += [framing_reg.eq(_Framing.BODY),
                             boundary_reg.eq(body_at + length - BEAT_BYTES),
                             rotation_reg.eq(new_rotation), length_reg.eq(length),
                             item_beat_reg.eq(Mux(starts_now, 1, 0))]
            with m.Elif(length_split):
                m.d.sync += [framing_reg.eq(_Framing.LEN_LO), len_hi.eq(lanes[7])]
            with m.Elif(next_at_boundary):
                m.d.sync += framing_reg.eq(_Framing.NEXT)
            with m.Elif(in_item):
                m.d.sync += [framing_reg.eq(framing), boundary_reg.eq(boundary - BEAT_BYTES),
                             rotation_reg.eq(rotation)]
        with m.If(rejected):
            m.d.sync += framing_reg.eq(_Framing.IDLE)
        count(m, self.counters, "packets", valid & beat.first)

        # --- Notices: GAP, then END_OF_SESSION (the cycle after, if both) ---------------------
        notice = self.notices
        eos_pending = Signal()
        m.d.sync += [notice.valid.eq(0), eos_pending.eq(0)]
        with m.If(accepted & gap):
            m.d.sync += [notice.valid.eq(1), notice.p.kind.eq(NoticeKind.GAP),
                         notice.p.feed.eq(feed), notice.p.sequence.eq(base),
                         notice.p.value.eq(hdr_sequence - base),
                         notice.p.code.eq(0), notice.p.locate.eq(0), notice.p.timestamp.eq(0),
                         eos_pending.eq(end_of_session)]
        with m.Elif((accepted & end_of_session) | eos_pending):
            m.d.sync += [notice.valid.eq(1), notice.p.kind.eq(NoticeKind.END_OF_SESSION),
                         notice.p.feed.eq(feed), notice.p.sequence.eq(hdr_sequence),
                         notice.p.value.eq(0), notice.p.code.eq(0), notice.p.locate.eq(0),
                         notice.p.timestamp.eq(0)]
        return m
