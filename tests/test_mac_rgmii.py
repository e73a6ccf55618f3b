"""The whole RGMII MAC (pins to 64-bit client ports, three clocks) in Amaranth's simulator, with
a behavioural PHY (sim/mac_bench.py), against the reference in sim/mac_model.py (zlib CRC)."""

import random

from amaranth.build import Attrs, Clock, Pins, PinsN, Resource, Subsignal
from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Module
from amaranth.lib import io
from amaranth.vendor import LatticeECP5Platform
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwire.hdl.net.ethernet_mac import MAC_COUNTERS
from tickwire.hdl.net.rgmii import RX_LATENCY_NS, TX_LATENCY_NS, Mac
from tickwire.hdl.platform.export import to_verilog
from tickwire.hdl.platform.registers import Block, RegisterMap
from tickwire.sim import mac_model as ref
from tickwire.sim.mac_bench import CORE_PS, WireFrame, mac_figures, run_mac


def good(body):
    return WireFrame(body + ref.fcs(body))


@settings(max_examples=8)
@given(st.lists(st.tuples(st.binary(min_size=0, max_size=120), st.integers(12, 30),
                          st.sampled_from(["good", "good", "bad_fcs", "error"])),
                min_size=1, max_size=4),
       st.lists(st.tuples(st.binary(min_size=1, max_size=120), st.integers(0, 60)),
                min_size=0, max_size=3))
def test_property_random_frames_gaps_and_contents_both_ways(received, sent):
    wire, expected = [], []
    for body, gap, kind in received:
        data = body + ref.fcs(body)
        error_at = None
        if kind == "bad_fcs":
            data = data[:-1] + bytes([data[-1] ^ 0x80])
        elif kind == "error":
            error_at = len(data) // 2
        wire.append(WireFrame(data, error_at, gap))
        result = ref.rx_expected(data, error=error_at is not None)
        if result is not None and result.data:
            expected.append((result.data, result.bad))
    run = run_mac(wire, [f for f, _ in sent], tx_idle=[idle for _, idle in sent])
    assert run.rx_frames == expected
    assert run.tx_wire == [(ref.tx_wire(f), False) for f, _ in sent]
    assert all(gap >= ref.MIN_IFG for gap in run.tx_gaps)
    c = run.counters
    assert c["rx_frames"] == len(received)
    assert c["rx_bad_fcs"] + c["rx_runts"] + c["rx_errors"] == sum(b for _, b in expected) + \
        sum(1 for f in wire if ref.rx_expected(f.after_sfd, f.error_at is not None) is not None
            and not ref.rx_expected(f.after_sfd, f.error_at is not None).data)
    assert c["tx_frames"] == len(sent) and c["tx_underruns"] == 0


def test_bench_figures_within_the_documented_latencies():
    figures = mac_figures(frames=8)
    assert figures["mac.rx_latency_cycles"] <= 7     # the fabric input register: 8 ns more
    assert figures["mac.tx_latency_cycles"] <= 6     # fabric output register, FIFO stage: 8 ns each
    assert RX_LATENCY_NS[0] - 0.05 <= figures["mac.rx_latency_ns_min"]
    assert figures["mac.rx_latency_ns_max"] <= RX_LATENCY_NS[1] + 0.05
    assert TX_LATENCY_NS[0] - 0.05 <= figures["mac.tx_latency_ns_min"]
    assert figures["mac.tx_latency_ns_max"] <= TX_LATENCY_NS[1] + 0.05


def test_a_full_receive_fifo_drops_or_cuts_frames_never_delivers_half_a_frame_as_good():
    rng = random.Random(4)
    bodies = [bytes(rng.randrange(256) for _ in range(n)) for n in (100, 900, 70, 80, 600, 90)]
    # a core clock far too slow for the wire: 1 beat per 100 ns read, 1 per 64 ns written
    run = run_mac([good(b) for b in bodies], core_ps=100_000, drain_ps=400_000_000)
    # the two long frames overflow the FIFO: cut, and ended with a bad one-byte beat
    assert run.counters["rx_overflows"] == 2
    assert run.counters["rx_frames"] == len(bodies)
    assert [(data, bad) for data, bad in run.rx_frames if not bad] == \
        [(b, False) for b in bodies if len(b) < 500]
    cut = [data for data, bad in run.rx_frames if bad]
    long = [b for b in bodies if len(b) >= 500]
    assert len(cut) == len(long)
    for data, body in zip(cut, long, strict=True):
        assert len(data) < len(body) and body.startswith(data[:-1])


