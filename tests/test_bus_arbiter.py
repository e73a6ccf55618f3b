"""`BusArbiter` (the host port and the UDP control channel on one register bus) against its rule,
cycle by cycle, and the `ControlResponder`'s lock against the accesses it really makes."""

from hypothesis import given, settings
from hypothesis import strategies as st

from tickwire.bitstreams.synth import utilisation
from tickwire.hdl.platform.bus_arbiter import BusArbiter
from tickwire.host.udp_control import READ, WRITE, Operation, encode
from tickwire.sim.amaranth_sim import simulate
from tickwire.sim.feed_run import Frame, schedule

WIDTH = 9

master = st.fixed_dictionaries({"addr": st.integers(0, (1 << WIDTH) - 1),
                                "w_data": st.integers(0, (1 << 32) - 1),
                                "r_stb": st.booleans(), "w_stb": st.booleans()})
cycle = st.fixed_dictionaries({"lock": st.booleans(), "host": master, "control": master,
                               "r_data": st.integers(0, (1 << 32) - 1)})


@settings(max_examples=40, deadline=None)
@given(st.lists(cycle, min_size=1, max_size=40))
def test_the_lock_decides_who_has_the_bus_and_refused_accesses_are_counted(cycles):
    dut = BusArbiter(WIDTH)
    seen = {}

    async def testbench(ctx):
        for c in cycles:
            ctx.set(dut.lock, c["lock"])
            ctx.set(dut.out.r_data, c["r_data"])
            for side in ("host", "control"):
                for field, value in c[side].items():
                    ctx.set(getattr(getattr(dut, side), field), value)
            owner = c["control"] if c["lock"] else c["host"]
            for field, value in owner.items():
                assert ctx.get(getattr(dut.out, field)) == value, field
            assert ctx.get(dut.busy) == c["lock"]
            assert ctx.get(dut.host.r_data) == ctx.get(dut.control.r_data) == c["r_data"]
            await ctx.tick()
        ctx.set(dut.host.r_stb, 0)
        ctx.set(dut.host.w_stb, 0)
        await ctx.tick().repeat(2)                        # counters lag by a cycle
        seen["refused"] = ctx.get(dut.counters.refused)

    simulate(dut, testbench)
    assert seen["refused"] == sum(c["lock"] and (c["host"]["r_stb"] or c["host"]["w_stb"])
                                  for c in cycles)


def test_the_responder_holds_the_lock_around_every_access_it_makes():
    from test_control_bank import BOARD, ControlledBoard

    from tickwire.sim.control_run import request_frame

    dut = ControlledBoard()
    responder = dut.responder
    operations = [Operation(READ, 0), Operation(WRITE, 3, 1), Operation(READ, 1)] * 5
    frames = [Frame(request_frame(encode(id_, operations, BOARD.token), BOARD), idle_after=3)
              for id_ in (1, 2)]
    beats, _ = schedule(frames)
    trace = []

    async def testbench(ctx):
        for beat in beats + [None] * 200:
            ctx.set(dut.rx.valid, beat is not None)
            if beat is not None:
                ctx.set(dut.rx.payload.as_value(), beat)
            ctx.set(dut.tx.ready, 1)
            bus = responder.bus
            trace.append((ctx.get(responder.bus_lock), ctx.get(bus.r_stb) | ctx.get(bus.w_stb)))
            await ctx.tick()

    simulate(dut, testbench)
    strobes = [t for t, (_, strobe) in enumerate(trace) if strobe]
    assert len(strobes) == 2 * len(operations)
    assert all(trace[t][0] for t in strobes)                       # never outside the lock
    # The lock rises at least two cycles before each request's first access (a host-port
    # master that saw it low may have strobed in the cycle before), and stays up one cycle
    # after its last, while the last read's data is taken.
    for first in (strobes[0], strobes[len(operations)]):
        assert trace[first - 2][0] and trace[first - 1][0]
    for last in (strobes[len(operations) - 1], strobes[-1]):
        assert trace[last + 1][0]
    assert not trace[-1][0]


def test_bus_arbiter_is_logic():
    cells = utilisation(BusArbiter(WIDTH), "bus_arbiter")
    assert cells.luts > WIDTH + 32
