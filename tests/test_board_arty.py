"""The Arty A7 build tree (Vivado not run): the archive is written, the manifest's identity
is reproduced from the identity-0 plan, and the XDC puts every port on the pin that Digilent's
Arty A7 master XDC (Arty-A7-35-Master.xdc, rev. D) gives it."""

import json
import zipfile

from tickwire.bitstreams import arty
from tickwire.bitstreams.plan import plan_identity

#: From Digilent's master XDC for the Arty A7-35: signal -> package pin.
DIGILENT = {
    "clk100_0__io": "E3", "rst_0__io": "C2", "eth_clk25_0__io": "G18",
    "eth_mii_0__rst__io": "C16", "eth_mii_0__mdc__io": "F16", "eth_mii_0__mdio__io": "K13",
    "eth_mii_0__rx_clk__io": "F15", "eth_mii_0__rx_dv__io": "G16", "eth_mii_0__rx_er__io": "C17",
    "eth_mii_0__tx_clk__io": "H16", "eth_mii_0__tx_en__io": "H15",
    **{f"eth_mii_0__rx_data__io\\[{i}]": pin for i, pin in enumerate(["D18", "E17", "E18", "G17"])},
    **{f"eth_mii_0__tx_data__io\\[{i}]": pin for i, pin in enumerate(["H14", "J14", "J13", "H17"])},
    **{f"led_{i}__io": pin for i, pin in enumerate(["H5", "J5", "T9", "T10"])},
}


def test_arty_tree_is_archived_with_the_board_pins(tmp_path, monkeypatch):
    monkeypatch.setenv("TICKWIRE_CONTROL_TOKEN", "11" * 16)
    folder = arty.write_tree(root=tmp_path)
    archive = folder / "tickwire-arty.zip"
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
        xdc = z.read("tickwire.xdc").decode()
        tcl = z.read("tickwire.tcl").decode()
    assert {"tickwire.v", "tickwire.xdc", "tickwire.tcl", "build_tickwire.sh"} <= names
    assert "-part xc7a35ticsg324-1L" in tcl and "write_bitstream" in tcl
    located = dict(line.split(" [get_ports ")[::-1] for line in
                   (raw.removeprefix("set_property LOC ").rstrip("]") for raw in xdc.splitlines()
                    if raw.startswith("set_property LOC ")))
    located = {port.strip('"'): pin for port, pin in located.items()}
    for port, pin in DIGILENT.items():
        assert located.get(port) == pin, (port, located.get(port))
    # the MII clocks are constrained at 25 MHz (40 ns)
    assert xdc.count("create_clock -name") >= 3 and "-period 40" in xdc

    manifest = json.loads((folder / "manifest.json").read_text())
    parameters = manifest["parameters"]
    token = bytes.fromhex("11" * 16)
    assert manifest["board"] == "arty" and folder.name == manifest["identity"]
    assert int(manifest["identity"], 16) == plan_identity(
        lambda ident: arty.prepare(parameters, ident, token))


def test_build_command_writes_the_arty_tree_and_refuses_bad_parameters(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from tickwire.host.cli import main

    monkeypatch.setenv("TICKWIRE_CONTROL_TOKEN", "22" * 16)
    runner = CliRunner()
    bad = runner.invoke(main, ["build", "--board", "arty", "--param", "symbols=3"])
    assert bad.exit_code == 2 and "power of two" in bad.output
    unknown = runner.invoke(main, ["build", "--board", "ecpix5", "--param", "speed=9"])
    assert unknown.exit_code == 2 and "unknown parameter 'speed'" in unknown.output
    done = runner.invoke(main, ["build", "--board", "arty", "--out", str(tmp_path),
                                "--param", "symbols=8", "--param", "ip=10.9.8.7"])
    assert done.exit_code == 0, done.output
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert f"Vivado build tree (not run) in {folder}" in done.output
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["parameters"]["symbols"] == 8 and manifest["parameters"]["ip"] == "10.9.8.7"
    assert (folder / "tickwire-arty.zip").exists()
