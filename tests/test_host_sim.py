"""The host driver against the simulated NIC: the Verilated device (`TickToTrade`), reached
only by register names through its register bank, compared with what the feed handler itself
reports."""

import asyncio

import pytest
from amaranth.sim import Simulator

from tickwire.hdl.feed.events import NoticeKind
from tickwire.hdl.feed.handler import FeedHandler
from tickwire.host.api import filter_entry, load_filters, replay
from tickwire.host.device import Device, IdentityMismatch, RegisterError
from tickwire.host.transports import SimTransport
from tickwire.sim import itch
from tickwire.sim import moldudp64 as mold
from tickwire.sim.amaranth_sim import run_feed_handler
from tickwire.sim.feed_run import Frame, filters_value, schedule
from tickwire.sim.frames import udp_frame
from tickwire.sim.nic import shared_nic
from tickwire.sim.records import unpack
from tickwire.sim.scenario import FEED_GROUP_A, FEED_PORT, ab_frames, default_filters, order_flow

SEQUENCING = (NoticeKind.GAP.value, NoticeKind.END_OF_SESSION.value)


@pytest.fixture(scope="module")
def nic():
    return shared_nic()


@pytest.fixture
def device(nic):
    nic.reset()
    return asyncio.run(Device.open(SimTransport(nic)))


class Recording:
    """A transport that records every word written through it."""

    def __init__(self, inner):
        self.inner, self.writes = inner, []

    async def read_word(self, address):
        return await self.inner.read_word(address)

    async def write_word(self, address, value):
        self.writes.append((address, value))
        await self.inner.write_word(address, value)


def flat_counters(counters):
    out = {f"feed.counters.{group}.{name}": value for group in ("udp", "mold", "itch")
           for name, value in counters[group].items()}
    out["feed.counters.notice_overflow"] = counters["notice_overflow"]
    return out


def scenario_frames():
    flow = order_flow(400, seed=11)
    frames = ab_frames(b"20261122A1", flow, seed=11, loss=(0.15, 0.15))
    garbage = Frame(bytes(range(64)))
    bad = Frame(frames[3].data, bad=True)
    return flow, frames[:6] + [garbage, bad] + frames[6:]


def test_counters_and_notices_through_the_register_bank_match_the_feed_handler(device, nic):
    flow, frames = scenario_frames()

    async def work():
        await load_filters(device, default_filters())
        await replay(device, frames)
        return (await device.counters(), await device.drain("feed.notices"),
                await device.read("feed.alarms"), await device.read_table("feed.next_sequence"))

    counters, notices, alarms, next_sequence = asyncio.run(work())
    reference = run_feed_handler(frames, default_filters())
    # Every event reached the book (no symbol is subscribed: each is counted there).
    assert counters["book.counters.events"] == counters["book.counters.unsubscribed"] == len(
        reference.events)
    assert {k: v for k, v in counters.items() if k.startswith("feed.")} == flat_counters(
        reference.counters)
    assert counters["feed.counters.udp.accepted"] > 0
    assert counters["feed.counters.udp.bad_frames"] == 1
    # The sequencing FIFO drains first, then the control FIFO, each in order.
    expected = ([n for n in reference.notices if n["kind"] in SEQUENCING]
                + [n for n in reference.notices if n["kind"] not in SEQUENCING])
    assert notices == expected
    gaps = [n for n in notices if n["kind"] == NoticeKind.GAP.value]
    assert alarms == {"integrity": 1, "gap": int(bool(gaps)), "overflow": 0}
    assert next_sequence[0] == len(flow) + 1 and next_sequence[1:] == [1, 1, 1]


def counters_at(frames, cycles):
    """The feed handler's own counters (Amaranth's simulator) after each of `cycles` clock
    edges of `frames` presented back to back at rx."""
    dut = FeedHandler()
    beats, _ = schedule(frames)
    out = {}

    async def testbench(ctx):
        ctx.set(dut.filters.as_value(), filters_value(default_filters(), dut.filter_entries))
        ctx.set(dut.notices.ready, 1)
        for cycle in range(max(cycles)):
            beat = beats[cycle] if cycle < len(beats) else None
            ctx.set(dut.rx.valid, beat is not None)
            if beat is not None:
                ctx.set(dut.rx.payload.as_value(), beat)
            await ctx.tick()
            if cycle + 1 in cycles:
                out[cycle + 1] = unpack(dut.counters.shape(), ctx.get(dut.counters.as_value()))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return out


def test_counters_read_while_the_feed_runs_are_a_one_cycle_cut(device, nic):
    _, frames = scenario_frames()
    cuts = (150, 400, 777, 1200)

    async def work():
        await load_filters(device, default_filters())
        for frame in frames:
            nic.send(frame)
        start, out = nic.cycle, {}
        for cut in cuts:
            nic.tick(start + cut - nic.cycle)
            out[cut] = await device.counters("feed.")   # ~50 bus cycles, the feed running
        nic.run()
        return out

    seen = asyncio.run(work())
    reference = counters_at(frames, cuts)
    for cut in cuts:
        assert seen[cut] == flat_counters(reference[cut]), cut
    assert seen[cuts[0]] != seen[cuts[-1]]


