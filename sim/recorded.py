"""Recorded market data through the gateware: readers for pcap, Nasdaq ITCH 5.0 daily files and
LOBSTER, and the replay that drives the Verilated feed handler and order book with them.

Every reader returns a `Recording`: the ITCH 5.0 messages to replay as one block of
(2-byte length, message) blocks (the daily file's own layout, which is also MoldUDP64's), the
symbol directory, and, for LOBSTER, the file's own top of book after each of its messages.

`replay` packs the messages into MoldUDP64 packets (sequence number = message index + 1) on
the default feed's line A, configures `ReplayDevice` through the host's own code (feed
filters, ``[[symbol]]`` subscriptions, parsed and validated by `tickwire.host.config`) and
clocks it over the frames in batches (C++ clocks each batch; no Python per cycle). The top of
book it reports is the gateware's own BookUpdate stream, brought out of the device.
"""

import asyncio
import bisect
import csv
import functools
import gzip
import inspect
import itertools
import re
import struct
from array import array
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

from amaranth.hdl import Module, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.book.records import BookParameters
from tickwire.hdl.net.mac import MacBeat, mac_rx_signature
from tickwire.hdl.platform.registers import bus_signature

from . import itch
from . import moldudp64 as mold
from .scenario import FEED_GROUP_A, FEED_PORT, default_filters
from .toolchain import cache_dir, digest, locked
from .verilated import HarnessBus, StreamHarness

#: The replay build: the default book (16,384 orders, 10 stored levels, 8 visible) with 16
#: symbol slots and every locate a Nasdaq file can name.
REPLAY_BOOK = BookParameters(symbols=16, locates=16384)
SESSION = b"REPLAY0001"
MAX_PAYLOAD = 1400
#: Idle cycles between frames: about a 10G link's preamble and inter-frame gap (20 bytes),
#: so messages arrive no faster than a line delivers them (the book has no back-pressure).
IDLE_AFTER_FRAME = 4


class ReplayError(ValueError):
    """A recorded file that cannot be replayed, with the reason."""


# The gateware ---------------------------------------------------------------------------------

#: What the replay device brings out of each BookUpdate, every field on 32-bit words so that
#: the batch output can be read column by column.
BBO_LAYOUT = data.StructLayout({"sequence": unsigned(64), "locate": unsigned(32),
                                "bid_price": unsigned(32), "bid_shares": unsigned(32),
                                "ask_price": unsigned(32), "ask_shares": unsigned(32)})
BBO_WORDS = BBO_LAYOUT.size // 32


class ReplayDevice(wiring.Component):
    """The device's feed handler and order book behind a register bank of those two blocks
    (the same components, register names and host code as `TickToTrade`; strategies, risk and
    order encoder, which never change a book, are left out so that each cycle costs half as
    much to simulate), with the book's BookUpdate stream brought out.

    Ports
    -----
    rx : In(MacBeat stream, always ready), bus : In(register bus)
    bbo : Out(`BBO_LAYOUT` stream, always ready): per BookUpdate, its MoldUDP64 sequence
        number, locate and both sides' best price and size
    """

    def __init__(self, book, identity):
        from tickwire.hdl.book.control import BookControl
        from tickwire.hdl.feed.handler import FeedHandler
        from tickwire.hdl.platform.registers import Block, RegisterBank, RegisterMap

        self.feed, self.book = FeedHandler(), BookControl(book)
        self.register_map = RegisterMap([Block("feed", self.feed, self.feed.registers),
                                         Block("book", self.book, self.book.registers)])
        self.bank = RegisterBank(self.register_map, identity)
        super().__init__({"rx": In(mac_rx_signature()),
                          "bus": In(bus_signature(self.register_map.address_width)),
                          "bbo": Out(stream.Signature(BBO_LAYOUT, always_ready=True))})

    def elaborate(self, platform):
        from tickwire.hdl.platform.registers import connect_bank

        m = Module()
        feed, book = self.feed, self.book
        m.submodules.feed, m.submodules.book, m.submodules.bank = feed, book, self.bank
        wiring.connect(m, wiring.flipped(self.rx), feed.rx)
        wiring.connect(m, wiring.flipped(self.bus), self.bank.bus)
        connect_bank(m, self.bank, self.register_map)
        m.d.comb += [book.events.valid.eq(feed.events.valid),
                     book.events.payload.eq(feed.events.payload),
                     book.updates.ready.eq(1), self.bbo.valid.eq(book.updates.valid)]
        for name in ("sequence", "locate", "bid_price", "bid_shares", "ask_price",
                     "ask_shares"):
            m.d.comb += getattr(self.bbo.payload, name).eq(getattr(book.updates.payload, name))
        return m


