"""Unit tier: the GMII MAC cores in Amaranth's simulator, against the reference in sim/mac_model.py
(CRC from zlib, frames from scapy)."""

import random
import zlib

import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tickwire.hdl.net.ethernet_mac import CRC_RESIDUE, GmiiRx, GmiiTx
from tickwire.hdl.net.mac import MacBeat
from tickwire.sim import mac_model as ref
from tickwire.sim.records import unpack


def scapy_frame(payload_length, seed=0):
    rng = random.Random(seed)
    payload = bytes(rng.randrange(256) for _ in range(payload_length))
    return bytes(Ether(dst="01:00:5e:01:02:03", src="02:00:00:00:00:01")
                 / IP(dst="239.1.2.3", src="10.0.0.1") / UDP(sport=1, dport=2) / Raw(payload))


def wire_cycles(frame_bytes, gap=12, error_at=None, preamble=ref.PREAMBLE):
    """GMII receive cycles (byte, dv, er) for a frame given after its SFD."""
    cycles = [(b, 1, 0) for b in preamble + frame_bytes]
    if error_at is not None:
        byte, dv, _ = cycles[len(preamble) + error_at]
        cycles[len(preamble) + error_at] = (byte, dv, 1)
    return cycles + [(0, 0, 0)] * gap


def run_rx(cycles):
    dut = GmiiRx()
    beats, events = [], []

    async def testbench(ctx):
        for index, (byte, dv, er) in enumerate(cycles + [(0, 0, 0)] * 4):
            ctx.set(dut.gmii.rxd, byte)
            ctx.set(dut.gmii.rx_dv, dv)
            ctx.set(dut.gmii.rx_er, er)
            if ctx.get(dut.beats.valid):   # beats are combinational: sampled in their cycle
                beats.append((unpack(MacBeat, ctx.get(dut.beats.payload.as_value())), index))
            await ctx.tick()
            event = unpack(dut.events.shape(), ctx.get(dut.events.as_value()))
            events.extend(name for name, value in event.items() if value)

    sim = Simulator(dut)
    sim.add_clock(8e-9)
    sim.add_testbench(testbench)
    sim.run()
    return beats, events


def test_crc_residue_is_what_zlib_leaves_after_a_good_fcs():
    frame = scapy_frame(20)
    # zlib.crc32 returns the register complemented: the raw register is its complement
    assert (zlib.crc32(frame + ref.fcs(frame)) ^ 0xFFFFFFFF) == CRC_RESIDUE


@pytest.mark.parametrize("length", [18, 19, 20, 23, 26, 100, 1000])
def test_rx_delivers_scapy_frames_without_preamble_or_fcs(length):
    frame = scapy_frame(length, seed=length)
    frame = frame.ljust(60, b"\0")
    beats, events = run_rx(wire_cycles(frame + ref.fcs(frame)))
    frames = ref.frames_from_beats([b for b, _ in beats])
    assert frames == [(frame, False)]
    assert events == ["frame"]


def test_rx_last_beat_in_the_cycle_dv_falls():
    frame = scapy_frame(40)
    cycles = wire_cycles(frame + ref.fcs(frame))
    beats, _ = run_rx(cycles)
    dv_low = next(i for i, c in enumerate(cycles) if not c[1])
    assert [index for beat, index in beats if beat["last"]] == [dv_low]


@pytest.mark.parametrize("case", ["bad_fcs", "runt", "rx_error", "runt_with_error"])
def test_rx_marks_bad_frames_on_their_last_beat(case):
    frame = scapy_frame(60, seed=3)
    body = frame + ref.fcs(frame)
    error_at = None
    if case == "bad_fcs":
        body = body[:-1] + bytes([body[-1] ^ 0x40])
    elif case == "runt":
        body = frame[:40] + ref.fcs(frame[:40])   # a good FCS, but 44 bytes
    elif case == "rx_error":
        error_at = 30
    else:
        body = frame[:20] + ref.fcs(frame[:20])
        error_at = 5
    beats, events = run_rx(wire_cycles(body, error_at=error_at))
    expected = ref.rx_expected(body, error=error_at is not None)
    assert expected.bad
    assert ref.frames_from_beats([b for b, _ in beats]) == [(expected.data, True)]
    assert sorted(events) == sorted(["frame", expected.reason])


def test_rx_counts_carrier_without_sfd_and_delivers_nothing():
    cycles = [(0x55, 1, 0)] * 7 + [(0, 0, 0)] * 4 + [(0x55, 1, 0), (0x12, 1, 0)] \
        + [(0x34, 1, 0)] * 10 + [(0, 0, 0)] * 4
    beats, events = run_rx(cycles)
    assert beats == [] and events == ["bad_preamble", "bad_preamble"]


