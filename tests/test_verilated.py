"""The batch harness's speed options (`tickwire.sim.verilated.StreamHarness`): inputs behind a
register and a profile-guided build. Both must leave the model's behaviour unchanged: their
outputs are checked against the plain build of the same component (and Amaranth's simulator),
and each option must build apart in the cache."""

import random

import pytest
from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from tickwire.sim.verilated import StreamHarness


class RunningSum(wiring.Component):
    """Per input beat, the sum of the beats so far (mod 2**32), one cycle later; a register
    port so that the harness has an input outside the stream."""

    rx: In(stream.Signature(unsigned(32), always_ready=True))
    total: Out(stream.Signature(unsigned(32), always_ready=True))
    scale: In(unsigned(8))

    def elaborate(self, platform):
        m = Module()
        acc = Signal(32)
        with m.If(self.rx.valid):
            m.d.sync += acc.eq(acc + self.rx.payload * (self.scale + 1))
        m.d.sync += [self.total.valid.eq(self.rx.valid),
                     self.total.payload.eq(acc + self.rx.payload * (self.scale + 1))]
        return m


_rng = random.Random(3)
BEATS = [_rng.choice([None, _rng.randrange(2**32)]) for _ in range(400)]


def amaranth_sums(beats):
    """The same beats through Amaranth's own simulator: the reference."""
    dut, out = RunningSum(), []

    async def bench(ctx):
        ctx.set(dut.scale, 2)
        for beat in [*beats, None, None]:
            ctx.set(dut.rx.valid, beat is not None)
            ctx.set(dut.rx.payload, beat or 0)
            await ctx.tick()
            if ctx.get(dut.total.valid):
                out.append(ctx.get(dut.total.payload))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out


def sums(harness, beats):
    """(sum, cycle counted from the run's start) per output beat, from power-on."""
    harness.power_on()
    harness.set("scale", 2)
    start = harness.cycle
    (total,) = harness.run([*beats, None, None])
    return [(value, cycle - start) for value, cycle in total]


@pytest.fixture(scope="module")
def plain():
    return StreamHarness(RunningSum(), "running_sum", "rx", ["total"])


def test_plain_build_matches_amaranth(plain):
    assert [v for v, _ in sums(plain, BEATS)] == amaranth_sums(BEATS)


def test_registered_inputs_delay_by_one_cycle_and_change_nothing_else(plain):
    registered = StreamHarness(RunningSum(), "running_sum", "rx", ["total"],
                               register_inputs=True)
    assert registered.build_dir != plain.build_dir
    expected = sums(plain, BEATS)
    got = sums(registered, BEATS)
    assert [v for v, _ in got] == [v for v, _ in expected] == amaranth_sums(BEATS)
    assert [c for _, c in got] == [c + 1 for _, c in expected]
    # the bus-like input is not behind the register: it acts on the next edge as before
    assert registered.get("scale") == 2


def test_profiled_build_trains_then_behaves_alike(plain):
    trained = []

    def train(harness):        # a training run: drives the instrumented model
        trained.append(sums(harness, BEATS[:100]))

    profiled = StreamHarness(RunningSum(), "running_sum", "rx", ["total"], profile=train)
    assert profiled.build_dir != plain.build_dir
    # the profile was produced at build time and kept with the model (a cached build
    # neither trains again nor needs it)
    assert list((profiled.build_dir / "obj").glob("*.gcda"))
    assert (profiled.build_dir / "libtickwire_model.so").exists()
    again = StreamHarness(RunningSum(), "running_sum", "rx", ["total"], profile=train)
    assert again.build_dir == profiled.build_dir
    assert len(trained) <= 1      # 0 when the build was cached by an earlier run
    assert all([v for v, _ in t] == amaranth_sums(BEATS[:100]) for t in trained)
    assert [v for v, _ in sums(profiled, BEATS)] == amaranth_sums(BEATS)
