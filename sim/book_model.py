"""Reference models of the order book.

`FullBook` is the plain ITCH 5.0 book: every order, every level, no capacity limits. It is the
truth the build-limited book is judged against, and it is itself cross-checked against
`meatpy`'s limit order book (tests/test_book_reference.py).

`BookModel` is the executable specification of `tickwire.hdl.book.OrderBook`: the same
decisions in the same order, with the build's limits (a set-associative order table, `depth`
stored levels per side with a hidden zone below them), the same counters and the same
`BookUpdate`s. Every gateware test compares against it, and `BookModel.visible` is checked
against `FullBook` wherever the build claims to be complete.
"""

from collections import Counter

from tickwire.hdl.book.records import BOOK_COUNTERS, SHARES_BITS, BookParameters, set_index
from tickwire.hdl.feed.events import BookEventKind

ADD, EXECUTE, EXECUTE_AT_PRICE, CANCEL, DELETE, REPLACE = (
    k.value for k in (BookEventKind.ADD, BookEventKind.EXECUTE, BookEventKind.EXECUTE_AT_PRICE,
                      BookEventKind.CANCEL, BookEventKind.DELETE, BookEventKind.REPLACE))
REDUCE = (EXECUTE, EXECUTE_AT_PRICE, CANCEL)
BUY, SELL = 0, 1
MAX_SHARES = (1 << SHARES_BITS) - 1
EMPTY = (0, 0, 0)   # (price, shares, orders) of an empty level


def event(kind, *, locate=0, order_ref=0, new_ref=0, side=0, shares=0, price=0, timestamp=0,
          sequence=0):
    """A BookEvent as a dict (the fields the book uses)."""
    return dict(kind=int(kind), locate=locate, order_ref=order_ref, new_ref=new_ref, side=side,
                shares=shares, price=price, timestamp=timestamp, sequence=sequence)


def better(side, a, b):
    """Is price `a` better than price `b` on `side`?"""
    return a > b if side == BUY else a < b


class FullBook:
    """Every order of every locate, full depth, ITCH semantics; bad input is skipped."""

    def __init__(self):
        self.orders = {}   # ref -> [locate, side, price, shares]
        self.levels = {}   # (locate, side) -> {price: [shares, orders]}

    def _add(self, ref, locate, side, price, shares):
        self.orders[ref] = [locate, side, price, shares]
        level = self.levels.setdefault((locate, side), {}).setdefault(price, [0, 0])
        level[0] += shares
        level[1] += 1

    def _reduce(self, ref, shares):
        locate, side, price, remaining = self.orders[ref]
        amount = min(shares, remaining)
        level = self.levels[(locate, side)][price]
        level[0] -= amount
        self.orders[ref][3] -= amount
        if self.orders[ref][3] == 0:
            del self.orders[ref]
            level[1] -= 1
            if level[1] == 0:
                del self.levels[(locate, side)][price]

    def apply(self, e):
        kind, ref = e["kind"], e["order_ref"]
        if kind == ADD:
            if e["shares"] and ref not in self.orders:
                self._add(ref, e["locate"], e["side"], e["price"], e["shares"])
        elif ref not in self.orders:
            return
        elif kind in REDUCE:
            self._reduce(ref, e["shares"])
        elif kind == DELETE:
            self._reduce(ref, self.orders[ref][3])
        elif kind == REPLACE:
            locate, side = self.orders[ref][0], self.orders[ref][1]
            self._reduce(ref, self.orders[ref][3])
            if e["shares"] and e["new_ref"] not in self.orders:
                self._add(e["new_ref"], locate, side, e["price"], e["shares"])

    def top(self, locate, side, n=None):
        """[(price, shares, orders)] best first."""
        levels = self.levels.get((locate, side), {})
        prices = sorted(levels, reverse=(side == BUY))[:n]
        return [(p, levels[p][0], levels[p][1]) for p in prices]


class _Side:
    def __init__(self):
        self.levels = []     # [(price, shares, orders)] best first, at most `depth`
        self.hidden = 0      # live orders not in `levels`
        self.boundary = 0    # best price among them (0 when hidden == 0)


