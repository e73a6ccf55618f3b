"""The simulated exchange: order entry (SoupBinTCP/OUCH 5.0), matching, and the order events
its drop copy and reports are made from (`tickwire.sim.exchange.events`).

- `Exchange` (`exchange`): the books, built from the ITCH flow, and the matching of our orders;
- `OrderEntryServer` (`server`): the SoupBinTCP order-entry port on loopback TCP;
- `RerequestServer` (`rerequest`): the MoldUDP64 re-request server on loopback UDP;
- `serve_in_thread`: runs those servers on an event loop in a background thread.

Wiring, as the closed loop does it::

    exchange = Exchange(DEFAULT_SYMBOLS)
    server = OrderEntryServer(exchange, session="TWIRE00001", username="tw", password="secret")
    feed = []                                    # the feed's ITCH messages, sequence 1 first
    rerequest = RerequestServer(b"20261122A1", feed)
    with serve_in_thread(server, rerequest):     # ephemeral ports: server.port, rerequest.port
        for message in order_flow(20_000):
            feed += exchange.published()         # what our orders did since the last message
            feed += exchange.apply_market(message)
        exchange.end_of_day()
        server.end_session()
        feed += exchange.published()
    exchange.events                              # one OrderEvent per OUCH order message sent
"""

from .events import EventKind, OrderEvent
from .exchange import Exchange
from .rerequest import RerequestServer
from .server import OrderEntryServer, serve_in_thread

__all__ = ["EventKind", "Exchange", "OrderEntryServer", "OrderEvent", "RerequestServer",
           "serve_in_thread"]
