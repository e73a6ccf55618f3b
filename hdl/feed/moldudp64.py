"""MoldUDP64 receive: session and sequence tracking, A/B arbitration, message de-framing."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.counters import count, counter_layout
from tickwire.hdl.feed.events import FeedNotice, NoticeKind
from tickwire.hdl.feed.itch_format import DECODED_BYTES, MIN_LENGTH
from tickwire.hdl.net.mac import BEAT_BYTES
from tickwire.hdl.net.udp_rx import payload_signature, verdict_signature
from tickwire.hdl.signals import wire

HEADER_LENGTH = 20          # session 10, sequence 8, count 2 (MoldUDP64 1.00, section 2)
END_OF_SESSION = 0xFFFF
MOLD_COUNTERS = ("packets", "messages", "heartbeats", "end_of_session", "gaps",
                 "duplicate_packets", "duplicate_messages", "wrong_session", "after_end",
                 "truncated", "bad_length", "count_mismatch", "corrupt")
_FRAMING_ERRORS = ("truncated", "bad_length", "count_mismatch", "corrupt")   # order of `errors_now`


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
    IDLE = 0      # between packets
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
            "verdict": In(verdict_signature()),
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
        lane_at = Array(lanes)
        first = valid & beat.first

        first_lane = beat.first_lane    # the payload's first byte, on its first beat

        # --- Framing ---------------------------------------------------------------------------
        # Where the current item ends and where the next length field starts are known a beat
        # ahead and kept one-hot, so that each beat only ANDs them with its valid lanes.
        framing_reg = Signal(_Framing)
        boundary_reg = Signal(17)   # distance from this beat's lane 0 to the current item's end
        ends_reg = Signal()         # the current item's last byte is in this beat...
        last_hot = Signal(8)        # ...at this lane (one-hot)
        at_hot = Signal(9)          # the next length field starts at this lane (8 = next beat)
        body_at_reg = Signal(4)     # lane of the next message's first byte (8, 9: next beat)
        rotation_reg = Signal(3)    # lane of the current item's first byte
        item_beat_reg = Signal(3)   # index of this beat within the current item (saturates)
        len_hi = Signal(8)
        length_reg = Signal(16)
        index = Signal(16)          # messages completed in this packet
        dropped = Signal()          # an error dropped the rest of this packet

        framing = wire(m, Mux(beat.first, _Framing.HEADER, framing_reg), "framing", _Framing)
        rotation = wire(m, Mux(beat.first, first_lane, rotation_reg), "rotation")
        item_beat = wire(m, Mux(beat.first, 0, item_beat_reg), "item_beat")
        later = valid & ~beat.first
        in_item = valid & ((framing == _Framing.HEADER) | (framing == _Framing.BODY))
        ends = later & ((framing_reg == _Framing.HEADER) | (framing_reg == _Framing.BODY)) \
            & ends_reg
        complete = wire(m, ends & (last_hot & beat.keep).any(), "complete")
        header_done = complete & (framing_reg == _Framing.HEADER)
        message_done = complete & (framing_reg == _Framing.BODY)
        item_cut = in_item & beat.last & ~complete

        # The next length field: right after an item that ended in this beat, or at lane 0.
        at_next = later & (framing_reg == _Framing.NEXT)
        length_due = complete | at_next
        starts_present = (at_hot[0:8] & beat.keep).any()
        both_present = Cat(*(at_hot[q] & beat.keep[q + 1] for q in range(7))).any()
        clean_end = length_due & beat.last & ~starts_present
        length_here = length_due & both_present
        length_split = length_due & at_hot[7] & ~beat.last
        length_cut = length_due & beat.last & starts_present & ~both_present
        next_at_boundary = complete & at_hot[8] & ~beat.last
        lo_here = later & (framing_reg == _Framing.LEN_LO)

        field_hi = Signal(8)
        field_lo = Signal(8)
        for q in range(7):
            with m.If(at_hot[q]):
                m.d.comb += [field_hi.eq(lanes[q]), field_lo.eq(lanes[q + 1])]
        length = wire(m, Mux(lo_here, Cat(lanes[0], len_hi), Cat(field_lo, field_hi)), "length")
        body_at = wire(m, Mux(lo_here, 1, body_at_reg), "body_at", 4)
        new_item = length_here | lo_here
        length_bad = new_item & (length[4:] == 0) & (length[0:4] < MIN_LENGTH)
        # The framing follows every length field, good or bad: after an error the packet is
        # `dropped` (nothing more is delivered or counted) and the framing's state is unused
        # until the next packet restarts it, so no error check sits on the framing's path.
        writes_new = wire(m, new_item & (body_at < BEAT_BYTES), "writes_new")
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
            new_write = writes_new & (word == 0) & (k < BEAT_BYTES - new_rotation)
            stored = buffer[8 * j:8 * j + 8]
            current = wire(m, Mux(old_write, rotated_old[k], stored), f"item_byte{j}")
            item_bytes.append(current)
            m.d.sync += stored.eq(Mux(new_write, rotated_new[k], current))
        item = Cat(*item_bytes)

        def big_endian(offset, size):
            return Cat(*reversed(item_bytes[offset:offset + size]))

        # --- The UDP verdict (always before this packet's header can complete) ---------------
        udp_known = Signal()
        udp_ok = Signal()
        feed = Signal(range(self.feeds))
        line = Signal()
        verdict = self.verdict
        with m.If(verdict.valid):
            m.d.sync += [udp_known.eq(1), udp_ok.eq(verdict.p.accept)]
            with m.If(verdict.p.accept):
                m.d.sync += [feed.eq(verdict.p.feed), line.eq(verdict.p.line)]
        with m.If(first):
            m.d.sync += [udp_known.eq(0), udp_ok.eq(0)]
        count(m, self.counters, "packets", verdict.valid & verdict.p.accept)

        # --- Packet header and the per-feed sequencing decision -------------------------------
        hdr_session = Signal(80)
        hdr_sequence = Signal(64)
        hdr_count = Signal(16)
        decide = Signal()               # the cycle after the header completed
        header_bad = header_done & beat.last & beat.bad
        m.d.sync += decide.eq(header_done & ~header_bad)
        count_now = big_endian(18, 2)
        with m.If(header_done):
            m.d.sync += [hdr_session.eq(item[0:80]), hdr_sequence.eq(big_endian(10, 8)),
                         hdr_count.eq(count_now)]

        session = Array(Signal(80, name=f"session{f}") for f in range(self.feeds))
        session_valid = Signal(self.feeds)
        ended = Signal(self.feeds)
        expected = Array(Signal(64, name=f"expected{f}", init=1) for f in range(self.feeds))
        for f in range(self.feeds):
            m.d.comb += self.next_sequence[f].eq(expected[f])
        current = Signal(64)            # expected[feed] for the packet in flight
        with m.If(verdict.valid & verdict.p.accept):
            m.d.sync += current.eq(expected[verdict.p.feed])

        # The feed's session state, copied when the verdict names the feed.
        feed_known = Signal()
        feed_ended = Signal()
        with m.If(verdict.valid & verdict.p.accept):
            m.d.sync += [feed_known.eq(session_valid.bit_select(verdict.p.feed, 1)),
                         feed_ended.eq(ended.bit_select(verdict.p.feed, 1))]
        # The session bytes (0-9) complete at least one beat before the header does, so they
        # are compared, from the buffer, with every feed's session the cycle before the decision.
        stored_session = buffer[0:80]
        same_by_feed = Signal(self.feeds)
        m.d.sync += same_by_feed.eq(Cat(*(stored_session == session[f]
                                          for f in range(self.feeds))))
        same_session = wire(m, same_by_feed.bit_select(feed, 1), "same_session")
        fresh = wire(m, ~feed_known | (feed_ended & ~same_session), "fresh")
        session_ok = wire(m, udp_ok & (fresh | (same_session & ~feed_ended)), "session_ok")
        end_of_session = hdr_count == END_OF_SESSION
        accepted = decide & session_ok
        rejected = decide & udp_ok & ~session_ok
        with m.If(accepted):
            m.d.sync += [session[feed].eq(hdr_session),
                         session_valid.bit_select(feed, 1).eq(1),
                         ended.bit_select(feed, 1).eq(end_of_session)]
            with m.If(fresh):
                m.d.sync += current.eq(1)
        count(m, self.counters, "wrong_session", rejected & ~feed_ended)
        count(m, self.counters, "after_end", rejected & feed_ended & same_session)

        packet_ok = Signal()            # passed UDP and session checks (from decide + 1)
        with m.If(decide):
            m.d.sync += packet_ok.eq(session_ok)
        with m.If(first):
            m.d.sync += packet_ok.eq(0)

        # The sequencing outcome, one cycle after the decision, from registers: gap, notices,
        # counters, and moving `current` up to the packet's first sequence number on a gap
        # (unless the packet already delivered its first message in the decision cycle).
        settled = Signal()
        base = Signal(64)
        last_sequence = Signal(65)
        m.d.sync += [settled.eq(accepted), base.eq(Mux(fresh, 1, current)),
                     last_sequence.eq(hdr_sequence + hdr_count)]
        gap = wire(m, hdr_sequence > base, "gap")
        delivered_any = Signal()
        with m.If(settled & gap & ~delivered_any):
            m.d.sync += current.eq(hdr_sequence)
        count(m, self.counters, "gaps", settled & gap)
        count(m, self.counters, "end_of_session", settled & end_of_session)
        count(m, self.counters, "heartbeats", settled & (hdr_count == 0))
        count(m, self.counters, "duplicate_packets", settled & (hdr_count != 0)
              & ~end_of_session & (last_sequence <= base))

        # --- Messages --------------------------------------------------------------------------
        wanted_reg = Signal(16)
        wanted = wire(m, Mux(header_done, Mux(count_now == END_OF_SESSION, 0, count_now),
                             wanted_reg), "wanted")
        with m.If(header_done):
            m.d.sync += wanted_reg.eq(wanted)
        message_sequence = Signal(64)
        with m.If(header_done):
            m.d.sync += message_sequence.eq(big_endian(10, 8))
        excess = message_done & (index >= wanted_reg)   # no message completes with the header
        messages_seen = Mux(header_done, 0, index) + message_done
        corrupt = complete & beat.last & beat.bad & (header_done | ~excess)
        usable = wire(m, message_done & ~excess & ~corrupt & ~dropped
                      & Mux(decide, session_ok, packet_ok), "usable")
        # Delivery. After the decision, `current` is the next sequence number to deliver, so an
        # equality suffices. A message can complete in the decision cycle itself only when the
        # header ended in lane 0 or 1 (payload starting at lane 6), and then the header's
        # sequence number was stored a beat earlier: its comparison is made from the stored
        # bytes, from registers, the cycle before.
        stored_sequence = Cat(*reversed([buffer[8 * j:8 * j + 8] for j in range(10, 18)]))
        stored_not_behind = Signal()
        m.d.sync += stored_not_behind.eq(stored_sequence >= current)
        # The cycle after, `current` is the packet's base: a first message compares by
        # magnitude (it may be ahead, on a gap); every later one by equality.
        not_seen = wire(m, Mux(decide, Mux(fresh, message_sequence != 0, stored_not_behind),
                               Mux(settled & (index == 0), message_sequence >= current,
                                   message_sequence == current)), "not_seen")
        fresh_message = wire(m, usable & not_seen, "fresh_message")
        with m.If(message_done):
            m.d.sync += [index.eq(index + 1), message_sequence.eq(message_sequence + 1)]
        with m.If(header_done):
            m.d.sync += index.eq(0)
        with m.If(fresh_message):
            m.d.sync += [current.eq(message_sequence + 1), delivered_any.eq(1)]
        with m.If(first):
            m.d.sync += delivered_any.eq(0)
        # `current` is the working copy; the feed's entry follows it a cycle later (the next
        # packet of any feed loads its copy at its verdict, many cycles after).
        write_back = Signal()
        m.d.sync += write_back.eq(accepted | settled | fresh_message)
        with m.If(write_back):
            m.d.sync += expected[feed].eq(current)
        count(m, self.counters, "messages", fresh_message)
        count(m, self.counters, "duplicate_messages", usable & ~not_seen)

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

        # --- Framing errors: held until the packet's fate is known, so that a packet refused
        # by the UDP verdict or the session check counts as that refusal only.
        errors_now = Cat(item_cut | length_cut | (new_item & beat.last), length_bad, excess,
                         corrupt)
        errors = Signal(len(_FRAMING_ERRORS))
        # A clean end with the wrong number of messages is checked a cycle later, from
        # registers (the header's count may have arrived in the same beat, through the rotator).
        clean_end_q = Signal()
        seen_q = Signal(17)
        live = ~dropped | first
        m.d.sync += [errors.eq(Mux(live, errors_now, 0)),
                     clean_end_q.eq(clean_end & ~corrupt & live), seen_q.eq(messages_seen)]
        count_short = clean_end_q & (seen_q != wanted_reg)
        errors = errors | Cat(Const(0, 2), count_short, Const(0, 1))
        with m.If(valid & errors_now.any()):
            m.d.sync += dropped.eq(1)
        pending = Signal(len(_FRAMING_ERRORS))
        header_seen = Signal()
        decided = Signal()
        with m.If(header_done & ~header_bad):
            m.d.sync += header_seen.eq(1)
        with m.If(decide):
            m.d.sync += decided.eq(1)
        resolved = udp_known & (~udp_ok | ~header_seen | decided)
        countable = udp_ok & (~header_seen | packet_ok)
        with m.If(resolved):
            m.d.sync += pending.eq(errors)
        with m.Else():
            m.d.sync += pending.eq(pending | errors)
        for i, name in enumerate(_FRAMING_ERRORS):
            count(m, self.counters, name, resolved & countable & pending[i])
        with m.If(first):
            m.d.sync += [header_seen.eq(0), decided.eq(0), pending.eq(0), dropped.eq(0)]

        # --- Framing state update ------------------------------------------------------------
        # Next beat: for a new item, it ends next beat iff body_at + length <= 16 (no adder on
        # the path); otherwise from the registered distance.
        boundary = wire(m, Mux(beat.first, first_lane + HEADER_LENGTH, boundary_reg), "boundary")
        short_item = (length[5:] == 0) & (length[0:5] <= 2 * BEAT_BYTES - body_at)
        ends_next = wire(m, Mux(new_item, short_item, boundary <= 2 * BEAT_BYTES), "ends_next")
        end_at_next = wire(m, Mux(new_item, body_at + length[0:4], boundary[0:4])
                           - BEAT_BYTES, "end_at_next", 4)          # 1..8 when ends_next
        with m.If(valid):
            m.d.sync += [
                item_beat_reg.eq(Mux(item_beat == 7, 7, item_beat + 1)),
                boundary_reg.eq(Mux(new_item, body_at + length, boundary) - BEAT_BYTES),
                ends_reg.eq(ends_next),
                last_hot.eq(Cat(*(end_at_next == q + 1 for q in range(8)))),
                at_hot.eq(Mux(next_at_boundary, 1, Cat(Const(0, 1), *(end_at_next == q
                                                                  for q in range(1, 9))))),
                body_at_reg.eq(Mux(next_at_boundary, 2, end_at_next + 2)),
            ]
            with m.If(new_item):
                m.d.sync += [rotation_reg.eq(new_rotation), length_reg.eq(length),
                             item_beat_reg.eq(Mux(body_at < BEAT_BYTES, 1, 0))]
            with m.Else():
                m.d.sync += rotation_reg.eq(rotation)
            with m.If(length_split):
                m.d.sync += len_hi.eq(lanes[7])
            with m.If(clean_end):
                m.d.sync += framing_reg.eq(_Framing.IDLE)
            with m.Elif(new_item):
                m.d.sync += framing_reg.eq(_Framing.BODY)
            with m.Elif(length_split):
                m.d.sync += framing_reg.eq(_Framing.LEN_LO)
            with m.Elif(next_at_boundary):
                m.d.sync += framing_reg.eq(_Framing.NEXT)
            with m.Elif(in_item):
                m.d.sync += framing_reg.eq(framing)

        # --- Notices: GAP, then END_OF_SESSION (the cycle after, if both) ---------------------
        notice = self.notices
        eos_pending = Signal()
        m.d.sync += [notice.valid.eq(0), eos_pending.eq(0)]
        with m.If(settled & gap):
            m.d.sync += [notice.valid.eq(1), notice.p.eq(0),
                         notice.p.kind.eq(NoticeKind.GAP), notice.p.feed.eq(feed),
                         notice.p.sequence.eq(base), notice.p.value.eq(hdr_sequence - base),
                         eos_pending.eq(end_of_session)]
        with m.Elif((settled & end_of_session) | eos_pending):
            m.d.sync += [notice.valid.eq(1), notice.p.eq(0),
                         notice.p.kind.eq(NoticeKind.END_OF_SESSION), notice.p.feed.eq(feed),
                         notice.p.sequence.eq(hdr_sequence)]
        return m
