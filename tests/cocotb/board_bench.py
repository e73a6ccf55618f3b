"""cocotb bench of the Verilated board top level (`BoardCore`: RGMII MAC + TickToTrade), the
ECPIX-5 build's parameters, at the board's clocks (core 62.5 MHz, RGMII 125 MHz).

The PHY is cocotbext-eth's `RgmiiSource` and `RgmiiSink`; market data frames are built with
scapy and go in on the RGMII pins; order frames are taken off the RGMII transmit pins, their
FCS checked by cocotbext-eth and zlib, then parsed by scapy (IPv4 and TCP checksums
recomputed) and their OUCH 5.0 Enter Order decoded with the field table of the specification
(section 2.1). The host's own driver programs the core over the register bus.
"""

import os
import struct
import zlib

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer
from cocotbext.eth import GmiiFrame, RgmiiSink, RgmiiSource
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tickwire.bitstreams.ecpix5 import ECPIX5_PARAMETERS
from tickwire.bitstreams.plan import CONTROL_PARAMETERS, board_register_map
from tickwire.host import api
from tickwire.host import udp_control as wire
from tickwire.host.device import Device
from tickwire.sim import itch
from tickwire.sim import moldudp64 as mold
from tickwire.sim.scenario import FEED_GROUP_A, FEED_PORT
from tickwire.sim.t2t_bench import order_section
from tickwire.sim.t2t_run import configure_and_arm

IDENTITY = int(os.environ["TICKWIRE_IDENTITY"], 16)
TOKEN = bytes.fromhex(os.environ["TICKWIRE_TOKEN"])
CORE_NS = float(os.environ.get("CORE_NS", "16"))
SESSION = {"sequence": 1000, "ack": 77, "window": 65535}
ENTER_ORDER = struct.Struct(">cIcI8sqccccc14sH")   # OUCH 5.0 Enter Order, type 'O'
CONFIG = """
[[symbol]]
name = "AAPL"
locate = 1

[[strategy.taker]]
symbol = "AAPL"
buy_at_or_below = 100.00
sell_at_or_above = 100.50
quantity = 300

[risk]
slot_throttle = { interval_cycles = 1, burst = 100 }
global_throttle = { interval_cycles = 1, burst = 100 }

[risk.default]
max_quantity = 1000
max_notional = 1000000
collar_bps = 50
position_limit = 100000

""" + order_section("BOARD1")


class TB:
    def __init__(self, dut):
        self.dut = dut
        cocotb.start_soon(Clock(dut.clk, CORE_NS, unit="ns").start())
        cocotb.start_soon(Clock(dut.clk125, 8, unit="ns").start())
        cocotb.start_soon(self._late_clocks())
        self.source = RgmiiSource(dut.rgmii__rxd, dut.rgmii__rx_ctl, dut.rgmii__rx_clk, dut.rst)
        self.sink = RgmiiSink(dut.rgmii__txd, dut.rgmii__tx_ctl, dut.rgmii__tx_clk, dut.rst)

    async def _late_clocks(self):
        await Timer(2, unit="ns")
        cocotb.start_soon(Clock(self.dut.clk125_90, 8, unit="ns").start())
        await Timer(1.3, unit="ns")
        cocotb.start_soon(Clock(self.dut.rgmii__rx_clk, 8, unit="ns").start())

    async def reset(self):
        dut = self.dut
        dut.rst.value = 1
        dut.bus__r_stb.value = 0
        dut.bus__w_stb.value = 0
        await ClockCycles(dut.clk, 8)
        dut.rst.value = 0
        await ClockCycles(dut.clk, 8)

    async def read_word(self, address):
        dut = self.dut
        dut.bus__addr.value, dut.bus__r_stb.value = address, 1
        await RisingEdge(dut.clk)
        dut.bus__r_stb.value = 0
        await RisingEdge(dut.clk)
        return int(dut.bus__r_data.value)

    async def write_word(self, address, value):
        dut = self.dut
        dut.bus__addr.value, dut.bus__w_data.value, dut.bus__w_stb.value = address, value, 1
        await RisingEdge(dut.clk)
        dut.bus__w_stb.value = 0

    async def device(self):
        regs = board_register_map(ECPIX5_PARAMETERS)
        device = await Device.open(self, regs, identity=IDENTITY)
        await configure_and_arm(device, CONFIG, SESSION, "board.toml")
        return device

    async def frames_out(self, count, timeout_us=40):
        """`count` frames from the transmit pins (FCS checked, stripped)."""
        frames = []
        for _ in range(count):
            frame = await cocotb.triggers.with_timeout(self.sink.recv(), timeout_us, "us")
            assert frame.error is None or not any(frame.error)
            assert frame.check_fcs()
            raw = bytes(frame.get_payload(strip_fcs=False))
            assert zlib.crc32(raw) == 0x2144DF1C
            frames.append(raw[:-4])
        return frames