def _device_verilog(book):
    """(the replay device, its Verilog), converted once per gateware source and build."""
    from tickwire.hdl.platform.device import describe_only, design_identity
    from tickwire.hdl.platform.export import to_verilog

    identity = design_identity(book=book, replay="feed+book")
    device = ReplayDevice(book, identity)
    key = digest(identity, inspect.getsource(ReplayDevice))
    folder = cache_dir("verilog", f"replay-{key}")
    source = folder / "tickwire_replay.v"
    with locked(folder):
        if not source.exists():
            source.write_text(to_verilog(device, "tickwire_replay"))
        else:
            describe_only(device)
    return device, source.read_text()


#: The training run of the replay model's profile-guided build: a generated session, not the
#: benchmark's (another seed, other symbols), replayed as `replay` does.
TRAINING_MESSAGES = 100_000


class ReplayTop(HarnessBus):
    """The `ReplayDevice` Verilated with the batch harness; a transport for
    `tickwire.host.device.Device` (register bus), and a batch runner for frames.

    The model is built for speed: the frames and reset reach the device through a register
    (`StreamHarness` ``register_inputs``) and GCC compiles it with the profile of a training
    replay (``profile``)."""

    def __init__(self, book=REPLAY_BOOK):
        self.device, verilog = _device_verilog(book)
        self.register_map = self.device.register_map
        self.identity = self.device.bank.identity
        self.bbo = array("I")
        self.cycles = 0
        self.harness = StreamHarness(self.device, "tickwire_replay", "rx", ["bbo"],
                                     verilog=verilog, register_inputs=True,
                                     profile=self._train)

    def _train(self, harness):
        from .scenario import order_flow

        self.harness = harness
        recording = read_itch(_blocks(order_flow(TRAINING_MESSAGES, seed=5)))
        replay(recording, resolve(recording, ("NVDA", "TSLA", "GOOG")), top=self)

    def power_on(self):
        """A new model instance: registers reset, memories at their initial contents."""
        self.harness.power_on()
        self.bbo, self.cycles = array("I"), 0

    def _collect_idle(self, outputs):
        (bbo,) = outputs
        for value, _ in bbo:
            self.bbo.extend((value >> (32 * i)) & 0xFFFFFFFF for i in range(BBO_WORDS))

    def idle(self, cycles=1):
        self._collect_idle(self.harness.run([None] * cycles))

    def __str__(self):
        return "verilated feed handler and order book (replay)"

    @staticmethod
    def beats(frames, idle_after=IDLE_AFTER_FRAME, drain=64):
        """What `clock` takes to clock `frames` (bytes, no FCS) in back to back with `idle_after`
        idle cycles after each, then `drain` idle cycles: (valid, words), built with strided
        copies, not a loop per cycle."""
        starts, total = [], 0
        for frame in frames:
            starts.append(total)
            total += -(-len(frame) // 8) + idle_after
        total += drain
        raw = bytearray(8 * total)
        valid = bytearray(total)
        control = array("I", [0]) * total
        at = {name: MacBeat.as_shape()[name].offset - 64 for name in ("keep", "first", "last")}
        for frame, start in zip(frames, starts, strict=True):
            beats = -(-len(frame) // 8)
            raw[8 * start:8 * start + len(frame)] = frame
            valid[start:start + beats] = b"\1" * beats
            control[start:start + beats] = array("I", [0xFF << at["keep"]]) * beats
            tail = len(frame) - 8 * (beats - 1)
            control[start] |= 1 << at["first"]
            control[start + beats - 1] = ((1 << tail) - 1) << at["keep"] | 1 << at["last"] \
                | (1 << at["first"] if beats == 1 else 0)
        halves = array("I")
        halves.frombytes(bytes(raw))
        words = array("I", [0]) * (3 * total)
        words[0::3], words[1::3], words[2::3] = halves[0::2], halves[1::2], control
        return valid, words

    def clock(self, valid, words):
        """One cycle per byte of `valid` (the input stream's valid; `words`, 3 per cycle, its
        payload) in one call into the model, which releases the GIL while it runs; BookUpdates
        are appended to `bbo` (BBO_WORDS words each)."""
        import ctypes

        h, n = self.harness, len(valid)
        out = (ctypes.c_uint32 * (n * BBO_WORDS))()
        stamps = (ctypes.c_uint64 * n)()
        out_ptrs = (ctypes.POINTER(ctypes.c_uint32) * 1)(
            ctypes.cast(out, ctypes.POINTER(ctypes.c_uint32)))
        stamp_ptrs = (ctypes.POINTER(ctypes.c_uint64) * 1)(
            ctypes.cast(stamps, ctypes.POINTER(ctypes.c_uint64)))
        counts, caps = (ctypes.c_uint64 * 1)(), (ctypes.c_uint64 * 1)(n)
        h.lib.tw_run.argtypes = [ctypes.c_void_p, ctypes.c_uint64,
                                 ctypes.POINTER(ctypes.c_uint8), ctypes.POINTER(ctypes.c_uint32),
                                 type(out_ptrs), type(stamp_ptrs), type(counts), type(caps)]
        done = h.lib.tw_run(h.model, n, (ctypes.c_uint8 * n).from_buffer(valid),
                            (ctypes.c_uint32 * len(words)).from_buffer(words),
                            out_ptrs, stamp_ptrs, counts, caps)
        if done != n:
            raise RuntimeError("output capacity exceeded")
        self.bbo.frombytes(ctypes.string_at(out, 4 * BBO_WORDS * counts[0]))
        self.cycles += n


# Readers --------------------------------------------------------------------------------------

class Recording(NamedTuple):
    kind: str           # "itch", "pcap" or "lobster"
    blocks: bytes       # the messages to replay, as (2-byte length, message) blocks
    offsets: array      # where each message's block starts in `blocks`
    directory: dict     # symbol -> stock locate, from the Stock Directory messages
    marks: list | None  # LOBSTER: per file message, the index of the last message it became
    book: list | None   # LOBSTER: per file message, (ask price, ask size, bid price, bid size)
    counts: dict        # what the reader saw and left out (pcap: frames, not_moldudp64, ...)

    @property
    def messages(self):
        """Messages of the file (what ``--bbo`` indexes)."""
        return len(self.marks) if self.marks is not None else len(self.offsets)

    def message(self, index):
        start = self.offsets[index]
        return self.blocks[start + 2:start + 2 + int.from_bytes(self.blocks[start:start + 2])]


def _scan_blocks(data, where):
    """(offsets, directory) of a run of (2-byte length, message) blocks; refuses a cut one."""
    offsets, directory, position, end = array("Q"), {}, 0, len(data)
    while position < end:
        if position + 2 > end:
            raise ReplayError(f"{where}: length prefix cut off at byte {position} "
                              f"(message {len(offsets)}): the file is truncated")
        length = data[position] << 8 | data[position + 1]
        if length == 0 or position + 2 + length > end:
            raise ReplayError(f"{where}: message {len(offsets)} at byte {position} declares "
                              f"{length} bytes, {end - position - 2} remain: the file is "
                              "truncated or not length-prefixed ITCH")
        if data[position + 2] == 0x52 and length == 39:           # R: Stock Directory
            name = bytes(data[position + 13:position + 21]).decode("ascii", "replace").rstrip()
            directory.setdefault(name, data[position + 3] << 8 | data[position + 4])
        offsets.append(position)
        position += 2 + length
    return offsets, directory


def _blocks(messages):
    return b"".join(len(m).to_bytes(2, "big") + m for m in messages)


def read_itch(data, where="ITCH file"):
    """A Nasdaq ITCH 5.0 daily file's contents (already decompressed)."""
    offsets, directory = _scan_blocks(data, where)
    return Recording("itch", bytes(data), offsets, directory, None, None, {})


PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",
              b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}
LINKTYPE_ETHERNET = 1


def _udp_payload(frame):
    """The UDP payload of an Ethernet II (optionally 802.1Q) / IPv4 / UDP frame, or None."""
    ethertype, ip = int.from_bytes(frame[12:14]), 14
    if ethertype == 0x8100:
        ethertype, ip = int.from_bytes(frame[16:18]), 18
    if ethertype != 0x0800 or len(frame) < ip + 20 or frame[ip] >> 4 != 4:
        return None
    header = 4 * (frame[ip] & 0xF)
    fragment = int.from_bytes(frame[ip + 6:ip + 8]) & 0x3FFF
    if frame[ip + 9] != 17 or fragment or len(frame) < ip + header + 8:
        return None
    udp = ip + header
    length = int.from_bytes(frame[udp + 4:udp + 6])
    if length < 8 or udp + length > len(frame):
        return None
    return frame[udp + 8:udp + length]


def read_pcap(data, where="pcap"):
    """A classic pcap of Ethernet frames carrying MoldUDP64: the first copy of every message
    (lines A and B, retransmissions), in sequence order per session (sessions in order of first
    appearance). Frames that are not IPv4/UDP/MoldUDP64 are skipped and counted."""
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        raise ReplayError(f"{where}: pcapng is not supported; convert it to pcap "
                          "(editcap -F pcap IN OUT)")
    order = PCAP_MAGIC.get(bytes(data[:4]))
    if order is None or len(data) < 24:
        raise ReplayError(f"{where}: not a pcap file")
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0xFFFF
    if linktype != LINKTYPE_ETHERNET:
        raise ReplayError(f"{where}: link type {linktype}, only Ethernet (1) is supported")
    sessions, position = {}, 24
    counts = {"frames": 0, "not_moldudp64": 0, "duplicates": 0}
    while position < len(data):
        if position + 16 > len(data):
            raise ReplayError(f"{where}: record header cut off at byte {position}: the file "
                              "is truncated")
        length = struct.unpack_from(order + "I", data, position + 8)[0]
        frame = data[position + 16:position + 16 + length]
        if len(frame) < length:
            raise ReplayError(f"{where}: frame at byte {position} cut off: the file is "
                              "truncated")
        position += 16 + length
        counts["frames"] += 1
        payload = _udp_payload(frame)
        try:
            packet = mold.decode_packet(payload) if payload is not None else None
        except ValueError:
            packet = None
        if packet is None:
            counts["not_moldudp64"] += 1
            continue
        stream_ = sessions.setdefault(packet.session, {})
        for k, message in enumerate(packet.messages):
            if packet.sequence + k in stream_:
                counts["duplicates"] += 1
            else:
                stream_[packet.sequence + k] = message
    messages = [stream_[s] for stream_ in sessions.values() for s in sorted(stream_)]
    counts["missing"] = sum(max(s) - min(s) + 1 - len(s) for s in sessions.values() if s)
    recording = read_itch(_blocks(messages), where)
    return recording._replace(kind="pcap", counts=counts)


LOBSTER_NAME = re.compile(r"^(?P<ticker>[^_]+)_.*_message_(?P<levels>\d+)\.csv$")
LOBSTER_EMPTY = 9_999_999_999        # the orderbook file's price of an empty level
BID, ASK = 0, 1
LOBSTER_LOCATE = 1


def _lobster_rows(path, columns):
    rows = []
    with open(path, newline="") as f:
        for number, row in enumerate(csv.reader(f), start=1):
            if len(row) < columns:
                raise ReplayError(f"{path}:{number}: {len(row)} columns, LOBSTER has {columns}")
            rows.append(row)
    return rows


def _lobster_book(row, levels):
    """{(side, price): size} of one orderbook row (ask price, ask size, bid price, bid size, per
    level), dummy levels left out."""
    out = {}
    for level in range(levels):
        for side, column in ((ASK, 4 * level), (BID, 4 * level + 2)):
            price, size = int(row[column]), int(row[column + 1])
            if size > 0 and abs(price) < LOBSTER_EMPTY:
                out[(side, price)] = size
    return out


def _top(book):
    asks = [p for s, p in book if s == ASK]
    bids = [p for s, p in book if s == BID]
    ask, bid = min(asks, default=None), max(bids, default=None)
    return (ask or 0, book.get((ASK, ask), 0), bid or 0, book.get((BID, bid), 0))


class _LobsterTranslator:
    """LOBSTER events as ITCH 5.0 messages on one locate. Orders that existed before the file
    (the book it starts with, and levels that a deletion deeper in the book reveals) become
    synthetic Add Orders; events on such unknown orders consume those synthetic orders."""

    def __init__(self, stock):
        self.stock = stock
        self.out = []
        self.orders = {}      # LOBSTER order id -> [ITCH reference, side, price, shares]
        self.synthetic = {}   # (side, price) -> [[ITCH reference, shares], ...]
        self.level = {}       # (side, price) -> shares on the book we sent
        self.next_ref = self.match = 1

    def emit(self, kind, **fields):
        self.out.append(itch.encode(kind, stock_locate=LOBSTER_LOCATE, timestamp=self.ns,
                                    **fields))

    def add(self, side, price, shares):
        ref, self.next_ref = self.next_ref, self.next_ref + 1
        self.emit(b"A", order_ref=ref, side=b"BS"[side:side + 1], shares=shares,
                  stock=self.stock, price=price)
        self.level[(side, price)] = self.level.get((side, price), 0) + shares
        return ref

    def reduce(self, ref, side, price, left, shares, execute):
        """Take `shares` of the `left` an order has: E (execution), X, or D when none stay."""
        if execute:
            self.emit(b"E", order_ref=ref, executed_shares=shares, match_number=self.match)
            self.match += 1
        elif shares < left:
            self.emit(b"X", order_ref=ref, cancelled_shares=shares)
        else:
            self.emit(b"D", order_ref=ref)
        self.level[(side, price)] -= shares

    def event(self, kind, order, size, price, side):
        if kind == 1:
            self.orders[order] = [self.add(side, price, size), side, price, size]
        elif kind in (2, 3, 4) and order in self.orders:
            ref, side, price, left = self.orders[order]
            shares = left if kind == 3 else min(size, left)
            self.reduce(ref, side, price, left, shares, kind == 4)
            self.orders[order][3] -= shares
            if self.orders[order][3] == 0:
                del self.orders[order]
        elif kind in (2, 3, 4):      # an order from before the file: its level's synthetic one
            queue = self.synthetic.get((side, price), [])
            while size and queue:
                take = min(size, queue[0][1])
                self.reduce(queue[0][0], side, price, queue[0][1], take, kind == 4)
                queue[0][1] -= take
                size -= take
                if queue[0][1] == 0:
                    queue.pop(0)
        elif kind == 5:
            self.emit(b"P", side=b"BS"[side:side + 1], shares=size, stock=self.stock,
                      price=price, match_number=self.match)
            self.match += 1
        elif kind == 6:
            self.emit(b"Q", shares=size, stock=self.stock, cross_price=max(price, 0),
                      match_number=self.match, cross_type=b"O")
            self.match += 1
        elif kind == 7:
            self.emit(b"H", stock=self.stock, trading_state={-1: b"H", 0: b"Q"}.get(price, b"T"))

    def materialise(self, book, shown=()):
        """Synthetic orders for what `book` shows beyond what the messages sent so far built,
        at the levels it reveals (those not `shown` before it): a level already shown that
        grows with no message to explain it is the file's inconsistency, not hidden depth."""
        for (side, price), size in book.items():
            if (side, price) in shown:
                continue
            missing = size - self.level.get((side, price), 0)
            if missing > 0:
                ref = self.add(side, price, missing)
                self.synthetic.setdefault((side, price), []).append([ref, missing])


def _before_first(book, kind, size, price, side, levels):
    """The book before the first message: the first orderbook row with that message undone."""
    book = dict(book)
    key = (side, price)
    if kind == 1 and key in book:
        book[key] -= size
        if book[key] <= 0:
            del book[key]
    elif kind in (2, 3, 4):
        shown = sorted((p for s, p in book if s == side), reverse=side == BID)
        inside = len(shown) < levels or (price <= shown[-1] if side == ASK else
                                          price >= shown[-1])
        if key in book or inside:
            book[key] = book.get(key, 0) + size
    return book


def read_lobster(message_path, orderbook_path=None, symbol=None):
    """A LOBSTER message file and its orderbook file (by default the file of the same name
    with ``orderbook`` for ``message``) as ITCH 5.0: a Stock Directory message, the book the
    file starts with as synthetic orders, then each event. `book` holds the orderbook file's
    top of book after each message; `marks` the last ITCH message of each."""
    message_path = Path(message_path)
    name = LOBSTER_NAME.match(message_path.name)
    if name is None:
        raise ReplayError(f"{message_path}: not a LOBSTER message file name "
                          "(TICKER_date_start_end_message_N.csv)")
    levels = int(name["levels"])
    orderbook_path = Path(orderbook_path or message_path.with_name(
        message_path.name.replace("_message_", "_orderbook_")))
    if not orderbook_path.exists():
        raise ReplayError(f"{message_path}: its orderbook file {orderbook_path} is missing")
    stock = (symbol or name["ticker"]).upper()
    events = _lobster_rows(message_path, 6)
    books = _lobster_rows(orderbook_path, 4 * levels)
    if len(events) != len(books):
        raise ReplayError(f"{message_path}: {len(events)} messages but {orderbook_path} has "
                          f"{len(books)} rows")
    if not events:
        raise ReplayError(f"{message_path}: no messages")
    t = _LobsterTranslator(stock)
    t.ns = 0
    t.emit(b"R", stock=stock, market_category=b"Q", financial_status=b"N", round_lot_size=100,
           round_lots_only=b"N", issue_classification=b"C", issue_subtype=b"Z",
           authenticity=b"P", short_sale_threshold=b"N", ipo_flag=b"N", luld_tier=b"1",
           etp_flag=b"N", inverse=b"N")
    marks, tops, shown = [], [], {}
    for number, (event, row) in enumerate(zip(events, books, strict=True), start=1):
        try:
            seconds, kind, order, size, price, direction = event[:6]
            kind, order, size, price = int(kind), int(order), int(size), int(price)
            side = {"1": BID, "-1": ASK}[direction.strip()]
            t.ns = int(Decimal(seconds) * 10**9)
            book = _lobster_book(row, levels)
        except (ValueError, KeyError, ArithmeticError) as error:
            raise ReplayError(f"{message_path}:{number}: not a LOBSTER event ({error})") \
                from None
        if not 1 <= kind <= 7:
            raise ReplayError(f"{message_path}:{number}: event type {kind} (LOBSTER has 1-7)")
        if number == 1:
            shown = _before_first(book, kind, size, price, side, levels)
            t.materialise(shown)
        t.event(kind, order, size, price, side)
        t.materialise(book, shown)
        shown = book
        marks.append(len(t.out) - 1)
        tops.append(_top(book))
    recording = read_itch(_blocks(t.out), str(message_path))
    return recording._replace(kind="lobster", marks=marks, book=tops)


def read_recording(path, symbol=None):
    """Any supported file, by its contents (gzip, pcap, ITCH) or its LOBSTER name."""
    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"{path}: no such file")
    if LOBSTER_NAME.match(path.name):
        return read_lobster(path, symbol=symbol)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise ReplayError(f"{path}: bad gzip data ({error})") from None
    if data[:4] in PCAP_MAGIC or data[:4] == b"\x0a\x0d\x0d\x0a":
        return read_pcap(data, str(path))
    if len(data) >= 3:
        spec = itch.MESSAGES.get(data[2:3])
        if spec is not None and int.from_bytes(data[:2]) == spec.length:
            return read_itch(data, str(path))
    raise ReplayError(f"{path}: unknown file type: expected a pcap of MoldUDP64 frames, a Nasdaq "
                      "ITCH 5.0 file (2-byte length + message, optionally gzip) or a LOBSTER "
                      "message file named TICKER_date_start_end_message_N.csv")


