"""The UDP control channel at the frame level: which frames reach the reference model, and a
harness running `tickwire.hdl.net.control.ControlResponder` in Amaranth's simulator.

`ControlFrameModel` puts the frame-level rules of the gateware responder (its docstring) in
front of `tickwire.sim.nic_control.ControlEndpoint`, which alone decides what a request does:
frames not for the board and frames with the MAC's bad flag are ignored; a frame for the board
whose IPv4/UDP framing is wrong is counted ``malformed``; anything else hands its UDP payload
(the UDP length's worth) and source address to the endpoint.
"""

import ipaddress
import random
from typing import NamedTuple

from amaranth.sim import Simulator

from tickwire.hdl.net import headers as h
from tickwire.hdl.net.control import ControlDefaults
from tickwire.hdl.net.mac import MacBeat
from tickwire.sim.frames import beats, ones_complement_sum
from tickwire.sim.nic_control import ControlEndpoint
from tickwire.sim.records import unpack

__all__ = ["ControlFrameModel", "ControlRun", "Frame", "WordBus", "run_control"]


def _u(data, offset, length):
    return int.from_bytes(data[offset:offset + length], "big")


class WordBus:
    """A register file of 32-bit words for the model (``read_word``/``write_word``): words at
    or beyond ``2 ** address_width`` read 0 and ignore writes, as the bank's unmapped words."""

    def __init__(self, address_width, words=None):
        self.address_width = address_width
        self.words = dict(words or {})
        self.writes = []

    def read_word(self, address):
        return self.words.get(address, 0) if address >> self.address_width == 0 else 0

    def write_word(self, address, value):
        if address >> self.address_width == 0:
            self.writes.append((address, value))
            self.words[address] = value


class Reply(NamedTuple):
    payload: bytes
    mac: bytes       # the requester's
    ip: int
    port: int
    tci: int | None  # the request's 802.1Q TCI, None if untagged


class ControlFrameModel:
    """The board's control endpoint seen from the wire: ``handle_frame(frame, bad)`` returns
    the expected `Reply` or None."""

    def __init__(self, bus, token, *, mac, ip, port, host_ip):
        self.mac, self.ip, self.port = mac, ip, port
        self.endpoint = ControlEndpoint(bus, token, str(ipaddress.IPv4Address(host_ip)))

    @property
    def counters(self):
        return self.endpoint.counters

    def handle_frame(self, frame, bad=False):
        if bad or len(frame) < h.ETHERNET_LENGTH:
            return None
        ethertype, ip, tci = _u(frame, 12, 2), h.ETHERNET_LENGTH, None
        if ethertype == h.ETHERTYPE_VLAN:
            ip += h.VLAN_LENGTH
            tci, ethertype = _u(frame, 14, 2), _u(frame, 16, 2)
        if len(frame) <= ip:
            return None
        ihl = frame[ip] & 0xF
        header = 4 * max(ihl, 5)
        udp = ip + header
        if len(frame) < udp + 4:
            return None         # too short to say where it goes
        if (_u(frame, 0, 6) != self.mac or ethertype != h.ETHERTYPE_IPV4
                or frame[ip + 9] != h.IP_PROTOCOL_UDP or _u(frame, ip + 16, 4) != self.ip
                or _u(frame, udp + 2, 2) != self.port):
            return None
        total = _u(frame, ip + 2, 2)
        udp_length = _u(frame, udp + 4, 2) if len(frame) >= udp + 6 else 0
        framing = (frame[ip] >> 4 == 4 and ihl >= 5
                   and ones_complement_sum(frame[ip:ip + header]) == 0xFFFF
                   and _u(frame, ip + 6, 2) & (h.IP_MORE_FRAGMENTS | h.IP_FRAGMENT_OFFSET_MASK)
                   == 0
                   and total >= header + h.UDP_LENGTH and len(frame) >= ip + total
                   and h.UDP_LENGTH <= udp_length <= total - header)
        if not framing:
            self.counters["malformed"] += 1
            return None
        source = _u(frame, ip + 12, 4)
        payload = frame[udp + h.UDP_LENGTH:udp + udp_length]
        reply = self.endpoint.handle(payload, str(ipaddress.IPv4Address(source)))
        if reply is None:
            return None
        return Reply(reply, frame[6:12], source, _u(frame, udp, 2), tci)


