"""Configuration files: validated against the build, every error named, nothing written unless
the whole file is valid; loaded and read back through the register bank."""

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tickwire.hdl.platform.device import design_identity, device_register_map
from tickwire.host.api import connect, replay
from tickwire.host.config import ConfigError, load, parse
from tickwire.host.device import Device
from tickwire.host.transports import SimTransport
from tickwire.sim import moldudp64 as mold
from tickwire.sim.frames import udp_frame
from tickwire.sim.nic import shared_nic
from tickwire.sim.scenario import FEED_GROUP_B, FEED_PORT, order_flow

TICKWIRE = [str(Path(sys.executable).parent / "tickwire")]
EXAMPLE = Path(__file__).resolve().parent.parent / "host" / "examples" / "feed.toml"
REGS = device_register_map()
GOOD = """
[[feed.filter]]
group = "233.54.12.111"
port = 26477
feed = 0
line = "A"
"""


def test_the_example_is_valid():
    entries = parse(EXAMPLE.read_text(), REGS)["feed.filters"]
    assert [e["line"] for e in entries] == [0, 1] and all(e["enable"] for e in entries)
    assert entries[1]["group"] == FEED_GROUP_B


@pytest.mark.parametrize("text, says", [
    ("[[feed.filter]\n", "not valid TOML"),
    ("[bogus]\nmax = 1\n", "bogus: unknown section"),
    ("[feed]\nfilters = []\n", "feed.filters: unknown field"),
    (GOOD.replace('"A"', '"C"'), "feed.filter[0].line: 'C' is not \"A\" or \"B\""),
    (GOOD.replace("233.54.12.111", "10.0.0.1"),
     "feed.filter[0].group: 10.0.0.1 is not a multicast group (224.0.0.0/4)"),
    (GOOD.replace('"233.54.12.111"', "3912633455"), "is not an IPv4 address in quotes"),
    (GOOD.replace("26477", "0"), "feed.filter[0].port: 0 is not a UDP port (1..65535)"),
    (GOOD.replace("feed = 0", "feed = 4"), "feed.filter[0].feed: 4 is not a feed of this build"),
    (GOOD.replace("feed = 0", "feed = 0\nvlan = 5"), "feed.filter[0].vlan: unknown field"),
    (GOOD.replace("feed = 0\n", ""), "feed.filter[0].feed: missing"),
    (GOOD.replace('line = "A"', 'line = "A"\nenabled = "yes"'), "is not true or false"),
    (GOOD * 2, "feed.filter[1]: 233.54.12.111:26477 is already mapped by feed.filter[0]"),
    ("".join(GOOD.replace("26477", str(1000 + i)) for i in range(9)),
     "feed.filter: 9 entries; the build holds 8"),
])
def test_bad_files_are_refused_naming_file_field_and_rule(text, says):
    with pytest.raises(ConfigError) as refused:
        parse(text, REGS, "desk.toml")
    assert any(p.startswith("desk.toml: ") and says in p for p in refused.value.problems), \
        refused.value.problems


def test_every_problem_is_reported_at_once():
    text = GOOD.replace('"A"', '"C"').replace("26477", "0") + "[x]\n"
    with pytest.raises(ConfigError) as refused:
        parse(text, REGS, "desk.toml")
    assert len(refused.value.problems) == 3


def test_loaded_filters_take_effect_on_the_simulated_nic():
    nic = shared_nic()
    nic.reset()
    flow = order_flow(100, seed=2)
    frames = [udp_frame(p, dst_ip=FEED_GROUP_B, dst_port=FEED_PORT)
              for p in mold.pack_messages(b"20261122A1", 1, flow)]

    async def work():
        device = await Device.open(SimTransport(nic))
        await load(device, EXAMPLE)
        await replay(device, frames)
        return await device.read_table("feed.filters"), await device.counters()

    table, counters = asyncio.run(work())
    assert [e["enable"] for e in table] == [1, 1] + [0] * 6
    assert counters["feed.counters.udp.accepted"] == len(frames)
    assert counters["feed.counters.mold.messages"] == len(flow)


def bar(tmp_path):
    words = [0] * REGS.size
    words[REGS["id.magic"].address] = REGS["id.magic"].value
    identity = design_identity()
    words[REGS["id.identity"].address] = identity & 0xFFFFFFFF
    words[REGS["id.identity"].address + 1] = identity >> 32
    path = tmp_path / "resource0"
    path.write_bytes(b"".join(w.to_bytes(4, "little") for w in words))
    return path


