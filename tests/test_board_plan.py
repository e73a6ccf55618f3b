"""Board builds without the place-and-route tools: parameters, the PLL against yowasp-ecppll
(Project Trellis' own PLL calculator), the two-step plan identity, the timing checks, the
manifest and the host's refusal to arm a board that does not match it, flashing."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tickwire.bitstreams import ecpix5, flash, manifest, plan
from tickwire.bitstreams.board import Ecp5Pll
from tickwire.hdl.platform.device import describe_only
from tickwire.host.cli import main


def test_parameter_overrides_are_parsed_and_bad_ones_refused():
    assert plan.parse_overrides(["symbols=16", "core_div=0xc"]) == {"symbols": 16, "core_div": 12}
    for bad, message in ((["symbols"], "key=value"), (["sybmols=8"], "unknown parameter"),
                         (["orders=many"], "not an integer")):
        with pytest.raises(plan.ParameterError, match=message):
            plan.parse_overrides(bad)
    with pytest.raises(plan.ParameterError, match="power of two"):
        ecpix5.complete({"symbols": 12})


@pytest.mark.parametrize("core_div", [16, 10])
def test_pll_parameters_are_what_ecppll_computes(tmp_path, core_div):
    pll = Ecp5Pll(clki_mhz=100.0, core_div=core_div)
    tool = Path(sys.executable).parent / "yowasp-ecppll"
    subprocess.run([str(tool), "-i", "100", "-o", "125", "--clkout1", "125", "--phase1", "90",
                    "--clkout2", f"{pll.core_mhz:g}", "-f", "pll.v"], cwd=tmp_path, check=True,
                   capture_output=True)
    theirs = dict(re.findall(r"\.(\w+)\((\"?\w+\"?)\)", (tmp_path / "pll.v").read_text()))
    for name, value in pll.parameters().items():
        assert theirs[name].strip('"') == str(value), name
    describe_only(pll)


def test_plan_identity_is_the_digest_of_the_identity_zero_plan():
    parameters = ecpix5.complete({})
    identity, built = plan.identified_plan(lambda i: ecpix5.prepare(parameters, i))
    zero = ecpix5.prepare(parameters, 0)     # prepared again: the digest is reproducible
    assert identity == int.from_bytes(zero.digest(8), "big") != 0
    changed = [name for name in built.files if built.files[name] != zero.files[name]]
    assert changed == ["tickwire.il"]         # only the identity constant differs
    assert f"{identity:064b}" in built.files["tickwire.il"]
    assert f"{identity:064b}" not in zero.files["tickwire.il"]
    # the constraints name the RGMII receive clock and the board's pins
    lpf = built.files["tickwire.lpf"]
    assert 'FREQUENCY PORT "eth_rgmii_0__rx_clk__io" 125 MHZ;' in lpf
    assert 'LOCATE COMP "eth_rgmii_0__rx_clk__io" SITE "E11";' in lpf
    assert 'LOCATE COMP "clk100_0__io" SITE "K23";' in lpf
    # the MDIO master's pins and LD1's two colours (link, activity) are placed
    for port, site in (("eth_rgmii_0__mdc__io", "C11"), ("eth_rgmii_0__mdio__io", "A13"),
                       ("rgb_led_0__g__io", "R21"), ("rgb_led_0__b__io", "T22")):
        assert f'LOCATE COMP "{port}" SITE "{site}";' in lpf


REPORT = {"fmax": {"clk125": {"achieved": 190.0, "constraint": 125.0},
                   "core": {"achieved": 70.1, "constraint": 62.5}},
          "utilization": {"TRELLIS_COMB": {"used": 9000, "available": 83640},
                          "TRELLIS_FF": {"used": 6000, "available": 83640},
                          "DP16KD": {"used": 40, "available": 208},
                          "MULT18X18D": {"used": 0, "available": 156}}}


def test_timing_check_refuses_a_slow_clock_and_an_empty_design():
    summary = ecpix5.timing_summary(REPORT)
    assert summary["utilisation"] == {"DP16KD": {"used": 40, "available": 208},
                                      "TRELLIS_COMB": {"used": 9000, "available": 83640},
                                      "TRELLIS_FF": {"used": 6000, "available": 83640}}
    assert ecpix5.check_timing(summary) == []
    slow = json.loads(json.dumps(REPORT))
    slow["fmax"]["core"]["achieved"] = 61.0
    slow["utilization"]["DP16KD"]["used"] = 0
    errors = ecpix5.check_timing(ecpix5.timing_summary(slow))
    assert len(errors) == 2 and "core: 61.0 MHz < 62.5 MHz" in errors[0]
    assert "DP16KD: 0 used" in errors[1]


def _manifest(folder, identity):
    from tickwire.host.api import register_map

    bit = folder / "tickwire.bit"
    bit.write_bytes(b"\xff\x00bitstream")
    manifest.write_manifest(folder / "manifest.json", board="ecpix5", parameters={},
                            identity=identity, bitstream=bit,
                            timing=ecpix5.timing_summary(REPORT), core_clock_mhz=62.5,
                            tools={}, build_seconds=1.0, seed=1)
    (folder / "registers.json").write_text(register_map().to_json())
    return folder / "manifest.json"


def test_manifest_is_read_back_and_a_bad_one_refused(tmp_path):
    path = _manifest(tmp_path, 0x1234)
    read = manifest.read_manifest(tmp_path)
    assert manifest.expected_identity(read) == 0x1234 and read["identity"] == "0000000000001234"
    assert len(read["bitstream"]["sha256"]) == 64
    manifest.check_device_identity(0x1234, read)
    with pytest.raises(manifest.ManifestError, match="reports 0000000000004321"):
        manifest.check_device_identity(0x4321, read)
    path.write_text("{")
    with pytest.raises(manifest.ManifestError, match="invalid JSON"):
        manifest.read_manifest(path)
    with pytest.raises(manifest.ManifestError, match="cannot read"):
        manifest.read_manifest(tmp_path / "missing.json")


def _other_and_same_build(tmp_path):
    """Folders holding a manifest of another build and one of the simulated device's."""
    from tickwire.hdl.platform.device import design_identity

    other, same = tmp_path / "other", tmp_path / "same"
    other.mkdir()
    same.mkdir()
    _manifest(other, design_identity() ^ 1)
    _manifest(same, design_identity())
    return other, same


