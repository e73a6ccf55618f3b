"""The host's order session: a SoupBinTCP 3.00 client carrying OUCH 5.0 over TCP, and the TCP
state it hands to the gateware (delegated send).

    session = OrderSession("127.0.0.1", port, username="tw", password="secret")
    session.login()                                  # L, then A (or LoginRejected)
    await api.start_session(device, sequence=session.next_sequence, ack=session.ack,
                            window=session.window)
    session.forward(payload, tcp_sequence)           # a gateware frame's TCP payload
    for message in session.poll(0.1):                # sequenced OUCH replies, decoded
        ...
    if session.heartbeat_due():                      # a second of idle: R
        session.heartbeat()
    session.logout()

The host owns the connection and its login; the gateware sends its orders on the same byte
stream. The session numbers that stream as TCP does: ``next_sequence`` is the initial sequence
number `isn` + 1 (the SYN) + every byte sent on it, by the host itself (login, heartbeats,
logout) or by the gateware (`forward`); ``ack`` is `irs` + 1 + every byte received. A
gateware frame whose sequence number is not ``next_sequence`` is refused (`SequenceError`):
the host and the gateware would disagree about the stream. (A user-space socket cannot show
the kernel's own sequence numbers: `isn` and `irs` stand for them.)

Outbound OUCH messages are decoded here from the OUCH 5.0 specification's tables (section 3:
System Event, Order Accepted, Order Executed, Order Canceled, Rejected), independently of the
exchange simulator's codec.
"""

import select
import socket
import struct
import time

__all__ = ["LoginRejected", "OrderSession", "SequenceError", "SessionError", "decode_outbound"]

MOD = 2**32


class SessionError(RuntimeError):
    pass


class LoginRejected(SessionError):
    pass


class SequenceError(SessionError):
    pass


def _alpha(raw):
    return raw.decode("ascii", "replace").rstrip()


# OUCH 5.0 outbound: (struct format after the type byte, field names); all big-endian.
_OUTBOUND = {
    b"S": (">Qc", ("timestamp", "event_code")),
    b"A": (">QIcI8sqccQcccc14sH", (
        "timestamp", "user_ref_num", "side", "quantity", "symbol", "price", "time_in_force",
        "display", "order_reference_number", "capacity", "intermarket_sweep", "cross_type",
        "order_state", "clordid", "appendage_length")),
    b"E": (">QIIqcQH", ("timestamp", "user_ref_num", "quantity", "price", "liquidity_flag",
                        "match_number", "appendage_length")),
    b"C": (">QIIcH", ("timestamp", "user_ref_num", "quantity", "reason", "appendage_length")),
    b"J": (">QIH14sH", ("timestamp", "user_ref_num", "reason", "clordid", "appendage_length")),
}


def decode_outbound(message):
    """One OUCH 5.0 outbound message as a dict (``type`` the letter, alpha fields as str).
    Raises SessionError on an unknown type or a short message."""
    kind = bytes(message[:1])
    if kind not in _OUTBOUND:
        raise SessionError(f"unknown OUCH outbound message type {kind!r}")
    layout, names = _OUTBOUND[kind]
    size = struct.calcsize(layout)
    if len(message) < 1 + size:
        raise SessionError(f"OUCH {kind.decode()} of {len(message)} bytes, expected {1 + size}")
    out = {"type": kind.decode()}
    for name, value in zip(names, struct.unpack_from(layout, message, 1), strict=True):
        if isinstance(value, bytes):
            value = _alpha(value)
        out[name] = value
    return out


def _packet(kind, payload=b""):
    return (len(payload) + 1).to_bytes(2, "big") + kind + payload


