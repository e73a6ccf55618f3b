"""The register bank gateware in Amaranth's simulator, against a model of its bus protocol."""

from collections import deque

from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwire.hdl.platform.device import describe_only
from tickwire.hdl.platform.registers import (
    Block,
    Config,
    Constant,
    Counters,
    Fifo,
    RegisterBank,
    RegisterMap,
    Status,
    Strobe,
)

ENTRY = data.StructLayout({"a": unsigned(20), "b": unsigned(30)})       # 50 bits: 2 words


class Toy(wiring.Component):
    """Stands for any block: one port of every kind a register can be declared on."""

    def __init__(self):
        super().__init__({
            "mode": In(12),
            "table": In(data.ArrayLayout(ENTRY, 3)),
            "kick": In(4),
            "wide": Out(70),                                              # 3 words
            "counters": Out(data.StructLayout({"x": unsigned(32),
                                               "group": data.StructLayout({"y": unsigned(32)})})),
            "queue": Out(stream.Signature(40)),                           # 2 words
        })

    def elaborate(self, platform):
        raise NotImplementedError


TOY_REGISTERS = (Constant("slots", "a build parameter", value=0xC0FFEE), Config("mode"),
                 Config("table"), Strobe("kick"), Status("wide"), Counters("counters"),
                 Fifo("queue", overflow="counters.x"))


def toy_map():
    return RegisterMap([Block("toy", describe_only(Toy()), TOY_REGISTERS)])


class BankModel:
    """The bus protocol of `tickwire.hdl.platform.registers`, written from its docstring."""

    def __init__(self, register_map, identity):
        self.map, self.identity = register_map, identity
        self.config = {r.name: [0] * r.depth for r in register_map if r.kind == "config"}
        self.inputs = {"toy.wide": 0, "toy.counters.x": 0, "toy.counters.group.y": 0}
        self.copies = {"toy.counters.x": 0, "toy.counters.group.y": 0}   # counter snapshot
        self.queue = deque()
        self.shadow = 0
        self.staging = {}
        self.strobe = 0

    def value(self, register, index):
        if register.name == "id.identity":
            return self.identity
        if register.kind == "constant":
            return register.value
        if register.kind == "config":
            return self.config[register.name][index]
        if register.snapshot:
            return self.copies[register.name]
        return self.inputs[register.name]

    def read(self, address):
        located = self.map.locate(address)
        if located is None or not located[0].readable:
            return 0
        register, index, word = located
        if register.kind == "fifo":
            if index == -1:
                if not self.queue:
                    return 0
                self.shadow = self.queue.popleft()
                return 1
            return (self.shadow >> 32 * word) & 0xFFFFFFFF
        if word == 0:
            value = self.value(register, index)
            if register.words > 1:
                self.shadow = value
            return value & 0xFFFFFFFF
        return (self.shadow >> 32 * word) & 0xFFFFFFFF

    def write(self, address, value):
        self.strobe = 0
        located = self.map.locate(address)
        if located is None or not located[0].writable:
            return
        register, index, word = located
        if register.kind == "strobe":
            self.strobe = value & ((1 << register.width) - 1)
            return
        if register.kind == "snapshot":
            if value & 1:
                self.copies = {name: self.inputs[name] for name in self.copies}
            return
        if word < register.words - 1:
            self.staging[word] = value
            return
        whole = sum(self.staging.get(k, 0) << 32 * k for k in range(word)) | value << 32 * word
        self.config[register.name][index] = whole & ((1 << register.width) - 1)


def run_bank(operations, identity=0x0123456789ABCDEF):
    """Apply operations to the bank in simulation and to the model; return both transcripts."""
    register_map = toy_map()
    bank = RegisterBank(register_map, identity)
    model = BankModel(register_map, identity)
    seen, expected = [], []

    async def testbench(ctx):
        queue = deque()
        for op in operations:
            kind = op[0]
            if kind == "set":
                _, wide, x, y = op
                ctx.set(bank.toy__wide, wide)
                ctx.set(bank.toy__counters.as_value(), x | y << 32)
                model.inputs.update({"toy.wide": wide, "toy.counters.x": x,
                                     "toy.counters.group.y": y})
                continue
            if kind == "push":
                queue.append(op[1])
                model.queue.append(op[1])
                continue
            ctx.set(bank.toy__queue.valid, bool(queue))
            ctx.set(bank.toy__queue.payload, queue[0] if queue else 0)
            ctx.set(bank.bus.addr, op[1])
            if kind == "read":
                ctx.set(bank.bus.r_stb, 1)
            else:
                ctx.set(bank.bus.w_stb, 1)
                ctx.set(bank.bus.w_data, op[2])
            popped = ctx.get(bank.toy__queue.ready) and queue
            await ctx.tick()
            if popped:
                queue.popleft()
            ctx.set(bank.bus.r_stb, 0)
            ctx.set(bank.bus.w_stb, 0)
            if kind == "read":
                seen.append(("read", op[1], ctx.get(bank.bus.r_data)))
                expected.append(("read", op[1], model.read(op[1])))
            else:
                model.write(op[1], op[2])
                seen.append(("strobe", ctx.get(bank.toy__kick)))
                expected.append(("strobe", model.strobe))
        seen.append(("mode", ctx.get(bank.toy__mode)))
        seen.append(("table", ctx.get(bank.toy__table.as_value())))
        expected.append(("mode", model.config["toy.mode"][0]))
        expected.append(("table", sum(v << 50 * i for i, v in
                                      enumerate(model.config["toy.table"]))))

    sim = Simulator(bank)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return seen, expected, register_map


