"""`MdioMaster` against a clause 22 PHY model written from the standard (`tickwire.sim.mdio_model`):
every frame on MDC/MDIO decoded bit by bit and checked against 22.2.4.5's format and 22.3.4's
timing, the link bit's latching, no PHY, the address scan, host accesses; then the generated
Verilog under Verilator/cocotb, and yosys for the ECP5."""

from itertools import pairwise
from pathlib import Path

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tickwire.bitstreams.synth import utilisation
from tickwire.hdl.net.mdio import (
    MdioMaster,
    Speed,
    check_parameters,
    mdc_half_period,
    settle_cycles,
)
from tickwire.hdl.platform.registers import Block, RegisterBank, RegisterMap, connect_bank
from tickwire.sim.cocotb_run import run_cocotb
from tickwire.sim.mdio_model import Clause22Phy

# A Realtek RTL8211E-like register file after autonegotiating 1000BASE-T full duplex with a
# gigabit partner (values from the registers' definitions, 22.2.4 and 40.5.1.1).
GIGABIT = {0: 0x1140, 1: 0x796D, 2: 0x001C, 3: 0xC915, 4: 0x01E1, 5: 0xC5E1, 9: 0x0200,
           10: 0x3C00}
SETTLE = 3        # cycles from the PHY's view of the last rising MDC edge to the status


def run(dut, phy, cycles, *, events=(), requests=()):
    """Step `dut` and `phy` for `cycles` clock cycles. `events`: (cycle, up) link changes (or
    (cycle, function of the PHY));
    `requests`: (cycle, request dict) host accesses. Returns, for each frame the PHY saw,
    (frame, status, bmsr, reply) `SETTLE` cycles after its end, and the final counters."""
    events, requests = dict(events), dict(requests)
    seen, results, taken = [], {}, [0]

    async def bench(ctx):
        ctx.set(dut.mdio_i, 1)
        for cycle in range(cycles):
            if callable(events.get(cycle)):
                events[cycle](phy)
            elif cycle in events:
                phy.set_link(events[cycle])
            if cycle in requests or cycle - 1 in requests:     # a strobe: one cycle
                ctx.set(dut.request, {"start": 0, "write": 0, "phy_address": 0,
                                      "register": 0, "data": 0, **requests.get(cycle, {}),
                                      **({"start": 1} if cycle in requests else {})})
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
        # the PHY sees the state after the last edge too: a frame the master has just counted
        # ended on that edge's MDC rise
        phy.step(ctx.get(dut.mdc), ctx.get(dut.mdio_oe), ctx.get(dut.mdio_o))
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
    assert all(b - a == 2 * h for a, b in pairwise(phy.rises))
    assert all(fall - rise == h for rise, fall in zip(phy.rises, phy.falls, strict=False))
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
    frame = master.frame_cycles

    def unplug(phy):
        phy.address = None

    def plug_at_2(phy):
        phy.address = 2

    after, counters = run(master, phy, 70 * frame,
                          events=[(27 * frame, unplug), (37 * frame, plug_at_2)])
    check_format(phy, master)
    polled = [f.phy_address for f in phy.frames]
    assert polled[:20] == list(range(20))                 # BMSR at 0..19: found at 19
    assert all(f.register == 1 for f in phy.frames[:20])
    assert [s["present"] for _, s, _, _ in after[18:21]] == [0, 1, 1]
    assert after[19][1] == {"link": 1, "present": 1, "speed": Speed.UNKNOWN, "phy_address": 19}
    gone = next(n for n, (f, _, _, _) in enumerate(after)
                if f.end_cycle > 27 * frame and f.register == 1)     # BMSR, nobody answers
    assert set(polled[20:gone + 1]) == {19} and phy.frames[gone].data == 0xFFFF
    assert after[gone - 1][1]["present"] == 1 and after[gone][1]["present"] == 0
    assert after[gone][2] == 0xFFFF                                  # the bmsr register
    found = next(n for n, (_, s, _, _) in enumerate(after) if n > gone and s["present"])
    # scanning from 0, on past 2 (plugged in too late) and round 31 back to it
    assert polled[gone + 1:found + 1] == [k % 32 for k in range(found - gone)]
    assert found - gone == 35
    assert after[found][1]["phy_address"] == 2
    assert set(polled[found:]) == {2}
    assert counters["link_losses"] == 1                   # the PHY went with the link up