# Replay ---------------------------------------------------------------------------------------

@functools.cache
def _frame_header(payload_length):
    """Ethernet, IPv4 and UDP headers of a line A frame: they depend only on the length."""
    from .frames import udp_frame

    frame = udp_frame(bytes(payload_length), dst_ip=FEED_GROUP_A, dst_port=FEED_PORT,
                      udp_checksum=False)
    return frame[:len(frame) - payload_length]


def _frames(recording, first, last):
    """Frames of line A carrying messages first..last-1, MoldUDP64 sequence = index + 1; each
    holds as many whole messages as fit in `MAX_PAYLOAD` (found by bisection of the offsets)."""
    blocks, offsets = recording.blocks, recording.offsets

    def bound(k):     # where message k starts: the end of message k - 1
        return offsets[k] if k < len(offsets) else len(blocks)

    frames, start, budget = [], first, MAX_PAYLOAD - mold.HEADER_LENGTH
    while start < last:
        limit = offsets[start] + budget
        end = bisect.bisect_right(offsets, limit, start + 1, last)
        if end < last or bound(last) > limit:
            end -= 1
        end = max(end, start + 1)
        payload = (SESSION + (start + 1).to_bytes(8, "big") + (end - start).to_bytes(2, "big")
                   + blocks[offsets[start]:bound(end)])
        frames.append(_frame_header(len(payload)) + payload)   # 42 + 20 bytes or more: no padding
        start = end
    return frames


