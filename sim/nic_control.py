"""Reference model of a board's UDP control endpoint (`tickwire.host.udp_control`), serving a
register bus: the executable specification for the gateware responder still to be built.

`ControlEndpoint.handle(payload, source)` applies the channel's rules and returns the reply
(or None: dropped and counted). `ControlServer` serves an endpoint on a real UDP socket from
a thread, so that the host transport, the driver and the command line can be tested end to end
against a `SimulatedNic`.
"""

import hmac
import socket
import threading
from collections import Counter

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


class ControlServer:
    """Serves a `ControlEndpoint` on ``127.0.0.1`` (an ephemeral port unless given), from a
    thread; ``drop_replies`` loses that many replies first (to exercise retransmission)."""

    def __init__(self, endpoint, port=0, drop_replies=0):
        self.endpoint = endpoint
        self.drop_replies = drop_replies
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", port))
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
