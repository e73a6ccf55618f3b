"""One symbol's limit order book with price-time priority: the market's orders and ours.

Time priority is the order of arrival at the exchange (`RestingOrder.arrival`); a replaced
order arrives anew. Matching never changes a price: every fill is at the resting order's.
"""

import bisect
import dataclasses

__all__ = ["Book", "RestingOrder"]


@dataclasses.dataclass
class RestingOrder:
    ref: int                 # ITCH order reference number
    side: str                # "B" or "S" (OUCH's sell short sides rest as "S")
    price: int
    shares: int              # open shares
    arrival: int
    owner: object = None     # None for a market order (from the ITCH flow), else ours


class Book:
    def __init__(self):
        self.orders = {}                        # ref -> RestingOrder
        self._levels = {"B": {}, "S": {}}       # side -> price -> {ref: order} in arrival order
        self._prices = {"B": [], "S": []}       # side -> ascending prices with orders

    def add(self, order):
        if order.ref in self.orders:
            raise ValueError(f"order reference {order.ref} is already in the book")
        if order.shares <= 0:
            raise ValueError(f"order {order.ref} has {order.shares} shares")
        levels = self._levels[order.side]
        if order.price not in levels:
            levels[order.price] = {}
            bisect.insort(self._prices[order.side], order.price)
        levels[order.price][order.ref] = order
        self.orders[order.ref] = order

    def reduce(self, ref, shares):
        """Take up to `shares` from order `ref` (removing it at 0); returns the shares taken."""
        order = self.orders[ref]
        taken = min(shares, order.shares)
        order.shares -= taken
        if order.shares == 0:
            self.remove(ref)
        return taken

    def remove(self, ref):
        order = self.orders.pop(ref)
        level = self._levels[order.side][order.price]
        del level[ref]
        if not level:
            del self._levels[order.side][order.price]
            prices = self._prices[order.side]
            del prices[bisect.bisect_left(prices, order.price)]
        return order

    def priority(self, side):
        """Resting orders of `side`, best first (best price, then earliest arrival)."""
        prices = self._prices[side]
        for price in (reversed(prices) if side == "B" else prices):
            yield from self._levels[side][price].values()

    def match(self, side, limit, shares, eligible=None):
        """An incoming `side` order for `shares` at `limit` takes the contra side's crossing
        orders (only those `eligible(order)` accepts, if given), best first. Returns the
        fills as (resting order, shares) with the book already reduced."""
        fills = []
        for order in self.priority("S" if side == "B" else "B"):
            if shares == 0 or (order.price > limit if side == "B" else order.price < limit):
                break
            if eligible is not None and not eligible(order):
                continue
            take = min(shares, order.shares)
            fills.append((order, take))
            shares -= take
        for order, take in fills:
            self.reduce(order.ref, take)
        return fills