def symbol_configuration(symbols):
    """TOML for the host's parser: one ``[[symbol]]`` per (name, locate)."""
    return "".join(f'[[symbol]]\nname = "{name}"\nlocate = {locate}\n\n'
                   for name, locate in symbols.items())


async def _configure(device, symbols):
    from tickwire.host import api
    from tickwire.host.config import ConfigError, parse

    await api.load_filters(device, default_filters())
    try:
        plan = parse(symbol_configuration(symbols), device.map, "replay symbols")
    except ConfigError as error:
        raise ReplayError(str(error)) from None
    for write in plan.writes:      # the symbols' names for OUCH orders: no encoder here
        if write.register in device.map.by_name:
            await device.write(write.register, write.value, index=write.index)


class Replayed(NamedTuple):
    recording: Recording
    symbols: dict         # name -> locate
    updates: dict         # locate -> ([MoldUDP64 sequence], [(ask price, ask size, bid ...)])
    counters: dict        # the device's counters after the replay, by register name
    frames: int
    cycles: int
    seconds: float        # wall time of framing and clocking the model

    def tops(self, name, form=tuple):
        """The gateware's top of book of `name` after each message of the file, as
        `form` of (ask price, ask size, bid price, bid size), one per message."""
        sequences, values = self.updates.get(self.symbols[name], ([], []))
        marks, count = self.recording.marks, self.recording.messages
        out, current = [], form((0, 0, 0, 0))
        for sequence, value in zip(sequences, values, strict=True):
            # the first message after which this update (of message `sequence` - 1) is seen
            start = (sequence - 1 if marks is None else bisect.bisect_left(marks, sequence - 1))
            out += [current] * (min(start, count) - len(out))
            current = form(value)
        out += [current] * (count - len(out))
        return out


