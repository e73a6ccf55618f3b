"""The RGMII MAC (`tickwire.hdl.net.rgmii.Mac`) in Amaranth's simulator, pins to client ports.

A behavioural RGMII PHY drives the receive pins (each nibble set 2 ns before the ``rx_clk`` edge
that samples it, as a PHY with internal clock delay does) and samples the transmit pins on the
edges of the forwarded ``tx_clk``. Clocks: core 156.25 MHz, ``clk125`` and ``clk125_90`` (2 ns
later), and the PHY's ``rx_clk`` at an unrelated phase. Times are kept in picoseconds.

`mac_figures()` gives the bench figures: receive latency, from the rising ``rx_clk`` edge that
samples the low nibble of a frame's last FCS byte to the core edge after which its last beat is
on ``rx``; transmit latency, from the core edge that takes a frame's first beat to the ``clk125``
edge that launches its first preamble nibble. Both in core cycles (the worst over the phases
the frames meet, rounded up) and in ns.
"""

import math
from typing import NamedTuple

from amaranth.sim import Simulator

from tickwire.hdl.net.ethernet_mac import mac_counter_layout
from tickwire.hdl.net.mac import MacBeat
from tickwire.hdl.net.rgmii import Mac
from tickwire.sim import mac_model as ref
from tickwire.sim.records import unpack

CORE_PS = 6400
RGMII_PS = 8000
RX_CLK_PHASE_PS = 1300
CORE_PHASE_PS = 3200


class WireFrame(NamedTuple):
    after_sfd: bytes          # bytes after the SFD, FCS included
    error_at: int | None = None   # index (after the SFD) of a byte sent with RX_ER
    gap: int = ref.MIN_IFG    # idle byte cycles after it


class MacRun(NamedTuple):
    rx_frames: list           # [(bytes, bad)] as the client saw them
    tx_wire: list             # [(bytes from the preamble, error)] as the PHY saw them
    tx_gaps: list             # idle byte cycles between consecutive transmitted frames
    counters: dict
    rx_latency_ps: list
    tx_latency_ps: list