class BookModel:
    """The gateware's behaviour, limits included (see `tickwire.hdl.book.OrderBook`)."""

    def __init__(self, parameters=None, **overrides):
        self.p = (parameters or BookParameters())._replace(**overrides).check()
        self.subscriptions = {}                              # locate -> slot
        self.sets = [dict() for _ in range(self.p.sets)]     # set -> {ref: entry}
        self.books = {}                                      # slot -> (bid _Side, ask _Side)
        self.counters = Counter({name: 0 for name in BOOK_COUNTERS})
        self.alarms = dict(integrity=0, capacity=0, overflow=0)
        self.updates = []

    # --- host ------------------------------------------------------------------------------
    def subscribe(self, locate, slot, enable=True):
        """Map `locate` to book `slot` (cleared), or unmap it. Order-table entries are kept."""
        if locate < self.p.locates:
            self.subscriptions.pop(locate, None)
            if enable:
                self.subscriptions[locate] = slot
            self.books[slot] = (_Side(), _Side())

    def snapshot(self, locate):
        slot = self.subscriptions.get(locate) if locate < self.p.locates else None
        book = self.books.get(slot, (_Side(), _Side())) if slot is not None else (_Side(), _Side())
        n = self.p.visible
        return dict(locate=locate, subscribed=int(slot is not None),
                    complete=self._complete(book),
                    bid=self._padded(book[BUY].levels[:n]), ask=self._padded(book[SELL].levels[:n]))

    def visible(self, locate, side):
        """The stored top `visible` levels of a subscribed locate, [(price, shares, orders)]."""
        slot = self.subscriptions[locate]
        return list(self.books.setdefault(slot, (_Side(), _Side()))[side].levels[:self.p.visible])

    def complete(self, locate, side):
        slot = self.subscriptions[locate]
        s = self.books.setdefault(slot, (_Side(), _Side()))[side]
        return s.hidden == 0 or len(s.levels) >= self.p.visible

    def fifo_overflow(self, lost=1):
        self.counters["fifo_overflow"] += lost
        self.alarms["overflow"] = 1

    # --- events ----------------------------------------------------------------------------
    def _count(self, name):
        self.counters[name] += 1
        if name in ("unknown_ref", "locate_mismatch", "duplicate_ref", "bad_shares",
                    "over_execution", "level_missing"):
            self.alarms["integrity"] = 1
        elif name in ("table_full", "ref_out_of_range", "level_saturated", "level_overflow"):
            self.alarms["capacity"] = 1

    def _find(self, ref):
        return self.sets[set_index(self.p, ref)].get(ref)

    def _padded(self, levels):
        return list(levels) + [EMPTY] * (self.p.visible - len(levels))

    def _complete(self, book):
        return sum((s.hidden == 0 or len(s.levels) >= self.p.visible) << i
                   for i, s in enumerate(book))

    def apply(self, e):
        """Apply one BookEvent dict; returns the BookUpdate dict it produced, or None."""
        p = self.p
        self.counters["events"] += 1
        locate, kind, ref = e["locate"], e["kind"], e["order_ref"]
        slot = self.subscriptions.get(locate) if locate < p.locates else None
        if slot is None:
            self._count("unsubscribed")
            return None
        if ref >> p.ref_bits:
            self._count("ref_out_of_range")
            return None
        book = self.books.setdefault(slot, (_Side(), _Side()))
        entry = self._find(ref)
        side = e["side"] if kind == ADD else (entry["side"] if entry else 0)
        before = (list(book[side].levels[:p.visible]), self._complete(book))
        if kind == ADD:
            self._add(book, slot, ref, side, e["price"], e["shares"])
        elif entry is None:
            self._count("unknown_ref")
        elif entry["slot"] != slot:
            self._count("locate_mismatch")
        else:
            if kind in REDUCE:
                amount = e["shares"]
                if amount > entry["shares"]:
                    self._count("over_execution")
                    amount = entry["shares"]
            else:
                amount = entry["shares"]
            self._remove(book[side], ref, entry, amount)
            if kind == REPLACE:
                new_ref = e["new_ref"]
                if new_ref >> p.ref_bits:
                    self._count("ref_out_of_range")
                else:
                    self._add(book, slot, new_ref, side, e["price"], e["shares"])
        after = (list(book[side].levels[:p.visible]), self._complete(book))
        if after == before:
            return None
        old, new = self._padded(before[0]), self._padded(after[0])
        changed = sum((o != n) << i for i, (o, n) in enumerate(zip(old, new, strict=True)))
        bid = book[BUY].levels[0] if book[BUY].levels else EMPTY
        ask = book[SELL].levels[0] if book[SELL].levels else EMPTY
        update = dict(locate=locate, slot=slot, side=side, changed=changed, complete=after[1],
                      bid_price=bid[0], bid_shares=bid[1], ask_price=ask[0], ask_shares=ask[1],
                      levels=new, timestamp=e["timestamp"], sequence=e["sequence"])
        self.counters["updates"] += 1
        self.updates.append(update)
        return update

    def _add(self, book, slot, ref, side, price, shares):
        p = self.p
        table = self.sets[set_index(p, ref)]
        if shares == 0:
            return self._count("bad_shares")
        if ref in table:
            return self._count("duplicate_ref")
        if len(table) >= p.ways:
            return self._count("table_full")
        s = book[side]
        prices = [level[0] for level in s.levels]
        if price in prices:
            i = prices.index(price)
            level_price, level_shares, level_orders = s.levels[i]
            if level_shares + shares > MAX_SHARES:
                return self._count("level_saturated")
            s.levels[i] = (price, level_shares + shares, level_orders + 1)
        elif s.hidden and not better(side, price, s.boundary):
            s.hidden += 1                                   # joins the hidden zone
            self._count("level_overflow")
        else:
            position = sum(better(side, q, price) for q in prices)
            if len(s.levels) < p.depth:
                s.levels.insert(position, (price, shares, 1))
            elif position == p.depth:                       # worse than every stored level
                s.hidden, s.boundary = s.hidden + 1, price
                self._count("level_overflow")
            else:                                           # the worst level is pushed out
                pushed = s.levels.pop()
                s.hidden, s.boundary = s.hidden + pushed[2], pushed[0]
                s.levels.insert(position, (price, shares, 1))
                self._count("level_overflow")
        table[ref] = dict(slot=slot, side=side, price=price, shares=shares)

    def _remove(self, s, ref, entry, amount):
        remaining = entry["shares"] - amount
        gone = remaining == 0
        if gone:
            del self.sets[set_index(self.p, ref)][ref]
        else:
            entry["shares"] = remaining
        prices = [level[0] for level in s.levels]
        if entry["price"] in prices:
            i = prices.index(entry["price"])
            price, shares, orders = s.levels[i]
            if orders - gone == 0:
                del s.levels[i]
            else:
                s.levels[i] = (price, shares - amount, orders - gone)
        elif s.hidden:
            if gone:
                s.hidden -= 1
                if s.hidden == 0:
                    s.boundary = 0
        else:
            self._count("level_missing")

    def run(self, events):
        return [u for e in events if (u := self.apply(e)) is not None]
