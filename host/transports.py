"""Transports: how 32-bit words reach a device's register bus.

A transport has async ``read_word(address)`` / ``write_word(address, value)`` (word
addresses) and ``close()``; `tickwire.host.device.Device` works the same over every one.

- `SimTransport`: the simulated NIC (`tickwire.sim.nic.SimulatedNic`) in this process.
- `PcieBar`: a PCIe BAR, by mmap of its sysfs resource file
  (``/sys/bus/pci/devices/<bdf>/resource<n>``); word ``a`` is at byte offset ``4a``,
  little-endian, accessed as one aligned 32-bit load or store.
- `tickwire.host.udp_control.UdpControl`: the UDP control channel for boards without PCIe
  (``udp://host:port``, the board's token in ``TICKWIRE_CONTROL_TOKEN``); its gateware side
  is a later increment, its board side exists as a reference model
  (`tickwire.sim.nic_control`).
"""

import mmap
import os


class SimTransport:
    """The register bus of a `SimulatedNic`: by default this process's one simulated NIC
    (`tickwire.sim.nic.shared_nic`, built on first use and cached under build/), so that every
    ``connect("sim")`` in a process talks to the same device, as they would to one board."""

    def __init__(self, nic=None, **nic_parameters):
        if nic is None:
            from tickwire.sim.nic import shared_nic
            nic = shared_nic(**nic_parameters)
        self.nic = nic

    async def read_word(self, address):
        return self.nic.read_word(address)

    async def write_word(self, address, value):
        self.nic.write_word(address, value)

    def close(self):
        pass

    def __str__(self):
        return "the simulated NIC"


class PcieBar:
    """A BAR mapped from a sysfs resource file (or any file standing in for one)."""

    def __init__(self, path, *, offset=0, size=None):
        self.path = str(path)
        if offset % 4:
            raise ValueError("the register bank offset must be word-aligned")
        self._fd = os.open(self.path, os.O_RDWR | os.O_SYNC)
        try:
            size = size or os.fstat(self._fd).st_size - offset
            self._map = mmap.mmap(self._fd, offset + size, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)
        except Exception:
            os.close(self._fd)
            raise
        self._words = memoryview(self._map)[offset:offset + size - size % 4].cast("I")

    def _check(self, address):
        if not 0 <= address < len(self._words):
            raise ValueError(f"word address {address} is outside the BAR "
                             f"({len(self._words)} words) of {self.path}")

    async def read_word(self, address):
        self._check(address)
        return self._words[address]

    async def write_word(self, address, value):
        self._check(address)
        self._words[address] = value

    def close(self):
        if self._map is not None:
            self._words.release()
            self._map.close()
            os.close(self._fd)
            self._map = None

    def __str__(self):
        return f"PCIe BAR {self.path}"


def open_transport(spec, **sim_parameters):
    """A transport for a device spec: ``sim``, ``udp://<host>:<port>``, ``pcie:<resource
    file>`` (or a path to one)."""
    if spec == "sim":
        return SimTransport(**sim_parameters)
    if spec.startswith("pcie:"):
        return PcieBar(spec.removeprefix("pcie:"))
    if spec.startswith("udp://"):
        return _udp(spec.removeprefix("udp://"))
    if os.path.exists(spec):
        return PcieBar(spec)
    raise ValueError(f"unknown device {spec!r}: use sim, udp://<host>:<port>, "
                     "pcie:<resource file>, or a path to a PCIe resource file")


TOKEN_VARIABLE = "TICKWIRE_CONTROL_TOKEN"


def _udp(where):
    from .udp_control import TOKEN_BYTES, UdpControl

    host, sep, port = where.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"udp://{where}: give udp://<host>:<port>")
    token = os.environ.get(TOKEN_VARIABLE, "")
    try:
        token = bytes.fromhex(token)
    except ValueError:
        token = b""
    if len(token) != TOKEN_BYTES:
        raise ValueError(f"set {TOKEN_VARIABLE} to the board's control token "
                         f"({2 * TOKEN_BYTES} hex digits)")
    return UdpControl(host.strip("[]"), int(port), token)
