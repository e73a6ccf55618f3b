"""Risk property through the whole top level: random feeds, strategy quantities, limits and
kill times on the Verilated `TickToTrade` (test build); an independent checker reads only the
frames at MAC tx (scapy, and the OUCH 5.0 Enter Order table from the specification) and
asserts that no order breaks the quantity, notional or worst-case position limit or the
per-symbol and global order-rate throttles, that none starts after the kill, and that the
gate's counters account for every intent.

The takers run on either trigger (the settled book or the raw Adds). The collar is not
checked here: the book-triggered taker orders at the touch it saw, never through it, and the
event-triggered one at a new touch better than the BBO the gate holds as its reference, so the
collar cannot bind on this path; the gate's own property tests (`tests/test_risk_properties.py`)
drive it with intents through the touch."""

import asyncio
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether

from tickwire.host.device import Device
from tickwire.sim.scenario import ab_frames, order_flow
from tickwire.sim.t2t_bench import bench_configuration, first_prices
from tickwire.sim.t2t_run import TEST_PARAMETERS, VerilatedTop, configure_and_arm

ENTER_ORDER = struct.Struct(">cIcI8sqccccc14sH")     # OUCH 5.0 section 2.1, after "U"
REASONS = ("not_armed", "killed", "bad_slot", "disabled", "quantity", "notional",
           "no_reference", "collar", "position", "slot_throttle", "global_throttle",
           "not_ready")
_top = {}
UNLIMITED = (1, 1000)                 # the bench configuration's throttles
#: At most this many cycles between an order passing the gate and its frame starting at tx:
#: the encoder's queue (4) and the frame in progress, 13 beats each, and its pipeline.
GATE_TO_TX_CYCLES = 6 * 13 + 16


def check_rate(cycles, interval, burst):
    """Orders whose frames started at tx in `cycles` (ascending) passed a token bucket of
    `burst` tokens refilled at one per `interval` cycles (GCRA: n orders decided within a
    window of w cycles need n <= burst + w // interval). Each order was decided in the
    GATE_TO_TX_CYCLES before its frame started, so orders i..j were decided within
    cycles[j] - cycles[i] + GATE_TO_TX_CYCLES cycles."""
    for i in range(len(cycles)):
        for j in range(i, len(cycles)):
            window = cycles[j] - cycles[i] + GATE_TO_TX_CYCLES
            assert j - i + 1 <= burst + window // interval, (interval, burst, i, j, window)


def top():
    if "top" not in _top:
        _top["top"] = VerilatedTop(**TEST_PARAMETERS)
    else:
        _top["top"].power_on()
    return _top["top"]


def orders(frames):
    """(symbol, side, quantity, price) of every frame, read by scapy and the spec table."""
    out = []
    for frame in frames:
        payload = bytes(Ether(frame.data)[TCP].payload)
        fields = ENTER_ORDER.unpack(payload[3:3 + ENTER_ORDER.size])
        out.append((fields[4], fields[2], fields[3], fields[5]))
    return out


@settings(max_examples=6)
@given(seed=st.integers(1, 10_000), quantity=st.sampled_from([100, 300, 700]),
       max_quantity=st.sampled_from([200, 500, 1000]), limit=st.integers(1000, 5000),
       notional=st.sampled_from([20_000, 100_000, 1_000_000]),
       kill_chunk=st.one_of(st.none(), st.integers(1, 6)),
       slot_throttle=st.sampled_from([UNLIMITED, (400, 1), (1500, 3)]),
       global_throttle=st.sampled_from([UNLIMITED, (150, 2)]),
       trigger=st.sampled_from(["event", "book"]))
def test_no_order_on_the_wire_breaks_a_limit(seed, quantity, max_quantity, limit, notional,
                                             kill_chunk, slot_throttle, global_throttle,
                                             trigger):
    run_and_check(seed, quantity, max_quantity, limit, notional, kill_chunk, slot_throttle,
                  global_throttle, trigger)


def test_the_throttles_bind_in_the_property_runs():
    """Not vacuous: with the tight throttles of the property test, the gate refuses intents
    for both buckets, and the rate check above holds on what went out."""
    counters = run_and_check(7, 100, 1000, 5000, 1_000_000, None, (400, 1), (150, 2))
    assert counters["risk.counters.slot_throttle"] > 0
    assert counters["risk.counters.global_throttle"] > 0
    assert counters["risk.counters.passes"] > 3


def run_and_check(seed, quantity, max_quantity, limit, notional, kill_chunk, slot_throttle,
                  global_throttle, trigger="event"):
    device_top = top()
    flow = order_flow(3000, seed=seed)
    frames = ab_frames(b"PROPERTY01", flow, seed=seed, idle=0, end_of_session=False)
    text = bench_configuration(first_prices(flow), quantity=quantity, position_limit=limit,
                               trigger=trigger)
    text = (text.replace("max_quantity = 10000", f"max_quantity = {max_quantity}")
            .replace("max_notional = 100000000", f"max_notional = {notional}")
            .replace("slot_throttle = { interval_cycles = 1, burst = 1000 }",
                     "slot_throttle = {{ interval_cycles = {}, burst = {} }}".format(
                         *slot_throttle))
            .replace("global_throttle = { interval_cycles = 1, burst = 1000 }",
                     "global_throttle = {{ interval_cycles = {}, burst = {} }}".format(
                         *global_throttle)))
    assert f"interval_cycles = {slot_throttle[0]}, burst = {slot_throttle[1]}" in text

    async def work():
        device = await Device.open(device_top, device_top.register_map,
                                   identity=device_top.identity)
        await configure_and_arm(device, text, {"sequence": 1, "ack": 1, "window": 1000},
                                "property.toml")
        killed_at, chunk = None, max(1, len(frames) // 8)
        for k, first in enumerate(range(0, len(frames), chunk)):
            if k == kill_chunk:
                await device.write("risk.kill", 1)
                killed_at = device_top.cycle
            device_top.replay(frames[first:first + chunk], drain_cycles=32)
            await device.drain("order.log")
            await device.drain("risk.rejects")
        return killed_at, await device.counters("risk.counters")

    killed_at, counters = asyncio.run(work())
    sent = orders(device_top.sent)
    cycles = [frame.cycle for frame in device_top.sent]
    check_rate(cycles, *global_throttle)
    for symbol in {order[0] for order in sent}:
        check_rate([c for c, order in zip(cycles, sent, strict=True) if order[0] == symbol],
                   *slot_throttle)
    totals = {}
    for symbol, side, qty, price in sent:
        assert qty <= max_quantity
        assert price * qty <= notional * 10_000
        totals[symbol, side] = totals.get((symbol, side), 0) + qty
        assert totals[symbol, side] <= limit, "worst-case position (no fills were posted)"
    if killed_at is not None:
        # The strobe reaches the gate the cycle after the write; a frame may start in it.
        assert all(frame.cycle <= killed_at + 1 for frame in device_top.sent)
    rejected = sum(counters[f"risk.counters.{reason}"] for reason in REASONS)
    assert counters["risk.counters.intents"] == counters["risk.counters.passes"] + rejected
    assert counters["risk.counters.passes"] == len(sent)
    return counters
