"""Control and status registers, declared once next to the gateware that owns them.

A component's registers are a list of declarations naming its ports (`Config`, `Strobe`,
`Status`, `Counters`, `Fifo`) and its build parameters (`Constant`). A `RegisterMap` resolves
them against the component's signature (shapes come from the ports, never from a second
description) and assigns word addresses in declaration order. From that one map come the
gateware `RegisterBank`, the host driver's names (`tickwire.host.driver`) and the committed
JSON/Markdown map (`docs/registers.*`). No address is written by hand anywhere.

The bus (`bus_signature`) is a simple memory-mapped port: 32-bit data, word addresses, a read
strobe and a write strobe, one access per cycle, reads answered on ``r_data`` the cycle after
``r_stb`` (registered). Multi-word values are kept consistent:

- **reads**: reading word 0 of a value wider than 32 bits latches the whole value into a shadow
  register and returns its low word; words 1.. return the shadow. The host reads word 0 first,
  then the others, with no other wide read in between (the driver holds a lock).
- **writes**: words 0..n-2 of a wide value go to a staging register; writing the last word
  commits the whole value in one cycle (a table entry never takes effect half-written).
- **FIFOs**: reading the pop word returns 1 and moves the head entry into the shadow (popping
  it) or returns 0 when empty; the entry's words are then read from the shadow.
- Reads of unmapped or write-only words return 0; writes to read-only or unmapped words are
  ignored (the driver refuses them before they reach the bus).
"""

import dataclasses
import json

from amaranth.hdl import Cat, Const, Module, Shape, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib import enum as amaranth_enum
from amaranth.lib.wiring import In, Out

from tickwire.hdl.signals import or_all

WORD_BITS = 32
MAGIC = int.from_bytes(b"TWRM", "big")   # "tickwire register map", at word 0
IDENTITY_BITS = 64


def bus_signature(address_width):
    """The register bus, from the master's side (the host transport)."""
    return wiring.Signature({
        "addr": Out(address_width),
        "r_stb": Out(1),
        "r_data": In(WORD_BITS),
        "w_stb": Out(1),
        "w_data": Out(WORD_BITS),
    })


