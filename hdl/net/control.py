"""The UDP control channel in gateware: register reads and writes in UDP datagrams.

`ControlResponder` is the board side of `tickwire.host.udp_control` (the wire format and the
rules), behaving exactly as its executable reference model `tickwire.sim.nic_control.
ControlEndpoint`, behind the frame-level rules of `tickwire.sim.control_run.ControlFrameModel`.

Wiring, on a board without PCIe (the responder is then the register bank's only master)::

    stand_in = SimpleNamespace(signature=control_signature(24))    # sizes the map
    width = RegisterMap([..., Block("control", stand_in, CONTROL_REGISTERS)]).address_width
    control = ControlResponder(width, mac=..., ip=..., port=..., host_ip=..., token=...)
    register_map = RegisterMap([..., Block("control", control, control.registers)])
    bank = RegisterBank(register_map, identity)
    wiring.connect(m, control.bus, bank.bus)
    connect_bank(m, bank, register_map)
    wiring.connect(m, mac.rx, feed.rx)                    # every frame to both, one connect
    wiring.connect(m, mac.rx, control.rx)                 # each (both always ready)
    wiring.connect(m, orders.tx, arbiter.i0)              # TxArbiter(2): orders first
    wiring.connect(m, control.tx, arbiter.i1)
    wiring.connect(m, arbiter.out, mac.tx)
"""

from typing import NamedTuple

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import enum, memory, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.counters import count, counter_layout
from tickwire.hdl.net import headers as h
from tickwire.hdl.net.mac import BEAT_BYTES, mac_rx_signature, mac_tx_signature
from tickwire.hdl.platform.registers import Config, Counters, Strobe, bus_signature
from tickwire.hdl.signals import wire
from tickwire.host.udp_control import (
    MAGIC,
    MAX_OPERATIONS,
    READ,
    REPLY,
    TOKEN_BYTES,
    VERSION,
    WRITE,
)


class ControlDefaults(NamedTuple):
    """A build's control channel: the board's MAC, IPv4 address and UDP port, the one host
    address requests are accepted from, and the 16-byte token. The host may change each at run
    time through the ``control.*`` registers; these are the values after reset."""
    mac: int = 0x02_74_77_00_00_01          # locally administered
    ip: int = 0x0A_00_00_02                  # 10.0.0.2
    port: int = 7000
    host_ip: int = 0x0A_00_00_01             # 10.0.0.1
    token: bytes = bytes(TOKEN_BYTES)        # a board build must carry its own secret


#: The model's counters (`ControlEndpoint.counters`), then ``busy``: a request that passed
#: every check that does not depend on the last accepted id, lost because both request buffers
#: were taken (one executing or being replied to, one waiting).
CONTROL_COUNTERS = ("accepted", "retransmitted", "malformed", "wrong_source", "bad_token",
                    "replayed", "busy")

CONTROL_REGISTERS = (
    Config("board_mac", "the board's MAC address (0: the build's default)"),
    Config("board_ip", "the board's IPv4 address (0: the build's default)"),
    Config("control_port", "the control channel's UDP port (0: the build's default)"),
    Config("host_ip", "the one IPv4 address requests are accepted from (0: the build's "
           "default)"),
    Strobe("token", "write-only: the 16-byte token as a big-endian integer (byte 0 in bits "
           "127:120); a write of 0 is ignored (the build's token stays until a nonzero one)"),
    Counters("counters", "32-bit wrapping counter per reason (see `CONTROL_COUNTERS`)"),
)

#: Offsets of the request within the UDP payload (`tickwire.host.udp_control`): the payload
#: is handled in 8-byte words starting 4 bytes before it, so that the id, the token halves and
#: every operation each fall in one word.
HEADER_WORDS = 4                 # word 0: UDP length/checksum, magic, version, count; 1: id;
REQUEST_HEADER_BYTES = 28        # 2, 3: token; 4..: operations
OPERATION_BYTES = 8
TTL = 64
DONT_FRAGMENT = 0x4000


class _Step(enum.Enum, shape=3):
    IDLE = 0
    DECIDE = 1
    EXECUTE = 2
    CHECKSUM = 3
    REPLY = 4


