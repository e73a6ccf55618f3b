"""The `tickwire` command line, run as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

TICKWIRE = [str(Path(sys.executable).parent / "tickwire")]


def test_sim_replays_the_default_scenario(tmp_path):
    out = tmp_path / "summary.json"
    result = subprocess.run(TICKWIRE + ["sim", "--messages", "3000", "--json", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "latency" in result.stdout and "messages by ITCH type" in result.stdout
    summary = json.loads(out.read_text())
    gap_messages = sum(g["count"] for g in summary["gaps"])
    assert summary["messages_delivered"] + gap_messages == summary["messages_offered"] == 3000
    assert summary["latency_cycles"]["max"] == 3
    assert summary["drops"] == {}


def test_sim_refuses_bad_options():
    result = subprocess.run(TICKWIRE + ["sim", "--loss", "1.5", "0"], capture_output=True,
                            text=True)
    assert result.returncode != 0 and "--loss" in result.stderr


def test_help_everywhere():
    for command in ([], ["sim"]):
        result = subprocess.run(TICKWIRE + command + ["--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "Usage" in result.stdout