def words(width):
    return max(1, (width + WORD_BITS - 1) // WORD_BITS)


# Declarations ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Decl:
    """A register backed by the port ``port`` of the owning component."""
    port: str
    doc: str = ""
    kind = None
    access = None


class Config(Decl):
    """Host-written configuration driving an ``In`` port; an array port becomes a table."""
    kind, access = "config", "rw"


class Strobe(Decl):
    """Write-only: the written value is on the ``In`` port for exactly one cycle."""
    kind, access = "strobe", "wo"


class Status(Decl):
    """Read-only view of an ``Out`` port; an array port becomes a read-only table."""
    kind, access = "status", "ro"


@dataclasses.dataclass(frozen=True)
class Counters(Decl):
    """An ``Out`` struct of 32-bit counters (nested groups allowed): one register each.

    With ``snapshot`` (the default) the group also gets a ``<port>.snapshot`` register: writing
    1 to it copies every counter of the group into the bank in the same cycle, and counter
    reads return that copy, so a set of counters read one by one is a consistent cut (the
    driver writes the snapshot before it reads). Costs one 32-bit register per counter."""
    snapshot: bool = True
    kind, access = "counter", "ro"


@dataclasses.dataclass(frozen=True)
class Fifo(Decl):
    """An ``Out`` stream drained by the host; reading its pop word pops an entry. ``overflow``
    names the counter register (within the block) of entries lost to a full FIFO."""
    overflow: str | None = None
    kind, access = "fifo", "ro"


@dataclasses.dataclass(frozen=True)
class Constant(Decl):
    """A read-only build parameter with no port (``port`` is only its name): the host checks
    configuration against the build it talks to with these."""
    value: int = 0
    kind, access = "constant", "ro"


@dataclasses.dataclass(frozen=True)
class Block:
    """The registers of one component, named ``<name>.<register>``."""
    name: str
    component: wiring.Component
    registers: tuple


# The resolved map ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    offset: int
    width: int
    enum: dict | None = None     # member name -> value, for enum-shaped fields


@dataclasses.dataclass(frozen=True)
class Register:
    """One named register (or table, or FIFO) at a word address.

    ``words`` is the number of bus words of one value; a table has ``depth`` entries of
    ``words`` words each; a FIFO has a pop word at ``address`` followed by ``words`` data words.
    ``port``/``offset``/``stride`` locate entry ``i`` at bits ``offset + i*stride`` of the bank
    port ``port`` (for the gateware only)."""
    name: str
    kind: str
    access: str
    address: int
    width: int
    depth: int = 1
    doc: str = ""
    fields: tuple = ()
    port: str | None = None
    offset: int = 0
    stride: int = 0
    value: int | None = None     # constants
    overflow: str | None = None  # FIFOs: the counter of entries lost to a full FIFO
    snapshot: str | None = None  # counters: the register that snapshots them

    @property
    def words(self):
        return words(self.width)

    @property
    def span(self):
        return self.words * self.depth + (1 if self.kind == "fifo" else 0)

    def entry_address(self, index=0):
        if not 0 <= index < self.depth:
            raise IndexError(f"{self.name}: entry {index} out of range 0..{self.depth - 1}")
        return self.address + (1 if self.kind == "fifo" else 0) + index * self.words

    @property
    def readable(self):
        return self.access in ("ro", "rw")

    @property
    def writable(self):
        return self.access in ("rw", "wo")

    def describe(self):
        out = {"name": self.name, "kind": self.kind, "access": self.access,
               "address": self.address, "words": self.words, "width": self.width,
               "depth": self.depth, "doc": self.doc}
        if self.value is not None:
            out["value"] = self.value
        if self.overflow:
            out["overflow"] = self.overflow
        if self.snapshot:
            out["snapshot"] = self.snapshot
        if self.fields:
            out["fields"] = [{"name": f.name, "offset": f.offset, "width": f.width}
                             | ({"enum": f.enum} if f.enum else {}) for f in self.fields]
        return out


def _fields(shape, prefix="", base=0):
    """The fields of a struct shape, for host-side encoding and the docs; the fields of nested
    structs are flattened into dotted names (``entry.max_quantity``)."""
    if isinstance(shape, type) and issubclass(shape, data.Struct):
        shape = shape.as_shape()
    if not isinstance(shape, data.StructLayout):
        return ()
    out = []
    for name, field in shape:
        inner = field.shape
        if isinstance(inner, type) and issubclass(inner, data.Struct):
            inner = inner.as_shape()
        if isinstance(inner, data.StructLayout):
            out.extend(_fields(inner, f"{prefix}{name}.", base + field.offset))
            continue
        enum = None
        if isinstance(inner, type) and issubclass(inner, amaranth_enum.Enum):
            enum = {member.name: member.value for member in inner}
        out.append(Field(prefix + name, base + field.offset, field.width, enum))
    return tuple(out)


def _width(shape):
    return Shape.cast(shape).width


def _port_shape(component, port):
    member = component.signature.members[port]
    if member.is_signature:
        return member.signature.members["payload"].shape
    return member.shape


class RegisterMap:
    """Register names and word addresses for a list of `Block`s.

    Words 0..2 are the header: ``id.magic`` (the ASCII ``TWRM``) and ``id.identity`` (the design
    identity, a hash of the build, see `tickwire.hdl.platform.device`). Each block follows, its
    registers in declaration order, packed."""

    def __init__(self, blocks):
        self.blocks = tuple(blocks)
        self.registers = []
        self.ports = {}    # bank port name -> (block, component port, flow, shape, kind)
        self._add(Register("id.magic", "constant", "ro", 0, 32, doc="ASCII 'TWRM'", value=MAGIC))
        self._add(Register("id.identity", "constant", "ro", 0, IDENTITY_BITS,
                           doc="design identity: a hash of the gateware's build"))
        for block in self.blocks:
            for decl in block.registers:
                self._declare(block, decl)
        self.by_name = {r.name: r for r in self.registers}
        if len(self.by_name) != len(self.registers):
            raise ValueError("duplicate register names")
        for r in self.registers:
            if r.overflow and self.by_name.get(r.overflow, r).kind != "counter":
                raise ValueError(f"{r.name}: overflow counter {r.overflow!r} is not a counter")

    @classmethod
    def from_json(cls, text):
        """The host's view of a map from its generated JSON (``docs/registers.json``): names,
        addresses, widths and fields, for hosts that do not have the gateware's source. It
        cannot build a bank (it knows no ports)."""
        description = json.loads(text)
        if description.get("format") != "tickwire register map 1":
            raise ValueError("not a tickwire register map (format 1)")
        self = cls.__new__(cls)
        self.blocks, self.ports, self.registers = (), {}, []
        for item in description["registers"]:
            fields = tuple(Field(f["name"], f["offset"], f["width"], f.get("enum"))
                           for f in item.get("fields", ()))
            self.registers.append(Register(
                item["name"], item["kind"], item["access"], item["address"], item["width"],
                item["depth"], item["doc"], fields, value=item.get("value"),
                overflow=item.get("overflow"), snapshot=item.get("snapshot")))
        self.by_name = {r.name: r for r in self.registers}
        return self

    @property
    def size(self):
        """Words of address space used."""
        last = self.registers[-1]
        return last.address + last.span

    @property
    def address_width(self):
        return max(1, (self.size - 1).bit_length())

    def _next(self):
        return self.size if self.registers else 0

    def _add(self, register):
        self.registers.append(dataclasses.replace(register, address=self._next()))

    def _declare(self, block, decl):
        component, port = block.component, decl.port
        if decl.kind == "constant":
            if not 0 <= decl.value < 1 << WORD_BITS:
                raise ValueError(f"{block.name}.{port}: a constant is one 32-bit word")
            self._add(Register(f"{block.name}.{port}", "constant", "ro", 0, WORD_BITS,
                               doc=decl.doc, value=decl.value))
            return
        if port not in component.signature.members:
            raise ValueError(f"{block.name}: no port {port!r} to declare a register on")
        member = component.signature.members[port]
        flow = member.flow
        wants = In if decl.kind in ("config", "strobe") else Out
        if flow != wants:
            raise ValueError(f"{block.name}.{port}: a {decl.kind} register needs an "
                             f"{'In' if wants == In else 'Out'} port")
        if (decl.kind == "fifo") != member.is_signature:
            raise ValueError(f"{block.name}.{port}: only stream ports are FIFOs")
        shape = _port_shape(component, port)
        bank_port = f"{block.name}__{port}"
        self.ports[bank_port] = (block, port, flow, shape, decl.kind)
        name = f"{block.name}.{port}"
        common = dict(kind=decl.kind, access=decl.access, address=0, doc=decl.doc,
                      port=bank_port)
        if decl.kind == "counter":
            snapshot = f"{name}.snapshot" if decl.snapshot else None
            if snapshot:
                self._add(Register(snapshot, "snapshot", "wo", 0, 1, doc="write 1: copy every "
                                   f"counter of {name} at once; their reads return the copy"))
            for path, offset, width in _leaves(data.Layout.cast(shape)):
                if width > WORD_BITS:
                    raise ValueError(f"{name}.{path}: counters are at most 32 bits")
                self._add(Register(f"{name}.{path}", width=width, offset=offset,
                                   snapshot=snapshot, **common))
            return
        if isinstance(shape, data.ArrayLayout):
            element = shape.elem_shape
            self._add(Register(name, width=_width(element), depth=shape.length,
                               fields=_fields(element), stride=_width(element), **common))
            return
        overflow = getattr(decl, "overflow", None)
        self._add(Register(name, width=_width(shape), fields=_fields(shape), **common,
                           overflow=f"{block.name}.{overflow}" if overflow else None))

    def __getitem__(self, name):
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"no register named {name!r}") from None

    def __iter__(self):
        return iter(self.registers)

    def locate(self, address):
        """(register, entry, word) for a word address; None if unmapped. For a FIFO the pop
        word is entry -1."""
        for register in self.registers:
            if register.address <= address < register.address + register.span:
                offset = address - register.address
                if register.kind == "fifo":
                    if offset == 0:
                        return register, -1, 0
                    offset -= 1
                return register, offset // register.words, offset % register.words
        return None

    # Generated documents -----------------------------------------------------------------------

    def describe(self):
        return {"format": "tickwire register map 1", "word_bits": WORD_BITS,
                "address_unit": "32-bit word", "magic": MAGIC, "size": self.size,
                "registers": [r.describe() for r in self.registers]}

    def to_json(self):
        return json.dumps(self.describe(), indent=2) + "\n"

    def to_markdown(self):
        lines = ["# tickwire register map", "",
                 "Generated from the register declarations by `tickwire regs --write`; do not "
                 "edit.", "",
                 "Addresses are 32-bit word addresses on the register bus. Values wider than "
                 "32 bits span consecutive words, least significant word first: reading word 0 "
                 "latches the whole value (read the other words next); writing the last word "
                 "commits it. A FIFO's first word pops an entry into the latch and reads 1 "
                 "(0 when empty); its entry is read from the words that follow.", "",
                 "| address | name | kind | access | bits | words | doc |",
                 "|---|---|---|---|---|---|---|"]
        for r in self.registers:
            address = f"0x{r.address:04x}"
            if r.span > 1:
                address += f"..0x{r.address + r.span - 1:04x}"
            shape = f"{r.depth} × {r.words}" if r.depth > 1 else f"{r.words}"
            if r.kind == "fifo":
                shape = f"1 + {r.words}"
            lines.append(f"| {address} | `{r.name}` | {r.kind} | {r.access} | {r.width} | "
                         f"{shape} | {r.doc} |")
        structured = [r for r in self.registers if r.fields]
        for r in structured:
            lines += ["", f"## `{r.name}` fields", "", "| bits | field | values |",
                      "|---|---|---|"]
            for f in r.fields:
                bits = f"{f.offset}" if f.width == 1 else f"{f.offset + f.width - 1}:{f.offset}"
                values = ", ".join(f"{k}={v}" for k, v in f.enum.items()) if f.enum else ""
                lines.append(f"| {bits} | `{f.name}` | {values} |")
        return "\n".join(lines) + "\n"


