"""The tick-to-trade top level Verilated in batches, with the host driver on its bus.

`VerilatedTop` compiles a `TickToTrade` with `tickwire.sim.verilated.StreamHarness` (C++
clocks whole batches of cycles), presents frames at MAC rx, collects order frames at MAC tx
(always ready) with the cycle of their first beat, and serves `read_word` / `write_word` so
that `tickwire.host.device.Device` drives it exactly as it drives a board: the configuration
in benches and tests goes through the host's own code and register names.

Timing convention (as everywhere in tickwire): a beat presented at rx "in cycle c" is sampled
at the end of cycle c; an output stamped c is valid during cycle c. The actionable latency of
an order is (cycle of its first tx beat) - (cycle the last byte of the triggering message was
at rx).
"""

from typing import NamedTuple

from tickwire.hdl.book.records import BookParameters
from tickwire.hdl.net.mac import MacBeat
from tickwire.hdl.platform.device import DEVICE_NAME, device_verilog

from .feed_run import message_ends, schedule
from .records import unpack
from .verilated import HarnessBus, StreamHarness

#: The reduced build the test suite simulates (quick to Verilate; the same circuit): 16 book
#: slots, 2,048 orders, 4 stored levels.
TEST_BOOK = BookParameters(symbols=16, locates=1024, depth=4, visible=2, orders=2048, ways=4,
                           ref_bits=36, fifo_depth=64)
TEST_PARAMETERS = {"book": TEST_BOOK}


class SentFrame(NamedTuple):
    data: bytes
    cycle: int      # the cycle its first beat was valid at tx


class VerilatedTop(HarnessBus):
    """A `TickToTrade` (with its design identity) compiled by Verilator; `parameters` are the
    top level's; `trace`: the traced build (`StreamHarness.trace` dumps a VCD window)."""

    def __init__(self, *, trace=False, **parameters):
        self.top, verilog = device_verilog(**parameters)
        self.register_map = self.top.register_map
        self.identity = self.top.bank.identity
        self.harness = StreamHarness(self.top, DEVICE_NAME, "rx", ["tx"], verilog=verilog,
                                     trace=trace)
        self.sent = []
        self._partial = None

    @property
    def cycle(self):
        return self.harness.cycle

    def power_on(self):
        """A new model instance: registers reset and memories back at their initial contents."""
        self.harness.power_on()
        self.sent, self._partial = [], None

    def _collect(self, outputs):
        (tx,) = outputs
        for value, cycle in tx:
            beat = unpack(MacBeat, value)
            if beat["first"] or self._partial is None:
                self._partial = [bytearray(), cycle]
            self._partial[0] += beat["data"].to_bytes(8, "little")[:bin(beat["keep"]).count("1")]
            if beat["last"]:
                self.sent.append(SentFrame(bytes(self._partial[0]), self._partial[1]))
                self._partial = None

    @property
    def sending(self):
        """An order frame has started at tx and not yet ended."""
        return self._partial is not None

    def idle(self, cycles=1):
        self._collect(self.harness.run([None] * cycles))

    def __str__(self):
        return "verilated TickToTrade"

    def replay(self, frames, drain_cycles=64):
        """Present `frames` back to back (with their idle gaps) from the next cycle on; returns
        each frame's first rx cycle."""
        cycles, starts = schedule(frames)
        base = self.cycle
        self._collect(self.harness.run(cycles + [None] * drain_cycles))
        return [base + s for s in starts]


async def configure_and_arm(device, text, session, source="config.toml"):
    """What a desk does before trading, through the host's own code: the default feed
    filters, the configuration `text` (TOML) validated and written, the order session handed
    over (`session`: `tickwire.host.api.start_session`'s arguments), armed."""
    from tickwire.host import api
    from tickwire.host.config import parse

    from .scenario import default_filters

    await api.load_filters(device, default_filters())
    for write in parse(text, device.map, source).writes:
        await device.write(write.register, write.value, index=write.index)
    await api.start_session(device, **session)
    await api.arm(device)


def message_arrivals(frames, starts, filters):
    """{(feed, sequence): (cycle its last byte was first at rx, first cycle of that frame)}:
    the earliest copy of each message (lines A and B carry the same messages)."""
    feed_of = {(f.group, f.port): f.feed for f in filters if f.enable}
    out = {}
    for frame, start in zip(frames, starts, strict=True):
        for group, port, sequence, end in message_ends(frame.data):
            feed = feed_of.get((group, port))
            if feed is None:
                continue
            seen = (start + end // 8, start)
            key = (feed, sequence)
            if key not in out or seen < out[key]:
                out[key] = seen
    return out
