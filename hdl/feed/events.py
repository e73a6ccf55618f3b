"""Normalised records of the feed path: `BookEvent` (to the book), `FeedNotice` (to the host)."""

from amaranth.lib import data, enum


class BookEventKind(enum.Enum, shape=3):
    ADD = 1               # ITCH A and F
    EXECUTE = 2           # ITCH E
    EXECUTE_AT_PRICE = 3  # ITCH C: `price` is the print, not the order's price
    CANCEL = 4            # ITCH X
    DELETE = 5            # ITCH D
    REPLACE = 6           # ITCH U: `order_ref` is the original, `new_ref` the new reference


class Side(enum.Enum, shape=1):
    BUY = 0
    SELL = 1


class BookEvent(data.Struct):
    """One order-book change. Fields a kind does not use are zero."""
    kind: BookEventKind
    side: Side
    printable: 1
    feed: 3
    locate: 16
    shares: 32
    price: 32
    timestamp: 48
    order_ref: 64
    new_ref: 64
    sequence: 64


class NoticeKind(enum.Enum, shape=4):
    GAP = 1               # sequence = first missing, value = number missing
    END_OF_SESSION = 2    # sequence = the end-of-session packet's sequence
    SYSTEM_EVENT = 3      # code = event code (O S Q M E C)
    STOCK_DIRECTORY = 4   # locate, value = symbol (8 ASCII, big-endian), code = market category
    TRADING_ACTION = 5    # locate, value = symbol, code = trading state (H P Q T)
    BAD_MESSAGE = 6       # code = message type, value = its length: wrong length or bad field


class FeedNotice(data.Struct):
    """A host-facing event: sequencing (gap, end of session) or a control message."""
    kind: NoticeKind
    feed: 3
    code: 8
    locate: 16
    timestamp: 48
    sequence: 64
    value: 64
