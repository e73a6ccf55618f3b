"""`tickwire status` and friends against the simulated NIC, run as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

from tickwire.sim.amaranth_sim import run_feed_handler
from tickwire.sim.scenario import ab_frames, default_filters, order_flow

TICKWIRE = [str(Path(sys.executable).parent / "tickwire")]


def run(*arguments):
    return subprocess.run(TICKWIRE + list(arguments), capture_output=True, text=True,
                          timeout=600)


def test_status_of_the_simulated_nic_after_a_replay_matches_the_feed_handler():
    result = run("status", "--device", "sim", "--replay", "300", "--seed", "7", "--json",
                 "--notices")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    flow = order_flow(300, seed=7)
    frames = ab_frames(b"20261122A1", flow, seed=7, loss=(0.02, 0.02))
    reference = run_feed_handler(frames, default_filters())
    assert report["frames_replayed"] == len(frames)
    counters = {f"feed.counters.{group}.{name}": value for group in ("udp", "mold", "itch")
                for name, value in reference.counters[group].items()}
    counters["feed.counters.notice_overflow"] = reference.counters["notice_overflow"]
    assert {k: v for k, v in report["counters"].items() if k.startswith("feed.")} == counters
    assert sorted(map(json.dumps, report["notices"])) == sorted(map(json.dumps,
                                                                    reference.notices))
    assert report["status"]["feed.next_sequence"][0] == len(flow) + 1


def test_status_table_and_a_wrong_identity():
    result = run("status", "--device", "sim", "--replay", "100", "--notices")
    assert result.returncode == 0, result.stderr
    assert "feed.counters.udp.accepted" in result.stdout and "TRADING_ACTION" in result.stdout
    result = run("status", "--device", "sim", "--identity", "0123456789abcdef")
    assert result.returncode == 1
    assert "design identity mismatch" in result.stderr and "0123456789abcdef" in result.stderr


def test_bad_device_and_options_are_refused():
    result = run("status", "--device", "udp://10.0.0.2:7000")
    assert result.returncode == 1 and "TICKWIRE_CONTROL_TOKEN" in result.stderr
    result = run("status", "--device", "/nonexistent/resource0")
    assert result.returncode == 1 and "unknown device" in result.stderr
    result = run("status", "--identity", "xyz")
    assert result.returncode != 0 and "--identity" in result.stderr


def test_help_everywhere():
    for command in (["regs"], ["status"], ["read"], ["write"], ["watch"], ["identity"],
                    ["load"]):
        result = run(*command, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout


def test_watch_follows_a_replay_on_the_simulated_nic():
    result = run("watch", "--device", "sim", "--replay", "1000", "--count", "4", "--interval",
                 "0", "--json")
    assert result.returncode == 0, result.stderr
    frames = [json.loads(line)["counters"]["feed.counters.udp.frames"]
              for line in result.stdout.splitlines()]
    assert len(frames) == 4 and frames[0] == 0 and frames == sorted(frames) and frames[-1] > 0
