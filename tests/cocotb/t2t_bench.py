"""cocotb bench of the Verilated tick-to-trade top level (`TickToTrade`, the test build).

The host's own driver and configuration parser program it over the register bus; market data
goes in as scapy-built Ethernet/IPv4/UDP frames carrying MoldUDP64 and ITCH 5.0; every frame
that comes out at MAC tx is parsed by scapy (IPv4 and TCP checksums recomputed by scapy and
compared, TCP sequence numbers continuous from the session's) and its payload decoded with the
OUCH 5.0 Enter Order field table below, written from the specification (section 2.1),
independently of the gateware's and the simulator's tables.
"""

import os
import struct

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tickwire.hdl.net.mac import MacBeat
from tickwire.host import api
from tickwire.host.device import Device
from tickwire.sim import itch
from tickwire.sim import moldudp64 as mold
from tickwire.sim.records import pack, unpack
from tickwire.sim.scenario import FEED_GROUP_A, FEED_PORT
from tickwire.sim.t2t_bench import order_section
from tickwire.sim.t2t_run import TEST_PARAMETERS, configure_and_arm

IDENTITY = int(os.environ["TICKWIRE_IDENTITY"], 16)   # the identity the device was built with
SESSION = {"sequence": 0xFFFF_FF00, "ack": 4242, "window": 32768}   # wraps within the test
# OUCH 5.0 Enter Order (type 'O'), after the SoupBinTCP header (length 2, type 'U').
ENTER_ORDER = struct.Struct(">cIcI8sqccccc14sH")
CONFIG = """
[[symbol]]
name = "AAPL"
locate = 1

[[symbol]]
name = "MSFT"
locate = 2

[[strategy.taker]]
symbol = "AAPL"
buy_at_or_below = 100.00
sell_at_or_above = 100.50
quantity = 300
trigger = "event"

[[strategy.taker]]
symbol = "MSFT"
buy_at_or_below = 50.00
quantity = 40

[risk]
slot_throttle = { interval_cycles = 1, burst = 100 }
global_throttle = { interval_cycles = 1, burst = 100 }

[risk.default]
max_quantity = 1000
max_notional = 1000000
collar_bps = 50
position_limit = 100000

""" + order_section("COCO01")


class TB:
    def __init__(self, dut):
        self.dut = dut
        self.frames, self.partial = [], None
        cocotb.start_soon(Clock(dut.clk, 6.4, unit="ns").start())
        cocotb.start_soon(self.collect())

    async def reset(self):
        dut = self.dut
        dut.rst.value = 1
        dut.rx__valid.value = 0
        dut.tx__ready.value = 1
        dut.bus__r_stb.value = 0
        dut.bus__w_stb.value = 0
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
        await ClockCycles(dut.clk, 2)

    async def collect(self):
        while True:
            await RisingEdge(self.dut.clk)
            if self.dut.tx__valid.value and self.dut.tx__ready.value:
                beat = unpack(MacBeat, int(self.dut.tx__payload.value))
                if beat["first"]:
                    self.partial = bytearray()
                self.partial += beat["data"].to_bytes(8, "little")[:bin(beat["keep"]).count("1")]
                if beat["last"]:
                    self.frames.append(bytes(self.partial))

    # The register bus, for the host's `Device`.
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

    async def send(self, frame):
        dut = self.dut
        for start in range(0, len(frame), 8):
            chunk = frame[start:start + 8]
            dut.rx__payload.value = pack(MacBeat, {
                "data": int.from_bytes(chunk, "little"), "keep": (1 << len(chunk)) - 1,
                "first": start == 0, "last": start + 8 >= len(frame), "bad": 0})
            dut.rx__valid.value = 1
            await RisingEdge(dut.clk)
        dut.rx__valid.value = 0


def feed_frame(sequence, messages):
    payload = mold.encode_packet(b"COCOTBT2T1", sequence, messages)
    return bytes(Ether(dst="01:00:5e:36:0c:6f", src="02:00:00:00:00:09")
                 / IP(dst=".".join(str(FEED_GROUP_A >> s & 255) for s in (24, 16, 8, 0)),
                      src="10.1.2.3") / UDP(sport=40000, dport=FEED_PORT) / Raw(payload))


def add(ref, locate, side, shares, price):
    return itch.encode(b"A", stock_locate=locate, order_ref=ref, side=side, shares=shares,
                       stock="AAPL" if locate == 1 else "MSFT", price=price)


