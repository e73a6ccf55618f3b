"""The feed path Verilated (integration tier, `tickwire sim`, benchmarks)."""

from tickwire.hdl.feed.handler import FeedHandler

from .feed_run import FeedRun, decode_outputs, event_latencies, filters_value, schedule
from .verilated import StreamHarness


class VerilatedFeedHandler:
    def __init__(self, **parameters):
        self.dut = FeedHandler(**parameters)
        self.harness = StreamHarness(self.dut, "feed_handler", "rx", ["events", "notices"])

    def configure(self, filters):
        self.filters = list(filters)
        self.harness.set("filters", filters_value(self.filters, self.dut.filter_entries))

    def resync(self, feed):
        self.harness.set("resync", 1 << feed)
        self.harness.run([None])
        self.harness.set("resync", 0)

    def counters(self):
        from .records import unpack
        return unpack(self.dut.counters.shape(), self.harness.get("counters"))

    def run(self, frames, drain_cycles=8):
        cycles, starts = schedule(frames)
        base = self.harness.cycle
        events, notices = self.harness.run(cycles + [None] * drain_cycles)
        decoded_events, decoded_notices, counters = decode_outputs(
            [w for w, _ in events], [w for w, _ in notices], self.harness.get("counters"),
            self.dut.counters.shape())
        stamps = [c - base for _, c in events]
        latencies = event_latencies(frames, starts, self.filters,
                                    list(zip(decoded_events, stamps, strict=True)))
        return FeedRun(decoded_events, decoded_notices, counters, latencies, len(cycles),
                       sum(b is not None for b in cycles))
