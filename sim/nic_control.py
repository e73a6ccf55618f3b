"""The board side of the UDP control channel (`tickwire.host.udp_control`) on a real socket.

`ControlEndpoint` is the reference model: it applies the channel's rules in front of a register
bus and is the executable specification of the gateware (`tickwire.hdl.net.control`).
`GatewareEndpoint` is the gateware itself: each datagram goes into a `SimulatedNic`'s MAC rx as
an Ethernet/IPv4/UDP frame, and the reply is whatever the device's `ControlResponder` sends at
MAC tx. Either endpoint's ``handle(payload, source)`` returns the reply (or None: dropped and
counted). `ControlServer` serves an endpoint on a real UDP socket from a thread, so that the
host transport, the driver and the command line run end to end against it.
"""

import hmac
import socket
import threading
from collections import Counter

from tickwire.hdl.net import headers as h
from tickwire.host.udp_control import (
    READ,
    REPLY,
    TOKEN_BYTES,
    WRITE,
    FormatError,
    Operation,
    decode,
    encode,
)
from tickwire.sim.frames import udp_frame as _udp_frame


class ControlEndpoint:
    """The board side of the control channel, in front of `bus` (``read_word`` /
    ``write_word``, synchronous, such as a `SimulatedNic`)."""

    def __init__(self, bus, token, host_address):
        if len(token) != TOKEN_BYTES:
            raise ValueError(f"the token is {TOKEN_BYTES} bytes")
        self.bus, self.token, self.host_address = bus, bytes(token), host_address
        self.last_id = 0
        self.last_reply = None
        self.counters = Counter(dict.fromkeys(
            ("accepted", "retransmitted", "malformed", "wrong_source", "bad_token", "replayed"),
            0))

    def handle(self, payload, source_address):
        try:
            request_id, token, operations = decode(payload)
            if any(o.op not in (READ, WRITE) for o in operations):
                raise FormatError("unknown op")
        except FormatError:
            self.counters["malformed"] += 1
            return None
        if source_address != self.host_address:
            self.counters["wrong_source"] += 1
            return None
        if not hmac.compare_digest(token, self.token):
            self.counters["bad_token"] += 1
            return None
        if request_id == self.last_id and self.last_reply is not None:
            self.counters["retransmitted"] += 1
            return self.last_reply
        if request_id <= self.last_id:
            self.counters["replayed"] += 1
            return None
        records = []
        for o in operations:
            if o.op == READ:
                records.append(Operation(READ | REPLY, o.address, self.bus.read_word(o.address)))
            else:
                self.bus.write_word(o.address, o.data)
                records.append(Operation(WRITE | REPLY, o.address, o.data))
        self.counters["accepted"] += 1
        self.last_id = request_id
        self.last_reply = encode(request_id, records)
        return self.last_reply


class GatewareEndpoint:
    """The control channel of a `SimulatedNic`'s gateware, as seen from the host's network.

    A datagram from `host` (the loopback address the host transport sends from) enters the
    device as the frame the configured host would send: from ``board.host_ip``, to the board's
    MAC, IPv4 address and control port (`board`: a `ControlDefaults`, by default the NIC's
    build values). A datagram from any other address keeps that address
    (so a second loopback address, 127.0.0.2, is a wrong source). The NIC is then clocked until
    a reply from the control port appears at MAC tx, or `reply_cycles` pass (dropped). Order
    frames sent meanwhile stay in ``nic.sent``. The endpoint owns the NIC while it serves:
    nothing else may clock it."""

    def __init__(self, nic, board=None, *, host="127.0.0.1", reply_cycles=2048):
        self.nic, self.host, self.reply_cycles = nic, host, reply_cycles
        self.board = board or nic.control_defaults

    def handle(self, payload, source_address):
        board, nic = self.board, self.nic
        source = board.host_ip if source_address == self.host else _ipv4(source_address)
        seen = len(nic.sent)
        nic.send(_udp_frame(payload, dst_ip=board.ip, dst_port=board.port, src_ip=source,
                            dst_mac=board.mac.to_bytes(6, "big")))
        nic.run(drain_cycles=0)
        for _ in range(0, self.reply_cycles, 16):
            for frame, _cycle in nic.sent[seen:]:
                reply = control_reply_payload(frame, board)
                if reply is not None:
                    return reply
            seen = len(nic.sent)
            nic.tick(16)
        return None


def control_reply_payload(frame, board):
    """The UDP payload of `frame` if it is a control reply from `board` (untagged), else None."""
    header = h.ETHERNET_LENGTH
    if len(frame) < header + h.IPV4_MIN_LENGTH + h.UDP_LENGTH:
        return None
    if int.from_bytes(frame[12:14], "big") != h.ETHERTYPE_IPV4:
        return None
    ihl = (frame[header] & 0xF) * 4
    udp = header + ihl
    if frame[header + 9] != h.IP_PROTOCOL_UDP or _ipv4_at(frame, header + 12) != board.ip:
        return None
    if int.from_bytes(frame[udp:udp + 2], "big") != board.port:
        return None
    length = int.from_bytes(frame[udp + 4:udp + 6], "big")
    return frame[udp + h.UDP_LENGTH:udp + length]


def _ipv4(text):
    return int.from_bytes(socket.inet_aton(text), "big")


def _ipv4_at(frame, offset):
    return int.from_bytes(frame[offset:offset + 4], "big")


class ControlServer:
    """Serves an endpoint (`ControlEndpoint`, `GatewareEndpoint`) on `address` (an ephemeral
    port unless given), from a thread; ``drop_replies`` loses that many replies first (to
    exercise retransmission)."""

    def __init__(self, endpoint, port=0, drop_replies=0, address="127.0.0.1"):
        self.endpoint = endpoint
        self.drop_replies = drop_replies
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind((address, port))
        self.socket.settimeout(0.05)
        self.port = self.socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.socket.close()

    def _serve(self):
        while not self._stop.is_set():
            try:
                payload, source = self.socket.recvfrom(2048)
            except TimeoutError:
                continue
            reply = self.endpoint.handle(payload, source[0])
            if reply is None:
                continue
            if self.drop_replies:
                self.drop_replies -= 1
                continue
            self.socket.sendto(reply, source)
