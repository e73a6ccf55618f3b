"""cocotb bench of the Verilated feed handler (AXI-Stream MAC port).

Frames are built with scapy; every decoded field is checked against the independent
`itchfeed` parser's reading of the same message bytes, and the sequence numbers against
scapy's view of the MoldUDP64 header.
"""

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSource
from itch.messages import messages as itchfeed_messages
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from tickwire.hdl.feed.events import BookEvent, BookEventKind, FeedNotice, NoticeKind
from tickwire.sim import moldudp64 as mold
from tickwire.sim.feed_model import FilterEntry
from tickwire.sim.feed_run import filters_value
from tickwire.sim.frames import ip
from tickwire.sim.records import unpack
from tickwire.sim.scenario import order_flow

GROUP, PORT = "233.54.12.111", 26477
REPLY_IP, REPLY_PORT = "10.1.2.3", 40000      # our unicast address for re-request replies


class TB:
    def __init__(self, dut):
        self.dut = dut
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk,
                                      dut.rst)
        self.events, self.notices = [], []
        cocotb.start_soon(Clock(dut.clk, 6.4, unit="ns").start())
        cocotb.start_soon(self.collect())

    async def reset(self):
        self.dut.rst.value = 1
        self.dut.notices__ready.value = 1
        self.dut.filters.value = filters_value([FilterEntry(ip(GROUP), PORT, 0, 0),
                                                FilterEntry(ip(REPLY_IP), REPLY_PORT, 0, 1)])
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    async def collect(self):
        while True:
            await RisingEdge(self.dut.clk)
            if self.dut.events__valid.value:
                self.events.append(unpack(BookEvent, int(self.dut.events__payload.value)))
            if self.dut.notices__valid.value:
                self.notices.append(unpack(FeedNotice, int(self.dut.notices__payload.value)))


def scapy_frame(payload, vlan, options, ident):
    ip_layer = IP(dst=GROUP, src="10.1.2.3", id=ident, options=b"\x01" * options)
    eth = Ether(dst="01:00:5e:36:0c:6f", src="02:00:00:00:00:01")
    layers = eth / Dot1Q(vlan=vlan) / ip_layer if vlan else eth / ip_layer
    return bytes(layers / UDP(sport=40000, dport=PORT) / Raw(payload))


def check_event(event, message, sequence):
    """Compare a BookEvent with itchfeed's parse of the message it came from."""
    theirs = itchfeed_messages[message[0:1]](message)
    assert event["sequence"] == sequence
    assert event["locate"] == theirs.stock_locate
    assert event["timestamp"] == theirs.timestamp
    t = message[0:1]
    if t in (b"A", b"F"):
        assert event["kind"] == BookEventKind.ADD.value
        assert event["order_ref"] == theirs.order_reference_number
        assert event["shares"] == theirs.shares and event["price"] == theirs.price
        assert event["side"] == (1 if theirs.buy_sell_indicator == b"S" else 0)
    elif t in (b"E", b"C"):
        assert event["order_ref"] == theirs.order_reference_number
        assert event["shares"] == theirs.executed_shares
        if t == b"C":
            assert event["price"] == theirs.execution_price
    elif t == b"X":
        assert event["shares"] == theirs.cancelled_shares
    elif t == b"D":
        assert event["kind"] == BookEventKind.DELETE.value
    elif t == b"U":
        assert event["order_ref"] == theirs.order_reference_number
        assert event["new_ref"] == theirs.new_order_reference_number
        assert event["shares"] == theirs.shares and event["price"] == theirs.price