def test_rx_accepts_a_short_preamble():
    frame = scapy_frame(30)
    beats, _ = run_rx(wire_cycles(frame + ref.fcs(frame), preamble=bytes([0x55, 0xD5])))
    assert ref.frames_from_beats([b for b, _ in beats]) == [(frame, False)]


@settings(max_examples=40)
@given(st.lists(st.tuples(st.binary(min_size=0, max_size=200), st.integers(1, 20),
                          st.sampled_from(["good", "bad_fcs", "error"])),
                min_size=1, max_size=4))
def test_rx_property_random_frames_and_gaps(frames):
    cycles, expected = [], []
    for body, gap, kind in frames:
        wire = body + ref.fcs(body)
        error_at = None
        if kind == "bad_fcs":
            wire = wire[:-1] + bytes([wire[-1] ^ 1])
        elif kind == "error":
            error_at = len(wire) // 2
        cycles += wire_cycles(wire, gap=gap, error_at=error_at)
        result = ref.rx_expected(wire, error=error_at is not None)
        if result is not None and result.data:
            expected.append((result.data, result.bad))
    beats, events = run_rx(cycles)
    assert ref.frames_from_beats([b for b, _ in beats]) == expected
    assert events.count("frame") == len(frames)


# Transmit ------------------------------------------------------------------------------------

def run_tx(frames, *, idle_before=None, stall=None, drain=200):
    """Offer `frames` (client bytes) back to back on `beats`; `idle_before[i]` idle cycles before
    frame i; `stall` = (frame, beat, cycles): withhold that beat for that many cycles."""
    dut = GmiiTx()
    wire, events = [], []
    # the monitor records from cycle 1: nothing is offered in cycle 0
    idle_before = idle_before or [1] + [0] * (len(frames) - 1)

    async def producer(ctx):
        for number, (frame, idle) in enumerate(zip(frames, idle_before, strict=True)):
            for _ in range(idle):
                await ctx.tick()
            for index, beat in enumerate(ref.beats_of(frame)):
                if stall and stall[:2] == (number, index):
                    ctx.set(dut.beats.valid, 0)
                    for _ in range(stall[2]):
                        await ctx.tick()
                ctx.set(dut.beats.payload, beat)
                ctx.set(dut.beats.valid, 1)
                await ctx.tick().until(dut.beats.ready)
            ctx.set(dut.beats.valid, 0)

    async def monitor(ctx):
        for _ in range(sum(len(f) + 40 for f in frames) + sum(idle_before) + drain):
            await ctx.tick()
            await ctx.delay(2e-9)   # the outputs are combinational: after the producer's inputs
            wire.append((ctx.get(dut.gmii.txd), ctx.get(dut.gmii.tx_en), ctx.get(dut.gmii.tx_er)))
            event = unpack(dut.events.shape(), ctx.get(dut.events.as_value()))
            events.extend(name for name, value in event.items() if value)

    sim = Simulator(dut)
    sim.add_clock(8e-9)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(monitor)
    sim.run()
    return ref.split_wire(wire), events, wire


@pytest.mark.parametrize("length", [1, 14, 59, 60, 61, 64, 65, 300])
def test_tx_sends_preamble_padding_and_fcs(length):
    frame = scapy_frame(max(0, length - 42), seed=length)[:length] if length >= 42 else \
        bytes(range(length))
    sent, events, _ = run_tx([frame])
    assert [(data, error) for data, error, _, _ in sent] == [(ref.tx_wire(frame), False)]
    assert events == ["frame"]


def test_tx_first_preamble_byte_in_the_cycle_the_first_beat_is_offered():
    frame = scapy_frame(30)
    sent, _, wire = run_tx([frame], idle_before=[5])
    # offered during cycle 5 (after 5 ticks): the preamble is on gmii in that cycle, recorded
    # at index 4 (the monitor records cycle i + 1 at index i)
    assert sent[0][2] == 4


@settings(max_examples=40)
@given(st.lists(st.binary(min_size=1, max_size=150), min_size=2, max_size=4))
def test_tx_property_back_to_back_frames_keep_the_minimum_gap(frames):
    sent, events, _ = run_tx(frames)
    assert [data for data, _, _, _ in sent] == [ref.tx_wire(f) for f in frames]
    gaps = [b[2] - a[3] - 1 for a, b in zip(sent, sent[1:], strict=False)]
    assert gaps == [ref.MIN_IFG] * (len(frames) - 1)
    assert events.count("frame") == len(frames)


def test_tx_underrun_aborts_the_frame_with_tx_er_and_recovers():
    frames = [bytes(range(100)), bytes(range(50, 120))]
    sent, events, _ = run_tx(frames, stall=(0, 3, 30))
    assert len(sent) == 2
    assert sent[0][1] is True                              # ended with tx_er
    assert ref.tx_wire(frames[0]).startswith(sent[0][0][:-1])
    assert sent[1][:2] == (ref.tx_wire(frames[1]), False)
    assert sorted(events) == ["frame", "underrun"]