def resolve(recording, names):
    """{name: locate} of the requested symbols, from the recording's Stock Directory."""
    out = {}
    for name in names:
        key = name.upper()
        if key not in recording.directory:
            known = ", ".join(sorted(recording.directory)[:10]) or "none"
            raise ReplayError(f"symbol {name!r}: no Stock Directory message names it "
                              f"(first known: {known})")
        out[key] = recording.directory[key]
    return out


def replay(recording, symbols, top=None, chunk_messages=50_000):
    """Drive the Verilated device with `recording`, the `symbols` ({name: locate}) subscribed
    first through the host's configuration code."""
    import time

    from tickwire.host.device import Device

    if len(symbols) > REPLAY_BOOK.symbols:
        raise ReplayError(f"{len(symbols)} symbols, the replay build holds "
                          f"{REPLAY_BOOK.symbols}")
    top = top or ReplayTop()
    top.power_on()

    async def run():
        device = await Device.open(top, top.register_map, identity=top.identity)
        await _configure(device, symbols)
        started, frames = time.perf_counter(), 0
        count = len(recording.offsets)

        def prepare(first):
            batch = _frames(recording, first, min(count, first + chunk_messages))
            return len(batch), top.beats(batch)

        # The next chunk's beats are built while the model clocks this one
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(prepare, 0)
            for first in range(0, count, chunk_messages):
                built, beats = pending.result()
                if first + chunk_messages < count:
                    pending = pool.submit(prepare, first + chunk_messages)
                top.clock(*beats)
                frames += built
        seconds = time.perf_counter() - started
        return await device.counters(), frames, seconds

    counters, frames, seconds = asyncio.run(run())
    updates = {}
    words = top.bbo
    if any(words[1::BBO_WORDS]):
        raise ReplayError("sequence numbers past 2**32: split the file")
    wanted = set(symbols.values())
    for sequence, locate, bid_price, bid_size, ask_price, ask_size in zip(
            words[0::BBO_WORDS], words[2::BBO_WORDS], words[3::BBO_WORDS],
            words[4::BBO_WORDS], words[5::BBO_WORDS], words[6::BBO_WORDS], strict=True):
        if locate in wanted:
            sequences, values = updates.setdefault(locate, ([], []))
            sequences.append(sequence)
            values.append((ask_price, ask_size, bid_price, bid_size))
    return Replayed(recording, dict(symbols), updates, counters, frames, top.cycles, seconds)