@pytest.mark.parametrize("half_period", [2, 3, 5])
def test_the_phy_may_drive_up_to_settle_cycles_after_the_rising_edge(half_period):
    read = []
    for delay in (settle_cycles(half_period), settle_cycles(half_period) + 1):
        master = MdioMaster(half_period=half_period, phy_address=0)
        phy = Clause22Phy(0, GIGABIT, delay=delay, link=True)
        after, _ = run(master, phy, master.frame_cycles)
        assert phy.errors == [] and phy.frames[0].data == 0x796D     # on the line
        read.append(after[0][2])
    assert read[0] == 0x796D and read[1] != 0x796D                     # one cycle too late


def test_output_delay_of_300_ns_is_read_right_at_the_board_clock():
    master = MdioMaster(clock_mhz=31.25, phy_address=0)
    assert master.half_period == 7 and 31.25 / (2 * master.half_period) <= 2.5
    delay = -(-300 // 32)      # 10 cycles of 32 ns
    assert settle_cycles(master.half_period) * 32 >= 300 + 40
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


def expected_speed(registers):
    """28B.3's priority over the abilities both ends advertise, or BMCR's forced speed."""
    bmcr, bmsr = registers.get(0, 0), registers.get(1, 0)
    if not bmcr >> 12 & 1:
        return {(0, 0): Speed.M10, (0, 1): Speed.M100, (1, 0): Speed.M1000,
                (1, 1): Speed.UNKNOWN}[bmcr >> 6 & 1, bmcr >> 13 & 1]
    if not bmsr >> 5 & 1:
        return Speed.UNKNOWN
    gbcr, gbsr = registers.get(9, 0), registers.get(10, 0)
    common = registers.get(4, 0) & registers.get(5, 0)
    for speed, has in ((Speed.M1000, bmsr >> 8 & 1 and gbcr >> 9 & gbsr >> 11 & 1),
                       (Speed.M1000, bmsr >> 8 & 1 and gbcr >> 8 & gbsr >> 10 & 1),
                       (Speed.M100, common >> 8 & 1),      # 100BASE-TX full duplex
                       (Speed.M100, common >> 9 & 1),      # 100BASE-T4
                       (Speed.M100, common >> 7 & 1),      # 100BASE-TX half duplex
                       (Speed.M10, common >> 6 & 1),
                       (Speed.M10, common >> 5 & 1)):
        if has:
            return speed
    return Speed.UNKNOWN


def test_expected_speed_on_register_files_of_the_standard():
    assert expected_speed(GIGABIT) == Speed.M1000
    assert expected_speed({**GIGABIT, 10: 0}) == Speed.M100          # partner without 1000T
    assert expected_speed({**GIGABIT, 1: 0x7949}) == Speed.UNKNOWN    # negotiating
    assert expected_speed({**GIGABIT, 5: 0x0061, 10: 0}) == Speed.M10
    assert expected_speed({**GIGABIT, 0: 0x2100}) == Speed.M100      # forced 100 FD


BMSR_VALUES = st.integers(0, 0xFFFF).map(lambda v: (v | 0x1000) & 0x7FFB)   # 10BASE-T HD
SPEED_BITS = st.sampled_from([0x0000, 0x0020, 0x0040, 0x0080, 0x0100, 0x0200, 0x01E0, 0x0300,
                              0x0C00, 0x0800, 0x0400])


@settings(max_examples=12)
@given(address=st.integers(0, 31), scan=st.booleans(), bmsr=BMSR_VALUES,
       bmcr=st.sampled_from([0x1140, 0x1000, 0x0000, 0x2000, 0x0040, 0x2140]),
       speed_bits=st.lists(SPEED_BITS, min_size=4, max_size=4),
       history=st.lists(st.tuples(st.integers(1, 2500), st.booleans()), min_size=1,
                        max_size=5),
       delay=st.integers(0, settle_cycles(2)))
@example(address=0, scan=False, bmsr=0x1000, bmcr=0x1140, speed_bits=[0, 0, 0, 0],
         history=[(255, False)], delay=0)     # the run ends on a frame's last MDC rise
def test_property_link_speed_and_address_follow_the_phy(address, scan, bmsr, bmcr, speed_bits,
                                                        history, delay):
    registers = {0: bmcr, 1: bmsr, 4: speed_bits[0], 5: speed_bits[1], 9: speed_bits[2],
                 10: speed_bits[3]}
    master = MdioMaster(half_period=2, phy_address=None if scan else address)
    phy = Clause22Phy(address, registers, delay=delay, link=history[0][1])
    events, cycle = [], 0
    for duration, up in history:
        events.append((cycle, up))
        cycle += duration
    start = (address + 1 if scan else 1) * master.frame_cycles
    after, counters = run(master, phy, start + cycle + 3 * master.poll_cycles, events=events)
    check_format(phy, master)

    def level(at):          # the link during clock cycle `at`
        return [history[0][1], *(up for when, up in events if when <= at)][-1]

    polled = [f.phy_address for f in phy.frames]
    if scan:
        assert polled[:address + 1] == list(range(address + 1))
    assert set(polled[address + 1 if scan else 0:]) == {address}
    reads = [(f, status, value) for f, status, value, _ in after
             if f.register == 1 and f.phy_address == address]
    previous, losses, last = -1, 0, None
    for n, (frame, status, value) in enumerate(reads):
        # 22.2.4.2.13: a link failure since the previous read clears the bit until read
        failed = any(when > previous and level(when - 1) and not up
                     for when, up in events if when <= frame.capture_cycle)
        link = level(frame.capture_cycle) and not failed
        previous = frame.capture_cycle
        losses += last == 1 and not link
        last = int(link)
        assert value == bmsr | link << 2
        assert status["present"] == 1 and status["phy_address"] == address
        assert status["link"] == link
        if n:               # the speed registers have been read
            assert status["speed"] == (expected_speed(registers) if link else Speed.UNKNOWN)
    assert len(reads) >= 3 and counters["link_losses"] == losses
    assert counters["frames"] == len(phy.frames)


def test_mdio_verilog_under_cocotb_against_the_phy_model():
    ran = run_cocotb(MdioMaster(clock_mhz=31.25), "mdio_master", "mdio_bench",
                     module_dir=Path(__file__).parent / "cocotb")
    assert ran == 2


def test_mdio_master_synthesises_small():
    cells = utilisation(MdioMaster(clock_mhz=31.25), "mdio_master")
    print(f"mdio: {cells.luts} LUT4, {cells.ffs} FF, {cells.cells.get('CCU2C', 0)} CCU2C")
    assert 50 < cells.luts < 600 and 100 < cells.ffs < 400
    assert cells.brams == 0 and cells.dsps == 0


def test_host_reaches_the_mdio_master_through_the_register_bank():
    """The declarations resolved into a bank: the host's read of ``mdio.status`` and a PHY
    register read through ``mdio.request`` / ``mdio.reply``, word by word on the bus, the
    fields located by the map (as the host driver does)."""
    master = MdioMaster(half_period=2, phy_address=6)
    register_map = RegisterMap([Block("mdio", master, master.registers)])
    bank = RegisterBank(register_map)
    top = Module()
    top.submodules.master, top.submodules.bank = master, bank
    connect_bank(top, bank, register_map)
    phy = Clause22Phy(6, GIGABIT, link=True)
    seen = {}

    def fields(name, value):
        return {f.name: value >> f.offset & (1 << f.width) - 1 for f in register_map[name].fields}

    async def bench(ctx):
        async def cycle():
            ctx.set(master.mdio_i, phy.step(ctx.get(master.mdc), ctx.get(master.mdio_oe),
                                           ctx.get(master.mdio_o)))
            await ctx.tick()

        async def read(name):
            ctx.set(bank.bus.addr, register_map[name].address)
            ctx.set(bank.bus.r_stb, 1)
            await cycle()
            ctx.set(bank.bus.r_stb, 0)
            return fields(name, ctx.get(bank.bus.r_data))

        for _ in range(master.poll_cycles + master.frame_cycles):
            await cycle()
        seen["status"] = await read("mdio.status")
        request = register_map["mdio.request"]
        value = sum(v << f.offset for f in request.fields
                    for v in [{"start": 1, "phy_address": 6, "register": 3}.get(f.name, 0)])
        ctx.set(bank.bus.addr, request.address)
        ctx.set(bank.bus.w_data, value)
        ctx.set(bank.bus.w_stb, 1)
        await cycle()
        ctx.set(bank.bus.w_stb, 0)
        await cycle()          # the bank's strobe, then the master takes it
        seen["pending"] = await read("mdio.reply")
        while (await read("mdio.reply"))["pending"]:
            pass
        seen["reply"] = await read("mdio.reply")

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["status"] == {"link": 1, "present": 1, "speed": Speed.M1000.value,
                              "phy_address": 6}
    assert seen["pending"]["pending"] == 1
    assert seen["reply"] == {"data": GIGABIT[3], "pending": 0}
    assert (phy.frames[-1].register, phy.frames[-1].op) == (3, 0b10)
