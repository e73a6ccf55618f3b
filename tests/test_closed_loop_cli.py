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