def control_signature(address_width):
    """`ControlResponder`'s ports. Only ``bus`` depends on `address_width`: a top level that
    puts the responder's own registers in the map it masters can size the map with a stand-in
    (any object with this ``signature``) before building the responder."""
    return wiring.Signature({
        "rx": In(mac_rx_signature()),
        "tx": Out(mac_tx_signature()),
        "bus": Out(bus_signature(address_width)),
        "bus_lock": Out(1),
        "board_mac": In(48),
        "board_ip": In(32),
        "control_port": In(16),
        "host_ip": In(32),
        "token": In(8 * TOKEN_BYTES),
        "counters": Out(counter_layout(CONTROL_COUNTERS)),
    })


def _be(value, nbytes):
    """The bytes of `value`, most significant first (wire order)."""
    return [value[8 * (nbytes - 1 - i):8 * (nbytes - i)] for i in range(nbytes)]


def _const_bytes(value, nbytes):
    return [Const(b, 8) for b in value.to_bytes(nbytes, "big")]


class ControlResponder(wiring.Component):
    """The board side of the UDP control channel: the register bus master of a board without
    PCIe.

    It watches every received frame (beside the feed handler) and picks out unicast IPv4/UDP
    requests to the board's MAC, IP and control port, 802.1Q tagged or not, with or without
    IPv4 options. Each request is received whole and checked before anything touches the bus,
    in the model's order: malformed (see below), then the source address, then the token (all
    16 bytes compared at once, in a time that does not depend on their values), then the id
    against the last accepted one. An accepted request's operations then run in order on
    ``bus``, one per cycle, and the reply goes out on ``tx``: Ethernet back to the requester's
    MAC (with the request's VLAN tag, if it had one), IPv4 from the board's address (header
    checksum computed, DF set, TTL 64), UDP from the control port to the requester's port (UDP
    checksum 0: legal for IPv4). A request with the last accepted id, from the host with the
    token, is answered again from the saved reply (in block RAM) without running it again.

    Frames that are not for the board (another MAC, IP or port, not IPv4/UDP, too short to
    hold the UDP ports) are ignored; so is a frame ending with the MAC's ``bad`` flag (FCS
    error): nothing in it can be trusted, as a host's network stack drops it. A frame for the
    board whose IPv4/UDP framing is wrong (version, IHL < 5, header checksum, fragment, total
    length beyond the frame or below header + 8, UDP length below 8 or beyond the IP payload)
    is counted ``malformed`` like a bad payload (magic, version, count outside 1..64, UDP
    length not 36 + 8 * count, unknown op). Bytes after the UDP length (Ethernet padding,
    trailing IP payload) are ignored. The UDP checksum is not checked (the FCS is).

    Requests are buffered in two block RAM slots: one may wait while the other is executed or
    replied to (back-to-back requests are all served). A request arriving when both slots are
    taken is dropped after its stateless checks and counted ``busy``; it never disturbs the
    buffered ones. Addresses at or beyond ``2 ** address_width`` do not strobe the bus: reads
    return 0, writes are ignored (as the bank does for unmapped words); the reply carries
    them as the model does.

    Ports
    -----
    rx : In(MacBeat stream, always ready): every received frame
    tx : Out(MacBeat stream): replies; beats of a frame are consecutive once it has started
    bus : Out(bus_signature(address_width)): the register bus, as its master
    bus_lock : Out(1): high from two cycles before a request's first bus access until its
        last one is answered, so that a second master sharing the bus (`BusArbiter`) keeps
        off it; low while nothing is executing
    board_mac, board_ip, control_port, host_ip : In: configuration (0 = the build's value)
    token : In(128): a nonzero value loads the token (a `Strobe`: write-only)
    counters : Out(one 32-bit counter per name in CONTROL_COUNTERS)

    Latency: from the cycle the request's last beat is at ``rx`` to the cycle its reply's
    first beat is valid on ``tx``: ``n + 15`` cycles for an accepted request of ``n``
    operations, 11 cycles for a retransmission (either when no other request is in progress
    and ``tx`` is ready). The reply then takes ``ceil((70 + 8 n) / 8)`` beats, 4 bytes more
    when tagged.
    """

    def __init__(self, address_width, *, mac, ip, port, host_ip, token=bytes(TOKEN_BYTES)):
        if len(token) != TOKEN_BYTES:
            raise ValueError(f"the token is {TOKEN_BYTES} bytes")
        self.address_width = address_width
        self.defaults = {"mac": mac, "ip": ip, "port": port, "host_ip": host_ip}
        self.token_init = int.from_bytes(token, "big")
        self.registers = CONTROL_REGISTERS
        super().__init__(control_signature(address_width))

    def elaborate(self, platform):
        m = Module()
        m.submodules.requests = requests = memory.Memory(
            shape=64, depth=2 * MAX_OPERATIONS, init=[])
        m.submodules.replies = replies = memory.Memory(shape=64, depth=MAX_OPERATIONS, init=[])
        request_write = requests.write_port()
        request_read = requests.read_port()
        reply_write = replies.write_port()
        reply_read = replies.read_port()

        # Configuration, registered (0 selects the build's value).
        def effective(port, default, name):
            reg = Signal(len(port), name=name, init=default)
            m.d.sync += reg.eq(Mux(port != 0, port, default))
            return reg
        defaults = self.defaults
        board_mac = effective(self.board_mac, defaults["mac"], "eff_mac")
        board_ip = effective(self.board_ip, defaults["ip"], "eff_ip")
        control_port = effective(self.control_port, defaults["port"], "eff_port")
        host_ip = effective(self.host_ip, defaults["host_ip"], "eff_host_ip")
        token = Signal(8 * TOKEN_BYTES, init=self.token_init)
        with m.If(self.token != 0):
            m.d.sync += token.eq(self.token)
        token_wire = Cat(*_be(token, TOKEN_BYTES))   # byte i of the token in bits 8i..8i+7

        # Slots: a request waiting (pending) and the one being executed or replied to (active).
        pending = Signal()
        pending_slot = Signal()
        active = Signal()
        active_slot = Signal()

        # --- Receive, stage 0 (live beats): the VLAN tag and the IPv4 IHL ---------------------
        rx = self.rx
        lanes0 = [rx.p.data[8 * i:8 * i + 8] for i in range(BEAT_BYTES)]
        live_reg = Signal(11)
        live = wire(m, Mux(rx.p.first, 0, live_reg), "live_beat")
        with m.If(rx.valid):
            m.d.sync += live_reg.eq(Mux(live == 2047, 2047, live + 1))
        vlan = Signal()
        version_ihl = Signal(8)
        eth_lane = h.ETHERNET["ethertype"].offset & 7
        with m.If(rx.valid & (live == 1)):
            m.d.sync += [vlan.eq(Cat(lanes0[eth_lane + 1], lanes0[eth_lane])
                                 == h.ETHERTYPE_VLAN),
                         version_ihl.eq(lanes0[h.ETHERNET_LENGTH & 7])]
        with m.If(rx.valid & (live == 2) & vlan):
            m.d.sync += version_ihl.eq(lanes0[(h.ETHERNET_LENGTH + h.VLAN_LENGTH) & 7])
        ihl = version_ihl[0:4]
        ihl_eff = wire(m, Mux(ihl < 5, 5, ihl), "ihl_eff")
        ip_at = wire(m, Mux(vlan, h.ETHERNET_LENGTH + h.VLAN_LENGTH, h.ETHERNET_LENGTH),
                     "ip_at", 5)
        # The payload's aligned words start 4 bytes before the UDP payload, at P - 4 =
        # ip + 4 * IHL + 4: their beat (from 4) and lane (2 or 6), registered.
        words_at = Signal(8)
        m.d.sync += words_at.eq(ip_at + Cat(Const(0, 2), ihl_eff) + h.UDP_LENGTH - 4)
        ip_end = Signal(8)
        m.d.sync += ip_end.eq(ip_at + Cat(Const(0, 2), ihl_eff))

        # --- Stage 1 (each beat one cycle later, with the tag and IHL known) ------------------
        d_valid = Signal()
        d = Signal.like(rx.p)
        b = Signal(11)
        m.d.sync += [d_valid.eq(rx.valid), d.eq(rx.p), b.eq(live)]
        lanes = [d.data[8 * i:8 * i + 8] for i in range(BEAT_BYTES)]

        def capture(name, nbytes, untagged, tagged=None):
            """A big-endian field at frame offset `untagged` (`tagged` with a VLAN tag)."""
            reg = Signal(8 * nbytes, name=name)
            for j in range(nbytes):
                target = reg[8 * (nbytes - 1 - j):8 * (nbytes - j)]
                pu = untagged + j
                pt = pu if tagged is None else tagged + j
                if pu == pt:
                    with m.If(d_valid & (b == pu >> 3)):
                        m.d.sync += target.eq(lanes[pu & 7])
                else:
                    here = Mux(vlan, b == pt >> 3, b == pu >> 3)
                    with m.If(d_valid & here):
                        m.d.sync += target.eq(Mux(vlan, lanes[pt & 7], lanes[pu & 7]))
            return reg

        tagged_ip = h.ETHERNET_LENGTH + h.VLAN_LENGTH
        dst_mac = capture("dst_mac", 6, h.ETHERNET["dst"].offset)
        src_mac = capture("src_mac", 6, h.ETHERNET["src"].offset)
        tci = capture("tci", 2, h.ETHERNET_LENGTH + h.VLAN["tci"].offset)
        ethertype = capture("ethertype", 2, h.ETHERNET["ethertype"].offset,
                            h.ETHERNET_LENGTH + h.VLAN["ethertype"].offset)
        ip_fields = {name: capture(f"ip_{name}", h.IPV4[name].length,
                                   h.ETHERNET_LENGTH + h.IPV4[name].offset,
                                   tagged_ip + h.IPV4[name].offset)
                     for name in ("total_length", "flags_fragment", "protocol", "src", "dst")}

        # IPv4 header checksum: which 16-bit words of a beat are header words is worked out a
        # cycle ahead, from the live beat (in beat 1 only the word at 14, when untagged); then
        # each beat's words are summed, then added up (complete two cycles after a beat).
        vlan_now = Cat(lanes0[eth_lane + 1], lanes0[eth_lane]) == h.ETHERTYPE_VLAN
        header_mask = Signal(BEAT_BYTES // 2)
        masks = []
        for w in range(BEAT_BYTES // 2):
            offset = Cat(Const(2 * w, 3), live)
            later = (offset >= ip_at) & ((live < 4) | (offset < ip_end))
            masks.append(Mux(live == 1, Const(w == 3) & ~vlan_now, later))
        m.d.sync += header_mask.eq(Mux(rx.valid, Cat(*masks), 0))
        beat_sum = Signal(18)
        m.d.sync += beat_sum.eq(sum(Mux(header_mask[w], Cat(lanes[2 * w + 1], lanes[2 * w]), 0)
                                    for w in range(BEAT_BYTES // 2)))
        restart = Signal()
        m.d.sync += restart.eq(d_valid & d.first)
        checksum_sum = Signal(22)
        m.d.sync += checksum_sum.eq(Mux(restart, 0, checksum_sum) + beat_sum)

        # Frame length, on the last beat.
        frame_bytes = Signal(15)
        frame_bad = Signal()
        with m.If(d_valid & d.last):
            m.d.sync += [frame_bytes.eq(Cat(Const(0, 3), b) + sum(d.keep[i] for i in range(8))),
                         frame_bad.eq(d.bad)]

        # The aligned word ending in this beat: bytes [P - 4 + 8j, P + 4 + 8j) of the frame,
        # j = b - beat(P - 4) - 1 (word -1 holds the UDP ports).
        previous = Signal(64)
        with m.If(d_valid):
            m.d.sync += previous.eq(d.data)
        low_lane = words_at[2]       # lane 6 (else 2)
        aligned = Mux(low_lane, Cat(previous[48:], d.data[:48]), Cat(previous[16:], d.data[:16]))

        # --- Stage 2: the aligned words -----------------------------------------------------
        a_valid = Signal()
        a = Signal(64)
        rel = Signal(11)     # j + 1
        m.d.sync += [a_valid.eq(d_valid & (b >= words_at[3:])), a.eq(aligned),
                     rel.eq(b - words_at[3:])]
        a_bytes = [a[8 * i:8 * i + 8] for i in range(8)]
        src_port, dst_port = Signal(16), Signal(16)
        udp_length, magic, version = Signal(16), Signal(16), Signal(8)
        op_count = Signal(8)
        request_id = Signal(64)
        token_ok = Signal(2)
        bad_op = Signal()
        store = Signal()
        store_slot = Signal()
        slot_free = [~((pending & (pending_slot == i)) | (active & (active_slot == i)))
                     for i in range(2)]
        with m.If(a_valid):
            with m.Switch(rel):
                with m.Case(0):
                    m.d.sync += [src_port.eq(Cat(a_bytes[5], a_bytes[4])),
                                 dst_port.eq(Cat(a_bytes[7], a_bytes[6])),
                                 store.eq(slot_free[0] | slot_free[1]),
                                 store_slot.eq(~slot_free[0])]
                with m.Case(1):
                    m.d.sync += [udp_length.eq(Cat(a_bytes[1], a_bytes[0])),
                                 magic.eq(Cat(a_bytes[5], a_bytes[4])),
                                 version.eq(a_bytes[6]), op_count.eq(a_bytes[7]),
                                 bad_op.eq(0)]
                with m.Case(2):
                    m.d.sync += request_id.eq(Cat(*reversed(a_bytes)))
                with m.Case(3):
                    m.d.sync += token_ok[0].eq(a == token_wire[:64])
                with m.Case(4):
                    m.d.sync += token_ok[1].eq(a == token_wire[64:])
        op_index = wire(m, rel - (HEADER_WORDS + 1), "op_index", 11)
        is_op = wire(m, a_valid & (rel >= HEADER_WORDS + 1)
                     & (rel < HEADER_WORDS + 1 + MAX_OPERATIONS), "is_op")
        m.d.comb += [request_write.addr.eq(Cat(op_index[:6], store_slot)),
                     request_write.data.eq(a),
                     request_write.en.eq(is_op & store)]
        with m.If(is_op & (op_index < op_count) & (a_bytes[0] != READ) & (a_bytes[0] != WRITE)):
            m.d.sync += bad_op.eq(1)

        # --- Verdict: snapshot the stage-1 fields the cycle after the last beat, check them
        # the next cycle, act on the one after ------------------------------------------------
        ended = Signal()
        m.d.sync += ended.eq(d_valid & d.last)
        # Sums the checks need, from registers, a cycle ahead.
        header_bytes = Cat(Const(0, 2), ihl_eff)
        datagram_end = Signal(17)     # ip + total length
        ip_payload = Signal(signed(18))
        m.d.sync += [datagram_end.eq(ip_at + ip_fields["total_length"]),
                     ip_payload.eq(ip_fields["total_length"] - header_bytes)]
        captured = {"dst_mac": dst_mac, "src_mac": src_mac, "tci": tci, "ethertype": ethertype,
                    "vlan": vlan, "version_ihl": version_ihl, "ip_at": ip_at, "bad": frame_bad,
                    "frame_bytes": frame_bytes, "words_at": words_at,
                    "datagram_end": datagram_end, "ip_payload": ip_payload, **ip_fields}
        snap = {n: Signal(v.shape(), name=f"snap_{n}") for n, v in captured.items()}
        with m.If(ended):
            m.d.sync += [snap[n].eq(v) for n, v in captured.items()]
        checking = Signal()
        m.d.sync += checking.eq(ended)
        # The header checksum is complete (and still this frame's) when checking.
        checksum_fold = Signal(17)
        with m.If(checking):
            m.d.sync += checksum_fold.eq(checksum_sum[:16] + checksum_sum[16:])

        s_ihl = snap["version_ihl"][0:4]
        checks = {
            "for_us": (~snap["bad"]
                       & (snap["frame_bytes"] >= snap["words_at"])     # the UDP ports
                       & (snap["dst_mac"] == board_mac)
                       & (snap["ethertype"] == h.ETHERTYPE_IPV4)
                       & (snap["protocol"] == h.IP_PROTOCOL_UDP)
                       & (snap["dst"] == board_ip) & (dst_port == control_port)),
            "framing": ((snap["version_ihl"][4:] == 4) & (s_ihl >= 5)
                        & ((snap["flags_fragment"]
                            & (h.IP_MORE_FRAGMENTS | h.IP_FRAGMENT_OFFSET_MASK)) == 0)
                        & (snap["ip_payload"] >= h.UDP_LENGTH)
                        & (snap["frame_bytes"] >= snap["datagram_end"])
                        & (udp_length >= h.UDP_LENGTH)
                        & (udp_length <= snap["ip_payload"])),
            "payload": ((udp_length == h.UDP_LENGTH + REQUEST_HEADER_BYTES
                         + Cat(Const(0, 3), op_count))
                        & (op_count >= 1) & (op_count <= MAX_OPERATIONS)
                        & (magic == MAGIC) & (version == VERSION) & ~bad_op),
            "source": snap["src"] == host_ip,
            "token": token_ok.all(),
        }
        checked = {name: Signal(name=f"check_{name}") for name in checks}
        verdict = Signal()
        m.d.sync += verdict.eq(checking)
        with m.If(checking):
            m.d.sync += [checked[n].eq(v) for n, v in checks.items()]
        mine = verdict & checked["for_us"]
        checksum_ok = (checksum_fold[:16] + checksum_fold[16])[:16] == 0xFFFF
        malformed = mine & ~(checked["framing"] & checked["payload"] & checksum_ok)
        wrong_source = mine & ~malformed & ~checked["source"]
        bad_token = mine & ~malformed & ~wrong_source & ~checked["token"]
        good = wire(m, mine & ~malformed & ~wrong_source & ~bad_token, "good")
        count(m, self.counters, "malformed", malformed)
        count(m, self.counters, "wrong_source", wrong_source)
        count(m, self.counters, "bad_token", bad_token)

        # The waiting request's fields, taken with the checks (the snapshot may change next).
        fields = {"mac": snap["src_mac"], "ip": snap["src"], "port": src_port,
                  "vlan": snap["vlan"], "tci": snap["tci"], "id": request_id,
                  "count": op_count[:7]}
        candidate = {n: Signal(len(v), name=f"candidate_{n}") for n, v in fields.items()}
        candidate_store = Signal()
        candidate_slot = Signal()
        with m.If(checking):
            m.d.sync += [candidate[n].eq(v) for n, v in fields.items()]
            m.d.sync += [candidate_store.eq(store), candidate_slot.eq(store_slot)]
        busy = good & (~candidate_store | pending)
        count(m, self.counters, "busy", busy)
        waiting = {n: Signal(len(v), name=f"pending_{n}") for n, v in fields.items()}
        with m.If(good & ~busy):
            m.d.sync += [pending.eq(1), pending_slot.eq(candidate_slot)]
            m.d.sync += [waiting[n].eq(candidate[n]) for n in fields]

        # --- Execution and reply -----------------------------------------------------------
        current = {n: Signal(len(v), name=f"active_{n}") for n, v in fields.items()}
        source_mac = Signal(48)
        source_ip = Signal(32)
        source_port = Signal(16)
        last_id = Signal(64)
        last_count = Signal(7)
        have_last = Signal()
        step = Signal(_Step)
        accepted = Signal()
        retransmitted = Signal()
        replayed = Signal()
        count(m, self.counters, "accepted", accepted)
        count(m, self.counters, "retransmitted", retransmitted)
        count(m, self.counters, "replayed", replayed)

        issue = Signal(7)         # next operation to read from the request slot
        m.d.comb += request_read.addr.eq(Cat(issue[:6], active_slot))
        # Pipeline: the RAM's word (1), the bus strobes (2), the read data and the record (3).
        fetched = Signal()
        fetched_index = Signal(6)
        on_bus = Signal()
        on_bus_word = Signal(64)
        on_bus_index = Signal(6)
        on_bus_read = Signal()
        on_bus_mapped = Signal()
        finished = Signal()
        m.d.sync += [fetched.eq(0), on_bus.eq(0), finished.eq(0),
                     self.bus.r_stb.eq(0), self.bus.w_stb.eq(0)]
        word = request_read.data
        op = word[:8]
        address = Cat(word[24:32], word[16:24], word[8:16])
        mapped = (address >> self.address_width) == 0 if self.address_width < 24 else Const(1)
        with m.If(fetched):
            m.d.sync += [self.bus.addr.eq(address), self.bus.w_data.eq(Cat(*_be(word[32:], 4))),
                         self.bus.r_stb.eq((op == READ) & mapped),
                         self.bus.w_stb.eq((op == WRITE) & mapped),
                         on_bus.eq(1), on_bus_word.eq(word), on_bus_index.eq(fetched_index),
                         on_bus_read.eq(op == READ), on_bus_mapped.eq(mapped)]
        answered = Signal()
        answered_word = Signal(64)
        answered_index = Signal(6)
        answered_read = Signal()
        answered_mapped = Signal()
        m.d.sync += [answered.eq(on_bus), answered_word.eq(on_bus_word),
                     answered_index.eq(on_bus_index), answered_read.eq(on_bus_read),
                     answered_mapped.eq(on_bus_mapped)]
        read_data = Mux(answered_mapped, Cat(*_be(self.bus.r_data, 4)), 0)
        m.d.comb += [reply_write.addr.eq(answered_index),
                     reply_write.data.eq(Cat(answered_word[:8] | REPLY, answered_word[8:32],
                                             Mux(answered_read, read_data,
                                                 answered_word[32:]))),
                     reply_write.en.eq(answered)]
        with m.If(answered & (answered_index == last_count - 1)):
            m.d.sync += finished.eq(1)

        # The reply's IPv4 header checksum, in three steps.
        total_length = wire(m, Cat(Const(0, 3), last_count)
                            + 20 + h.UDP_LENGTH + REQUEST_HEADER_BYTES, "reply_total_length", 16)
        checksum_terms = Signal(20)
        checksum_folded = Signal(17)
        reply_checksum = Signal(16)
        m.d.sync += [
            checksum_terms.eq(0x4500 + total_length + DONT_FRAGMENT + (TTL << 8 | h.IP_PROTOCOL_UDP)
                              + source_ip[16:] + source_ip[:16]
                              + current["ip"][16:] + current["ip"][:16]),
            checksum_folded.eq(checksum_terms[:16] + checksum_terms[16:]),
            reply_checksum.eq(~(checksum_folded[:16] + checksum_folded[16])),
        ]
        wait = Signal(2)

        # Reply beats: the header, then the records, 2 bytes (tagged: 6) into a beat.
        untagged = [*_be(current["mac"], 6), *_be(source_mac, 6),
                    *_const_bytes(h.ETHERTYPE_IPV4, 2)]
        tagged = [*_be(current["mac"], 6), *_be(source_mac, 6),
                  *_const_bytes(h.ETHERTYPE_VLAN, 2), *_be(current["tci"], 2),
                  *_const_bytes(h.ETHERTYPE_IPV4, 2)]
        ip_and_up = [Const(0x45, 8), Const(0, 8), *_be(total_length, 2), *_const_bytes(0, 2),
                     *_const_bytes(DONT_FRAGMENT, 2), Const(TTL, 8),
                     Const(h.IP_PROTOCOL_UDP, 8), *_be(reply_checksum, 2),
                     *_be(source_ip, 4), *_be(current["ip"], 4),
                     *_be(source_port, 2), *_be(current["port"], 2),
                     *_be(total_length - 20, 2), *_const_bytes(0, 2),
                     *_const_bytes(MAGIC, 2), Const(VERSION, 8), Cat(last_count, Const(0, 1)),
                     *_be(last_id, 8), *_const_bytes(0, TOKEN_BYTES)]
        headers = {0: untagged + ip_and_up, 1: tagged + ip_and_up}
        out_beat = Signal(7)
        previous_record = Signal(64)
        record = reply_read.data
        tx = self.tx
        load = wire(m, ~tx.valid | tx.ready, "load")
        r_vlan = current["vlan"]
        # Beat bounds, registered before the reply starts (its inputs are set by then): the
        # reply's decisions come from registers, only gated by `tx.ready`.
        records_beat = Signal(4)
        last_beat = Signal(8)
        m.d.sync += [records_beat.eq(Mux(r_vlan, 9, 8)), last_beat.eq(records_beat + last_count)]
        next_record = Signal(7)
        is_last = wire(m, out_beat == last_beat, "is_last")
        has_head = wire(m, (out_beat >= records_beat) & (out_beat < last_beat), "has_head")
        sending = wire(m, out_beat <= last_beat, "sending")
        beat_data = Signal(64)
        for tag, frame_header in headers.items():
            split = len(frame_header) % BEAT_BYTES      # header bytes in the records' first beat
            base = len(frame_header) // BEAT_BYTES
            with m.If(r_vlan == tag):
                with m.Switch(out_beat):
                    for k in range(base):
                        with m.Case(k):
                            m.d.comb += beat_data.eq(Cat(*frame_header[8 * k:8 * k + 8]))
                    with m.Case(base):
                        m.d.comb += beat_data.eq(Cat(*frame_header[8 * base:],
                                                     record[:8 * (8 - split)]))
                    with m.Default():
                        m.d.comb += beat_data.eq(Cat(previous_record[8 * (8 - split):],
                                                     record[:8 * (8 - split)]))
        tail_keep = Mux(r_vlan, 0b11, 0b111111)
        consume = wire(m, (step == _Step.REPLY) & load & has_head, "consume")
        m.d.comb += [reply_read.addr.eq(Mux(step == _Step.REPLY, next_record, 0)),
                     reply_read.en.eq(consume | (step == _Step.CHECKSUM))]
        with m.If(consume):
            m.d.sync += [previous_record.eq(record), next_record.eq(next_record + 1)]

        m.d.comb += self.bus_lock.eq((step == _Step.DECIDE) | (step == _Step.EXECUTE))
        with m.Switch(step):
            with m.Case(_Step.IDLE):
                with m.If(pending):
                    m.d.sync += [pending.eq(0), active.eq(1), active_slot.eq(pending_slot),
                                 source_mac.eq(board_mac), source_ip.eq(board_ip),
                                 source_port.eq(control_port), step.eq(_Step.DECIDE)]
                    m.d.sync += [current[n].eq(waiting[n]) for n in fields]
            with m.Case(_Step.DECIDE):
                m.d.sync += [issue.eq(0), wait.eq(0)]
                with m.If(have_last & (current["id"] == last_id)):
                    m.d.comb += retransmitted.eq(1)
                    m.d.sync += step.eq(_Step.CHECKSUM)
                with m.Elif(current["id"] <= last_id):
                    m.d.comb += replayed.eq(1)
                    m.d.sync += [active.eq(0), step.eq(_Step.IDLE)]
                with m.Else():
                    m.d.sync += [last_id.eq(current["id"]), last_count.eq(current["count"]),
                                 have_last.eq(0), step.eq(_Step.EXECUTE)]
            with m.Case(_Step.EXECUTE):
                with m.If(issue < last_count):
                    m.d.sync += [issue.eq(issue + 1), fetched.eq(1),
                                 fetched_index.eq(issue)]
                with m.If(finished):
                    m.d.comb += accepted.eq(1)
                    m.d.sync += [have_last.eq(1), step.eq(_Step.CHECKSUM)]
            with m.Case(_Step.CHECKSUM):
                m.d.sync += wait.eq(wait + 1)
                with m.If(wait == 2):
                    m.d.sync += [out_beat.eq(0), next_record.eq(1), step.eq(_Step.REPLY)]
            with m.Case(_Step.REPLY):
                with m.If(load):
                    with m.If(sending):
                        m.d.sync += [tx.valid.eq(1), tx.p.data.eq(beat_data),
                                     tx.p.keep.eq(Mux(is_last, tail_keep, 0xFF)),
                                     tx.p.first.eq(out_beat == 0),
                                     tx.p.last.eq(is_last), tx.p.bad.eq(0),
                                     out_beat.eq(out_beat + 1)]
                    with m.Else():
                        m.d.sync += [tx.valid.eq(0), active.eq(0), step.eq(_Step.IDLE)]
        return m
