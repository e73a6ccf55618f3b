"""The simulated NIC: the Verilated device top level, clocked from Python, driven over its bus.

`SimulatedNic` wraps `tickwire.hdl.platform.device.FeedDevice` once with pyverilator-mm (see
`tickwire.sim.pyverilator_build`). The clock advances only when Python asks: every register
access takes two cycles (strobe, answer), and frames queued at MAC rx with `send` go in one
beat per cycle while the host works, as they would on a board. `run` clocks until the rx queue
is empty. Book events are collected into `events` when ``collect_events`` is set.
"""

from collections import deque

from tickwire.hdl.platform.device import FeedDevice, build_device
from tickwire.hdl.platform.export import component_ports, to_verilog

from .feed_run import Frame, schedule
from .pyverilator_build import load


def _member(port):
    """Verilator's C++ name of a port: it escapes each "__" as "___05F"."""
    return port.replace("__", "___05F")


class SimulatedNic:
    """A `FeedDevice` in Verilator, with MAC rx as a frame queue and the register bus as
    `read_word` / `write_word`.

    ``identity`` overrides the design identity built into the model (tests of the host's
    refusal use it); by default the model carries its true identity.

    A process holds one Verilated model per design (Verilator's limit): a new `SimulatedNic`
    of the same design takes the model over and resets it, and the older one refuses to run."""

    NAME = "tickwire_device"

    def __init__(self, *, identity=None, collect_events=False, **feed_parameters):
        if identity is None:
            device = build_device(**feed_parameters)
        else:
            device = FeedDevice(identity=identity, **feed_parameters)
        self.register_map = device.register_map
        self.identity = device.bank.identity
        ports = component_ports(device)
        self.widths = {name: len(value) for name, (value, _) in ports.items()}
        self.model = load(to_verilog(device, self.NAME), self.NAME)
        self.model.auto_eval = False
        self.model.tickwire_owner = self
        self.rx = deque()           # pending MacBeat payloads, one per cycle
        self.collect_events = collect_events
        self.events = []            # (BookEvent payload int, cycle)
        self.cycle = 0
        self.reset()

    def reset(self):
        """Reset the device (registers, counters, FIFOs) and drop queued rx beats."""
        self.rx.clear()
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
            if self.collect_events and self._get("events__valid"):
                self.events.append((self._get("events__payload"), self.cycle))

    def send(self, frame, bad=False, idle_after=0):
        """Queue a frame (bytes, or a `tickwire.sim.feed_run.Frame`) at MAC rx."""
        if not isinstance(frame, Frame):
            frame = Frame(bytes(frame), bad, idle_after)
        cycles, _ = schedule([frame])
        self.rx.extend(cycles)

    def run(self, drain_cycles=8):
        """Clock until every queued beat has been presented, then `drain_cycles` more."""
        self.tick(len(self.rx) + drain_cycles)

    def read_word(self, address):
        self._set("bus__addr", address)
        self._set("bus__r_stb", 1)
        self.tick()
        self._set("bus__r_stb", 0)
        return self._get("bus__r_data")

    def write_word(self, address, value):
        self._set("bus__addr", address)
        self._set("bus__w_data", value)
        self._set("bus__w_stb", 1)
        self.tick()
        self._set("bus__w_stb", 0)


_shared = {}


def shared_nic(**feed_parameters):
    """This process's `SimulatedNic` of the design with these parameters, built on first use
    (for test suites and tools that open the simulated NIC more than once)."""
    key = tuple(sorted(feed_parameters.items()))
    nic = _shared.get(key)
    if nic is None or nic.model.tickwire_owner is not nic:
        nic = _shared[key] = SimulatedNic(**feed_parameters)
    return nic
