"""Running the feed path in Amaranth's own simulator (unit tier)."""

from amaranth.sim import Simulator

from tickwire.hdl.feed.handler import FeedHandler

from .feed_run import FeedRun, decode_outputs, event_latencies, filters_value, schedule


def simulate(dut, testbench, vcd=None):
    """Run an async testbench against `dut` on a 100 MHz clock, optionally writing a VCD."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()


def run_feed_handler(frames, filters, *, dut=None, drain_cycles=8, vcd=None, recover=0):
    """Present `frames` back to back (plus their idle cycles) at rx of a `FeedHandler`
    (`recover`: its gap-recovery bits, one per feed)."""
    dut = dut or FeedHandler()
    cycles, starts = schedule(frames)
    events, notices = [], []
    state = {}

    async def testbench(ctx):
        ctx.set(dut.filters.as_value(), filters_value(filters, dut.filter_entries))
        ctx.set(dut.notices.ready, 1)
        ctx.set(dut.recover, recover)
        for cycle, beat in enumerate(cycles + [None] * drain_cycles):
            ctx.set(dut.rx.valid, beat is not None)
            if beat is not None:
                ctx.set(dut.rx.payload.as_value(), beat)
            await ctx.tick()
            # Registered outputs now show what is valid during cycle `cycle + 1`.
            if ctx.get(dut.events.valid):
                events.append((ctx.get(dut.events.payload.as_value()), cycle + 1))
            if ctx.get(dut.notices.valid):
                notices.append(ctx.get(dut.notices.payload.as_value()))
        state["counters"] = ctx.get(dut.counters.as_value())

    simulate(dut, testbench, vcd)
    decoded_events, decoded_notices, counters = decode_outputs(
        [w for w, _ in events], notices, state["counters"], dut.counters.shape())
    latencies = event_latencies(frames, starts, filters,
                                [(e, c) for e, (_, c) in zip(decoded_events, events, strict=True)])
    beats_presented = sum(b is not None for b in cycles)
    return FeedRun(decoded_events, decoded_notices, counters, latencies, len(cycles),
                   beats_presented)
