"""Unit tier: `ControlResponder` in Amaranth's simulator against the reference model.

Requests are encoded by the host codec (`tickwire.host.udp_control.encode`) inside frames built
by scapy; replies are parsed by scapy (IPv4 checksum checked) and compared byte for byte with
what `ControlEndpoint` (behind `ControlFrameModel`) answers on the same register contents."""

import struct

import pytest
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from tickwire.hdl.net.control import CONTROL_COUNTERS, ControlResponder
from tickwire.hdl.net.mac import mac_tx_signature
from tickwire.hdl.net.tx_arbiter import TxArbiter
from tickwire.host.udp_control import (
    HEADER,
    MAGIC,
    OPERATION,
    READ,
    VERSION,
    WRITE,
    Operation,
    decode,
    encode,
)
from tickwire.sim.control_run import (
    Board,
    Frame,
    check_reply,
    model_replies,
    request_frame,
    run_control,
)

BOARD = Board(mac=0x02AABBCCDDEE, ip=0x0A000002, port=7000, host_ip=0x0A000001,
              token=bytes.fromhex("00112233445566778899aabbccddeeff"))
ADDRESS_WIDTH = 10
WORDS = {a: (a * 0x9E3779B1) & 0xFFFFFFFF for a in range(0, 1 << ADDRESS_WIDTH, 7)}


def responder(board=BOARD, address_width=ADDRESS_WIDTH):
    return ControlResponder(address_width, mac=board.mac, ip=board.ip, port=board.port,
                            host_ip=board.host_ip, token=board.token)


def request(request_id, operations, board=BOARD, **frame):
    return request_frame(encode(request_id, operations, board.token), board, **frame)


def compare(frames, *, board=BOARD, words=WORDS, ready=1.0, seed=0, config=None,
            model_board=None):
    """Run `frames` through the gateware and the model; everything observable must agree."""
    expected, bus, counters = model_replies(frames, model_board or board, words, ADDRESS_WIDTH)
    run = run_control(responder(board), frames, words, ready=ready, seed=seed, config=config)
    assert len(run.replies) == len(expected), (run.counters, counters)
    for frame, reply in zip(run.replies, expected, strict=True):
        check_reply(frame, reply, model_board or board)
    assert run.writes == bus.writes
    assert run.words == bus.words
    assert {k: v for k, v in run.counters.items() if k != "busy"} == counters
    assert run.counters["busy"] == 0
    return run


def test_counters_are_the_models_plus_busy():
    assert CONTROL_COUNTERS[:-1] == tuple(model_replies([], BOARD, {}, 1)[2])
    assert CONTROL_COUNTERS[-1] == "busy"


def test_reads_and_writes_run_in_order_and_replies_match_the_model():
    ops = [Operation(WRITE, 5, 0x12345678), Operation(READ, 5), Operation(READ, 14),
           Operation(WRITE, 5, 1), Operation(READ, 5), Operation(READ, 999)]
    run = compare([Frame(request(1, ops), wait_replies=1)])
    _, token, records = decode(run.replies[0][42:])
    assert token == bytes(16)
    assert [r.data for r in records] == [0x12345678, 0x12345678, WORDS[14], 1, 1, 0]


@pytest.mark.parametrize("count", [1, 2, 63, 64])
def test_every_operation_count(count):
    ops = [Operation(READ if i % 3 else WRITE, (37 * i) % (1 << ADDRESS_WIDTH), i * 1000)
           for i in range(count)]
    compare([Frame(request(7, ops), wait_replies=1)])


@pytest.mark.parametrize("vlan, options", [(None, 0), (None, 1), (0x2005, 0), (0xE123, 3),
                                           (7, 10)])
def test_vlan_tags_and_ip_options(vlan, options):
    """A tagged request is answered with the same tag; IPv4 options are skipped."""
    frames = [Frame(request(3, [Operation(WRITE, 9, 99), Operation(READ, 9)], vlan=vlan,
                            options=options), wait_replies=1)]
    compare(frames)


def test_addresses_beyond_the_bus_read_zero_and_are_not_written():
    ops = [Operation(WRITE, 1 << ADDRESS_WIDTH, 5), Operation(WRITE, 0xFFFFFF, 6),
           Operation(READ, (1 << ADDRESS_WIDTH) + 14), Operation(READ, 14)]
    run = compare([Frame(request(2, ops), wait_replies=1)])
    assert run.writes == []


