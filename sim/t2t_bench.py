"""Tick-to-trade figures (`make bench`, ``t2t.*``): the whole top level Verilated, configured
through the host's own configuration parser and driver, fed a realistic scenario at line rate.

The threshold takers are set in the money (see `bench_configuration`), so that every new
best level fires; risk limits are real but wide enough that the intents pass. Latencies are
measured outside the gateware, from the cycles frames are presented and collected at the MAC
client ports (see `tickwire.sim.t2t_run`); the order log names the MoldUDP64 sequence number
of each order's trigger. The actionable figures are per trigger: the first order frame a
message causes; any further frame of the same trigger (a pair's second leg, or both sides of
one book taker update) waits for the one before it on the wire (13 beats) and is reported
apart (``t2t.later_orders*``). The hardware's own statistics (``order.latency``) are read back
and reported beside them as a cross-check.
"""

import asyncio

from tickwire.hdl.book.records import BookParameters
from tickwire.hdl.order.encoder import FRAME_BEATS
from tickwire.host.device import Device

from . import itch
from .scenario import DEFAULT_SYMBOLS, ab_frames, default_filters, order_flow
from .t2t_run import VerilatedTop, configure_and_arm, message_arrivals

#: The bench's build: the default book (16,384 orders, 10 stored levels, 8 visible) with 16
#: slots, which the scenario's 8 symbols need; the default's 1024 slots only lengthen the
#: Verilator build (cycle counts do not depend on them).
BENCH_BOOK = BookParameters(symbols=16, locates=1024)
MESSAGES = 60_000
SEEDS = (11, 12, 13, 14, 15, 16)
SESSION = {"sequence": 1_000_000, "ack": 77_000, "window": 65_535}