def run_mac(rx=(), tx=(), *, tx_idle=None, tx_stall=None, core_ps=CORE_PS, mac=None,
            rx_start_cycles=20, drain_ps=4_000_000, vcd=None):
    """Receive the `rx` WireFrames on the pins and send the `tx` client frames at ``tx``.

    `tx_idle[i]`: core cycles before offering frame i (default: back to back);
    `tx_stall` = (frame, beat, cycles): withhold that beat (breaking the MAC contract)."""
    dut = mac or Mac()
    rx, tx = list(rx), list(tx)
    tx_idle = list(tx_idle) if tx_idle is not None else [0] * len(tx)
    beats, dv_ends, taken, tx_bytes = [], [], [], []
    wire_ps = rx_start_cycles * RGMII_PS + sum(
        (8 + len(f.after_sfd) + f.gap) * RGMII_PS for f in rx)
    tx_ps = sum((len(f) // 8 + 2 + idle) * core_ps for f, idle in zip(tx, tx_idle, strict=True))
    tx_ps += sum((max(len(f), 60) + 24 + 30) * RGMII_PS for f in tx)
    end_ps = max(wire_ps, tx_ps) + drain_ps // 4 + 200 * RGMII_PS
    state = {}

    async def phy_rx(ctx):
        pins = dut.rgmii
        cycles = [(0, 0, 0)] * rx_start_cycles
        for frame in rx:
            body = [(b, 1, 0) for b in ref.PREAMBLE + frame.after_sfd]
            if frame.error_at is not None:
                index = len(ref.PREAMBLE) + frame.error_at
                body[index] = (body[index][0], 1, 1)
            cycles += body + [(0, 0, 0)] * frame.gap
        now = RX_CLK_PHASE_PS + RGMII_PS - 2000
        await ctx.delay(now * 1e-12)
        previous_dv = 0
        for byte, dv, er in cycles:
            ctx.set(pins.rxd, byte & 0xF)
            ctx.set(pins.rx_ctl, dv)
            await ctx.delay(2e-9)
            ctx.set(pins.rx_clk, 1)
            if previous_dv and not dv:
                dv_ends.append(now + 2000 - RGMII_PS)
            previous_dv = dv
            await ctx.delay(2e-9)
            ctx.set(pins.rxd, byte >> 4)
            ctx.set(pins.rx_ctl, dv ^ er)
            await ctx.delay(2e-9)
            ctx.set(pins.rx_clk, 0)
            await ctx.delay(2e-9)
            now += RGMII_PS
        while True:   # keep the receive clock running
            await ctx.delay(4e-9)
            ctx.set(pins.rx_clk, 1)
            await ctx.delay(4e-9)
            ctx.set(pins.rx_clk, 0)

    async def tx_clocks(ctx):
        pins = dut.rgmii
        now = 0
        while True:
            ctx.set(dut.clk125, 1)
            await ctx.delay(2e-9)
            ctx.set(dut.clk125_90, 1)
            low, en = ctx.get(pins.txd), ctx.get(pins.tx_ctl)
            await ctx.delay(2e-9)
            ctx.set(dut.clk125, 0)
            await ctx.delay(2e-9)
            ctx.set(dut.clk125_90, 0)
            high, en_er = ctx.get(pins.txd), ctx.get(pins.tx_ctl)
            tx_bytes.append((low | high << 4, en, en ^ en_er, now))
            await ctx.delay(2e-9)
            now += RGMII_PS

    async def core(ctx):
        cycle, now = 0, CORE_PHASE_PS - core_ps   # the first tick is the edge at the phase
        pending = []   # (idle cycles, [beats]) per frame, in order
        for frame, idle in zip(tx, tx_idle, strict=True):
            pending.append([idle, ref.beats_of(frame)])
        beat_index, stalled = 0, 0
        frame_number = 0
        while now < end_ps:
            # during the cycle that began at `now`
            if ctx.get(dut.rx.valid):
                beats.append((unpack(MacBeat, ctx.get(dut.rx.payload.as_value())), now))
            offer = None
            if pending:
                if pending[0][0] > 0:
                    pending[0][0] -= 1
                elif tx_stall and (frame_number, beat_index) == tx_stall[:2] \
                        and stalled < tx_stall[2]:
                    stalled += 1
                else:
                    offer = pending[0][1][beat_index]
            ctx.set(dut.tx.valid, offer is not None)
            if offer is not None:
                ctx.set(dut.tx.payload, offer)
            accepted = offer is not None and ctx.get(dut.tx.ready)
            await ctx.tick()
            cycle += 1
            now += core_ps
            if accepted:
                if offer["first"]:
                    taken.append(now)
                beat_index += 1
                if offer["last"]:
                    pending.pop(0)
                    frame_number += 1
                    beat_index = 0
        state["counters"] = unpack(mac_counter_layout(), ctx.get(dut.counters.as_value()))

    sim = Simulator(dut)
    sim.add_clock(core_ps * 1e-12, phase=CORE_PHASE_PS * 1e-12)
    sim.add_testbench(phy_rx, background=True)
    sim.add_testbench(tx_clocks, background=True)
    sim.add_testbench(core)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()

    rx_frames = ref.frames_from_beats([b for b, _ in beats])
    cycles = [(byte, en, er) for byte, en, er, _ in tx_bytes]
    sent = ref.split_wire(cycles)
    starts = [tx_bytes[start][3] for _, _, start, _ in sent]
    gaps = [b[2] - a[3] - 1 for a, b in zip(sent, sent[1:], strict=False)]
    last_times = [t for b, t in beats if b["last"]]
    rx_latency = [end - dv for dv, end in zip(dv_ends, last_times, strict=False)]
    tx_latency = [start - take for take, start in zip(taken, starts, strict=False)]
    return MacRun(rx_frames, [(data, error) for data, error, _, _ in sent], gaps,
                  state["counters"], rx_latency, tx_latency)


def mac_figures(frames=16):
    """Bench figures of the MAC, measured in Amaranth's simulator: ``mac.rx_latency_cycles`` and
    ``mac.tx_latency_cycles`` in core cycles (156.25 MHz; the worst over the clock phases met,
    rounded up), with their ns range."""
    sizes = [60 + 7 * k for k in range(frames)]   # last bytes fall on every lane and phase
    rx = [WireFrame(_frame(n) + ref.fcs(_frame(n)), gap=ref.MIN_IFG + k % 3)
          for k, n in enumerate(sizes)]
    tx = [_frame(n) for n in sizes]
    # each frame offered once the previous one has left the wire: the MAC is idle
    idle = [40 + k % 5 + math.ceil((n + 40) * RGMII_PS / CORE_PS) for k, n in enumerate(sizes)]
    run = run_mac(rx, tx, tx_idle=idle)
    assert run.rx_frames == [(_frame(n), False) for n in sizes], "receive path broken"
    assert [w for w, _ in run.tx_wire] == [ref.tx_wire(f) for f in tx], "transmit path broken"
    rx_ns = [ps / 1000 for ps in run.rx_latency_ps]
    tx_ns = [ps / 1000 for ps in run.tx_latency_ps]
    core_ns = CORE_PS / 1000
    return {
        "mac.rx_latency_cycles": math.ceil(max(rx_ns) / core_ns - 1e-9),
        "mac.tx_latency_cycles": math.ceil(max(tx_ns) / core_ns - 1e-9),
        "mac.rx_latency_ns_min": min(rx_ns), "mac.rx_latency_ns_max": max(rx_ns),
        "mac.tx_latency_ns_min": min(tx_ns), "mac.tx_latency_ns_max": max(tx_ns),
    }


def _frame(length):
    return bytes((7 * i + length) % 256 for i in range(length))


if __name__ == "__main__":
    for name, value in mac_figures().items():
        print(f"{name}: {value}")