@cocotb.test()
async def scapy_frames_decode_like_itchfeed(dut):
    tb = TB(dut)
    await tb.reset()
    rng = random.Random(7)
    flow = order_flow(600, seed=11)
    packets, sequence, expected = [], 1, []
    position = 0
    while position < len(flow):
        batch = flow[position:position + rng.randrange(1, 30)]
        packets.append(mold.encode_packet(b"COCOTB0001", sequence, batch))
        expected.extend((sequence + k, m) for k, m in enumerate(batch))
        sequence += len(batch)
        position += len(batch)
    for index, packet in enumerate(packets):
        frame = scapy_frame(packet, vlan=rng.choice((0, 100)), options=rng.choice((0, 4, 12)),
                            ident=index)
        await tb.source.send(AxiStreamFrame(frame))
    await tb.source.wait()
    await ClockCycles(dut.clk, 10)

    book = [(s, m) for s, m in expected if m[0:1] in b"AFECXDU"]
    assert len(tb.events) == len(book), (len(tb.events), len(book))
    for event, (sequence, message) in zip(tb.events, book, strict=True):
        check_event(event, message, sequence)
    directory = [n for n in tb.notices if n["kind"] == NoticeKind.STOCK_DIRECTORY.value]
    symbols = [itchfeed_messages[b"R"](m).stock for _, m in expected if m[0:1] == b"R"]
    assert [n["value"].to_bytes(8, "big") for n in directory] == symbols


@cocotb.test()
async def bad_fcs_and_truncation_are_counted(dut):
    tb = TB(dut)
    await tb.reset()
    flow = order_flow(40, seed=3)
    good = scapy_frame(mold.encode_packet(b"COCOTB0002", 1, flow[:10]), 0, 0, 1)
    await tb.source.send(AxiStreamFrame(good[:-7]))              # truncated mid-message
    await tb.source.send(AxiStreamFrame(good, tuser=1))          # bad FCS on the last beat
    await tb.source.send(AxiStreamFrame(good))                   # the same packet, intact
    await tb.source.wait()
    await ClockCycles(dut.clk, 10)
    counters = dut.counters.value
    from tickwire.hdl.feed.handler import FeedHandler
    decoded = unpack(FeedHandler().counters.shape(), int(counters))
    assert decoded["udp"]["truncated"] == 1
    assert decoded["udp"]["bad_frames"] == 1
    assert decoded["mold"]["corrupt"] == 1
    sequences = [e["sequence"] for e in tb.events]
    assert sequences == sorted(set(sequences)), "every message delivered exactly once"
    assert {s for s in sequences} == {s for s, m in enumerate(flow[:10], 1)
                                      if m[0:1] in b"AFECXDU"}


@cocotb.test()
async def loss_on_both_lines_is_recovered_by_retransmission(dut):
    """Recovery on: every third packet lost on both lines. The bench, as the host, reads the
    GAP notice, `next_sequence` and `recover_to`, and presents the re-requested messages (a
    unicast UDP reply from another address); every message is decoded once, like itchfeed."""
    tb = TB(dut)
    await tb.reset()
    session = b"COCOTB0003"
    dut.recover.value = 1
    flow = order_flow(300, seed=5)
    sequence, expected = 1, list(enumerate(flow, 1))
    for index in range(0, len(flow), 10):
        if index % 30 != 10:
            packet = mold.encode_packet(session, sequence, flow[index:index + 10])
            await tb.source.send(AxiStreamFrame(scapy_frame(packet, 0, 0, index)))
        sequence += len(flow[index:index + 10])
    await tb.source.send(AxiStreamFrame(scapy_frame(mold.heartbeat(session, sequence), 0, 0, 0)))
    await tb.source.wait()
    await ClockCycles(dut.clk, 10)
    gaps = [n for n in tb.notices if n["kind"] == NoticeKind.GAP.value]
    assert [(n["sequence"], n["value"]) for n in gaps] == [(11, 10)]
    rounds = 0
    while (next_sequence := int(dut.next_sequence.value) & (2**64 - 1)) < (
            int(dut.recover_to.value) & (2**64 - 1)):
        reply = mold.encode_packet(session, next_sequence,
                                   flow[next_sequence - 1:next_sequence - 1 + 7])
        frame = bytes(Ether() / IP(dst=REPLY_IP, src="10.9.9.9") / UDP(sport=PORT + 1,
                                                                      dport=REPLY_PORT)
                      / Raw(reply))
        await tb.source.send(AxiStreamFrame(frame))
        await tb.source.wait()
        await ClockCycles(dut.clk, 10)
        rounds += 1
    assert rounds > 0
    book = [(s, m) for s, m in expected if m[0:1] in b"AFECXDU"]
    assert [e["sequence"] for e in tb.events] == [s for s, _ in book]
    for event, (sequence, message) in zip(tb.events, book, strict=True):
        check_event(event, message, sequence)