def test_a_filter_entry_written_through_the_bank_takes_effect(device):
    flow = order_flow(100, seed=3)
    frames = [udp_frame(p, dst_ip=FEED_GROUP_A, dst_port=FEED_PORT)
              for p in mold.pack_messages(b"20261122A1", 1, flow)]
    entry = filter_entry(default_filters()[0])

    async def work():
        await replay(device, frames)              # every filter disabled after reset
        before = await device.counters("feed.counters.udp")
        await device.write("feed.filters", entry, index=5)
        read_back = await device.read("feed.filters", 5)
        await replay(device, frames)
        return before, read_back, await device.counters()

    before, read_back, after = asyncio.run(work())
    assert before["feed.counters.udp.unmatched"] == len(frames)
    assert before["feed.counters.udp.accepted"] == 0
    assert read_back == entry
    assert after["feed.counters.udp.accepted"] == len(frames)
    assert after["feed.counters.mold.messages"] == len(flow)


def test_strobes_clear_alarms_and_resync_a_feed(device):
    flow = order_flow(100, seed=4)
    packets = mold.pack_messages(b"20261122A1", 1, flow, max_payload=300)
    frames = [udp_frame(p, dst_ip=FEED_GROUP_A, dst_port=FEED_PORT) for p in packets[1:]]

    async def work():
        await load_filters(device, default_filters())
        await replay(device, frames)              # the first packet lost: a gap from 1
        raised = await device.read("feed.alarms")
        ahead = await device.read("feed.next_sequence", 0)
        await device.write("feed.clear_alarms", 1)
        await device.write("feed.resync", 1 << 0)
        return (raised, ahead, await device.read("feed.alarms"),
                await device.read("feed.next_sequence", 0))

    raised, ahead, cleared, resynced = asyncio.run(work())
    assert raised["gap"] == 1 and cleared == {"integrity": 0, "gap": 0, "overflow": 0}
    assert ahead == len(flow) + 1 and resynced == 1


def test_draining_while_the_feed_runs_loses_nothing_and_overflow_is_counted(device, nic):
    # 600 trading-action messages: more control notices than the 256-entry FIFO holds.
    messages = [itch.encode(b"H", stock_locate=i % 8 + 1, timestamp=i, stock="AAPL",
                            trading_state=b"T") for i in range(600)]
    frames = [Frame(udp_frame(p, dst_ip=FEED_GROUP_A, dst_port=FEED_PORT), idle_after=300)
              for p in mold.pack_messages(b"20261122A1", 1, messages)]

    async def drained_while_running(frames):
        out = []
        for frame in frames:
            nic.send(frame)
            while nic.rx:                                # every bus access clocks the feed
                out += await device.drain("feed.notices")
        nic.run()
        return out + await device.drain("feed.notices")

    async def work():
        await load_filters(device, default_filters())
        polled = await drained_while_running(frames)
        lost_polling = await device.overflow("feed.notices")
        await device.write("feed.resync", 1)
        await replay(device, frames)                     # nobody draining this time
        late = await device.drain("feed.notices")
        return polled, lost_polling, late, await device.overflow("feed.notices"), \
            await device.read("feed.alarms")

    polled, lost_polling, late, lost, alarms = asyncio.run(work())
    trading = [n for n in polled if n["kind"] == NoticeKind.TRADING_ACTION.value]
    assert lost_polling == 0 and [n["sequence"] for n in trading] == list(range(1, 601))
    assert len(late) == 256 and lost == 600 - 256
    assert alarms["overflow"] == 1


def test_a_wrong_design_identity_is_refused(nic):
    with pytest.raises(IdentityMismatch) as refused:
        asyncio.run(Device.open(SimTransport(nic), identity=0x0123456789ABCDEF))
    message = str(refused.value)
    assert "0123456789abcdef" in message and f"{nic.identity:016x}" in message


@pytest.mark.parametrize("name, value, index, says", [
    ("feed.counters.udp.frames", 1, None, "read-only"),
    ("feed.alarms", 0, None, "read-only"),
    ("id.identity", 0, None, "read-only"),
    ("feed.notices", 0, None, "read-only"),
    ("feed.filter", {"enable": 1}, 0, "did you mean feed.filters"),
    ("feed.filters", {"group": 1 << 32}, 0, "does not fit in 32 bits"),
    ("feed.filters", {"feed": 8}, 0, "feed.filters.feed: 8 does not fit in 3 bits"),
    ("feed.filters", {"vlan": 1}, 0, "no field 'vlan'"),
    ("feed.filters", {"enable": 1}, 8, "entry 8 out of range 0..7"),
    ("feed.filters", {"enable": 1}, None, "give an index"),
    ("feed.filters", 1 << 53, 0, "does not fit in 53 bits"),
    ("feed.resync", 16, None, "does not fit in 4 bits"),
    ("feed.clear_alarms", -1, None, "does not fit"),
    ("feed.clear_alarms", 1, 3, "not a table"),
    ("feed.clear_alarms", "1", None, "write an integer"),
])
def test_bad_writes_are_refused_and_nothing_is_written(device, name, value, index, says):
    recording = Recording(device.transport)
    guarded = Device(recording, device.map)
    with pytest.raises(RegisterError, match=says):
        asyncio.run(guarded.write(name, value, index))
    assert recording.writes == []
    assert asyncio.run(device.read_table("feed.filters")) == [
        dict.fromkeys(("group", "port", "feed", "line", "enable"), 0)] * 8
