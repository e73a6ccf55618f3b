"""The book behind its host registers: writes queued to the book, snapshots drained by the host,
lost host writes counted. The book itself is checked by tests/test_book_*.py."""

from tickwire.hdl.book.control import HOST_QUEUE_DEPTH, BookControl
from tickwire.hdl.book.records import BookParameters
from tickwire.sim.amaranth_sim import simulate
from tickwire.sim.book_model import ADD, BookModel, event
from tickwire.sim.book_run import decode_snapshot, event_value
from tickwire.sim.records import pack

P = BookParameters(symbols=4, locates=16, depth=4, visible=3, orders=16, ways=2, ref_bits=10,
                   fifo_depth=8)


def run(script):
    """Script items: ("sub", locate, slot), ("snap", locate), ("event", dict), ("idle", n);
    each host item is one bank write (one cycle). Returns snapshots, counters, alarms."""
    dut = BookControl(P)
    out = {}

    async def testbench(ctx):
        snapshots = []
        for item in script + [("idle", 40)]:
            cycles = item[1] if item[0] == "idle" else 1
            for _ in range(cycles):
                if item[0] == "sub":
                    ctx.set(dut.subscribe.as_value(),
                            pack(dut.subscribe.shape(), dict(write=1, locate=item[1],
                                                             slot=item[2], enable=1)))
                elif item[0] == "snap":
                    ctx.set(dut.snapshot_request.as_value(),
                            pack(dut.snapshot_request.shape(), dict(write=1, locate=item[1])))
                elif item[0] == "event":
                    ctx.set(dut.events.valid, 1)
                    ctx.set(dut.events.payload.as_value(), event_value(item[1]))
                ctx.set(dut.updates.ready, 1)
                ctx.set(dut.snapshot.ready, 1)
                await ctx.tick()
                ctx.set(dut.subscribe.as_value(), 0)
                ctx.set(dut.snapshot_request.as_value(), 0)
                ctx.set(dut.events.valid, 0)
                if ctx.get(dut.snapshot.valid):
                    snapshots.append(decode_snapshot(P, ctx.get(dut.snapshot.payload.as_value())))
        out["snapshots"] = snapshots
        out["counters"] = {name: ctx.get(getattr(dut.counters, name))
                           for name, _ in dut.counters.shape()}
        out["alarms"] = ctx.get(dut.alarms.as_value())

    simulate(dut, testbench)
    return out


def test_subscriptions_and_snapshots_reach_the_book_through_the_host_queues():
    adds = [event(ADD, locate=3, order_ref=k, side=k % 2, shares=10 * k, price=100 + k)
            for k in range(1, 6)]
    script = [("sub", 3, 1), ("idle", 4)] + [("event", e) for e in adds] + [("idle", 30),
                                                                            ("snap", 3)]
    out = run(script)
    model = BookModel(P)
    model.subscribe(3, 1)
    model.run(adds)
    assert out["snapshots"] == [model.snapshot(3)]
    assert out["counters"]["updates"] == len(model.updates) > 0
    assert out["counters"]["host_overflow"] == 0 and out["alarms"] == 0


def test_host_writes_beyond_the_queue_are_counted_and_alarmed_never_silent():
    burst = HOST_QUEUE_DEPTH + 3
    adds = [event(ADD, locate=2, order_ref=k, side=0, shares=5, price=50 + k)
            for k in range(1, 30)]
    # Events keep the book busy while snapshot requests arrive one per cycle.
    script = [("sub", 2, 0), ("idle", 4)] + [("event", e) for e in adds[:3]]
    script += [("snap", 2)] * burst
    out = run(script)
    lost = out["counters"]["host_overflow"]
    assert lost >= 1
    assert len(out["snapshots"]) + lost == burst
    assert out["alarms"] & 0b100   # overflow
