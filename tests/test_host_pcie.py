"""The PCIe BAR transport (mmap of a sysfs resource file), tested against a plain file, and the
same driver and command line over it."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tickwire.hdl.platform.device import design_identity, device_register_map
from tickwire.host.device import Device, IdentityMismatch, RegisterError
from tickwire.host.transports import PcieBar

TICKWIRE = [str(Path(sys.executable).parent / "tickwire")]
REGS = device_register_map()


def put(words, name, value, index=0):
    """Place a value in a BAR image at its register's address (as the gateware would)."""
    register = REGS[name]
    address = register.entry_address(index)
    for k in range(register.words):
        words[address + k] = (value >> (32 * k)) & 0xFFFFFFFF


def image(tmp_path, identity=None, **values):
    words = [0] * (REGS.size + 16)
    put(words, "id.magic", REGS["id.magic"].value)
    put(words, "id.identity", design_identity() if identity is None else identity)
    for name, value in values.items():
        put(words, name.replace("__", "."), value)
    path = tmp_path / "resource0"
    path.write_bytes(b"".join(w.to_bytes(4, "little") for w in words))
    return path


def word(path, address):
    return int.from_bytes(path.read_bytes()[4 * address:4 * address + 4], "little")


def test_driver_reads_and_writes_a_bar(tmp_path):
    path = image(tmp_path, feed__counters__udp__frames=1234, feed__alarms=0b010)
    entry = {"group": 0xE9360C6F, "port": 26477, "feed": 2, "line": 1, "enable": 1}

    async def work():
        bar = PcieBar(path)
        try:
            device = await Device.open(bar)
            await device.write("feed.filters", entry, index=3)
            return (await device.read("feed.counters.udp.frames"), await device.read("feed.alarms"),
                    await device.read("feed.filters", 3))
        finally:
            bar.close()

    frames, alarms, read_back = asyncio.run(work())
    assert frames == 1234 and alarms == {"integrity": 0, "gap": 1, "overflow": 0}
    assert read_back == entry     # a file remembers what was written: read back from the BAR
    address = REGS["feed.filters"].entry_address(3)
    raw = word(path, address) | word(path, address + 1) << 32
    assert raw == 0xE9360C6F | 26477 << 32 | 2 << 48 | 1 << 51 | 1 << 52


def test_a_bar_with_another_design_is_refused(tmp_path):
    path = image(tmp_path, identity=0xFEEDFACE00000001)
    bar = PcieBar(path)
    with pytest.raises(IdentityMismatch, match="feedface00000001.*" + f"{design_identity():016x}"):
        asyncio.run(Device.open(bar))
    bar.close()


def test_accesses_outside_the_bar_are_refused(tmp_path):
    path = tmp_path / "small"
    path.write_bytes(bytes(8))
    bar = PcieBar(path)
    with pytest.raises(ValueError, match="outside the BAR"):
        asyncio.run(bar.read_word(2))
    bar.close()


def run(*arguments, identity=True):
    """The command line on a BAR image. The image's identity is passed explicitly (a later
    --identity wins), so that these tests do not depend on the gateware source staying the
    same while they run; `tickwire identity` tests the host's own computation."""
    if identity:
        arguments = (arguments[0], "--identity", f"{design_identity():016x}", *arguments[1:])
    return subprocess.run(TICKWIRE + list(arguments), capture_output=True, text=True,
                          timeout=300)


