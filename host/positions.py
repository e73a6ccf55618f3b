"""Positions and P&L from the drop copy, per symbol and strategy.

    positions = Positions(fee_per_share=Decimal("0.0030"), daily_loss_limit=Decimal(5000),
                          on_kill=lambda reason: loop.call_soon_threadsafe(kill_now, reason))
    for update in positions.apply(report):                 # an ExecutionReport
        await device.write("risk.fill", update.register_value(slots))
    positions.mark("AAPL", mid)                            # the BBO mid, 4 implied decimals

Realised P&L closes lots first in, first out (a buy covers the oldest short lots first, a sell
sells the oldest long lots). Unrealised P&L marks the open lots to the last mid given for the
symbol (to the last fill price until a mid is given). Money is `Decimal` dollars; prices are
integers with 4 implied decimals, as in OUCH and `ExecutionReport`.
"""

import collections
import dataclasses
from decimal import Decimal

__all__ = ["PnL", "Positions", "RiskUpdate", "clordid_strategy", "flushed_release"]

TRADE, CANCELED, REJECTED = "F", "4", "8"
BUY, SELL = 0, 1                       # the risk gate's Side
PRICE_SCALE = Decimal(10000)


def clordid_strategy(cl_ord_id):
    """tickwire's ClOrdID is a 6-character prefix then the UserRefNum in 8 hex digits: the
    prefix names the strategy."""
    return cl_ord_id[:-8].rstrip() if len(cl_ord_id) > 8 else ""


@dataclasses.dataclass(frozen=True)
class RiskUpdate:
    """What the risk gate must learn from one report: ``filled`` shares of an order of
    `side` traded, ``released`` shares of it will never trade (canceled or rejected)."""
    symbol: str
    side: int
    filled: int
    released: int

    def register_value(self, slots):
        """The value for ``device.write("risk.fill", ...)``; `slots` maps symbol -> the book
        slot the gateware trades it in."""
        if self.symbol not in slots:
            raise KeyError(f"{self.symbol!r} has no risk slot")
        return {"write": 1, "index": slots[self.symbol], "side": self.side,
                "filled": self.filled, "released": self.released}


def flushed_release(entry, symbols):
    """The `RiskUpdate` for an order log entry with ``sent`` 0: the gate passed the order (and
    counts it open) but the encoder flushed it on a kill, so no drop copy will ever release it.
    `entry` is a drained ``order.log`` dict or a `tickwire.sim.ouch.LogEntry`; `symbols` maps
    slot -> symbol."""
    fields = entry if isinstance(entry, dict) else dict(entry.intent, sent=entry.sent)
    if fields["sent"]:
        raise ValueError("the order was sent: its release comes from the drop copy")
    return RiskUpdate(symbols[fields["slot"]], fields["side"], 0, fields["quantity"])


@dataclasses.dataclass(frozen=True)
class PnL:
    realised: Decimal
    unrealised: Decimal
    fees: Decimal

    @property
    def total(self):
        return self.realised + self.unrealised - self.fees

    def __add__(self, other):
        return PnL(self.realised + other.realised, self.unrealised + other.unrealised,
                   self.fees + other.fees)


ZERO = PnL(Decimal(0), Decimal(0), Decimal(0))


class _Book:
    """One (symbol, strategy): open lots [signed shares, price], oldest first."""

    def __init__(self):
        self.lots = collections.deque()
        self.realised = 0            # price units x shares
        self.fees = Decimal(0)
        self.bought = self.sold = 0

    @property
    def position(self):
        return sum(q for q, _ in self.lots)

    def trade(self, signed_qty, price):
        if signed_qty > 0:
            self.bought += signed_qty
        else:
            self.sold -= signed_qty
        while signed_qty and self.lots and (self.lots[0][0] > 0) != (signed_qty > 0):
            lot = self.lots[0]
            closed = min(abs(lot[0]), abs(signed_qty))
            direction = 1 if lot[0] > 0 else -1        # long lot closed by a sell, or short
            self.realised += direction * closed * (price - lot[1])
            lot[0] -= direction * closed
            signed_qty += direction * closed
            if lot[0] == 0:
                self.lots.popleft()
        if signed_qty:
            self.lots.append([signed_qty, price])

    def unrealised(self, mark):
        return sum(q * (mark - p) for q, p in self.lots)


