"""Ethernet II / 802.1Q / IPv4 / UDP receive and multicast feed filter."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.counters import count, counter_layout
from tickwire.hdl.net import headers as h
from tickwire.hdl.net.mac import BEAT_BYTES, mac_rx_signature
from tickwire.hdl.signals import wire

UDP_COUNTERS = ("frames", "accepted", "truncated", "bad_frames", "not_ipv4", "ip_header_errors",
                "ip_checksum_errors", "ip_fragments", "not_udp", "udp_length_errors", "unmatched")


class FilterEntry(data.Struct):
    """A host-set (multicast group, UDP port) -> (feed, line) mapping."""
    group: 32
    port: 16
    feed: 3
    line: 1   # 0 = line A, 1 = line B
    enable: 1


class PayloadBeat(data.Struct):
    """A beat of a UDP payload, in frame alignment: the first beat's ``keep`` starts at the lane
    of the payload's first byte. ``truncated`` and ``bad`` are set on the last beat only."""
    data: 64
    keep: 8
    first_lane: 3   # the lowest lane set in `keep`
    first: 1
    last: 1
    truncated: 1
    bad: 1


def payload_signature():
    return stream.Signature(PayloadBeat, always_ready=True)


class _State(enum.Enum, shape=2):
    HEADER = 0
    PAYLOAD = 1
    DISCARD = 2


class PacketVerdict(data.Struct):
    """The outcome of a packet's header checks, two cycles after its first payload beat."""
    accept: 1
    feed: 3
    line: 1


def verdict_signature():
    return stream.Signature(PacketVerdict, always_ready=True)


