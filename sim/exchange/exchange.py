"""The matching engine: the market's books built from the ITCH flow, and our orders matched
against them.

`Exchange.apply_market` takes every ITCH message the exchange publishes from its scenario, so
its books are the books the feed shows. Orders entered over OUCH (`Exchange.submit`) take
that liquidity in price-time priority; what they do is answered on the order's SoupBinTCP
session stream (OUCH outbound messages, sequence number = index + 1), recorded as an
`OrderEvent`, and published back into the feed as ITCH messages (`Exchange.published`): an
Order Executed ``E`` for every resting order a trade reduced, an Add Order ``A`` for each
displayed Day order of ours that rests, Order Cancel ``X`` / Delete ``D`` when it is
cancelled. Our reference and match numbers come from ranges of their own
(`order_ref_base`, `match_number_base`, default 2**35) so they never meet the scenario's, and
the references stay below the gateware book's 36-bit limit (`BookParams.ref_bits`).

Thread safe: the order-entry server calls `submit` from its event loop while the caller
feeds the market from its own thread.
"""

import collections
import dataclasses
import logging
import threading

from tickwire.sim import itch
from tickwire.sim.ouch import decode_enter_order

from . import messages as m
from .book import Book, RestingOrder
from .events import EventKind, OrderEvent

__all__ = ["Exchange"]

log = logging.getLogger(__name__)

_SIDES = {"B": "B", "S": "S", "T": "S", "E": "S"}     # OUCH side -> the book side it rests on
_SUPPORTED_TIF = {"0", "3"}                            # day, IOC
_DISPLAY = {"Y", "N", "A"}
_CAPACITY = {"A", "P", "R", "O"}


@dataclasses.dataclass
class _Order:
    """One of our orders."""
    session: str
    user_ref_num: int
    clordid: str
    ref: int
    symbol: str
    side: str
    quantity: int
    price: int
    tif: str
    display: str
    cumulative: int = 0
    leaves: int = 0


def _text(raw):
    return raw.decode("ascii", "replace").strip()


