"""`tickwire sim`, run as a user runs it: the closed loop's report folder, read back with json,
scapy and the PNG signature."""

import json
import subprocess
import sys
from pathlib import Path

from scapy.layers.inet import TCP, UDP
from scapy.utils import rdpcap

TICKWIRE = [str(Path(sys.executable).parent / "tickwire")]
PNG = b"\x89PNG\r\n\x1a\n"


def test_sim_trades_and_writes_its_report(tmp_path):
    out = tmp_path / "report"
    result = subprocess.run(TICKWIRE + ["sim", "--messages", "3000", "--out", str(out),
                                        "--json", str(tmp_path / "s.json")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "tick to trade" in result.stdout and "positions and P&L" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert json.loads((tmp_path / "s.json").read_text()) == summary
    assert summary["scenario_messages"] == 3000 and summary["orders"] > 0
    assert summary["acknowledged"]["ok"]
    assert summary["latency_ns"]["min"] == summary["latency_cycles"]["min"] * 6.4
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs[0].startswith("book_") and pngs[1:] == ["latency.png", "pnl.png"]
    assert all((out / name).read_bytes()[:8] == PNG for name in pngs)
    feed, orders = rdpcap(str(out / "feed.pcap")), rdpcap(str(out / "orders.pcap"))
    assert len(feed) == summary["frames"] and all(p.haslayer(UDP) for p in feed)
    assert len(orders) == summary["orders"] and all(p.haslayer(TCP) for p in orders)
    assert [float(p.time) for p in orders] == sorted(float(p.time) for p in orders)


def test_sim_refuses_a_bad_configuration(tmp_path):
    bad = tmp_path / "risk.toml"
    bad.write_text('[[symbol]]\nname = "AAPL"\nlocate = 1\n\n[risk.default]\nmax_quantity = -5\n'
                   "max_notional = 1000\ncollar_bps = 10\nposition_limit = 100\n")
    result = subprocess.run(TICKWIRE + ["sim", "--messages", "500", "--config", str(bad),
                                        "--out", str(tmp_path / "r")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert f"{bad}: risk.default.max_quantity: -5 is not an integer" in result.stderr


def test_sim_recovers_loss_on_both_lines(tmp_path):
    out = tmp_path / "report"
    result = subprocess.run(TICKWIRE + ["sim", "--messages", "3000", "--loss", "0.2", "0.2",
                                        "--no-drop-copy", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "gaps recovered" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["gap_messages"] == 0 and summary["recovery"]["gap_notices"] > 0
    assert summary["recovery"]["messages"] == summary["recovery"]["resent_by_exchange"]
    assert summary["books_match_exchange"] is True
    retransmissions = [p for p in rdpcap(str(out / "feed.pcap"))
                       if p.haslayer(UDP) and p[UDP].dport == 26_478]
    assert len(retransmissions) == summary["recovery"]["rerequests"]


def pcap_cycles(path):
    """(first cycle, beats) of each frame of one of the report's pcap files, read with struct
    (nanosecond records at 6.4 ns a cycle from `closed_loop.PCAP_EPOCH_NS`)."""
    import struct

    from tickwire.sim.closed_loop import PCAP_EPOCH_NS
    data, out, at = Path(path).read_bytes(), [], 24
    while at < len(data):
        seconds, nanoseconds, length, _ = struct.unpack_from("<IIII", data, at)
        ns = seconds * 10**9 + nanoseconds - PCAP_EPOCH_NS
        out.append((round(ns / 6.4), (length + 7) // 8))
        at += 16 + length
    return out


def vcd_values(path, names):
    """{name: [(time, value)]} for the top-level `names`, the file's timescale and time stamps,
    read by a small reader of IEEE 1364 section 18.2 (pyvcd's refuses Amaranth's ``$`` in
    names)."""
    ids, changes, times, now = {}, {n: [] for n in names}, [], 0
    words = Path(path).read_text().split()
    at = words.index("$enddefinitions")
    timescale = words[words.index("$timescale") + 1:words.index("$timescale") + 2]
    depth = 0
    for index, word in enumerate(words[:at]):
        depth += (word == "$scope") - (word == "$upscope")
        if word == "$var" and depth == 1 and words[index + 4] in names:     # TOP's ports
            ids[words[index + 3]] = words[index + 4]
    vector = False                      # the word after a vector value is its code
    for word in words[at + 2:]:
        if vector:
            vector = False
        elif word[0] in "bBrR":
            vector = True
        elif word.startswith("#"):
            now = int(word[1:])
            times.append(now)
        elif word[0] in "01xz" and word[1:] in ids:
            changes[ids[word[1:]]].append((now, word[0]))
    return changes, times, tuple(timescale)


def cycles_high(changes, first, cycles):
    """The cycles of [first, first + cycles) in which a 1-bit signal is 1 before the rising
    edge (at cycle x 6400 ps; the edge is at + 3200)."""
    changes, level, high, k = sorted(changes), "0", set(), 0
    for cycle in range(first, first + cycles):
        while k < len(changes) and changes[k][0] <= cycle * 6400:
            level, k = changes[k][1], k + 1
        if level == "1":
            high.add(cycle)
    return high


def test_sim_dumps_a_vcd_window_that_shows_its_frames(tmp_path):
    """``--vcd FIRST:CYCLES`` around the first order (of a first run: the host's register
    accesses follow wall-clock events, so two runs may differ by a few cycles): the dump spans
    exactly that window, and the cycles in which rx and tx are valid are those of the frames
    in the same run's feed.pcap and orders.pcap."""
    plain = tmp_path / "plain"
    result = subprocess.run(TICKWIRE + ["sim", "--messages", "600", "--no-drop-copy", "--out",
                                        str(plain)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    first_order = pcap_cycles(plain / "orders.pcap")[0][0]
    first, cycles = first_order - 300, 600
    traced = tmp_path / "traced"
    result = subprocess.run(TICKWIRE + ["sim", "--messages", "600", "--no-drop-copy", "--out",
                                        str(traced), "--vcd", f"{first}:{cycles}"],
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr
    changes, times, timescale = vcd_values(traced / "window.vcd", {"clk", "rx__valid",
                                                                    "tx__valid"})
    assert timescale == ("1ps",)
    assert times[0] == first * 6400 and times[-1] == (first + cycles - 1) * 6400 + 3200
    assert len(times) == 2 * cycles
    assert len(changes["clk"]) >= 2 * cycles - 1
    window = set(range(first, first + cycles))
    for signal, pcap in (("rx__valid", "feed.pcap"), ("tx__valid", "orders.pcap")):
        frames = pcap_cycles(traced / pcap)
        busy = {start + k for start, beats in frames for k in range(beats)} & window
        assert busy and cycles_high(changes[signal], first, cycles) == busy, signal