class Positions:
    """Positions and P&L from drop copy `ExecutionReport`s.

    `strategy_of(cl_ord_id)` names an order's strategy (default: the ClOrdID prefix,
    `clordid_strategy`). `fee_per_share` (Decimal dollars) is charged on every share traded.
    With `daily_loss_limit` (Decimal dollars, positive), ``on_kill(reason)`` is called once,
    the first time the total P&L (realised + unrealised - fees) falls below -limit.
    Reports must each be applied once (the store de-duplicates by ExecID)."""

    def __init__(self, *, fee_per_share=Decimal(0), strategy_of=clordid_strategy,
                 daily_loss_limit=None, on_kill=None):
        self.fee_per_share = Decimal(fee_per_share)
        if self.fee_per_share < 0:
            raise ValueError(f"fee_per_share {fee_per_share} is negative")
        if daily_loss_limit is not None and Decimal(daily_loss_limit) <= 0:
            raise ValueError(f"daily_loss_limit {daily_loss_limit} must be positive")
        self.daily_loss_limit = None if daily_loss_limit is None else Decimal(daily_loss_limit)
        self.strategy_of = strategy_of
        self.on_kill = on_kill
        self.killed = None               # the kill reason once the limit was hit
        self._books = {}                 # (symbol, strategy) -> _Book
        self._marks = {}                 # symbol -> mark price (4 implied decimals)
        self._last_fill = {}             # symbol -> last fill price, the mark until a mid
        self._open = {}                  # ClOrdID -> shares not yet filled or released

    def apply(self, report):
        """Take one report into the positions; returns the `RiskUpdate`s it implies."""
        side = SELL if report.side in ("2", "5", "6") else BUY
        if report.side not in ("1", "2", "5", "6"):
            raise ValueError(f"{report.exec_id}: side {report.side!r} is not buy or sell")
        open_qty = self._open.setdefault(report.cl_ord_id, report.order_qty)
        updates = []
        if report.exec_type == TRADE:
            if report.last_qty <= 0:
                raise ValueError(f"{report.exec_id}: a trade of {report.last_qty} shares")
            book = self._books.setdefault(
                (report.symbol, self.strategy_of(report.cl_ord_id)), _Book())
            book.trade(report.last_qty if side == BUY else -report.last_qty, report.last_px)
            book.fees += self.fee_per_share * report.last_qty
            self._last_fill[report.symbol] = report.last_px
            self._open[report.cl_ord_id] = max(open_qty - report.last_qty, 0)
            updates.append(RiskUpdate(report.symbol, side, report.last_qty, 0))
        elif report.exec_type in (CANCELED, REJECTED):
            left = 0 if report.exec_type == REJECTED else min(report.leaves_qty, open_qty)
            if open_qty > left:
                updates.append(RiskUpdate(report.symbol, side, 0, open_qty - left))
            self._open[report.cl_ord_id] = left
        self._check()
        return updates

    def mark(self, symbol, price):
        """Mark `symbol` to `price` (4 implied decimals; a Decimal for a half-tick mid)."""
        if price < 0:
            raise ValueError(f"{symbol}: negative mark {price}")
        self._marks[symbol] = price
        self._check()

    def position(self, symbol, strategy=None):
        return sum(b.position for (s, k), b in self._books.items()
                   if s == symbol and strategy in (None, k))

    def pnl(self, symbol=None, strategy=None):
        total = ZERO
        for (s, k), book in self._books.items():
            if symbol in (None, s) and strategy in (None, k):
                total += PnL(Decimal(book.realised) / PRICE_SCALE,
                             Decimal(book.unrealised(self._marks.get(s, self._last_fill[s])))
                             / PRICE_SCALE, book.fees)
        return total

    def snapshot(self):
        """One JSON-able dict per symbol and strategy: position, bought, sold, realised,
        unrealised, fees, total (money as decimal strings)."""
        out = []
        for (symbol, strategy), book in sorted(self._books.items()):
            p = self.pnl(symbol, strategy)
            out.append({"symbol": symbol, "strategy": strategy, "position": book.position,
                        "bought": book.bought, "sold": book.sold,
                        "realised": str(p.realised), "unrealised": str(p.unrealised),
                        "fees": str(p.fees), "total": str(p.total)})
        return out

    def _check(self):
        if self.daily_loss_limit is None or self.killed is not None:
            return
        total = self.pnl().total
        if total < -self.daily_loss_limit:
            self.killed = f"daily loss limit: P&L {total} below -{self.daily_loss_limit}"
            if self.on_kill is not None:
                self.on_kill(self.killed)
