"""The simulated exchange: order entry (SoupBinTCP/OUCH 5.0), matching, and the order events
its drop copy and reports are made from (`tickwire.sim.exchange.events`).

- `Exchange` (`exchange`): the books, built from the ITCH flow, and the matching of our orders;
- `OrderEntryServer` (`server`): the SoupBinTCP order-entry port on loopback TCP;
- `RerequestServer` (`rerequest`): the MoldUDP64 re-request server on loopback UDP;
- `serve_in_thread`: runs those servers on an event loop in a background thread.
"""

from .events import EventKind, OrderEvent
from .exchange import Exchange
from .rerequest import RerequestServer
from .server import OrderEntryServer, serve_in_thread

__all__ = ["EventKind", "Exchange", "OrderEntryServer", "OrderEvent", "RerequestServer",
           "serve_in_thread"]
