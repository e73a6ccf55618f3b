"""The `tickwire` command line, run as a user runs it."""

import subprocess
import sys
from pathlib import Path

TICKWIRE = [str(Path(sys.executable).parent / "tickwire")]


def test_sim_refuses_bad_options():
    result = subprocess.run(TICKWIRE + ["sim", "--loss", "1.5", "0"], capture_output=True,
                            text=True)
    assert result.returncode != 0 and "--loss" in result.stderr


def test_help_everywhere():
    for command in ([], ["sim"]):
        result = subprocess.run(TICKWIRE + command + ["--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "Usage" in result.stdout