def test_cut_through_underrun_is_aborted_and_counted_store_and_forward_never_underruns():
    frames = [bytes(range(200)), bytes(range(90))]
    stall = (0, 5, 200)   # the client withholds beat 5 of frame 0 for 200 cycles
    cut = run_mac(tx=frames, tx_stall=stall)
    assert cut.counters["tx_underruns"] == 1
    assert cut.tx_wire[0][1] is True                         # ended with TX_ER
    assert cut.tx_wire[1:] == [(ref.tx_wire(frames[1]), False)]
    stored = run_mac(tx=frames, tx_stall=stall, mac=Mac(store_and_forward=True))
    assert stored.counters["tx_underruns"] == 0
    assert stored.tx_wire == [(ref.tx_wire(f), False) for f in frames]


def test_store_and_forward_waits_for_the_last_beat():
    frame = bytes(range(256)) * 2                           # 64 beats
    cut = run_mac(tx=[frame], tx_idle=[30])
    stored = run_mac(tx=[frame], tx_idle=[30], mac=Mac(store_and_forward=True))
    assert stored.tx_wire == cut.tx_wire == [(ref.tx_wire(frame), False)]
    # 63 more core cycles to take the rest of the frame before it may start
    extra = stored.tx_latency_ps[0] - cut.tx_latency_ps[0]
    assert 63 * CORE_PS - 8000 <= extra <= 63 * CORE_PS + 2 * 8000


def test_aligned_tx_clock_has_no_quadrature_clock_port():
    verilog = to_verilog(Mac(tx_clock="aligned"), "mac_aligned")
    assert "clk125_90" not in verilog and "clk125" in verilog


class _Ecp5Board(LatticeECP5Platform):
    """The ECPIX-5's FPGA, clock and RGMII resource as amaranth-boards declares them (its
    `ECPIX585Platform`; amaranth-boards is not a dependency yet)."""
    device, package, speed = "LFE5UM5G-85F", "BG554", "8"
    default_clk = "clk100"
    resources = [
        Resource("clk100", 0, Pins("K23", dir="i"), Clock(100e6), Attrs(IO_TYPE="LVCMOS33")),
        Resource("eth_rgmii", 0,
                 Subsignal("rst", PinsN("C13", dir="o")),
                 Subsignal("mdio", Pins("A13", dir="io")),
                 Subsignal("mdc", Pins("C11", dir="o")),
                 Subsignal("tx_clk", Pins("A12", dir="o")),
                 Subsignal("tx_ctrl", Pins("C9", dir="o")),
                 Subsignal("tx_data", Pins("D8 C8 B8 A8", dir="o")),
                 Subsignal("rx_clk", Pins("E11", dir="i")),
                 Subsignal("rx_ctrl", Pins("A11", dir="i")),
                 Subsignal("rx_data", Pins("B11 A10 B10 A9", dir="i")),
                 Attrs(IO_TYPE="LVCMOS33")),
    ]
    connectors = []


class _BoardTop(Elaboratable):
    def elaborate(self, platform):
        m = Module()
        pins = platform.request("eth_rgmii", 0, dir="-")
        m.submodules.mac = mac = Mac(pins=pins)
        m.domains.sync = ClockDomain()
        m.submodules.clk = clk = io.Buffer("i", platform.request("clk100", 0, dir="-"))
        m.d.comb += [ClockSignal("sync").eq(clk.i), mac.clk125.eq(clk.i),
                     mac.clk125_90.eq(clk.i), mac.tx.valid.eq(0)]
        return m


def test_on_the_ecp5_the_ddr_registers_are_the_fpgas_own():
    plan = _Ecp5Board().prepare(_BoardTop(), name="top")
    rtlil = plan.files["top.il"]
    assert rtlil.count("IDDRX1F") >= 5 and rtlil.count("ODDRX1F") >= 6
    assert "rgmii_rx_fall" not in rtlil          # no generic negative-edge model


def test_the_counters_are_declared_for_the_register_map():
    mac = Mac()
    registers = RegisterMap([Block("mac", mac, mac.registers)])
    names = {r.name for r in registers.registers}
    assert {f"mac.counters.{name}" for name in MAC_COUNTERS} <= names
    to_verilog(mac, "mac_registers")   # elaborated: the counters exist as ports