BBO_HEADER = ("index", "symbol", "ask_price", "ask_size", "bid_price", "bid_size")


def write_bbo(replayed, path):
    """The CSV of ``--bbo``: per message and symbol, the gateware's top of book (prices in
    ITCH Price(4) units, an empty side as price 0, size 0). A row is written as its index and
    the rest of the line, which is one string shared by every row until the top changes."""
    indices = list(map(str, range(replayed.recording.messages)))
    columns = []
    for name in replayed.symbols:
        columns += [indices, replayed.tops(
            name, lambda top, name=name: f",{name},{top[0]},{top[1]},{top[2]},{top[3]}\n")]
    with open(path, "w") as out:
        out.write(",".join(BBO_HEADER) + "\n")
        out.writelines(itertools.chain.from_iterable(zip(*columns, strict=True)))


def check_book(replayed, name):
    """[(index, the file's top of book, the gateware's)] wherever they differ."""
    if replayed.recording.book is None:
        raise ReplayError("--check-book needs the file's own book, which only LOBSTER files "
                          "carry")
    return [(index, expected, got) for index, (expected, got) in enumerate(
        zip(replayed.recording.book, replayed.tops(name), strict=True)) if expected != got]


@functools.cache
def shared_top():
    """One Verilated replay device per process (the command line's, the benchmark's)."""
    return ReplayTop()