def test_retransmission_is_answered_from_the_saved_reply_without_running_again():
    ops = [Operation(WRITE, 3, 10), Operation(READ, 3)]
    first = request(5, ops)
    frames = [Frame(first, wait_replies=1),
              Frame(request(6, [Operation(WRITE, 3, 11)]), wait_replies=2),
              Frame(request(6, [Operation(WRITE, 3, 12), Operation(READ, 3)]), wait_replies=3),
              Frame(first, idle_after=40)]       # stale now: replayed
    run = compare(frames)
    assert run.counters["retransmitted"] == 1 and run.counters["replayed"] == 1
    assert run.writes == [(3, 10), (3, 11)]


def test_first_request_id_zero_is_replayed():
    compare([Frame(request(0, [Operation(READ, 1)]), idle_after=40)])


def _raw(request_id, ops, token=BOARD.token, count=None, magic=MAGIC, version=VERSION):
    body = b"".join(OPERATION.pack(op, address.to_bytes(3, "big"), data)
                    for op, address, data in ops)
    return HEADER.pack(magic, version, len(ops) if count is None else count, request_id,
                       token) + body


ATTACKS = {
    "wrong token": lambda: request_frame(encode(9, [Operation(WRITE, 1, 1)], bytes(16)), BOARD),
    "token off by one bit": lambda: request_frame(
        encode(9, [Operation(WRITE, 1, 1)], BOARD.token[:15] + bytes([BOARD.token[15] ^ 1])),
        BOARD),
    "wrong source": lambda: request(9, [Operation(WRITE, 1, 1)], src_ip=0x0A000003),
    "another IP": lambda: request(9, [Operation(WRITE, 1, 1)], dst_ip=0x0A000003),
    "another port": lambda: request(9, [Operation(WRITE, 1, 1)], dst_port=7001),
    "another MAC": lambda: request(9, [Operation(WRITE, 1, 1)], dst_mac=0x02AABBCCDDEF),
    "broadcast": lambda: request(9, [Operation(WRITE, 1, 1)], dst_mac=0xFFFFFFFFFFFF),
    "wrong magic": lambda: request_frame(_raw(9, [(WRITE, 1, 1)], magic=0x5458), BOARD),
    "wrong version": lambda: request_frame(_raw(9, [(WRITE, 1, 1)], version=2), BOARD),
    "count 0": lambda: request_frame(_raw(9, [], count=0), BOARD),
    "count 65": lambda: request_frame(_raw(9, [(READ, 1, 0)] * 65), BOARD),
    "count above the operations": lambda: request_frame(_raw(9, [(READ, 1, 0)] * 3, count=4),
                                                        BOARD),
    "count below the operations": lambda: request_frame(_raw(9, [(READ, 1, 0)] * 3, count=2),
                                                        BOARD),
    "unknown op": lambda: request_frame(_raw(9, [(READ, 1, 0), (3, 1, 0)]), BOARD),
    "reply op": lambda: request_frame(_raw(9, [(READ | 0x80, 1, 0)]), BOARD),
    "truncated payload": lambda: request_frame(encode(9, [Operation(WRITE, 1, 1)],
                                                      BOARD.token)[:30], BOARD),
    "empty payload": lambda: request_frame(b"", BOARD),
    "garbage": lambda: request_frame(bytes(range(7, 250, 3)), BOARD),
    "IPv4 checksum": lambda: request(9, [Operation(WRITE, 1, 1)], ip_checksum=0x1234),
    "fragment": lambda: request(9, [Operation(WRITE, 1, 1)], flags=1),
    "fragment offset": lambda: request(9, [Operation(WRITE, 1, 1)], frag=3),
    "UDP length beyond IP": lambda: request(9, [Operation(WRITE, 1, 1)], udp_length=52),
    "UDP length short": lambda: request(9, [Operation(WRITE, 1, 1)], udp_length=43),
    "IP length below UDP length": lambda: request(
        9, [Operation(WRITE, 1, 1), Operation(READ, 1)], total_length=20 + 8 + 36),
    "IP length beyond frame": lambda: request(9, [Operation(WRITE, 1, 1)], total_length=73),
    "frame cut short": lambda: request(9, [Operation(WRITE, 1, 1), Operation(READ, 2)])[:-5],
    "runt": lambda: request(9, [Operation(WRITE, 1, 1)])[:20],
    "not IPv4": lambda: bytes.fromhex("02aabbccddee020000000001") + b"\x86\xdd" + bytes(80),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attacks_are_dropped_and_counted_as_the_model_counts_them(attack):
    frame = ATTACKS[attack]()
    ok = [Operation(WRITE, 2, 0xAB), Operation(READ, 2)]
    frames = [Frame(frame, idle_after=30),
              Frame(request(10, ok), wait_replies=1)]     # the board still answers after it
    run = compare(frames)
    assert run.writes == [(2, 0xAB)]


def test_trailing_bytes_after_the_udp_length_are_ignored():
    """UDP length below the IP payload (and Ethernet trailer): the UDP length decides."""
    ops = [Operation(WRITE, 4, 4)]
    frame = request(11, ops, total_length=20 + 8 + 36 + 6, trailer=bytes(6))
    compare([Frame(frame, wait_replies=1)])


def test_bad_fcs_is_ignored_without_counting():
    frames = [Frame(request(12, [Operation(WRITE, 1, 1)]), bad=True, idle_after=40),
              Frame(request(12, [Operation(WRITE, 1, 2)]), wait_replies=1)]
    run = compare(frames)
    assert run.writes == [(1, 2)]
    assert sum(run.counters.values()) == 1


def test_back_to_back_requests_are_all_served():
    frames = [Frame(request(20 + i, [Operation(WRITE, i, i), Operation(READ, i)]))
              for i in range(2)]
    frames.append(Frame(request(30, [Operation(READ, 0), Operation(READ, 1)]), idle_after=300))
    compare(frames[:2], ready=0.5)
    compare([frames[0], Frame(frames[0].data, wait_replies=2)])   # a retransmission at once


def test_a_third_request_while_two_are_buffered_is_counted_busy():
    """tx held off: the first request's reply waits, the second waits in the other slot, the
    third finds no buffer: dropped, counted `busy`, and nothing else is disturbed."""
    frames = [Frame(request(40 + i, [Operation(WRITE, 8 + i, i + 1)] * (1 + 20 * i)))
              for i in range(3)]
    frames[-1] = frames[-1]._replace(idle_after=200)
    expected, bus, counters = model_replies(frames[:2], BOARD, WORDS, ADDRESS_WIDTH)
    run = run_control(responder(), frames, WORDS, ready=lambda cycle: cycle > 400)
    assert len(run.replies) == 2
    for frame, reply in zip(run.replies, expected, strict=True):
        check_reply(frame, reply, BOARD)
    assert run.writes == bus.writes
    assert run.counters == counters | {"busy": 1}


def test_configuration_ports_override_the_build_and_a_new_token_loads():
    other = Board(mac=0x021111111111, ip=0xC0A80102, port=9999, host_ip=0xC0A80101,
                  token=bytes(range(100, 116)))
    config = {"board_mac": other.mac, "board_ip": other.ip, "control_port": other.port,
              "host_ip": other.host_ip, "token": int.from_bytes(other.token, "big")}
    ops = [Operation(WRITE, 1, 5), Operation(READ, 1)]
    frames = [Frame(request(1, ops, board=BOARD), idle_after=40),    # the build's: not any more
              Frame(request(2, ops, board=other), wait_replies=1)]
    compare(frames, config=config, model_board=other)


@pytest.mark.parametrize("board_ip, host_ip", [(0xFFFFFFFE, 0xFFFFFFFD), (0xFEFF80FF, 0xFF7FFFFF),
                                               (0x00000001, 0x00010000),
                                               (0xFFFF0000, 0x3AAF0000)])  # two folds
def test_reply_checksum_with_carries(board_ip, host_ip):
    board = BOARD._replace(ip=board_ip, host_ip=host_ip)
    frames = [Frame(request(1 + i, [Operation(READ, 2)] * count, board=board),
                    wait_replies=1 + i) for i, count in enumerate((1, 17, 64))]
    compare(frames, board=board)


def test_latency_is_operations_plus_15_cycles():
    for count in (1, 9, 64):
        ops = [Operation(READ, i) for i in range(count)]
        frames = [Frame(request(1, ops), wait_replies=1), Frame(request(1, ops),
                                                                wait_replies=2)]
        run = run_control(responder(), frames, WORDS)
        assert run.latencies == [count + 15, 11], count


def test_frames_for_the_feed_between_requests_change_nothing():
    from tickwire.sim.frames import udp_frame
    feed = udp_frame(b"x" * 200, dst_ip=0xE9363701, dst_port=26400)
    frames = [Frame(feed), Frame(request(3, [Operation(WRITE, 6, 6)])), Frame(feed),
              Frame(feed, wait_replies=1)]
    compare(frames)


def test_struct_reply_header_matches_the_codec():
    run = compare([Frame(request(0x0102030405060708, [Operation(READ, 1)]), wait_replies=1)])
    magic, version, count, request_id, token = HEADER.unpack_from(run.replies[0][42:])
    assert (magic, version, count, request_id, token) == (MAGIC, VERSION, 1,
                                                           0x0102030405060708, bytes(16))
    assert struct.calcsize(">HBBQ16s") == 28


class _OrderSource(wiring.Component):
    """Stands in for the order encoder: `frames` frames of `beats` beats (bytes 0xA5, then
    its number and beat index), one every `every` cycles, each frame's beats consecutive."""

    tx: Out(mac_tx_signature())

    def __init__(self, beats=6, every=23, frames=40):
        self.beats, self.every, self.frames = beats, every, frames
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        timer, beat, frame = Signal(range(self.every)), Signal(8), Signal(16)
        m.d.sync += timer.eq(Mux(timer == self.every - 1, 0, timer + 1))
        with m.If((timer == 0) & (frame < self.frames)):
            m.d.sync += self.tx.valid.eq(1)
        m.d.comb += [self.tx.p.data.eq(Cat(Const(0xA5, 8), frame, beat)),
                     self.tx.p.keep.eq(0xFF), self.tx.p.first.eq(beat == 0),
                     self.tx.p.last.eq(beat == self.beats - 1)]
        with m.If(self.tx.valid & self.tx.ready):
            m.d.sync += beat.eq(Mux(self.tx.p.last, 0, beat + 1))
            with m.If(self.tx.p.last):
                m.d.sync += [self.tx.valid.eq(0), frame.eq(frame + 1)]
        return m


class _ResponderBehindArbiter(wiring.Component):
    def __init__(self):
        self.control = responder()
        self.orders = _OrderSource()
        super().__init__({name: member for name, member in
                          self.control.signature.members.items()})

    def elaborate(self, platform):
        m = Module()
        m.submodules.control = control = self.control
        m.submodules.orders = orders = self.orders
        m.submodules.arbiter = arbiter = TxArbiter(2)
        wiring.connect(m, orders.tx, arbiter.i0)
        wiring.connect(m, control.tx, arbiter.i1)
        wiring.connect(m, arbiter.out, wiring.flipped(self.tx))
        wiring.connect(m, wiring.flipped(self.rx), control.rx)
        wiring.connect(m, control.bus, wiring.flipped(self.bus))
        for name in ("board_mac", "board_ip", "control_port", "host_ip", "token"):
            m.d.comb += getattr(control, name).eq(getattr(self, name))
        m.d.comb += self.counters.eq(control.counters)
        return m


def test_replies_share_the_mac_with_order_frames_through_the_arbiter():
    frames = [Frame(request(1 + i, [Operation(WRITE, i, i), Operation(READ, i)] * (1 + 9 * i)),
                    idle_after=400 if i % 2 else 0)          # pairs back to back
              for i in range(4)]
    frames[-1] = frames[-1]._replace(idle_after=600)
    expected, bus, counters = model_replies(frames, BOARD, WORDS, ADDRESS_WIDTH)
    run = run_control(_ResponderBehindArbiter(), frames, WORDS, ready=0.7, seed=3)
    orders = [f for f in run.replies if f[0] == 0xA5]
    replies = [f for f in run.replies if f[0] != 0xA5]
    assert len(orders) == 40
    for k, f in enumerate(orders):      # every order frame whole and in order
        assert f == b"".join(bytes([0xA5]) + k.to_bytes(2, "little") + bytes([b]) + bytes(4)
                             for b in range(6))
    assert len(replies) == len(expected) == 4
    for frame, reply in zip(replies, expected, strict=True):
        check_reply(frame, reply, BOARD)
    assert run.writes == bus.writes
    assert run.counters == counters | {"busy": 0}