def _leaves(layout, prefix=""):
    for name, field in layout:
        path = f"{prefix}{name}"
        shape = field.shape
        if isinstance(shape, type) and issubclass(shape, data.Struct):
            shape = shape.as_shape()
        if isinstance(shape, data.StructLayout):
            for sub, offset, width in _leaves(shape, f"{path}."):
                yield sub, field.offset + offset, width
        else:
            yield path, field.offset, field.width


# The gateware ----------------------------------------------------------------------------------

class RegisterBank(wiring.Component):
    """The register bank of a `RegisterMap`: the bus on one side, the blocks' ports on the other.

    Ports
    -----
    bus : In(bus_signature(map.address_width))
    <block>__<port> : one per declared port, facing it: ``Out`` for configuration and strobes
        (to the block's ``In`` port), ``In`` for status, counters and FIFO streams.

    Latency: a read is answered on ``r_data`` the cycle after ``r_stb``; a write takes effect
    (configuration visible on the port, strobe pulsing) the cycle after ``w_stb``.
    """

    def __init__(self, register_map, identity=0):
        if not 0 <= identity < 1 << IDENTITY_BITS:
            raise ValueError("identity must fit in 64 bits")
        self.map = register_map
        self.identity = identity
        members = {"bus": In(bus_signature(register_map.address_width))}
        for bank_port, (_, _, flow, shape, kind) in register_map.ports.items():
            if kind == "fifo":
                members[bank_port] = In(stream.Signature(shape))
            else:
                members[bank_port] = Out(shape) if flow == In else In(shape)
        super().__init__(members)

    def _value(self, register, index):
        if register.kind == "constant":
            value = self.identity if register.name == "id.identity" else register.value
            return Const(value, register.width)
        port = getattr(self, register.port)
        if isinstance(port, stream.Interface):
            return Value.cast(port.payload)
        port = Value.cast(port)
        start = register.offset + index * register.stride
        return port[start:start + register.width]

    def _read_groups(self):
        """The readable registers by block (the first part of their names), in address order."""
        groups = {}
        for register in self.map:
            if register.readable:
                groups.setdefault(register.name.split(".")[0], []).append(register)
        return groups.items()

    def _read_cases(self, m, register, copies, word, wide_value, load, shadow_reads):
        """Cases of `register` in a block's read switch: its words and shadow loads; the
        addresses of the words served from the shadow go to `shadow_reads` (address -> word)."""
        n = register.words
        if register.kind == "fifo":
            fifo = getattr(self, register.port)
            with m.Case(register.address):
                m.d.comb += [fifo.ready.eq(1), word.eq(fifo.valid), load.eq(fifo.valid),
                             wide_value.eq(Value.cast(fifo.payload))]
            shadow_reads.update((register.entry_address(0) + k, k) for k in range(n))
            return
        for index in range(register.depth):
            base = register.entry_address(index)
            value = copies.get(register.name)
            if value is None:
                value = self._value(register, index)
            with m.Case(base):
                m.d.comb += word.eq(value[:WORD_BITS])
                if n > 1:
                    m.d.comb += [load.eq(1), wide_value.eq(value)]
            shadow_reads.update((base + k, k) for k in range(1, n))

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        wide = [r.words for r in self.map if r.words > 1 and r.readable] or [1]
        shadow = Signal(max(wide) * WORD_BITS)
        staged = [r.words for r in self.map if r.words > 1 and r.writable] or [2]
        staging = Signal((max(staged) - 1) * WORD_BITS)

        for register in self.map:
            if register.kind == "strobe":
                m.d.sync += getattr(self, register.port).eq(0)

        # Counter snapshots: one copy per counter, loaded together.
        copies, take = {}, {}
        for register in self.map:
            if register.kind == "snapshot":
                take[register.name] = Signal(name=register.name.replace(".", "_") + "_take")
        for register in self.map:
            if register.snapshot:
                copy = copies[register.name] = Signal(register.width,
                                                      name=register.name.replace(".", "_"))
                with m.If(take[register.snapshot]):
                    m.d.sync += copy.eq(self._value(register, 0))

        # Reads are gathered per block, next to the block's registers; only one 32-bit word
        # (and one shadow load) per block travels to the bank. The gathers are kept wires so
        # synthesis cannot fold them into one chip-wide multiplexer: on the ECPIX-5 that single
        # gather was the most congested region of the routing.
        shadow_reads, word_reads, shadow_loads, loads = {}, [], [], []
        for block, registers in self._read_groups():
            word = Signal(WORD_BITS, name=f"{block}_read", attrs={"keep": 1})
            loaded = [r.words * WORD_BITS for r in registers if r.kind == "fifo" or r.words > 1]
            wide_value = Signal(max(loaded, default=0), name=f"{block}_shadow_load",
                                attrs={"keep": 1})
            load = Signal(name=f"{block}_load", attrs={"keep": 1})
            with m.If(bus.r_stb):
                with m.Switch(bus.addr):
                    for register in registers:
                        self._read_cases(m, register, copies, word, wide_value, load,
                                         shadow_reads)
            word_reads.append(word)
            if loaded:
                shadow_loads.append(wide_value)
                loads.append(load)
        with m.If(bus.r_stb):
            m.d.sync += bus.r_data.eq(or_all(word_reads))
            with m.Switch(bus.addr):
                for address, k in shadow_reads.items():
                    with m.Case(address):
                        m.d.sync += bus.r_data.eq(shadow[WORD_BITS * k:][:WORD_BITS])
            if loads:
                with m.If(or_all(loads)):
                    m.d.sync += shadow.eq(or_all(shadow_loads))

        with m.If(bus.w_stb):
            with m.Switch(bus.addr):
                for register in self.map:
                    if not register.writable:
                        continue
                    if register.kind == "snapshot":
                        with m.Case(register.address):
                            m.d.comb += take[register.name].eq(bus.w_data[0])
                        continue
                    n = register.words
                    for index in range(register.depth):
                        base = register.entry_address(index)
                        target = self._value(register, index)
                        for k in range(n - 1):
                            with m.Case(base + k):
                                m.d.sync += staging[WORD_BITS * k:][:WORD_BITS].eq(bus.w_data)
                        with m.Case(base + n - 1):
                            whole = Cat(staging[:WORD_BITS * (n - 1)], bus.w_data)
                            m.d.sync += target.eq(whole[:register.width])
        return m


def connect_bank(m, bank, register_map):
    """Connect every port of `bank` to the block port its register was declared on."""
    for bank_port, (block, port, flow, _, kind) in register_map.ports.items():
        ours, theirs = getattr(bank, bank_port), getattr(block.component, port)
        if kind == "fifo":
            wiring.connect(m, theirs, ours)
        elif flow == In:
            m.d.comb += theirs.eq(ours)
        else:
            m.d.comb += ours.eq(theirs)
