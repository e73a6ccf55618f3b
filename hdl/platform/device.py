"""The device top level: the gateware that exists today behind one register bank.

`FeedDevice` is `FeedHandler` with its host-facing ports (filters, resync, counters, alarms,
notices, next expected sequence numbers) reached through a `RegisterBank` on the register bus;
MAC rx and the book event stream stay ports of the top level. As the book, strategy and risk
blocks land, each becomes a submodule here and one more `Block` in the list `RegisterMap` is
built from (see `feed_register_map`), with its declarations (the component's ``registers``
attribute, beside the ports they name, as ``FeedHandler`` has); the map, the bank, the
driver's names and the docs follow.

The design identity (``id.identity``) is the first 64 bits of the SHA-256 of the top level's
RTLIL with the identity register at zero: any change to the gateware or the register map
changes it, and the host refuses a device whose identity is not the one it was built against.
"""

import functools
import hashlib

from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.feed.handler import FeedHandler
from tickwire.hdl.feed.itch import event_signature
from tickwire.hdl.net.mac import mac_rx_signature

from .export import to_rtlil
from .registers import Block, RegisterBank, RegisterMap, bus_signature, connect_bank


def feed_register_map(feed):
    return RegisterMap([Block("feed", feed, feed.registers)])


class FeedDevice(wiring.Component):
    """The feed handler and its register bank.

    Ports
    -----
    rx : In(MacBeat stream, always ready), the MAC client port
    bus : In(register bus), see `tickwire.hdl.platform.registers`
    events : Out(BookEvent stream, always ready)

    Latency: the feed handler's (3 cycles rx -> events); register reads answer the cycle after
    the read strobe.
    """

    def __init__(self, *, identity=0, **feed_parameters):
        self.feed_parameters = feed_parameters
        self.feed = FeedHandler(**feed_parameters)
        self.register_map = feed_register_map(self.feed)
        self.bank = RegisterBank(self.register_map, identity)
        super().__init__({
            "rx": In(mac_rx_signature()),
            "bus": In(bus_signature(self.register_map.address_width)),
            "events": Out(event_signature()),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.feed = feed = self.feed
        m.submodules.bank = bank = self.bank
        wiring.connect(m, wiring.flipped(self.rx), feed.rx)
        wiring.connect(m, wiring.flipped(self.bus), bank.bus)
        wiring.connect(m, feed.events, wiring.flipped(self.events))
        connect_bank(m, bank, self.register_map)
        return m


@functools.cache
def _identity(parameters):
    rtlil = to_rtlil(FeedDevice(identity=0, **dict(parameters)), "tickwire_device")
    return int.from_bytes(hashlib.sha256(rtlil.encode()).digest()[:8], "big")


def describe_only(component):
    """Mark a component built only to be described (its register map, its signature) as used,
    so that Amaranth does not warn that it was never elaborated."""
    seen, todo = set(), [component]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or not isinstance(obj, Elaboratable):
            continue
        seen.add(id(obj))
        obj._MustUse__used = True
        todo.extend(vars(obj).values())
    return component


def device_register_map(**feed_parameters):
    """The register map of a `FeedDevice`, without elaborating anything."""
    return describe_only(FeedDevice(**feed_parameters)).register_map


def design_identity(**feed_parameters):
    """The identity of the `FeedDevice` with these parameters (about a second: one RTLIL
    conversion, cached per process)."""
    return _identity(tuple(sorted(feed_parameters.items())))


def build_device(**feed_parameters):
    """A `FeedDevice` carrying its own design identity."""
    return FeedDevice(identity=design_identity(**feed_parameters), **feed_parameters)