def _plural(n, one, many):
    return f"{n:,} {one if n == 1 else many}"


def summary(replayed):
    """Lines for the command line: what was read, replayed, and what the device counted."""
    r, c = replayed.recording, replayed.counters
    lines = [f"{r.kind}: {_plural(r.messages, 'message', 'messages')}"
             + (f" ({len(r.offsets):,} ITCH messages)" if r.marks is not None else "")]
    if r.kind == "pcap":
        lines.append(f"{_plural(r.counts['frames'], 'frame', 'frames')} read, "
                     + _plural(r.counts["not_moldudp64"], "frame that is not MoldUDP64",
                               "frames that are not MoldUDP64") + " skipped, "
                     + f"{r.counts['duplicates']:,} duplicate messages dropped, "
                     + f"{r.counts['missing']:,} sequence numbers missing")
    rate = len(r.offsets) / replayed.seconds if replayed.seconds else 0
    lines.append(f"{replayed.frames:,} frames, {replayed.cycles:,} cycles in "
                 f"{replayed.seconds:.2f} s ({rate:,.0f} messages/s)")
    for name, locate in replayed.symbols.items():
        updates = len(replayed.updates.get(locate, ([], []))[0])
        lines.append(f"{name} (locate {locate}): {_plural(updates, 'BookUpdate', 'BookUpdates')}")
    delivered = c.get("feed.counters.mold.messages", 0)
    lines.append(f"gateware: {delivered:,} messages delivered by the feed handler")
    lines += [f"  {name} {value:,}" for name, value in c.items()
              if value and name.startswith("book.counters.")]
    return lines


