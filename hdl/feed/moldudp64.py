"""MoldUDP64 receive: session and sequence tracking, A/B arbitration, message de-framing."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.counters import count, counter_layout
from tickwire.hdl.feed.events import FeedNotice, NoticeKind
from tickwire.hdl.feed.itch_format import DECODED_BYTES, MIN_LENGTH
from tickwire.hdl.net.mac import BEAT_BYTES
from tickwire.hdl.net.udp_rx import payload_signature, verdict_signature
from tickwire.hdl.signals import or_all, wire

HEADER_LENGTH = 20          # session 10, sequence 8, count 2 (MoldUDP64 1.00, section 2)
END_OF_SESSION = 0xFFFF
MOLD_COUNTERS = ("packets", "messages", "heartbeats", "end_of_session", "gaps",
                 "duplicate_packets", "duplicate_messages", "wrong_session", "after_end",
                 "truncated", "bad_length", "count_mismatch", "corrupt", "held_packets")
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
    IDLE = 0      # after reset (a packet's first beat starts HEADER whatever the state)
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

    Recovery (``recover`` bit of the feed set by the host): a packet beyond the expected
    sequence number is *held*: none of its messages is delivered, the expected number stays,
    the packet is counted in ``held_packets`` and its end (first sequence number + message
    count) is ``recover_to`` of the feed. The first held packet of an episode raises the
    `GAP` notice (first missing, count); until a message is delivered again, further held
    packets raise no notice. The host re-requests
    from ``next_sequence`` and presents the retransmitted packets at rx (their first sequence
    number is the expected one, so they are delivered like any packet) until ``next_sequence``
    reaches ``recover_to``; then the live lines are delivered again. A held end of session
    does not end the session (the host sees it again once recovered).

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
    recover : In(feeds): hold packets beyond a gap instead of skipping it (bit per feed)
    next_sequence : Out(per feed, the next sequence number expected)
    recover_to : Out(per feed, the sequence number after the last held packet)
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
            "recover": In(feeds),
            "next_sequence": Out(data.ArrayLayout(64, feeds)),
            "recover_to": Out(data.ArrayLayout(64, feeds)),
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
        at_by = Signal(7)           # at_by[i]: ...at one of lanes 0..i (whole field in the beat)
        body_at_reg = Signal(4)     # lane of the next message's first byte (8, 9: next beat)
        rotation_hot = Signal(8)    # lane of the current item's first byte (one-hot)
        write_hot = Signal(DECODED_BYTES)   # the current item's bytes the next beat carries
        len_hi = Signal(8)
        length_reg = Signal(16)
        index = Signal(16)          # messages completed in this packet
        dropped = Signal()          # an error dropped the rest of this packet...
        failed = Signal(len(_FRAMING_ERRORS))   # ...or did so in the previous beat (`errors_now`)

        framing = wire(m, Mux(beat.first, _Framing.HEADER, framing_reg), "framing", _Framing)
        later = valid & ~beat.first
        in_item = valid & ((framing == _Framing.HEADER) | (framing == _Framing.BODY))
        ends = later & ends_reg     # (only ever set inside an item: see `ends_next`)
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
        length_cut = length_due & beat.last & starts_present & ~both_present
        lo_here = later & (framing_reg == _Framing.LEN_LO)
        # The framing's own recurrence assumes every lane present: only a packet's last beat
        # may lack lanes, and whatever the framing decides there is unused, as the next beat
        # starts a packet. So `keep` stays off the recurrence, which depends on registers and
        # the length field's bytes only; the checks above, which use `keep`, see the truth.
        length_due_f = ends | at_next
        new_item_f = wire(m, (length_due_f & at_by[6]) | lo_here, "new_item_f")
        length_split_f = length_due_f & at_hot[7]
        next_at_boundary_f = ends & at_hot[8]

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

        # --- Message buffer: one register file, written through two rotators ---------------
        # The item ending in this beat is read out through `rotated_old`; a new item starting
        # in the same beat writes its first bytes through `rotated_new`. Which bytes of the item
        # a beat carries is kept as a mask, a beat ahead: the first beat of a packet carries the
        # header's bytes [0, 8 - first lane); each later beat the 8 after the last; a new item
        # whose body starts at lane b (b > 7: next beat) gets [0, 8 - b) now, [8 - b, 16 - b) next.
        def item_window(lane, beat_index):
            """The item's bytes in beat `beat_index` (0: the beat its first byte is in) when its
            first byte is at `lane` (lanes 8 and up: the next beat)."""
            def carried(j):     # (j + lane) // 8 == beat_index, as comparisons with constants
                low, high = 8 * beat_index - j, 8 * beat_index - j + 8
                if high <= 0:
                    return Const(0)
                return (lane < high) if low <= 0 else ((lane >= low) & (lane < high))
            return Cat(*(carried(j) for j in range(DECODED_BYTES)))

        carried = wire(m, Mux(beat.first, item_window(first_lane, 0), write_hot),
                       "carried", DECODED_BYTES)
        # A new item's first bytes, [0, 8 - b), straight from the registered places: with its
        # length field at lane q (b = q + 2) byte j is in this beat iff q <= 5 - j.
        carried_new = wire(m, Cat(*(
            (length_due_f & at_by[5 - j] if j <= 5 else 0) | (lo_here & (j < BEAT_BYTES - 1))
            for j in range(BEAT_BYTES))), "carried_new", BEAT_BYTES)
        # After [a, b): [b, b + 8). Only an item's first window (a = 0) can be short of 8 bytes.
        following = (carried << BEAT_BYTES) | Mux(carried[0], ~carried[0:BEAT_BYTES], 0)
        with m.If(valid):
            m.d.sync += write_hot.eq(Mux(new_item_f, item_window(body_at, 1),
                                         Mux(ends, 0, following)))
        buffer = Signal(8 * DECODED_BYTES)
        # (Both rotations are made from registers, and the packet's first beat picks one.)
        rotated_old = [wire(m, Mux(beat.first, lane_at[(k + first_lane)[0:3]],
                                   or_all([Mux(rotation_hot[r], lanes[(k + r) % BEAT_BYTES], 0)
                                            for r in range(BEAT_BYTES)])), f"rot_old{k}")
                       for k in range(8)]
        rotated_new = [wire(m, Mux(framing_reg == _Framing.LEN_LO, lanes[(k + 1) % BEAT_BYTES],
                                   or_all([Mux(at_hot[q], lanes[(k + q + 2) % BEAT_BYTES], 0)
                                            for q in range(7)])), f"rot_new{k}")
                       for k in range(BEAT_BYTES)]
        item_bytes = []
        for j in range(DECODED_BYTES):
            word, k = divmod(j, BEAT_BYTES)
            old_write = valid & carried[j]
            new_write = valid & carried_new[j] if j < BEAT_BYTES else 0
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
        hold = Signal()                 # recovery: packets beyond a gap are held
        held_through = Array(Signal(64, name=f"held_through{f}") for f in range(self.feeds))
        for f in range(self.feeds):
            m.d.comb += self.recover_to[f].eq(held_through[f])
        holding = Signal(self.feeds)    # a packet was held and nothing delivered since
        feed_holding = Signal()
        with m.If(verdict.valid & verdict.p.accept):
            m.d.sync += [feed_known.eq(session_valid.bit_select(verdict.p.feed, 1)),
                         feed_ended.eq(ended.bit_select(verdict.p.feed, 1)),
                         hold.eq(self.recover.bit_select(verdict.p.feed, 1)),
                         feed_holding.eq(holding.bit_select(verdict.p.feed, 1))]
        # The session bytes (0-9) complete at least one beat before the header does, so they
        # are compared, from the buffer, with the feed's session the cycle before the decision.
        stored_session = buffer[0:80]
        same_session = Signal()
        m.d.sync += same_session.eq(stored_session == session[feed])
        fresh = wire(m, ~feed_known | (feed_ended & ~same_session), "fresh")
        session_ok = wire(m, udp_ok & (fresh | (same_session & ~feed_ended)), "session_ok")
        end_of_session = hdr_count == END_OF_SESSION
        accepted = decide & session_ok
        rejected = decide & udp_ok & ~session_ok
        with m.If(accepted):
            m.d.sync += [session[feed].eq(hdr_session),
                         session_valid.bit_select(feed, 1).eq(1),
                         ended.bit_select(feed, 1).eq(end_of_session)]
        # A fresh session restarts `current` at 1 the cycle after (before a gap or a delivery
        # moves it on, below); nothing reads it in between.
        restart = Signal()
        m.d.sync += restart.eq(accepted & fresh)
        with m.If(restart):
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
        # Where the packet stands against the feed is worked out once, in the decision cycle,
        # from registers: `behind` = current - first sequence is negative on a gap, else the
        # number of leading messages already delivered (saturating: a count fits in 16 bits).
        # A fresh session's base is 1; `fresh` only selects between the two outcomes.
        settled = Signal()
        held = Signal()                 # this packet is held (from the cycle after decide)
        eos_q = Signal()                # the packet is an end of session (from `settled` on)
        quiet = Signal()                # its feed holds already: a held packet raises no GAP
        base = Signal(64)
        last_sequence = Signal(65)
        gap = Signal()
        skip = Signal(17)               # leading messages of this packet that are duplicates,
        all_behind = Signal()           # ...unless the packet is 2^17 or more behind
        behind = wire(m, current - hdr_sequence, "behind", signed(65))
        first_is_zero = wire(m, hdr_sequence == 0, "first_is_zero")
        gap_now = Mux(fresh, ~first_is_zero & (hdr_sequence != 1), behind < 0)
        with m.If(decide):
            m.d.sync += [held.eq(hold & gap_now), eos_q.eq(end_of_session),
                         quiet.eq(feed_holding & ~fresh)]
        m.d.sync += [settled.eq(accepted), base.eq(Mux(fresh, 1, current)),
                     last_sequence.eq(hdr_sequence + hdr_count),
                     gap.eq(gap_now),
                     skip.eq(Mux(fresh, first_is_zero, Mux(behind < 0, 0, behind[0:17]))),
                     all_behind.eq(~fresh & (behind >= (1 << 17)))]
        delivered_any = Signal()
        with m.If(settled & gap & ~held & ~delivered_any):
            m.d.sync += current.eq(hdr_sequence)
        new_gap = wire(m, settled & gap & ~(held & quiet), "new_gap")
        count(m, self.counters, "gaps", new_gap)
        count(m, self.counters, "held_packets", settled & held)
        count(m, self.counters, "end_of_session", settled & eos_q & ~held)
        count(m, self.counters, "heartbeats", settled & (hdr_count == 0))
        count(m, self.counters, "duplicate_packets", settled & (hdr_count != 0)
              & ~end_of_session & (last_sequence <= base))

        # A held packet sets its feed's `recover_to` to its end (a fresh session starts from
        # nothing) and does not end the session.
        held_end = wire(m, Mux(eos_q, hdr_sequence, last_sequence), "held_end", 64)
        with m.If(settled & held):
            m.d.sync += [ended.bit_select(feed, 1).eq(0), holding.bit_select(feed, 1).eq(1)]
        for f in range(self.feeds):
            with m.If(self.resync[f]):
                m.d.sync += held_through[f].eq(0)
            with m.Elif(settled & held & (feed == f)):
                m.d.sync += held_through[f].eq(held_end)
            with m.Elif(restart & (feed == f)):
                m.d.sync += held_through[f].eq(0)

        # --- Messages --------------------------------------------------------------------------
        wanted = wire(m, Mux(end_of_session, 0, hdr_count), "wanted")   # messages in the packet
        # The sequence number of the message completing now: the header's for the first one (it
        # can complete the cycle after the header), then counting up.
        header_q = Signal()
        message_sequence_reg = Signal(64)
        m.d.sync += header_q.eq(header_done)
        message_sequence = wire(m, Mux(header_q, hdr_sequence, message_sequence_reg),
                                "message_sequence")
        with m.If(header_q):
            m.d.sync += message_sequence_reg.eq(hdr_sequence)
        # No message completes with the header, so `hdr_count` is there for the first one.
        excess = message_done & (end_of_session | (index >= hdr_count))
        corrupt = complete & beat.last & beat.bad & (header_done | ~excess)
        # The beat after an error only a bad length lets the packet go on to complete a message
        # (excess ones stay excess; the other errors end the packet); later beats see `dropped`.
        usable = wire(m, message_done & ~excess & ~(beat.last & beat.bad) & ~dropped & ~failed[1]
                      & Mux(decide, session_ok, packet_ok), "usable")
        # Delivery. A message can complete in the decision cycle itself only when the header
        # ended in lane 0 or 1 (payload starting at lane 6), and then the header's sequence
        # number was stored a beat earlier: its comparisons are made from the stored bytes,
        # from registers, the cycle before.
        stored_sequence = Cat(*reversed([buffer[8 * j:8 * j + 8] for j in range(10, 18)]))
        stored_not_behind = Signal()
        stored_nonzero = Signal()
        stored_at_current = Signal()
        stored_is_one = Signal()
        m.d.sync += [stored_not_behind.eq(stored_sequence >= current),
                     stored_nonzero.eq(stored_sequence != 0),
                     stored_at_current.eq(stored_sequence == current),
                     stored_is_one.eq(stored_sequence == 1)]
        # While holding, only a packet starting exactly at the expected number delivers in the
        # decision cycle; one beyond it is held, not a duplicate.
        new_at_decide = Mux(fresh, Mux(hold, stored_is_one, stored_nonzero),
                            Mux(hold, stored_at_current, stored_not_behind))
        old_at_decide = Mux(fresh, ~stored_nonzero, ~stored_not_behind)
        # From the cycle after, messages within a packet are consecutive: message `index` is new
        # once `skip` duplicates have gone by, a 17-bit comparison of registers.
        not_seen = wire(m, Mux(decide, new_at_decide, ~held & ~all_behind & (index >= skip)),
                        "not_seen")
        duplicate = wire(m, Mux(decide, old_at_decide, ~held & ~not_seen), "duplicate")
        fresh_message = wire(m, usable & not_seen, "fresh_message")
        with m.If(message_done):
            m.d.sync += [index.eq(index + 1), message_sequence_reg.eq(message_sequence + 1)]
        with m.If(header_done):
            m.d.sync += index.eq(0)
        with m.If(fresh_message):
            m.d.sync += delivered_any.eq(1)
        with m.If(first):
            m.d.sync += delivered_any.eq(0)
        # Within a packet nothing reads `current` after the decision cycle, so it follows the
        # delivered messages a cycle late, from registers, off the delivery decision's path.
        delivered = Signal()
        delivered_next = Signal(64)
        m.d.sync += [delivered.eq(fresh_message), delivered_next.eq(message_sequence + 1)]
        with m.If(delivered):
            m.d.sync += [current.eq(delivered_next), holding.bit_select(feed, 1).eq(0)]
        # `current` is the working copy; the feed's entry follows it a cycle later (the next
        # packet of any feed loads its copy at its verdict, many cycles after).
        write_back = Signal()
        m.d.sync += write_back.eq(accepted | settled | delivered)
        for f in range(self.feeds):
            with m.If(self.resync[f]):
                m.d.sync += expected[f].eq(1)
            with m.Elif(write_back & (feed == f)):
                m.d.sync += expected[f].eq(current)
        count(m, self.counters, "messages", fresh_message)
        count(m, self.counters, "duplicate_messages", usable & duplicate)

        out = self.messages
        m.d.sync += out.valid.eq(fresh_message)
        with m.If(message_done):
            m.d.sync += [out.p.data.eq(item), out.p.length.eq(length_reg),
                         out.p.sequence.eq(message_sequence), out.p.feed.eq(feed),
                         out.p.line.eq(line)]

        # --- Resync (host) ---------------------------------------------------------------------
        for f in range(self.feeds):
            with m.If(self.resync[f]):
                m.d.sync += [session_valid[f].eq(0), ended[f].eq(0), holding[f].eq(0)]

        # --- Framing errors: held until the packet's fate is known, so that a packet refused
        # by the UDP verdict or the session check counts as that refusal only.
        errors_now = Cat(item_cut | length_cut | (new_item & beat.last), length_bad, excess,
                         corrupt)
        # Only a packet's first error counts: `live` until then. Errors are registered raw and
        # masked the cycle after. A clean end with the wrong number of messages is checked a
        # cycle later too (the header's count may have arrived in the same beat, via the rotator).
        clean_end_q = Signal()
        live = ~(dropped | failed.any()) | first
        live_q = Signal()
        m.d.sync += [failed.eq(errors_now), live_q.eq(live),
                     clean_end_q.eq(clean_end & ~corrupt & live)]
        count_short = clean_end_q & (index != wanted)    # `index` now counts the packet's messages
        errors = Mux(live_q, failed, 0) | Cat(Const(0, 2), count_short, Const(0, 1))
        with m.If(failed.any()):
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
        # `boundary`: distance from this beat's lane 0 to just past the current item. An item
        # continuing from an earlier beat ends next beat iff boundary <= 16, at lane boundary - 9.
        boundary = wire(m, Mux(beat.first, first_lane + HEADER_LENGTH, boundary_reg), "boundary")
        # One adder after the length field's select: the item's distance from next beat's lane 0.
        body_from_next = wire(m, body_at - BEAT_BYTES, "body_from_next", signed(5))
        boundary_next = wire(m, Mux(new_item_f, length + body_from_next, boundary - BEAT_BYTES),
                             "boundary_next", 17)
        # Whether and where a new item ends next beat is decoded for each place its length field
        # may start (lanes 0-6 of this beat, or split across the previous beat), from that
        # place's bytes alone, then selected: no adder on the framing's recurrence.
        places = [(length_due_f & at_hot[q], lanes[q], lanes[q + 1], q + 2) for q in range(7)]
        places.append((lo_here, len_hi, lanes[0], 1))
        short_new, end_new = [], []
        for select, hi, lo, body in places:
            short = (hi == 0) & (lo[5:] == 0) & (lo[0:5] <= 2 * BEAT_BYTES - body)
            short_new.append(select & short)
            end_new.append(Mux(select, (lo[0:4] + body)[0:4], 0))
        ends_next = wire(m, Cat(*short_new).any()
                         | (~new_item_f & ~ends & (boundary <= 2 * BEAT_BYTES)), "ends_next")
        end_at_next = wire(m, or_all(end_new + [Mux(new_item_f, 0, boundary[0:4])])
                           ^ BEAT_BYTES, "end_at_next", 4)  # 1..8 when ends_next
        at_hot_next = wire(m, Mux(next_at_boundary_f, 1, Cat(Const(0, 1), *(
            end_at_next == q for q in range(1, 9)))), "at_hot_next", 9)
        with m.If(valid):
            m.d.sync += [
                boundary_reg.eq(boundary_next),
                ends_reg.eq(ends_next),
                last_hot.eq(Cat(*(end_at_next == q + 1 for q in range(8)))),
                at_hot.eq(at_hot_next),
                at_by.eq(Cat(*(at_hot_next[0:i + 1].any() for i in range(7)))),
                body_at_reg.eq(Mux(next_at_boundary_f, 2, end_at_next + 2)),
            ]
            with m.If(new_item_f):
                m.d.sync += [rotation_hot.eq(Cat(*(body_at[0:3] == r for r in range(BEAT_BYTES)))),
                             length_reg.eq(length)]
            with m.Else():
                with m.If(beat.first):
                    m.d.sync += rotation_hot.eq(Cat(*(first_lane == r
                                                      for r in range(BEAT_BYTES))))
            with m.If(length_split_f):
                m.d.sync += len_hi.eq(lanes[7])
            with m.If(new_item_f):
                m.d.sync += framing_reg.eq(_Framing.BODY)
            with m.Elif(length_split_f):
                m.d.sync += framing_reg.eq(_Framing.LEN_LO)
            with m.Elif(next_at_boundary_f):
                m.d.sync += framing_reg.eq(_Framing.NEXT)
            with m.Elif(in_item):
                m.d.sync += framing_reg.eq(framing)

        # --- Notices: GAP, then END_OF_SESSION (the cycle after, if both) ---------------------
        notice = self.notices
        eos_pending = Signal()
        m.d.sync += [notice.valid.eq(0), eos_pending.eq(0)]
        with m.If(new_gap):
            m.d.sync += [notice.valid.eq(1), notice.p.eq(0),
                         notice.p.kind.eq(NoticeKind.GAP), notice.p.feed.eq(feed),
                         notice.p.sequence.eq(base), notice.p.value.eq(hdr_sequence - base),
                         eos_pending.eq(eos_q & ~held)]
        with m.Elif((settled & eos_q & ~held) | eos_pending):
            m.d.sync += [notice.valid.eq(1), notice.p.eq(0),
                         notice.p.kind.eq(NoticeKind.END_OF_SESSION), notice.p.feed.eq(feed),
                         notice.p.sequence.eq(hdr_sequence)]
        return m