class Exchange:
    """Books for `symbols`; OUCH sessions are opened by name (`open_session`)."""

    def __init__(self, symbols, *, order_ref_base=2**35, match_number_base=2**35):
        self.symbols = tuple(symbols)
        self._books = {s: Book() for s in self.symbols}
        self._locates = {s: i for i, s in enumerate(self.symbols, start=1)}   # until an R
        self._trading = dict.fromkeys(self.symbols, True)
        self._market = {}                    # market order ref -> symbol
        self._taken = {}                     # market ref our trades reduced -> (symbol, side)
        self._gone = {}                      # such a ref our trades emptied -> (symbol, side)
        self._ours = {}                      # (session, user_ref_num) -> _Order
        self._last_user_ref_num = {}
        self._streams = {}                   # session -> OUCH outbound messages
        self._listeners = []
        self._published = []
        self.events = []
        self.counters = collections.Counter()
        self._next_ref, self._next_match = order_ref_base, match_number_base
        self._arrival = 0
        self.time_ns = 0                     # exchange time: the feed's latest timestamp
        self._lock = threading.RLock()

    # Sessions --------------------------------------------------------------------------------

    def open_session(self, session):
        """Start `session`'s sequenced stream with a System Event Start of Day (if new)."""
        with self._lock:
            if session not in self._streams:
                self._streams[session] = []
                self._last_user_ref_num[session] = 0
                self._send(session, m.encode(b"S", timestamp=self.time_ns, event_code="S"))

    def stream(self, session, first=1):
        """The session's sequenced OUCH messages from sequence number `first` on (the stream
        starts at 1)."""
        with self._lock:
            return self._streams[session][first - 1:]

    def stream_length(self, session):
        """The sequence number of the session's latest message."""
        with self._lock:
            return len(self._streams[session])

    def add_listener(self, callback):
        """`callback(session)` is called (under the exchange's lock, from whichever thread
        caused it) each time a session's stream grows."""
        self._listeners.append(callback)

    def _send(self, session, message):
        self._streams[session].append(message)
        for callback in self._listeners:
            callback(session)

    # The market ----------------------------------------------------------------------------

    def apply_market(self, message):
        """Apply one ITCH 5.0 message of the scenario's flow to the books; returns the
        messages the feed must carry in its place, ``[message]`` unless our trades already
        took shares it refers to: an execution or cancel of more shares than remain is cut
        to what remains, one for an order our trades emptied is dropped, and a replace of
        such an order becomes an Add Order of the new reference. So the feed (these, then
        `published()`) never names a share twice."""
        with self._lock:
            if len(message) >= 11:
                self.time_ns = max(self.time_ns, int.from_bytes(message[5:11], "big"))
            kind = bytes(message[0:1])
            if len(kind) != 1 or kind not in b"RHAFECXDU":
                return [message]
            fields = itch.decode(message)
            if kind == b"R":
                self._directory(fields)
            elif kind == b"H":
                symbol = _text(fields["stock"])
                if symbol in self._trading:
                    self._trading[symbol] = fields["trading_state"] == b"T"
            elif kind in (b"A", b"F"):
                symbol = _text(fields["stock"])
                if symbol in self._books:
                    self._market_add(symbol, fields["order_ref"], chr(fields["side"][0]),
                                     fields["price"], fields["shares"])
            elif kind in (b"E", b"C", b"X", b"D"):
                return self._market_reduce(kind, fields, message)
            elif kind == b"U":
                return self._market_replace(fields, message)
            return [message]

    def _directory(self, fields):
        symbol = _text(fields["stock"])
        if symbol in self._locates:
            self._locates[symbol] = fields["stock_locate"]

    def _market_order(self, ref):
        symbol = self._market.get(ref)
        if symbol is None:
            self.counters["market_unknown_ref"] += 1    # e.g. a symbol we do not trade
            return None
        return self._books[symbol].orders[ref]

    _REDUCED_BY = {b"E": "executed_shares", b"C": "executed_shares", b"X": "cancelled_shares"}

    def _market_reduce(self, kind, fields, message):
        ref = fields["order_ref"]
        if ref in self._gone:
            self.counters["market_dropped"] += 1
            return []
        order = self._market_order(ref)
        if order is None:
            return [message]
        shares = order.shares if kind == b"D" else fields[self._REDUCED_BY[kind]]
        if shares > order.shares:
            self.counters["market_cut"] += 1
            shares = order.shares
            values = {k: v for k, v in fields.items() if k != "message_type"}
            message = itch.encode(kind, **values | {self._REDUCED_BY[kind]: shares})
        self._books[self._market[ref]].reduce(ref, shares)
        self._market_left(ref)
        return [message]

    def _market_replace(self, fields, message):
        ref = fields["original_ref"]
        if ref in self._gone:
            symbol, side = self._gone.pop(ref)
            self.counters["market_replace_to_add"] += 1
            message = itch.encode(b"A", stock_locate=fields["stock_locate"],
                                  tracking_number=fields["tracking_number"],
                                  timestamp=fields["timestamp"], order_ref=fields["new_ref"],
                                  side=side, shares=fields["shares"], stock=symbol,
                                  price=fields["price"])
        else:
            old = self._market_order(ref)
            if old is None:
                return [message]
            symbol, side = self._market[ref], old.side
            self._books[symbol].remove(ref)
            self._market_left(ref)
        self._market_add(symbol, fields["new_ref"], side, fields["price"], fields["shares"])
        return [message]

    def _market_left(self, ref):
        """Forget market order `ref` if it left its book; remember it if our trades took some
        of it, since the scenario's flow may still name it."""
        symbol = self._market[ref]
        order = self._books[symbol].orders.get(ref)
        if order is None:
            del self._market[ref]
            if ref in self._taken:
                self._gone[ref] = self._taken.pop(ref)

    def _market_add(self, symbol, ref, side, price, shares):
        """A market order arrives: it trades with any of ours it crosses, then rests."""
        book = self._books[symbol]
        self._arrival += 1
        order = RestingOrder(ref, side, price, shares, self._arrival)
        fills = book.match(side, price, shares, eligible=lambda resting: resting.owner)
        for resting, taken in fills:
            self._trade(order, resting, taken)
        if order.shares:
            book.add(order)
            self._market[ref] = symbol
        elif fills:
            self._gone[ref] = self._taken.pop(ref)

    # Our orders ----------------------------------------------------------------------------

    def submit(self, session, message):
        """One OUCH inbound message from `session` (Enter Order ``O`` or Cancel Order ``X``).
        Raises OuchError or ValueError on a message that cannot be decoded."""
        with self._lock:
            if session not in self._streams:
                raise ValueError(f"session {session!r} is not open")
            kind = bytes(message[0:1])
            if kind == b"O":
                self._enter(session, decode_enter_order(message))
            elif kind == b"X":
                self._cancel(session, m.decode_cancel_order(message))
            else:
                raise m.OuchError(f"unsupported OUCH inbound type {kind!r}")

    def _enter(self, session, fields):
        number = fields["user_ref_num"]
        if number <= self._last_user_ref_num[session]:
            # Section 1.2: taken for a retransmission and ignored.
            self.counters["stale_user_ref_num"] += 1
            log.warning("%s: UserRefNum %d is not above %d, ignored", session, number,
                        self._last_user_ref_num[session])
            return
        self._last_user_ref_num[session] = number
        price = int.from_bytes(fields["price"].to_bytes(8, "big"), "big", signed=True)
        order = _Order(session, number, _text(fields["clordid"]), 0, _text(fields["symbol"]),
                       _text(fields["side"]), fields["quantity"], price,
                       _text(fields["time_in_force"]), _text(fields["display"]))
        reason = self._check(order, fields)
        if reason is not None:
            self.counters["rejected"] += 1
            self._send(session, m.encode(b"J", timestamp=self.time_ns, user_ref_num=number,
                                         reason=reason, clordid=fields["clordid"]))
            self._event(EventKind.REJECTED, order, reason=f"0x{reason:04X}")
            return
        order.ref, order.leaves = self._next_ref, order.quantity
        self._next_ref += 1
        self._ours[session, number] = order
        self._send(session, m.encode(
            b"A", timestamp=self.time_ns, user_ref_num=number, side=order.side,
            quantity=order.quantity, symbol=order.symbol, price=order.price,
            time_in_force=order.tif, display=order.display, order_reference_number=order.ref,
            capacity=fields["capacity"], intermarket_sweep=fields["intermarket_sweep"],
            cross_type=fields["cross_type"], order_state="L", clordid=fields["clordid"]))
        self._event(EventKind.ACCEPTED, order)
        side = _SIDES[order.side]
        self._arrival += 1
        incoming = RestingOrder(order.ref, side, order.price, order.quantity, self._arrival,
                                owner=order)
        book = self._books[order.symbol]
        for resting, taken in book.match(side, order.price, order.quantity):
            self._trade(incoming, resting, taken)
        if not order.leaves:
            return
        if order.tif == "3":
            self._cancelled(order, order.leaves, m.CANCEL_IOC)
        else:
            book.add(incoming)
            if order.display != "N":
                self._publish(b"A", order.symbol, order_ref=order.ref, side=side,
                              shares=order.leaves, stock=order.symbol, price=order.price)

    def _check(self, order, fields):
        """The Appendix D reject reason for an Enter Order, or None to accept it."""
        if order.symbol not in self._books:
            return m.Reject.INVALID_SYMBOL
        if order.side not in _SIDES:
            return m.Reject.INVALID_SIDE
        if not 0 < order.quantity <= m.MAX_QUANTITY:
            return m.Reject.INVALID_QUANTITY
        if not 0 < order.price <= m.MAX_PRICE:       # market-order prices are not simulated
            return m.Reject.INVALID_PRICE
        if order.display not in _DISPLAY:
            return m.Reject.INVALID_DISPLAY
        if fields["intermarket_sweep"] == b"Y":
            return m.Reject.ISO_NOT_ALLOWED
        if fields["cross_type"] != b"N":
            return m.Reject.INVALID_CROSS_ORDER
        if (order.tif not in _SUPPORTED_TIF or _text(fields["capacity"]) not in _CAPACITY
                or fields["intermarket_sweep"] != b"N"):
            return m.Reject.OTHER
        if not self._trading[order.symbol]:
            return m.Reject.HALTED
        return None

    def _cancel(self, session, fields):
        order = self._ours.get((session, fields["user_ref_num"]))
        book = None if order is None else self._books[order.symbol]
        if order is None or order.ref not in book.orders or fields["quantity"] >= order.leaves:
            self.counters["superfluous_cancel"] += 1    # section 2.3: silently ignored
            return
        shares = order.leaves - fields["quantity"]
        book.reduce(order.ref, shares)
        self._cancelled(order, shares, m.CANCEL_USER)
        if order.display != "N":
            if order.leaves:
                self._publish(b"X", order.symbol, order_ref=order.ref, cancelled_shares=shares)
            else:
                self._publish(b"D", order.symbol, order_ref=order.ref)

    def end_of_day(self):
        """Cancel every resting Day order (reason Timeout) and send System Event End of Day
        on every session."""
        with self._lock:
            for order in self._ours.values():
                book = self._books[order.symbol]
                if order.ref in book.orders:
                    book.remove(order.ref)
                    shares = order.leaves
                    self._cancelled(order, shares, b"T")
                    if order.display != "N":
                        self._publish(b"D", order.symbol, order_ref=order.ref)
            for session in self._streams:
                self._send(session, m.encode(b"S", timestamp=self.time_ns, event_code="E"))

    # What happened -------------------------------------------------------------------------

    def _trade(self, incoming, resting, shares):
        """`incoming` took `shares` of `resting` at the resting order's price."""
        match = self._next_match
        self._next_match += 1
        incoming.shares -= shares
        symbol = (resting.owner.symbol if resting.owner else self._market[resting.ref])
        for side, flag in ((incoming, m.LIQUIDITY_REMOVED), (resting, m.LIQUIDITY_ADDED)):
            order = side.owner
            if order is not None:
                order.cumulative += shares
                order.leaves -= shares
                self._send(order.session, m.encode(
                    b"E", timestamp=self.time_ns, user_ref_num=order.user_ref_num,
                    quantity=shares, price=resting.price, liquidity_flag=flag,
                    match_number=match))
                self._event(EventKind.EXECUTED, order, last_quantity=shares,
                            last_price=resting.price, match_number=match)
        # The feed shows the resting order shrink, and the incoming one too when it is a
        # market order the feed has already added.
        shown = [resting] if resting.owner is None or resting.owner.display != "N" else []
        for order in shown + ([incoming] if incoming.owner is None else []):
            self._publish(b"E", symbol, order_ref=order.ref, executed_shares=shares,
                          match_number=match)
        for order in (incoming, resting):
            if order.owner is None:
                self._taken[order.ref] = (symbol, order.side)
        if resting.owner is None:
            self._market_left(resting.ref)

    def _cancelled(self, order, shares, reason):
        order.leaves -= shares
        self._send(order.session, m.encode(b"C", timestamp=self.time_ns,
                                           user_ref_num=order.user_ref_num, quantity=shares,
                                           reason=reason))
        self._event(EventKind.CANCELED, order, reason=reason.decode())

    def _event(self, kind, order, **extra):
        self.events.append(OrderEvent(
            kind=kind, time_ns=self.time_ns, session=order.session,
            user_ref_num=order.user_ref_num, cl_ord_id=order.clordid, order_id=order.ref,
            symbol=order.symbol, side=order.side, order_quantity=order.quantity,
            price=order.price, time_in_force=order.tif, cumulative_quantity=order.cumulative,
            leaves_quantity=order.leaves, **extra))

    def _publish(self, kind, symbol, **fields):
        self._published.append(itch.encode(kind, stock_locate=self._locates[symbol],
                                           timestamp=self.time_ns, **fields))

    def published(self):
        """The ITCH messages published since the last call, to append to the feed in order."""
        with self._lock:
            out, self._published = self._published, []
            return out

    def resting(self, symbol):
        """The resting orders of `symbol`, both sides, each side best first (for inspection)."""
        with self._lock:
            book = self._books[symbol]
            return list(book.priority("B")) + list(book.priority("S"))