def test_cli_load_writes_the_table_or_nothing(tmp_path):
    path = bar(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("feed = 0", "feed = 9"))
    before = path.read_bytes()
    result = subprocess.run(TICKWIRE + ["load", str(bad), "--device", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "nothing written" in result.stderr
    assert f"{bad}: feed.filter[0].feed: 9 is not a feed of this build (0..3)" in result.stderr
    assert path.read_bytes() == before
    result = subprocess.run(TICKWIRE + ["load", str(EXAMPLE), "--device", str(path),
                                        "--identity", f"{design_identity():016x}"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

    async def table():
        device = await connect(str(path))
        try:
            return await device.read_table("feed.filters")
        finally:
            device.transport.close()

    entries = asyncio.run(table())
    assert [(e["group"], e["line"], e["enable"]) for e in entries[:3]] == [
        (parse(EXAMPLE.read_text(), REGS)["feed.filters"][0]["group"], 0, 1),
        (FEED_GROUP_B, 1, 1), (0, 0, 0)]
    result = subprocess.run(TICKWIRE + ["load", "--check", str(EXAMPLE)], capture_output=True,
                            text=True)
    assert result.returncode == 0 and "valid (2 feed filters)" in result.stdout


SYMBOL = '[[symbol]]\nname = "AAPL"\nlocate = 1\n'


@pytest.mark.parametrize("text, says", [
    (SYMBOL + '[[strategy.taker]]\nsymbol = "AAPL"\nbuy_at_or_below = 10\nquantity = 1000000\n',
     "strategy.taker[0].quantity: 1000000 is not an integer in 1..999999"),
    (SYMBOL + '[[strategy.taker]]\nsymbol = "AAPL"\nbuy_at_or_below = 200000\nquantity = 1\n',
     "strategy.taker[0].buy_at_or_below: 200000 is outside"),
    (SYMBOL + '[[strategy.taker]]\nsymbol = "MSFT"\nbuy_at_or_below = 1\nquantity = 1\n',
     "strategy.taker[0].symbol: 'MSFT' is not a declared [[symbol]]"),
    (SYMBOL + '[[strategy.taker]]\nsymbol = "AAPL"\nbuy_at_or_below = 1.00001\nquantity = 1\n',
     "has more than 4 decimals"),
    (SYMBOL + '[[strategy.taker]]\nsymbol = "AAPL"\nbuy_at_or_below = 5\n'
     'sell_at_or_above = 4\nquantity = 1\n', "buy_at_or_below must be below sell_at_or_above"),
    (SYMBOL + '[[strategy.taker]]\nsymbol = "AAPL"\nbuy_at_or_below = 5\nquantity = 1\n'
     'trigger = "tick"\n', "strategy.taker[0].trigger: 'tick' is not one of book, event"),
    (SYMBOL + '[risk.default]\nmax_quantity = 10\nmax_notional = 1\ncollar_bps = 5\n'
     'position_limit = 5\n', "max_quantity 10 exceeds position_limit 5"),
    (SYMBOL + '[risk.symbol.MSFT]\nmax_quantity = 1\n', "risk.symbol.MSFT: 'MSFT' is not a"),
    (SYMBOL + '[[strategy.pair]]\nleg_a = "AAPL"\nleg_b = "AAPL"\nbeta = 1\nentry = 1\n'
     'exit = 2\nquantity = 1\nmax_position = 1\n', "leg_a and leg_b are the same symbol"),
    (SYMBOL + SYMBOL.replace("locate = 1", "locate = 2"), "symbol[1].name: AAPL is already"),
    ('[[symbol]]\nname = "aapl"\nlocate = 99999\n', "is not a symbol"),
    ('[order]\nsrc_mac = "x"\n', "order.src_mac: 'x' is not a MAC address"),
])
def test_bad_trading_files_are_refused_naming_file_field_and_rule(text, says):
    with pytest.raises(ConfigError) as refused:
        parse(text, REGS, "desk.toml")
    assert any(p.startswith("desk.toml: ") and says in p for p in refused.value.problems), \
        refused.value.problems


def test_a_section_given_in_two_files_is_refused():
    from tickwire.host.config import parse_documents

    with pytest.raises(ConfigError, match="b.toml: symbol: already given in a.toml"):
        parse_documents([("a.toml", SYMBOL), ("b.toml", SYMBOL)], REGS)
