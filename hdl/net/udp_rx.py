"""Ethernet II / 802.1Q / IPv4 / UDP receive and multicast feed filter."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.counters import count, counter_layout
from tickwire.hdl.signals import wire
from tickwire.hdl.net import headers as h
from tickwire.hdl.net.mac import BEAT_BYTES, mac_rx_signature

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
    first: 1
    last: 1
    truncated: 1
    bad: 1
    feed: 3
    line: 1


def payload_signature():
    return stream.Signature(PayloadBeat, always_ready=True)


class _State(enum.Enum, shape=2):
    HEADER = 0
    PAYLOAD = 1
    DISCARD = 2


class UdpReceiver(wiring.Component):
    """Parses Ethernet II (optionally 802.1Q tagged), IPv4 and UDP headers and forwards the UDP
    payloads of feed datagrams.

    Checks: IPv4 version, IHL >= 5 (options skipped), total length, header checksum; fragments,
    non-IPv4 and non-UDP frames are dropped; the UDP length must fit the IP payload. The
    destination (group, port) is looked up in ``filters``; the first enabled match tags the
    payload with its feed and line. Every dropped frame moves exactly one counter. The UDP
    checksum is not verified: it covers bytes that have not arrived when the payload is
    forwarded (cut-through); the MAC's FCS check (``bad``) covers integrity instead.

    Cut-through policy: the payload leaves as it arrives. The MAC's ``bad`` flag arrives with the
    frame's last beat: it is counted in ``bad_frames`` and, when that beat carries payload, passed
    on as the payload's ``bad`` flag so that nothing ending in it is used.

    Ports
    -----
    rx : In(MacBeat stream, always ready)
    filters : In(array of FilterEntry)
    payload : Out(PayloadBeat stream, always ready)
    counters : Out(one 32-bit counter per name in UDP_COUNTERS)

    Latency: 1 cycle (a payload beat leaves the cycle after it arrives). Never back-pressures.
    """

    def __init__(self, filter_entries=8):
        self.filter_entries = filter_entries
        super().__init__({
            "rx": In(mac_rx_signature()),
            "filters": In(data.ArrayLayout(FilterEntry, filter_entries)),
            "payload": Out(payload_signature()),
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

        def field(offset, length, name):
            """The big-endian value of frame bytes [offset, offset+length): captured as its bytes
            go by, and including the current beat's bytes (valid from the beat of its last byte)."""
            reg = Signal(8 * length, name=name)
            now = []
            for j in range(length):
                position = offset + j
                here = beat == (position >> 3)
                lane = (Array(lanes)[position & 7] if isinstance(position, Value)
                        else lanes[position & 7])
                byte_reg = reg[8 * (length - 1 - j):8 * (length - j)]
                with m.If(in_header & here):
                    m.d.sync += byte_reg.eq(lane)
                now.append(Mux(here, lane, byte_reg))
            return wire(m, Cat(*reversed(now)), f"{name}_now")

        # Ethernet, optional VLAN tag. The IP header starts at 14 or 18: 4*(3 + vlan) + 2, so that
        # the low bits of every later offset are constant and each field's lane mux stays 2:1.
        ethertype = field(h.ETHERNET["ethertype"].offset, 2, "ethertype")
        inner_ethertype = field(h.ETHERNET_LENGTH + h.VLAN["ethertype"].offset, 2, "inner_type")
        vlan_reg = Signal()
        vlan = wire(m, Mux(beat == 1, ethertype == h.ETHERTYPE_VLAN, vlan_reg), "vlan")
        with m.If(in_header & (beat == 1)):
            m.d.sync += vlan_reg.eq(vlan)
        ip = wire(m, Cat(Const(0b10, 2), 3 + vlan), "ip_offset")

        def ip_field(name):
            f = h.IPV4[name]
            return field(ip + f.offset, f.length, f"ip_{name}")

        version_ihl = ip_field("version_ihl")
        ihl = version_ihl[0:4]
        ihl_at_least_5 = wire(m, Mux(ihl < 5, 5, ihl), "ihl_at_least_5")
        total_length = ip_field("total_length")
        flags_fragment = ip_field("flags_fragment")
        protocol = ip_field("protocol")
        dst_ip = ip_field("dst")
        udp = wire(m, Cat(Const(0b10, 2), 3 + vlan + ihl_at_least_5), "udp_offset")  # ip + 4*IHL

        def udp_field(name):
            f = h.UDP[name]
            return field(udp + f.offset, f.length, f"udp_{name}")

        dst_port = udp_field("dst_port")
        udp_length = udp_field("length")

        # IPv4 header checksum: sum the 16-bit words of [ip, udp) as they go by; fold at the end.
        checksum_acc = Signal(21)
        words = []
        for w in range(BEAT_BYTES // 2):
            offset = Cat(Const(2 * w, 3), beat)
            word = Cat(lanes[2 * w + 1], lanes[2 * w])
            words.append(Mux((offset >= ip) & (offset < udp), word, 0))
        with m.If(in_header):
            m.d.sync += checksum_acc.eq(Mux(beat == 0, 0, checksum_acc) + sum(words))
        fold1 = checksum_acc[0:16] + checksum_acc[16:]
        fold2 = fold1[0:16] + fold1[16:]
        checksum_ok = fold2[0:16] == 0xFFFF

        # Filter lookup: first enabled entry matching (group, port).
        matches = [e.enable & (e.group == dst_ip) & (e.port == dst_port) for e in self.filters]
        matched = Signal()
        match_feed = Signal(3)
        match_line = Signal()
        for entry, hit in reversed(list(zip(self.filters, matches))):
            with m.If(hit):
                m.d.comb += [match_feed.eq(entry.feed), match_line.eq(entry.line)]
        m.d.comb += matched.eq(Cat(*matches).any())

        # Decisions, each at the beat where its last input byte arrives.
        ethertype_beat = in_header & (beat == 1)
        inner_beat = in_header & (beat == 2) & vlan
        not_ipv4 = ((ethertype_beat & (ethertype != h.ETHERTYPE_IPV4) & ~vlan)
                    | (inner_beat & (inner_ethertype != h.ETHERTYPE_IPV4)))
        decision = in_header & ~not_ipv4 & (beat == ((udp + h.UDP_LENGTH - 1) >> 3))
        ip_payload_length = total_length - (ihl << 2)
        header_error = ((version_ihl[4:8] != 4) | (ihl < 5)
                        | (total_length < (ihl << 2) + h.UDP_LENGTH))
        fragment = (flags_fragment & (h.IP_MORE_FRAGMENTS | h.IP_FRAGMENT_OFFSET_MASK)) != 0
        not_udp = protocol != h.IP_PROTOCOL_UDP
        length_error = (udp_length <= h.UDP_LENGTH) | (udp_length > ip_payload_length)
        reasons = [("ip_header_errors", header_error), ("ip_checksum_errors", ~checksum_ok),
                   ("ip_fragments", fragment), ("not_udp", not_udp),
                   ("udp_length_errors", length_error), ("unmatched", ~matched)]
        accept = decision
        for name, reason in reasons:
            count(m, self.counters, name, accept & reason)
            accept = accept & ~reason

        # Payload beats: the first is the decision beat (the payload starts in the beat that
        # completes the UDP header, as the header ends 2 bytes short of an 8-byte boundary).
        left_reg = Signal(16)    # payload bytes still to come after the current beat
        start_lane = udp[0:3]
        payload_length = udp_length - h.UDP_LENGTH
        in_payload = valid & (state == _State.PAYLOAD)
        room = Mux(accept, BEAT_BYTES - start_lane, BEAT_BYTES)
        wanted = Mux(accept, payload_length, left_reg)
        take = Mux(wanted < room, wanted, room)
        lane_from = Mux(accept, start_lane, 0)
        keep = Signal(8)
        for i in range(BEAT_BYTES):
            m.d.comb += keep[i].eq((i >= lane_from) & (i < lane_from + take))
        left_after = wanted - take
        frame_short = beat_in.last & ((left_after != 0) | ((keep & ~beat_in.keep) != 0))
        sending = accept | in_payload
        payload_last = sending & ((left_after == 0) | beat_in.last)

        out = self.payload
        m.d.sync += out.valid.eq(sending)
        with m.If(sending):
            m.d.sync += [
                out.p.data.eq(beat_in.data),
                out.p.keep.eq(keep & beat_in.keep),
                out.p.first.eq(accept),
                out.p.last.eq(payload_last),
                out.p.truncated.eq(frame_short),
                out.p.bad.eq(beat_in.last & beat_in.bad),
                left_reg.eq(left_after),
            ]
        with m.If(accept):
            m.d.sync += [out.p.feed.eq(match_feed), out.p.line.eq(match_line)]

        with m.If(valid):
            with m.If(not_ipv4 | (decision & ~accept) | payload_last):
                m.d.sync += state_reg.eq(_State.DISCARD)
            with m.Elif(accept):
                m.d.sync += state_reg.eq(_State.PAYLOAD)
            with m.Else():
                m.d.sync += state_reg.eq(state)

        count(m, self.counters, "frames", valid & beat_in.first)
        count(m, self.counters, "bad_frames", valid & beat_in.last & beat_in.bad)
        count(m, self.counters, "not_ipv4", not_ipv4)
        count(m, self.counters, "accepted", accept)
        header_cut = in_header & beat_in.last & ~not_ipv4 & ~decision
        count(m, self.counters, "truncated", header_cut | (sending & frame_short))
        return m