def test_arm_with_a_manifest_refuses_a_board_running_another_build(tmp_path):
    other, same = _other_and_same_build(tmp_path)
    runner = CliRunner()
    refused = runner.invoke(main, ["arm", "--device", "sim", "--manifest", str(other)])
    assert refused.exit_code == 1
    assert "design identity mismatch" in refused.output and "refusing to arm" in refused.output
    armed = runner.invoke(main, ["arm", "--device", "sim", "--manifest",
                                 str(same / "manifest.json")])
    assert armed.exit_code == 0, armed.output
    assert "armed (armed 1, killed 0)" in armed.output


def test_flash_dry_run_prints_the_command_and_a_missing_tool_is_a_clear_error(tmp_path,
                                                                             monkeypatch):
    bit = tmp_path / "tickwire.bit"
    bit.write_bytes(b"\xff")
    runner = CliRunner()
    dry = runner.invoke(main, ["flash", "--board", "ecpix5", "--dry-run", str(bit)])
    assert dry.exit_code == 0
    assert dry.output.strip() == f"openFPGALoader --board ecpix5 {bit}"
    monkeypatch.setenv("PATH", str(tmp_path))      # no openFPGALoader here
    missing = runner.invoke(main, ["flash", "--board", "ecpix5", str(bit)])
    assert missing.exit_code == 1 and "openFPGALoader not found" in missing.output
    absent = runner.invoke(main, ["flash", "--board", "ecpix5", str(tmp_path / "none.bit")])
    assert absent.exit_code == 1 and "no bitstream" in absent.output
    assert flash.flash_command("arty", bit, to_flash=True)[1:4] == ["--board", "arty_a7_35t",
                                                                      "--write-flash"]


