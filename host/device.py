"""The host driver: registers, tables and FIFOs by name, over any transport.

`Device` knows registers only by the names of the `RegisterMap` generated from the gateware's
declarations (`tickwire.hdl.platform.registers`); it never takes an address. Everything it is
asked to write is checked against the map first (the name exists, the register is writable,
the value and every field fit, the table index exists); a refused request writes nothing.

The API is async so that a host program can poll several devices, or poll counters while it
drains a FIFO, from one event loop; a per-device lock keeps multi-word accesses (latched
reads, staged writes) from interleaving on the bus.
"""

import asyncio
import difflib

from tickwire.hdl.platform.registers import MAGIC, WORD_BITS

WORD_MASK = (1 << WORD_BITS) - 1


#: A latency histogram is a counter group ``<block>.histogram`` (``below``, ``bin0``..,
#: ``above``) with its bin edges in the config register ``<block>.histogram_bins`` (``base``,
#: ``shift``: bin k counts ``base + k << shift <= latency < base + (k + 1) << shift``) and its
#: statistics in the status register ``<block>.latency`` (``count``, ``sum``, ...).
HISTOGRAM_BINS_SUFFIX = ".histogram_bins"


class RegisterError(ValueError):
    """A request refused before anything reached the device."""


class DeviceError(RuntimeError):
    """The device is not the one the host expects."""


class IdentityMismatch(DeviceError):
    def __init__(self, device, expected):
        self.device, self.expected = device, expected
        super().__init__(
            f"design identity mismatch: the device reports {device:016x}, this host was built "
            f"for {expected:016x}; load the matching bitstream or use the matching host")


def _decode(register, value):
    if not register.fields:
        return value
    out = {}
    for field in register.fields:
        raw = (value >> field.offset) & ((1 << field.width) - 1)
        out[field.name] = raw
    return out


def _encode(register, value):
    """An int or a {field: value} dict -> the register's integer; refuses what does not fit."""
    if isinstance(value, dict):
        if not register.fields:
            raise RegisterError(f"{register.name} has no fields; write an integer")
        known = {f.name: f for f in register.fields}
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise RegisterError(f"{register.name}: no field {', '.join(map(repr, unknown))} "
                                f"(fields: {', '.join(known)})")
        result = 0
        for name, item in value.items():
            field = known[name]
            if isinstance(item, str) and field.enum:
                if item not in field.enum:
                    raise RegisterError(f"{register.name}.{name}: {item!r} is not one of "
                                        f"{', '.join(field.enum)}")
                item = field.enum[item]
            item = int(item)
            if not 0 <= item < 1 << field.width:
                raise RegisterError(f"{register.name}.{name}: {item} does not fit in "
                                    f"{field.width} bits (0..{(1 << field.width) - 1})")
            result |= item << field.offset
        return result
    if isinstance(value, bool) or not isinstance(value, int):
        raise RegisterError(f"{register.name}: write an integer or a dict of fields, "
                            f"not {type(value).__name__}")
    if not 0 <= value < 1 << register.width:
        raise RegisterError(f"{register.name}: {value} does not fit in {register.width} bits "
                            f"(0..{(1 << register.width) - 1})")
    return value