class Frame(NamedTuple):
    data: bytes
    bad: bool = False
    idle_after: int = 0           # idle cycles after the frame (0 = back to back)
    wait_replies: int | None = None   # then idle until this many replies have left tx


class ControlRun(NamedTuple):
    replies: list         # reply frames (bytes), in order
    writes: list          # (address, data) strobed on the bus, in order
    words: dict           # the register file afterwards
    counters: dict
    latencies: list       # per reply: cycles from the last beat of the latest frame before it
    cycles: int


def run_control(dut, frames, words=None, *, ready=1.0, seed=0, settle=100, timeout=4000,
                config=None, vcd=None):
    """Present `frames` at rx of a `ControlResponder`, a register file (`words`, address ->
    value) answering its bus; tx ready with probability `ready` each cycle (or `ready(cycle)`).

    The tx stream is checked on the way (first/last/keep; a frame's beats are consecutive once
    it has started). After the frames, the run idles until `settle` cycles have passed with
    nothing on tx."""
    words = dict(words or {})
    writes, replies, latencies, state = [], [], [], {}
    rng = random.Random(seed)
    ready_at = ready if callable(ready) else (lambda _: rng.random() < ready)
    bus = getattr(dut, "bus", None)     # None: the DUT holds its own register bank
    keep_at = MacBeat.as_shape()["keep"].offset

    async def register_file(ctx):
        async for _, _, r_stb, addr, w_stb, w_data in ctx.tick().sample(
                bus.r_stb, bus.addr, bus.w_stb, bus.w_data):
            if w_stb:
                words[addr] = w_data
                writes.append((addr, w_data))
            if r_stb:
                ctx.set(bus.r_data, words.get(addr, 0))

    async def testbench(ctx):
        for name, value in (config or {}).items():
            ctx.set(getattr(dut, name), value)
        tx = {"frame": bytearray(), "in_frame": False, "cycle": 0, "last_end": None,
              "quiet": 0}

        async def step(beat=None):
            cycle = tx["cycle"]
            ctx.set(dut.rx.valid, beat is not None)
            if beat is not None:
                ctx.set(dut.rx.payload.as_value(), beat)
            take = bool(ready_at(cycle))
            ctx.set(dut.tx.ready, take)
            valid = ctx.get(dut.tx.valid)
            if tx["in_frame"] and not valid:
                raise AssertionError(f"cycle {cycle}: tx frame interrupted (valid dropped)")
            tx["quiet"] = 0 if valid else tx["quiet"] + 1
            if valid and take:
                p = ctx.get(dut.tx.payload)
                if p.first != (not tx["in_frame"]):
                    raise AssertionError(f"cycle {cycle}: first flag out of place")
                if not tx["in_frame"]:
                    latencies.append(None if tx["last_end"] is None
                                     else cycle - tx["last_end"])
                n = bin(p.keep).count("1")
                if p.keep != (1 << n) - 1 or (n != 8 and not p.last) or p.bad:
                    raise AssertionError(f"cycle {cycle}: bad keep {p.keep:#x} or bad flag")
                tx["frame"] += p.data.to_bytes(8, "little")[:n]
                tx["in_frame"] = not p.last
                if p.last:
                    replies.append(bytes(tx["frame"]))
                    tx["frame"] = bytearray()
            if beat is not None and (beat >> last_at) & 1:
                tx["last_end"] = cycle
            await ctx.tick()
            tx["cycle"] += 1

        last_at = MacBeat.as_shape()["last"].offset
        for frame in frames:
            for data, keep, first, last, bad in beats(frame.data, frame.bad):
                await step(data | keep << keep_at | first << (keep_at + 8)
                           | last << last_at | bad << (last_at + 1))
            for _ in range(frame.idle_after):
                await step()
            if frame.wait_replies is not None:
                deadline = tx["cycle"] + timeout
                while len(replies) < frame.wait_replies or tx["in_frame"]:
                    if tx["cycle"] > deadline:
                        raise AssertionError(f"{len(replies)} replies, {frame.wait_replies} "
                                             "expected")
                    await step()
        tx["quiet"] = 0
        while tx["quiet"] < settle or tx["in_frame"]:
            await step()
        state["counters"] = unpack(dut.counters.shape(), ctx.get(dut.counters.as_value()))
        state["cycles"] = tx["cycle"]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    if bus is not None:
        sim.add_process(register_file)
    sim.add_testbench(testbench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return ControlRun(replies, writes, words, state["counters"], latencies, state["cycles"])


# Frames and replies through scapy (an independent view of the wire), for tests and benches.

Board = ControlDefaults


def _mac_text(value):
    return ":".join(f"{b:02x}" for b in value.to_bytes(6, "big"))


def _ip_text(value):
    return str(ipaddress.IPv4Address(value))


def request_frame(payload, board, *, src_ip=None, src_port=40000, src_mac=0x020000000001,
                  dst_mac=None, dst_ip=None, dst_port=None, vlan=None, options=0, flags=0,
                  frag=0, ip_checksum=None, udp_length=None, total_length=None, trailer=b""):
    """A request frame built by scapy (IPv4 and UDP checksums its own unless forced)."""
    from scapy.layers.inet import IP, UDP, IPOption_NOP
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.packet import Raw

    frame = Ether(dst=_mac_text(board.mac if dst_mac is None else dst_mac),
                  src=_mac_text(src_mac))
    if vlan is not None:
        frame = frame / Dot1Q(prio=vlan >> 13, dei=(vlan >> 12) & 1, vlan=vlan & 0xFFF)
    ip = IP(src=_ip_text(board.host_ip if src_ip is None else src_ip),
            dst=_ip_text(board.ip if dst_ip is None else dst_ip), flags=flags, frag=frag,
            options=[IPOption_NOP()] * (4 * options), chksum=ip_checksum, len=total_length)
    udp = UDP(sport=src_port, dport=board.port if dst_port is None else dst_port,
              len=udp_length)
    return bytes(frame / ip / udp / Raw(payload)) + trailer


def check_reply(frame, expected, board):
    """Check a reply frame with scapy against the model's `Reply`; returns its payload."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Dot1Q, Ether

    e = Ether(frame)
    assert e.dst == _mac_text(int.from_bytes(expected.mac, "big")), e.dst
    assert e.src == _mac_text(board.mac), e.src
    header = h.ETHERNET_LENGTH
    if expected.tci is None:
        assert Dot1Q not in e
    else:
        tag = e[Dot1Q]
        assert (tag.prio << 13 | tag.dei << 12 | tag.vlan) == expected.tci
        header += h.VLAN_LENGTH
    ip = e[IP]
    assert (ip.version, ip.ihl, ip.ttl, ip.proto, ip.frag) == (4, 5, 64, h.IP_PROTOCOL_UDP, 0)
    assert ip.src == _ip_text(board.ip) and ip.dst == _ip_text(expected.ip)
    raw_header = frame[header:header + 20]
    assert ones_complement_sum(raw_header) == 0xFFFF, "IPv4 header checksum"
    rebuilt = ip.copy()
    del rebuilt.chksum
    assert IP(bytes(rebuilt)).chksum == ip.chksum
    assert ip.len == len(frame) - header
    udp = e[UDP]
    assert (udp.sport, udp.dport, udp.chksum) == (board.port, expected.port, 0)
    payload = bytes(udp.payload)
    assert udp.len == h.UDP_LENGTH + len(payload)
    assert payload == expected.payload
    return payload


def model_replies(frames, board, words, address_width):
    """The model's replies to `frames` (in order, dropped ones left out), its bus and counters."""
    bus = WordBus(address_width, words)
    model = ControlFrameModel(bus, board.token, mac=board.mac, ip=board.ip, port=board.port,
                              host_ip=board.host_ip)
    replies = [r for f in frames if (r := model.handle_frame(f.data, f.bad)) is not None]
    return replies, bus, dict(model.counters)
