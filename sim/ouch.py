"""OUCH 5.0 Enter Order over SoupBinTCP over TCP/IPv4/Ethernet: codecs and the encoder's model.

Independent of the gateware: frames are assembled from the field tables
(`tickwire.hdl.order.formats`, `tickwire.hdl.net.headers`) with plain Python integers, and
checksums are computed over the finished bytes. The Enter Order codec is usable on its own
(the exchange simulator decodes what the gateware sends with `decode_enter_order`).
"""

import dataclasses

from tickwire.hdl.net import headers as h
from tickwire.hdl.order import formats as f

from .frames import ipv4_checksum

__all__ = ["EncoderModel", "LogEntry", "Template", "clordid", "decode_enter_order",
           "decode_soupbin", "encode_enter_order", "order_frame", "soupbin_unsequenced"]


def _put(buffer, table, name, value, base=0):
    field = table[name]
    start = base + field.offset
    if isinstance(value, (bytes, bytearray)):
        if len(value) != field.length:
            raise ValueError(f"{name}: {len(value)} bytes, the field has {field.length}")
        buffer[start:start + field.length] = value
    else:
        buffer[start:start + field.length] = value.to_bytes(field.length, "big")


def _alpha(value, length):
    if isinstance(value, str):
        value = value.encode("ascii")
    if isinstance(value, int):
        value = value.to_bytes(length, "big")
    if len(value) > length:
        raise ValueError(f"{value!r} is longer than {length} bytes")
    return bytes(value).ljust(length, b" ")


# OUCH 5.0 Enter Order --------------------------------------------------------------------------

def encode_enter_order(*, user_ref_num, side, quantity, symbol, price, time_in_force,
                       display, capacity, intermarket_sweep, cross_type, clordid):
    """The 47 bytes of an Enter Order with no appendage. Alpha fields are one-character
    strings or bytes (``side="B"``); ``symbol`` and ``clordid`` are space padded."""
    out = bytearray(f.ENTER_ORDER_LENGTH)
    _put(out, f.ENTER_ORDER, "type", b"O")
    _put(out, f.ENTER_ORDER, "user_ref_num", user_ref_num)
    for name, value in (("side", side), ("time_in_force", time_in_force), ("display", display),
                        ("capacity", capacity), ("intermarket_sweep", intermarket_sweep),
                        ("cross_type", cross_type)):
        _put(out, f.ENTER_ORDER, name, _alpha(value, 1))
    _put(out, f.ENTER_ORDER, "quantity", quantity)
    _put(out, f.ENTER_ORDER, "symbol", _alpha(symbol, 8))
    _put(out, f.ENTER_ORDER, "price", price)
    _put(out, f.ENTER_ORDER, "clordid", _alpha(clordid, 14))
    _put(out, f.ENTER_ORDER, "appendage_length", 0)
    return bytes(out)


def decode_enter_order(message):
    """An Enter Order's fields by name: alpha fields as bytes, numbers as ints, ``appendage``
    the raw optional appendage. Raises ValueError on a wrong type or length."""
    message = bytes(message)
    if len(message) < f.ENTER_ORDER_LENGTH or message[0] != f.ENTER_ORDER_TYPE:
        raise ValueError("not an OUCH 5.0 Enter Order")
    out = {}
    for name, field in f.ENTER_ORDER.items():
        raw = message[field.offset:field.offset + field.length]
        out[name] = raw if name in f.ENTER_ORDER_ALPHA else int.from_bytes(raw, "big")
    appendage = message[f.ENTER_ORDER_LENGTH:]
    if len(appendage) != out["appendage_length"]:
        raise ValueError("appendage length does not match the message length")
    out["appendage"] = appendage
    return out


def clordid(prefix, user_ref_num):
    """tickwire's ClOrdID rule: the 6-character prefix, then the UserRefNum as 8 upper-case hex
    digits. UserRefNums are unique per session, so ClOrdIDs are too."""
    return _alpha(prefix, f.CLORDID_PREFIX_LENGTH) + f"{user_ref_num:08X}".encode()


# SoupBinTCP ------------------------------------------------------------------------------------

def soupbin_unsequenced(message):
    """A SoupBinTCP Unsequenced Data packet (``U``) carrying `message`."""
    out = bytearray(f.SOUPBIN_HEADER_LENGTH)
    _put(out, f.SOUPBIN, "length", len(message) + 1)
    _put(out, f.SOUPBIN, "type", f.SOUPBIN_UNSEQUENCED)
    return bytes(out) + bytes(message)


def decode_soupbin(stream):
    """Split a SoupBinTCP byte stream into (type, payload) packets; raises on a cut packet."""
    packets, offset = [], 0
    while offset < len(stream):
        if offset + 3 > len(stream):
            raise ValueError("SoupBinTCP header cut off")
        length = int.from_bytes(stream[offset:offset + 2], "big")
        if length < 1 or offset + 2 + length > len(stream):
            raise ValueError("SoupBinTCP packet cut off")
        packets.append((bytes(stream[offset + 2:offset + 3]),
                        bytes(stream[offset + 3:offset + 2 + length])))
        offset += 2 + length
    return packets


