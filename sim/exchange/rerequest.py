"""The MoldUDP64 re-request server (MoldUDP64 1.00 section 3): UDP on loopback.

A request is 20 bytes: session (10), sequence number (8), requested message count (2). The
answer is one downstream packet from that sequence number with as many of the requested
messages as exist and fit in `max_payload` bytes (the client asks again for the rest). A
request for another session is ignored; one past the end of the history is answered with
what exists, or not at all when nothing does; a request of another length, for sequence 0
or for 0 messages is malformed. Each case is counted in `counters`.
"""

import asyncio
import collections
import logging

from tickwire.sim import moldudp64 as mold

__all__ = ["RerequestServer"]

log = logging.getLogger(__name__)


class RerequestServer(asyncio.DatagramProtocol):
    """`messages` is the session's history, sequence number 1 first; the caller may keep
    appending to it while the server runs."""

    def __init__(self, session, messages, *, max_payload=1400):
        self.session = mold.encode_session(session)
        self.messages, self.max_payload = messages, max_payload
        self.counters = collections.Counter()
        self.host = self.port = None
        self._transport = None

    async def start(self, host="127.0.0.1", port=0):
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: self,
                                                                 local_addr=(host, port))
        self.host, self.port = self._transport.get_extra_info("sockname")[:2]
        return self

    async def close(self):
        self._transport.close()

    def datagram_received(self, data, addr):
        self.counters["requests"] += 1
        answer = self.answer(data)
        if answer is not None:
            self._transport.sendto(answer, addr)

    def answer(self, request):
        """The packet answering `request`, or None."""
        if len(request) != mold.HEADER_LENGTH:
            return self._refuse("malformed", f"request of {len(request)} bytes")
        session, sequence = request[0:10], int.from_bytes(request[10:18], "big")
        count = int.from_bytes(request[18:20], "big")
        if session != self.session:
            return self._refuse("wrong_session", f"request for session {session!r}")
        if sequence == 0 or count == 0:
            return self._refuse("malformed", f"request for {count} messages from {sequence}")
        found = self.messages[sequence - 1:sequence - 1 + count]
        if len(found) < count:
            self.counters["past_end"] += 1
        if not found:
            return None
        size, batch = mold.HEADER_LENGTH, []
        for message in found:
            size += 2 + len(message)
            if batch and size > self.max_payload:
                break
            batch.append(message)
        self.counters["messages_resent"] += len(batch)
        return mold.encode_packet(self.session, sequence, batch)

    def _refuse(self, counter, why):
        self.counters[counter] += 1
        log.warning("MoldUDP64 re-request ignored: %s", why)
        return None
