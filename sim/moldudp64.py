"""MoldUDP64 packet codec (Nasdaq MoldUDP64 Protocol Specification 1.00, section 2)."""

from typing import NamedTuple

HEADER_LENGTH = 20
HEARTBEAT_COUNT = 0
END_OF_SESSION_COUNT = 0xFFFF
#: Largest count a packet carrying messages may declare.
MAX_MESSAGE_COUNT = 0xFFFE


class MoldPacket(NamedTuple):
    session: bytes
    sequence: int
    count: int
    messages: tuple


def encode_session(session):
    if isinstance(session, str):
        session = session.encode("ascii")
    if len(session) > 10:
        raise ValueError(f"MoldUDP64 session {session!r} is longer than 10 bytes")
    return session.ljust(10, b" ")


def encode_packet(session, sequence, messages=(), count=None):
    """One downstream packet; `count` overrides the message count (heartbeat, end of session)."""
    count = len(messages) if count is None else count
    body = b"".join(len(m).to_bytes(2, "big") + m for m in messages)
    return encode_session(session) + sequence.to_bytes(8, "big") + count.to_bytes(2, "big") + body


def heartbeat(session, next_sequence):
    return encode_packet(session, next_sequence, count=HEARTBEAT_COUNT)


def end_of_session(session, next_sequence):
    return encode_packet(session, next_sequence, count=END_OF_SESSION_COUNT)


def decode_packet(payload):
    """Strict decode: raises ValueError on any framing error."""
    if len(payload) < HEADER_LENGTH:
        raise ValueError("MoldUDP64 header cut off")
    session = bytes(payload[0:10])
    sequence = int.from_bytes(payload[10:18], "big")
    count = int.from_bytes(payload[18:20], "big")
    messages, offset = [], HEADER_LENGTH
    wanted = 0 if count == END_OF_SESSION_COUNT else count
    while offset < len(payload):
        if len(messages) == wanted:
            raise ValueError("bytes after the declared message count")
        if offset + 2 > len(payload):
            raise ValueError("message length cut off")
        length = int.from_bytes(payload[offset:offset + 2], "big")
        if offset + 2 + length > len(payload):
            raise ValueError("message runs past the packet")
        messages.append(bytes(payload[offset + 2:offset + 2 + length]))
        offset += 2 + length
    if len(messages) != wanted:
        raise ValueError("fewer messages than the declared count")
    return MoldPacket(session, sequence, count, tuple(messages))


def pack_messages(session, first_sequence, messages, max_payload=1400):
    """Split messages into packets of at most `max_payload` UDP payload bytes."""
    packets, batch, size, sequence = [], [], HEADER_LENGTH, first_sequence
    for message in messages:
        if batch and size + 2 + len(message) > max_payload:
            packets.append(encode_packet(session, sequence, batch))
            sequence += len(batch)
            batch, size = [], HEADER_LENGTH
        batch.append(message)
        size += 2 + len(message)
    if batch:
        packets.append(encode_packet(session, sequence, batch))
    return packets


def request(session, sequence, count):
    """A re-request (client to re-request server): session, sequence, requested count."""
    return encode_session(session) + sequence.to_bytes(8, "big") + count.to_bytes(2, "big")