def feed_frame(sequence, messages):
    payload = mold.encode_packet(b"BOARDSESS1", sequence, messages)
    return bytes(Ether(dst="01:00:5e:36:0c:6f", src="02:00:00:00:00:09")
                 / IP(dst=".".join(str(FEED_GROUP_A >> s & 255) for s in (24, 16, 8, 0)),
                      src="10.1.2.3") / UDP(sport=40000, dport=FEED_PORT) / Raw(payload))


def add(ref, side, shares, price):
    return itch.encode(b"A", stock_locate=1, order_ref=ref, side=side, shares=shares,
                       stock="AAPL", price=price)


def decode_order(frame):
    packet = Ether(frame)
    rebuilt = Ether(frame)
    del rebuilt[IP].chksum
    del rebuilt[TCP].chksum
    rebuilt = Ether(bytes(rebuilt))
    assert packet[IP].chksum == rebuilt[IP].chksum, "IPv4 header checksum"
    assert packet[TCP].chksum == rebuilt[TCP].chksum, "TCP checksum"
    payload = bytes(packet[TCP].payload)
    assert payload[:3] == struct.pack(">Hc", 48, b"U")
    names = ("type", "user_ref", "side", "quantity", "symbol", "price", "tif", "display",
             "capacity", "sweep", "cross", "clordid", "appendage")
    return packet[TCP], dict(zip(names, ENTER_ORDER.unpack(payload[3:50]), strict=True))


async def send_feed(tb, messages, first_sequence=1):
    for sequence, message in enumerate(messages, start=first_sequence):
        await tb.source.send(GmiiFrame.from_payload(feed_frame(sequence, [message])))
    await tb.source.wait()


@cocotb.test()
async def feed_frames_on_rgmii_give_order_frames_on_rgmii(dut):
    tb = TB(dut)
    await tb.reset()
    assert int(dut.armed.value) == 0 and int(dut.activity.value) == 0
    device = await tb.device()
    await ClockCycles(dut.clk, 2)
    assert int(dut.armed.value) == 1
    await send_feed(tb, [
        add(1, b"B", 500, 99_0000),      # no trigger
        add(2, b"S", 100, 100_0000),     # ask 100.00 <= 100.00: buy 300 @ 100.00
        add(3, b"B", 700, 100_5000),     # bid 100.50 >= 100.50: sell 300 @ 100.50
    ])
    frames = await tb.frames_out(2)
    expected = [(b"B", 300, 100_0000), (b"S", 300, 100_5000)]
    sequence = SESSION["sequence"]
    for k, (frame, (side, quantity, price)) in enumerate(zip(frames, expected, strict=True)):
        tcp, order = decode_order(frame)
        assert frame[:6] == bytes.fromhex("020000000002")
        assert tcp.seq == sequence and tcp.ack == SESSION["ack"]
        sequence += 50
        assert (order["type"], order["user_ref"], order["side"], order["quantity"],
                order["symbol"], order["price"]) == (b"O", k + 1, side, quantity, b"AAPL    ",
                                                      price)
        assert order["clordid"] == b"BOARD1" + f"{k + 1:08X}".encode()
    assert int(dut.activity.value) == 1
    counters = await device.counters()
    assert counters["feed.counters.udp.accepted"] == 3, counters
    assert [e["sent"] for e in await device.drain("order.log")] == [1, 1]
    # a frame with a wrong FCS and a runt (30 bytes with a right FCS): counted by the MAC
    good = feed_frame(9, [add(9, b"B", 1, 1_0000)])
    fcs = zlib.crc32(good).to_bytes(4, "little")
    await tb.source.send(GmiiFrame.from_raw_payload(good + bytes(b ^ 0xFF for b in fcs)))
    await tb.source.send(GmiiFrame.from_raw_payload(
        good[:30] + zlib.crc32(good[:30]).to_bytes(4, "little")))
    await tb.source.wait()
    await ClockCycles(dut.clk, 100)
    counters = await device.counters("mac.")
    mac = {k.removeprefix("mac.counters."): v for k, v in counters.items()
           if k.startswith("mac.")}
    assert mac == {"rx_frames": 5, "rx_bad_fcs": 1, "rx_runts": 1, "rx_errors": 0,
                   "rx_bad_preamble": 0, "rx_overflows": 0, "tx_frames": 2,
                   "tx_underruns": 0}, mac


