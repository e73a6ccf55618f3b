"""Two masters on one register bus: the host's own port (PCIe BAR, the simulator) and the UDP
control channel's responder."""

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.counters import count, counter_layout

from .registers import Counters, bus_signature

BUS_COUNTERS = ("refused",)

BUS_REGISTERS = (
    Counters("counters", "``refused``: host-port accesses dropped because the control channel "
             "held the bus (a host master that waits for ``bus_busy`` low never loses one)"),
)


def bus_arbiter_signature(address_width):
    """`BusArbiter`'s ports; only the buses depend on `address_width` (see
    `tickwire.hdl.net.control.control_signature` for why that matters)."""
    return wiring.Signature({
        "host": In(bus_signature(address_width)),
        "control": In(bus_signature(address_width)),
        "lock": In(1),
        "busy": Out(1),
        "out": Out(bus_signature(address_width)),
        "counters": Out(counter_layout(BUS_COUNTERS)),
    })


class BusArbiter(wiring.Component):
    """The register bus shared by the host port and the control channel, by a lock.

    The control responder raises ``lock`` at least two cycles before its first access of a
    request and holds it until its last read's data has been taken, so that every request's
    operations run with no other access in between (wide reads and staged writes stay
    consistent). While ``lock`` is high, ``busy`` tells the host port's master to wait; an
    access it makes anyway is dropped (a read answers 0) and counted ``refused``. While
    ``lock`` is low, the host port has the bus.

    Ports
    -----
    host : In(bus_signature(address_width)), the host port's master
    control : In(bus_signature(address_width)), the control responder
    lock : In(1), from the control responder
    busy : Out(1), ``lock``, for the host port's master
    out : Out(bus_signature(address_width)), to the register bank
    counters : Out(``refused``)

    Latency: 0 cycles (multiplexers only).
    """

    def __init__(self, address_width):
        self.registers = BUS_REGISTERS
        super().__init__(bus_arbiter_signature(address_width))

    def elaborate(self, platform):
        m = Module()
        host, control, lock, out = self.host, self.control, self.lock, self.out
        m.d.comb += [
            self.busy.eq(lock),
            out.addr.eq(Mux(lock, control.addr, host.addr)),
            out.w_data.eq(Mux(lock, control.w_data, host.w_data)),
            out.r_stb.eq(Mux(lock, control.r_stb, host.r_stb)),
            out.w_stb.eq(Mux(lock, control.w_stb, host.w_stb)),
            control.r_data.eq(out.r_data),
            host.r_data.eq(out.r_data),
        ]
        count(m, self.counters, "refused", lock & (host.r_stb | host.w_stb))
        return m
