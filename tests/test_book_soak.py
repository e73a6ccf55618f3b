"""Soak: the default (ECP5) build of the order book, Verilated, over 200,000 events of the
realistic mix on 256 symbols in bursts, against `BookModel` throughout. (`make bench` runs
the same check over 1,000,000 events.)"""

import random

import pytest

from tickwire.sim.book_bench import LOCATES, _realistic
from tickwire.sim.book_model import BookModel
from tickwire.sim.book_run import VerilatedBook


@pytest.mark.slow
def test_default_build_soak_against_the_model():
    book = VerilatedBook()
    model = BookModel(book.p)
    for slot, locate in enumerate(LOCATES):
        book.subscribe(locate, slot)
        model.subscribe(locate, slot)
    events = _realistic(200_000, seed=99)
    rng = random.Random(3)
    gaps, backlog = [], 0
    for _ in events:                 # bursts at one per cycle, bounded below the FIFO depth
        gap = rng.choice((1, 1, 2, 3, 4))
        if backlog + 3 - gap > 3 * (book.p.fifo_depth - 4):
            gap = 4
        backlog = max(0, backlog + 3 - gap)
        gaps.append(gap)
    updates, _ = book.run(events, gaps)
    expected = model.run(events)
    assert len(updates) == len(expected)
    first_bad = next((k for k, (a, b) in enumerate(zip(updates, expected, strict=True))
                      if a != b), None)
    assert first_bad is None, (first_bad, updates[first_bad], expected[first_bad])
    assert book.counters() == dict(model.counters)
    assert book.counters()["fifo_overflow"] == 0
    for locate in LOCATES:
        assert book.snapshot(locate) == model.snapshot(locate)
