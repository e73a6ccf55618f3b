"""The committed register map (docs/registers.*) is what the declarations generate."""

import json
import subprocess
import sys
from pathlib import Path

from tickwire.host import api

TICKWIRE = [str(Path(sys.executable).parent / "tickwire")]


def test_committed_register_map_is_current():
    stale = api.stale_register_documents()
    assert not stale, f"{stale} out of date: run `tickwire regs --write` and commit"


def test_regs_json_is_the_committed_map_and_regs_check_agrees():
    result = subprocess.run(TICKWIRE + ["regs", "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads((api.DOCS / "registers.json").read_text())
    result = subprocess.run(TICKWIRE + ["regs", "--check"], capture_output=True, text=True)
    assert result.returncode == 0 and "current" in result.stdout


def test_regs_write_regenerates_both_files(tmp_path):
    result = subprocess.run(TICKWIRE + ["regs", "--write", str(tmp_path)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    for name in api.REGISTER_DOCS:
        assert (tmp_path / name).read_text() == (api.DOCS / name).read_text()


def test_map_has_no_overlaps_and_covers_every_host_port():
    regs = api.register_map()
    used = {}
    for register in regs:
        for address in range(register.address, register.address + register.span):
            assert address not in used, f"{register.name} overlaps {used[address]}"
            used[address] = register.name
    assert sorted(used) == list(range(regs.size))
    ports = {r.name.split(".")[1] for r in regs if r.name.startswith("feed.")}
    assert ports == {"filters", "resync", "counters", "alarms", "clear_alarms", "notices",
                     "next_sequence", "recover", "recover_to"}
