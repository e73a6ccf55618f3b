"""The wire formats of an order frame: TCP, SoupBinTCP and OUCH 5.0 Enter Order, the one table.

Offsets are in bytes from the start of each header or message; every multi-byte field is
big-endian. References:

- RFC 9293 section 3.1 (TCP header), RFC 791 section 3.1 (IPv4 flags; the IPv4 and Ethernet
  tables are `tickwire.hdl.net.headers`).
- SoupBinTCP 3.00 section 2.1 (packet length counts the bytes after itself, then packet type)
  and 2.3 (packets sent by the client: Unsequenced Data, type ``U``).
- Nasdaq OUCH 5.0 Order Entry Specification (April 2023), section 2.1 "Type O - Enter Order"
  (offsets and lengths as in its table), section 1.2 (alpha fields left-justified, padded on
  the right with spaces; numeric fields binary big-endian).

The gateware (`OrderEncoder`), the Python reference model (`tickwire.sim.ouch`) and its
decoder read these tables; no offset is typed anywhere else.
"""

from tickwire.hdl.net.headers import ETHERNET_LENGTH, IPV4_MIN_LENGTH, Field

TCP = {
    "src_port": Field(0, 2),
    "dst_port": Field(2, 2),
    "sequence": Field(4, 4),
    "ack": Field(8, 4),
    "data_offset": Field(12, 1),   # upper nibble: header length in 32-bit words
    "flags": Field(13, 1),
    "window": Field(14, 2),
    "checksum": Field(16, 2),
    "urgent": Field(18, 2),
}
TCP_LENGTH = 20
IP_PROTOCOL_TCP = 6
IP_DONT_FRAGMENT = 0x4000
TCP_FLAG_PSH = 0x08
TCP_FLAG_ACK = 0x10

SOUPBIN = {"length": Field(0, 2), "type": Field(2, 1)}
SOUPBIN_HEADER_LENGTH = 3
SOUPBIN_UNSEQUENCED = ord("U")

#: OUCH 5.0 section 2.1, "Type O - Enter Order".
ENTER_ORDER = {
    "type": Field(0, 1),
    "user_ref_num": Field(1, 4),
    "side": Field(5, 1),
    "quantity": Field(6, 4),
    "symbol": Field(10, 8),
    "price": Field(18, 8),
    "time_in_force": Field(26, 1),
    "display": Field(27, 1),
    "capacity": Field(28, 1),
    "intermarket_sweep": Field(29, 1),
    "cross_type": Field(30, 1),
    "clordid": Field(31, 14),
    "appendage_length": Field(45, 2),
}
ENTER_ORDER_LENGTH = 47      # without optional appendages
ENTER_ORDER_TYPE = ord("O")
#: Fields holding ASCII text (alpha) rather than binary numbers.
ENTER_ORDER_ALPHA = ("type", "side", "symbol", "time_in_force", "display", "capacity",
                     "intermarket_sweep", "cross_type", "clordid")
SIDE_CODES = {0: ord("B"), 1: ord("S")}           # tickwire Side.BUY / Side.SELL
TIME_IN_FORCE_CODES = {0: ord("0"), 1: ord("3")}  # tickwire TimeInForce.DAY / IOC

# Where each layer starts in an order frame (no VLAN tag, no IPv4 or TCP options).
IPV4_OFFSET = ETHERNET_LENGTH
TCP_OFFSET = IPV4_OFFSET + IPV4_MIN_LENGTH
SOUPBIN_OFFSET = TCP_OFFSET + TCP_LENGTH
OUCH_OFFSET = SOUPBIN_OFFSET + SOUPBIN_HEADER_LENGTH
TCP_PAYLOAD_LENGTH = SOUPBIN_HEADER_LENGTH + ENTER_ORDER_LENGTH          # 50
IPV4_TOTAL_LENGTH = IPV4_MIN_LENGTH + TCP_LENGTH + TCP_PAYLOAD_LENGTH     # 90
FRAME_LENGTH = ETHERNET_LENGTH + IPV4_TOTAL_LENGTH                        # 104

#: ClOrdID: a 6-character host-set prefix, then the UserRefNum as 8 upper-case hex digits.
CLORDID_PREFIX_LENGTH = 6
CLORDID_HEX_DIGITS = ENTER_ORDER["clordid"].length - CLORDID_PREFIX_LENGTH
