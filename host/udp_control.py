"""The UDP control channel: register reads and writes in UDP datagrams, for boards without PCIe.

This module is the wire format (one table, below), the host transport `UdpControl`, and the
rules a board applies. The board side is gateware, `tickwire.hdl.net.control.ControlResponder`
inside the device's top level, on the MAC rx/tx path beside the feed and the orders;
`tickwire.sim.nic_control` has its executable reference model and serves the simulated NIC's
gateware on a real UDP socket.

Wire format (UDP payload, big-endian), version 1
------------------------------------------------

Request::

    offset  bytes  field
    0       2      magic       0x5457 ("TW")
    2       1      version     1
    3       1      count       n, 1..MAX_OPERATIONS
    4       8      request id  strictly above the last id the board accepted
    12      16     token       the board's secret, compared in constant time
    28      8*n    operations  op (1 = read, 2 = write), address (3 bytes, word address),
                               data (4 bytes; 0 for a read)

Reply: the same header with the request's id and count and a zero token field, then one
8-byte record per operation, in order: ``op | 0x80``, address, data (the word read, or the
word written).

Rules (the board's side):

- A request is accepted only from the configured host address, with the board's token, and
  with a request id above the last one accepted; its operations run in order, with no other
  request in between (multi-word latched reads and staged writes stay consistent).
- Everything else is dropped without a reply and counted: malformed (wrong magic, version,
  length or count, unknown op), wrong source, wrong token, replayed or stale id.
- A request whose id equals the last accepted one, from the host with the token, is answered
  again from the saved reply without running it again: the host retransmits on timeout
  without repeating a write or a FIFO pop.

Request ids: the host starts from the current time in nanoseconds, so a restarted host is
still above the ids its predecessor used.
"""

import asyncio
import dataclasses
import struct
import time

MAGIC = 0x5457
VERSION = 1
MAX_OPERATIONS = 64
READ, WRITE, REPLY = 1, 2, 0x80
TOKEN_BYTES = 16
HEADER = struct.Struct(">HBBQ16s")
OPERATION = struct.Struct(">B3sI")


@dataclasses.dataclass(frozen=True)
class Operation:
    op: int           # READ or WRITE (| REPLY in replies)
    address: int
    data: int = 0


class FormatError(ValueError):
    pass


def encode(request_id, operations, token=bytes(TOKEN_BYTES)):
    if not 1 <= len(operations) <= MAX_OPERATIONS:
        raise FormatError(f"1..{MAX_OPERATIONS} operations per request")
    if len(token) != TOKEN_BYTES:
        raise FormatError(f"the token is {TOKEN_BYTES} bytes")
    out = [HEADER.pack(MAGIC, VERSION, len(operations), request_id, token)]
    for o in operations:
        if not 0 <= o.address < 1 << 24 or not 0 <= o.data < 1 << 32:
            raise FormatError(f"operation out of range: {o}")
        out.append(OPERATION.pack(o.op, o.address.to_bytes(3, "big"), o.data))
    return b"".join(out)


def decode(payload):
    """(request id, token, [Operation]) of a request or reply; FormatError if malformed."""
    if len(payload) < HEADER.size + OPERATION.size:
        raise FormatError("too short")
    magic, version, count, request_id, token = HEADER.unpack_from(payload)
    if magic != MAGIC or version != VERSION:
        raise FormatError("wrong magic or version")
    if not 1 <= count <= MAX_OPERATIONS or len(payload) != HEADER.size + count * OPERATION.size:
        raise FormatError("count and length disagree")
    operations = []
    for i in range(count):
        op, address, data = OPERATION.unpack_from(payload, HEADER.size + i * OPERATION.size)
        operations.append(Operation(op, int.from_bytes(address, "big"), data))
    return request_id, token, operations


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self):
        self.replies = {}
        self.waiters = {}

    def datagram_received(self, data, address):
        try:
            request_id, _, operations = decode(data)
        except FormatError:
            return
        waiter = self.waiters.pop(request_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(operations)


class UdpControl:
    """Host transport over the UDP control channel (``udp://host:port``)."""

    def __init__(self, host, port, token, *, timeout=0.25, retries=8):
        if len(token) != TOKEN_BYTES:
            raise ValueError(f"the control token is {TOKEN_BYTES} bytes ({2 * TOKEN_BYTES} hex "
                             "digits)")
        self.address, self.token = (host, port), bytes(token)
        self.timeout, self.retries = timeout, retries
        self._transport = self._protocol = None
        self._last_id = 0

    async def _open(self):
        if self._transport is None:
            loop = asyncio.get_running_loop()
            self._transport, self._protocol = await loop.create_datagram_endpoint(
                _Protocol, remote_addr=self.address)

    def _next_id(self):
        self._last_id = max(self._last_id + 1, time.time_ns())
        return self._last_id

    async def request(self, operations):
        """Run operations (a batch, in order) and return the reply's records."""
        await self._open()
        loop = asyncio.get_running_loop()
        request_id = self._next_id()
        payload = encode(request_id, operations, self.token)
        for _ in range(self.retries):
            waiter = loop.create_future()
            self._protocol.waiters[request_id] = waiter
            self._transport.sendto(payload)
            try:
                reply = await asyncio.wait_for(waiter, self.timeout)
            except TimeoutError:
                continue      # same id: the board answers a retransmission from its saved reply
            expected = [(o.op | REPLY, o.address) for o in operations]
            if [(r.op, r.address) for r in reply] != expected:
                raise ConnectionError(f"mismatched reply from {self}")
            return reply
        self._protocol.waiters.pop(request_id, None)
        raise TimeoutError(f"no reply from {self} after {self.retries} tries (wrong token, "
                           "host address or port?)")

    async def read_word(self, address):
        return (await self.request([Operation(READ, address)]))[0].data

    async def write_word(self, address, value):
        await self.request([Operation(WRITE, address, value)])

    async def read_words(self, addresses):
        """Single-word reads batched, MAX_OPERATIONS per request."""
        out = []
        for start in range(0, len(addresses), MAX_OPERATIONS):
            chunk = addresses[start:start + MAX_OPERATIONS]
            out += [r.data for r in await self.request([Operation(READ, a) for a in chunk])]
        return out

    def close(self):
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def __str__(self):
        return f"udp://{self.address[0]}:{self.address[1]}"
