"""Order events: what the simulated exchange did with each order, in the order it did it.

The exchange emits one `OrderEvent` per OUCH outbound order message it sends (Accepted,
Executed, Canceled, Rejected); the FIX drop copy turns each into an ExecutionReport (35=8),
and reconciliation matches them against the gateware's order log. Prices are ITCH/OUCH
integers with 4 implied decimals; quantities are shares.
"""

import dataclasses
import enum


class EventKind(enum.Enum):
    ACCEPTED = "accepted"        # OUCH 'A'; FIX ExecType 0 (new)
    EXECUTED = "executed"        # OUCH 'E'; FIX ExecType F (trade)
    CANCELED = "canceled"        # OUCH 'C'; FIX ExecType 4 (IOC remainder, cancel, end of day)
    REJECTED = "rejected"        # OUCH 'J'; FIX ExecType 8


@dataclasses.dataclass(frozen=True)
class OrderEvent:
    kind: EventKind
    time_ns: int                 # exchange time, nanoseconds since midnight
    session: str                 # SoupBinTCP session the order came in on
    user_ref_num: int            # OUCH UserRefNum of the order
    cl_ord_id: str               # OUCH ClOrdID, spaces stripped
    order_id: int                # exchange order reference number (0 if rejected)
    symbol: str                  # spaces stripped
    side: str                    # OUCH side: "B", "S", "T", "E"
    order_quantity: int
    price: int                   # limit price, 4 implied decimals
    time_in_force: str           # OUCH TIF: "0" day, "3" IOC, ...
    last_quantity: int = 0       # shares in this execution
    last_price: int = 0          # price of this execution, 4 implied decimals
    match_number: int = 0        # ITCH/OUCH match number of this execution
    cumulative_quantity: int = 0
    leaves_quantity: int = 0
    reason: str = ""             # OUCH cancel reason (1 char) or reject reason (code as text)

    @property
    def event_id(self):
        """A key unique across every event of a session (FIX ExecID, 17): executions are keyed
        by their match number, the others by order and kind."""
        if self.kind is EventKind.EXECUTED:
            return f"{self.session}-M{self.match_number}"
        return f"{self.session}-{self.user_ref_num}-{self.kind.value}"