def decode_order(frame):
    """scapy's view of the frame, its checks, and the OUCH Enter Order fields."""
    packet = Ether(frame)
    ip, tcp = packet[IP], packet[TCP]
    rebuilt = Ether(frame)
    del rebuilt[IP].chksum
    del rebuilt[TCP].chksum
    rebuilt = Ether(bytes(rebuilt))
    assert ip.chksum == rebuilt[IP].chksum, "IPv4 header checksum"
    assert tcp.chksum == rebuilt[TCP].chksum, "TCP checksum (pseudo-header included)"
    assert ip.flags == "DF" and ip.proto == 6 and ip.ttl == 64
    assert tcp.flags == "PA" and tcp.dport == 15000 and tcp.sport == 40001
    payload = bytes(tcp.payload)
    length, kind = struct.unpack(">Hc", payload[:3])
    assert kind == b"U" and length == len(payload) - 2 == 48
    fields = ENTER_ORDER.unpack(payload[3:3 + ENTER_ORDER.size])
    assert len(payload) == 3 + ENTER_ORDER.size == 50
    names = ("type", "user_ref", "side", "quantity", "symbol", "price", "tif", "display",
             "capacity", "sweep", "cross", "clordid", "appendage")
    return ip, tcp, dict(zip(names, fields, strict=True))


@cocotb.test()
async def orders_from_scapy_feed_frames_are_valid_ouch_over_tcp(dut):
    tb = TB(dut)
    await tb.reset()
    device = await Device.open(tb, api.register_map(**TEST_PARAMETERS), identity=IDENTITY)
    await configure_and_arm(device, CONFIG, SESSION, "cocotb.toml")

    # AAPL's taker decides on the raw Adds (a new touch), MSFT's on the settled book.
    messages = [
        add(1, 1, b"B", 500, 99_0000),       # AAPL bid 99.00: no trigger
        add(2, 1, b"S", 200, 101_0000),      # AAPL ask 101.00: above 100.00, no trigger
        add(3, 1, b"S", 100, 100_0000),      # ask 100.00 <= 100.00: buy 300 @ 100.00
        add(4, 2, b"S", 50, 49_9900),        # MSFT ask 49.99 <= 50.00: buy 40 @ 49.99
        add(5, 1, b"B", 700, 100_5000),      # AAPL bid 100.50 >= 100.50: sell 300 @ 100.50
        add(6, 1, b"S", 100, 99_9900),       # AAPL ask 99.99 (a new level): buy 300 @ 99.99
    ]
    # (side, quantity, symbol, price), in the order the frames must leave
    expected = [(b"B", 300, b"AAPL    ", 100_0000), (b"B", 40, b"MSFT    ", 49_9900),
                (b"S", 300, b"AAPL    ", 100_5000), (b"B", 300, b"AAPL    ", 99_9900)]
    for sequence, message in enumerate(messages, start=1):
        await tb.send(feed_frame(sequence, [message]))
        await ClockCycles(dut.clk, 30)
    await ClockCycles(dut.clk, 50)

    rejects = [(r["intent.price"], r["reason"]) for r in await device.drain("risk.rejects")]
    assert len(tb.frames) == len(expected), (len(tb.frames), rejects)
    seq = SESSION["sequence"]
    for k, (frame, (side, quantity, symbol, price)) in enumerate(
            zip(tb.frames, expected, strict=True)):
        ip, tcp, order = decode_order(frame)
        assert tcp.seq == seq and tcp.ack == SESSION["ack"] and tcp.window == SESSION["window"]
        seq = (seq + 50) % (1 << 32)
        assert ip.src == "10.0.0.1" and ip.dst == "10.0.0.2"
        assert frame[0:6] == bytes.fromhex("020000000002")
        assert order["type"] == b"O" and order["user_ref"] == k + 1
        assert (order["side"], order["quantity"], order["symbol"], order["price"]) == (
            side, quantity, symbol, price)
        assert order["tif"] == b"3" and order["display"] == b"Y" and order["capacity"] == b"P"
        assert order["sweep"] == b"N" and order["cross"] == b"N" and order["appendage"] == 0
        assert order["clordid"] == b"COCO01" + f"{k + 1:08X}".encode()
    log = await device.drain("order.log")
    assert [e["user_ref_num"] for e in log] == list(range(1, len(expected) + 1))
    assert all(e["sent"] for e in log)
    assert [e["sequence"] for e in log] == [3, 4, 5, 6]


@cocotb.test()
async def after_a_kill_no_frame_starts(dut):
    tb = TB(dut)
    await tb.reset()
    device = await Device.open(tb, api.register_map(**TEST_PARAMETERS), identity=IDENTITY)
    await configure_and_arm(device, CONFIG, SESSION, "cocotb.toml")
    await api.kill(device)
    # Fresh order references: a reset does not clear the book's tables (block RAM).
    for sequence, message in enumerate([add(101, 1, b"S", 100, 99_0000),
                                        add(102, 2, b"S", 100, 40_0000)], start=1):
        await tb.send(feed_frame(sequence, [message]))
        await ClockCycles(dut.clk, 40)
    assert tb.frames == []
    counters = await device.counters()
    # api.kill also disarms: the gate's first check (armed) refuses them.
    assert counters["risk.counters.intents"] == 2 and counters["risk.counters.passes"] == 0
    assert await device.read("risk.killed") == 1
    await api.clear_kill(device)
    await api.arm(device)
    await tb.send(feed_frame(3, [add(103, 1, b"S", 100, 98_0000)]))
    await ClockCycles(dut.clk, 40)
    assert len(tb.frames) == 1
