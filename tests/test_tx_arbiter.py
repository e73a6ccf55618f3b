"""`TxArbiter`: whole frames, fixed priority, no added latency, under random back-pressure."""

import random

from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwire.hdl.net.tx_arbiter import TxArbiter


def run_arbiter(n, frames, gaps, ready, seed, limit=20000):
    """Each input k sends `frames[k]` (lists of 64-bit beats), `gaps[k][j]` idle cycles before
    frame j, consecutive beats within a frame (as a MAC source must); out.ready is true with
    probability `ready`. Returns per-cycle observations."""
    dut = TxArbiter(n)
    rng = random.Random(seed)
    out_frames, starts, presented = [], [], []
    state = {"violations": []}

    async def testbench(ctx):
        pos = [[0, 0, gaps[k][0] if frames[k] else 0] for k in range(n)]  # frame, beat, gap
        current, in_frame, cycle = [], False, 0
        waiting_since_boundary = False
        while cycle < limit:
            done = all(p[0] >= len(frames[k]) for k, p in enumerate(pos))
            if done and not in_frame:
                break
            valids = []
            for k, i in enumerate(dut.inputs):
                f, b, gap = pos[k]
                valid = f < len(frames[k]) and gap == 0
                valids.append(valid)
                ctx.set(i.valid, valid)
                if valid:
                    beats = frames[k][f]
                    ctx.set(i.p.data, beats[b])
                    ctx.set(i.p.keep, 0xFF)
                    ctx.set(i.p.first, b == 0)
                    ctx.set(i.p.last, b == len(beats) - 1)
            take = rng.random() < ready
            ctx.set(dut.out.ready, take)
            out_valid = ctx.get(dut.out.valid)
            if in_frame and not out_valid:
                state["violations"].append(f"cycle {cycle}: frame interrupted")
            if out_valid and not in_frame and not waiting_since_boundary:
                # A new grant: the lowest-numbered waiting input must have it.
                source = ctx.get(dut.out.p.data) >> 56
                starts.append((cycle, source, valids.index(True)))
            waiting_since_boundary = out_valid and not in_frame and not take
            readies = [ctx.get(i.ready) for i in dut.inputs]
            if sum(readies) > 1:
                state["violations"].append(f"cycle {cycle}: two inputs ready")
            if out_valid and take:
                p = ctx.get(dut.out.p)
                presented.append(cycle)
                if p.first != (not in_frame):
                    state["violations"].append(f"cycle {cycle}: first out of place")
                current.append(p.data)
                in_frame = not p.last
                if p.last:
                    out_frames.append(current)
                    current = []
            for k in range(n):
                f, b, gap = pos[k]
                if gap:
                    pos[k][2] -= 1
                elif valids[k] and readies[k]:
                    if b + 1 < len(frames[k][f]):
                        pos[k][1] += 1
                    else:
                        pos[k][0] += 1
                        pos[k][1] = 0
                        if pos[k][0] < len(frames[k]):
                            pos[k][2] = gaps[k][pos[k][0]]
            await ctx.tick()
            cycle += 1
        state["cycles"] = cycle

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return out_frames, starts, state


def tagged_frames(rng, source, count):
    """Frames whose beats name their source (top byte), frame and position."""
    return [[source << 56 | j << 32 | b << 16 | rng.randrange(1 << 16)
             for b in range(rng.randrange(1, 12))] for j in range(count)]


@settings(max_examples=40)
@given(st.integers(1, 3), st.lists(st.integers(0, 6), min_size=3, max_size=3),
       st.sampled_from([1.0, 0.8, 0.5, 0.2]), st.integers(0, 1 << 30))
def test_every_frame_out_intact_contiguous_and_by_priority(n, counts, ready, seed):
    rng = random.Random(seed)
    frames = [tagged_frames(rng, k, counts[k]) for k in range(n)]
    gaps = [[rng.choice([0, 0, 1, 3, 10]) for _ in range(max(1, counts[k]))] for k in range(n)]
    out, starts, state = run_arbiter(n, frames, gaps, ready, seed)
    assert state["violations"] == []
    # Every input frame exactly once, whole, in its source's order.
    for k in range(n):
        assert [f for f in out if f[0] >> 56 == k] == frames[k]
    assert len(out) == sum(counts[:n])
    # At each new grant, the lowest-numbered waiting input got the output.
    for cycle, source, lowest in starts:
        assert source == lowest, f"cycle {cycle}: input {source} granted, {lowest} waiting"


def test_priority_input_zero_first_when_both_wait():
    rng = random.Random(1)
    frames = [tagged_frames(rng, 0, 3), [[1 << 56 | j << 32 | b for b in range(10)]
                                         for j in range(3)]]
    gaps = [[2, 0, 0], [0, 0, 0]]     # input 1 starts first, input 0 arrives during its frame
    out, starts, state = run_arbiter(2, frames, gaps, 1.0, 0)
    assert state["violations"] == []
    order = [f[0] >> 56 for f in out]
    assert order[0] == 1                   # already started: kept to its last beat
    assert order[1:4] == [0, 0, 0]         # then input 0 whenever it waits


def test_no_added_latency_when_idle():
    dut = TxArbiter(2)

    async def testbench(ctx):
        ctx.set(dut.out.ready, 1)
        await ctx.tick()
        ctx.set(dut.i1.valid, 1)
        ctx.set(dut.i1.p.data, 0x1234)
        ctx.set(dut.i1.p.first, 1)
        ctx.set(dut.i1.p.last, 1)
        assert ctx.get(dut.out.valid) == 1          # same cycle
        assert ctx.get(dut.out.p.data) == 0x1234
        assert ctx.get(dut.i1.ready) == 1 and ctx.get(dut.i0.ready) == 0

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
