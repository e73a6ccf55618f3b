"""The simulated NIC: the Verilated device top level, clocked from Python, driven over its bus.

`SimulatedNic` wraps the device top level (`tickwire.hdl.top.TickToTrade`, built by
`tickwire.hdl.platform.device.build_device`) once with pyverilator-mm (see
`tickwire.sim.pyverilator_build`). The clock advances only when Python asks: every register
access takes two cycles (strobe, answer), and frames queued at MAC rx with `send` go in one
beat per cycle while the host works, as they would on a board. `run` clocks until the rx queue
is empty. Frames the device sends at MAC tx (always ready) are collected in `sent` as
``(frame bytes, cycle of the first beat)``: order frames and the UDP control channel's
replies. A register access waits while a control request holds the bus (``bus_busy``).
"""

from collections import deque

from tickwire.hdl.net.mac import MacBeat
from tickwire.hdl.platform.device import DEVICE_NAME, device_verilog
from tickwire.hdl.platform.export import component_ports, to_verilog
from tickwire.hdl.top import TickToTrade

from .feed_run import Frame, schedule
from .pyverilator_build import load
from .records import unpack


def _member(port):
    """Verilator's C++ name of a port: it escapes each "__" as "___05F"."""
    return port.replace("__", "___05F")


class SimulatedNic:
    """A `TickToTrade` in Verilator, with MAC rx as a frame queue, MAC tx collected into `sent`
    and the register bus as `read_word` / `write_word`. `parameters` are `TickToTrade`'s.

    ``identity`` overrides the design identity built into the model (tests of the host's
    refusal use it); by default the model carries its true identity.

    A process holds one Verilated model per design (Verilator's limit): a new `SimulatedNic`
    of the same design takes the model over and resets it, and the older one refuses to run."""

    NAME = DEVICE_NAME

    def __init__(self, *, identity=None, **parameters):
        if identity is None:
            device, verilog = device_verilog(**parameters)
        else:
            device = TickToTrade(identity=identity, **parameters)
            verilog = to_verilog(device, self.NAME)
        self.register_map = device.register_map
        self.identity = device.bank.identity
        self.control_defaults = device.control_defaults
        ports = component_ports(device)
        self.widths = {name: len(value) for name, (value, _) in ports.items()}
        self.model = load(verilog, self.NAME)
        self.model.auto_eval = False
        self.model.tickwire_owner = self
        self.rx = deque()           # pending MacBeat payloads, one per cycle
        self.sent = []              # (frame bytes, cycle its first beat was at tx)
        self._frame = None          # the frame being sent: [bytearray, first cycle]
        self.cycle = 0
        self.reset()

    def reset(self):
        """Reset the device (registers, counters, FIFOs) and drop queued rx beats."""
        self.rx.clear()
        self._frame = None
        self._set("tx__ready", 1)
        self._set("rst", 1)
        self.tick()
        self._set("rst", 0)

    def _set(self, port, value):
        self.model[_member(port)] = value

    def _get(self, port):
        return self.model[_member(port)]

    def tick(self, cycles=1):
        """Advance the clock, presenting queued rx beats one per cycle."""
        model = self.model
        if model.tickwire_owner is not self:
            raise RuntimeError("this SimulatedNic was superseded by a newer one of the same "
                               "design in this process (one Verilated model per design)")
        for _ in range(cycles):
            beat = self.rx.popleft() if self.rx else None
            if beat is not None:
                self._set("rx__payload", beat)
            self._set("rx__valid", beat is not None)
            model.eval()
            self._set("clk", 1)
            model.eval()
            self._set("clk", 0)
            model.eval()
            self.cycle += 1
            if self._get("tx__valid"):
                self._take_tx_beat()

    def _take_tx_beat(self):
        beat = unpack(MacBeat, self._get("tx__payload"))
        if beat["first"] or self._frame is None:
            self._frame = [bytearray(), self.cycle]
        width = bin(beat["keep"]).count("1")
        self._frame[0] += beat["data"].to_bytes(8, "little")[:width]
        if beat["last"]:
            self.sent.append((bytes(self._frame[0]), self._frame[1]))
            self._frame = None

    def send(self, frame, bad=False, idle_after=0):
        """Queue a frame (bytes, or a `tickwire.sim.feed_run.Frame`) at MAC rx; returns the
        cycle its first beat will be presented in."""
        if not isinstance(frame, Frame):
            frame = Frame(bytes(frame), bad, idle_after)
        cycles, _ = schedule([frame])
        start = self.cycle + len(self.rx)
        self.rx.extend(cycles)
        return start

    def run(self, drain_cycles=8):
        """Clock until every queued beat has been presented, then `drain_cycles` more."""
        self.tick(len(self.rx) + drain_cycles)

    def _wait_for_bus(self):
        """Clock while the UDP control channel holds the bus (a request's operations run with
        no other access in between)."""
        while self._get("bus_busy"):
            self.tick()

    def read_word(self, address):
        self._wait_for_bus()
        self._set("bus__addr", address)
        self._set("bus__r_stb", 1)
        self.tick()
        self._set("bus__r_stb", 0)
        return self._get("bus__r_data")

    def write_word(self, address, value):
        self._wait_for_bus()
        self._set("bus__addr", address)
        self._set("bus__w_data", value)
        self._set("bus__w_stb", 1)
        self.tick()
        self._set("bus__w_stb", 0)


_shared = {}


def shared_nic(**parameters):
    """This process's `SimulatedNic` of the design with these parameters, built on first use
    (for test suites and tools that open the simulated NIC more than once)."""
    key = tuple(sorted(parameters.items()))
    nic = _shared.get(key)
    if nic is None or nic.model.tickwire_owner is not nic:
        nic = _shared[key] = SimulatedNic(**parameters)
    return nic