def test_cli_reads_and_writes_through_a_bar(tmp_path):
    path = image(tmp_path, feed__counters__mold__messages=77)
    result = run("read", "feed.counters.mold.messages", "--device", f"pcie:{path}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == 77
    result = run("write", "feed.filters", "--index", "0", "group=0xE9360C6F", "port=26477",
                 "feed=0", "line=0", "enable=1", "--device", str(path))
    assert result.returncode == 0, result.stderr
    result = run("read", "feed.filters", "--index", "0", "--device", str(path))
    assert json.loads(result.stdout)["group"] == 0xE9360C6F
    result = run("status", "--device", str(path), "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["counters"]["feed.counters.mold.messages"] == 77
    assert status["status"]["feed.next_sequence"] == [0, 0, 0, 0]


@pytest.mark.parametrize("arguments, says", [
    (["write", "feed.counters.udp.frames", "5"], "feed.counters.udp.frames is read-only"),
    (["write", "feed.clear_alarm", "1"], "no register named 'feed.clear_alarm'; did you mean "
                                         "feed.clear_alarms"),
    (["write", "feed.resync", "99"], "feed.resync: 99 does not fit in 4 bits"),
    (["write", "feed.filters", "--index", "9", "enable=1"], "entry 9 out of range 0..7"),
    (["write", "feed.filters", "--index", "0", "port=70000"],
     "feed.filters.port: 70000 does not fit in 16 bits"),
    (["write", "feed.resync", "1", "--identity", "00000000000000ff"],
     "design identity mismatch: the device reports"),
])
def test_cli_refuses_bad_writes_and_writes_nothing(tmp_path, arguments, says):
    path = image(tmp_path)
    before = path.read_bytes()
    result = run(*arguments, "--device", f"pcie:{path}")
    assert result.returncode == 1
    assert says in result.stderr, result.stderr
    assert path.read_bytes() == before


def test_no_register_bank_is_refused(tmp_path):
    path = tmp_path / "zeros"
    path.write_bytes(bytes(4 * REGS.size))
    result = run("status", "--device", str(path))
    assert result.returncode == 1 and "no tickwire register bank" in result.stderr


def test_unknown_names_are_refused_on_read(tmp_path):
    async def work():
        bar = PcieBar(image(tmp_path))
        try:
            device = await Device.open(bar)
            await device.read("feed.counters.udp.frame")
        finally:
            bar.close()

    with pytest.raises(RegisterError, match="did you mean feed.counters.udp.frames"):
        asyncio.run(work())


def test_watch_logs_raised_alarms_with_timestamps(tmp_path):
    path = image(tmp_path, feed__alarms=0b101, feed__counters__udp__frames=3,
                 risk__counters__position=2, risk__counters__not_armed=9)
    log = tmp_path / "alarms.jsonl"
    result = run("watch", "--device", str(path), "--count", "2", "--interval", "0", "--json",
                 "--log", str(log))
    assert result.returncode == 0, result.stderr
    samples = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(samples) == 2 and samples[0]["counters"]["feed.counters.udp.frames"] == 3
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    # Raised once (in the first sample), not again while they stay set; a limit breach once
    # per sample in which its reject counter moved (a reject for being unarmed is no breach).
    assert [e["alarm"] for e in entries] == ["feed.alarms.integrity", "feed.alarms.overflow",
                                             "risk.breach.position"]
    assert all(e["device"] == str(path) and "T" in e["time"] for e in entries)


def test_the_breaches_watched_are_risk_reject_reasons():
    from tickwire.hdl.risk.records import RISK_COUNTERS
    from tickwire.host.api import RISK_BREACHES

    assert set(RISK_BREACHES) < set(RISK_COUNTERS)


def test_identity_command_compares_host_and_device(tmp_path):
    result = run("identity", "--device", str(image(tmp_path)), identity=False)
    assert result.returncode == 0, result.stderr
    host, device = (line.split()[1] for line in result.stdout.splitlines())
    assert host == device == f"{design_identity():016x}"
    other = tmp_path / "other"
    other.mkdir()
    result = run("identity", "--device", str(image(other, identity=0xABCDEF)), identity=False)
    assert result.returncode == 1 and "0000000000abcdef" in result.stdout
    assert "another design" in result.stderr


def test_a_host_with_only_the_json_map_drives_the_device_the_same(tmp_path):
    from tickwire.hdl.platform.registers import RegisterMap
    from tickwire.host.api import DOCS, connect

    loaded = RegisterMap.from_json((DOCS / "registers.json").read_text())
    assert [r.describe() for r in loaded] == [r.describe() for r in REGS]
    path = image(tmp_path, feed__counters__itch__type_A=41, feed__alarms=0b100)

    async def work():
        device = await connect(str(path), register_map=loaded)
        await device.write("feed.filters", {"port": 26477, "enable": 1}, index=7)
        result = (await device.read("feed.counters.itch.type_A"),
                  await device.read("feed.alarms"), await device.read("feed.filters", 7))
        device.transport.close()
        return result

    assert asyncio.run(work()) == (41, {"integrity": 0, "gap": 0, "overflow": 1},
                                   {"group": 0, "port": 26477, "feed": 0, "line": 0,
                                    "enable": 1})