class Device:
    """A tickwire device reached through `transport` (any object with async
    ``read_word(address)`` and ``write_word(address, value)``).

    Use `Device.open` to check the register bank's magic word and design identity first."""

    def __init__(self, transport, register_map):
        self.transport = transport
        self.map = register_map
        self._lock = None

    @classmethod
    async def open(cls, transport, register_map=None, *, identity=None, check_identity=True):
        """Open a device, refusing it unless its design identity is `identity` (by default the
        identity of the gateware this host is built from). With ``check_identity=False`` the
        identity is only read (into ``.identity``): for tools that report it, never for
        anything that configures the device."""
        from tickwire.hdl.platform.device import design_identity, device_register_map

        device = cls(transport, register_map or device_register_map())
        magic = await device.read("id.magic")
        if magic != MAGIC:
            raise DeviceError(f"no tickwire register bank on {transport}: word 0 reads "
                              f"0x{magic:08x}, not 0x{MAGIC:08x}")
        reported = await device.read("id.identity")
        if check_identity:
            expected = design_identity() if identity is None else identity
            if reported != expected:
                raise IdentityMismatch(reported, expected)
        device.identity = reported
        return device

    def register(self, name):
        """The named register, or a `RegisterError` suggesting close names."""
        try:
            return self.map[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.map.by_name, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise RegisterError(f"no register named {name!r}{hint}") from None

    def _locked(self):
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _read_words(self, address, count):
        words = [await self.transport.read_word(address + k) for k in range(count)]
        return sum(w << (WORD_BITS * k) for k, w in enumerate(words))

    async def read(self, name, index=None):
        """A register's value (a dict of fields for structured registers); `index` selects a
        table entry."""
        register = self.register(name)
        if register.kind == "fifo":
            raise RegisterError(f"{name} is a FIFO: drain it with drain({name!r})")
        if not register.readable:
            raise RegisterError(f"{name} is write-only")
        address = register.entry_address(self._index(register, index))
        async with self._locked():
            if register.snapshot:    # a counter: read it from a fresh snapshot of its group
                await self.transport.write_word(self.map[register.snapshot].address, 1)
            value = await self._read_words(address, register.words)
        return _decode(register, value & ((1 << register.width) - 1))

    async def read_table(self, name):
        register = self.register(name)
        return [await self.read(name, i) for i in range(register.depth)]

    async def write(self, name, value, index=None):
        """Write a register (or table entry `index`): an int, or a dict of fields."""
        register = self.register(name)
        if not register.writable:
            raise RegisterError(f"{name} is read-only ({register.kind})")
        address = register.entry_address(self._index(register, index))
        raw = _encode(register, value)
        async with self._locked():
            for k in range(register.words):   # the last word commits the value
                await self.transport.write_word(address + k, (raw >> (WORD_BITS * k)) & WORD_MASK)

    def _index(self, register, index):
        if register.depth == 1:
            if index not in (None, 0):
                raise RegisterError(f"{register.name} is not a table")
            return 0
        if index is None:
            raise RegisterError(f"{register.name} is a table of {register.depth} entries: "
                                "give an index")
        if not isinstance(index, int) or not 0 <= index < register.depth:
            raise RegisterError(f"{register.name}: entry {index} out of range "
                                f"0..{register.depth - 1}")
        return index

    async def drain(self, name, limit=None):
        """Pop entries from a FIFO until it is empty (or `limit` entries); entries the FIFO
        lost while full are counted by the gateware, see `overflow`."""
        register = self.register(name)
        if register.kind != "fifo":
            raise RegisterError(f"{name} is not a FIFO")
        out = []
        while limit is None or len(out) < limit:
            async with self._locked():
                if not await self.transport.read_word(register.address):
                    break
                value = await self._read_words(register.entry_address(0), register.words)
            out.append(_decode(register, value & ((1 << register.width) - 1)))
        return out

    async def overflow(self, name):
        """How many entries the FIFO `name` has lost to being full (a wrapping counter)."""
        register = self.register(name)
        if not register.overflow:
            raise RegisterError(f"{name} has no overflow counter")
        return await self.read(register.overflow)

    async def counters(self, prefix=""):
        """{name: value} of every counter whose name starts with `prefix`, all from one snapshot
        of their groups (a consistent cut, taken in one cycle). Counters are single words: a
        transport that batches (``read_words``) reads them in as few requests as it can."""
        registers = [r for r in self.map if r.kind == "counter" and r.name.startswith(prefix)]
        addresses = [r.address for r in registers]
        snapshots = dict.fromkeys(r.snapshot for r in registers if r.snapshot)
        batch = getattr(self.transport, "read_words", None)
        async with self._locked():
            for snapshot in snapshots:
                await self.transport.write_word(self.map[snapshot].address, 1)
            if batch is not None:
                values = await batch(addresses)
            else:
                values = [await self.transport.read_word(a) for a in addresses]
        return {r.name: v & ((1 << r.width) - 1) for r, v in zip(registers, values, strict=True)}

    async def status(self):
        """Everything a monitor shows: identity, alarms and other status, counters."""
        out = {"identity": f"{await self.read('id.identity'):016x}", "status": {},
               "counters": await self.counters(), "histogram_bins": {}}
        for r in self.map:
            if r.kind == "status":
                out["status"][r.name] = (await self.read_table(r.name) if r.depth > 1
                                         else await self.read(r.name))
            elif r.kind == "config" and r.name.endswith(HISTOGRAM_BINS_SUFFIX):
                out["histogram_bins"][r.name] = await self.read(r.name)
        return out
