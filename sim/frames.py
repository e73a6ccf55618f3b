"""Ethernet II / 802.1Q / IPv4 / UDP frame builder, from the table in `tickwire.hdl.net.headers`.

Independent of the gateware; the tests check it byte for byte against scapy.
"""

from tickwire.hdl.net import headers as h


def ones_complement_sum(data):
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ipv4_checksum(header):
    return ~ones_complement_sum(header) & 0xFFFF


def _put(buffer, table, name, value):
    field = table[name]
    buffer[field.offset:field.offset + field.length] = value.to_bytes(field.length, "big")


def multicast_mac(group):
    """The 01:00:5e MAC of an IPv4 multicast group (RFC 1112, section 6.4)."""
    return bytes([0x01, 0x00, 0x5E]) + (group & 0x7FFFFF).to_bytes(3, "big")


def ip(text):
    parts = [int(p) for p in text.split(".")]
    return int.from_bytes(bytes(parts), "big")


DEFAULT_SOURCE_IP = ip("10.0.0.1")
DEFAULT_SOURCE_MAC = bytes.fromhex("020000000001")


def udp_frame(payload, *, dst_ip, dst_port, src_ip=DEFAULT_SOURCE_IP, src_port=40000,
              src_mac=DEFAULT_SOURCE_MAC, dst_mac=None, vlan=None,
              ip_options=b"", ttl=64, identification=0, udp_checksum=True):
    """A complete frame without FCS; `vlan` is a VLAN id to add an 802.1Q tag."""
    if len(ip_options) % 4:
        raise ValueError("IPv4 options must be a multiple of 4 bytes")
    udp = bytearray(h.UDP_LENGTH)
    _put(udp, h.UDP, "src_port", src_port)
    _put(udp, h.UDP, "dst_port", dst_port)
    _put(udp, h.UDP, "length", h.UDP_LENGTH + len(payload))
    ihl_bytes = h.IPV4_MIN_LENGTH + len(ip_options)
    ipv4 = bytearray(h.IPV4_MIN_LENGTH)
    _put(ipv4, h.IPV4, "version_ihl", 0x40 | ihl_bytes // 4)
    _put(ipv4, h.IPV4, "total_length", ihl_bytes + len(udp) + len(payload))
    _put(ipv4, h.IPV4, "identification", identification)
    _put(ipv4, h.IPV4, "ttl", ttl)
    _put(ipv4, h.IPV4, "protocol", h.IP_PROTOCOL_UDP)
    _put(ipv4, h.IPV4, "src", src_ip)
    _put(ipv4, h.IPV4, "dst", dst_ip)
    ipv4 += ip_options
    _put(ipv4, h.IPV4, "checksum", ipv4_checksum(ipv4))
    if udp_checksum:
        pseudo = (src_ip.to_bytes(4, "big") + dst_ip.to_bytes(4, "big")
                  + bytes([0, h.IP_PROTOCOL_UDP]) + len(udp + payload).to_bytes(2, "big"))
        checksum = ipv4_checksum(pseudo + udp + payload) or 0xFFFF
        _put(udp, h.UDP, "checksum", checksum)
    eth = bytearray(h.ETHERNET_LENGTH)
    eth[0:6] = multicast_mac(dst_ip) if dst_mac is None else dst_mac
    eth[6:12] = src_mac
    if vlan is None:
        _put(eth, h.ETHERNET, "ethertype", h.ETHERTYPE_IPV4)
        tag = b""
    else:
        _put(eth, h.ETHERNET, "ethertype", h.ETHERTYPE_VLAN)
        tag = bytearray(h.VLAN_LENGTH)
        _put(tag, h.VLAN, "tci", vlan & 0xFFF)
        _put(tag, h.VLAN, "ethertype", h.ETHERTYPE_IPV4)
    frame = bytes(eth) + bytes(tag) + bytes(ipv4) + bytes(udp) + bytes(payload)
    return frame.ljust(60, b"\0")


def beats(frame, bad=False, width=8):
    """Split a frame into MAC-client beats: (data int, keep mask, first, last, bad)."""
    out = []
    for start in range(0, len(frame), width):
        chunk = frame[start:start + width]
        last = start + width >= len(frame)
        out.append((int.from_bytes(chunk, "little"), (1 << len(chunk)) - 1,
                    start == 0, last, bad and last))
    return out