def _percentiles(values):
    values = sorted(values)
    return {"min": values[0], "median": values[len(values) // 2],
            "p99": values[min(len(values) - 1, 99 * len(values) // 100)], "max": values[-1]}


def first_prices(flow):
    out = {}
    for message in flow:
        if message[:1] in (b"A", b"F"):
            fields = itch.decode(message)
            out.setdefault(fields["stock_locate"], fields["price"])
    return out


def bench_configuration(prices, *, quantity=100, position_limit=1_000_000, margin=5.0,
                        trigger="event", cooldown=0):
    """TOML for the host's parser: every scenario symbol traded by a threshold taker set
    `margin` dollars in the money from the symbol's first price, buying on odd locates and
    selling on even ones, so that it fires at every new best level of its side (once per
    level): a trigger stream as dense as the market's own level changes. `trigger`: the
    takers' trigger, "event" (the raw Adds) or "book" (BookUpdates); `cooldown`: their
    ``cooldown_cycles``."""
    lines = []
    for locate, name in enumerate(DEFAULT_SYMBOLS, start=1):
        price = prices[locate] / 10_000
        threshold = (f"buy_at_or_below = {price + margin:.4f}" if locate % 2 else
                     f"sell_at_or_above = {max(0.0001, price - margin):.4f}")
        lines += ["[[symbol]]", f'name = "{name}"', f"locate = {locate}", "",
                  "[[strategy.taker]]", f'symbol = "{name}"', threshold,
                  f"quantity = {quantity}", f'trigger = "{trigger}"',
                  f"cooldown_cycles = {cooldown}", ""]
    lines += ["[risk]", "slot_throttle = { interval_cycles = 1, burst = 1000 }",
              "global_throttle = { interval_cycles = 1, burst = 1000 }",
              "auto_kill = { rejects = 65535, window_cycles = 1 }", "",
              "[risk.default]", "max_quantity = 10000", "max_notional = 100000000",
              "collar_bps = 100", f"position_limit = {position_limit}", "",
              order_section("BENCH1")]
    return "\n".join(lines)


def order_section(clordid_prefix, *, src_ip="10.0.0.1", dst_ip="10.0.0.2"):
    """The ``[order]`` TOML of the benches and simulations: the order session's addresses
    (the host's and the exchange's), ports and OUCH codes, and a ClOrdID prefix."""
    return f"""[order]
src_mac = "02:00:00:00:00:01"
dst_mac = "02:00:00:00:00:02"
src_ip = "{src_ip}"
dst_ip = "{dst_ip}"
src_port = 40001
dst_port = 15000
ttl = 64
display = "Y"
capacity = "P"
intermarket_sweep = "N"
cross_type = "N"
clordid_prefix = "{clordid_prefix}"
"""


CHUNK_FRAMES = 100


async def _run(top, frames, flow, options):
    """Frames go in back to back in chunks of `CHUNK_FRAMES`; between chunks the host drains
    the order log and the reject log (as it does continuously on a board)."""
    device = await Device.open(top, top.register_map, identity=top.identity)
    await configure_and_arm(device, bench_configuration(first_prices(flow), **options),
                            SESSION, "bench.toml")
    starts, log = [], []
    for first in range(0, len(frames), CHUNK_FRAMES):
        starts += top.replay(frames[first:first + CHUNK_FRAMES], drain_cycles=32)
        log += await device.drain("order.log")
        await device.drain("risk.rejects")
    counters = await device.counters()
    if counters["order.counters.log_overflow"]:
        raise AssertionError("the order log overflowed: the bench drains it too rarely")
    hardware = await device.read("order.latency")
    return starts, log, counters, hardware


def t2t_run(messages=MESSAGES, seed=11, book=BENCH_BOOK, top=None, trigger="event",
            cooldown=0):
    """Run the bench scenario of `seed` on a freshly powered-on top level (`trigger` and
    `cooldown`: the takers', see `bench_configuration`); returns (frames, rx starts, order
    log, counters, hardware latency statistics, the top)."""
    flow = order_flow(messages, seed=seed)
    frames = ab_frames(b"T2TBENCH01", flow, seed=seed, idle=0, end_of_session=False)
    if top is None:
        top = VerilatedTop(book=book)
    else:
        top.power_on()
    starts, log, counters, hardware = asyncio.run(
        _run(top, frames, flow, {"trigger": trigger, "cooldown": cooldown}))
    return frames, starts, log, counters, hardware, top


def t2t_figures(console=None, seeds=SEEDS, **options):
    """The figures over one session per seed (each on a powered-on device)."""
    actionable, sop, later, totals, hardware_min, hardware_max, top = [], [], [], {}, [], [], None
    waits = []          # per trigger: (latency, cycles the wire was still busy after it)
    for seed in seeds:
        frames, starts, log, counters, hardware, top = t2t_run(seed=seed, top=top, **options)
        arrivals = message_arrivals(frames, starts, default_filters())
        sent = [entry for entry in log if entry["sent"]]
        if len(sent) != len(top.sent):
            raise AssertionError(f"{len(sent)} orders logged as sent, {len(top.sent)} frames")
        triggered, previous = set(), None
        for entry, frame in zip(sent, top.sent, strict=True):
            last_byte, first_beat = arrivals[(0, entry["sequence"])]
            # The wire is still busy this many cycles after the trigger's last byte.
            wait = -1 if previous is None else previous + FRAME_BEATS - last_byte
            previous = frame.cycle
            if entry["sequence"] in triggered:        # not the trigger's first frame
                later.append(frame.cycle - last_byte)
                continue
            triggered.add(entry["sequence"])
            actionable.append(frame.cycle - last_byte)
            waits.append((frame.cycle - last_byte, wait))
            sop.append(frame.cycle - first_beat)
        for key, value in counters.items():
            totals[key] = totals.get(key, 0) + value
        hardware_min.append(hardware["min"])
        hardware_max.append(hardware["max"])
    figures = {f"t2t.actionable_cycles.{k}": v for k, v in _percentiles(actionable).items()}
    figures["t2t.sop_to_sop_cycles.median"] = _percentiles(sop)["median"]
    figures["t2t.triggers"] = len(actionable)
    figures["t2t.orders"] = len(actionable) + len(later)
    figures["t2t.later_orders"] = len(later)
    # Queued: the frame before was still on the wire when this trigger's frame could have
    # started at the fastest latency seen.
    fastest = min(actionable)
    idle = [latency for latency, wait in waits if wait <= fastest]
    queued = [latency for latency, wait in waits if wait > fastest]
    figures["t2t.queued_triggers"] = len(queued)
    if idle:
        figures["t2t.idle_wire_cycles.max"] = max(idle)
    if queued:
        figures.update({f"t2t.queued_cycles.{k}": v for k, v in _percentiles(queued).items()})
    if later:
        figures.update({f"t2t.later_orders_cycles.{k}": v
                        for k, v in _percentiles(later).items()})
    figures["t2t.intents"] = totals["risk.counters.intents"]
    figures["t2t.rejects"] = totals["risk.counters.intents"] - totals["risk.counters.passes"]
    figures["t2t.messages"] = totals["feed.counters.mold.messages"]
    figures["t2t.line_rate.drops"] = (totals["book.counters.fifo_overflow"]
                                      + totals["strategy.counters.intents_lost"]
                                      + totals["risk.counters.orders_lost"])
    figures["t2t.hardware.latency_min"] = min(hardware_min)
    figures["t2t.hardware.latency_max"] = max(hardware_max)
    return figures
