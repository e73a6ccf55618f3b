"""The order-entry port: a SoupBinTCP 3.00 server carrying OUCH 5.0, on a loopback TCP socket.

One SoupBinTCP session (`session`) whose sequenced messages are the exchange's OUCH outbound
stream for it; one client logged in at a time. A client logs in with ``L`` (user name and
password checked; requested session blank or this one; requested sequence number 0 for
"from now on", else the stream is replayed from that number, or from the next message when
the number is past the end), gets ``A`` or ``J`` (``A`` not authorised, ``S`` session
unavailable), then sends OUCH inbound messages in ``U`` packets and heartbeats ``R``, and
ends with ``O``. The server sends ``S`` for each sequenced message,
``H`` after each `heartbeat_interval` of idle, ``Z`` when the session ends, and drops a
client silent for `idle_timeout`. A packet that breaks the framing or the protocol is
answered with a debug packet ``+`` naming the fault, the connection is closed, and it is
counted (`counters`).
"""

import asyncio
import collections
import contextlib
import logging
import threading

from .messages import OuchError
from .soupbin import PacketReader, SoupBinError, decode_login, login_accepted, packet

__all__ = ["OrderEntryServer", "serve_in_thread"]

log = logging.getLogger(__name__)


class _Closed(Exception):
    """The connection ends normally (logout, end of session, peer gone, timeout)."""


class OrderEntryServer:
    def __init__(self, exchange, *, session="TWIRE00001", username="tw", password="secret",
                 heartbeat_interval=1.0, idle_timeout=15.0):
        if not 0 < len(session) <= 10 or len(username) > 6 or len(password) > 10:
            raise ValueError("session is 1-10 characters, username at most 6, password 10")
        self.exchange, self.session = exchange, session
        self.username, self.password = username, password
        self.heartbeat_interval, self.idle_timeout = heartbeat_interval, idle_timeout
        self.counters = collections.Counter()
        self.host = self.port = None
        self._server = self._loop = None
        self._active = None                 # asyncio.Event of the logged-in connection
        self._ended = False
        self._writers, self._tasks = set(), set()
        exchange.open_session(session)
        exchange.add_listener(self._stream_grew)

    async def start(self, host="127.0.0.1", port=0):
        """Listen (port 0: an ephemeral port, then in `port`)."""
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._connection, host, port)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        return self

    async def close(self):
        """Stop listening and end every connection."""
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self._server.wait_closed()

    def end_session(self):
        """End of session: the logged-in client gets the rest of the stream and ``Z``, then
        the connection closes; later logins are refused with ``S``. Callable from any
        thread."""
        self._ended = True
        self._stream_grew(self.session)

    def _stream_grew(self, session):
        wake = self._active
        if session == self.session and wake is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(wake.set)

    # One connection --------------------------------------------------------------------------

    async def _connection(self, reader, writer):
        self.counters["connections"] += 1
        self._writers.add(writer)
        self._tasks.add(asyncio.current_task())
        packets, sender = PacketReader(), None
        try:
            wake, first, pending = await self._login(reader, writer, packets)
            sender = asyncio.create_task(self._send_loop(writer, wake, first))
            await self._receive_loop(reader, packets, sender, pending)
        except SoupBinError as error:
            self.counters["malformed"] += 1
            log.warning("%s: %s; disconnecting", self.session, error)
            with contextlib.suppress(ConnectionError):
                writer.write(packet(b"+", str(error).encode("ascii", "replace")))
                await writer.drain()
        except (_Closed, ConnectionError):
            pass
        finally:
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await sender
                self._active = None
            self._writers.discard(writer)
            self._tasks.discard(asyncio.current_task())
            self.counters["closed"] += 1
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _read(self, reader, packets):
        try:
            data = await asyncio.wait_for(reader.read(4096), self.idle_timeout)
        except TimeoutError:
            self.counters["timeouts"] += 1
            raise _Closed from None
        if not data:
            if packets.pending:
                self.counters["truncated"] += 1
                log.warning("%s: connection closed inside a packet", self.session)
            raise _Closed
        return packets.feed(data)

    async def _login(self, reader, writer, packets):
        pending = []
        while not pending:
            pending = await self._read(reader, packets)
        kind, payload = pending.pop(0)
        if kind != b"L":
            raise SoupBinError(f"expected a login request, got packet type {kind!r}")
        login = decode_login(payload)
        if (login.username, login.password) != (self.username, self.password):
            reason = b"A"
        elif login.session not in ("", self.session) or self._ended or self._active:
            reason = b"S"
        else:
            reason = None
        if reason is not None:
            self.counters["logins_rejected"] += 1
            self.counters[f"logins_rejected_{reason.decode()}"] += 1
            writer.write(packet(b"J", reason))
            await writer.drain()
            raise _Closed
        wake = self._active = asyncio.Event()
        available = self.exchange.stream_length(self.session) + 1
        first = available if login.sequence == 0 else min(login.sequence, available)
        self.counters["logins_accepted"] += 1
        try:
            writer.write(login_accepted(self.session, first))
            await writer.drain()
        except ConnectionError:
            self._active = None
            raise
        return wake, first, pending

    async def _send_loop(self, writer, wake, position):
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            wake.clear()
            messages = self.exchange.stream(self.session, position)
            for message in messages:
                writer.write(packet(b"S", message))
            position += len(messages)
            if messages:
                last = loop.time()
            elif self._ended:
                writer.write(packet(b"Z"))
                await writer.drain()
                writer.close()
                return
            elif loop.time() - last >= self.heartbeat_interval:
                writer.write(packet(b"H"))
                self.counters["heartbeats_sent"] += 1
                last = loop.time()
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(),
                                       max(0.0, last + self.heartbeat_interval - loop.time()))

    async def _receive_loop(self, reader, packets, sender, pending):
        """`pending`: packets that came with the login request."""
        while not sender.done():
            for kind, payload in pending:
                if kind == b"U":
                    self._order_message(payload)
                elif kind == b"R":
                    self.counters["heartbeats_received"] += 1
                elif kind == b"O":
                    self.counters["logouts"] += 1
                    raise _Closed
                elif kind == b"+":
                    log.info("%s: debug from client: %r", self.session, payload)
                else:
                    raise SoupBinError(f"unexpected packet type {kind!r} in a session")
            pending = await self._read(reader, packets)

    def _order_message(self, payload):
        self.counters["ouch_messages"] += 1
        try:
            self.exchange.submit(self.session, payload)
        except (OuchError, ValueError) as error:
            self.counters["bad_ouch"] += 1
            log.warning("%s: OUCH message refused: %s", self.session, error)


@contextlib.contextmanager
def serve_in_thread(*servers):
    """Run servers (anything with async ``start()`` and ``close()``) on an event loop in a
    background thread; yields them started. For callers that are not asyncio code."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="exchange", daemon=True)
    thread.start()

    def run(coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=10)

    started = []
    try:
        for server in servers:
            run(server.start())
            started.append(server)
        yield servers
    finally:
        for server in started:
            run(server.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