@cocotb.test()
async def after_a_kill_no_order_leaves_the_pins(dut):
    tb = TB(dut)
    await tb.reset()
    device = await tb.device()
    await api.kill(device)
    await ClockCycles(dut.clk, 4)
    assert int(dut.killed.value) == 1 and int(dut.armed.value) == 0
    await send_feed(tb, [add(11, b"S", 100, 99_0000)])
    await ClockCycles(dut.clk, 400)
    assert tb.sink.empty()
    assert (await device.counters())["risk.counters.intents"] == 1
    await api.clear_kill(device)
    await api.arm(device)
    assert int(dut.killed.value) == 0
    await send_feed(tb, [add(12, b"S", 100, 98_0000)], first_sequence=2)
    (frame,) = await tb.frames_out(1)
    _, order = decode_order(frame)
    assert (order["side"], order["price"]) == (b"B", 98_0000)


class RgmiiControl:
    """A `Device` transport over the board's UDP control channel on the RGMII pins: each
    register access is one request frame (scapy, the host's own `udp_control` codec) into the
    PHY model and one reply frame out of it."""

    def __init__(self, tb, token=TOKEN):
        self.tb, self.token, self.request_id = tb, token, 1000
        self.replies = 0

    def request_frame(self, operations, token=None):
        self.request_id += 1
        payload = wire.encode(self.request_id, operations, token or self.token)
        board = CONTROL_PARAMETERS
        return bytes(Ether(dst=board["mac"], src="02:00:00:00:00:0a")
                     / IP(src=board["host_ip"], dst=board["ip"])
                     / UDP(sport=50000, dport=board["port"]) / Raw(payload))

    async def _exchange(self, operation):
        await self.tb.source.send(GmiiFrame.from_payload(self.request_frame([operation])))
        (frame,) = await self.tb.frames_out(1)
        packet = Ether(frame)
        udp = packet[UDP]
        assert (packet[IP].src, packet[IP].dst) == (CONTROL_PARAMETERS["ip"],
                                                    CONTROL_PARAMETERS["host_ip"])
        assert udp.dport == 50000 and udp.sport == CONTROL_PARAMETERS["port"]
        checked = Ether(frame)
        del checked[UDP].chksum
        del checked[IP].chksum
        checked = Ether(bytes(checked))
        assert (udp.chksum, packet[IP].chksum) in ((0, checked[IP].chksum),
                                                   (checked[UDP].chksum, checked[IP].chksum))
        request_id, token, (reply,) = wire.decode(bytes(udp.payload))
        assert request_id == self.request_id and token == bytes(16)
        assert reply.op == operation.op | wire.REPLY and reply.address == operation.address
        self.replies += 1
        return reply.data

    async def read_word(self, address):
        return await self._exchange(wire.Operation(wire.READ, address))

    async def write_word(self, address, value):
        await self._exchange(wire.Operation(wire.WRITE, address, value))

    def close(self):
        pass


@cocotb.test()
async def the_host_driver_over_udp_control_on_the_pins_reads_identity_and_arms(dut):
    tb = TB(dut)
    await tb.reset()
    control = RgmiiControl(tb)
    regs = board_register_map(ECPIX5_PARAMETERS)
    device = await Device.open(control, regs, identity=IDENTITY)   # magic and identity, by UDP
    assert device.identity == IDENTITY
    await api.arm(device)
    await ClockCycles(dut.clk, 2)
    assert int(dut.armed.value) == 1
    await api.kill(device)
    await ClockCycles(dut.clk, 2)
    assert int(dut.killed.value) == 1
    # a request with the wrong token gets no reply, and is counted
    await tb.source.send(GmiiFrame.from_payload(control.request_frame(
        [wire.Operation(wire.READ, regs["id.identity"].address)], token=bytes(16))))
    await ClockCycles(dut.clk, 300)
    assert tb.sink.empty()
    answered = control.replies
    counters = await device.counters("control.")   # snapshot, then one read per counter
    assert counters["control.counters.bad_token"] == 1
    assert counters["control.counters.accepted"] == answered     # every request before it