# Benchmark (`make bench`) ---------------------------------------------------------------------

BENCH_MESSAGES = 1_000_000


def replay_figures(messages=BENCH_MESSAGES, symbols=("AAPL", "MSFT")):
    """``replay.*``: a recorded ITCH 5.0 file of `messages` messages (the default scenario's
    order flow, written as a daily file) replayed as ``tickwire replay FILE --symbol AAPL
    --symbol MSFT --bbo OUT.csv`` does, timed from reading the file to the CSV written (the
    Verilated model built and loaded beforehand), in wall-clock and in this process's CPU
    seconds (the machine is shared: the CPU figure is the rate without contention)."""
    import time

    from .scenario import order_flow

    folder = cache_dir("bench", "replay")
    path, out = folder / f"flow-{messages}.NASDAQ_ITCH50", folder / "bbo.csv"
    if not path.exists():
        path.write_bytes(_blocks(order_flow(messages, seed=99)))
    top = shared_top()
    started, cpu = time.perf_counter(), time.process_time()
    recording = read_recording(path)
    replayed = replay(recording, resolve(recording, symbols), top=top)
    write_bbo(replayed, out)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    c = replayed.counters
    lost = c["book.counters.fifo_overflow"] + messages - c["feed.counters.mold.messages"]
    return {"replay.messages": messages, "replay.msgs_per_s": round(messages / seconds),
            "replay.msgs_per_cpu_s": round(messages / cpu),    # what a quiet machine would do
            "replay.model_msgs_per_s": round(messages / replayed.seconds),
            "replay.cycles_per_message": round(replayed.cycles / messages, 3),
            "replay.book_updates": c["book.counters.updates"], "replay.lost": lost,
            "replay.table_full": c["book.counters.table_full"]}