# The frame -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Template:
    """What the host loads for its order session (see `OrderTemplate` in the gateware)."""
    dst_mac: int = 0x02_00_00_00_00_fe
    src_mac: int = 0x02_00_00_00_00_01
    src_ip: int = 0x0A_00_00_01
    dst_ip: int = 0x0A_00_00_FE
    src_port: int = 50000
    dst_port: int = 15000
    ttl: int = 64
    display: bytes = b"Y"
    capacity: bytes = b"P"
    intermarket_sweep: bytes = b"N"
    cross_type: bytes = b"N"
    clordid_prefix: bytes = b"TWIRE1"
    ack: int = 1
    window: int = 0xFFFF


def order_frame(*, template, symbol, side, quantity, price, tif, tcp_sequence, user_ref_num,
                ip_id):
    """The 104 bytes (no FCS) of one order frame. ``side`` 0 buy / 1 sell, ``tif`` 0 day /
    1 IOC (tickwire's encodings), ``price`` the ITCH Price(4), zero-extended."""
    t = template
    ouch = encode_enter_order(
        user_ref_num=user_ref_num, side=bytes([f.SIDE_CODES[side]]), quantity=quantity,
        symbol=_alpha(symbol, 8), price=price, time_in_force=bytes([f.TIME_IN_FORCE_CODES[tif]]),
        display=t.display, capacity=t.capacity, intermarket_sweep=t.intermarket_sweep,
        cross_type=t.cross_type, clordid=clordid(t.clordid_prefix, user_ref_num))
    payload = soupbin_unsequenced(ouch)
    tcp = bytearray(f.TCP_LENGTH)
    _put(tcp, f.TCP, "src_port", t.src_port)
    _put(tcp, f.TCP, "dst_port", t.dst_port)
    _put(tcp, f.TCP, "sequence", tcp_sequence)
    _put(tcp, f.TCP, "ack", t.ack)
    _put(tcp, f.TCP, "data_offset", (f.TCP_LENGTH // 4) << 4)
    _put(tcp, f.TCP, "flags", f.TCP_FLAG_PSH | f.TCP_FLAG_ACK)
    _put(tcp, f.TCP, "window", t.window)
    pseudo = (t.src_ip.to_bytes(4, "big") + t.dst_ip.to_bytes(4, "big")
              + bytes([0, f.IP_PROTOCOL_TCP]) + (len(tcp) + len(payload)).to_bytes(2, "big"))
    _put(tcp, f.TCP, "checksum", ipv4_checksum(pseudo + tcp + payload))
    ip = bytearray(h.IPV4_MIN_LENGTH)
    _put(ip, h.IPV4, "version_ihl", 0x40 | h.IPV4_MIN_LENGTH // 4)
    _put(ip, h.IPV4, "total_length", len(ip) + len(tcp) + len(payload))
    _put(ip, h.IPV4, "identification", ip_id)
    _put(ip, h.IPV4, "flags_fragment", f.IP_DONT_FRAGMENT)
    _put(ip, h.IPV4, "ttl", t.ttl)
    _put(ip, h.IPV4, "protocol", f.IP_PROTOCOL_TCP)
    _put(ip, h.IPV4, "src", t.src_ip)
    _put(ip, h.IPV4, "dst", t.dst_ip)
    _put(ip, h.IPV4, "checksum", ipv4_checksum(ip))
    eth = bytearray(h.ETHERNET_LENGTH)
    _put(eth, h.ETHERNET, "dst", t.dst_mac)
    _put(eth, h.ETHERNET, "src", t.src_mac)
    _put(eth, h.ETHERNET, "ethertype", h.ETHERTYPE_IPV4)
    return bytes(eth + ip + tcp + payload)


# The encoder's behaviour -----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LogEntry:
    """What the encoder reports for one order (the fields of the gateware's `OrderLogEntry`
    that do not depend on timing)."""
    sent: bool
    user_ref_num: int
    tcp_sequence: int
    length: int
    intent: dict


class EncoderModel:
    """The encoder's session state: each sent order takes the next UserRefNum, TCP sequence
    number and IPv4 identification; a flushed order takes none of them."""

    def __init__(self, template, symbols, *, tcp_sequence=0, user_ref_num=1, ip_id=0):
        self.template, self.symbols = template, symbols
        self.tcp_sequence, self.user_ref_num, self.ip_id = tcp_sequence, user_ref_num, ip_id

    def send(self, intent):
        """The frame for `intent` (a dict of `OrderIntent` fields) and its log entry."""
        frame = order_frame(template=self.template, symbol=self.symbols[intent["slot"]],
                            side=intent["side"], quantity=intent["quantity"],
                            price=intent["price"], tif=intent["tif"],
                            tcp_sequence=self.tcp_sequence, user_ref_num=self.user_ref_num,
                            ip_id=self.ip_id)
        entry = LogEntry(True, self.user_ref_num, self.tcp_sequence, f.TCP_PAYLOAD_LENGTH,
                         dict(intent))
        self.tcp_sequence = (self.tcp_sequence + f.TCP_PAYLOAD_LENGTH) & 0xFFFFFFFF
        self.user_ref_num = (self.user_ref_num + 1) & 0xFFFFFFFF
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        return frame, entry

    def flush(self, intent):
        return LogEntry(False, self.user_ref_num, self.tcp_sequence, 0, dict(intent))
