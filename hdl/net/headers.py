"""Ethernet II, 802.1Q, IPv4 and UDP header field offsets: the one table.

Offsets are in bytes from the start of each header; every multi-byte field is big-endian.
References: IEEE 802.3 clause 3.2 (Ethernet II), IEEE 802.1Q clause 9.6 (VLAN tag),
RFC 791 section 3.1 (IPv4), RFC 768 (UDP). The gateware (`UdpReceiver`), the Python frame
builder and the reference model all read these tables; no offset is typed anywhere else.
"""

from typing import NamedTuple


class Field(NamedTuple):
    offset: int
    length: int


ETHERNET = {"dst": Field(0, 6), "src": Field(6, 6), "ethertype": Field(12, 2)}
ETHERNET_LENGTH = 14
VLAN = {"tci": Field(0, 2), "ethertype": Field(2, 2)}
VLAN_LENGTH = 4

IPV4 = {
    "version_ihl": Field(0, 1),
    "dscp_ecn": Field(1, 1),
    "total_length": Field(2, 2),
    "identification": Field(4, 2),
    "flags_fragment": Field(6, 2),
    "ttl": Field(8, 1),
    "protocol": Field(9, 1),
    "checksum": Field(10, 2),
    "src": Field(12, 4),
    "dst": Field(16, 4),
}
IPV4_MIN_LENGTH = 20

UDP = {"src_port": Field(0, 2), "dst_port": Field(2, 2), "length": Field(4, 2),
       "checksum": Field(6, 2)}
UDP_LENGTH = 8

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_VLAN = 0x8100
IP_PROTOCOL_UDP = 17
IP_MORE_FRAGMENTS = 0x2000
IP_FRAGMENT_OFFSET_MASK = 0x1FFF
