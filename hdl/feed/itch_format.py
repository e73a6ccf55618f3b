"""Nasdaq TotalView-ITCH 5.0 message formats: the one table.

Source: Nasdaq TotalView-ITCH 5.0 specification, section 1.3 (data types) and section 4
(message formats), as summarised in PROTOCOLS.md and cross-checked against the independent
`itchfeed` parser in the test suite. Every message starts with the common 11-byte header.
The gateware decoder (`ItchDecoder`), the Python codec (`tickwire.sim.itch`) and the test
fixtures all derive from `MESSAGES`.

Field kinds: ``u`` unsigned integer, ``a`` ASCII (space padded), ``c`` one ASCII character,
``p4`` Price(4), ``p8`` Price(8), ``t`` 6-byte timestamp (ns since midnight).
"""

from typing import NamedTuple


class ItchField(NamedTuple):
    name: str
    offset: int
    length: int
    kind: str


class ItchMessage(NamedTuple):
    type: bytes
    name: str
    length: int
    fields: tuple

    def field(self, name):
        return next(f for f in self.fields if f.name == name)


HEADER = (
    ItchField("message_type", 0, 1, "c"),
    ItchField("stock_locate", 1, 2, "u"),
    ItchField("tracking_number", 3, 2, "u"),
    ItchField("timestamp", 5, 6, "t"),
)


def _message(type_, name, length, *body):
    fields = HEADER + tuple(ItchField(*f) for f in body)
    end = max(f.offset + f.length for f in fields)
    assert end == length, f"ITCH {type_!r}: fields end at {end}, length is {length}"
    return ItchMessage(type_, name, length, fields)


