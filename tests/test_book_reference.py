"""The reference book itself, cross-checked against an independent implementation.

`FullBook` (the oracle every book test trusts) and `meatpy`'s limit order book (PyPI,
ITCH 5.0 market processor, its own message parser) read the same ITCH 5.0 stream, written
as a Nasdaq daily file; the full depth of both sides of every symbol must agree at regular
checkpoints and at the end. `BookModel`, given the same stream with room enough, must show
the same top levels."""

import datetime

import pytest

from tickwire.hdl.book.records import BookParameters
from tickwire.sim.book_flow import events_from_itch
from tickwire.sim.book_model import BookModel, FullBook
from tickwire.sim.scenario import DEFAULT_SYMBOLS, order_flow

meatpy_itch = pytest.importorskip("meatpy.itch50")


def _levels(levels):
    return [(level.price, level.volume, level.n_orders) for level in levels]


@pytest.mark.parametrize("seed", [1, 2])
def test_full_book_equals_meatpy_on_the_same_itch_stream(tmp_path, monkeypatch, seed):
    # The scenario executes orders at random, not in price-time priority; meatpy polices
    # priority by default (an exception), which is not what is compared here: its book
    # arithmetic is. Its `skip_exception` hook is the documented way to let it continue.
    import meatpy.lob
    monkeypatch.setattr(meatpy.lob.LimitOrderBook, "skip_exception", lambda self, e: True)
    messages = order_flow(12_000, seed=seed)
    daily = tmp_path / "12012026.NASDAQ_ITCH50"
    daily.write_bytes(b"".join(len(m).to_bytes(2, "big") + m for m in messages))
    day = datetime.datetime(2026, 12, 1)
    processors = {locate: meatpy_itch.ITCH50MarketProcessor(symbol, day)
                  for locate, symbol in enumerate(DEFAULT_SYMBOLS, start=1)}
    ours = FullBook()
    ours_events = iter(events_from_itch(messages))
    reader = meatpy_itch.ITCH50MessageReader()
    compared = 0
    for index, (raw, theirs) in enumerate(zip(messages, reader.read_file(daily),
                                              strict=True)):
        for processor in processors.values():
            processor.process_message(theirs)
        if raw[0:1] in b"AFECXDU":
            ours.apply(next(ours_events))
        if index % 400 == 0 or index == len(messages) - 1:
            for locate, processor in processors.items():
                lob = processor.current_lob
                if lob is None:
                    continue
                assert ours.top(locate, 0) == _levels(lob.bid_levels), (index, locate)
                assert ours.top(locate, 1) == _levels(lob.ask_levels), (index, locate)
                compared += 1
    assert compared > 100
    assert sum(len(ours.top(locate, side)) for locate in processors for side in (0, 1)) > 40


def test_book_model_with_room_enough_equals_the_full_book():
    params = BookParameters(symbols=16, locates=16, depth=64, visible=8, orders=1 << 16,
                            ways=8, ref_bits=40)
    events = events_from_itch(order_flow(20_000, seed=3))
    model, full = BookModel(params), FullBook()
    for locate in range(1, len(DEFAULT_SYMBOLS) + 1):
        model.subscribe(locate, locate)
    for e in events:
        model.apply(e)
        full.apply(e)
        for side in (0, 1):
            assert model.visible(e["locate"], side) == full.top(e["locate"], side, 8)
    refused = {k: v for k, v in model.counters.items()
               if k not in ("events", "updates", "level_overflow") and v}
    assert refused == {}