def test_map_of_every_kind():
    register_map = toy_map()
    names = [r.name for r in register_map]
    assert names == ["id.magic", "id.identity", "toy.slots", "toy.mode", "toy.table",
                     "toy.kick", "toy.wide", "toy.counters.snapshot", "toy.counters.x",
                     "toy.counters.group.y", "toy.queue"]
    assert register_map["toy.counters.x"].snapshot == "toy.counters.snapshot"
    spans = [(r.address, r.span) for r in register_map]
    assert all(a + s == b for (a, s), (b, _) in zip(spans, spans[1:], strict=False))
    assert register_map["toy.table"].span == 6 and register_map["toy.queue"].span == 3
    assert register_map["toy.queue"].overflow == "toy.counters.x"


def test_wide_read_is_latched_on_its_first_word():
    m = toy_map()
    wide = m["toy.wide"].address
    first, second = (1 << 69) | (5 << 32) | 7, (1 << 68) | (9 << 32) | 3
    ops = [("set", first, 0, 0), ("read", wide), ("set", second, 0, 0), ("read", wide + 1),
           ("read", wide + 2), ("read", wide), ("read", wide + 1), ("read", wide + 2)]
    seen, expected, _ = run_bank(ops)
    assert seen == expected
    reads = [value for kind, *rest in seen if kind == "read" for value in rest[1:]]
    assert reads[:3] == [7, 5, 1 << 5]      # the first value, whole, though it changed
    assert reads[3:] == [3, 9, 1 << 4]


def test_table_entry_commits_on_its_last_word_and_read_only_writes_are_ignored():
    m = toy_map()
    entry = m["toy.table"].entry_address(1)
    value = (0x2AAAAAAA << 20) | 0x12345
    ops = [("write", entry, value & 0xFFFFFFFF), ("read", entry),
           ("write", entry + 1, value >> 32), ("read", entry), ("read", entry + 1),
           ("write", m["toy.wide"].address, 0xFFFFFFFF),
           ("write", m["toy.counters.x"].address, 1), ("write", m["id.magic"].address, 1),
           ("read", m["id.magic"].address)]
    seen, expected, _ = run_bank(ops)
    assert seen == expected
    assert ("read", entry, 0) in seen                 # not committed after its first word
    assert seen[-1] == ("table", value << 50)
    assert ("read", m["id.magic"].address, 0x5457524D) in seen


def test_counters_read_from_a_snapshot_taken_in_one_cycle():
    m = toy_map()
    snap, x, y = (m[name].address for name in ("toy.counters.snapshot", "toy.counters.x",
                                               "toy.counters.group.y"))
    ops = [("set", 0, 5, 6), ("read", x), ("write", snap, 1), ("set", 0, 7, 8), ("read", x),
           ("read", y), ("write", snap, 0), ("read", y), ("write", snap, 1), ("read", x),
           ("read", y)]
    seen, expected, _ = run_bank(ops)
    assert seen == expected
    reads = [value for kind, _, value in (s for s in seen if s[0] == "read")]
    assert reads == [0, 5, 6, 6, 7, 8]    # before any snapshot 0; then the copy, not live


def test_strobe_pulses_for_one_cycle():
    m = toy_map()
    kick = m["toy.kick"].address
    seen, expected, _ = run_bank([("write", kick, 5), ("write", m["toy.mode"].address, 3)])
    assert seen == expected
    assert seen[:2] == [("strobe", 5), ("strobe", 0)]


def test_fifo_pops_into_the_latch():
    m = toy_map()
    pop, data_word = m["toy.queue"].address, m["toy.queue"].entry_address(0)
    ops = [("read", pop), ("push", (0xAB << 32) | 0x11), ("push", 0x22), ("read", pop),
           ("read", data_word), ("read", data_word + 1), ("read", pop), ("read", data_word),
           ("read", pop)]
    seen, expected, _ = run_bank(ops)
    assert seen == expected
    reads = [value for kind, _, value in (s for s in seen if s[0] == "read")]
    assert reads == [0, 1, 0x11, 0xAB, 1, 0x22, 0]


@st.composite
def operations(draw):
    register_map = toy_map()
    addresses = st.integers(0, register_map.size + 3)
    word = st.integers(0, 0xFFFFFFFF)
    op = st.one_of(
        st.tuples(st.just("read"), addresses),
        st.tuples(st.just("write"), addresses, word),
        st.tuples(st.just("set"), st.integers(0, (1 << 70) - 1), word, word),
        st.tuples(st.just("push"), st.integers(0, (1 << 40) - 1)))
    return draw(st.lists(op, max_size=40))


@settings(max_examples=100)
@given(operations())
def test_decoding_and_multiword_accesses_match_the_protocol(ops):
    seen, expected, _ = run_bank(ops)
    assert seen == expected


@given(st.integers(0, 200))
def test_every_address_locates_one_register_word(address):
    register_map = toy_map()
    located = register_map.locate(address)
    if address >= register_map.size:
        assert located is None
        return
    register, index, word = located
    if index == -1:
        assert register.kind == "fifo" and address == register.address
    else:
        assert register.entry_address(index) + word == address
        assert 0 <= word < register.words


def test_build_parameters_read_back_as_constants():
    m = toy_map()
    seen, expected, _ = run_bank([("read", m["toy.slots"].address)])
    assert seen[0] == expected[0] == ("read", m["toy.slots"].address, 0xC0FFEE)
