"""`MdioMaster` against a clause 22 PHY model written from the standard (`tickwire.sim.mdio_model`):
every frame on MDC/MDIO decoded bit by bit and checked against 22.2.4.5's format and 22.3.4's
timing, the link bit's latching, no PHY, the address scan, host accesses; then the generated
Verilog under Verilator/cocotb, and yosys for the ECP5."""

from pathlib import Path

import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwire.bitstreams.synth import utilisation
from tickwire.hdl.net.mdio import MdioMaster, Speed, check_parameters, mdc_half_period
from tickwire.sim.cocotb_run import run_cocotb
from tickwire.sim.mdio_model import Clause22Phy

# A Realtek RTL8211E-like register file after autonegotiating 1000BASE-T full duplex with a
# gigabit partner (values from the registers' definitions, 22.2.4 and 40.5.1.1).
GIGABIT = {0: 0x1140, 1: 0x796D, 2: 0x001C, 3: 0xC915, 4: 0x01E1, 5: 0xC5E1, 9: 0x0200,
           10: 0x3C00}
SETTLE = 3        # cycles from the PHY's view of the last rising MDC edge to the status


def run(dut, phy, cycles, *, events=(), requests=()):
    """Step `dut` and `phy` for `cycles` clock cycles. `events`: (cycle, up) link changes;
    `requests`: (cycle, request dict) host accesses. Returns, for each frame the PHY saw,
    (frame, status, bmsr, reply) `SETTLE` cycles after its end, and the final counters."""
    events, requests = dict(events), dict(requests)
    seen, results, taken = [], {}, [0]

    async def bench(ctx):
        ctx.set(dut.mdio_i, 1)
        for cycle in range(cycles):
            if cycle in events:
                phy.set_link(events[cycle])
            request = requests.get(cycle)
            ctx.set(dut.request, {"start": 1, "write": 0, "phy_address": 0, "register": 0,
                                  "data": 0, **request} if request else
                    {"start": 0, "write": 0, "phy_address": 0, "register": 0, "data": 0})
            line = phy.step(ctx.get(dut.mdc), ctx.get(dut.mdio_oe), ctx.get(dut.mdio_o))
            ctx.set(dut.mdio_i, line)
            for frame in phy.frames[taken[0]:]:
                seen.append((frame, frame.end_cycle + SETTLE))
                taken[0] += 1
            while seen and seen[0][1] == cycle:
                frame = seen.pop(0)[0]
                status = ctx.get(dut.status)
                results.setdefault("after", []).append((frame, {
                    "link": status.link, "present": status.present, "speed": status.speed,
                    "phy_address": status.phy_address}, ctx.get(dut.bmsr),
                    {"data": ctx.get(dut.reply.data), "pending": ctx.get(dut.reply.pending)}))
            await ctx.tick()
        counters = ctx.get(dut.counters)
        results["counters"] = {"frames": counters.frames, "link_losses": counters.link_losses}

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results.get("after", []), results["counters"]


def check_format(phy, master):
    """22.2.4.5: each frame a 32-bit driven preamble, ST 01, a read or write, the master
    releasing the turnaround and the data of a read and driving them in a write, nobody
    else on the line; 22.3.4: MDC high and low `half_period` cycles each."""
    assert phy.errors == []
    for frame in phy.frames:
        assert frame.preamble == 32 and frame.st == 0b01 and frame.op in (0b10, 0b01)
        if frame.op == 0b10:
            assert frame.ta_driven == (False, False) and not any(frame.data_driven)
            assert frame.ta == ((1, 0) if frame.answered else (1, 1))
        else:
            assert frame.ta_driven == (True, True) and frame.ta == (1, 0)
            assert all(frame.data_driven)
    h = master.half_period
    assert all(b - a == 2 * h for a, b in zip(phy.rises, phy.rises[1:]))
    assert all(rise - fall == h for fall, rise in zip(phy.falls, phy.rises[1:]))
    # MDIO changes only as MDC falls: half a period of setup and hold at the PHY's sample
    assert set(phy.master_changes[1:]) <= set(phy.falls)


def test_reads_bmsr_then_the_speed_registers_and_reports_a_gigabit_link():
    master = MdioMaster(half_period=3, phy_address=5)
    phy = Clause22Phy(5, GIGABIT, delay=3, link=True)
    after, counters = run(master, phy, 8 * master.frame_cycles)
    check_format(phy, master)
    assert [f.register for f in phy.frames] == [1, 0, 4, 5, 9, 10, 1, 0]
    assert all(f.phy_address == 5 and f.answered for f in phy.frames)
    assert [f.data for f in phy.frames[:6]] == [GIGABIT[r] | (r == 1) << 2
                                                for r in (1, 0, 4, 5, 9, 10)]
    status = after[-1][1]
    assert status == {"link": 1, "present": 1, "speed": Speed.M1000, "phy_address": 5}
    assert after[-1][2] == 0x796D
    assert counters == {"frames": len(phy.frames), "link_losses": 0}


