"""Records and parameters of the order book: `BookUpdate` (to the strategy), host ports.

Every layout here is derived from a `BookParameters`, so the gateware, the reference model
(`tickwire.sim.book_model`) and the tests agree on widths by construction.
"""

from typing import NamedTuple

from amaranth.hdl import unsigned
from amaranth.lib import data

PRICE_BITS = 32    # ITCH Price(4)
SHARES_BITS = 32   # ITCH shares; a level's aggregate is refused (counted) rather than wrapped

#: One counter per reason an event did not apply as sent, plus throughput counters.
BOOK_COUNTERS = (
    "events",            # events taken from the input FIFO
    "updates",           # BookUpdates emitted
    "unsubscribed",      # events for a locate the host did not subscribe (ignored cheaply)
    "ref_out_of_range",  # an order reference >= 2**ref_bits (the table cannot name it)
    "unknown_ref",       # E C X D U for a reference not in the table
    "locate_mismatch",   # an event naming a live order of another symbol
    "duplicate_ref",     # A or U adding a reference already live
    "bad_shares",        # A or U with zero shares
    "over_execution",    # E C X for more shares than remain (the order is removed)
    "table_full",        # A or U whose hash set has no free way (the order is not held)
    "level_saturated",   # an add that would take a level's aggregate past 2**32 - 1
    "level_overflow",    # an add that went into, or pushed a level into, the hidden zone
    "level_missing",     # a removal at a price neither stored nor hidden (stale order)
    "fifo_overflow",     # an event lost because the input FIFO was full
)


class Alarms(data.Struct):
    """Sticky until the host writes ``clear_alarms``."""
    integrity: 1   # unknown ref, locate mismatch, duplicate, zero shares, over-execution, missing
    capacity: 1    # table full, reference out of range, level saturated, level overflow
    overflow: 1    # an event was lost at the input FIFO


class BookParameters(NamedTuple):
    """Build parameters. The defaults are the ECP5 (LFE5UM5G-85F) build: see `OrderBook`."""
    symbols: int = 1024       # subscription slots (books held)
    locates: int = 16384      # stock locates the subscription map can name (0 .. locates-1)
    depth: int = 10           # price levels stored per symbol and side
    visible: int = 8          # levels shown on BookUpdate and snapshots (top N)
    orders: int = 16384       # order-table capacity (ways x sets)
    ways: int = 8             # associativity: a reference may live in any way of its set
    ref_bits: int = 36        # order references held exactly (larger ones are refused)
    fifo_depth: int = 64      # input FIFO (the feed has no back-pressure)

    @property
    def sets(self):
        return self.orders // self.ways

    @property
    def set_bits(self):
        return (self.sets - 1).bit_length()

    @property
    def slot_bits(self):
        return max(1, (self.symbols - 1).bit_length())

    @property
    def locate_bits(self):
        return max(1, (self.locates - 1).bit_length())

    @property
    def tag_bits(self):
        return self.ref_bits - self.set_bits

    @property
    def count_bits(self):
        return self.orders.bit_length()   # a level or hidden zone never holds more orders

    def check(self):
        for name in ("symbols", "locates", "sets"):
            value = getattr(self, name)
            if value & (value - 1) or value < 1:
                raise ValueError(f"{name} must be a power of two, not {value}")
        if self.sets < 2:
            raise ValueError("need at least two sets")
        if self.orders % self.ways:
            raise ValueError("orders must be a multiple of ways")
        if not 1 <= self.visible <= self.depth:
            raise ValueError("need 1 <= visible <= depth")
        if self.tag_bits < 1 or self.ref_bits > 64:
            raise ValueError("ref_bits must exceed the set index and be at most 64")
        return self


def level_layout(p):
    return data.StructLayout({"price": unsigned(PRICE_BITS), "shares": unsigned(SHARES_BITS),
                              "orders": unsigned(p.count_bits)})


def side_layout(p):
    """One side of one symbol: `depth` levels best first (empty ones, all zero, at the end),
    and the hidden zone: how many live orders are not in the levels and the best price among
    them (`boundary`, zero when `hidden` is zero)."""
    return data.StructLayout({"levels": data.ArrayLayout(level_layout(p), p.depth),
                              "hidden": unsigned(p.count_bits),
                              "boundary": unsigned(PRICE_BITS)})


def row_layout(p):
    return data.StructLayout({"bid": side_layout(p), "ask": side_layout(p)})


def entry_layout(p):
    """One order-table entry. Per entry: 1 + tag + slot + 1 + 32 + 32 bits."""
    return data.StructLayout({"valid": 1, "tag": unsigned(p.tag_bits),
                              "slot": unsigned(p.slot_bits), "side": 1,
                              "price": unsigned(PRICE_BITS), "shares": unsigned(SHARES_BITS)})


def update_layout(p):
    """`BookUpdate`: one per event that changed a subscribed symbol's visible book.

    ``slot`` is the book the host mapped ``locate`` to (downstream per-symbol tables are
    indexed by it). ``levels`` are the top ``visible`` levels of ``side`` after the event; bit i of
    ``changed`` is set when level i differs from before. ``complete`` (bit 0 bid, bit 1 ask)
    is clear when a side shows fewer levels than it has (some are in the hidden zone)."""
    return data.StructLayout({
        "locate": unsigned(16), "slot": unsigned(p.slot_bits), "side": 1,
        "changed": unsigned(p.visible), "complete": 2,
        "bid_price": unsigned(PRICE_BITS), "bid_shares": unsigned(SHARES_BITS),
        "ask_price": unsigned(PRICE_BITS), "ask_shares": unsigned(SHARES_BITS),
        "levels": data.ArrayLayout(level_layout(p), p.visible),
        "timestamp": unsigned(48), "sequence": unsigned(64)})


def snapshot_layout(p):
    """The visible levels of both sides of one locate, read back for the host."""
    return data.StructLayout({
        "locate": unsigned(16), "subscribed": 1, "complete": 2,
        "bid": data.ArrayLayout(level_layout(p), p.visible),
        "ask": data.ArrayLayout(level_layout(p), p.visible)})


def subscribe_layout(p):
    """Host subscription write: map `locate` to book `slot` (and clear that book), or unmap."""
    return data.StructLayout({"locate": unsigned(16), "slot": unsigned(p.slot_bits),
                              "enable": 1})


def set_index(p, ref):
    """The hash set of a reference: low bits XOR the next bits (spreads strided references).
    With the tag (ref >> set_bits) it determines the reference exactly."""
    mask = p.sets - 1
    return (ref & mask) ^ ((ref >> p.set_bits) & mask)