class OrderSession:
    """One SoupBinTCP session to `host`:`port`. `session` blank asks for the server's current
    session; `sequence` is the first sequenced message wanted (1: from the start)."""

    def __init__(self, host, port, *, username, password, session="", sequence=1,
                 isn=1_000_000, irs=77_000, window=65_535, heartbeat_interval=1.0,
                 timeout=10.0):
        if len(username) > 6 or len(password) > 10 or len(session) > 10:
            raise ValueError("username is at most 6 characters, password and session 10")
        self.address = (host, port)
        self.username, self.password, self.session = username, password, session
        self.requested_sequence = sequence
        self.window, self.heartbeat_interval, self.timeout = window, heartbeat_interval, timeout
        self.next_sequence = (isn + 1) % MOD
        self.ack = (irs + 1) % MOD
        self.replies = []            # every sequenced OUCH message, decoded, in order
        self.heartbeats_sent = self.heartbeats_received = 0
        self.forwarded = 0           # gateware frames carried
        self.ended = False           # the server sent End of Session (Z)
        self.sequence = None         # the next sequenced message number, from Login Accepted
        self._socket = None
        self._buffer = bytearray()
        self._last_sent = time.monotonic()

    @property
    def local_port(self):
        return self._socket.getsockname()[1]

    def login(self):
        """Connect and log in; returns the server's session name. Raises LoginRejected."""
        self._socket = socket.create_connection(self.address, timeout=self.timeout)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._send(_packet(b"L", self.username.ljust(6).encode() + self.password.ljust(10).encode()
                           + self.session.ljust(10).encode()
                           + str(self.requested_sequence).rjust(20).encode()))
        deadline = time.monotonic() + self.timeout
        while self.sequence is None:
            packets = self._read(max(0.0, deadline - time.monotonic()))
            if not packets and time.monotonic() >= deadline:
                raise SessionError("no answer to the login request")
            for kind, payload in packets:
                if kind == b"A":
                    self.session = _alpha(payload[:10])
                    self.sequence = int(payload[10:30].strip() or 1)
                elif kind == b"J":
                    raise LoginRejected(f"login rejected: reason {payload[:1].decode()!r}")
                elif self.sequence is None:
                    raise SessionError(f"expected login accepted or rejected, got {kind!r}")
                else:
                    self._handle(kind, payload)
        return self.session

    def forward(self, payload, tcp_sequence):
        """Carry a gateware frame's TCP payload (its SoupBinTCP packets) on the connection.
        `tcp_sequence` is the frame's TCP sequence number: it must be ``next_sequence``."""
        if tcp_sequence != self.next_sequence:
            raise SequenceError(f"gateware frame at TCP sequence {tcp_sequence}, the stream is "
                                f"at {self.next_sequence}")
        self._send(payload)
        self.forwarded += 1

    def heartbeat_due(self):
        """Nothing was sent for `heartbeat_interval` (SoupBinTCP: a heartbeat is due)."""
        return time.monotonic() - self._last_sent >= self.heartbeat_interval

    def heartbeat(self):
        """Send a client heartbeat (R). The gateware must not send meanwhile
        (``order.hold``) and must then be given the new ``next_sequence``."""
        self._send(_packet(b"R"))
        self.heartbeats_sent += 1

    def poll(self, timeout=0.0):
        """Read what has arrived (waiting up to `timeout` for the first bytes); returns the
        sequenced OUCH messages it completed, decoded (also kept in `replies`)."""
        new = []
        for kind, payload in self._read(timeout):
            message = self._handle(kind, payload)
            if message is not None:
                new.append(message)
        return new

    def wait_for(self, count, timeout=None):
        """Poll until `count` sequenced messages have arrived in all (or End of Session)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.replies) < count and not self.ended:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SessionError(f"{len(self.replies)} sequenced messages, waited for {count}")
            self.poll(min(left, 0.5))

    def wait_for_end(self, timeout=None):
        """Poll until the server ends the session (End of Session, Z, or the connection
        closed); returns the sequenced messages read meanwhile."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        new = []
        while not self.ended:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SessionError("the server did not end the session")
            new += self.poll(min(left, 0.5))
        return new

    def logout(self):
        """Send a logout request (O) and close."""
        if self._socket is not None:
            if not self.ended:
                self._send(_packet(b"O"))
            self._socket.close()
            self._socket = None

    close = logout

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self, kind, payload):
        if kind == b"S":
            message = decode_outbound(payload)
            message["sequence"] = self.sequence
            self.sequence += 1
            self.replies.append(message)
            return message
        if kind == b"H":
            self.heartbeats_received += 1
        elif kind == b"Z":
            self.ended = True
        elif kind == b"+":
            raise SessionError(f"the server reports a fault: {payload.decode('ascii', 'replace')}")
        else:
            raise SessionError(f"unexpected SoupBinTCP packet type {kind!r}")
        return None

    def _send(self, data):
        self._socket.sendall(data)
        self.next_sequence = (self.next_sequence + len(data)) % MOD
        self._last_sent = time.monotonic()

    def _read(self, timeout):
        if self._socket is None or self.ended:
            return []
        ready, _, _ = select.select([self._socket], [], [], timeout)
        if not ready:
            return []
        data = self._socket.recv(65536)
        if not data:
            self.ended = True
            return []
        self.ack = (self.ack + len(data)) % MOD
        self._buffer += data
        packets = []
        while len(self._buffer) >= 2:
            length = int.from_bytes(self._buffer[:2], "big")
            if length == 0:
                raise SessionError("SoupBinTCP packet of length 0")
            if len(self._buffer) < 2 + length:
                break
            packets.append((bytes(self._buffer[2:3]), bytes(self._buffer[3:2 + length])))
            del self._buffer[:2 + length]
        return packets