def test_link_bit_latches_low_a_flap_between_reads_shows_for_one_poll():
    master = MdioMaster(half_period=2, phy_address=1)
    phy = Clause22Phy(1, GIGABIT, delay=1, link=True)
    poll = master.poll_cycles
    # up; a 10-cycle drop in the middle of the second poll period; then down for good
    events = [(poll + poll // 2, False), (poll + poll // 2 + 10, True), (5 * poll, False)]
    after, counters = run(master, phy, 8 * poll, events=events)
    check_format(phy, master)
    links = [status["link"] for frame, status, _, _ in after if frame.register == 1]
    assert links == [1, 1, 0, 1, 1, 0, 0, 0]
    assert counters["link_losses"] == 2


def test_no_phy_reads_all_ones_and_reports_absent():
    master = MdioMaster(half_period=2, phy_address=3)
    phy = Clause22Phy(None)
    after, counters = run(master, phy, 4 * master.frame_cycles)
    check_format(phy, master)
    assert [f.register for f in phy.frames] == [1, 1, 1, 1]
    assert {f.data for f in phy.frames} == {0xFFFF}
    assert all(status == {"link": 0, "present": 0, "speed": Speed.UNKNOWN, "phy_address": 3}
               for _, status, _, _ in after)
    assert counters["link_losses"] == 0


def test_scan_finds_the_phy_and_rescans_when_it_goes():
    master = MdioMaster(half_period=2)
    phy = Clause22Phy(19, GIGABIT, link=True)
    after, _ = run(master, phy, 30 * master.frame_cycles,
                   events=[])
    check_format(phy, master)
    assert [f.phy_address for f in phy.frames[:20]] == list(range(20))
    assert all(f.register == 1 for f in phy.frames[:20])
    assert after[18][1]["present"] == 0 and after[19][1]["present"] == 1
    assert after[19][1]["phy_address"] == 19
    assert {f.phy_address for f in phy.frames[20:]} == {19}


def test_output_delay_of_300_ns_is_read_right_at_the_board_clock():
    master = MdioMaster(clock_mhz=31.25, phy_address=0)
    assert master.half_period == 7 and 31.25 / (2 * master.half_period) <= 2.5
    delay = -(-300 // 32)      # 10 cycles of 32 ns
    phy = Clause22Phy(0, {**GIGABIT, 1: 0x7969, 5: 0x4DE1, 10: 0}, delay=delay, link=True)
    after, _ = run(master, phy, 6 * master.frame_cycles + 20)
    check_format(phy, master)
    assert [f.data for f in phy.frames] == [0x796D, 0x1140, 0x01E1, 0x4DE1, 0x0200, 0]
    assert after[-1][1]["speed"] == Speed.M100


def test_host_request_reads_and_writes_any_register_between_polls():
    master = MdioMaster(half_period=2, phy_address=4)
    phy = Clause22Phy(4, GIGABIT, link=True)
    frame = master.frame_cycles
    after, _ = run(master, phy, 8 * frame, requests=[
        (frame // 2, {"register": 2, "phy_address": 4}),
        (3 * frame + 9, {"register": 27, "phy_address": 4, "write": 1, "data": 0xBEEF}),
        (4 * frame + 9, {"register": 3, "phy_address": 4}),     # while pending: ignored
        (5 * frame + 9, {"register": 27, "phy_address": 4})])
    check_format(phy, master)
    assert [(f.register, f.op) for f in phy.frames] == [
        (1, 0b10), (2, 0b10), (0, 0b10), (4, 0b10), (27, 0b01), (5, 0b10), (27, 0b10),
        (9, 0b10)]
    assert phy.registers[27] == 0xBEEF
    assert after[1][3] == {"data": 0x001C, "pending": 0}
    assert after[4][3] == {"data": 0x001C, "pending": 0}       # a write leaves the data
    assert after[5][3]["pending"] == 1
    assert after[6][3] == {"data": 0xBEEF, "pending": 0}


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="clock_mhz or half_period"):
        check_parameters()
    with pytest.raises(ValueError, match="below 7"):
        check_parameters(clock_mhz=31.25, half_period=6)
    with pytest.raises(ValueError, match="0..31"):
        check_parameters(half_period=4, phy_address=32)
    with pytest.raises(ValueError, match="at least 2"):
        check_parameters(half_period=1)
    assert mdc_half_period(156.25) == 32      # 2.44 MHz
