"""`make bench` figures of the order book: rate, latency, a 1M-event soak, ECP5 synthesis.

`book_figures(console)` returns flat keys (``book.*``, ``synth.ecp5.book.*``). Every figure
comes from a run made here: the Verilated book (cycle-exact) for rate and latency, checked
against `BookModel` as it runs, and yosys + nextpnr for Fmax and area.
"""

import time

from rich.table import Table

from tickwire.hdl.book.book import BOOK_LATENCY_CYCLES
from tickwire.hdl.book.records import BookParameters

from .book_flow import random_events
from .book_model import ADD, REPLACE, BookModel, event
from .book_run import VerilatedBook

SOAK_EVENTS = 1_000_000
RATE_EVENTS = 200_000
LOCATES = tuple(range(1, 257))          # 256 subscribed symbols


def _percentiles(values):
    values = sorted(values)
    return {"min": values[0], "median": values[len(values) // 2],
            "p99": values[min(len(values) - 1, 99 * len(values) // 100)], "max": values[-1]}


def _subscribe_all(book, model):
    for slot, locate in enumerate(LOCATES):
        book.subscribe(locate, slot)
        model.subscribe(locate, slot)


def _realistic(count, seed):
    return random_events(count, seed=seed, locates=LOCATES, bad=0.002, replace_share=0.1,
                         unsubscribed=(900, 901))


def _worst(count):
    """Chained replaces: every event takes the book's longest path."""
    out = [event(ADD, locate=1, order_ref=1, side=0, shares=100, price=1_000_000)]
    for k in range(1, count):
        out.append(event(REPLACE, locate=1, order_ref=k, new_ref=k + 1, shares=100 + k % 7,
                         price=1_000_000 + 100 * (k % 9)))
    return out


def _rate(events, chunk=1000):
    """Events per cycle with events presented back to back, in chunks of `chunk` (the input
    FIFO deepened to hold a chunk, so the figure is the book's own rate). Each chunk ends with
    a sentinel add whose BookUpdate marks the cycle the book finished it; the book's state
    carries over from chunk to chunk. Every update is checked against the model."""
    book = VerilatedBook(fifo_depth=2 * chunk)
    model = BookModel(book.p)
    _subscribe_all(book, model)
    cycles = handled = 0
    for start in range(0, len(events), chunk):
        sentinel = event(ADD, locate=LOCATES[-1], order_ref=(1 << 35) + start, side=1,
                         shares=1, price=1000 - start // chunk)   # the new best ask
        batch = events[start:start + chunk] + [sentinel]
        updates, stamps = book.run(batch, gap=1)
        assert updates == model.run(batch), "the Verilated book differs from the model"
        assert updates[-1]["sequence"] == sentinel["sequence"] and updates[-1]["ask_price"]
        cycles += stamps[-1] - BOOK_LATENCY_CYCLES + 1
        handled += len(batch)
    assert book.counters()["fifo_overflow"] == 0
    return handled / cycles


def book_figures(console):
    results, rows = {}, []
    seconds = 0.0

    # Rate: realistic mix, and the worst case (every event a replace).
    mix = _realistic(RATE_EVENTS, seed=7)
    results["book.events_per_cycle"] = round(_rate(mix), 4)
    results["book.events_per_cycle.worst"] = round(_rate(_worst(50_000)), 4)
    rows.append(("realistic mix, back to back", len(mix), results["book.events_per_cycle"]))
    rows.append(("chained replaces, back to back", 50_000,
                 results["book.events_per_cycle.worst"]))

    # Soak and latency: the default (ECP5) build, events arriving every 3 cycles (above the
    # book's rate, so latency is the pipeline's own), 1M events, checked throughout.
    book = VerilatedBook()
    model = BookModel(book.p)
    _subscribe_all(book, model)
    latencies, mismatches, updates_seen = [], 0, 0
    chunk, gap = 100_000, 3
    soak = _realistic(SOAK_EVENTS, seed=1000)
    for start in range(0, SOAK_EVENTS, chunk):
        events = soak[start:start + chunk]
        started = time.perf_counter()
        updates, stamps = book.run(events, gap=gap)
        seconds += time.perf_counter() - started
        expected = model.run(events)
        mismatches += sum(a != b for a, b in zip(updates, expected, strict=False))
        mismatches += abs(len(updates) - len(expected))
        updates_seen += len(updates)
        presented = {e["sequence"]: k * gap for k, e in enumerate(events)}
        latencies += [s - presented[u["sequence"]] for u, s in zip(updates, stamps, strict=True)]
    counters = book.counters()
    for key, value in model.counters.items():
        if counters[key] != value:
            mismatches += 1
    snapshot_mismatches = sum(book.snapshot(loc) != model.snapshot(loc) for loc in LOCATES)
    for key, value in _percentiles(latencies).items():
        results[f"book.latency_cycles.{key}"] = value
    results["book.soak.events"] = SOAK_EVENTS
    results["book.soak.updates"] = updates_seen
    results["book.soak.mismatches"] = mismatches + snapshot_mismatches
    results["book.soak.level_overflow"] = counters["level_overflow"]
    results["book.soak.table_full"] = counters["table_full"]
    results["book.sim.events_per_s"] = round(SOAK_EVENTS / seconds)
    rows.append(("soak, default build, 1 event / 3 cycles", SOAK_EVENTS, 1 / gap))

    table = Table(title="order book workloads (Verilator)")
    for column in ("workload", "events", "events/cycle"):
        table.add_column(column)
    for name, count, rate in rows:
        table.add_row(name, f"{count:,}", f"{rate:.3f}")
    console.print(table)
    return results


def book_synthesis_figures(parameters=None):
    from tickwire.bitstreams.synth import synthesize
    from tickwire.hdl.book.book import OrderBook

    result = synthesize(OrderBook(parameters or BookParameters()), "order_book")
    return {"synth.ecp5.book.fmax_mhz": round(result.fmax_mhz, 2),
            "synth.ecp5.book.target_mhz": result.target_mhz,
            "synth.ecp5.book.luts": result.luts, "synth.ecp5.book.ffs": result.ffs,
            "synth.ecp5.book.brams": result.brams}


if __name__ == "__main__":
    import json
    import sys

    from rich.console import Console

    console = Console()
    figures = book_figures(console)
    if "--no-synth" not in sys.argv:
        figures.update(book_synthesis_figures())
    console.print_json(json.dumps(figures))
