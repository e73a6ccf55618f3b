"""Register declarations are checked against the component's ports when the map is built."""

import pytest
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.platform.device import describe_only, device_register_map
from tickwire.hdl.platform.registers import (
    MAGIC,
    Block,
    Config,
    Counters,
    Fifo,
    RegisterMap,
    Status,
)


class Ports(wiring.Component):
    def __init__(self):
        super().__init__({
            "setting": In(8), "reading": Out(8), "wide_counters": Out(data.StructLayout(
                {"big": unsigned(48)})), "queue": Out(stream.Signature(8))})

    def elaborate(self, platform):
        raise NotImplementedError


@pytest.mark.parametrize("declaration, says", [
    (Config("reading"), "a config register needs an In port"),
    (Status("setting"), "a status register needs an Out port"),
    (Fifo("reading"), "only stream ports are FIFOs"),
    (Status("queue"), "only stream ports are FIFOs"),
    (Counters("wide_counters"), "counters are at most 32 bits"),
    (Config("missing"), "no port 'missing'"),
    (Fifo("queue", overflow="reading"), "is not a counter"),
])
def test_bad_declarations_are_refused(declaration, says):
    with pytest.raises((ValueError, KeyError), match=says):
        RegisterMap([Block("b", describe_only(Ports()), (Status("reading"), declaration))])


def test_duplicate_declarations_are_refused():
    with pytest.raises(ValueError, match="duplicate"):
        RegisterMap([Block("b", describe_only(Ports()), (Status("reading"), Status("reading")))])


def test_the_device_map_starts_with_its_identification():
    regs = device_register_map()
    assert (regs["id.magic"].address, regs["id.magic"].value) == (0, MAGIC)
    assert (regs["id.identity"].address, regs["id.identity"].words) == (1, 2)
    assert regs.describe()["registers"][0]["name"] == "id.magic"
