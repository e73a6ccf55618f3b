"""Transports: how 32-bit words reach a device's register bus.

A transport has async ``read_word(address)`` / ``write_word(address, value)`` (word
addresses) and ``close()``; `tickwire.host.device.Device` works the same over every one.

- `SimTransport`: the simulated NIC (`tickwire.sim.nic.SimulatedNic`) in this process.
- `PcieBar`: a PCIe BAR, by mmap of its sysfs resource file
  (``/sys/bus/pci/devices/<bdf>/resource<n>``); word ``a`` is at byte offset ``4a``,
  little-endian, accessed as one aligned 32-bit load or store.
- The UDP control channel for boards without PCIe has no gateware side yet (a later
  increment).
"""

import mmap
import os


class SimTransport:
    """The register bus of a `SimulatedNic` (built on first use, cached under build/)."""

    def __init__(self, nic=None, **nic_parameters):
        if nic is None:
            from tickwire.sim.nic import SimulatedNic
            nic = SimulatedNic(**nic_parameters)
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
    """A transport for a device spec: ``sim``, ``pcie:<resource file>`` (or a path to one)."""
    if spec == "sim":
        return SimTransport(**sim_parameters)
    if spec.startswith("pcie:"):
        return PcieBar(spec.removeprefix("pcie:"))
    if spec.startswith("udp://"):
        raise ValueError("the UDP control channel has no gateware side yet (a later "
                         "increment); use --device sim or a PCIe resource file")
    if os.path.exists(spec):
        return PcieBar(spec)
    raise ValueError(f"unknown device {spec!r}: use sim, pcie:<resource file>, or a path to a "
                     "PCIe resource file")