def test_identity_and_status_check_the_board_against_its_manifest(tmp_path):
    from tickwire.hdl.platform.device import design_identity

    _manifest(tmp_path, design_identity() ^ 2)
    runner = CliRunner()
    compared = runner.invoke(main, ["identity", "--device", "sim", "--manifest", str(tmp_path)])
    assert compared.exit_code == 1
    assert f"build  {design_identity() ^ 2:016x}" in compared.output
    assert "the device runs another design" in compared.output
    refused = runner.invoke(main, ["status", "--device", "sim", "--manifest", str(tmp_path)])
    assert refused.exit_code == 1 and "design identity mismatch" in refused.output
    both = runner.invoke(main, ["disarm", "--manifest", str(tmp_path), "--identity", "12"])
    assert both.exit_code == 2 and "not both" in both.output


def test_read_write_and_watch_take_a_manifest(tmp_path):
    from tickwire.hdl.platform.device import design_identity

    other, same = _other_and_same_build(tmp_path)
    runner = CliRunner()
    for command in (["read", "id.magic"], ["write", "risk.armed", "1"],
                    ["watch", "--count", "1", "--json"]):
        refused = runner.invoke(main, [*command, "--device", "sim", "--manifest", str(other)])
        assert refused.exit_code == 1 and "design identity mismatch" in refused.output, command
    read = runner.invoke(main, ["read", "id.magic", "--device", "sim", "--manifest", str(same)])
    assert read.exit_code == 0 and json.loads(read.output) == int.from_bytes(b"TWRM", "big")
    wrote = runner.invoke(main, ["write", "risk.armed", "1", "--device", "sim", "--manifest",
                                 str(same)])
    assert wrote.exit_code == 0, wrote.output
    watched = runner.invoke(main, ["watch", "--count", "1", "--json", "--interval", "0",
                                   "--device", "sim", "--manifest", str(same)])
    assert watched.exit_code == 0, watched.output
    assert json.loads(watched.output.splitlines()[-1])["identity"] == f"{design_identity():016x}"
    both = runner.invoke(main, ["read", "id.magic", "--manifest", str(same), "--identity", "1"])
    assert both.exit_code == 2 and "not both" in both.output


def test_the_board_register_map_adds_the_mac_and_mdio_registers_after_the_core_registers():
    from tickwire.hdl.net.ethernet_mac import MAC_COUNTERS
    from tickwire.hdl.net.mdio import MdioStatus
    from tickwire.hdl.platform.registers import RegisterMap
    from tickwire.hdl.top import TickToTrade

    parameters = ecpix5.complete({})
    board = RegisterMap.from_json(plan.register_map_json(parameters))
    core = describe_only(TickToTrade(**plan.top_parameters(parameters))).register_map
    for register in core:
        assert board[register.name].address == register.address, register.name
    mac = [r.name for r in board if r.name.startswith("mac.")]
    assert mac == ["mac.counters.snapshot"] + [f"mac.counters.{n}" for n in MAC_COUNTERS]
    mdio = [r for r in board if r.name.startswith("mdio.")]
    assert [r.name for r in mdio] == [
        "mdio.status", "mdio.bmsr", "mdio.counters.snapshot", "mdio.counters.frames",
        "mdio.counters.link_losses", "mdio.request", "mdio.reply"]
    assert mdio[0].address == board[f"mac.counters.{MAC_COUNTERS[-1]}"].address + 1
    assert [f.name for f in board["mdio.status"].fields] == [n for n, _ in MdioStatus.as_shape()]
    assert board.address_width == core.address_width
