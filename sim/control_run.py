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
from tickwire.hdl.net.control import CONTROL_COUNTERS
from tickwire.sim.feed_run import Frame, schedule
from tickwire.sim.frames import ones_complement_sum
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


class ControlRun(NamedTuple):
    replies: list         # reply frames (bytes), in order
    writes: list          # (address, data) strobed on the bus, in order
    words: dict           # the register file afterwards
    counters: dict
    latencies: list       # per reply: cycles from its request's last beat to its first beat
    cycles: int


def run_control(dut, frames, words=None, *, ready=1.0, seed=0, drain=400, config=None,
                vcd=None):
    """Present `frames` (`Frame`s) at rx of a `ControlResponder`, a register file (`words`,
    address -> value) answering its bus, tx ready with probability `ready` each cycle.

    The tx stream is checked on the way: a frame's beats must be consecutive once started.
    Latencies are measured from the last beat of the most recent frame before each reply."""
    cycles, starts = schedule(frames)
    ends = [start + len(range(0, len(f.data), 8)) - 1 for f, start in zip(frames, starts,
                                                                          strict=True)]
    words = dict(words or {})
    writes, replies, latencies, state = [], [], [], {}
    rng = random.Random(seed)
    bus = dut.bus

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
        frame, in_frame = bytearray(), False
        total = len(cycles) + drain
        cycle = 0
        while cycle < total:
            beat = cycles[cycle] if cycle < len(cycles) else None
            ctx.set(dut.rx.valid, beat is not None)
            if beat is not None:
                ctx.set(dut.rx.payload.as_value(), beat)
            take = rng.random() < ready
            ctx.set(dut.tx.ready, take)
            valid = ctx.get(dut.tx.valid)
            if in_frame and not valid:
                raise AssertionError(f"cycle {cycle}: tx frame interrupted (valid dropped)")
            if valid and take:
                p = ctx.get(dut.tx.payload)
                keep = p.keep
                if p.first != (not in_frame):
                    raise AssertionError(f"cycle {cycle}: first flag out of place")
                if not in_frame:
                    before = [e for e in ends if e < cycle]
                    latencies.append(cycle - max(before) if before else None)
                n = bin(keep).count("1")
                if keep != (1 << n) - 1 or (n != 8 and not p.last):
                    raise AssertionError(f"cycle {cycle}: bad keep {keep:#x}")
                frame += p.data.to_bytes(8, "little")[:n]
                in_frame = not p.last
                if p.last:
                    replies.append(bytes(frame))
                    frame = bytearray()
            await ctx.tick()
            cycle += 1
            if cycle == total and in_frame:
                total += 100       # let a reply in progress finish
        state["counters"] = unpack(dut.counters.shape(), ctx.get(dut.counters.as_value()))
        state["cycles"] = cycle

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(register_file)
    sim.add_testbench(testbench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    assert set(state["counters"]) == set(CONTROL_COUNTERS)
    return ControlRun(replies, writes, words, state["counters"], latencies, state["cycles"])
