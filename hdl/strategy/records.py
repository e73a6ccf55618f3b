"""What flows between the book, the strategies, the risk gate and the order encoder.

`OrderIntent` is the one record a strategy produces, the risk gate checks and the order
encoder puts on the wire; `strategy_signature` is the port set every strategy implements, so
a user's strategy drops into `TickToTrade` in place of the shipped ones.
"""

from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.book.records import update_layout
from tickwire.hdl.feed.events import Side
from tickwire.hdl.feed.itch import event_signature

__all__ = ["OrderIntent", "Side", "TimeInForce", "strategy_signature"]


class TimeInForce(enum.Enum, shape=1):
    """The two OUCH 5.0 times in force tickwire sends (Enter Order offset 26)."""
    DAY = 0   # OUCH '0'
    IOC = 1   # OUCH '3'


class OrderIntent(data.Struct):
    """One order a strategy wants to send.

    ``slot`` is the book slot of the symbol (from `BookUpdate.slot`): the risk gate's and the
    order encoder's per-symbol tables are indexed by it. ``price`` is ITCH Price(4) (4 implied
    decimals). ``sequence`` is the MoldUDP64 sequence number of the market data message that
    triggered the intent (`BookUpdate.sequence`), so every order can be traced to its cause.
    ``arrival`` is the cycle the last byte of that message was at MAC rx: strategies leave it
    zero, `TickToTrade` fills it in on the way to the risk gate."""
    slot: 16
    locate: 16
    side: Side
    tif: TimeInForce
    strategy: 4
    quantity: 32
    price: 32
    sequence: 64
    arrival: 64


def strategy_signature(book_parameters):
    """The ports of every strategy, for a book built with `book_parameters`.

    updates : In(BookUpdate stream, always ready): every change of a subscribed book.
    events : In(BookEvent stream, always ready): the raw feed events, for strategies that act
        before the book has settled (the same events the book takes, the cycle it takes them).
    intents : Out(OrderIntent stream): the risk gate is always ready in `TickToTrade`, but a
        strategy must hold an intent until ``ready``.
    """
    return wiring.Signature({
        "updates": In(stream.Signature(update_layout(book_parameters), always_ready=True)),
        "events": In(event_signature()),
        "intents": Out(stream.Signature(OrderIntent)),
    })