class UdpReceiver(wiring.Component):
    """Parses Ethernet II (optionally 802.1Q tagged), IPv4 and UDP headers and forwards the UDP
    payloads of feed datagrams.

    Checks: IPv4 version, IHL >= 5 (options skipped), total length, header checksum; fragments,
    non-IPv4 and non-UDP frames are dropped; the UDP length must fit the IP payload. The
    destination (group, port) is looked up in ``filters``; the first enabled match tags the
    packet with its feed and line. Every dropped frame moves exactly one counter. The UDP
    checksum is not verified: it covers bytes that have not arrived when the payload is
    forwarded (cut-through); the MAC's FCS check (``bad``) covers integrity instead.

    Cut-through policy: the payload leaves as it arrives, from the beat that completes the UDP
    header, before the header checks are finished; ``verdict`` follows two cycles after the
    payload's first beat (accept, feed, line), and a rejected packet's beats stop. Consumers
    act on nothing before the verdict (a MoldUDP64 header cannot complete sooner). The MAC's
    ``bad`` flag arrives with the frame's last beat: it is counted in ``bad_frames`` and, when
    that beat carries payload, passed on as the payload's ``bad`` flag so that nothing ending in
    it is used.

    Ports
    -----
    rx : In(MacBeat stream, always ready)
    filters : In(array of FilterEntry)
    payload : Out(PayloadBeat stream, always ready)
    verdict : Out(PacketVerdict stream, always ready)
    counters : Out(one 32-bit counter per name in UDP_COUNTERS)

    Latency: 1 cycle for payload beats; the verdict 2 cycles after the first payload beat.
    Never back-pressures.
    """

    def __init__(self, filter_entries=8):
        self.filter_entries = filter_entries
        super().__init__({
            "rx": In(mac_rx_signature()),
            "filters": In(data.ArrayLayout(FilterEntry, filter_entries)),
            "payload": Out(payload_signature()),
            "verdict": Out(verdict_signature()),
            "counters": Out(counter_layout(UDP_COUNTERS)),
        })

    def elaborate(self, platform):
        m = Module()
        rx, beat_in = self.rx, self.rx.p
        lanes = [beat_in.data[8 * i:8 * i + 8] for i in range(BEAT_BYTES)]
        valid = rx.valid

        beat_reg = Signal(4)
        state_reg = Signal(_State)
        beat = wire(m, Mux(beat_in.first, 0, beat_reg), "beat")
        state = wire(m, Mux(beat_in.first, _State.HEADER, state_reg), "state", _State)
        with m.If(valid):
            m.d.sync += beat_reg.eq(Mux(beat == 15, 15, beat + 1))
        in_header = valid & (state == _State.HEADER)

        def present(offset):
            """Whether the byte at `offset` is in this beat (a runt may lack it)."""
            lane = offset & 7 if isinstance(offset, int) else offset[0:3]
            return beat_in.keep.bit_select(lane, 1)

        def field(offset, length, name):
            """The big-endian value of frame bytes [offset, offset+length): captured as its bytes
            go by, including the current beat's (valid from the beat of its last byte).
            `offset` must be stable while the field goes by (a constant or a register)."""
            reg = Signal(8 * length, name=name)
            now = []
            for j in range(length):
                position = offset + j
                here = beat == (position >> 3)
                lane = (Array(lanes)[position[0:3]] if isinstance(position, Value)
                        else lanes[position & 7])
                byte_reg = reg[8 * (length - 1 - j):8 * (length - j)]
                with m.If(in_header & here):
                    m.d.sync += byte_reg.eq(lane)
                now.append(Mux(here, lane, byte_reg))
            return wire(m, Cat(*reversed(now)), f"{name}_now"), reg

        # Ethernet and the optional VLAN tag. Offsets are built as 4*k + 2 so that their low
        # bits are constant and every field's lane mux stays 2:1.
        ethertype_end = h.ETHERNET["ethertype"].offset + 1
        inner_end = h.ETHERNET_LENGTH + h.VLAN["ethertype"].offset + 1
        ethertype, _ = field(h.ETHERNET["ethertype"].offset, 2, "ethertype")
        inner_ethertype, _ = field(h.ETHERNET_LENGTH + h.VLAN["ethertype"].offset, 2, "inner")
        vlan_now = ethertype == h.ETHERTYPE_VLAN
        vlan = Signal()       # valid from beat 2
        with m.If(in_header & (beat == 1)):
            m.d.sync += vlan.eq(vlan_now)
        ip = wire(m, Cat(Const(0b10, 2), 3 + vlan), "ip_offset")

        # IPv4 version/IHL: byte 14 (untagged, beat 1) or 18 (tagged, beat 2).
        version_ihl_untagged = Signal(8)
        version_ihl_tagged = Signal(8)
        with m.If(in_header & (beat == 1)):
            m.d.sync += version_ihl_untagged.eq(lanes[h.ETHERNET_LENGTH & 7])
        with m.If(in_header & (beat == 2)):
            m.d.sync += version_ihl_tagged.eq(lanes[(h.ETHERNET_LENGTH + h.VLAN_LENGTH) & 7])
        version_ihl = wire(m, Mux(vlan, version_ihl_tagged, version_ihl_untagged), "version_ihl")
        ihl = version_ihl[0:4]

        def ip_field(name):
            f = h.IPV4[name]
            return field(ip + f.offset, f.length, f"ip_{name}")[1]

        total_length = ip_field("total_length")
        flags_fragment = ip_field("flags_fragment")
        protocol = ip_field("protocol")
        dst_ip = ip_field("dst")

        # The UDP header's offset, ip + 4 * max(IHL, 5), registered; valid from beat 3 (a tagged
        # frame's IHL is taken from the lanes as it arrives in beat 2).
        udp = Signal(7)
        ihl_latest = Mux(vlan, Mux(beat == 2, lanes[(h.ETHERNET_LENGTH + h.VLAN_LENGTH) & 7],
                                   version_ihl_tagged), version_ihl_untagged)[0:4]
        udp_next = Cat(Const(0b10, 2), 3 + vlan + Mux(ihl_latest < 5, 5, ihl_latest))
        udp_end_beat = Signal(4)    # the beat holding the UDP header's last byte (valid from
        udp_end_lane = Signal(3)    # beat 4), and its lane (1 or 5)
        udp_end = udp + h.UDP_LENGTH - 1
        m.d.sync += [udp.eq(udp_next), udp_end_beat.eq(udp_end >> 3),
                     udp_end_lane.eq(udp_end[0:3])]
        dst_port = field(udp + h.UDP["dst_port"].offset, 2, "udp_dst_port")[1]
        _, udp_length = field(udp + h.UDP["length"].offset, 2, "udp_length")

        # IPv4 header checksum, pipelined: per-beat sums of the header's 16-bit words, then the
        # running sum, then two folds; complete two cycles after the header's last beat.
        # Which words of a beat are header words is registered a beat ahead: none in beat 0;
        # in beat 1 the word at 14, unless this very beat shows a VLAN tag; in beat 2 the word
        # at 16 unless tagged, and 18 to 22; then every word below the UDP header.
        header_words = Signal(BEAT_BYTES // 2)
        later = Cat(*((Cat(Const(2 * w, 3), beat + 1) < udp)
                      for w in range(BEAT_BYTES // 2)))
        with m.If(valid):
            m.d.sync += header_words.eq(Mux(beat == 0, 0, Mux(beat == 1, 0b1110,
                                                               Mux(beat == 2, 0b1111, later))))
        take = [header_words[0] | ((beat == 2) & ~vlan), header_words[1], header_words[2],
                Mux(beat == 1, ~vlan_now, header_words[3])]
        words = [Mux(take[w], Cat(lanes[2 * w + 1], lanes[2 * w]), 0)
                 for w in range(BEAT_BYTES // 2)]
        beat_sum = Signal(18)
        restart = Signal()
        checksum_sum = Signal(21)
        checksum_fold = Signal(17)
        m.d.sync += [beat_sum.eq(Mux(in_header & ~beat_in.first, sum(words), 0)),
                     restart.eq(valid & beat_in.first),
                     checksum_sum.eq(Mux(restart, 0, checksum_sum) + beat_sum),
                     checksum_fold.eq(checksum_sum[0:16] + checksum_sum[16:])]
        checksum_ok = (checksum_fold[0:16] + checksum_fold[16]) [0:16] == 0xFFFF

        # Decisions at the beat where their last byte arrives.
        ethertype_beat = in_header & (beat == ethertype_end >> 3) & present(ethertype_end)
        inner_beat = in_header & (beat == inner_end >> 3) & present(inner_end) & vlan
        not_ipv4 = ((ethertype_beat & (ethertype != h.ETHERTYPE_IPV4) & ~vlan_now)
                    | (inner_beat & (inner_ethertype != h.ETHERTYPE_IPV4)))

        earliest = (h.ETHERNET_LENGTH + h.IPV4_MIN_LENGTH + h.UDP_LENGTH - 1) >> 3  # `udp` valid
        # Whether a beat is the UDP header's last is registered the beat before (from beat 4).
        at_udp_end = Signal()
        with m.If(valid):
            m.d.sync += at_udp_end.eq((beat + 1 >= earliest) & (beat + 1 == udp_end_beat)
                                      & ~beat_in.last)
        decision = wire(m, in_header & at_udp_end
                        & beat_in.keep.bit_select(udp_end_lane, 1), "decision")

        # Verdict, stage 1 (the cycle after the decision beat): every check from registers.
        stage1 = Signal()
        stage2 = Signal()
        m.d.sync += [stage1.eq(decision), stage2.eq(stage1)]
        reasons = {
            "ip_header_errors": (version_ihl[4:8] != 4) | (ihl < 5)
                                | (total_length < Cat(Const(0, 2), ihl) + h.UDP_LENGTH),
            "ip_fragments": (flags_fragment
                             & (h.IP_MORE_FRAGMENTS | h.IP_FRAGMENT_OFFSET_MASK)) != 0,
            "not_udp": protocol != h.IP_PROTOCOL_UDP,
            "udp_length_errors": (udp_length <= h.UDP_LENGTH)
                                 | (udp_length > total_length - Cat(Const(0, 2), ihl)),
        }
        reason_regs = {name: Signal(name=f"{name}_r") for name in reasons}
        matches = Signal(self.filter_entries)
        with m.If(stage1):
            m.d.sync += [reason_regs[n].eq(v) for n, v in reasons.items()]
            m.d.sync += matches.eq(Cat(*(e.enable & (e.group == dst_ip) & (e.port == dst_port)
                                         for e in self.filters)))
        # Stage 2: the checksum, then the first reason in priority order.
        ordered = [("ip_header_errors", reason_regs["ip_header_errors"]),
                   ("ip_checksum_errors", ~checksum_ok),
                   ("ip_fragments", reason_regs["ip_fragments"]),
                   ("not_udp", reason_regs["not_udp"]),
                   ("udp_length_errors", reason_regs["udp_length_errors"]),
                   ("unmatched", ~matches.any())]
        accept = stage2
        for name, reason in ordered:
            count(m, self.counters, name, accept & reason)
            accept = accept & ~reason
        accept = wire(m, accept, "accept")
        match_feed = Signal(3)
        match_line = Signal()
        for i in reversed(range(self.filter_entries)):
            with m.If(matches[i]):
                m.d.comb += [match_feed.eq(self.filters[i].feed),
                             match_line.eq(self.filters[i].line)]
        verdict = self.verdict
        m.d.sync += [verdict.valid.eq(stage2), verdict.p.accept.eq(accept),
                     verdict.p.feed.eq(match_feed), verdict.p.line.eq(match_line)]
        # Per-packet flags are reset at the decision beat, not at the next frame's first beat:
        # a short frame's verdict may come after the next frame has started.
        rejected = Signal()      # this packet's verdict was a rejection: stop its beats
        with m.If(decision):
            m.d.sync += rejected.eq(0)
        with m.If(stage2):
            m.d.sync += rejected.eq(~accept)

        # Payload beats. The first is the decision beat: the UDP header ends 2 bytes short of
        # an 8-byte boundary, so the payload starts in the beat that completes the header.
        # The UDP header starts at lane 2 or 6 (offset 4k + 2). Its length field is then either
        # in the previous beat (lanes 6, 7: registered) or at lanes 2, 3 of this, the decision
        # beat; and the payload's first lane is 2 or 6. No adder sits before the first beat.
        start_lane = udp[0:3]
        late = udp[2]          # header at lane 6: length field in the decision beat
        length_lanes = (h.UDP["length"].offset + 6) % BEAT_BYTES
        udp_length_now = wire(m, Mux(late, Cat(lanes[length_lanes + 1], lanes[length_lanes]),
                                     udp_length), "udp_length_now")
        room = wire(m, 2 * BEAT_BYTES - start_lane, "room", 5)   # first beat holds length-8 <=
        ends_first = (udp_length_now[5:] == 0) & (udp_length_now[0:5] <= room)
        end_first = wire(m, (start_lane + udp_length_now[0:4] - BEAT_BYTES)[0:4], "end_first")
        after_first = wire(m, udp_length_now - (2 * BEAT_BYTES) + start_lane, "after_first",
                           signed(18))   # payload bytes beyond the first beat
        remaining = Signal(signed(18))   # payload bytes from lane 0 of the current beat on
        in_payload = valid & (state == _State.PAYLOAD) & ~rejected
        ends_later = Signal()            # remaining <= 8, kept with `remaining`
        end_lane = Mux(decision, end_first, remaining[0:4])
        ends = Mux(decision, ends_first, ends_later)
        keep = Signal(8)
        for i in range(BEAT_BYTES):
            m.d.comb += keep[i].eq(Mux(decision, i >= start_lane, 1) & (~ends | (i < end_lane)))
        sending = decision | in_payload
        cut = wire(m, beat_in.last & (~ends | ((keep & ~beat_in.keep) != 0)), "cut")
        payload_last = sending & (ends | beat_in.last)

        out = self.payload
        kept = wire(m, keep & beat_in.keep, "kept")
        first_lane = Mux(decision, start_lane, 0)
        m.d.sync += out.valid.eq(sending)
        with m.If(sending):
            m.d.sync += [
                out.p.data.eq(beat_in.data), out.p.keep.eq(kept),
                out.p.first_lane.eq(first_lane),
                out.p.first.eq(decision), out.p.last.eq(payload_last),
                out.p.truncated.eq(cut), out.p.bad.eq(beat_in.last & beat_in.bad),
                remaining.eq(Mux(decision, after_first, remaining - BEAT_BYTES)),
                ends_later.eq(Mux(decision, udp_length_now <= 3 * BEAT_BYTES - start_lane,
                                  remaining <= 2 * BEAT_BYTES)),
            ]

        with m.If(valid):
            with m.If(not_ipv4 | payload_last):
                m.d.sync += state_reg.eq(_State.DISCARD)
            with m.Elif(decision):
                m.d.sync += state_reg.eq(_State.PAYLOAD)
            with m.Else():
                m.d.sync += state_reg.eq(state)

        # A payload cut short counts once the packet is known to be accepted. Worked out a cycle
        # late, from registered copies of the events, off the payload's path.
        cut_seen = Signal()
        accepted = Signal()
        cut_q, decision_q, stage2_q, accept_q = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [cut_q.eq(sending & cut), decision_q.eq(decision), stage2_q.eq(stage2),
                     accept_q.eq(accept)]
        with m.If(decision_q):
            m.d.sync += [cut_seen.eq(0), accepted.eq(0)]
        with m.If(cut_q):
            m.d.sync += cut_seen.eq(1)
        with m.If(stage2_q):
            m.d.sync += accepted.eq(accept_q)
        header_cut = in_header & beat_in.last & ~not_ipv4 & ~decision
        payload_cut = ((accept_q & (cut_seen | cut_q))
                       | (accepted & ~stage2_q & ~decision_q & cut_q))
        count(m, self.counters, "truncated", header_cut, payload_cut)
        count(m, self.counters, "frames", valid & beat_in.first)
        count(m, self.counters, "bad_frames", valid & beat_in.last & beat_in.bad)
        count(m, self.counters, "not_ipv4", not_ipv4)
        count(m, self.counters, "accepted", accept)
        return m