MESSAGES = {m.type: m for m in (
    # 4.1 System Event
    _message(b"S", "system_event", 12, ("event_code", 11, 1, "c")),
    # 4.2.1 Stock Directory
    _message(b"R", "stock_directory", 39,
             ("stock", 11, 8, "a"), ("market_category", 19, 1, "c"),
             ("financial_status", 20, 1, "c"), ("round_lot_size", 21, 4, "u"),
             ("round_lots_only", 25, 1, "c"), ("issue_classification", 26, 1, "c"),
             ("issue_subtype", 27, 2, "a"), ("authenticity", 29, 1, "c"),
             ("short_sale_threshold", 30, 1, "c"), ("ipo_flag", 31, 1, "c"),
             ("luld_tier", 32, 1, "c"), ("etp_flag", 33, 1, "c"),
             ("etp_leverage", 34, 4, "u"), ("inverse", 38, 1, "c")),
    # 4.2.2 Stock Trading Action
    _message(b"H", "stock_trading_action", 25,
             ("stock", 11, 8, "a"), ("trading_state", 19, 1, "c"),
             ("reserved", 20, 1, "c"), ("reason", 21, 4, "a")),
    # 4.2.3 Reg SHO Short Sale Price Test Restricted Indicator
    _message(b"Y", "reg_sho_restriction", 20,
             ("stock", 11, 8, "a"), ("reg_sho_action", 19, 1, "c")),
    # 4.2.4 Market Participant Position
    _message(b"L", "market_participant_position", 26,
             ("mpid", 11, 4, "a"), ("stock", 15, 8, "a"), ("primary_market_maker", 23, 1, "c"),
             ("market_maker_mode", 24, 1, "c"), ("market_participant_state", 25, 1, "c")),
    # 4.2.5.1 MWCB Decline Level
    _message(b"V", "mwcb_decline_level", 35,
             ("level1", 11, 8, "p8"), ("level2", 19, 8, "p8"), ("level3", 27, 8, "p8")),
    # 4.2.5.2 MWCB Status
    _message(b"W", "mwcb_status", 12, ("breached_level", 11, 1, "c")),
    # 4.2.6 IPO Quoting Period Update
    _message(b"K", "ipo_quoting_period_update", 28,
             ("stock", 11, 8, "a"), ("release_time", 19, 4, "u"),
             ("release_qualifier", 23, 1, "c"), ("ipo_price", 24, 4, "p4")),
    # 4.2.7 LULD Auction Collar
    _message(b"J", "luld_auction_collar", 35,
             ("stock", 11, 8, "a"), ("reference_price", 19, 4, "p4"),
             ("upper_price", 23, 4, "p4"), ("lower_price", 27, 4, "p4"),
             ("extension", 31, 4, "u")),
    # 4.2.8 Operational Halt
    _message(b"h", "operational_halt", 21,
             ("stock", 11, 8, "a"), ("market_code", 19, 1, "c"), ("halt_action", 20, 1, "c")),
    # 4.3.1 Add Order, no MPID attribution
    _message(b"A", "add_order", 36,
             ("order_ref", 11, 8, "u"), ("side", 19, 1, "c"), ("shares", 20, 4, "u"),
             ("stock", 24, 8, "a"), ("price", 32, 4, "p4")),
    # 4.3.2 Add Order with MPID attribution
    _message(b"F", "add_order_mpid", 40,
             ("order_ref", 11, 8, "u"), ("side", 19, 1, "c"), ("shares", 20, 4, "u"),
             ("stock", 24, 8, "a"), ("price", 32, 4, "p4"), ("attribution", 36, 4, "a")),
    # 4.4.1 Order Executed
    _message(b"E", "order_executed", 31,
             ("order_ref", 11, 8, "u"), ("executed_shares", 19, 4, "u"),
             ("match_number", 23, 8, "u")),
    # 4.4.2 Order Executed with Price
    _message(b"C", "order_executed_with_price", 36,
             ("order_ref", 11, 8, "u"), ("executed_shares", 19, 4, "u"),
             ("match_number", 23, 8, "u"), ("printable", 31, 1, "c"),
             ("execution_price", 32, 4, "p4")),
    # 4.4.3 Order Cancel
    _message(b"X", "order_cancel", 23,
             ("order_ref", 11, 8, "u"), ("cancelled_shares", 19, 4, "u")),
    # 4.4.4 Order Delete
    _message(b"D", "order_delete", 19, ("order_ref", 11, 8, "u")),
    # 4.4.5 Order Replace
    _message(b"U", "order_replace", 35,
             ("original_ref", 11, 8, "u"), ("new_ref", 19, 8, "u"), ("shares", 27, 4, "u"),
             ("price", 31, 4, "p4")),
    # 4.5.1 Trade (non-cross)
    _message(b"P", "trade", 44,
             ("order_ref", 11, 8, "u"), ("side", 19, 1, "c"), ("shares", 20, 4, "u"),
             ("stock", 24, 8, "a"), ("price", 32, 4, "p4"), ("match_number", 36, 8, "u")),
    # 4.5.2 Cross Trade
    _message(b"Q", "cross_trade", 40,
             ("shares", 11, 8, "u"), ("stock", 19, 8, "a"), ("cross_price", 27, 4, "p4"),
             ("match_number", 31, 8, "u"), ("cross_type", 39, 1, "c")),
    # 4.5.3 Broken Trade
    _message(b"B", "broken_trade", 19, ("match_number", 11, 8, "u")),
    # 4.6 Net Order Imbalance Indicator
    _message(b"I", "noii", 50,
             ("paired_shares", 11, 8, "u"), ("imbalance_shares", 19, 8, "u"),
             ("imbalance_direction", 27, 1, "c"), ("stock", 28, 8, "a"),
             ("far_price", 36, 4, "p4"), ("near_price", 40, 4, "p4"),
             ("current_reference_price", 44, 4, "p4"), ("cross_type", 48, 1, "c"),
             ("price_variation_indicator", 49, 1, "c")),
    # 4.7 Retail Price Improvement Indicator
    _message(b"N", "retail_price_improvement", 20,
             ("stock", 11, 8, "a"), ("interest_flag", 19, 1, "c")),
    # 4.8 Direct Listing with Capital Raise Price Discovery
    _message(b"O", "dlcr_price_discovery", 48,
             ("stock", 11, 8, "a"), ("open_eligibility_status", 19, 1, "c"),
             ("minimum_allowable_price", 20, 4, "p4"), ("maximum_allowable_price", 24, 4, "p4"),
             ("near_execution_price", 28, 4, "p4"), ("near_execution_time", 32, 8, "u"),
             ("lower_price_range_collar", 40, 4, "p4"), ("upper_price_range_collar", 44, 4, "p4")),
)}

#: The shortest message of the protocol; the MoldUDP64 de-framer refuses anything shorter,
#: which also bounds it to at most one message ending per 64-bit beat.
MIN_LENGTH = min(m.length for m in MESSAGES.values())
#: Bytes of a message the gateware keeps: enough for every field it decodes.
DECODED_BYTES = 40
#: Order-book events and the host-facing control messages the gateware decodes.
BOOK_TYPES = b"AFECXDU"
CONTROL_TYPES = b"SRH"
